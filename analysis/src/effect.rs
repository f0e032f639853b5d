//! The effect a verdict reports: the difference of a measure between two conditions, in the
//! measure's own units, with a 95 % percentile bootstrap interval (10 000 resamples, seeded).
//! Paired by seed, the mean of the per-seed differences, resampling the pairs; unpaired, the
//! difference of the means, resampling each condition on its own (a stratified bootstrap, as
//! rliable does for its aggregates).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::stats::{
    bootstrap_mean_interval, percentile_of_sorted, BOOTSTRAP_RESAMPLES, CONFIDENCE,
};

/// A difference x − y with its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Difference {
    pub estimate: f64,
    pub interval: (f64, f64),
}

impl Difference {
    /// Whether the interval leaves out 0.
    pub fn excludes_zero(&self) -> bool {
        self.interval.0 > 0.0 || self.interval.1 < 0.0
    }
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// The mean of the paired differences `x[i] − y[i]` with its bootstrap interval.
pub fn paired_difference(x: &[f64], y: &[f64], seed: u64) -> Difference {
    let d: Vec<f64> = x.iter().zip(y).map(|(a, b)| a - b).collect();
    Difference {
        estimate: mean(&d),
        interval: bootstrap_mean_interval(&d, seed),
    }
}

/// mean(x) − mean(y) with a stratified bootstrap interval; NaN with fewer than two values on a
/// side or any non-finite value.
pub fn unpaired_difference(x: &[f64], y: &[f64], seed: u64) -> Difference {
    let estimate = mean(x) - mean(y);
    let finite = |s: &[f64]| s.len() >= 2 && s.iter().all(|v| v.is_finite());
    if !finite(x) || !finite(y) {
        return Difference {
            estimate,
            interval: (f64::NAN, f64::NAN),
        };
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut resample = |s: &[f64]| {
        (0..s.len())
            .map(|_| s[rng.gen_range(0..s.len())])
            .sum::<f64>()
            / s.len() as f64
    };
    let mut differences: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| resample(x) - resample(y))
        .collect();
    differences.sort_by(f64::total_cmp);
    let tail = (1.0 - CONFIDENCE) / 2.0;
    Difference {
        estimate,
        interval: (
            percentile_of_sorted(&differences, tail),
            percentile_of_sorted(&differences, 1.0 - tail),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_differences_and_their_interval() {
        // Differences 0.1, 0.09, 0.11: mean 0.1; every resample's mean lies within [0.09, 0.11].
        let d = paired_difference(&[0.9, 0.91, 0.92], &[0.8, 0.82, 0.81], 1);
        assert!((d.estimate - 0.1).abs() < 1e-12);
        assert!(d.interval.0 >= 0.09 - 1e-12 && d.interval.1 <= 0.11 + 1e-12);
        assert!(d.excludes_zero());
    }

    #[test]
    fn unpaired_interval_is_bounded_by_the_extreme_resamples() {
        // Any resampled mean of x lies in [1, 3] and of y in [0, 0.5]: differences in [0.5, 3].
        let d = unpaired_difference(&[1.0, 2.0, 3.0], &[0.0, 0.5], 7);
        assert!((d.estimate - 1.75).abs() < 1e-12);
        assert!(d.interval.0 >= 0.5 && d.interval.1 <= 3.0 && d.interval.0 < d.interval.1);
        assert_eq!(
            d,
            unpaired_difference(&[1.0, 2.0, 3.0], &[0.0, 0.5], 7),
            "seeded"
        );
        assert!(unpaired_difference(&[1.0], &[0.0, 0.5], 7)
            .interval
            .0
            .is_nan());
    }
}
