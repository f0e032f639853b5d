//! Diverged runs as worst-case values: a run whose loss became NaN/inf did not produce the
//! measures of a complete run, but leaving it out would summarise its condition by its survivors
//! (at lr 0.05, relu-softsign by 1 run of 5). Where the worst case is defined it is used instead,
//! so the run stays in its condition's sample and in the ranked tests (docs/measures.md):
//!
//! - accuracy after divergence is chance, 1 / classes: the final test accuracy is chance, the
//!   area under the accuracy curve takes the recorded epochs and chance for the epochs the run
//!   did not reach, and the best accuracy is the best it recorded (chance if none);
//! - a diverged run never converged: every epochs- and seconds-to-target is +∞;
//! - its training loss diverged: final loss and its area are +∞.
//!
//! The neuron measures (dead, dormant, revival, ...) have no worst case (a NaN network's neurons
//! are neither dead nor alive): they stay undefined (NaN) for a diverged run, and the report
//! says how many runs each of those summaries leaves out.

use anyhow::Result;
use polars::prelude::*;

use crate::convergence::{convergence, EpochPoint};
use crate::interventions::run_settings;
use crate::load::{add_factor_columns, DivergedRecord, RunSet};

/// One row per diverged run of `runs` that left its manifest: the run-level columns of
/// [`RunSet::run_table`] (with `run` null: the run has no records in the analysis) and the
/// worst-case values of the convergence measures. `target_acc` as for the complete runs.
pub fn worst_case_table(runs: &RunSet, target_acc: Option<f64>) -> Result<DataFrame> {
    let diverged: Vec<(&str, &DivergedRecord)> = runs
        .diverged
        .iter()
        .filter_map(|d| Some((d.setting.as_deref()?, d.diverged.as_deref()?)))
        .collect();
    let manifests = || diverged.iter().map(|(_, d)| &d.manifest);
    let mut table = df!(
        "run" => vec![None::<u32>; diverged.len()],
        "run_id" => manifests().map(|m| m.run_id.clone()).collect::<Vec<_>>(),
        "sweep" => manifests().map(|m| m.sweep.clone()).collect::<Vec<_>>(),
        "activation" => manifests().map(|m| m.config.activation.clone()).collect::<Vec<_>>(),
        "dataset" => manifests().map(|m| m.config.dataset.kind.name().to_string()).collect::<Vec<_>>(),
        "seed" => manifests().map(|m| m.config.seed).collect::<Vec<_>>(),
        "lr" => manifests().map(|m| m.config.lr).collect::<Vec<_>>(),
        "setting" => diverged.iter().map(|(s, _)| s.to_string()).collect::<Vec<_>>(),
        "epochs" => manifests().map(|m| m.epochs_completed as u32).collect::<Vec<_>>(),
    )?;
    add_factor_columns(
        &mut table,
        diverged
            .iter()
            .map(|(_, d)| run_settings(&d.manifest, &d.intervention)),
        &runs.factors,
    );
    let values: Vec<WorstCase> = diverged
        .iter()
        .map(|(_, d)| worst_case(d, target_acc))
        .collect();
    let column = |name: &str, f: fn(&WorstCase) -> f64| {
        Column::new(name.into(), values.iter().map(f).collect::<Vec<f64>>())
    };
    for c in [
        column("final_acc", |w| w.final_acc),
        column("best_acc", |w| w.best_acc),
        column("epochs_to_target", |w| w.to_target),
        column("seconds_to_target", |w| w.to_target),
        column("epochs_to_95", |_| f64::INFINITY),
        column("seconds_to_95", |_| f64::INFINITY),
        column("epochs_to_99", |_| f64::INFINITY),
        column("seconds_to_99", |_| f64::INFINITY),
        column("auc_test_acc", |w| w.auc_test_acc),
        column("auc_train_loss", |_| f64::INFINITY),
        column("final_train_loss", |_| f64::INFINITY),
    ] {
        table.with_column(c)?;
    }
    Ok(table)
}

/// The worst-case convergence values of one diverged run.
#[derive(Debug, Clone, Copy, PartialEq)]
struct WorstCase {
    final_acc: f64,
    best_acc: f64,
    /// +∞ with an absolute target, NaN without one (as for complete runs).
    to_target: f64,
    auc_test_acc: f64,
}

fn worst_case(run: &DivergedRecord, target_acc: Option<f64>) -> WorstCase {
    let m = &run.manifest;
    let chance = 1.0 / m.classes.max(1) as f64;
    let recorded_through = m.epochs_completed as u32;
    let planned = (m.config.epochs as u32).max(recorded_through);
    // The recorded epochs, then chance for every epoch the run did not reach.
    let recorded = run.test_acc.iter().copied();
    let after = (recorded_through + 1..=planned).map(|epoch| (epoch, chance));
    let points: Vec<EpochPoint> = recorded
        .chain(after)
        .map(|(epoch, test_acc)| EpochPoint {
            epoch,
            test_acc,
            seconds: f64::NAN,
            train_loss: None,
        })
        .collect();
    // Without its recorded epochs the curve is unknown: no area, but the rest holds.
    let complete_curve = run.test_acc.len() == recorded_through as usize + 1;
    let curve = convergence(&points, None);
    WorstCase {
        final_acc: chance,
        // f64::max ignores NaN and −∞ (no trained epoch): chance at the least.
        best_acc: curve.best_acc.max(chance),
        to_target: if target_acc.is_some() {
            f64::INFINITY
        } else {
            f64::NAN
        },
        auc_test_acc: if complete_curve {
            curve.auc_test_acc
        } else {
            f64::NAN
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{load_runs, RunStatus};
    use crate::synthetic::{write_run, EpochRecord, NeuronRecord, RunSpec};

    #[test]
    fn a_diverged_run_counts_at_chance_and_never_converges() {
        // Hand derivation: a 10-class run planned for 4 epochs recorded test accuracy 0.1, 0.5
        // and 0.7 at epochs 0, 1, 2 before its loss became NaN. Chance is 0.1, so its curve is
        // 0.1, 0.5, 0.7, 0.1, 0.1 over epochs 0..4; the trapezoid area is
        // (0.1+0.5)/2 + (0.5+0.7)/2 + (0.7+0.1)/2 + (0.1+0.1)/2 = 0.3 + 0.6 + 0.4 + 0.1 = 1.4,
        // over 4 epochs 0.35. Final accuracy 0.1, best 0.7, never at any target.
        let dir = tempfile::tempdir().unwrap();
        let epochs: Vec<EpochRecord> = [0.1, 0.5, 0.7]
            .iter()
            .enumerate()
            .map(|(e, &acc)| EpochRecord::new(e as u32, acc, (e > 0).then_some(1.0)))
            .collect();
        let neurons: Vec<NeuronRecord> = (0..3).map(|e| NeuronRecord::alive(e, 0, 0)).collect();
        let mut spec = RunSpec::new("s", "digits", "relu", 0, 0.05, 4, vec![("fc1".into(), 1)]);
        spec.status = RunStatus::Diverged;
        write_run(dir.path(), &spec, &epochs, &neurons).unwrap();
        let runs = load_runs(&[dir.path().join("s")]).unwrap();
        assert_eq!((runs.runs.len(), runs.diverged.len()), (0, 1));

        let table = worst_case_table(&runs, Some(0.9)).unwrap();
        let value = |name: &str| table.column(name).unwrap().f64().unwrap().get(0).unwrap();
        assert!((value("final_acc") - 0.1).abs() < 1e-12);
        assert!((value("best_acc") - 0.7).abs() < 1e-12);
        assert!((value("auc_test_acc") - 0.35).abs() < 1e-12);
        for name in [
            "epochs_to_target",
            "epochs_to_95",
            "seconds_to_99",
            "final_train_loss",
        ] {
            assert_eq!(value(name), f64::INFINITY, "{name}");
        }
        assert_eq!(
            table.column("activation").unwrap().str().unwrap().get(0),
            Some("relu")
        );
        assert_eq!(table.column("seed").unwrap().u64().unwrap().get(0), Some(0));
        // Without an absolute target, epochs to target is undefined, as for a complete run.
        let no_target = worst_case_table(&runs, None).unwrap();
        let to_target = no_target.column("epochs_to_target").unwrap().f64().unwrap();
        assert!(to_target.get(0).unwrap().is_nan());
    }
}
