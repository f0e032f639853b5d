//! necrosis-analysis: reads necrosis run records (see `docs/records.md`), measures neuron death and
//! convergence, compares activations with statistics across seeds, and draws figures and reports.
//!
//! It never imports the trainer: run directories on disk are its only input, read through
//! `necrosis-records`, the crate that owns their format. The pipeline, one module per step:
//!
//! - [`load`]: find run directories, read manifests and parquet records into a [`RunSet`];
//! - [`measures`]: SPEC §3 — dead, gradient-starved, dormant, time of death, revival,
//!   persistence, survival; [`convergence`]: convergence speed;
//! - [`interventions`], [`revival_cause`]: an intervention's setting and resets, and revivals
//!   split into natural ones and those an intervention caused (issue #14);
//! - [`representation`]: rank, weight drift and saturation per condition, layer and epoch;
//! - [`worst_case`]: diverged runs at their worst case (chance accuracy, never converged);
//! - [`aggregate`]: SPEC §4 across seeds — summaries per (dataset, activation, lr) and comparisons
//!   between activations, using [`stats`];
//! - [`findings`]: all of the above as one value ([`Findings`]), before anything is rendered;
//! - [`figures`]: PNG and SVG figures;
//! - [`report`]: `index.html`, `report.md` (views in [`report_view`], templates in
//!   `analysis/templates/`), CSV and LaTeX tables ([`report_tables`]);
//! - [`inspect`]: a terminal summary of one run.
//!
//! [`analyze`] runs all of it; [`synthetic`] writes run records for tests and benchmarks.

pub mod aggregate;
pub mod comparison;
pub mod contrast;
pub mod convergence;
pub mod effect;
pub mod figures;
pub mod findings;
pub mod inspect;
#[cfg(test)]
mod intervention_fixtures;
pub mod interventions;
pub mod load;
pub mod measures;
pub mod outcomes;
pub mod paired;
pub mod report;
pub mod report_interventions;
pub mod report_tables;
pub mod report_view;
pub mod representation;
pub mod revival_cause;
pub mod stats;
pub mod synthetic;
pub mod worst_case;

use std::path::{Path, PathBuf};

use anyhow::Result;

pub use aggregate::{aggregate, Aggregate, ComparisonRow, GroupSummary, MEASURES};
pub use figures::{plot_activation_functions, ActivationCurve};
pub use findings::{analyse, Findings};
pub use inspect::inspect_run;
pub use load::{load_runs, RunSet};
pub use measures::{compute_measures, MeasureOptions, Measures};
pub use report::{write_report, AnalyzeOptions, ReportSummary};

/// Writes a file atomically (records' own writer, for reports and figures too).
pub use necrosis_records::files::write_atomic;

/// Loads the runs under `paths` and writes the full report to `out` (see [`write_report`]).
pub fn analyze(paths: &[PathBuf], opts: &AnalyzeOptions, out: &Path) -> Result<ReportSummary> {
    let runs = load_runs(paths)?;
    write_report(&runs, opts, out)
}
