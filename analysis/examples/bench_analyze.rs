//! Speed check of the analysis: generates 100 runs (5 activations × 20 seeds) of 30 epochs and
//! 300 neurons each in a temporary folder, then times loading, every measure and the statistics
//! across seeds (figures excluded, they are drawn once per report and scale with the number of
//! activations, not runs).
//!
//! `cargo run --release -p necrosis-analysis --example bench_analyze`

use std::time::Instant;

use anyhow::Result;
use necrosis_analysis::aggregate::{aggregate, AggregateOptions};
use necrosis_analysis::synthetic::{generate_study, StudySpec};
use necrosis_analysis::{compute_measures, load_runs, MeasureOptions};

/// Peak resident set size of this process in MB (VmHWM), if the kernel reports it.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() -> Result<()> {
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
        seeds: 20,
        epochs: 30,
        sites: vec![
            ("conv1".into(), 32),
            ("conv2".into(), 64),
            ("fc1".into(), 128),
            ("fc2".into(), 76),
        ],
        lr: 0.05,
    };
    let generated = Instant::now();
    let dirs = generate_study(tmp.path(), &study, 1)?;
    eprintln!(
        "generated {} runs in {:.2} s",
        dirs.len(),
        generated.elapsed().as_secs_f64()
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
        },
    )?;
    let total = start.elapsed();

    let neuron_rows: u32 = runs
        .runs
        .iter()
        .map(|r| 300 * (r.epochs_completed + 1))
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
    Ok(())
}
