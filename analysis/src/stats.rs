//! Statistics across seeds (SPEC §4).
//!
//! Every measure of the study (fraction of dead neurons, epochs to a target accuracy, final
//! loss, …) is taken once per training run, and each (dataset, activation) cell holds one run
//! per seed. This module summarises such a set of per-seed values ([`summarize`]) and compares
//! two activations on one measure ([`compare`]): Welch's t-test, the Mann–Whitney U test,
//! P(X > Y), Cliff's delta and Hedges' g. [`holm_adjust`] corrects the p values of a whole
//! table of comparisons for multiplicity.
//!
//! The reference for every figure is `scipy.stats` (`ttest_ind(equal_var=False)`,
//! `mannwhitneyu(method="auto")`, `trim_mean`, `t.interval`); the tests check agreement to
//! 1e-6 relative against values printed by `analysis/tests/scipy_reference.py`.
//!
//! # Non-finite values
//!
//! A run that never reaches its target records "epochs to target = ∞", so +∞ is a legitimate
//! value here and nothing in this module panics on it. Order-based figures treat ∞ as larger
//! than every finite value (median, interquartile mean, ranks, P(X > Y), Cliff's delta, the
//! bootstrap percentiles), while moment-based figures (mean, std, t interval, Welch, Hedges' g)
//! become ∞ or NaN as IEEE arithmetic dictates. NaN, in contrast, means "missing": any NaN in
//! a sample makes every figure computed from that sample NaN (as with scipy's default
//! `nan_policy="propagate"`).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use statrs::distribution::{ContinuousCDF, StudentsT};
use statrs::function::beta::checked_beta_reg;
use statrs::function::erf::erfc;

/// Coverage of the t and bootstrap intervals reported by [`summarize`].
pub const CONFIDENCE: f64 = 0.95;

/// Number of bootstrap resamples behind [`Summary::bootstrap_ci`].
pub const BOOTSTRAP_RESAMPLES: usize = 10_000;

/// Largest size of the smaller sample for which [`mann_whitney_u`] uses the exact null
/// distribution of U (scipy's `method="auto"` rule, together with "no ties").
pub const MANN_WHITNEY_EXACT_MAX_N: usize = 8;

/// Fraction cut from each end for the interquartile mean (`scipy.stats.trim_mean(x, 0.25)`).
const IQM_CUT: f64 = 0.25;

// ---------------------------------------------------------------------------------------------
// Summary of one cell (one dataset × activation, one value per seed)
// ---------------------------------------------------------------------------------------------

/// Summary of the per-seed values of one measure in one (dataset, activation) cell.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Number of runs (seeds).
    pub n: usize,
    /// Arithmetic mean; NaN when `n == 0`.
    pub mean: f64,
    /// Sample standard deviation (ddof = 1); NaN when `n < 2`.
    pub std: f64,
    /// Median (mean of the two middle values for even `n`); NaN when `n == 0`.
    pub median: f64,
    /// Interquartile mean: mean of the values left after cutting `floor(n / 4)` from each end
    /// of the sorted sample, as `scipy.stats.trim_mean(x, 0.25)`; NaN when `n == 0`.
    pub iqm: f64,
    /// 95 % Student t interval for the mean, `mean ± t(0.975, n − 1) · std / √n`
    /// (`scipy.stats.t.interval(0.95, n − 1, mean, sem)`); NaN when `n < 2`. A sample of equal
    /// values gives the degenerate interval `(mean, mean)`.
    pub t_ci: (f64, f64),
    /// 95 % percentile bootstrap interval for the mean: the 2.5th and 97.5th percentiles
    /// (linear interpolation, as numpy's default) of the means of [`BOOTSTRAP_RESAMPLES`]
    /// resamples drawn with replacement by a `ChaCha8Rng` seeded with the `seed` given to
    /// [`summarize`]; NaN when `n < 2`. With +∞ in the sample the upper end may be +∞.
    pub bootstrap_ci: (f64, f64),
}

/// Summarises the per-seed values `x` of one measure; `seed` seeds the bootstrap, so the same
/// `x` and `seed` always give the same [`Summary`].
///
/// Never panics: `n == 0` gives NaN everywhere, `n == 1` gives mean, median and IQM equal to
/// the single value and NaN std and intervals. See the module documentation for ∞ and NaN.
pub fn summarize(x: &[f64], seed: u64) -> Summary {
    let n = x.len();
    let mean = mean(x);
    let std = sample_variance(x).sqrt();
    let (median, iqm) = match sorted_finite_or_inf(x) {
        Some(sorted) => (
            median_of_sorted(&sorted),
            trim_mean_of_sorted(&sorted, IQM_CUT),
        ),
        None => (f64::NAN, f64::NAN),
    };
    Summary {
        n,
        mean,
        std,
        median,
        iqm,
        t_ci: t_interval(mean, std, n),
        bootstrap_ci: bootstrap_mean_interval(x, seed),
    }
}

/// Arithmetic mean; NaN for an empty sample.
fn mean(x: &[f64]) -> f64 {
    if x.is_empty() {
        return f64::NAN;
    }
    x.iter().sum::<f64>() / x.len() as f64
}

/// Sum of squared deviations from the mean (two-pass, as numpy); 0 for a single value.
fn sum_of_squares(x: &[f64]) -> f64 {
    let m = mean(x);
    x.iter().map(|v| (v - m) * (v - m)).sum()
}

/// Sample variance with ddof = 1; NaN when fewer than two values.
fn sample_variance(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return f64::NAN;
    }
    sum_of_squares(x) / (x.len() - 1) as f64
}

/// The sample sorted ascending, or `None` when it holds a NaN (a missing value has no rank).
fn sorted_finite_or_inf(x: &[f64]) -> Option<Vec<f64>> {
    if x.iter().any(|v| v.is_nan()) {
        return None;
    }
    let mut sorted = x.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(sorted)
}

/// Median of an ascending sample; NaN when empty.
fn median_of_sorted(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => midpoint(sorted[n / 2 - 1], sorted[n / 2]),
    }
}

/// Mean of two ordered values that stays ∞ when both are ∞ (∞ − ∞ would be NaN).
fn midpoint(lo: f64, hi: f64) -> f64 {
    if lo == hi {
        lo
    } else {
        (lo + hi) / 2.0
    }
}

/// `scipy.stats.trim_mean`: cut `floor(cut · n)` values from each end of the ascending sample
/// and average the rest; NaN when empty.
pub(crate) fn trim_mean_of_sorted(sorted: &[f64], cut: f64) -> f64 {
    let n = sorted.len();
    let drop = (cut * n as f64).floor() as usize;
    mean(&sorted[drop..n - drop])
}

/// Student t interval for the mean at [`CONFIDENCE`]; NaN when `n < 2` or `std` is not finite.
fn t_interval(mean: f64, std: f64, n: usize) -> (f64, f64) {
    if n < 2 || !std.is_finite() || !mean.is_finite() {
        return (f64::NAN, f64::NAN);
    }
    let quantile = match StudentsT::new(0.0, 1.0, (n - 1) as f64) {
        Ok(t) => t.inverse_cdf(0.5 + CONFIDENCE / 2.0),
        Err(_) => return (f64::NAN, f64::NAN),
    };
    let half_width = quantile * std / (n as f64).sqrt();
    (mean - half_width, mean + half_width)
}

/// Percentile bootstrap interval for the mean at [`CONFIDENCE`] (see [`Summary::bootstrap_ci`]).
pub(crate) fn bootstrap_mean_interval(x: &[f64], seed: u64) -> (f64, f64) {
    let n = x.len();
    // One value resamples to itself: no spread to report, like the t interval.
    if n < 2 || x.iter().any(|v| v.is_nan()) {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut resample_means: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| (0..n).map(|_| x[rng.gen_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    resample_means.sort_by(f64::total_cmp);
    let tail = (1.0 - CONFIDENCE) / 2.0;
    (
        percentile_of_sorted(&resample_means, tail),
        percentile_of_sorted(&resample_means, 1.0 - tail),
    )
}

/// Quantile `q` in [0, 1] of a non-empty ascending sample, interpolating linearly between
/// order statistics (numpy's default `method="linear"`).
pub(crate) fn percentile_of_sorted(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    let (lo, hi) = (sorted[below], sorted[above]);
    if lo == hi {
        // Also keeps an ∞ end from turning into NaN through ∞ − ∞.
        return lo;
    }
    lo + (position - below as f64) * (hi - lo)
}

// ---------------------------------------------------------------------------------------------
// Comparing two activations on one measure
// ---------------------------------------------------------------------------------------------

/// Welch's unequal-variances t-test, two-sided (`scipy.stats.ttest_ind(x, y, equal_var=False)`).
#[derive(Debug, Clone, Serialize)]
pub struct WelchResult {
    /// `(mean(x) − mean(y)) / √(s²x/n₁ + s²y/n₂)`; positive when `x` is larger.
    pub t: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    /// Two-sided p value, `P(|T_df| ≥ |t|)`.
    pub p: f64,
}

/// Welch's t-test of equal means, two-sided, as `scipy.stats.ttest_ind(x, y, equal_var=False)`.
///
/// Degenerate inputs follow scipy: when the degrees of freedom come out NaN (both samples
/// constant, or a sample of one value) they are reported as 1; two constant samples with
/// different values give `t = ±∞, p = 0`, with equal values `t = NaN, p = NaN`. A sample of
/// fewer than two values gives `t = p = NaN`.
pub fn welch_t_test(x: &[f64], y: &[f64]) -> WelchResult {
    let (n1, n2) = (x.len() as f64, y.len() as f64);
    // Squared standard errors of the two means.
    let se1 = sample_variance(x) / n1;
    let se2 = sample_variance(y) / n2;
    let t = (mean(x) - mean(y)) / (se1 + se2).sqrt();
    let mut df = (se1 + se2).powi(2) / (se1 * se1 / (n1 - 1.0) + se2 * se2 / (n2 - 1.0));
    if df.is_nan() {
        df = 1.0; // scipy's convention, kept so that results compare one to one
    }
    WelchResult {
        t,
        df,
        p: student_t_two_sided_p(t, df),
    }
}

/// `P(|T_df| ≥ |t|)` through the regularized incomplete beta function,
/// `I_{df/(df+t²)}(df/2, 1/2)`, which keeps full relative precision for tiny p (computing
/// `2·(1 − cdf)` would lose it).
fn student_t_two_sided_p(t: f64, df: f64) -> f64 {
    if t.is_nan() || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if t.is_infinite() {
        return 0.0;
    }
    checked_beta_reg(df / 2.0, 0.5, df / (df + t * t)).unwrap_or(f64::NAN)
}

/// Mann–Whitney U test, two-sided (`scipy.stats.mannwhitneyu(x, y, method="auto")`).
#[derive(Debug, Clone, Serialize)]
pub struct MannWhitneyResult {
    /// U of the first sample: #(x > y) + ½ #(x = y) over all pairs.
    pub u: f64,
    /// Two-sided p value.
    pub p: f64,
    /// Whether `p` comes from the exact null distribution of U (otherwise from the normal
    /// approximation with tie and continuity corrections).
    pub exact: bool,
}

/// Mann–Whitney U test of `x` against `y`, two-sided, following scipy's `method="auto"`:
///
/// * **exact** when the smaller sample has at most [`MANN_WHITNEY_EXACT_MAX_N`] values and
///   the pooled data have no ties: `p = min(1, 2 · P(U ≤ min(U₁, n₁n₂ − U₁)))` under the null
///   distribution of U (all C(n₁+n₂, n₁) arrangements equally likely), which by the symmetry
///   of that distribution equals scipy's `2 · min(P(U ≥ u), P(U ≤ u))`;
/// * otherwise the **normal approximation**: with `U = max(U₁, n₁n₂ − U₁)`,
///   `z = (U − n₁n₂/2 − ½) / σ`, `σ² = n₁n₂/12 · ((n + 1) − Σ(t³ − t) / (n(n − 1)))` where
///   `t` runs over the sizes of tied groups in the pooled data, and `p = min(1, 2 Φ(−z))`.
///
/// An empty sample or a NaN gives NaN `u` and `p`. If both samples are one repeated value
/// (σ = 0) the p value is 1, as scipy reports. The exact counts are integers held in `i128`;
/// should they ever overflow (only for a larger sample of hundreds of thousands of values)
/// the normal approximation is used and `exact` is false.
pub fn mann_whitney_u(x: &[f64], y: &[f64]) -> MannWhitneyResult {
    let missing = MannWhitneyResult {
        u: f64::NAN,
        p: f64::NAN,
        exact: false,
    };
    let Some(pairs) = PairCounts::of(x, y) else {
        return missing;
    };
    if pairs.total() == 0 {
        return missing;
    }
    let (n1, n2) = (x.len(), y.len());
    // U₁ counts ties as half a win, so 2·U₁ is an integer.
    let twice_u1 = 2 * pairs.x_greater + pairs.ties;
    let u = twice_u1 as f64 / 2.0;
    let tie_term = pooled_tie_term(x, y);

    if n1.min(n2) <= MANN_WHITNEY_EXACT_MAX_N && tie_term == 0.0 {
        // Without ties U₁ is an integer; the smaller tail is the one to sum.
        let u1 = twice_u1 / 2;
        let smaller_tail = u1.min(pairs.total() - u1);
        if let Some(p) = mann_whitney_exact_p(smaller_tail, n1, n2) {
            return MannWhitneyResult { u, p, exact: true };
        }
    }

    let (n1, n2) = (n1 as f64, n2 as f64);
    let n = n1 + n2;
    let upper_u = u.max(n1 * n2 - u);
    // Rounding can take the tie-corrected variance a hair below 0 when all values tie.
    let variance = (n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)))).max(0.0);
    // Continuity correction: U is discrete, so the upper tail starts half a step lower.
    let z = (upper_u - n1 * n2 / 2.0 - 0.5) / variance.sqrt();
    // 2 Φ(−z) = erfc(z / √2), accurate far into the tail.
    let p = erfc(z / std::f64::consts::SQRT_2).clamp(0.0, 1.0);
    MannWhitneyResult { u, p, exact: false }
}

/// Counts over all (x, y) pairs, the raw material of U, P(X > Y) and Cliff's delta.
struct PairCounts {
    x_greater: u64,
    x_less: u64,
    ties: u64,
}

impl PairCounts {
    /// Counts the pairs by binary search in the sorted `y` (O((n₁ + n₂) log n₂)); `None` when
    /// either sample holds a NaN, which is neither greater, less nor equal.
    fn of(x: &[f64], y: &[f64]) -> Option<PairCounts> {
        if x.iter().any(|v| v.is_nan()) {
            return None;
        }
        let sorted_y = sorted_finite_or_inf(y)?;
        let mut counts = PairCounts {
            x_greater: 0,
            x_less: 0,
            ties: 0,
        };
        for &a in x {
            let below = sorted_y.partition_point(|&b| b < a);
            let not_above = sorted_y.partition_point(|&b| b <= a);
            counts.x_greater += below as u64;
            counts.ties += (not_above - below) as u64;
            counts.x_less += (sorted_y.len() - not_above) as u64;
        }
        Some(counts)
    }

    /// n₁ · n₂.
    fn total(&self) -> u64 {
        self.x_greater + self.x_less + self.ties
    }
}

/// Σ(t³ − t) over the groups of equal values in the pooled sample (0 when there are no ties).
fn pooled_tie_term(x: &[f64], y: &[f64]) -> f64 {
    let mut pooled: Vec<f64> = x.iter().chain(y).copied().collect();
    pooled.sort_by(f64::total_cmp);
    pooled
        .chunk_by(|a, b| a == b)
        .map(|group| {
            let t = group.len() as f64;
            t * t * t - t
        })
        .sum()
}

/// Exact two-sided p value `min(1, 2 · P(U ≤ smaller_tail))` under the null hypothesis, or
/// `None` if the arrangement counts overflow `i128`.
fn mann_whitney_exact_p(smaller_tail: u64, n1: usize, n2: usize) -> Option<f64> {
    let (small, large) = (n1.min(n2), n1.max(n2));
    let counts = null_u_counts(small, large, smaller_tail as usize)?;
    let at_most = counts
        .iter()
        .try_fold(0i128, |acc, &c| acc.checked_add(c))?;
    let arrangements = binomial(small + large, small)?;
    Some((2.0 * (at_most as f64 / arrangements as f64)).min(1.0))
}

/// Number of arrangements of `m` and `n` values giving U = 0, 1, …, `max_u` (the null
/// distribution of U, unnormalised; it is symmetric in `m` and `n`).
///
/// These counts are the coefficients of the Gaussian binomial coefficient
/// `[m + n choose m]_q = Π_{i=1..m} (1 − q^{n+i}) / (1 − q^i)`, built one factor at a time:
/// after step `i` the polynomial is `[n + i choose i]_q`, whose coefficients are non-negative
/// and at most C(n + i, i), so the integers stay exact. Only degrees up to `max_u` are kept;
/// both operations read lower degrees only, so truncation does not disturb them. The cost is
/// O(m · max_u), far below the O(m · n · max_u) of the textbook two-dimensional recurrence.
fn null_u_counts(m: usize, n: usize, max_u: usize) -> Option<Vec<i128>> {
    let mut counts = vec![0i128; max_u + 1];
    counts[0] = 1;
    for i in 1..=m {
        // Multiply by (1 − q^(n+i)); descending so that counts[u − k] is still the old value.
        let k = n + i;
        for u in (k..=max_u).rev() {
            counts[u] = counts[u].checked_sub(counts[u - k])?;
        }
        // Divide by (1 − q^i): b[u] = a[u] + b[u − i], ascending so b[u − i] is already new.
        for u in i..=max_u {
            counts[u] = counts[u].checked_add(counts[u - i])?;
        }
    }
    Some(counts)
}

/// C(n, k) exactly, or `None` on overflow.
fn binomial(n: usize, k: usize) -> Option<i128> {
    let k = k.min(n - k);
    let mut c: i128 = 1;
    for i in 1..=k {
        // C(n − k + i, i) = C(n − k + i − 1, i − 1) · (n − k + i) / i, exact at every step.
        c = c.checked_mul((n - k + i) as i128)? / i as i128;
    }
    Some(c)
}

/// Probability of superiority P(X > Y) + ½ P(X = Y) for one run drawn from each sample,
/// i.e. `U₁ / (n₁n₂)` (the common-language effect size, also the AUC). 0.5 means no
/// tendency either way. NaN when a sample is empty or holds a NaN.
pub fn prob_superiority(x: &[f64], y: &[f64]) -> f64 {
    match PairCounts::of(x, y) {
        Some(c) if c.total() > 0 => (c.x_greater as f64 + 0.5 * c.ties as f64) / c.total() as f64,
        _ => f64::NAN,
    }
}

/// Cliff's delta, `(#(x > y) − #(x < y)) / (n₁n₂)` over all pairs, in [−1, 1];
/// equals `2 · prob_superiority(x, y) − 1`. NaN when a sample is empty or holds a NaN.
pub fn cliffs_delta(x: &[f64], y: &[f64]) -> f64 {
    match PairCounts::of(x, y) {
        Some(c) if c.total() > 0 => (c.x_greater as f64 - c.x_less as f64) / c.total() as f64,
        _ => f64::NAN,
    }
}

/// Hedges' g, the standardized mean difference with small-sample bias correction:
///
/// ```text
/// s_p = √( (Σ(x − x̄)² + Σ(y − ȳ)²) / (n₁ + n₂ − 2) )      pooled sd, ddof 1 per sample
/// d   = (x̄ − ȳ) / s_p                                     Cohen's d
/// J   = 1 − 3 / (4(n₁ + n₂) − 9)                          Hedges' correction
/// g   = J · d
/// ```
///
/// Positive when `x` is larger. NaN when `n₁ + n₂ < 3` or a sample is empty; when both
/// samples are constant (`s_p = 0`) it is ±∞ for different values and NaN for equal ones.
pub fn hedges_g(x: &[f64], y: &[f64]) -> f64 {
    let (n1, n2) = (x.len(), y.len());
    if n1 == 0 || n2 == 0 || n1 + n2 < 3 {
        return f64::NAN;
    }
    let pooled_sd = ((sum_of_squares(x) + sum_of_squares(y)) / (n1 + n2 - 2) as f64).sqrt();
    let cohens_d = (mean(x) - mean(y)) / pooled_sd;
    let correction = 1.0 - 3.0 / (4.0 * (n1 + n2) as f64 - 9.0);
    correction * cohens_d
}

/// Holm–Bonferroni step-down adjusted p values, in the order of the input.
///
/// With the m non-NaN p values sorted ascending, `p₍ᵢ₎` (i = 1..m) becomes
/// `max_{j ≤ i} min(1, (m − j + 1) · p₍ⱼ₎)`, so the adjusted values are monotone in the raw
/// ones and capped at 1. A NaN p value (a comparison that could not be made) stays NaN and is
/// not counted in the family size m.
pub fn holm_adjust(p: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..p.len()).filter(|&i| !p[i].is_nan()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let family = order.len();
    let mut adjusted = vec![f64::NAN; p.len()];
    let mut running_max = 0.0_f64;
    for (rank, &i) in order.iter().enumerate() {
        let scaled = ((family - rank) as f64 * p[i]).min(1.0);
        running_max = running_max.max(scaled);
        adjusted[i] = running_max;
    }
    adjusted
}

/// Everything SPEC §4 reports for one measure between two activations `x` and `y` (each a
/// set of per-seed values); every effect is oriented so that positive means "x larger".
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Welch's t-test.
    pub welch: WelchResult,
    /// Mann–Whitney U test (U of `x`).
    pub mann_whitney: MannWhitneyResult,
    /// P(X > Y) with ties counted half.
    pub prob_superiority: f64,
    /// Cliff's delta.
    pub cliffs_delta: f64,
    /// Hedges' g.
    pub hedges_g: f64,
}

/// Compares two activations on one per-run measure (see [`Comparison`]). The p values are
/// raw; adjust them over a table's family with [`holm_adjust`].
pub fn compare(x: &[f64], y: &[f64]) -> Comparison {
    Comparison {
        welch: welch_t_test(x, y),
        mann_whitney: mann_whitney_u(x, y),
        prob_superiority: prob_superiority(x, y),
        cliffs_delta: cliffs_delta(x, y),
        hedges_g: hedges_g(x, y),
    }
}

#[cfg(test)]
#[path = "stats_tests.rs"]
mod tests;
