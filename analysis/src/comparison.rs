//! One comparison between two conditions on every measure: paired by seed when both ran the
//! same seeds (each seed a block), unpaired otherwise; for a primary measure also the difference
//! with its bootstrap interval and P(X > Y) with its interval. [`crate::aggregate`] decides which
//! conditions are compared and which comparisons form a family.

use std::collections::BTreeMap;

use crate::aggregate::{Aggregate, ComparisonRow, MEASURES, PRIMARY_MEASURES};
use crate::effect::{paired_difference, prob_improvement_interval, unpaired_difference};
use crate::paired::compare_paired;
use crate::stats::{self, Comparison};

/// The defined values of a measure in some rows of the per-run table.
pub(crate) type SampleOf<'a> = &'a dyn Fn(&[usize], &[f64]) -> Vec<f64>;
/// The same, by seed.
pub(crate) type BySeed<'a> = &'a dyn Fn(&[usize], &[f64]) -> BTreeMap<u64, f64>;

/// The per-run values of every measure and how to take a condition's sample from them.
#[derive(Clone, Copy)]
pub(crate) struct Samples<'a> {
    pub(crate) values_of: &'a BTreeMap<&'static str, Vec<f64>>,
    pub(crate) sample: SampleOf<'a>,
    pub(crate) by_seed: BySeed<'a>,
    /// Seed of the bootstrap intervals.
    pub(crate) seed: u64,
}

/// What a comparison row compares: its stratum and its two sides' names.
pub(crate) struct Compared<'a> {
    pub(crate) dataset: &'a str,
    pub(crate) setting: &'a str,
    pub(crate) activation: &'a str,
    pub(crate) other: &'a str,
}

/// Appends one row per measure comparing the runs `rows_a` with `rows_b` (rows of the per-run
/// table): paired by seed when both sides ran the same seeds, unpaired otherwise.
pub(crate) fn compare_cells(
    out: &mut Aggregate,
    compared: &Compared,
    rows_a: &[usize],
    rows_b: &[usize],
    samples: &Samples,
) {
    let Samples {
        values_of,
        sample,
        by_seed,
        seed,
    } = *samples;
    for m in MEASURES {
        let Some(values) = values_of.get(m.column) else {
            continue;
        };
        let (x, y) = (sample(rows_a, values), sample(rows_b, values));
        if x.is_empty() || y.is_empty() {
            continue;
        }
        // The same seeds on both sides (one run each): a paired design.
        let (xs, ys) = (by_seed(rows_a, values), by_seed(rows_b, values));
        let matched =
            xs.len() == x.len() && ys.len() == y.len() && xs.keys().eq(ys.keys()) && xs.len() >= 2;
        let (px, py): (Vec<f64>, Vec<f64>) =
            (xs.into_values().collect(), ys.into_values().collect());
        let paired = matched.then(|| compare_paired(&px, &py));
        let primary = PRIMARY_MEASURES.contains(&m.column);
        let difference = primary.then(|| {
            if matched {
                paired_difference(&px, &py, seed)
            } else {
                unpaired_difference(&x, &y, seed)
            }
        });
        let comparison = comparison_or_nothing(&x, &y);
        let p = match &paired {
            Some(pc) => pc.wilcoxon.p,
            None => comparison.mann_whitney.p,
        };
        out.comparisons.push(ComparisonRow {
            dataset: compared.dataset.to_string(),
            setting: compared.setting.to_string(),
            measure: m.column,
            activation: compared.activation.to_string(),
            other: compared.other.to_string(),
            n_activation: x.len(),
            n_other: y.len(),
            comparison,
            paired,
            primary,
            difference,
            prob_superiority_ci: if primary {
                prob_improvement_interval(&x, &y, seed)
            } else {
                (f64::NAN, f64::NAN)
            },
            p,
            p_holm: f64::NAN,
            welch_p_holm: f64::NAN,
            mann_whitney_p_holm: f64::NAN,
        });
    }
}

/// The unpaired comparison, or nothing (NaN) where a test cannot speak: fewer than two values on
/// a side (no test or effect at n = 1: a Hedges' g of 1e25 means nothing), and no Welch test or
/// Hedges' g when neither side varies (their p = 0 or ±∞ would be an artefact of zero variance;
/// the rank test stands).
pub(crate) fn comparison_or_nothing(x: &[f64], y: &[f64]) -> Comparison {
    let no_welch = stats::WelchResult {
        t: f64::NAN,
        df: f64::NAN,
        p: f64::NAN,
    };
    let mut c = stats::compare(x, y);
    if x.len() < 2 || y.len() < 2 {
        c.welch = no_welch;
        c.mann_whitney.p = f64::NAN;
        c.prob_superiority = f64::NAN;
        c.cliffs_delta = f64::NAN;
        c.hedges_g = f64::NAN;
    } else if constant(x) && constant(y) {
        c.welch = no_welch;
        c.hedges_g = f64::NAN;
    }
    c
}

pub(crate) fn constant(x: &[f64]) -> bool {
    x.iter().all(|v| *v == x[0])
}
