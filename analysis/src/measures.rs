//! Derived measures of SPEC §3: neuron death, gradient starvation, dormancy, time of death,
//! irreversible death, revival, persistence and survival — per layer and for the whole network, per
//! run and per epoch — and convergence speed per run.
//!
//! Neuron-level measures are polars expressions over the lazy neuron records of all runs (one
//! `group_by` per table), never a Rust loop over neuron rows. Convergence reads `epochs.parquet`,
//! which has one row per run and epoch, so it is computed in plain Rust.
//!
//! Definitions, with E the run's last completed epoch and epochs e = 0..E:
//! - dead(i, e): `max_pre <= 0` on the probe set.
//! - gradient-starved(i, e): `mean_deriv < starved_eps` (default 1e-3).
//! - τ-dormant(i, e): sᵢ = `mean_abs_act`ᵢ / (mean of `mean_abs_act` over the layer's neurons at e);
//!   dormant iff sᵢ <= τ. A layer whose neurons all have `mean_abs_act` = 0 has sᵢ := 0 (all dormant)
//!   rather than 0/0.
//! - time of death Tᵢ: the first epoch from which i is dead at every epoch through E (null if i is
//!   alive at E); irreversibly dead: dead at E and Tᵢ <= E − w (`dead_window`, default 2).
//! - revival: a dead(e−1) → alive(e) transition. Revival rate: neurons ever dead and alive at E /
//!   neurons ever dead (NaN when none was ever dead).
//! - persistence p(e): of the neurons dead at e−1, the share dead at e (NaN at e = 0 or when none
//!   was dead at e−1).
//! - survival S(e): share of neurons not dead at any epoch 0..=e.

use anyhow::{Context, Result};
use necrosis_records::tables::neuron_columns as nc;
use polars::prelude::*;

use crate::convergence::{convergence_by_run, Convergence};
use crate::load::RunSet;
use crate::revival_cause::RevivalCauses;

/// The dormancy thresholds τ reported (SPEC §3), and the column-name suffix of each.
pub const DORMANT_TAUS: [(f64, &str); 3] = [(0.0, "0"), (0.025, "0_025"), (0.1, "0_1")];

/// The `layer` value of rows that describe the whole network rather than one activation site.
pub const NETWORK_LAYER: i64 = -1;

/// Thresholds of the neuron and convergence measures.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasureOptions {
    /// w: a neuron dead at E is irreversibly dead when its time of death is <= E − w.
    pub dead_window: usize,
    /// ε: gradient-starved iff `mean_deriv < ε`.
    pub starved_eps: f64,
    /// Absolute test-accuracy target for epochs/seconds-to-target (None: only the relative targets).
    pub target_acc: Option<f64>,
}

impl Default for MeasureOptions {
    fn default() -> Self {
        MeasureOptions {
            dead_window: 2,
            starved_eps: 1e-3,
            target_acc: None,
        }
    }
}

/// All derived measures of a [`RunSet`]. Every frame has the UInt32 `run` column (index into
/// [`RunSet::runs`]); `layer` is Int64 with [`NETWORK_LAYER`] (−1, `layer_name` "network") for the
/// whole network.
#[derive(Debug, Clone)]
pub struct Measures {
    /// One row per (run, layer, epoch): `n` neurons, `dead_frac`, `starved_frac`,
    /// `dormant_frac_0`, `dormant_frac_0_025`, `dormant_frac_0_1`, `survival`, `persistence`,
    /// `revived_frac` (alive at e after having been dead before e), `revivals` (dead→alive
    /// transitions into e), `active_frac_mean`, `grad_pre_abs_mean` (mean over neurons; null at
    /// epoch 0, which has no training). When some run had an intervention, also
    /// `natural_revivals` and `intervention_revivals` ([`crate::revival_cause`]).
    pub layer_epoch: DataFrame,
    /// One row per (run, layer, neuron): `time_of_death` (null when alive at E), `dead_at_end`,
    /// `irreversibly_dead`, `ever_dead`, `revived` (ever dead and alive at E), `revivals` (count of
    /// dead→alive transitions). Here `layer` is the UInt32 site index.
    pub neuron_fate: DataFrame,
    /// One row per (run, layer) incl. the network: `n`, `dead_frac_final`, `starved_frac_final`,
    /// `dormant_frac_<τ>_final`, `survival_final`, `irreversibly_dead_frac`, `ever_dead_frac`,
    /// `revival_rate`, `revival_count`, `mean_time_of_death` (over neurons dead at E).
    pub run_layer: DataFrame,
    /// One row per run: run-level columns, convergence measures and the network's row of
    /// `run_layer`. The input to the statistics across seeds. When some run had an
    /// intervention, also `natural_revivals`, `intervention_revivals`, `resets`,
    /// `resets_of_dead`, `revived_frac` and `revived_by_intervention_frac`.
    pub per_run: DataFrame,
    /// One row per diverged run: its run-level columns and the worst-case values of the
    /// convergence measures ([`crate::worst_case`]); no neuron measure. The statistics count these
    /// runs in their condition's sample wherever a worst case is defined.
    pub diverged: DataFrame,
    /// The rows of every run's `interventions.parquet` up to its E
    /// ([`crate::interventions::read_resets`]); None when no run has the file.
    pub resets: Option<DataFrame>,
}

/// Neuron rows measured at a time: about 200 MB of neuron states.
const MEASURE_BATCH_ROWS: u64 = 1_000_000;

/// Computes every measure for the complete runs of `runs`.
pub fn compute_measures(runs: &RunSet, opts: &MeasureOptions) -> Result<Measures> {
    compute_measures_in_batches(runs, opts, MEASURE_BATCH_ROWS)
}

fn compute_measures_in_batches(
    runs: &RunSet,
    opts: &MeasureOptions,
    batch_rows: u64,
) -> Result<Measures> {
    // Every count and fate is per run, so runs are measured in batches and only the small
    // results are kept: memory is one batch's rows, not the sweep's. Within a batch the neuron
    // states feed two aggregations (per epoch and per neuron); materialising them once keeps
    // the scan, the sort and the window expressions to a single pass.
    let mut counts_parts = Vec::new();
    let mut fate_parts = Vec::new();
    let mut causes = RevivalCauses::new(runs)?;
    for batch in runs.neuron_batches(batch_rows) {
        let rows = neuron_states(batch, opts)?
            .collect()
            .map_err(anyhow::Error::from)
            .context("reading neuron records")?
            .lazy();
        let per_layer =
            layer_epoch_counts(
                rows.clone()
                    .group_by([col("run"), col("layer"), col("epoch")]),
            )
            .with_column(col("layer").cast(DataType::Int64))
            .select(layer_epoch_count_columns());
        let network = layer_epoch_counts(rows.clone().group_by([col("run"), col("epoch")]))
            .with_columns([
                lit(NETWORK_LAYER).cast(DataType::Int64).alias("layer"),
                lit("network").alias("layer_name"),
            ]);
        counts_parts.push(
            concat(
                [per_layer, network.select(layer_epoch_count_columns())],
                UnionArgs::default(),
            )?
            .collect()
            .map_err(anyhow::Error::from)
            .context("counting dead, dormant and surviving neurons")?
            .lazy(),
        );
        causes.add_batch(&rows)?;
        fate_parts.push(
            neuron_fate(rows, opts.dead_window)
                .collect()
                .map_err(anyhow::Error::from)
                .context("computing time of death and revivals")?
                .lazy(),
        );
    }
    let counts = concat(counts_parts, UnionArgs::default())?.collect()?;
    let neuron_fate = concat(fate_parts, UnionArgs::default())?
        .sort(["run", "layer", "neuron"], Default::default())
        .collect()?;

    let layer_epoch = layer_epoch_fractions(counts.clone().lazy())
        .sort(["run", "layer", "epoch"], Default::default())
        .collect()?;
    let run_layer = run_layer_summary(&layer_epoch, &neuron_fate)?;
    let per_run = per_run_table(runs, &run_layer, opts)?;
    let (layer_epoch, per_run, resets) = causes.split(layer_epoch, per_run, &neuron_fate)?;
    let diverged = crate::worst_case::worst_case_table(runs, opts.target_acc)?;
    Ok(Measures {
        layer_epoch,
        neuron_fate,
        run_layer,
        per_run,
        diverged,
        resets,
    })
}

/// Per-row neuron states: `dead`, `starved`, `dormant_<τ>`, `prev_dead` (dead at e−1, null at
/// epoch 0), `first_dead` (first epoch the neuron is dead, null if never).
pub(crate) fn neuron_states(neurons: LazyFrame, opts: &MeasureOptions) -> PolarsResult<LazyFrame> {
    let neuron_key = [col("run"), col("layer"), col("neuron")];
    let layer_mean = col(nc::MEAN_ABS_ACT)
        .mean()
        .over([col("run"), col("epoch"), col("layer")])?;
    Ok(neurons
        // Sorted by epoch within each neuron so that shift(1) in the window is epoch e−1.
        .sort(["run", "layer", "neuron", "epoch"], Default::default())
        .with_columns([
            col(nc::MAX_PRE).lt_eq(lit(0.0)).alias("dead"),
            col(nc::MEAN_DERIV)
                .lt(lit(opts.starved_eps))
                .alias("starved"),
            when(layer_mean.clone().gt(lit(0.0)))
                .then(col(nc::MEAN_ABS_ACT) / layer_mean)
                .otherwise(lit(0.0))
                .alias("score"),
        ])
        .with_columns([
            col("dead")
                .shift(lit(1))
                .over(neuron_key.clone())?
                .alias("prev_dead"),
            col("epoch")
                .filter(col("dead"))
                .min()
                .over(neuron_key)?
                .alias("first_dead"),
        ])
        .with_columns(
            DORMANT_TAUS
                .iter()
                .map(|(tau, s)| col("score").lt_eq(lit(*tau)).alias(format!("dormant_{s}")))
                .collect::<Vec<_>>(),
        )
        // Only what the aggregations read is kept, since these rows are materialised.
        .select(
            [
                "run",
                "layer",
                "layer_name",
                "neuron",
                "epoch",
                "dead",
                "starved",
                "prev_dead",
                "first_dead",
                "active_frac",
                "grad_pre_abs_mean",
            ]
            .into_iter()
            .map(col)
            .chain(
                DORMANT_TAUS
                    .iter()
                    .map(|(_, s)| col(format!("dormant_{s}"))),
            )
            .collect::<Vec<_>>(),
        ))
}

fn count(predicate: Expr) -> Expr {
    predicate.cast(DataType::UInt32).sum()
}

/// Counts per group of neuron-epoch rows (a layer or the network at one epoch).
fn layer_epoch_counts(groups: LazyGroupBy) -> LazyFrame {
    let mut aggs = vec![
        col(nc::LAYER_NAME).first(),
        len().cast(DataType::Float64).alias("n"),
        count(col("dead")).alias("n_dead"),
        count(col("starved")).alias("n_starved"),
        count(
            col("first_dead")
                .is_null()
                .or(col("first_dead").gt(col("epoch"))),
        )
        .alias("n_never_dead"),
        count(col("prev_dead")).alias("n_prev_dead"),
        count(col("prev_dead").and(col("dead"))).alias("n_still_dead"),
        count(col("prev_dead").and(col("dead").not())).alias("revivals"),
        count(col("dead").not().and(col("first_dead").lt(col("epoch")))).alias("n_revived"),
        col(nc::ACTIVE_FRAC).sum().alias("active_frac_sum"),
        col(nc::GRAD_PRE_ABS_MEAN).sum().alias("grad_pre_sum"),
    ];
    for (_, suffix) in DORMANT_TAUS {
        aggs.push(count(col(format!("dormant_{suffix}"))).alias(format!("n_dormant_{suffix}")));
    }
    groups.agg(aggs)
}

fn layer_epoch_count_columns() -> Vec<Expr> {
    let mut cols: Vec<Expr> = [
        "run",
        "layer",
        "layer_name",
        "epoch",
        "n",
        "n_dead",
        "n_starved",
        "n_never_dead",
        "n_prev_dead",
        "n_still_dead",
        "revivals",
        "n_revived",
        "active_frac_sum",
        "grad_pre_sum",
    ]
    .into_iter()
    .map(col)
    .collect();
    cols.extend(
        DORMANT_TAUS
            .iter()
            .map(|(_, s)| col(format!("n_dormant_{s}"))),
    );
    cols
}

fn share(numerator: &str) -> Expr {
    col(numerator).cast(DataType::Float64) / col("n")
}

fn layer_epoch_fractions(counts: LazyFrame) -> LazyFrame {
    let mut cols = vec![
        col("run"),
        col("layer"),
        col(nc::LAYER_NAME),
        col("epoch"),
        col("n"),
        share("n_dead").alias("dead_frac"),
        share("n_starved").alias("starved_frac"),
    ];
    for (_, s) in DORMANT_TAUS {
        cols.push(share(&format!("n_dormant_{s}")).alias(format!("dormant_frac_{s}")));
    }
    cols.extend([
        share("n_never_dead").alias("survival"),
        when(col("n_prev_dead").gt(lit(0)))
            .then(
                col("n_still_dead").cast(DataType::Float64)
                    / col("n_prev_dead").cast(DataType::Float64),
            )
            .otherwise(lit(f64::NAN))
            .alias("persistence"),
        share("n_revived").alias("revived_frac"),
        col("revivals"),
        (col("active_frac_sum") / col("n")).alias("active_frac_mean"),
        // Epoch 0 has no training statistics; its sum of nulls is 0, so it is blanked here.
        when(col("epoch").gt(lit(0)))
            .then(col("grad_pre_sum") / col("n"))
            .otherwise(lit(NULL).cast(DataType::Float64))
            .alias("grad_pre_abs_mean"),
    ]);
    counts.select(cols)
}

/// Fate of each neuron over the run: time of death, irreversible death, revivals.
fn neuron_fate(rows: LazyFrame, dead_window: usize) -> LazyFrame {
    rows.group_by([col("run"), col("layer"), col("neuron")])
        .agg([
            col("epoch").max().cast(DataType::Int64).alias("last_epoch"),
            col("dead")
                .sort_by([col("epoch")], Default::default())
                .last()
                .alias("dead_at_end"),
            col("epoch")
                .filter(col("dead").not())
                .max()
                .cast(DataType::Int64)
                .alias("last_alive"),
            col("first_dead").first().is_not_null().alias("ever_dead"),
            count(col("prev_dead").and(col("dead").not())).alias("revivals"),
        ])
        .with_column(
            when(col("dead_at_end"))
                .then(
                    when(col("last_alive").is_null())
                        .then(lit(0i64))
                        .otherwise(col("last_alive") + lit(1i64)),
                )
                .otherwise(lit(NULL).cast(DataType::Int64))
                .alias("time_of_death"),
        )
        .with_columns([
            col("dead_at_end")
                .and(col("time_of_death").lt_eq(col("last_epoch") - lit(dead_window as i64)))
                .fill_null(lit(false))
                .alias("irreversibly_dead"),
            col("ever_dead")
                .and(col("dead_at_end").not())
                .alias("revived"),
        ])
        .select([
            col("run"),
            col("layer"),
            col("neuron"),
            col("time_of_death"),
            col("dead_at_end"),
            col("irreversibly_dead"),
            col("ever_dead"),
            col("revived"),
            col("revivals"),
        ])
        .sort(["run", "layer", "neuron"], Default::default())
}

/// Per (run, layer) and per run for the network: the state at E and the fates of the neurons.
fn run_layer_summary(layer_epoch: &DataFrame, neuron_fate: &DataFrame) -> Result<DataFrame> {
    let fate_aggs = || {
        vec![
            len().cast(DataType::Float64).alias("n_fate"),
            count(col("irreversibly_dead")).alias("n_irreversible"),
            count(col("ever_dead")).alias("n_ever_dead"),
            count(col("revived")).alias("n_revived_end"),
            col("revivals")
                .sum()
                .cast(DataType::Float64)
                .alias("revival_count"),
            col("time_of_death")
                .cast(DataType::Float64)
                .mean()
                .alias("mean_time_of_death"),
        ]
    };
    let fate = neuron_fate.clone().lazy();
    let fate_layer = fate
        .clone()
        .group_by([col("run"), col("layer")])
        .agg(fate_aggs())
        .with_column(col("layer").cast(DataType::Int64));
    let fate_network = fate
        .group_by([col("run")])
        .agg(fate_aggs())
        .with_column(lit(NETWORK_LAYER).cast(DataType::Int64).alias("layer"));
    let fate_all = concat(
        [
            fate_layer,
            fate_network.select([
                col("run"),
                col("layer"),
                col("n_fate"),
                col("n_irreversible"),
                col("n_ever_dead"),
                col("n_revived_end"),
                col("revival_count"),
                col("mean_time_of_death"),
            ]),
        ],
        UnionArgs::default(),
    )?;

    let mut finals = vec![
        col("run"),
        col("layer"),
        col(nc::LAYER_NAME),
        col("n"),
        col("epoch").alias("epochs"),
        col("dead_frac").alias("dead_frac_final"),
        col("starved_frac").alias("starved_frac_final"),
    ];
    for (_, s) in DORMANT_TAUS {
        finals.push(col(format!("dormant_frac_{s}")).alias(format!("dormant_frac_{s}_final")));
    }
    finals.push(col("survival").alias("survival_final"));
    let last_epoch = layer_epoch
        .clone()
        .lazy()
        .filter(col("epoch").eq(col("epoch").max().over([col("run")])?))
        .select(finals);

    let out = last_epoch
        .join(
            fate_all,
            [col("run"), col("layer")],
            [col("run"), col("layer")],
            JoinArgs::new(JoinType::Left),
        )
        .with_columns([
            (col("n_irreversible").cast(DataType::Float64) / col("n"))
                .alias("irreversibly_dead_frac"),
            (col("n_ever_dead").cast(DataType::Float64) / col("n")).alias("ever_dead_frac"),
            when(col("n_ever_dead").gt(lit(0)))
                .then(
                    col("n_revived_end").cast(DataType::Float64)
                        / col("n_ever_dead").cast(DataType::Float64),
                )
                .otherwise(lit(f64::NAN))
                .alias("revival_rate"),
        ])
        .drop(cols([
            "n_fate",
            "n_irreversible",
            "n_ever_dead",
            "n_revived_end",
        ]))
        .sort(["run", "layer"], Default::default())
        .collect()?;
    Ok(out)
}

fn per_run_table(runs: &RunSet, run_layer: &DataFrame, opts: &MeasureOptions) -> Result<DataFrame> {
    let conv = convergence_by_run(runs, opts.target_acc)?;
    let column = |name: &str, f: fn(&Convergence) -> f64| {
        Column::new(name.into(), conv.iter().map(f).collect::<Vec<f64>>())
    };
    let mut table = runs.run_table();
    for c in [
        column("final_acc", |c| c.final_acc),
        column("best_acc", |c| c.best_acc),
        column("epochs_to_target", |c| c.epochs_to_target),
        column("seconds_to_target", |c| c.seconds_to_target),
        column("epochs_to_95", |c| c.epochs_to_95),
        column("seconds_to_95", |c| c.seconds_to_95),
        column("epochs_to_99", |c| c.epochs_to_99),
        column("seconds_to_99", |c| c.seconds_to_99),
        column("auc_test_acc", |c| c.auc_test_acc),
        column("auc_train_loss", |c| c.auc_train_loss),
        column("final_train_loss", |c| c.final_train_loss),
    ] {
        table.with_column(c)?;
    }
    let network = run_layer
        .clone()
        .lazy()
        .filter(col("layer").eq(lit(NETWORK_LAYER)))
        .drop(cols(["layer", "layer_name", "n", "epochs"]));
    Ok(table
        .lazy()
        .left_join(network, col("run"), col("run"))
        .sort(["run"], Default::default())
        .collect()?)
}

#[cfg(test)]
#[path = "measures_tests.rs"]
pub(crate) mod tests;
