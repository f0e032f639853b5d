//! Convergence speed of a run (SPEC §3) from its epoch records: final and best test accuracy,
//! epochs and seconds to an absolute target and to 95 % / 99 % of the run's best, and the
//! normalised areas under the accuracy and loss curves.

use std::collections::HashMap;

use anyhow::Result;

use crate::load::RunSet;

/// Convergence speed of one run (SPEC §3), from its epoch records.
#[derive(Debug, Clone, PartialEq)]
pub struct Convergence {
    pub epochs: u32,
    pub final_acc: f64,
    pub best_acc: f64,
    /// Epochs until `test_acc` first reaches the absolute target (∞ if never; NaN without target).
    pub epochs_to_target: f64,
    pub seconds_to_target: f64,
    /// Epochs/seconds until `test_acc` first reaches 95 % (99 %) of the run's best.
    pub epochs_to_95: f64,
    pub seconds_to_95: f64,
    pub epochs_to_99: f64,
    pub seconds_to_99: f64,
    /// Trapezoid area under test accuracy over epochs 0..E, divided by E: the curve's mean level.
    pub auc_test_acc: f64,
    /// Trapezoid area under train loss over epochs 1..E (epoch 0 has no training loss), divided by
    /// the span E − 1 so that it too reads as the curve's mean level; the single value when E = 1.
    pub auc_train_loss: f64,
    pub final_train_loss: f64,
}

/// One epoch of a run as the convergence measures see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochPoint {
    pub epoch: u32,
    pub test_acc: f64,
    pub seconds: f64,
    pub train_loss: Option<f64>,
}

/// Convergence measures of one run; `points` sorted by epoch, epoch 0 first.
///
/// Targets are sought from epoch 1 on, and "best" is the best after training: the network at
/// initialisation (epoch 0) never counts as having converged, so a run that collapses below its
/// initial accuracy does not "reach 95 % of its best" at epoch 0.
pub fn convergence(points: &[EpochPoint], target_acc: Option<f64>) -> Convergence {
    let trained = || points.iter().filter(|p| p.epoch >= 1);
    let best = trained()
        .map(|p| p.test_acc)
        .fold(f64::NEG_INFINITY, f64::max);
    let first_reaching = |threshold: f64| -> (f64, f64) {
        trained()
            .find(|p| p.test_acc >= threshold)
            .map(|p| (p.epoch as f64, p.seconds))
            .unwrap_or((f64::INFINITY, f64::INFINITY))
    };
    let (epochs_to_target, seconds_to_target) = match target_acc {
        Some(t) => first_reaching(t),
        None => (f64::NAN, f64::NAN),
    };
    let (epochs_to_95, seconds_to_95) = first_reaching(0.95 * best);
    let (epochs_to_99, seconds_to_99) = first_reaching(0.99 * best);

    let acc: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (p.epoch as f64, p.test_acc))
        .collect();
    let loss: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|p| p.train_loss.map(|l| (p.epoch as f64, l)))
        .collect();
    let last = points.last().copied();
    Convergence {
        epochs: last.map_or(0, |p| p.epoch),
        final_acc: last.map_or(f64::NAN, |p| p.test_acc),
        best_acc: best,
        epochs_to_target,
        seconds_to_target,
        epochs_to_95,
        seconds_to_95,
        epochs_to_99,
        seconds_to_99,
        auc_test_acc: normalised_trapezoid(&acc),
        auc_train_loss: normalised_trapezoid(&loss),
        final_train_loss: loss.last().map_or(f64::NAN, |&(_, l)| l),
    }
}

/// Trapezoid area under (x, y) points divided by the x span; one point gives its y; none, NaN.
fn normalised_trapezoid(points: &[(f64, f64)]) -> f64 {
    match points {
        [] => f64::NAN,
        [(_, y)] => *y,
        _ => {
            let area: f64 = points
                .windows(2)
                .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
                .sum();
            area / (points[points.len() - 1].0 - points[0].0)
        }
    }
}

/// Convergence of every run of the set, in run order.
pub fn convergence_by_run(runs: &RunSet, target_acc: Option<f64>) -> Result<Vec<Convergence>> {
    let e = &runs.epochs;
    let run = e.column("run")?.u32()?;
    let epoch = e.column("epoch")?.u32()?;
    let acc = e.column("test_acc")?.f64()?;
    let seconds = e.column("seconds")?.f64()?;
    let loss = e.column("train_loss")?.f64()?;
    let mut by_run: HashMap<u32, Vec<EpochPoint>> = HashMap::new();
    for i in 0..e.height() {
        let (Some(r), Some(ep)) = (run.get(i), epoch.get(i)) else {
            continue;
        };
        by_run.entry(r).or_default().push(EpochPoint {
            epoch: ep,
            test_acc: acc.get(i).unwrap_or(f64::NAN),
            seconds: seconds.get(i).unwrap_or(f64::NAN),
            // Epoch 0 has no training loss by definition, whatever the file says.
            train_loss: if ep == 0 { None } else { loss.get(i) },
        });
    }
    Ok(runs
        .runs
        .iter()
        .map(|r| {
            let mut points = by_run.remove(&r.index).unwrap_or_default();
            points.sort_by_key(|p| p.epoch);
            convergence(&points, target_acc)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn convergence_counts_never_reached_as_infinite() {
        let points: Vec<EpochPoint> = [0.1, 0.3, 0.5, 0.6]
            .iter()
            .enumerate()
            .map(|(e, &a)| EpochPoint {
                epoch: e as u32,
                test_acc: a,
                seconds: 10.0 * e as f64,
                train_loss: (e > 0).then_some(2.0 - 0.5 * e as f64),
            })
            .collect();
        let c = convergence(&points, Some(0.9));
        assert_eq!(c.epochs_to_target, f64::INFINITY);
        assert_eq!(c.seconds_to_target, f64::INFINITY);
        let c = convergence(&points, Some(0.5));
        assert_eq!((c.epochs_to_target, c.seconds_to_target), (2.0, 20.0));
        // 99 % of 0.6 = 0.594: epoch 3; 95 % = 0.57: epoch 3 too.
        assert_eq!(c.epochs_to_99, 3.0);
        assert_eq!(c.epochs_to_95, 3.0);
        // Test accuracy: trapezoid (0.2 + 0.4 + 0.55) / 3.
        assert!((c.auc_test_acc - (0.2 + 0.4 + 0.55) / 3.0).abs() < 1e-12);
        // Train loss 1.5, 1.0, 0.5 over epochs 1..3: area 1.25 + 0.75 = 2, over the span 2.
        assert!((c.auc_train_loss - 1.0).abs() < 1e-12);
        assert_eq!(c.final_train_loss, 0.5);

        // A run that collapses below its initial accuracy: 0.3 at epoch 0, then 0.1, 0.2,
        // 0.25. Its best after training is 0.25; 95 % of it (0.2375) is first reached at epoch
        // 3, not at epoch 0 by the untrained network.
        let collapsed: Vec<EpochPoint> = [0.3, 0.1, 0.2, 0.25]
            .iter()
            .enumerate()
            .map(|(e, &a)| EpochPoint {
                epoch: e as u32,
                test_acc: a,
                seconds: e as f64,
                train_loss: (e > 0).then_some(1.0),
            })
            .collect();
        let c = convergence(&collapsed, Some(0.28));
        assert_eq!(c.epochs_to_95, 3.0);
        assert_eq!(
            c.epochs_to_target,
            f64::INFINITY,
            "epoch 0's 0.3 does not count"
        );
    }
}
