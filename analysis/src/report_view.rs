//! What the report's templates see: the analysis results turned into rows of text (numbers for
//! people, p values, intervals, definitions), one view type per table. The templates themselves
//! are asset files (`analysis/templates/`); the pipeline that fills them is [`crate::report`].

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use crate::aggregate::{measure_label, Aggregate, GroupSummary};
use crate::figures::{is_intervention_figure, FigureFile, VERDICT_FIGURES};
use crate::findings::Findings;
use crate::load::{ExcludedRun, RunSet};
use crate::measures::DORMANT_TAUS;
use crate::outcomes::{OutcomeView, COLLAPSE_FACTOR};
use crate::report::AnalyzeOptions;
use crate::report_interventions::{intervention_section, InterventionSection, SectionFigure};

/// A number for people: 4 significant digits, ∞ for never, "n/a" for undefined.
pub(crate) fn num(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v == f64::INFINITY {
        "∞".into()
    } else if v == f64::NEG_INFINITY {
        "−∞".into()
    } else if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e5 || v.abs() < 1e-3 {
        format!("{v:.3e}")
    } else {
        let digits = (3 - v.abs().log10().floor() as i32).max(0) as usize;
        format!("{v:.digits$}")
    }
}

pub(crate) fn p_value(p: f64) -> String {
    if p.is_nan() {
        "n/a".into()
    } else if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

/// "mean [t-interval]" (× `scale`), or the median and the count of runs that never reached a
/// target when some did not (the mean is then ∞).
fn summary_cell(s: Option<&GroupSummary>, scale: f64) -> String {
    let Some(g) = s else {
        return "n/a".into();
    };
    let sm = &g.summary;
    if sm.n == 0 {
        return "n/a".into();
    }
    let value = if g.never > 0 {
        format!(
            "median {} (never {}/{})",
            num(sm.median * scale),
            g.never,
            sm.n
        )
    } else if sm.n < 2 {
        num(sm.mean * scale)
    } else {
        // The percentile bootstrap interval lies within the values seen, so within what the
        // measure can take (a t band around an accuracy can reach below 0 or above 1).
        format!(
            "{} [{}, {}]",
            num(sm.mean * scale),
            num(sm.bootstrap_ci.0 * scale),
            num(sm.bootstrap_ci.1 * scale)
        )
    };
    // Say who is in the sample: diverged runs at their worst case, or the runs left out.
    if g.worst_case > 0 {
        format!("{value}; {} diverged at worst case", g.worst_case)
    } else if g.undefined > 0 {
        format!("{value}; n = {} of {}", sm.n, g.runs)
    } else {
        value
    }
}

/// Key columns of the summary table: (measure column, header, scale).
pub(crate) fn key_measures(opts: &AnalyzeOptions) -> Vec<(&'static str, String, f64)> {
    let to_target = if opts.target_acc.is_some() {
        (
            "epochs_to_target",
            format!("epochs to acc ≥ {}", opts.target_acc.unwrap_or_default()),
            1.0,
        )
    } else {
        ("epochs_to_99", "epochs to 99% of best".to_string(), 1.0)
    };
    vec![
        ("final_acc", "final test accuracy".into(), 1.0),
        to_target,
        ("dead_frac_final", "dead % at E".into(), 100.0),
        (
            "irreversibly_dead_frac",
            "irreversibly dead %".into(),
            100.0,
        ),
        ("revival_rate", "revival rate".into(), 1.0),
    ]
}

#[derive(Serialize)]
pub(crate) struct SummaryRow {
    pub(crate) dataset: String,
    pub(crate) activation: String,
    pub(crate) setting: String,
    pub(crate) runs: usize,
    pub(crate) cells: Vec<String>,
}

pub(crate) fn summary_rows(
    agg: &Aggregate,
    keys: &[(&'static str, String, f64)],
) -> Vec<SummaryRow> {
    let mut cells: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for g in &agg.summaries {
        cells
            .entry((g.dataset.clone(), g.setting.clone(), g.activation.clone()))
            .or_insert(g.runs);
    }
    cells
        .into_iter()
        .map(|((dataset, setting, activation), runs)| SummaryRow {
            cells: keys
                .iter()
                .map(|(m, _, scale)| {
                    summary_cell(agg.summary(&dataset, &activation, &setting, m), *scale)
                })
                .collect(),
            setting,
            dataset,
            activation,
            runs,
        })
        .collect()
}

#[derive(Serialize)]
struct ComparisonView {
    dataset: String,
    setting: String,
    measure: String,
    activation: String,
    other: String,
    n: String,
    design: String,
    p: String,
    p_holm: String,
    welch_t: String,
    welch_df: String,
    welch_p_holm: String,
    u: String,
    mw_p: String,
    mw_p_holm: String,
    exact: bool,
    prob_superiority: String,
    cliffs_delta: String,
    hedges_g: String,
    significant: bool,
}

/// One row of the verdict: a primary measure, one comparison.
#[derive(Serialize)]
struct VerdictView {
    measure: String,
    dataset: String,
    setting: String,
    comparison: String,
    difference: String,
    prob_superiority: String,
    design: String,
    p: String,
    p_holm: String,
    /// The smallest p the design's exact test can give at these n (before adjustment).
    min_p: String,
    significant: bool,
}

/// The smallest two-sided p of the exact rank test of a comparison's design: 2/2ⁿ paired by
/// seed (all n differences of one sign), 2/C(n₁+n₂, n₁) unpaired (complete separation).
fn smallest_reachable_p(c: &crate::aggregate::ComparisonRow) -> f64 {
    let p = match &c.paired {
        Some(paired) => 2.0 / 2f64.powi(paired.n as i32),
        None => {
            let (a, b) = (c.n_activation as f64, c.n_other as f64);
            // C(a + b, a) = Γ(a + b + 1) / (Γ(a + 1) Γ(b + 1)), in logs.
            let ln_choose = statrs::function::gamma::ln_gamma(a + b + 1.0)
                - statrs::function::gamma::ln_gamma(a + 1.0)
                - statrs::function::gamma::ln_gamma(b + 1.0);
            2.0 / ln_choose.exp()
        }
    };
    p.min(1.0)
}

impl From<&crate::aggregate::ComparisonRow> for VerdictView {
    fn from(c: &crate::aggregate::ComparisonRow) -> Self {
        let difference = match c.difference {
            Some(d) if d.interval.0.is_finite() && d.interval.1.is_finite() => format!(
                "{} [{}, {}]",
                num(d.estimate),
                num(d.interval.0),
                num(d.interval.1)
            ),
            Some(d) => num(d.estimate),
            None => "n/a".into(),
        };
        VerdictView {
            measure: measure_label(c.measure).to_string(),
            dataset: c.dataset.clone(),
            setting: c.setting.clone(),
            comparison: format!("{} vs {}", c.activation, c.other),
            difference,
            prob_superiority: if c.prob_superiority_ci.0.is_finite() {
                format!(
                    "{} [{}, {}]",
                    num(c.comparison.prob_superiority),
                    num(c.prob_superiority_ci.0),
                    num(c.prob_superiority_ci.1)
                )
            } else {
                num(c.comparison.prob_superiority)
            },
            design: c.design(),
            p: p_value(c.p),
            p_holm: p_value(c.p_holm),
            min_p: p_value(smallest_reachable_p(c)),
            significant: c.p_holm < 0.05,
        }
    }
}

#[derive(Serialize)]
struct RunView {
    sweep: String,
    run_id: String,
    dataset: String,
    activation: String,
    seed: u64,
    setting: String,
    epochs: u32,
    final_acc: String,
    dead_pct: String,
}

#[derive(Serialize)]
struct ExcludedView {
    sweep: String,
    run_id: String,
    activation: String,
    dir: String,
    reason: String,
}

impl From<&ExcludedRun> for ExcludedView {
    fn from(r: &ExcludedRun) -> Self {
        ExcludedView {
            sweep: r.sweep.clone().unwrap_or_default(),
            run_id: r.run_id.clone().unwrap_or_default(),
            activation: r.activation.clone().unwrap_or_default(),
            dir: r.dir.display().to_string(),
            reason: r.reason.clone(),
        }
    }
}

#[derive(Serialize)]
struct FigureView {
    title: String,
    caption: String,
    svg: String,
    png: String,
}

impl From<&FigureFile> for FigureView {
    fn from(f: &FigureFile) -> Self {
        FigureView {
            title: f.title.clone(),
            caption: f.caption.clone(),
            svg: format!("figures/{}.svg", f.stem),
            png: format!("figures/{}.png", f.stem),
        }
    }
}

#[derive(Serialize)]
struct Definition {
    term: String,
    text: String,
}

#[derive(Serialize)]
pub(crate) struct ReportContext {
    title: String,
    version: String,
    n_used: usize,
    n_diverged: usize,
    n_skipped: usize,
    comparison_mode: String,
    summary_headers: Vec<String>,
    summary_rows: Vec<SummaryRow>,
    comparisons: Vec<ComparisonView>,
    verdicts: Vec<VerdictView>,
    notes: Vec<String>,
    definitions: Vec<Definition>,
    figures: Vec<FigureView>,
    verdict_figures: Vec<FigureView>,
    runs: Vec<RunView>,
    diverged: Vec<ExcludedView>,
    skipped: Vec<ExcludedView>,
    diverged_by_activation: Vec<String>,
    outcomes: Vec<OutcomeView>,
    collapse_factor: f64,
    /// Issue #14's section; None (and not rendered) without interventions or layer records.
    interventions: Option<InterventionSection>,
}

impl ReportContext {
    pub(crate) fn new(
        runs: &RunSet,
        findings: &Findings,
        opts: &AnalyzeOptions,
        figures: &[FigureFile],
    ) -> Result<ReportContext> {
        let (measures, agg) = (&findings.measures, &findings.aggregate);
        let keys = key_measures(opts);
        let comparisons = agg
            .comparisons
            .iter()
            .map(|c| {
                let k = &c.comparison;
                ComparisonView {
                    dataset: c.dataset.clone(),
                    setting: c.setting.clone(),
                    measure: measure_label(c.measure).to_string(),
                    activation: c.activation.clone(),
                    other: c.other.clone(),
                    n: format!("{} vs {}", c.n_activation, c.n_other),
                    design: c.design(),
                    p: p_value(c.p),
                    p_holm: if c.primary {
                        p_value(c.p_holm)
                    } else {
                        "exploratory".into()
                    },
                    welch_t: num(k.welch.t),
                    welch_df: num(k.welch.df),
                    welch_p_holm: p_value(c.welch_p_holm),
                    u: num(k.mann_whitney.u),
                    mw_p: p_value(k.mann_whitney.p),
                    mw_p_holm: p_value(c.mann_whitney_p_holm),
                    exact: k.mann_whitney.exact,
                    prob_superiority: num(k.prob_superiority),
                    cliffs_delta: num(k.cliffs_delta),
                    hedges_g: num(k.hedges_g),
                    significant: c.primary && c.p_holm < 0.05,
                }
            })
            .collect();

        let final_acc = crate::aggregate::f64_column(&measures.per_run, "final_acc")?;
        let dead = crate::aggregate::f64_column(&measures.per_run, "dead_frac_final")?;
        let run_views = runs
            .runs
            .iter()
            .enumerate()
            .map(|(i, r)| RunView {
                sweep: r.sweep.clone(),
                run_id: r.run_id.clone(),
                dataset: r.dataset.clone(),
                activation: r.activation.clone(),
                seed: r.seed,
                setting: r.setting.clone(),
                epochs: r.epochs_completed,
                final_acc: num(final_acc.get(i).copied().unwrap_or(f64::NAN)),
                dead_pct: num(100.0 * dead.get(i).copied().unwrap_or(f64::NAN)),
            })
            .collect();

        let mut diverged_count: BTreeMap<String, usize> = BTreeMap::new();
        for r in &runs.diverged {
            *diverged_count
                .entry(r.activation.clone().unwrap_or_else(|| "?".into()))
                .or_default() += 1;
        }
        let taus: Vec<String> = DORMANT_TAUS.iter().map(|(t, _)| format!("{t}")).collect();
        let definitions = vec![
            Definition { term: "dead".into(), text: "max_pre ≤ 0: the neuron's pre-activation z is never positive on the probe set (for relu: zero output and zero gradient for every probe input).".into() },
            Definition { term: "gradient-starved".into(), text: format!("mean_deriv < ε = {} (mean of f′(z) over the probe set): activation-agnostic death.", opts.starved_eps) },
            Definition { term: "τ-dormant".into(), text: format!("sᵢ = mean_abs_actᵢ / mean of mean_abs_act over the layer's neurons at the same epoch; dormant iff sᵢ ≤ τ, τ ∈ {{{}}} (Sokar et al. 2023). A layer with all mean_abs_act = 0 counts as entirely dormant.", taus.join(", ")) },
            Definition { term: "time of death Tᵢ".into(), text: "the first epoch from which the neuron is dead at every later epoch through the last epoch E.".into() },
            Definition { term: "irreversibly dead".into(), text: format!("dead at E and Tᵢ ≤ E − w, w = {} epochs.", opts.dead_window) },
            Definition { term: "revival".into(), text: "a dead → alive transition between consecutive epochs; revival rate = neurons ever dead and alive at E / neurons ever dead (undefined, left out, for runs where no neuron ever died); revival count = number of transitions.".into() },
            Definition { term: "persistence p(e)".into(), text: "share of the neurons dead at e − 1 that are still dead at e.".into() },
            Definition { term: "survival S(e)".into(), text: "share of neurons not dead at any epoch 0..e.".into() },
            Definition { term: "epochs to target".into(), text: match opts.target_acc {
                Some(t) => format!("first epoch at which test accuracy ≥ {t} (absolute), and ≥ 95 % / 99 % of the run's best; ∞ (\"never\") if not reached. Seconds: wall time of that epoch."),
                None => "first epoch at which test accuracy ≥ 95 % / 99 % of the run's best (no absolute target given); ∞ (\"never\") if not reached. Seconds: wall time of that epoch.".into(),
            } },
            Definition { term: "normalised AUC".into(), text: "trapezoid area under test accuracy over epochs 0..E divided by E; under train loss over epochs 1..E (epoch 0 has no training loss) divided by E − 1: each is the curve's mean level.".into() },
            Definition { term: "statistics".into(), text: format!("per (dataset, setting, activation) over seeds, where the setting is the learning rate and every other setting that varies among the runs (runs of different settings are never pooled): mean [95 % percentile bootstrap interval, 10 000 resamples, seed {}], which stays inside what the measure can take; the CSV also has std, median, interquartile mean and the 95 % Student t interval. When some runs never reached a target, the median and the count of such runs are shown. Comparisons: each activation against the baseline within one dataset and setting. When both ran the same seeds, the seed is a block (the same batch order, and the same initial weights when only the activation differs) and the design is paired: Wilcoxon signed-rank (exact for small n, as scipy's auto) and the paired t-test, with Hedges' g_z; otherwise unpaired: Mann–Whitney U (exact when either sample has ≤ 8 values and no ties) and Welch's t-test. P(X > Y), Cliff's delta and Hedges' g are given either way; effects are positive when the first activation's values are larger. No test or effect is given with fewer than 2 runs on a side, and no Welch test or Hedges' g when neither side varies. Primary measures (final test accuracy, irreversibly dead fraction, epochs to 95 % of best accuracy, AUC of test accuracy) are tested in families of one measure within one dataset and setting, Holm-adjusted; every other measure is exploratory, unadjusted and labelled so. Significant (bold): the design's test, Holm-adjusted in its family, p < 0.05.", opts.seed) },
        ];

        Ok(ReportContext {
            title: opts.title.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            n_used: runs.runs.len(),
            n_diverged: runs.diverged.len(),
            n_skipped: runs.skipped.len(),
            comparison_mode: match (&opts.baseline, opts.all_pairs) {
                (Some(b), false) => format!(
                    "each activation against the baseline {b}, within one dataset and setting"
                ),
                _ => "all pairs of activations, within one dataset and setting".into(),
            },
            summary_headers: keys.iter().map(|k| k.1.clone()).collect(),
            summary_rows: summary_rows(agg, &keys),
            verdicts: agg
                .comparisons
                .iter()
                .filter(|c| c.primary)
                .map(VerdictView::from)
                .collect(),
            comparisons,
            notes: agg.notes.clone(),
            definitions,
            figures: figures
                .iter()
                .filter(|f| {
                    !VERDICT_FIGURES.contains(&f.stem.as_str()) && !is_intervention_figure(&f.stem)
                })
                .map(FigureView::from)
                .collect(),
            verdict_figures: figures
                .iter()
                .filter(|f| VERDICT_FIGURES.contains(&f.stem.as_str()))
                .map(FigureView::from)
                .collect(),
            runs: run_views,
            diverged: runs.diverged.iter().map(ExcludedView::from).collect(),
            skipped: runs.skipped.iter().map(ExcludedView::from).collect(),
            diverged_by_activation: diverged_count
                .into_iter()
                .map(|(a, n)| format!("{a}: {n}"))
                .collect(),
            outcomes: findings.outcomes.iter().map(OutcomeView::from).collect(),
            collapse_factor: COLLAPSE_FACTOR,
            interventions: intervention_section(
                runs,
                findings,
                figures
                    .iter()
                    .filter(|f| is_intervention_figure(&f.stem))
                    .map(|f| {
                        let view = FigureView::from(f);
                        SectionFigure {
                            title: view.title,
                            caption: view.caption,
                            svg: view.svg,
                            png: view.png,
                        }
                    })
                    .collect(),
            ),
        })
    }
}
