//! Tests of the derived measures on small generated runs whose deaths, dormancy and revivals
//! are written by hand.

use super::*;
use crate::load::load_runs;
use crate::synthetic::{EpochRecord, NeuronRecord, RunSpec};

/// Column `name` of `df` as f64, null as NaN.
pub(crate) fn f64s(df: &DataFrame, name: &str) -> Vec<f64> {
    df.column(name)
        .unwrap()
        .cast(&DataType::Float64)
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect()
}

/// Network rows (layer −1) of `layer_epoch` for run 0, column `name`, by epoch.
fn network_series(m: &Measures, name: &str) -> Vec<f64> {
    let df = m
        .layer_epoch
        .clone()
        .lazy()
        .filter(
            col("layer")
                .eq(lit(NETWORK_LAYER))
                .and(col("run").eq(lit(0u32))),
        )
        .sort(["epoch"], Default::default())
        .collect()
        .unwrap();
    f64s(&df, name)
}

fn assert_close(a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        assert!(
            (x.is_nan() && y.is_nan()) || (x - y).abs() < 1e-12,
            "{a:?} vs {b:?}"
        );
    }
}

/// Four neurons in one layer, epochs 0..=5, dead patterns chosen so every measure is known:
/// n0 alive throughout; n1 dead from epoch 3 to the end; n2 dies at 1 and revives at 3;
/// n3 dead at every epoch.
fn known_run(dir: &std::path::Path) -> std::path::PathBuf {
    let dead: [[bool; 6]; 4] = [
        [false; 6],
        [false, false, false, true, true, true],
        [false, true, true, false, false, false],
        [true; 6],
    ];
    let mut neurons = Vec::new();
    for e in 0..6u32 {
        for (i, pattern) in dead.iter().enumerate() {
            let mut r = NeuronRecord::alive(e, 0, i as u32);
            if pattern[e as usize] {
                r.max_pre = -0.5;
                r.mean_abs_act = 0.0;
                r.mean_deriv = 0.0;
                r.active_frac = 0.0;
            } else {
                // n0 is far less active than the others: dormant for τ = 0.1 only.
                r.mean_abs_act = if i == 0 { 0.05 } else { 1.0 };
            }
            neurons.push(r);
        }
    }
    let accs = [0.1, 0.5, 0.8, 0.9, 0.85, 0.9];
    let epochs: Vec<EpochRecord> = accs
        .iter()
        .enumerate()
        .map(|(e, &a)| {
            EpochRecord::new(
                e as u32,
                a,
                if e == 0 { None } else { Some(1.0 / e as f64) },
            )
        })
        .collect();
    let spec = RunSpec::new(
        "known",
        "digits",
        "relu",
        0,
        0.05,
        5,
        vec![("fc1".into(), 4)],
    );
    crate::synthetic::write_run(dir, &spec, &epochs, &neurons).unwrap()
}

#[test]
fn measuring_in_batches_gives_what_measuring_at_once_gives() {
    use crate::synthetic::{generate_study, StudySpec};
    let tmp = tempfile::tempdir().unwrap();
    let study = StudySpec {
        sweep: "batches".into(),
        dataset: "synthetic".into(),
        activations: vec!["relu".into(), "relu-softsign".into()],
        seeds: 3,
        epochs: 6,
        sites: vec![("conv1".into(), 5), ("fc1".into(), 7)],
        lr: 0.05,
    };
    generate_study(tmp.path(), &study, 4).unwrap();
    let runs = crate::load_runs(&[tmp.path().to_path_buf()]).unwrap();
    assert_eq!(runs.runs.len(), 6);
    let opts = MeasureOptions::default();
    let at_once = compute_measures_in_batches(&runs, &opts, u64::MAX).unwrap();
    // 12 neurons × 7 epochs = 84 rows per run: 1 and 100 put one run per batch, 200 two.
    for (rows, batches) in [(1, 6), (100, 6), (200, 3)] {
        assert_eq!(runs.neuron_batches(rows).len(), batches, "{rows}");
        let batched = compute_measures_in_batches(&runs, &opts, rows).unwrap();
        assert!(
            at_once.layer_epoch.equals_missing(&batched.layer_epoch),
            "{rows}"
        );
        assert!(
            at_once.neuron_fate.equals_missing(&batched.neuron_fate),
            "{rows}"
        );
        assert!(
            at_once.run_layer.equals_missing(&batched.run_layer),
            "{rows}"
        );
        assert!(at_once.per_run.equals_missing(&batched.per_run), "{rows}");
    }
}

#[test]
fn measures_of_hand_made_run_match_construction() {
    let tmp = tempfile::tempdir().unwrap();
    known_run(tmp.path());
    let runs = load_runs(&[tmp.path().to_path_buf()]).unwrap();
    assert_eq!(runs.runs.len(), 1);
    let m = compute_measures(&runs, &MeasureOptions::default()).unwrap();

    // dead per epoch: e0 {n3}, e1 {n2,n3}, e2 {n2,n3}, e3..5 {n1,n3}
    assert_close(
        &network_series(&m, "dead_frac"),
        &[0.25, 0.5, 0.5, 0.5, 0.5, 0.5],
    );
    // never dead up to e: e0 {n0,n1,n2}, e1..2 {n0,n1}, e3.. {n0}
    assert_close(
        &network_series(&m, "survival"),
        &[0.75, 0.5, 0.5, 0.25, 0.25, 0.25],
    );
    // persistence: e1 1/1, e2 2/2, e3 n2 revives, n3 stays: 1/2, e4 2/2, e5 2/2
    assert_close(
        &network_series(&m, "persistence"),
        &[f64::NAN, 1.0, 1.0, 0.5, 1.0, 1.0],
    );
    assert_close(
        &network_series(&m, "revivals"),
        &[0.0, 0.0, 0.0, 1.0, 0.0, 0.0],
    );
    assert_close(
        &network_series(&m, "revived_frac"),
        &[0.0, 0.0, 0.0, 0.25, 0.25, 0.25],
    );
    // Dormancy: layer mean of mean_abs_act with alive n0 (0.05) and alive others (1.0).
    // e0: mean = (0.05+1+1+0)/4 = 0.5125; n0 score 0.0976 <= 0.1, n3 score 0.
    assert_close(
        &network_series(&m, "dormant_frac_0"),
        &[0.25, 0.5, 0.5, 0.5, 0.5, 0.5],
    );
    assert_close(
        &network_series(&m, "dormant_frac_0_025"),
        &[0.25, 0.5, 0.5, 0.5, 0.5, 0.5],
    );
    // e1: mean = (0.05+1+0+0)/4 = 0.2625, n0 score 0.19 > 0.1, so only the dead are dormant.
    assert_close(
        &network_series(&m, "dormant_frac_0_1"),
        &[0.5, 0.5, 0.5, 0.5, 0.5, 0.5],
    );
    assert_close(
        &network_series(&m, "starved_frac"),
        &[0.25, 0.5, 0.5, 0.5, 0.5, 0.5],
    );

    let fate = &m.neuron_fate;
    assert_close(
        &f64s(fate, "time_of_death"),
        &[f64::NAN, 3.0, f64::NAN, 0.0],
    );
    // E = 5, w = 2: n1 died at 3 <= 3, irreversible; n3 died at 0.
    assert_close(&f64s(fate, "irreversibly_dead"), &[0.0, 1.0, 0.0, 1.0]);
    assert_close(&f64s(fate, "revived"), &[0.0, 0.0, 1.0, 0.0]);
    assert_close(&f64s(fate, "revivals"), &[0.0, 0.0, 1.0, 0.0]);

    let run = &m.per_run;
    assert_close(&f64s(run, "dead_frac_final"), &[0.5]);
    assert_close(&f64s(run, "irreversibly_dead_frac"), &[0.5]);
    // ever dead: n1, n2, n3; alive at E among them: n2.
    assert_close(&f64s(run, "revival_rate"), &[1.0 / 3.0]);
    assert_close(&f64s(run, "revival_count"), &[1.0]);
    assert_close(&f64s(run, "mean_time_of_death"), &[1.5]);
    assert_close(&f64s(run, "final_acc"), &[0.9]);
    assert_close(&f64s(run, "best_acc"), &[0.9]);
    // 95 % of 0.9 = 0.855: first reached at epoch 3.
    assert_close(&f64s(run, "epochs_to_95"), &[3.0]);
    assert_close(&f64s(run, "epochs_to_target"), &[f64::NAN]);

    // With w = 3, n1 (died at 3 > 5 − 3) is no longer irreversibly dead.
    let opts = MeasureOptions {
        dead_window: 3,
        ..Default::default()
    };
    let m3 = compute_measures(&runs, &opts).unwrap();
    assert_close(&f64s(&m3.per_run, "irreversibly_dead_frac"), &[0.25]);
}
