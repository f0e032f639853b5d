//! The effect a verdict reports: the difference of a measure between two conditions, in the
//! measure's own units, with a 95 % percentile bootstrap interval (10 000 resamples, seeded).
//! Paired by seed, the mean of the per-seed differences, resampling the pairs; unpaired, the
//! difference of the means, resampling each condition on its own (a stratified bootstrap, as
//! rliable does for its aggregates). Also rliable's two aggregates: the interquartile mean with
//! a bootstrap interval, and the probability of improvement P(X > Y) with a stratified bootstrap
//! interval (Agarwal et al. 2021, "Deep RL at the edge of the statistical precipice").

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::stats::{
    bootstrap_mean_interval, percentile_of_sorted, prob_superiority, trim_mean_of_sorted,
    BOOTSTRAP_RESAMPLES, CONFIDENCE,
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
    let differences = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| mean(&resample(&mut rng, x)) - mean(&resample(&mut rng, y)))
        .collect();
    Difference {
        estimate,
        interval: percentile_interval(differences),
    }
}

/// The percentile interval of `statistic` over [`BOOTSTRAP_RESAMPLES`] resamples.
fn percentile_interval(mut values: Vec<f64>) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let tail = (1.0 - CONFIDENCE) / 2.0;
    (
        percentile_of_sorted(&values, tail),
        percentile_of_sorted(&values, 1.0 - tail),
    )
}

fn resample(rng: &mut ChaCha8Rng, s: &[f64]) -> Vec<f64> {
    (0..s.len()).map(|_| s[rng.gen_range(0..s.len())]).collect()
}

/// The interquartile mean (`trim_mean(x, 0.25)`) with a 95 % percentile bootstrap interval
/// (runs resampled with replacement); NaN interval with fewer than two values or a NaN.
pub fn iqm_interval(x: &[f64], seed: u64) -> (f64, f64) {
    if x.len() < 2 || x.iter().any(|v| v.is_nan()) {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let iqms = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            let mut r = resample(&mut rng, x);
            r.sort_by(f64::total_cmp);
            trim_mean_of_sorted(&r, 0.25)
        })
        .collect();
    percentile_interval(iqms)
}

/// P(X > Y) (ties half) with a 95 % stratified bootstrap interval: each condition's runs
/// resampled on their own. NaN interval with fewer than two values on a side.
pub fn prob_improvement_interval(x: &[f64], y: &[f64], seed: u64) -> (f64, f64) {
    if x.len() < 2 || y.len() < 2 || x.iter().chain(y).any(|v| v.is_nan()) {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let values = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            let (rx, ry) = (resample(&mut rng, x), resample(&mut rng, y));
            prob_superiority(&rx, &ry)
        })
        .collect();
    percentile_interval(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rliable_aggregates_stay_within_what_resamples_can_give() {
        // Complete separation: every resample has P(X > Y) = 1, so the interval is [1, 1].
        assert_eq!(
            prob_improvement_interval(&[3.0, 4.0], &[1.0, 2.0], 3),
            (1.0, 1.0)
        );
        // IQM of 8 values: any resample's IQM lies between the smallest and largest value.
        let x = [0.1, 0.5, 0.52, 0.55, 0.6, 0.61, 0.7, 0.9];
        let (low, high) = iqm_interval(&x, 3);
        assert!(0.1 <= low && low < high && high <= 0.9, "({low}, {high})");
        assert!(iqm_interval(&[0.5], 3).0.is_nan());
    }

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
