//! Writes a report from a generated sweep (no training needed), to see what the analysis
//! produces: `cargo run --release -p necrosis-analysis --example demo_report -- <out-dir>`.
//! The runs go to `<out-dir>/runs`, the report to `<out-dir>/report`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use necrosis_analysis::synthetic::{generate_study, StudySpec};
use necrosis_analysis::{analyze, ActivationCurve, AnalyzeOptions};

fn curve(name: &str, f: fn(f64) -> f64, df: fn(f64) -> f64) -> ActivationCurve {
    let x: Vec<f64> = (0..=400).map(|i| -5.0 + 0.025 * i as f64).collect();
    ActivationCurve {
        name: name.into(),
        f: x.iter().map(|&v| f(v)).collect(),
        df: x.iter().map(|&v| df(v)).collect(),
        x,
    }
}

fn main() -> Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .context("usage: demo_report <out-dir>")?,
    );
    let runs = out.join("runs");
    let study = StudySpec {
        sweep: "demo".into(),
        dataset: "synthetic".into(),
        activations: ["relu", "softplus", "softsign", "relu-softsign"]
            .map(String::from)
            .to_vec(),
        seeds: 8,
        epochs: 15,
        sites: vec![
            ("conv1".into(), 16),
            ("conv2".into(), 32),
            ("fc1".into(), 64),
        ],
        lr: 0.05,
    };
    generate_study(&runs, &study, 3)?;
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
    let opts = AnalyzeOptions {
        target_acc: Some(0.86),
        title: "Demo: generated runs".into(),
        activation_curves: vec![
            curve("relu", |x| x.max(0.0), |x| if x > 0.0 { 1.0 } else { 0.0 }),
            curve(
                "softplus",
                |x| x.max(0.0) + (-x.abs()).exp().ln_1p(),
                sigmoid,
            ),
            curve(
                "softsign",
                |x| x / (1.0 + x.abs()),
                |x| 1.0 / (1.0 + x.abs()).powi(2),
            ),
            curve(
                "relu-softsign",
                |x| if x > 0.0 { x } else { x / (1.0 - x) },
                |x| {
                    if x > 0.0 {
                        1.0
                    } else {
                        1.0 / (1.0 - x).powi(2)
                    }
                },
            ),
        ],
        ..Default::default()
    };
    let summary = analyze(&[runs], &opts, &out.join("report"))?;
    println!(
        "{} runs → {} ({} figures, {} tables)",
        summary.runs_used,
        summary.index_html.display(),
        summary.figures.len(),
        summary.tables.len()
    );
    Ok(())
}
