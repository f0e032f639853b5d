//! What an analysis of a set of runs finds, as one value and before anything is drawn or written:
//! the measures (per neuron, layer, epoch and run, and the diverged runs' worst cases), the
//! statistics across seeds, and the outcomes (divergence, collapse) per condition. The figures,
//! tables and report render from [`Findings`]; a user can also compute it alone.

use anyhow::Result;

use crate::aggregate::{aggregate, f64_column, Aggregate};
use crate::load::RunSet;
use crate::measures::{compute_measures, Measures};
use crate::outcomes::{outcomes, ConditionOutcome};
use crate::report::AnalyzeOptions;
use crate::representation::{measure_representation, with_final_measures, Representation};

/// Everything the report shows, computed.
#[derive(Debug, Clone)]
pub struct Findings {
    pub measures: Measures,
    pub aggregate: Aggregate,
    /// Rank, weight drift and saturation per condition, layer and epoch (issue #14).
    pub representation: Representation,
    /// Divergence and collapse per (dataset, setting, activation).
    pub outcomes: Vec<ConditionOutcome>,
}

/// Measures and compares `runs` (no file is written).
pub fn analyse(runs: &RunSet, opts: &AnalyzeOptions) -> Result<Findings> {
    let mut measures = compute_measures(runs, &opts.measure_options())?;
    let representation = measure_representation(runs)?;
    // Their values at E are exploratory per-run measures, summarised and compared as the others.
    if let Some(finals) = &representation.per_run {
        measures.per_run = with_final_measures(measures.per_run, finals)?;
    }
    let aggregate = aggregate(&measures, &opts.aggregate_options())?;
    // Each complete run's final accuracy in the order of `runs.runs`, whatever the order of the
    // per-run table.
    let mut final_acc = vec![f64::NAN; runs.runs.len()];
    let index = f64_column(&measures.per_run, "run")?;
    let acc = f64_column(&measures.per_run, "final_acc")?;
    for (run, value) in index.iter().zip(acc) {
        if let Some(slot) = final_acc.get_mut(*run as usize) {
            *slot = value;
        }
    }
    let baseline = opts.baseline.as_deref().filter(|_| !opts.all_pairs);
    let outcomes = outcomes(runs, &final_acc, baseline);
    Ok(Findings {
        measures,
        aggregate,
        representation,
        outcomes,
    })
}
