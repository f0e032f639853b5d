//! Paired comparisons across seeds (SPEC §4): when two conditions were run with the same seeds,
//! the seed is a block (the same batch order, and the same initial weights when only the
//! activation differs), so the per-seed differences are tested: the Wilcoxon signed-rank test and
//! the paired t-test, with the effect size g_z.
//!
//! The reference is `scipy.stats` 1.17: `wilcoxon(x, y)` (zero_method "wilcox", no continuity
//! correction, method "auto") and `ttest_rel(x, y)`; the tests hold values it printed. `auto`
//! means: with at most 50 differences and neither zeros nor ties, the exact null distribution of
//! W+; with zeros or ties and at most 13 differences, the exact sign-flip permutation
//! distribution (all 2ⁿ flips); otherwise the normal approximation with the tie correction.
//! One deliberate difference: differences that do not vary (sd 0) give no t-test (NaN) where
//! scipy reports t = ±∞ and p = 0; a p of 0 from three equal differences would mislead.

use serde::Serialize;
use statrs::function::beta::checked_beta_reg;
use statrs::function::erf::erfc;

/// The Wilcoxon signed-rank test of paired differences, two-sided.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct WilcoxonResult {
    /// min(W+, W−), scipy's two-sided statistic (ranks of |d|, zeros dropped, ties averaged).
    pub statistic: f64,
    pub p: f64,
    /// Whether `p` is exact (the signed-rank or the permutation distribution), not the normal
    /// approximation.
    pub exact: bool,
}

/// The paired t-test (`ttest_rel`), two-sided.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PairedT {
    /// mean(d) / (sd(d)/√n); NaN when the differences do not vary (no t-test: the rank test
    /// stands).
    pub t: f64,
    pub df: f64,
    pub p: f64,
}

/// Everything reported for a paired comparison of `x` against `y` (positive: x larger).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PairedComparison {
    /// Number of pairs (seeds both conditions ran).
    pub n: usize,
    pub wilcoxon: WilcoxonResult,
    pub t: PairedT,
    /// Hedges' g_z: mean(d)/sd(d) times the small-sample correction 1 − 3/(4(n − 1) − 1).
    pub g_z: f64,
}

/// Compares paired samples (`x[i]` and `y[i]` share seed i). NaN anywhere gives NaN results;
/// fewer than two pairs give no test (NaN).
pub fn compare_paired(x: &[f64], y: &[f64]) -> PairedComparison {
    assert_eq!(
        x.len(),
        y.len(),
        "paired samples have one value per seed each"
    );
    let d: Vec<f64> = x.iter().zip(y).map(|(a, b)| a - b).collect();
    PairedComparison {
        n: d.len(),
        wilcoxon: wilcoxon(&d),
        t: paired_t(&d),
        g_z: g_z(&d),
    }
}

fn mean(d: &[f64]) -> f64 {
    d.iter().sum::<f64>() / d.len() as f64
}

fn sd(d: &[f64]) -> f64 {
    let m = mean(d);
    (d.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (d.len() as f64 - 1.0)).sqrt()
}

fn paired_t(d: &[f64]) -> PairedT {
    let n = d.len() as f64;
    let nan = PairedT {
        t: f64::NAN,
        df: n - 1.0,
        p: f64::NAN,
    };
    if d.len() < 2 || d.iter().any(|v| !v.is_finite()) {
        return nan;
    }
    let s = sd(d);
    if s == 0.0 {
        return nan;
    }
    let t = mean(d) / (s / n.sqrt());
    let df = n - 1.0;
    let p = checked_beta_reg(df / 2.0, 0.5, df / (df + t * t)).unwrap_or(f64::NAN);
    PairedT { t, df, p }
}

fn g_z(d: &[f64]) -> f64 {
    if d.len() < 2 || d.iter().any(|v| !v.is_finite()) {
        return f64::NAN;
    }
    let s = sd(d);
    if s == 0.0 {
        return f64::NAN;
    }
    let df = d.len() as f64 - 1.0;
    (1.0 - 3.0 / (4.0 * df - 1.0)) * mean(d) / s
}

/// Average ranks (1-based) of `values`, as scipy's `rankdata(method="average")`.
fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    ranks
}

/// The two-sided Wilcoxon signed-rank test of the differences `d` (see the module docs).
pub fn wilcoxon(d: &[f64]) -> WilcoxonResult {
    let missing = WilcoxonResult {
        statistic: f64::NAN,
        p: f64::NAN,
        exact: false,
    };
    if d.is_empty() || d.iter().any(|v| v.is_nan()) {
        return missing;
    }
    let zeros = d.iter().filter(|v| **v == 0.0).count();
    let nonzero: Vec<f64> = d.iter().copied().filter(|v| *v != 0.0).collect();
    let count = nonzero.len();
    if count == 0 {
        // Every difference is zero: nothing to rank. scipy reports NaN.
        return missing;
    }
    let abs: Vec<f64> = nonzero.iter().map(|v| v.abs()).collect();
    let ranks = average_ranks(&abs);
    let r_plus: f64 = nonzero
        .iter()
        .zip(&ranks)
        .filter(|(v, _)| **v > 0.0)
        .map(|(_, r)| r)
        .sum();
    let total = (count * (count + 1)) as f64 / 2.0;
    let statistic = r_plus.min(total - r_plus);
    let ties = tie_sizes(&abs);
    let has_ties = ties.iter().any(|&t| t > 1);
    let n = d.len();
    if n <= 50 && !has_ties && zeros == 0 {
        return WilcoxonResult {
            statistic,
            p: exact_signed_rank_p(count, r_plus),
            exact: true,
        };
    }
    if n <= 13 {
        return WilcoxonResult {
            statistic,
            p: sign_flip_p(&nonzero, &ranks, r_plus),
            exact: true,
        };
    }
    // Normal approximation: mean n(n+1)/4 and variance (n(n+1)(2n+1) − Σ(t³ − t)/2)/24 over the
    // nonzero differences, no continuity correction.
    let c = count as f64;
    let tie_term: f64 = ties.iter().map(|&t| (t * t * t - t) as f64).sum();
    let se = ((c * (c + 1.0) * (2.0 * c + 1.0) - tie_term / 2.0) / 24.0).sqrt();
    let z = (r_plus - c * (c + 1.0) / 4.0) / se;
    WilcoxonResult {
        statistic,
        p: erfc(z.abs() / std::f64::consts::SQRT_2).clamp(0.0, 1.0),
        exact: false,
    }
}

/// Sizes of the groups of equal values in `values` (as stats' tie term groups them).
fn tie_sizes(values: &[f64]) -> Vec<usize> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.chunk_by(|a, b| a == b).map(<[f64]>::len).collect()
}

/// `min(1, 2·min(P(W+ ≥ w), P(W+ ≤ w)))` under the null distribution of W+ for n distinct ranks
/// 1..n: the number of subsets of {1..n} with each sum, over 2ⁿ.
fn exact_signed_rank_p(n: usize, w: f64) -> f64 {
    let max = n * (n + 1) / 2;
    // counts[s] = number of subsets with rank sum s, in f64 (2⁵⁰ is exact in f64).
    let mut counts = vec![0.0f64; max + 1];
    counts[0] = 1.0;
    for rank in 1..=n {
        for s in (rank..=max).rev() {
            counts[s] += counts[s - rank];
        }
    }
    let total = 2f64.powi(n as i32);
    let w = w.round() as usize;
    let lower: f64 = counts[..=w.min(max)].iter().sum::<f64>() / total;
    let upper: f64 = counts[w.min(max)..].iter().sum::<f64>() / total;
    (2.0 * lower.min(upper)).min(1.0)
}

/// The exact sign-flip permutation p: every assignment of signs to the differences, W+ of each,
/// `min(1, 2·min(P(W+ ≥ w), P(W+ ≤ w)))` (with scipy's relative tolerance for equal values).
fn sign_flip_p(nonzero: &[f64], ranks: &[f64], observed: f64) -> f64 {
    let n = nonzero.len();
    let flips = 1u64 << n;
    let tolerance = observed.abs() * 1e-14 + 1e-14;
    let (mut at_least, mut at_most) = (0u64, 0u64);
    for mask in 0..flips {
        let w: f64 = (0..n)
            .filter(|i| mask >> i & 1 == 1)
            .map(|i| ranks[i])
            .sum();
        at_least += (w >= observed - tolerance) as u64;
        at_most += (w <= observed + tolerance) as u64;
    }
    (2.0 * (at_least.min(at_most) as f64) / flips as f64).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64) -> bool {
        (got - want).abs() <= 1e-6 * want.abs().max(1e-12)
    }

    // Reference values printed by scipy 1.17.1 (numpy 2.x):
    //   import scipy.stats as st
    //   r = st.wilcoxon(x, y); t = st.ttest_rel(x, y)
    //   print(r.statistic, r.pvalue, t.statistic, t.pvalue)
    struct Case {
        name: &'static str,
        x: &'static [f64],
        y: &'static [f64],
        wilcoxon: (f64, f64),
        t: (f64, f64),
    }

    include!("../tests/paired_reference_values.in");

    #[test]
    fn paired_tests_match_scipy() {
        for c in CASES {
            let r = compare_paired(c.x, c.y);
            assert!(
                close(r.wilcoxon.statistic, c.wilcoxon.0),
                "{}: W {} vs {}",
                c.name,
                r.wilcoxon.statistic,
                c.wilcoxon.0
            );
            assert!(
                close(r.wilcoxon.p, c.wilcoxon.1),
                "{}: p {} vs {}",
                c.name,
                r.wilcoxon.p,
                c.wilcoxon.1
            );
            if !c.t.0.is_finite() {
                // scipy reports t = ±∞ (p = 0) for constant differences; here there is no
                // t-test then (NaN), and the rank test stands.
                assert!(r.t.t.is_nan(), "{}", c.name);
            } else {
                assert!(close(r.t.t, c.t.0), "{}: t {} vs {}", c.name, r.t.t, c.t.0);
                assert!(close(r.t.p, c.t.1), "{}: p {} vs {}", c.name, r.t.p, c.t.1);
            }
        }
    }

    #[test]
    fn eight_seeds_can_reach_p_below_one_percent() {
        // All 8 differences positive: W+ = 36, the largest of 2⁸ = 256 equally likely sign
        // patterns, so the exact two-sided p is 2/256 = 0.0078125 (5 seeds: 2/32 = 0.0625).
        let x = [1.1, 2.2, 3.3, 4.4, 5.5, 6.6, 7.7, 8.8];
        let y = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let r = compare_paired(&x, &y);
        assert_eq!(r.wilcoxon.p, 2.0 / 256.0);
        assert!(r.wilcoxon.exact);
        assert_eq!(compare_paired(&x[..5], &y[..5]).wilcoxon.p, 2.0 / 32.0);
    }

    #[test]
    fn no_test_without_two_pairs_or_without_variation() {
        let r = compare_paired(&[0.9], &[0.8]);
        assert!(r.t.p.is_nan() && r.g_z.is_nan());
        // Constant differences: no t-test, no g_z; the rank test stands.
        let r = compare_paired(&[2.0, 3.0, 4.0], &[1.0, 2.0, 3.0]);
        assert!(r.t.t.is_nan() && r.g_z.is_nan());
        assert_eq!(r.wilcoxon.p, 0.25);
    }
}
