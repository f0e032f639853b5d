//! Speed and memory of the analysis: generates 5 activations × `--seeds` runs of `--epochs`
//! epochs (plus epoch 0) and 300 × `--width` neurons each in a temporary folder, then times
//! loading, every measure and the statistics across seeds (figures excluded, they are drawn once
//! per report and scale with the number of activations, not runs), and prints the peak RSS.
//!
//! `cargo run --release -p necrosis-analysis --example bench_analyze [-- --seeds 20 --epochs 30
//! --width 1 --report]`; the defaults give 930 000 neuron-rows, `--width 11` gives 10.2 million.
//! With `--report` it then renders the whole report as `analyze` does (figures, HTML, tables)
//! and times that too.

use std::time::Instant;

use anyhow::Result;
use necrosis_analysis::aggregate::{aggregate, AggregateOptions};
use necrosis_analysis::synthetic::{generate_study, StudySpec};
use necrosis_analysis::{analyze, compute_measures, load_runs, AnalyzeOptions, MeasureOptions};

/// Peak resident set size of this process in MB (VmHWM), if the kernel reports it.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn flag(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let seeds = flag(&args, "--seeds", 20).max(2) as u64;
    let epochs = flag(&args, "--epochs", 30).max(1) as u32;
    let width = flag(&args, "--width", 1).max(1) as u32;
    let tmp = tempfile::tempdir()?;
    let study = StudySpec {
        sweep: "bench".into(),
        dataset: "synthetic".into(),
        activations: [
            "relu",
            "softplus",
            "softsign",
            "relu-softplus",
            "relu-softsign",
        ]
        .map(String::from)
        .to_vec(),
        seeds,
        epochs,
        sites: vec![
            ("conv1".into(), 32 * width),
            ("conv2".into(), 64 * width),
            ("fc1".into(), 128 * width),
            ("fc2".into(), 76 * width),
        ],
        lr: 0.05,
    };
    let generated = Instant::now();
    let dirs = generate_study(tmp.path(), &study, 1)?;
    eprintln!(
        "generated {} runs in {:.2} s (peak RSS so far {})",
        dirs.len(),
        generated.elapsed().as_secs_f64(),
        peak_rss_mb().map_or("unknown".into(), |mb| format!("{mb:.0} MB"))
    );

    let start = Instant::now();
    let runs = load_runs(&[tmp.path().to_path_buf()])?;
    let loaded = start.elapsed();
    let measures = compute_measures(&runs, &MeasureOptions::default())?;
    let measured = start.elapsed();
    let agg = aggregate(
        &measures,
        &AggregateOptions {
            baseline: Some("relu".into()),
            all_pairs: false,
            seed: 0,
            contrasts: Vec::new(),
        },
    )?;
    let total = start.elapsed();

    let neuron_rows: u64 = runs
        .runs
        .iter()
        .map(|r| 300 * width as u64 * (r.epochs_completed as u64 + 1))
        .sum();
    eprintln!(
        "load {:.3} s, measures {:.3} s, statistics {:.3} s ({} summaries, {} comparisons)",
        loaded.as_secs_f64(),
        (measured - loaded).as_secs_f64(),
        (total - measured).as_secs_f64(),
        agg.summaries.len(),
        agg.comparisons.len()
    );
    println!(
        "analyze {} runs, {} neuron-rows: {:.2} s (measures+stats, figures excluded), peak RSS {}",
        runs.runs.len(),
        neuron_rows,
        total.as_secs_f64(),
        peak_rss_mb().map_or("unknown".into(), |mb| format!("{mb:.0} MB"))
    );
    if args.iter().any(|a| a == "--report") {
        let start = Instant::now();
        let out = tmp.path().join("report");
        let summary = analyze(
            &[tmp.path().join("bench")],
            &AnalyzeOptions::default(),
            &out,
        )?;
        println!(
            "report of {} runs ({} figures, {} tables): {:.2} s, peak RSS {}",
            summary.runs_used,
            summary.figures.len(),
            summary.tables.len(),
            start.elapsed().as_secs_f64(),
            peak_rss_mb().map_or("unknown".into(), |mb| format!("{mb:.0} MB"))
        );
    }
    Ok(())
}
