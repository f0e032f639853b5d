//! The report of an analysis: `index.html` (self-contained apart from the figure files it links,
//! rendered with minijinja and HTML auto-escaping), `report.md`, `figures/*.{png,svg}` and
//! `tables/*.{csv,tex}`; and [`inspect_run`], a terminal summary of one run.
//!
//! Every file is written atomically. The report states its definitions and thresholds, lists the
//! runs it used, and names every run it left out with the reason.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use minijinja::Environment;
use polars::prelude::*;
use serde::Serialize;

use crate::aggregate::{aggregate, measure_label, Aggregate, AggregateOptions, GroupSummary};
use crate::figures::{
    draw_report_figures, plot_activation_functions, ActivationCurve, FigureContext, FigureFile,
    Palette,
};
use crate::load::{ExcludedRun, Manifest, RunSet};
use crate::measures::{compute_measures, MeasureOptions, Measures, DORMANT_TAUS};
use crate::outcomes::{outcomes, outcomes_csv, OutcomeView, COLLAPSE_FACTOR};
use crate::write_atomic;
use necrosis_records::files::without_reader_panics;
use necrosis_records::tables::{neuron_columns as nc, EpochRow, NeuronRow};

/// Options of an analysis.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyzeOptions {
    /// Absolute test-accuracy target for epochs/seconds-to-target (None: 95 %/99 % of best only).
    pub target_acc: Option<f64>,
    /// Activation every other one is compared with (default "relu"); None compares all pairs.
    pub baseline: Option<String>,
    /// Compare all pairs of activations even when a baseline is set.
    pub all_pairs: bool,
    /// w: dead at E with time of death <= E − w is irreversibly dead.
    pub dead_window: usize,
    /// ε: gradient-starved iff mean_deriv < ε.
    pub starved_eps: f64,
    /// Seed of the bootstrap intervals.
    pub seed: u64,
    pub title: String,
    /// Sampled activation functions for figure (a), e.g. from the trainer; empty: no such figure.
    pub activation_curves: Vec<ActivationCurve>,
    /// Named contrasts between any two conditions (`--contrast`).
    pub contrasts: Vec<crate::contrast::Contrast>,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        AnalyzeOptions {
            target_acc: None,
            baseline: Some("relu".into()),
            all_pairs: false,
            dead_window: 2,
            starved_eps: 1e-3,
            seed: 0,
            title: "Neuron necrosis report".into(),
            activation_curves: Vec::new(),
            contrasts: Vec::new(),
        }
    }
}

impl AnalyzeOptions {
    pub fn measure_options(&self) -> MeasureOptions {
        MeasureOptions {
            dead_window: self.dead_window,
            starved_eps: self.starved_eps,
            target_acc: self.target_acc,
        }
    }

    pub fn aggregate_options(&self) -> AggregateOptions {
        AggregateOptions {
            baseline: self.baseline.clone(),
            all_pairs: self.all_pairs || self.baseline.is_none(),
            seed: self.seed,
            contrasts: self.contrasts.clone(),
        }
    }
}

/// What [`write_report`] wrote and found.
#[derive(Debug, Clone)]
pub struct ReportSummary {
    pub out_dir: PathBuf,
    pub index_html: PathBuf,
    pub report_md: PathBuf,
    pub figures: Vec<PathBuf>,
    pub tables: Vec<PathBuf>,
    pub runs_used: usize,
    pub diverged: usize,
    pub skipped: usize,
    pub measures: Measures,
    pub aggregate: Aggregate,
}

/// Measures, compares and draws `runs`, writing the report into `out` (created if needed).
pub fn write_report(runs: &RunSet, opts: &AnalyzeOptions, out: &Path) -> Result<ReportSummary> {
    let figures_dir = out.join("figures");
    let tables_dir = out.join("tables");
    for d in [out, &figures_dir, &tables_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let measure_opts = opts.measure_options();
    let measures = compute_measures(runs, &measure_opts)?;
    let agg = aggregate(&measures, &opts.aggregate_options())?;

    let palette = Palette::new(
        runs.runs
            .iter()
            .map(|r| r.activation.as_str())
            .chain(runs.diverged.iter().filter_map(|r| r.activation.as_deref()))
            .chain(opts.activation_curves.iter().map(|c| c.name.as_str())),
    );
    let mut figures: Vec<FigureFile> = Vec::new();
    if !opts.activation_curves.is_empty() {
        let paths = plot_activation_functions(&opts.activation_curves, &figures_dir)?;
        figures.push(FigureFile {
            stem: "activation_functions".into(),
            title: "Activation functions".into(),
            caption: "Each activation f and its analytic derivative f′.".into(),
            svg: paths[0].clone(),
            png: paths[1].clone(),
        });
    }
    figures.extend(draw_report_figures(&FigureContext {
        runs,
        measures: &measures,
        options: &measure_opts,
        palette,
        out_dir: figures_dir.clone(),
    })?);

    let mut tables = write_tables(&measures, &agg, opts, &tables_dir)?;
    // Divergence and collapse per condition: outcomes, not runs left out.
    // In the order of `runs.runs`, whatever the order of the per-run table.
    let mut final_acc = vec![f64::NAN; runs.runs.len()];
    let index = crate::aggregate::f64_column(&measures.per_run, "run")?;
    let acc = crate::aggregate::f64_column(&measures.per_run, "final_acc")?;
    for (run, value) in index.iter().zip(acc) {
        if let Some(slot) = final_acc.get_mut(*run as usize) {
            *slot = value;
        }
    }
    let baseline = opts.baseline.as_deref().filter(|_| !opts.all_pairs);
    let outcome_rows = outcomes(runs, &final_acc, baseline);
    let outcomes_path = tables_dir.join("outcomes.csv");
    write_atomic(&outcomes_path, outcomes_csv(&outcome_rows).as_bytes())?;
    tables.push(outcomes_path);
    let mut context = ReportContext::new(runs, &measures, &agg, opts, &figures)?;
    context.outcomes = outcome_rows.iter().map(OutcomeView::from).collect();
    context.collapse_factor = COLLAPSE_FACTOR;

    let mut env = Environment::new();
    env.add_template("index.html", HTML_TEMPLATE)?;
    env.add_template("report.md", MD_TEMPLATE)?;
    let html = env.get_template("index.html")?.render(&context)?;
    let md = env.get_template("report.md")?.render(&context)?;
    let index_html = out.join("index.html");
    let report_md = out.join("report.md");
    write_atomic(&index_html, html.as_bytes())?;
    write_atomic(&report_md, md.as_bytes())?;

    Ok(ReportSummary {
        out_dir: out.to_path_buf(),
        index_html,
        report_md,
        figures: figures
            .iter()
            .flat_map(|f| [f.svg.clone(), f.png.clone()])
            .collect(),
        tables,
        runs_used: runs.runs.len(),
        diverged: runs.diverged.len(),
        skipped: runs.skipped.len(),
        measures,
        aggregate: agg,
    })
}

// ---------------------------------------------------------------------------------------------
// Number formatting
// ---------------------------------------------------------------------------------------------

/// A number for people: 4 significant digits, ∞ for never, "n/a" for undefined.
fn num(v: f64) -> String {
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

fn p_value(p: f64) -> String {
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
    if g.never > 0 {
        return format!(
            "median {} (never {}/{})",
            num(sm.median * scale),
            g.never,
            sm.n
        );
    }
    if sm.n < 2 {
        return num(sm.mean * scale);
    }
    // The percentile bootstrap interval lies within the values seen, so within what the
    // measure can take (a t band around an accuracy can reach below 0 or above 1).
    format!(
        "{} [{}, {}]",
        num(sm.mean * scale),
        num(sm.bootstrap_ci.0 * scale),
        num(sm.bootstrap_ci.1 * scale)
    )
}

// ---------------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------------

/// Full-precision number for CSV: Rust's shortest round-trip form; inf/NaN spelled out.
fn csv_num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{v}")
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn frame_csv(df: &DataFrame) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut df = df.clone();
    CsvWriter::new(&mut bytes)
        .include_header(true)
        .finish(&mut df)?;
    Ok(bytes)
}

fn tex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '<' => out.push_str("\\textless{}"),
            '>' => out.push_str("\\textgreater{}"),
            '∞' => out.push_str("$\\infty$"),
            '≥' => out.push_str("$\\geq$"),
            '≤' => out.push_str("$\\leq$"),
            '−' => out.push('-'),
            _ => out.push(c),
        }
    }
    out
}

/// Key columns of the summary table: (measure column, header, scale).
fn key_measures(opts: &AnalyzeOptions) -> Vec<(&'static str, String, f64)> {
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

fn write_tables(
    measures: &Measures,
    agg: &Aggregate,
    opts: &AnalyzeOptions,
    dir: &Path,
) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut put = |name: &str, bytes: &[u8]| -> Result<()> {
        let path = dir.join(name);
        write_atomic(&path, bytes)?;
        written.push(path);
        Ok(())
    };

    // Every statistic of every cell, long format.
    let mut csv = String::from(
        "dataset,activation,setting,measure,runs,n,undefined,never,mean,std,median,iqm,iqm_ci_low,iqm_ci_high,t_ci_low,t_ci_high,bootstrap_ci_low,bootstrap_ci_high\n",
    );
    for g in &agg.summaries {
        let s = &g.summary;
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            csv_field(&g.dataset),
            csv_field(&g.activation),
            csv_field(&g.setting),
            g.measure,
            g.runs,
            s.n,
            g.undefined,
            g.never,
            csv_num(s.mean),
            csv_num(s.std),
            csv_num(s.median),
            csv_num(s.iqm),
            csv_num(g.iqm_ci.0),
            csv_num(g.iqm_ci.1),
            csv_num(s.t_ci.0),
            csv_num(s.t_ci.1),
            csv_num(s.bootstrap_ci.0),
            csv_num(s.bootstrap_ci.1),
        );
    }
    put("summary.csv", csv.as_bytes())?;

    let mut csv = String::from(
        "dataset,setting,measure,kind,activation,other,n_activation,n_other,design,p,p_holm,wilcoxon_w,wilcoxon_p,wilcoxon_exact,paired_t,paired_t_p,hedges_g_z,welch_t,welch_df,welch_p,welch_p_holm,mann_whitney_u,mann_whitney_p,mann_whitney_exact,mann_whitney_p_holm,prob_superiority,cliffs_delta,hedges_g\n",
    );
    for c in &agg.comparisons {
        let k = &c.comparison;
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            csv_field(&c.dataset),
            csv_field(&c.setting),
            c.measure,
            if c.primary { "primary" } else { "exploratory" },
            csv_field(&c.activation),
            csv_field(&c.other),
            c.n_activation,
            c.n_other,
            csv_field(&c.design()),
            csv_num(c.p),
            csv_num(c.p_holm),
            csv_num(c.paired.map_or(f64::NAN, |p| p.wilcoxon.statistic)),
            csv_num(c.paired.map_or(f64::NAN, |p| p.wilcoxon.p)),
            c.paired.is_some_and(|p| p.wilcoxon.exact),
            csv_num(c.paired.map_or(f64::NAN, |p| p.t.t)),
            csv_num(c.paired.map_or(f64::NAN, |p| p.t.p)),
            csv_num(c.paired.map_or(f64::NAN, |p| p.g_z)),
            csv_num(k.welch.t),
            csv_num(k.welch.df),
            csv_num(k.welch.p),
            csv_num(c.welch_p_holm),
            csv_num(k.mann_whitney.u),
            csv_num(k.mann_whitney.p),
            k.mann_whitney.exact,
            csv_num(c.mann_whitney_p_holm),
            csv_num(k.prob_superiority),
            csv_num(k.cliffs_delta),
            csv_num(k.hedges_g),
        );
    }
    put("comparisons.csv", csv.as_bytes())?;

    put("per_run.csv", &frame_csv(&measures.per_run)?)?;
    put("per_run_layer.csv", &frame_csv(&measures.run_layer)?)?;
    put("per_epoch_layer.csv", &frame_csv(&measures.layer_epoch)?)?;

    // LaTeX: the key summary and the comparison table.
    let keys = key_measures(opts);
    let mut tex = String::new();
    let _ = writeln!(
        tex,
        "% Generated by necrosis-analysis. Cells: mean [95% percentile bootstrap interval] over seeds."
    );
    let _ = writeln!(
        tex,
        "\\begin{{tabular}}{{lll{}}}",
        "l".repeat(keys.len() + 1)
    );
    let _ = writeln!(tex, "\\hline");
    let _ = write!(tex, "dataset & activation & setting & runs");
    for (_, header, _) in &keys {
        let _ = write!(tex, " & {}", tex_escape(header));
    }
    let _ = writeln!(tex, " \\\\\n\\hline");
    for row in summary_rows(agg, &keys) {
        let _ = write!(
            tex,
            "{} & {} & {} & {}",
            tex_escape(&row.dataset),
            tex_escape(&row.activation),
            tex_escape(&row.setting),
            row.runs
        );
        for cell in &row.cells {
            let _ = write!(tex, " & {}", tex_escape(cell));
        }
        let _ = writeln!(tex, " \\\\");
    }
    let _ = writeln!(tex, "\\hline\n\\end{{tabular}}");
    put("summary.tex", tex.as_bytes())?;

    let mut tex = String::new();
    let _ = writeln!(
        tex,
        "% Generated by necrosis-analysis. p values Holm-adjusted within families: one primary measure, one dataset and setting; exploratory measures unadjusted (--)."
    );
    let _ = writeln!(tex, "\\begin{{tabular}}{{lllrrrrrr}}\n\\hline");
    let _ = writeln!(
        tex,
        "dataset & measure & comparison & Welch $t$ & $p_\\mathrm{{Holm}}$ & $U$ & $p_\\mathrm{{Holm}}$ & Cliff's $\\delta$ & Hedges' $g$ \\\\\n\\hline"
    );
    for c in &agg.comparisons {
        let k = &c.comparison;
        let _ = writeln!(
            tex,
            "{} & {} & {} vs {} & {} & {} & {} & {} & {} & {} \\\\",
            tex_escape(&c.dataset),
            tex_escape(measure_label(c.measure)),
            tex_escape(&c.activation),
            tex_escape(&c.other),
            tex_escape(&num(k.welch.t)),
            tex_escape(&p_value(c.welch_p_holm)),
            tex_escape(&num(k.mann_whitney.u)),
            tex_escape(&p_value(c.mann_whitney_p_holm)),
            tex_escape(&num(k.cliffs_delta)),
            tex_escape(&num(k.hedges_g)),
        );
    }
    let _ = writeln!(tex, "\\hline\n\\end{{tabular}}");
    put("comparisons.tex", tex.as_bytes())?;
    Ok(written)
}

// ---------------------------------------------------------------------------------------------
// Template context
// ---------------------------------------------------------------------------------------------

#[derive(Serialize)]
struct SummaryRow {
    dataset: String,
    activation: String,
    setting: String,
    runs: usize,
    cells: Vec<String>,
}

fn summary_rows(agg: &Aggregate, keys: &[(&'static str, String, f64)]) -> Vec<SummaryRow> {
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

#[derive(Serialize)]
struct Definition {
    term: String,
    text: String,
}

#[derive(Serialize)]
struct ReportContext {
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
    runs: Vec<RunView>,
    diverged: Vec<ExcludedView>,
    skipped: Vec<ExcludedView>,
    diverged_by_activation: Vec<String>,
    outcomes: Vec<OutcomeView>,
    collapse_factor: f64,
}

impl ReportContext {
    fn new(
        runs: &RunSet,
        measures: &Measures,
        agg: &Aggregate,
        opts: &AnalyzeOptions,
        figures: &[FigureFile],
    ) -> Result<ReportContext> {
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
                .map(|f| FigureView {
                    title: f.title.clone(),
                    caption: f.caption.clone(),
                    svg: format!("figures/{}.svg", f.stem),
                    png: format!("figures/{}.png", f.stem),
                })
                .collect(),
            runs: run_views,
            diverged: runs.diverged.iter().map(ExcludedView::from).collect(),
            skipped: runs.skipped.iter().map(ExcludedView::from).collect(),
            diverged_by_activation: diverged_count
                .into_iter()
                .map(|(a, n)| format!("{a}: {n}"))
                .collect(),
            outcomes: Vec::new(),
            collapse_factor: COLLAPSE_FACTOR,
        })
    }
}

const HTML_TEMPLATE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
<style>
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1300px; color: #222; line-height: 1.4; padding: 0 1em; }
h1 { border-bottom: 2px solid #1f77b4; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #eef3f8; }
tr:nth-child(even) td { background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.sig td { font-weight: bold; }
.note { background: #fff4e0; border-left: 4px solid #ff9f00; padding: .5em 1em; margin: .5em 0; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .9em; color: #555; }
dt { font-weight: bold; margin-top: .5em; }
.small { font-size: .85em; color: #666; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p class="small">necrosis-analysis {{ version }}. {{ n_used }} complete runs analysed; {{ n_diverged }} diverged and {{ n_skipped }} skipped runs left out (listed at the end).</p>
{% if n_diverged > 0 %}<div class="note">Diverged runs cannot be measured, so the summary describes the runs that completed; they count as outcomes (see Outcomes): {{ diverged_by_activation | join(", ") }}.</div>{% endif %}
{% for note in notes %}<div class="note">{{ note }}</div>
{% endfor %}
<h2>Verdict</h2>
<p>The primary measures, each condition against the baseline in its setting (and each named contrast): the difference in the measure's units with its 95 % bootstrap interval (paired by seed when both ran the same seeds), the design's test and its p Holm-adjusted within the family (one measure, one setting). Bold: p (Holm) &lt; 0.05. "Smallest possible p" is what the exact test can reach at these n: where it is above 0.05 no difference can be shown, however large (paired by seed: 2/2ⁿ, below 0.05 from 6 seeds; 8 seeds reach 0.0078). Every other figure below is descriptive or exploratory.</p>
{% if verdicts %}<table>
<tr><th>measure</th><th>dataset</th><th>setting</th><th>comparison</th><th>difference [95 % CI]</th><th>P(X&gt;Y) [95 % CI]</th><th>design</th><th>p</th><th>p (Holm)</th><th>smallest possible p</th></tr>
{% for v in verdicts %}<tr{% if v.significant %} class="sig"{% endif %}><td>{{ v.measure }}</td><td>{{ v.dataset }}</td><td>{{ v.setting }}</td><td>{{ v.comparison }}</td><td class="num">{{ v.difference }}</td><td class="num">{{ v.prob_superiority }}</td><td>{{ v.design }}</td><td class="num">{{ v.p }}</td><td class="num">{{ v.p_holm }}</td><td class="num">{{ v.min_p }}</td></tr>
{% endfor %}</table>{% else %}<p>No comparison: a baseline or a second condition is missing.</p>{% endif %}
<h2>Summary</h2>
<p>Per dataset, activation and setting over seeds: mean [95 % percentile bootstrap interval].</p>
<table>
<tr><th>dataset</th><th>activation</th><th>setting</th><th>runs</th>{% for h in summary_headers %}<th>{{ h }}</th>{% endfor %}</tr>
{% for r in summary_rows %}<tr><td>{{ r.dataset }}</td><td>{{ r.activation }}</td><td>{{ r.setting }}</td><td class="num">{{ r.runs }}</td>{% for c in r.cells %}<td class="num">{{ c }}</td>{% endfor %}</tr>
{% endfor %}</table>
<p class="small">Full statistics: <a href="tables/summary.csv">tables/summary.csv</a>, <a href="tables/summary.tex">summary.tex</a>; per run: <a href="tables/per_run.csv">per_run.csv</a>, <a href="tables/per_run_layer.csv">per_run_layer.csv</a>, <a href="tables/per_epoch_layer.csv">per_epoch_layer.csv</a>.</p>
<h2>Outcomes: divergence and collapse</h2>
<p>Every run that ended counts: a diverged run (loss NaN/∞) cannot be measured, and a complete run whose final test accuracy is at most {{ collapse_factor }} / classes has collapsed; the summary above describes only the runs that completed, so read it together with these rates (95 % Wilson intervals; Fisher's exact test against the baseline in the same dataset and setting).</p>
<table>
<tr><th>dataset</th><th>setting</th><th>activation</th><th>runs</th><th>diverged</th><th>p (Fisher)</th><th>collapsed</th><th>p (Fisher)</th></tr>
{% for o in outcomes %}<tr><td>{{ o.dataset }}</td><td>{{ o.setting }}</td><td>{{ o.activation }}</td><td class="num">{{ o.runs }}</td><td>{{ o.diverged }}</td><td class="num">{{ o.diverged_p }}</td><td>{{ o.collapsed }}</td><td class="num">{{ o.collapsed_p }}</td></tr>
{% endfor %}</table>
<h2>Comparisons</h2>
<p>Compared: {{ comparison_mode }}. Effects are positive when the first activation's values are larger.</p>
{% if comparisons %}<table>
<tr><th>dataset</th><th>setting</th><th>measure</th><th>activation</th><th>vs</th><th>n</th><th>design</th><th>p</th><th>p (Holm, family)</th><th>Welch t</th><th>df</th><th>p (Holm)</th><th>U</th><th>p</th><th>p (Holm)</th><th>P(X&gt;Y)</th><th>Cliff's δ</th><th>Hedges' g</th></tr>
{% for c in comparisons %}<tr{% if c.significant %} class="sig"{% endif %}><td>{{ c.dataset }}</td><td>{{ c.setting }}</td><td>{{ c.measure }}</td><td>{{ c.activation }}</td><td>{{ c.other }}</td><td>{{ c.n }}</td><td>{{ c.design }}</td><td class="num">{{ c.p }}</td><td class="num">{{ c.p_holm }}</td><td class="num">{{ c.welch_t }}</td><td class="num">{{ c.welch_df }}</td><td class="num">{{ c.welch_p_holm }}</td><td class="num">{{ c.u }}{% if c.exact %}*{% endif %}</td><td class="num">{{ c.mw_p }}</td><td class="num">{{ c.mw_p_holm }}</td><td class="num">{{ c.prob_superiority }}</td><td class="num">{{ c.cliffs_delta }}</td><td class="num">{{ c.hedges_g }}</td></tr>
{% endfor %}</table>
<p class="small">* exact Mann–Whitney distribution. Tables: <a href="tables/comparisons.csv">comparisons.csv</a>, <a href="tables/comparisons.tex">comparisons.tex</a>.</p>
{% else %}<p>No comparison could be made.</p>{% endif %}
<h2>Figures</h2>
{% for f in figures %}<figure>
<a href="{{ f.svg }}"><img src="{{ f.svg }}" alt="{{ f.title }}"></a>
<figcaption><b>{{ f.title }}.</b> {{ f.caption }} (<a href="{{ f.png }}">PNG</a>)</figcaption>
</figure>
{% endfor %}
<h2>Definitions and thresholds</h2>
<dl>
{% for d in definitions %}<dt>{{ d.term }}</dt><dd>{{ d.text }}</dd>
{% endfor %}</dl>
<h2>Runs used ({{ n_used }})</h2>
<table>
<tr><th>sweep</th><th>run</th><th>dataset</th><th>activation</th><th>seed</th><th>setting</th><th>epochs</th><th>final acc</th><th>dead % at E</th></tr>
{% for r in runs %}<tr><td>{{ r.sweep }}</td><td>{{ r.run_id }}</td><td>{{ r.dataset }}</td><td>{{ r.activation }}</td><td class="num">{{ r.seed }}</td><td>{{ r.setting }}</td><td class="num">{{ r.epochs }}</td><td class="num">{{ r.final_acc }}</td><td class="num">{{ r.dead_pct }}</td></tr>
{% endfor %}</table>
<h2>Diverged runs ({{ n_diverged }})</h2>
{% if diverged %}<table>
<tr><th>sweep</th><th>run</th><th>activation</th><th>reason</th><th>directory</th></tr>
{% for r in diverged %}<tr><td>{{ r.sweep }}</td><td>{{ r.run_id }}</td><td>{{ r.activation }}</td><td>{{ r.reason }}</td><td class="small">{{ r.dir }}</td></tr>
{% endfor %}</table>{% else %}<p>None.</p>{% endif %}
<h2>Skipped runs ({{ n_skipped }})</h2>
{% if skipped %}<table>
<tr><th>sweep</th><th>run</th><th>activation</th><th>reason</th><th>directory</th></tr>
{% for r in skipped %}<tr><td>{{ r.sweep }}</td><td>{{ r.run_id }}</td><td>{{ r.activation }}</td><td>{{ r.reason }}</td><td class="small">{{ r.dir }}</td></tr>
{% endfor %}</table>{% else %}<p>None.</p>{% endif %}
</body>
</html>
"#;

const MD_TEMPLATE: &str = r#"# {{ title }}

necrosis-analysis {{ version }}. {{ n_used }} complete runs analysed; {{ n_diverged }} diverged and {{ n_skipped }} skipped runs left out (listed at the end).
{% if n_diverged > 0 %}
> Diverged runs cannot be measured, so the summary describes the runs that completed; they count as outcomes (see Outcomes): {{ diverged_by_activation | join(", ") }}.
{% endif %}{% for note in notes %}
> {{ note }}
{% endfor %}
## Verdict

The primary measures, each condition against the baseline in its setting (and each named contrast): the difference in the measure's units with its 95 % bootstrap interval (paired by seed when both ran the same seeds), the design's test and its p Holm-adjusted within the family (one measure, one setting). **Bold**: p (Holm) < 0.05. "Smallest possible p" is what the exact test can reach at these n: where it is above 0.05 no difference can be shown, however large (paired by seed: 2/2ⁿ, below 0.05 from 6 seeds; 8 seeds reach 0.0078). Every other figure below is descriptive or exploratory.

| measure | dataset | setting | comparison | difference [95 % CI] | P(X>Y) [95 % CI] | design | p | p (Holm) | smallest possible p |
|---|---|---|---|---|---|---|---|---|---|
{% for v in verdicts %}| {{ v.measure }} | {{ v.dataset }} | {{ v.setting }} | {{ v.comparison }} | {% if v.significant %}**{{ v.difference }}**{% else %}{{ v.difference }}{% endif %} | {{ v.prob_superiority }} | {{ v.design }} | {{ v.p }} | {{ v.p_holm }} | {{ v.min_p }} |
{% endfor %}

## Summary

Per dataset, activation and setting over seeds: mean [95 % percentile bootstrap interval].

| dataset | activation | setting | runs |{% for h in summary_headers %} {{ h }} |{% endfor %}
|---|---|---|---|{% for h in summary_headers %}---|{% endfor %}
{% for r in summary_rows %}| {{ r.dataset }} | {{ r.activation }} | {{ r.setting }} | {{ r.runs }} |{% for c in r.cells %} {{ c }} |{% endfor %}
{% endfor %}
Full statistics: `tables/summary.csv`; per run: `tables/per_run.csv`.

## Outcomes: divergence and collapse

Every run that ended counts: a diverged run (loss NaN/∞) cannot be measured, and a complete run whose final test accuracy is at most {{ collapse_factor }} / classes has collapsed; the summary above describes only the runs that completed (95 % Wilson intervals; Fisher's exact test against the baseline in the same dataset and setting).

| dataset | setting | activation | runs | diverged | p (Fisher) | collapsed | p (Fisher) |
|---|---|---|---|---|---|---|---|
{% for o in outcomes %}| {{ o.dataset }} | {{ o.setting }} | {{ o.activation }} | {{ o.runs }} | {{ o.diverged }} | {{ o.diverged_p }} | {{ o.collapsed }} | {{ o.collapsed_p }} |
{% endfor %}

## Comparisons

Compared: {{ comparison_mode }}. Effects are positive when the first activation's values are larger; primary measures are Holm-adjusted within families (one measure, one dataset and setting), the others are exploratory.

| dataset | setting | measure | activation | vs | n | design | p | p (Holm, family) | Welch t | p (Holm) | U | p (Holm) | Cliff's δ | Hedges' g |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
{% for c in comparisons %}| {{ c.dataset }} | {{ c.setting }} | {{ c.measure }} | {{ c.activation }} | {{ c.other }} | {{ c.n }} | {{ c.design }} | {{ c.p }} | {{ c.p_holm }} | {{ c.welch_t }} | {{ c.welch_p_holm }} | {{ c.u }} | {{ c.mw_p_holm }} | {{ c.cliffs_delta }} | {{ c.hedges_g }} |
{% endfor %}
## Figures
{% for f in figures %}
### {{ f.title }}

![{{ f.title }}]({{ f.png }})

{{ f.caption }}
{% endfor %}
## Definitions and thresholds
{% for d in definitions %}
- **{{ d.term }}**: {{ d.text }}{% endfor %}

## Runs used ({{ n_used }})

| sweep | run | activation | seed | setting | epochs | final acc | dead % at E |
|---|---|---|---|---|---|---|---|
{% for r in runs %}| {{ r.sweep }} | {{ r.run_id }} | {{ r.activation }} | {{ r.seed }} | {{ r.setting }} | {{ r.epochs }} | {{ r.final_acc }} | {{ r.dead_pct }} |
{% endfor %}
## Diverged runs ({{ n_diverged }})
{% for r in diverged %}
- {{ r.sweep }}/{{ r.run_id }} ({{ r.activation }}): {{ r.reason }}{% else %}
None.{% endfor %}

## Skipped runs ({{ n_skipped }})
{% for r in skipped %}
- {{ r.dir }}: {{ r.reason }}{% else %}
None.{% endfor %}
"#;

// ---------------------------------------------------------------------------------------------
// inspect
// ---------------------------------------------------------------------------------------------

/// A terminal summary of one run directory, whatever its status: configuration, status, the
/// per-epoch accuracy and loss, and the dead percentage per layer per epoch.
pub fn inspect_run(dir: &Path) -> Result<String> {
    let manifest = Manifest::read(dir)?;
    let mut out = String::new();
    let c = &manifest.config;
    let _ = writeln!(out, "run       {}", manifest.run_id);
    let _ = writeln!(out, "sweep     {}", manifest.sweep);
    let _ = writeln!(
        out,
        "status    {} ({} of {} epochs completed)",
        manifest.status, manifest.epochs_completed, c.epochs
    );
    if let Some(e) = &manifest.error {
        let _ = writeln!(out, "error     {e}");
    }
    let _ = writeln!(
        out,
        "dataset   {}   activation {}   seed {}   lr {}",
        c.dataset.kind, c.activation, c.seed, c.lr
    );
    // Every other setting, as sweeps and exclusion rules spell it.
    let shown = ["dataset", "activation", "seed", "lr", "epochs"];
    let extras: Vec<String> = c
        .factor_values()
        .into_iter()
        .filter(|(k, _)| !shown.contains(k))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let _ = writeln!(out, "config    {}", extras.join(" "));
    if !manifest.config_hash.is_empty() {
        let data: String = manifest.data_checksum.chars().take(16).collect();
        let _ = writeln!(out, "identity  {} (data {data})", manifest.config_hash);
    }
    if !manifest.sites.is_empty() {
        let sites: Vec<String> = manifest
            .sites
            .iter()
            .map(|s| format!("{}:{}({})", s.site, s.layer_name, s.neurons))
            .collect();
        let _ = writeln!(out, "sites     {}", sites.join(" "));
    }
    let last = manifest.epochs_completed as u32;

    let mut epochs = EpochRow::read_all(dir)?;
    epochs.retain(|e| e.epoch <= last);
    epochs.sort_by_key(|e| e.epoch);
    let neurons_path = dir.join(NeuronRow::FILE);
    let dead = without_reader_panics(&neurons_path, || -> Result<DataFrame> {
        let source = PlRefPath::try_from_path(&neurons_path)?;
        Ok(LazyFrame::scan_parquet(source, ScanArgsParquet::default())?
            .filter(col(nc::EPOCH).lt_eq(lit(last)))
            .group_by([col(nc::EPOCH), col(nc::LAYER)])
            .agg([
                col(nc::LAYER_NAME).first(),
                (col(nc::MAX_PRE)
                    .lt_eq(lit(0.0))
                    .cast(DataType::Float64)
                    .mean()
                    * lit(100.0))
                .alias("dead_pct"),
            ])
            .sort([nc::LAYER, nc::EPOCH], Default::default())
            .collect()?)
    })?
    .with_context(|| format!("reading {}", neurons_path.display()))?;

    let mut layers: BTreeMap<u32, String> = BTreeMap::new();
    let mut dead_at: BTreeMap<(u32, u32), f64> = BTreeMap::new();
    {
        let epoch = dead.column("epoch")?.cast(&DataType::UInt32)?;
        let layer = dead.column("layer")?.cast(&DataType::UInt32)?;
        let (epoch, layer) = (epoch.u32()?, layer.u32()?);
        let name = dead.column("layer_name")?.str()?;
        let pct = dead.column("dead_pct")?.f64()?;
        for i in 0..dead.height() {
            if let (Some(e), Some(l)) = (epoch.get(i), layer.get(i)) {
                layers.insert(l, name.get(i).unwrap_or_default().to_string());
                dead_at.insert((e, l), pct.get(i).unwrap_or(f64::NAN));
            }
        }
    }
    let _ = writeln!(out);
    let _ = write!(
        out,
        "{:>5} {:>10} {:>10} {:>9} {:>9}",
        "epoch", "train_loss", "test_loss", "test_acc", "seconds"
    );
    for name in layers.values() {
        let _ = write!(out, " {:>12}", format!("dead% {name}"));
    }
    let _ = writeln!(out);
    let cell = |v: Option<f64>, width: usize, digits: usize| match v {
        Some(v) if v.is_finite() => format!("{v:>width$.digits$}"),
        Some(v) => format!("{v:>width$}"),
        None => format!("{:>width$}", "-"),
    };
    for row in &epochs {
        let e = row.epoch;
        let _ = write!(
            out,
            "{:>5} {} {} {} {}",
            e,
            cell(row.train_loss, 10, 4),
            cell(Some(row.test_loss), 10, 4),
            cell(Some(row.test_acc), 9, 4),
            cell(Some(row.seconds), 9, 1)
        );
        for l in layers.keys() {
            let _ = write!(out, " {}", cell(dead_at.get(&(e, *l)).copied(), 12, 1));
        }
        let _ = writeln!(out);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::RunStatus;
    use crate::synthetic::{
        generate_study, write_run, EpochRecord, NeuronRecord, RunSpec, StudySpec,
    };

    const HOSTILE_SWEEP: &str = "<script>alert(1)<script>";

    /// Mean over runs of `value(run_dir)` per activation, computed straight from the files.
    fn independent_mean(dirs: &[PathBuf], activation: &str, value: impl Fn(&Path) -> f64) -> f64 {
        let values: Vec<f64> = dirs
            .iter()
            .filter(|d| {
                d.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("digits-{activation}-lr"))
            })
            .map(|d| value(d))
            .collect();
        values.iter().sum::<f64>() / values.len() as f64
    }

    fn read(path: &Path) -> DataFrame {
        let file = std::fs::File::open(path).unwrap();
        ParquetReader::new(file).finish().unwrap()
    }

    /// Dead fraction at the last epoch, by a plain loop over the neuron rows.
    fn dead_fraction_at_end(dir: &Path) -> f64 {
        let df = read(&dir.join("neurons.parquet"));
        let epoch = df.column("epoch").unwrap().u32().unwrap();
        let max_pre = df.column("max_pre").unwrap().f64().unwrap();
        let last = epoch.iter().flatten().max().unwrap();
        let (mut dead, mut total) = (0usize, 0usize);
        for (e, m) in epoch.iter().zip(max_pre.iter()) {
            if e == Some(last) {
                total += 1;
                dead += usize::from(m.unwrap() <= 0.0);
            }
        }
        dead as f64 / total as f64
    }

    fn final_accuracy(dir: &Path) -> f64 {
        let df = read(&dir.join("epochs.parquet"));
        let acc = df.column("test_acc").unwrap().f64().unwrap();
        acc.get(acc.len() - 1).unwrap()
    }

    fn summary_csv_mean(csv: &str, activation: &str, measure: &str) -> f64 {
        let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
        let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
        csv.lines()
            .skip(1)
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|f| f[at("activation")] == activation && f[at("measure")] == measure)
            .map(|f| f[at("mean")].parse().unwrap())
            .unwrap()
    }

    #[test]
    fn full_report_escapes_user_strings_and_matches_independent_numbers() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("runs");
        let study = StudySpec {
            sweep: HOSTILE_SWEEP.into(),
            dataset: "digits".into(),
            activations: vec!["relu".into(), "relu-softsign".into(), "softsign".into()],
            seeds: 4,
            epochs: 6,
            sites: vec![("conv1".into(), 8), ("fc1".into(), 12)],
            lr: 0.05,
        };
        let dirs = generate_study(&root, &study, 7).unwrap();
        // One diverged and one failed run, which must be listed, not measured.
        let mut spec = RunSpec::new(
            "extra",
            "digits",
            "relu",
            99,
            0.05,
            6,
            vec![("fc1".into(), 2)],
        );
        spec.status = RunStatus::Diverged;
        let epochs = [
            EpochRecord::new(0, 0.1, None),
            EpochRecord::new(1, f64::NAN, Some(f64::NAN)),
        ];
        let neurons: Vec<NeuronRecord> = (0..2)
            .flat_map(|e| (0..2).map(move |n| NeuronRecord::alive(e, 0, n)))
            .collect();
        write_run(&root, &spec, &epochs, &neurons).unwrap();
        spec.seed = 98;
        spec.status = RunStatus::Failed;
        spec.error = Some("disk <full> & gone".into());
        write_run(&root, &spec, &epochs, &neurons).unwrap();

        let out = tmp.path().join("report");
        let opts = AnalyzeOptions {
            target_acc: Some(0.8),
            title: "Necrosis <b>study</b>".into(),
            activation_curves: vec![ActivationCurve {
                name: "relu".into(),
                x: vec![-1.0, 0.0, 1.0],
                f: vec![0.0, 0.0, 1.0],
                df: vec![0.0, 0.0, 1.0],
            }],
            ..Default::default()
        };
        let summary = crate::analyze(std::slice::from_ref(&root), &opts, &out).unwrap();
        assert_eq!(
            (summary.runs_used, summary.diverged, summary.skipped),
            (12, 1, 1)
        );

        let html = std::fs::read_to_string(out.join("index.html")).unwrap();
        assert!(
            !html.contains("<script>alert"),
            "unescaped sweep name in index.html"
        );
        assert!(html.contains("&lt;script&gt;alert(1)&lt;script&gt;"));
        assert!(
            html.contains("Necrosis &lt;b&gt;study&lt;&#x2f;b&gt;")
                || html.contains("Necrosis &lt;b&gt;study&lt;/b&gt;")
        );
        assert!(html.contains("disk &lt;full&gt; &amp; gone"));
        assert!(html.contains("diverged"));
        let md = std::fs::read_to_string(out.join("report.md")).unwrap();
        assert!(md.contains("Definitions and thresholds"));

        for t in [
            "summary.csv",
            "comparisons.csv",
            "per_run.csv",
            "per_run_layer.csv",
            "per_epoch_layer.csv",
            "summary.tex",
            "comparisons.tex",
        ] {
            let len = std::fs::metadata(out.join("tables").join(t)).unwrap().len();
            assert!(len > 100, "{t} has {len} bytes");
        }
        for f in &summary.figures {
            let len = std::fs::metadata(f).unwrap().len();
            assert!(len > 3_000, "{} has {len} bytes", f.display());
            // minijinja escapes "/" as &#x2f; inside attributes, which browsers decode.
            assert!(
                html.contains(&*f.file_name().unwrap().to_string_lossy()),
                "{} not linked",
                f.display()
            );
        }
        // activation functions + 8 figures for the one dataset, each as SVG and PNG.
        assert_eq!(summary.figures.len(), 2 * 9);

        let csv = std::fs::read_to_string(out.join("tables/summary.csv")).unwrap();
        for activation in ["relu", "relu-softsign", "softsign"] {
            let expected = independent_mean(&dirs, activation, dead_fraction_at_end);
            let got = summary_csv_mean(&csv, activation, "dead_frac_final");
            assert!(
                (expected - got).abs() < 1e-12,
                "{activation}: dead {expected} vs {got}"
            );
            let expected = independent_mean(&dirs, activation, final_accuracy);
            let got = summary_csv_mean(&csv, activation, "final_acc");
            assert!(
                (expected - got).abs() < 1e-12,
                "{activation}: acc {expected} vs {got}"
            );
        }
        let comparisons = std::fs::read_to_string(out.join("tables/comparisons.csv")).unwrap();
        assert!(comparisons.lines().skip(1).all(|l| l.contains(",relu,")));
        assert!(comparisons.lines().count() > 2);
    }

    #[test]
    fn inspect_shows_config_and_dead_percentages() {
        let tmp = tempfile::tempdir().unwrap();
        let mut spec = RunSpec::new("s", "digits", "elu", 3, 0.1, 5, vec![("fc1".into(), 2)]);
        spec.status = RunStatus::Running;
        let epochs: Vec<EpochRecord> = (0..3)
            .map(|e| EpochRecord::new(e, 0.3 * e as f64, (e > 0).then_some(1.0)))
            .collect();
        let mut neurons: Vec<NeuronRecord> = (0..3)
            .flat_map(|e| (0..2).map(move |n| NeuronRecord::alive(e, 0, n)))
            .collect();
        neurons[5].max_pre = -1.0; // neuron 1 dead at epoch 2
        let dir = write_run(tmp.path(), &spec, &epochs, &neurons).unwrap();
        let text = inspect_run(&dir).unwrap();
        assert!(text.contains("digits-elu-lr0.1-s3"), "{text}");
        assert!(text.contains("running (2 of 5 epochs completed)"), "{text}");
        assert!(text.contains("dead% fc1"), "{text}");
        let last = text.lines().last().unwrap();
        assert!(
            last.trim_start().starts_with('2') && last.trim_end().ends_with("50.0"),
            "{text}"
        );
    }
}
