//! necrosis-analysis: reads necrosis run records (see `docs/records.md`), measures neuron death and
//! convergence, compares activations with statistics across seeds, and draws figures and reports.
//!
//! It never imports the trainer: run directories on disk are its only input. The pipeline, one
//! module per step:
//!
//! - [`load`]: find run directories, read manifests and parquet records into a [`RunSet`];
//! - [`measures`]: SPEC §3 — dead, gradient-starved, dormant, time of death, revival, persistence,
//!   survival, convergence speed;
//! - [`aggregate`]: SPEC §4 across seeds — summaries per (dataset, activation, lr) and comparisons
//!   between activations, using [`stats`];
//! - [`figures`]: PNG and SVG figures;
//! - [`report`]: `index.html`, `report.md`, CSV and LaTeX tables, and [`inspect_run`].
//!
//! [`analyze`] runs all of it; [`synthetic`] writes run records for tests and benchmarks.

pub mod aggregate;
pub mod figures;
pub mod load;
pub mod measures;
pub mod report;
pub mod stats;
pub mod synthetic;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub use aggregate::{aggregate, Aggregate, ComparisonRow, GroupSummary, MEASURES};
pub use figures::{plot_activation_functions, ActivationCurve};
pub use load::{load_runs, RunSet};
pub use measures::{compute_measures, MeasureOptions, Measures};
pub use report::{inspect_run, write_report, AnalyzeOptions, ReportSummary};

/// Loads the runs under `paths` and writes the full report to `out` (see [`write_report`]).
pub fn analyze(paths: &[PathBuf], opts: &AnalyzeOptions, out: &Path) -> Result<ReportSummary> {
    let runs = load_runs(paths)?;
    write_report(&runs, opts, out)
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so that a
/// reader sees either no file, the old file or the complete new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .with_context(|| format!("{}: no file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|_| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    drop(file);
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}
