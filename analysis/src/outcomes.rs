//! Divergence and collapse as outcomes of a condition: how many of its runs diverged (loss
//! NaN/∞) and how many finished but collapsed (final test accuracy within a margin of chance),
//! with Wilson intervals and Fisher's exact test against the baseline's rates. A condition whose
//! runs mostly diverged is thereby never described by its survivors alone.
//!
//! References: Wilson's interval as statsmodels' `proportion_confint(k, n, method="wilson")`;
//! Fisher's exact test as `scipy.stats.fisher_exact` (two-sided: the tables with the observed
//! margins that are no more probable than the observed one, with scipy's relative tolerance).

use std::collections::BTreeMap;

use serde::Serialize;
use statrs::function::gamma::ln_gamma;

use crate::load::RunSet;

/// A complete run has collapsed when its final test accuracy is at most this multiple of chance
/// (1 / classes): 1.5/10 = 15 % on ten classes.
pub const COLLAPSE_FACTOR: f64 = 1.5;

/// The 97.5 % quantile of the standard normal: 95 % two-sided intervals.
const Z_95: f64 = 1.959_963_984_540_054;

/// `count` of `n` runs, with the 95 % Wilson score interval of the rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Proportion {
    pub count: usize,
    pub n: usize,
    pub interval: (f64, f64),
}

impl Proportion {
    pub fn new(count: usize, n: usize) -> Self {
        Proportion {
            count,
            n,
            interval: wilson_interval(count, n),
        }
    }
}

/// The 95 % Wilson score interval of `count / n` (NaN for n = 0); it stays inside [0, 1].
pub fn wilson_interval(count: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let (k, n) = (count as f64, n as f64);
    let p = k / n;
    let z2 = Z_95 * Z_95;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z_95 / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Fisher's exact test of the 2×2 table `[[a, b], [c, d]]`, two-sided.
pub fn fisher_exact(a: usize, b: usize, c: usize, d: usize) -> f64 {
    let (row1, col1, n) = (a + b, a + c, a + b + c + d);
    let ln_choose = |n: usize, k: usize| {
        ln_gamma(n as f64 + 1.0) - ln_gamma(k as f64 + 1.0) - ln_gamma((n - k) as f64 + 1.0)
    };
    // P(top-left = x) under the hypergeometric law of the fixed margins.
    let probability =
        |x: usize| (ln_choose(col1, x) + ln_choose(n - col1, row1 - x) - ln_choose(n, row1)).exp();
    let low = row1.saturating_sub(n - col1);
    let high = row1.min(col1);
    let observed = probability(a);
    let p: f64 = (low..=high)
        .map(probability)
        .filter(|&q| q <= observed * (1.0 + 1e-7))
        .sum();
    p.min(1.0)
}

/// The outcomes of one condition (dataset, setting, activation).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConditionOutcome {
    pub dataset: String,
    pub setting: String,
    pub activation: String,
    /// Runs that ended: complete plus diverged (failed and unfinished runs are not outcomes).
    pub runs: usize,
    pub diverged: Proportion,
    /// Complete runs whose final test accuracy is at most [`COLLAPSE_FACTOR`] / classes, over
    /// all runs that ended.
    pub collapsed: Proportion,
    /// Fisher's exact p of the divergence rate against the baseline's (NaN for the baseline or
    /// without one).
    pub diverged_p: f64,
    /// Fisher's exact p of the collapse rate against the baseline's.
    pub collapsed_p: f64,
}

/// Outcomes per condition; `final_acc[i]` is the final test accuracy of `runs.runs[i]`.
pub fn outcomes(runs: &RunSet, final_acc: &[f64], baseline: Option<&str>) -> Vec<ConditionOutcome> {
    // (dataset, setting, activation) → (ended, diverged, collapsed)
    let mut counts: BTreeMap<(String, String, String), (usize, usize, usize)> = BTreeMap::new();
    for (run, acc) in runs.runs.iter().zip(final_acc) {
        let classes = run.manifest.classes.max(1) as f64;
        let entry = counts
            .entry((
                run.dataset.clone(),
                run.setting.clone(),
                run.activation.clone(),
            ))
            .or_default();
        entry.0 += 1;
        entry.2 += (*acc <= COLLAPSE_FACTOR / classes) as usize;
    }
    for run in &runs.diverged {
        let (Some(dataset), Some(setting), Some(activation)) =
            (&run.dataset, &run.setting, &run.activation)
        else {
            continue;
        };
        let entry = counts
            .entry((dataset.clone(), setting.clone(), activation.clone()))
            .or_default();
        entry.0 += 1;
        entry.1 += 1;
    }
    let find = |dataset: &str, setting: &str, activation: &str| {
        counts
            .get(&(
                dataset.to_string(),
                setting.to_string(),
                activation.to_string(),
            ))
            .copied()
    };
    counts
        .iter()
        .map(
            |((dataset, setting, activation), &(ended, diverged, collapsed))| {
                let base = baseline
                    .filter(|b| b != activation)
                    .and_then(|b| find(dataset, setting, b));
                let test = |k: usize, base_k: usize, base_n: usize| {
                    fisher_exact(k, ended - k, base_k, base_n - base_k)
                };
                ConditionOutcome {
                    dataset: dataset.clone(),
                    setting: setting.clone(),
                    activation: activation.clone(),
                    runs: ended,
                    diverged: Proportion::new(diverged, ended),
                    collapsed: Proportion::new(collapsed, ended),
                    diverged_p: base.map_or(f64::NAN, |(n, d, _)| test(diverged, d, n)),
                    collapsed_p: base.map_or(f64::NAN, |(n, _, c)| test(collapsed, c, n)),
                }
            },
        )
        .collect()
}

/// One condition's outcomes as the report shows them.
#[derive(Debug, Clone, Serialize)]
pub struct OutcomeView {
    pub dataset: String,
    pub setting: String,
    pub activation: String,
    pub runs: usize,
    /// e.g. `2 of 5 (40 % [12 %, 77 %])`
    pub diverged: String,
    pub collapsed: String,
    pub diverged_p: String,
    pub collapsed_p: String,
}

fn proportion_text(p: &Proportion) -> String {
    if p.n == 0 {
        return "–".into();
    }
    format!(
        "{} of {} ({:.0} % [{:.0} %, {:.0} %])",
        p.count,
        p.n,
        100.0 * p.count as f64 / p.n as f64,
        100.0 * p.interval.0,
        100.0 * p.interval.1
    )
}

fn p_text(p: f64) -> String {
    if p.is_nan() {
        "–".into()
    } else {
        format!("{p:.3}")
    }
}

impl From<&ConditionOutcome> for OutcomeView {
    fn from(o: &ConditionOutcome) -> Self {
        OutcomeView {
            dataset: o.dataset.clone(),
            setting: o.setting.clone(),
            activation: o.activation.clone(),
            runs: o.runs,
            diverged: proportion_text(&o.diverged),
            collapsed: proportion_text(&o.collapsed),
            diverged_p: p_text(o.diverged_p),
            collapsed_p: p_text(o.collapsed_p),
        }
    }
}

/// `outcomes.csv`: one row per condition.
pub fn outcomes_csv(rows: &[ConditionOutcome]) -> String {
    let mut csv = String::from(
        "dataset,setting,activation,runs,diverged,diverged_rate_low,diverged_rate_high,diverged_fisher_p,collapsed,collapsed_rate_low,collapsed_rate_high,collapsed_fisher_p\n",
    );
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    for o in rows {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{}\n",
            quote(&o.dataset),
            quote(&o.setting),
            quote(&o.activation),
            o.runs,
            o.diverged.count,
            o.diverged.interval.0,
            o.diverged.interval.1,
            o.diverged_p,
            o.collapsed.count,
            o.collapsed.interval.0,
            o.collapsed.interval.1,
            o.collapsed_p,
        ));
    }
    csv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64) -> bool {
        (got - want).abs() <= 1e-9 * want.abs().max(1e-12)
    }

    #[test]
    fn wilson_matches_statsmodels() {
        // statsmodels.stats.proportion.proportion_confint(k, n, alpha=0.05, method="wilson")
        for (k, n, low, high) in [
            (0, 5, 0.0, 0.43448246478317487),
            (1, 5, 0.036224108632430196, 0.6244653702374748),
            (4, 5, 0.3755346297625252, 0.9637758913675698),
            (5, 5, 0.5655175352168252, 1.0),
            (3, 8, 0.13684428582359737, 0.6942576053973728),
            (0, 1, 0.0, 0.7934506856227627),
        ] {
            let (l, h) = wilson_interval(k, n);
            assert!(close(l, low) && close(h, high), "{k}/{n}: ({l}, {h})");
        }
    }

    #[test]
    fn fisher_matches_scipy() {
        // scipy.stats.fisher_exact([[a, b], [c, d]]).pvalue
        for ((a, b, c, d), want) in [
            ((4, 1, 0, 5), 0.04761904761904762),
            ((0, 5, 5, 0), 0.007936507936507938),
            ((2, 3, 2, 3), 1.0),
            ((1, 7, 6, 2), 0.040559440559440565),
            ((0, 8, 3, 5), 0.2),
        ] {
            let p = fisher_exact(a, b, c, d);
            assert!(close(p, want), "[[{a},{b}],[{c},{d}]]: {p} vs {want}");
        }
    }

    #[test]
    fn divergence_and_collapse_are_counted_per_condition() {
        use crate::load::{load_runs, RunStatus};
        use crate::synthetic::{write_run, EpochRecord, NeuronRecord, RunSpec};
        let tmp = tempfile::tempdir().unwrap();
        let write = |activation: &str, seed: u64, final_acc: f64, status: RunStatus| {
            let epochs: Vec<EpochRecord> = (0..=2)
                .map(|e| {
                    EpochRecord::new(
                        e,
                        if e == 2 { final_acc } else { 0.5 },
                        (e > 0).then_some(1.0),
                    )
                })
                .collect();
            let neurons: Vec<NeuronRecord> =
                (0..=2).map(|e| NeuronRecord::alive(e, 0, 0)).collect();
            let mut spec = RunSpec::new(
                "s",
                "digits",
                activation,
                seed,
                0.05,
                2,
                vec![("fc1".into(), 1)],
            );
            spec.status = status;
            write_run(tmp.path(), &spec, &epochs, &neurons).unwrap();
        };
        // relu: three complete runs, one at 10 % on ten classes (≤ 1.5/10: collapsed).
        write("relu", 0, 0.9, RunStatus::Complete);
        write("relu", 1, 0.1, RunStatus::Complete);
        write("relu", 2, 0.92, RunStatus::Complete);
        // relu-softsign: one complete, two diverged.
        write("relu-softsign", 0, 0.95, RunStatus::Complete);
        write("relu-softsign", 1, 0.5, RunStatus::Diverged);
        write("relu-softsign", 2, 0.5, RunStatus::Diverged);
        let runs = load_runs(&[tmp.path().join("s")]).unwrap();
        let final_acc: Vec<f64> = runs
            .runs
            .iter()
            .map(|r| {
                if r.seed == 1 && r.activation == "relu" {
                    0.1
                } else {
                    0.9
                }
            })
            .collect();
        let rows = outcomes(&runs, &final_acc, Some("relu"));
        assert_eq!(rows.len(), 2);
        let relu = rows.iter().find(|o| o.activation == "relu").unwrap();
        assert_eq!(
            (relu.runs, relu.diverged.count, relu.collapsed.count),
            (3, 0, 1)
        );
        assert!(
            relu.diverged_p.is_nan(),
            "the baseline is not tested against itself"
        );
        let rs = rows
            .iter()
            .find(|o| o.activation == "relu-softsign")
            .unwrap();
        assert_eq!((rs.runs, rs.diverged.count, rs.collapsed.count), (3, 2, 0));
        // scipy.stats.fisher_exact([[2, 1], [0, 3]]) = 0.4; ([[0, 3], [1, 2]]) = 1.0
        assert!(close(rs.diverged_p, 0.4000000000000001));
        assert!(close(rs.collapsed_p, 1.0));
    }
}
