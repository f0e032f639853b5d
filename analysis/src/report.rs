//! The report of an analysis: `index.html` (self-contained apart from the figure files it links,
//! rendered with minijinja and HTML auto-escaping from `analysis/templates/`), `report.md`,
//! `figures/*.{png,svg}` and `tables/*.{csv,tex}`. This module runs the pipeline; the views the
//! templates see are in [`crate::report_view`], the tables in [`crate::report_tables`].
//!
//! Every file is written atomically. The report states its definitions and thresholds, lists the
//! runs it used, and names every run it left out with the reason.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use minijinja::Environment;

use crate::aggregate::{Aggregate, AggregateOptions};
use crate::figures::{
    draw_report_figures, plot_activation_functions, ActivationCurve, FigureContext, FigureFile,
    Palette,
};
use crate::findings::analyse;
use crate::load::RunSet;
use crate::measures::{MeasureOptions, Measures};
use crate::outcomes::outcomes_csv;
use crate::report_tables::write_tables;
use crate::report_view::ReportContext;
use crate::write_atomic;

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

/// Analyses `runs` ([`analyse`]) and renders the findings: figures, tables, `index.html` and
/// `report.md` in `out` (created if needed).
pub fn write_report(runs: &RunSet, opts: &AnalyzeOptions, out: &Path) -> Result<ReportSummary> {
    let figures_dir = out.join("figures");
    let tables_dir = out.join("tables");
    for d in [out, &figures_dir, &tables_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let measure_opts = opts.measure_options();
    let findings = analyse(runs, opts)?;

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
        measures: &findings.measures,
        aggregate: &findings.aggregate,
        options: &measure_opts,
        representation: Some(&findings.representation),
        palette,
        out_dir: figures_dir.clone(),
    })?);

    let mut tables = write_tables(&findings.measures, &findings.aggregate, opts, &tables_dir)?;
    // Divergence and collapse per condition: outcomes, not runs left out.
    let outcomes_path = tables_dir.join("outcomes.csv");
    write_atomic(&outcomes_path, outcomes_csv(&findings.outcomes).as_bytes())?;
    tables.push(outcomes_path);
    let context = ReportContext::new(runs, &findings, opts, &figures)?;

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
        measures: findings.measures,
        aggregate: findings.aggregate,
    })
}

/// The report's templates, asset files so that they read (and diff) as HTML and Markdown.
const HTML_TEMPLATE: &str = include_str!("../templates/report.html.j2");

const MD_TEMPLATE: &str = include_str!("../templates/report.md.j2");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::RunStatus;
    use crate::synthetic::{
        generate_study, write_run, EpochRecord, NeuronRecord, RunSpec, StudySpec,
    };
    use polars::prelude::*;

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
        // activation functions + 8 figures for the one dataset + the verdict's effects,
        // probability of improvement and IQM, each as SVG and PNG.
        assert_eq!(summary.figures.len(), 2 * 12);

        let csv = std::fs::read_to_string(out.join("tables/summary.csv")).unwrap();
        for activation in ["relu", "relu-softsign", "softsign"] {
            let expected = independent_mean(&dirs, activation, dead_fraction_at_end);
            let got = summary_csv_mean(&csv, activation, "dead_frac_final");
            assert!(
                (expected - got).abs() < 1e-12,
                "{activation}: dead {expected} vs {got}"
            );
            // The diverged relu run (same setting) counts at chance, 1/10, in the accuracy; it
            // has no dead fraction, so the dead-fraction mean above is over the study's runs.
            let mut expected = independent_mean(&dirs, activation, final_accuracy);
            if activation == "relu" {
                expected = (expected * study.seeds as f64 + 0.1) / (study.seeds + 1) as f64;
            }
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
}
