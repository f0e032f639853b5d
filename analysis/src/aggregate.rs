//! Statistics across seeds (SPEC §4) of the per-run measures: a [`GroupSummary`] per
//! (dataset, setting, activation) and measure, and a table of [`ComparisonRow`]s between activations
//! with Holm-adjusted p values. The arithmetic lives in [`crate::stats`]; this module decides what
//! is grouped with what and which comparisons form the family.
//!
//! A per-run value of NaN means "undefined for this run" (e.g. the revival rate of a run in which
//! no neuron ever died, or epochs-to-target when no absolute target was given) and is left out of
//! that measure's sample; +∞ (a target never reached) stays in, so rank-based figures see it as
//! slower than any finite time while the mean and Welch's test become ∞/NaN.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use polars::prelude::*;

use crate::comparison::{compare_cells, Compared, Samples};
use crate::effect::{iqm_interval, Difference};
use crate::measures::Measures;
use crate::paired::PairedComparison;
use crate::stats::{self, Comparison, Summary};

/// A per-run measure that is summarised and compared: its column in [`Measures::per_run`], and a
/// label for tables and figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeasureDef {
    pub column: &'static str,
    pub label: &'static str,
}

const fn m(column: &'static str, label: &'static str) -> MeasureDef {
    MeasureDef { column, label }
}

/// Every per-run measure the statistics cover, in table order.
pub const MEASURES: &[MeasureDef] = &[
    m("final_acc", "final test accuracy"),
    m("best_acc", "best test accuracy"),
    m("epochs_to_target", "epochs to target accuracy"),
    m("seconds_to_target", "seconds to target accuracy"),
    m("epochs_to_95", "epochs to 95% of best accuracy"),
    m("seconds_to_95", "seconds to 95% of best accuracy"),
    m("epochs_to_99", "epochs to 99% of best accuracy"),
    m("seconds_to_99", "seconds to 99% of best accuracy"),
    m("auc_test_acc", "normalised AUC of test accuracy"),
    m("auc_train_loss", "normalised AUC of train loss"),
    m("final_train_loss", "final train loss"),
    m("dead_frac_final", "dead fraction at E"),
    m("irreversibly_dead_frac", "irreversibly dead fraction"),
    m("ever_dead_frac", "ever-dead fraction"),
    m("revival_rate", "revival rate"),
    m("revival_count", "revivals (dead to alive transitions)"),
    m("mean_time_of_death", "mean time of death (epochs)"),
    m("survival_final", "survival S(E)"),
    m("starved_frac_final", "gradient-starved fraction at E"),
    m("dormant_frac_0_final", "0-dormant fraction at E"),
    m("dormant_frac_0_025_final", "0.025-dormant fraction at E"),
    m("dormant_frac_0_1_final", "0.1-dormant fraction at E"),
    // Issue #14, present only when some run had an intervention or the records of layers and
    // saturation (crate::revival_cause, crate::representation); all exploratory.
    m("natural_revivals", "natural revivals"),
    m(
        "intervention_revivals",
        "revivals caused by an intervention",
    ),
    m("resets", "resets by the intervention"),
    m("resets_of_dead", "resets of dead neurons"),
    m("revived_frac", "revived fraction at E"),
    m(
        "revived_by_intervention_frac",
        "revived-by-intervention fraction at E",
    ),
    m(
        "effective_rank_share_final",
        "effective rank / neurons at E",
    ),
    m("srank_share_final", "srank / neurons at E"),
    m("feature_rank_share_final", "feature rank / neurons at E"),
    m("weight_drift_final", "weight drift at E"),
    m(
        "saturated_deriv_frac_final",
        "derivative-saturated share at E",
    ),
    m("saturated_output_frac_final", "output-saturated share at E"),
];

/// The primary measures (SPEC §4): each is tested in families of its own, one family per
/// dataset and setting (every activation against the baseline there), Holm-adjusted. Every other
/// measure is exploratory: reported unadjusted and labelled so. Measures that are identities of
/// others (survival = 1 − ever dead) are never primary, so nothing is tested twice.
pub const PRIMARY_MEASURES: &[&str] = &[
    "final_acc",
    "irreversibly_dead_frac",
    "epochs_to_95",
    "auc_test_acc",
];

/// Label of a measure column, or the column name itself.
pub fn measure_label(column: &str) -> &str {
    MEASURES
        .iter()
        .find(|m| m.column == column)
        .map_or(column, |m| m.label)
}

/// Which activations are compared.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateOptions {
    /// Compare every activation against this one (within each dataset and setting).
    pub baseline: Option<String>,
    /// Compare all pairs of activations instead (also used when `baseline` is None).
    pub all_pairs: bool,
    /// Seed of the bootstrap intervals.
    pub seed: u64,
    /// Named contrasts between any two conditions, tested besides the baseline comparisons.
    pub contrasts: Vec<crate::contrast::Contrast>,
}

/// One (dataset, setting, activation) cell, one measure.
#[derive(Debug, Clone)]
pub struct GroupSummary {
    pub dataset: String,
    pub activation: String,
    /// The learning rate and the other settings that vary among the runs (see `load::Run`).
    pub setting: String,
    pub measure: &'static str,
    /// Runs in the cell.
    pub runs: usize,
    /// Runs whose value was undefined (NaN) and left out; `summary.n` counts the rest. A
    /// diverged run is undefined for every measure without a worst case (the neuron measures).
    pub undefined: usize,
    /// Diverged runs counted at their worst case (chance accuracy, target never reached; see
    /// [`crate::worst_case`]); included in `summary.n`.
    pub worst_case: usize,
    /// Runs whose value is +∞ (target never reached).
    pub never: usize,
    pub summary: Summary,
    /// For a primary measure: the 95 % bootstrap interval of the interquartile mean (rliable);
    /// NaN otherwise.
    pub iqm_ci: (f64, f64),
}

/// `activation` against `other` on one measure, within one dataset and setting.
#[derive(Debug, Clone)]
pub struct ComparisonRow {
    pub dataset: String,
    pub setting: String,
    pub measure: &'static str,
    /// x: effects are positive when this activation's values are larger.
    pub activation: String,
    /// y: the baseline (or the second of the pair).
    pub other: String,
    pub n_activation: usize,
    pub n_other: usize,
    /// The unpaired tests and effects (always computed; the ones to read when not paired).
    pub comparison: Comparison,
    /// The paired tests, when both conditions ran the same seeds (each seed a block).
    pub paired: Option<PairedComparison>,
    /// Whether the measure is primary (tested in a family) or exploratory.
    pub primary: bool,
    /// For a primary measure: the difference (activation − other) in the measure's units with
    /// its bootstrap interval, paired or unpaired as the design is.
    pub difference: Option<Difference>,
    /// For a primary measure: the 95 % stratified bootstrap interval of P(X > Y).
    pub prob_superiority_ci: (f64, f64),
    /// The design's rank test: the Wilcoxon signed-rank p when paired, else Mann–Whitney's.
    pub p: f64,
    /// `p` Holm-adjusted within its family (same dataset, setting and measure); NaN for an
    /// exploratory measure.
    pub p_holm: f64,
    /// Welch's p, Holm-adjusted within the same family; NaN for an exploratory measure.
    pub welch_p_holm: f64,
    /// Mann–Whitney's p, Holm-adjusted within the same family; NaN for an exploratory measure.
    pub mann_whitney_p_holm: f64,
}

impl ComparisonRow {
    /// "paired by seed (n pairs)" or "unpaired".
    pub fn design(&self) -> String {
        match &self.paired {
            Some(p) => format!("paired by seed ({} pairs)", p.n),
            None => "unpaired".into(),
        }
    }
}

/// All statistics across seeds.
#[derive(Debug, Clone, Default)]
pub struct Aggregate {
    pub summaries: Vec<GroupSummary>,
    pub comparisons: Vec<ComparisonRow>,
    /// Things a reader should know (missing baseline, measures not available, ...).
    pub notes: Vec<String>,
}

impl Aggregate {
    /// The summary of `measure` for one cell, if any.
    pub fn summary(
        &self,
        dataset: &str,
        activation: &str,
        setting: &str,
        measure: &str,
    ) -> Option<&GroupSummary> {
        self.summaries.iter().find(|s| {
            s.dataset == dataset
                && s.activation == activation
                && s.setting == setting
                && s.measure == measure
        })
    }
}

/// (dataset, setting, activation): one condition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct CellKey {
    dataset: String,
    setting: String,
    activation: String,
}

fn string_column(df: &DataFrame, name: &str) -> Result<Vec<String>> {
    Ok(df
        .column(name)?
        .str()?
        .iter()
        .map(|v| v.unwrap_or_default().to_string())
        .collect())
}

/// `read` of the complete runs' table followed by `read` of the diverged runs' table; an empty
/// table (no diverged run has no columns at all) adds nothing.
fn stacked<T>(
    per_run: &DataFrame,
    diverged: &DataFrame,
    read: impl Fn(&DataFrame) -> Result<Vec<T>>,
) -> Result<Vec<T>> {
    let mut values = read(per_run)?;
    if diverged.height() > 0 {
        values.extend(read(diverged)?);
    }
    Ok(values)
}

/// The `seed` column, a missing seed as u64::MAX.
fn seed_column(df: &DataFrame) -> Result<Vec<u64>> {
    Ok(df
        .column("seed")?
        .cast(&DataType::UInt64)?
        .u64()?
        .iter()
        .map(|v| v.unwrap_or(u64::MAX))
        .collect())
}

/// A column as f64 values, nulls as NaN.
pub(crate) fn f64_column(df: &DataFrame, name: &str) -> Result<Vec<f64>> {
    Ok(df
        .column(name)?
        .cast(&DataType::Float64)?
        .f64()?
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect())
}

/// Summaries of every measure per (dataset, setting, activation) and the comparison table.
pub fn aggregate(measures: &Measures, opts: &AggregateOptions) -> Result<Aggregate> {
    // Complete runs, then diverged ones at their worst case (crate::worst_case): a condition is
    // never summarised or tested by its survivors alone where a worst case is defined.
    let per_run = &measures.per_run;
    let diverged = &measures.diverged;
    let mut out = Aggregate::default();
    if per_run.height() == 0 && diverged.height() == 0 {
        out.notes
            .push("no complete run: nothing to summarise".into());
        return Ok(out);
    }
    // One row index over both tables: the complete runs' rows, then the diverged runs'.
    let datasets = stacked(per_run, diverged, |df| string_column(df, "dataset"))?;
    let activations = stacked(per_run, diverged, |df| string_column(df, "activation"))?;
    let settings = stacked(per_run, diverged, |df| string_column(df, "setting"))?;
    let seeds = stacked(per_run, diverged, seed_column)?;
    let is_diverged = |row: usize| row >= per_run.height();
    let mut cells: BTreeMap<CellKey, Vec<usize>> = BTreeMap::new();
    for i in 0..datasets.len() {
        cells
            .entry(CellKey {
                dataset: datasets[i].clone(),
                setting: settings[i].clone(),
                activation: activations[i].clone(),
            })
            .or_default()
            .push(i);
    }

    let mut values_of: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    for m in MEASURES {
        if per_run.column(m.column).is_err() {
            continue;
        }
        let values = stacked(per_run, diverged, |df| match df.column(m.column) {
            Ok(_) => f64_column(df, m.column),
            // A measure without a worst case is undefined (NaN) for a diverged run.
            Err(_) => Ok(vec![f64::NAN; df.height()]),
        })?;
        if values.iter().all(|v| v.is_nan()) {
            // e.g. epochs_to_target without an absolute target: not a measure of this analysis.
            continue;
        }
        values_of.insert(m.column, values);
    }
    let sample = |rows: &[usize], values: &[f64]| -> Vec<f64> {
        rows.iter()
            .map(|&i| values[i])
            .filter(|v| !v.is_nan())
            .collect()
    };
    // The defined values of a cell by seed, for pairing.
    let by_seed = |rows: &[usize], values: &[f64]| -> BTreeMap<u64, f64> {
        rows.iter()
            .filter(|&&i| !values[i].is_nan())
            .map(|&i| (seeds[i], values[i]))
            .collect()
    };

    let samples = Samples {
        values_of: &values_of,
        sample: &sample,
        by_seed: &by_seed,
        seed: opts.seed,
    };
    for (key, rows) in &cells {
        for m in MEASURES {
            let Some(values) = values_of.get(m.column) else {
                continue;
            };
            let x = sample(rows, values);
            out.summaries.push(GroupSummary {
                dataset: key.dataset.clone(),
                activation: key.activation.clone(),
                setting: key.setting.clone(),
                measure: m.column,
                runs: rows.len(),
                undefined: rows.len() - x.len(),
                worst_case: rows
                    .iter()
                    .filter(|&&i| is_diverged(i) && !values[i].is_nan())
                    .count(),
                never: x.iter().filter(|v| **v == f64::INFINITY).count(),
                summary: stats::summarize(&x, opts.seed),
                iqm_ci: if PRIMARY_MEASURES.contains(&m.column) {
                    iqm_interval(&x, opts.seed)
                } else {
                    (f64::NAN, f64::NAN)
                },
            });
        }
    }

    // Comparisons happen within one dataset and setting: activations trained differently are
    // not pitted against each other.
    let mut by_setting: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for key in cells.keys() {
        by_setting
            .entry((key.dataset.clone(), key.setting.clone()))
            .or_default()
            .insert(key.activation.clone());
    }
    let baseline = opts.baseline.as_ref().filter(|_| !opts.all_pairs);
    for ((dataset, setting), acts) in &by_setting {
        let acts: Vec<&String> = acts.iter().collect();
        let pairs: Vec<(&String, &String)> = match baseline {
            Some(b) => match acts.iter().find(|a| **a == b) {
                Some(base) => acts
                    .iter()
                    .filter(|a| **a != b)
                    .map(|a| (*a, *base))
                    .collect(),
                None => {
                    out.notes.push(format!(
                        "{dataset}, {setting}: no run with the baseline activation {b}; no comparison"
                    ));
                    continue;
                }
            },
            None => acts
                .iter()
                .enumerate()
                .flat_map(|(i, a)| acts[i + 1..].iter().map(move |b| (*a, *b)))
                .collect(),
        };
        for (a, b) in pairs {
            let key = |activation: &String| CellKey {
                dataset: dataset.clone(),
                setting: setting.clone(),
                activation: activation.clone(),
            };
            let (rows_a, rows_b) = (&cells[&key(a)], &cells[&key(b)]);
            let compared = Compared {
                dataset,
                setting,
                activation: a,
                other: b,
            };
            compare_cells(&mut out, &compared, rows_a, rows_b, &samples);
        }
    }
    // Named contrasts: each is a stratum of its own (`setting` = the contrast), so that for
    // each measure the contrasts form one family.
    for contrast in &opts.contrasts {
        let (rows_a, rows_b) = crate::contrast::sides(&[per_run, diverged], contrast)?;
        let label = |rows: &[usize]| {
            let mut names: Vec<&str> = rows.iter().map(|&i| activations[i].as_str()).collect();
            names.sort();
            names.dedup();
            names.join("+")
        };
        let mut datasets_seen: Vec<&str> = rows_a
            .iter()
            .chain(&rows_b)
            .map(|&i| datasets[i].as_str())
            .collect();
        datasets_seen.sort();
        datasets_seen.dedup();
        let compared = Compared {
            dataset: &datasets_seen.join("+"),
            setting: &format!("contrast: {contrast}"),
            activation: &label(&rows_a),
            other: &label(&rows_b),
        };
        compare_cells(&mut out, &compared, &rows_a, &rows_b, &samples);
    }
    // Families: one primary measure within one dataset and setting (the activations against
    // the baseline there), or among the named contrasts. Exploratory measures are not adjusted.
    let mut families: BTreeMap<(String, String, &'static str), Vec<usize>> = BTreeMap::new();
    for (i, row) in out.comparisons.iter().enumerate() {
        if row.primary {
            families
                .entry((row.dataset.clone(), row.setting.clone(), row.measure))
                .or_default()
                .push(i);
        }
    }
    for members in families.values() {
        let adjust = |p: &dyn Fn(&ComparisonRow) -> f64| {
            let raw: Vec<f64> = members.iter().map(|&i| p(&out.comparisons[i])).collect();
            stats::holm_adjust(&raw)
        };
        let design = adjust(&|r| r.p);
        let welch = adjust(&|r| r.comparison.welch.p);
        let mw = adjust(&|r| r.comparison.mann_whitney.p);
        for (k, &i) in members.iter().enumerate() {
            let row = &mut out.comparisons[i];
            (row.p_holm, row.welch_p_holm, row.mann_whitney_p_holm) = (design[k], welch[k], mw[k]);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per_run_only(df: DataFrame) -> Measures {
        Measures {
            layer_epoch: DataFrame::empty(),
            neuron_fate: DataFrame::empty(),
            run_layer: DataFrame::empty(),
            per_run: df,
            diverged: DataFrame::empty(),
            resets: None,
        }
    }

    #[test]
    fn groups_by_condition_pairs_by_seed_and_adjusts_within_families() {
        let df = df!(
            "dataset" => ["d"; 6],
            "activation" => ["relu", "relu", "relu", "elu", "elu", "elu"],
            "lr" => [0.1; 6],
            "setting" => ["lr 0.1"; 6],
            "seed" => [0u64, 1, 2, 0, 1, 2],
            "final_acc" => [0.8, 0.82, 0.81, 0.9, 0.91, 0.92],
            "revival_rate" => [f64::NAN, 0.5, 0.25, 1.0, 1.0, 1.0],
            "epochs_to_95" => [3.0, f64::INFINITY, 4.0, 2.0, 2.0, 3.0],
        )
        .unwrap();
        let opts = AggregateOptions {
            baseline: Some("relu".into()),
            all_pairs: false,
            seed: 1,
            contrasts: Vec::new(),
        };
        let agg = aggregate(&per_run_only(df), &opts).unwrap();
        let relu_acc = agg.summary("d", "relu", "lr 0.1", "final_acc").unwrap();
        assert_eq!(relu_acc.summary.n, 3);
        assert!((relu_acc.summary.mean - 0.81).abs() < 1e-12);
        let relu_rev = agg.summary("d", "relu", "lr 0.1", "revival_rate").unwrap();
        assert_eq!((relu_rev.summary.n, relu_rev.undefined), (2, 1));
        let relu_t = agg.summary("d", "relu", "lr 0.1", "epochs_to_95").unwrap();
        assert_eq!(relu_t.never, 1);
        assert_eq!(relu_t.summary.median, 4.0);
        // Three measures, one pair: elu vs relu.
        assert_eq!(agg.comparisons.len(), 3);
        assert!(agg
            .comparisons
            .iter()
            .all(|c| c.activation == "elu" && c.other == "relu"));
        // final_acc separates the groups completely (every elu above every relu): the exact
        // two-sided Mann–Whitney p at 3 vs 3 is 2 / C(6, 3) = 2/20.
        let row = |measure: &str| {
            agg.comparisons
                .iter()
                .find(|c| c.measure == measure)
                .unwrap()
        };
        let acc = row("final_acc");
        assert!((acc.comparison.mann_whitney.p - 0.1).abs() < 1e-12);
        // Both ran seeds 0, 1, 2: paired. The differences elu − relu by seed are 0.1, 0.09 and
        // 0.11, all positive, the most extreme of 2³ equally likely sign patterns: the exact
        // two-sided Wilcoxon p is 2/8. A family of one: Holm leaves it as it is.
        let paired = acc.paired.expect("paired by seed");
        assert_eq!(paired.n, 3);
        assert!((paired.wilcoxon.p - 0.25).abs() < 1e-12);
        assert!(acc.primary && (acc.p - 0.25).abs() < 1e-12 && (acc.p_holm - 0.25).abs() < 1e-12);
        assert_eq!(acc.design(), "paired by seed (3 pairs)");
        // relu's revival rate is undefined at seed 0: the seeds differ, so unpaired; and an
        // exploratory measure, so not adjusted.
        let revival = row("revival_rate");
        assert!(revival.paired.is_none() && !revival.primary && revival.p_holm.is_nan());
        assert_eq!(
            revival.p.to_bits(),
            revival.comparison.mann_whitney.p.to_bits()
        );
        // Measures that are NaN for every run (no absolute target) are left out.
        assert!(agg
            .summary("d", "relu", "lr 0.1", "epochs_to_target")
            .is_none());
    }

    #[test]
    fn no_test_at_n_one_and_no_welch_without_variation() {
        // One elu run against three relu runs; accuracy constant within each activation.
        let df = df!(
            "dataset" => ["d"; 7],
            "activation" => ["relu", "relu", "relu", "elu", "tanh", "tanh", "tanh"],
            "lr" => [0.1; 7],
            "setting" => ["lr 0.1"; 7],
            "seed" => [0u64, 1, 2, 0, 0, 1, 2],
            "final_acc" => [0.8, 0.8, 0.8, 0.9, 0.7, 0.7, 0.7],
        )
        .unwrap();
        let opts = AggregateOptions {
            baseline: Some("relu".into()),
            all_pairs: false,
            seed: 1,
            contrasts: Vec::new(),
        };
        let agg = aggregate(&per_run_only(df), &opts).unwrap();
        let elu = agg
            .comparisons
            .iter()
            .find(|c| c.activation == "elu")
            .unwrap();
        assert_eq!((elu.n_activation, elu.n_other), (1, 3));
        let c = &elu.comparison;
        assert!(c.welch.p.is_nan() && c.mann_whitney.p.is_nan() && c.hedges_g.is_nan());
        assert!(elu.paired.is_none() && elu.p.is_nan());
        // tanh and relu are each constant: no Welch test, no Hedges' g; the rank tests stand.
        // Paired by seed, the three differences are all −0.1 (ties): the sign-flip p is 2/8.
        let tanh = agg
            .comparisons
            .iter()
            .find(|c| c.activation == "tanh")
            .unwrap();
        assert!(tanh.comparison.welch.p.is_nan() && tanh.comparison.hedges_g.is_nan());
        assert_eq!(tanh.comparison.cliffs_delta, -1.0);
        let paired = tanh.paired.unwrap();
        assert!(paired.t.p.is_nan() && (paired.wilcoxon.p - 0.25).abs() < 1e-12);
    }

    #[test]
    fn diverged_runs_count_at_their_worst_case() {
        // relu: three complete runs. relu-softsign: seed 0 complete, seeds 1 and 2 diverged, so
        // their final accuracy is chance (0.1 on ten classes) and their dead fraction undefined.
        let per_run = df!(
            "dataset" => ["d"; 4],
            "activation" => ["relu", "relu", "relu", "relu-softsign"],
            "setting" => ["lr 0.05"; 4],
            "seed" => [0u64, 1, 2, 0],
            "final_acc" => [0.9, 0.91, 0.92, 0.95],
            "dead_frac_final" => [0.2, 0.3, 0.25, 0.05],
        )
        .unwrap();
        let diverged = df!(
            "dataset" => ["d"; 2],
            "activation" => ["relu-softsign"; 2],
            "setting" => ["lr 0.05"; 2],
            "seed" => [1u64, 2],
            "final_acc" => [0.1, 0.1],
        )
        .unwrap();
        let mut measures = per_run_only(per_run);
        measures.diverged = diverged;
        let opts = AggregateOptions {
            baseline: Some("relu".into()),
            all_pairs: false,
            seed: 1,
            contrasts: Vec::new(),
        };
        let agg = aggregate(&measures, &opts).unwrap();
        let acc = agg
            .summary("d", "relu-softsign", "lr 0.05", "final_acc")
            .unwrap();
        assert_eq!((acc.runs, acc.summary.n, acc.worst_case), (3, 3, 2));
        assert!((acc.summary.mean - (0.95 + 0.1 + 0.1) / 3.0).abs() < 1e-12);
        let dead = agg
            .summary("d", "relu-softsign", "lr 0.05", "dead_frac_final")
            .unwrap();
        assert_eq!((dead.summary.n, dead.undefined, dead.worst_case), (1, 2, 0));
        // Paired by seed: differences relu-softsign − relu are 0.05, −0.81, −0.82; ranks of |d|
        // 1, 2, 3, so W+ = 1. Of the 2³ sign patterns, W+ ≤ 1 in two (0 and 1): the exact
        // two-sided p is 2 · 2/8 = 0.5 (scipy.stats.wilcoxon([0.05, -0.81, -0.82]): 0.5).
        let row = agg
            .comparisons
            .iter()
            .find(|c| c.measure == "final_acc")
            .unwrap();
        assert_eq!(row.paired.as_ref().map(|p| p.n), Some(3));
        assert!((row.p - 0.5).abs() < 1e-12, "{}", row.p);
    }
}
