//! Revivals split by cause (issue #14): a dead → alive transition of neuron i between epochs
//! e − 1 and e is *caused by intervention* when a reset touched i between the two records — a
//! reset of i (or a whole-network event) after the probe pass of epoch e − 1 (`at_epoch_end`,
//! epoch e − 1) or during the training of epoch e (not `at_epoch_end`, epoch e) — and *natural*
//! otherwise. Also the resets of each run, and how many of them hit a neuron that was already dead
//! at its last record before the reset.
//!
//! The resets' `effect_epoch` ([`crate::interventions::read_resets`]) is that e, so both rules
//! are one join. A row with a layer and no neuron touches the whole layer; one with neither,
//! the whole network (shrink-and-perturb). The irreversibly-dead definition is not changed: a
//! reset neuron that stays dead is still dead.

use anyhow::{Context, Result};
use polars::prelude::*;

use crate::interventions::{read_resets, NO_INTERVENTION};
use crate::load::RunSet;
use crate::measures::NETWORK_LAYER;

/// Gathers the causes of revivals batch by batch of neuron states, as the other measures are
/// gathered, then adds the split to the measures' tables.
pub(crate) struct RevivalCauses {
    resets: Option<DataFrame>,
    /// Revivals are split by cause only when some run had an intervention, so that the tables
    /// of a study without one keep their columns.
    split: bool,
    revivals: Vec<LazyFrame>,
    dead_resets: Vec<LazyFrame>,
}

impl RevivalCauses {
    /// Reads the resets of `runs` (an error names a damaged `interventions.parquet`).
    pub(crate) fn new(runs: &RunSet) -> Result<Self> {
        let resets = read_resets(runs)?;
        let split = resets.is_some() || runs.runs.iter().any(|r| r.intervention != NO_INTERVENTION);
        Ok(RevivalCauses {
            resets,
            split,
            revivals: Vec::new(),
            dead_resets: Vec::new(),
        })
    }

    /// The revivals and the resets of dead neurons among one batch of materialised states.
    pub(crate) fn add_batch(&mut self, states: &LazyFrame) -> Result<()> {
        if !self.split {
            return Ok(());
        }
        self.revivals.push(
            revivals_with_cause(states.clone(), self.resets.as_ref())?
                .collect()
                .map_err(anyhow::Error::from)
                .context("finding the cause of each revival")?
                .lazy(),
        );
        if let Some(resets) = &self.resets {
            self.dead_resets.push(
                resets_of_dead(states.clone(), resets)
                    .collect()
                    .map_err(anyhow::Error::from)
                    .context("finding the resets of dead neurons")?
                    .lazy(),
            );
        }
        Ok(())
    }

    /// `layer_epoch` and `per_run` with the split ([`split_layer_epoch`], [`split_per_run`]) when
    /// some run had an intervention, unchanged otherwise; and the resets.
    pub(crate) fn split(
        self,
        layer_epoch: DataFrame,
        per_run: DataFrame,
        neuron_fate: &DataFrame,
    ) -> Result<(DataFrame, DataFrame, Option<DataFrame>)> {
        if !self.split {
            return Ok((layer_epoch, per_run, self.resets));
        }
        let revivals = concat(self.revivals, UnionArgs::default())?.collect()?;
        let dead_resets = if self.dead_resets.is_empty() {
            df!("reset" => Vec::<i64>::new())?
        } else {
            concat(self.dead_resets, UnionArgs::default())?.collect()?
        };
        let layer_epoch = split_layer_epoch(layer_epoch, &revivals)?;
        let per_run = split_per_run(
            per_run,
            neuron_fate,
            &revivals,
            self.resets.as_ref(),
            &dead_resets,
        )?;
        Ok((layer_epoch, per_run, self.resets))
    }
}

/// The revivals among a batch of neuron states (`crate::measures::neuron_states`): one row per
/// dead → alive transition, `run`, `layer` (UInt32 site), `neuron`, `epoch` (Int64, the epoch
/// alive again) and `by_intervention`.
fn revivals_with_cause(states: LazyFrame, resets: Option<&DataFrame>) -> PolarsResult<LazyFrame> {
    let revivals = states
        .filter(col("prev_dead").and(col("dead").not()))
        .select([
            col("run"),
            col("layer"),
            col("neuron"),
            col("epoch").cast(DataType::Int64),
        ]);
    let Some(resets) = resets else {
        return Ok(revivals.with_column(lit(false).alias("by_intervention")));
    };
    let resets = resets.clone().lazy();
    let hits = |keys: &[&str], filter: Expr, flag: &str| {
        resets
            .clone()
            .filter(filter)
            .select(
                keys.iter()
                    .map(|k| col(*k))
                    .chain([col("effect_epoch").alias("epoch")])
                    .collect::<Vec<_>>(),
            )
            .unique(None, UniqueKeepStrategy::Any)
            .with_column(lit(true).alias(flag))
    };
    let join = |frame: LazyFrame, other: LazyFrame, keys: &[&str]| {
        let on: Vec<Expr> = keys.iter().map(|k| col(*k)).chain([col("epoch")]).collect();
        frame.join(other, on.clone(), on, JoinArgs::new(JoinType::Left))
    };
    let neuron = hits(
        &["run", "layer", "neuron"],
        col("neuron").is_not_null(),
        "hit_neuron",
    );
    let layer = hits(
        &["run", "layer"],
        col("layer").is_not_null().and(col("neuron").is_null()),
        "hit_layer",
    );
    let network = hits(&["run"], col("layer").is_null(), "hit_network");
    let joined = join(revivals, neuron, &["run", "layer", "neuron"]);
    let joined = join(joined, layer, &["run", "layer"]);
    let joined = join(joined, network, &["run"]);
    Ok(joined
        .with_column(
            col("hit_neuron")
                .fill_null(lit(false))
                .or(col("hit_layer").fill_null(lit(false)))
                .or(col("hit_network").fill_null(lit(false)))
                .alias("by_intervention"),
        )
        .select([
            col("run"),
            col("layer"),
            col("neuron"),
            col("epoch"),
            col("by_intervention"),
        ]))
}

/// The `reset` numbers of the neuron resets whose neuron was dead at its last record before
/// the reset: epoch `effect_epoch − 1` (the same epoch for a reset after the probe pass, the one
/// before for a reset during training).
fn resets_of_dead(states: LazyFrame, resets: &DataFrame) -> LazyFrame {
    let before = resets
        .clone()
        .lazy()
        .filter(col("neuron").is_not_null())
        .select([
            col("reset"),
            col("run"),
            col("layer"),
            col("neuron"),
            (col("effect_epoch") - lit(1i64)).alias("epoch"),
        ]);
    let dead = states.filter(col("dead")).select([
        col("run"),
        col("layer"),
        col("neuron"),
        col("epoch").cast(DataType::Int64),
    ]);
    let on = || [col("run"), col("layer"), col("neuron"), col("epoch")];
    before
        .join(dead, on(), on(), JoinArgs::new(JoinType::Inner))
        .select([col("reset")])
        .unique(None, UniqueKeepStrategy::Any)
}

/// `layer_epoch` with `natural_revivals` and `intervention_revivals` (UInt32, summing to
/// `revivals`), per layer and for the network, from the `revivals` of
/// [`revivals_with_cause`].
fn split_layer_epoch(layer_epoch: DataFrame, revivals: &DataFrame) -> Result<DataFrame> {
    let caused = revivals.clone().lazy().filter(col("by_intervention"));
    let count = || {
        col("by_intervention")
            .cast(DataType::UInt32)
            .sum()
            .alias("intervention_revivals")
    };
    let per_layer = caused
        .clone()
        .group_by([col("run"), col("layer"), col("epoch")])
        .agg([count()])
        .with_column(col("layer").cast(DataType::Int64));
    let network = caused
        .group_by([col("run"), col("epoch")])
        .agg([count()])
        .with_column(lit(NETWORK_LAYER).cast(DataType::Int64).alias("layer"))
        .select([
            col("run"),
            col("layer"),
            col("epoch"),
            col("intervention_revivals"),
        ]);
    // Revivals carry the epoch as Int64 (to meet the resets' effect epoch); layer_epoch as u32.
    let counts = concat([per_layer, network], UnionArgs::default())?
        .with_column(col("epoch").cast(DataType::UInt32));
    let on = || [col("run"), col("layer"), col("epoch")];
    Ok(layer_epoch
        .lazy()
        .join(counts, on(), on(), JoinArgs::new(JoinType::Left))
        .with_column(col("intervention_revivals").fill_null(lit(0u32)))
        .with_column((col("revivals") - col("intervention_revivals")).alias("natural_revivals"))
        .sort(["run", "layer", "epoch"], Default::default())
        .collect()?)
}

/// `per_run` with, per run: `natural_revivals` and `intervention_revivals` (transitions, beside
/// `revival_count`), `resets` (rows of interventions.parquet up to E, whole-network events
/// counting one each), `resets_of_dead` (neuron resets of a neuron dead at its last record before
/// the reset), `revived_frac` (neurons ever dead and alive at E / neurons) and
/// `revived_by_intervention_frac` (of those, the ones whose last revival an intervention caused
/// / neurons).
fn split_per_run(
    per_run: DataFrame,
    neuron_fate: &DataFrame,
    revivals: &DataFrame,
    resets: Option<&DataFrame>,
    dead_resets: &DataFrame,
) -> Result<DataFrame> {
    let revivals = revivals.clone().lazy();
    let transitions = revivals
        .clone()
        .group_by([col("run")])
        .agg([
            col("by_intervention")
                .cast(DataType::Float64)
                .sum()
                .alias("intervention_revivals"),
            len().cast(DataType::Float64).alias("all_revivals"),
        ])
        .with_column((col("all_revivals") - col("intervention_revivals")).alias("natural_revivals"))
        .select([
            col("run"),
            col("natural_revivals"),
            col("intervention_revivals"),
        ]);
    let last_cause = revivals
        .group_by([col("run"), col("layer"), col("neuron")])
        .agg([col("by_intervention")
            .sort_by([col("epoch")], Default::default())
            .last()
            .alias("last_by_intervention")]);
    let neuron_key = || [col("run"), col("layer"), col("neuron")];
    let revived = neuron_fate
        .clone()
        .lazy()
        .join(
            last_cause,
            neuron_key(),
            neuron_key(),
            JoinArgs::new(JoinType::Left),
        )
        .group_by([col("run")])
        .agg([
            (col("revived").cast(DataType::Float64).sum() / len().cast(DataType::Float64))
                .alias("revived_frac"),
            (col("revived")
                .and(col("last_by_intervention").fill_null(lit(false)))
                .cast(DataType::Float64)
                .sum()
                / len().cast(DataType::Float64))
            .alias("revived_by_intervention_frac"),
        ]);
    let reset_counts = resets.map(|resets| {
        let dead = dead_resets
            .clone()
            .lazy()
            .with_column(lit(true).alias("of_dead"));
        resets
            .clone()
            .lazy()
            .join(
                dead,
                [col("reset")],
                [col("reset")],
                JoinArgs::new(JoinType::Left),
            )
            .group_by([col("run")])
            .agg([
                len().cast(DataType::Float64).alias("resets"),
                col("of_dead")
                    .fill_null(lit(false))
                    .cast(DataType::Float64)
                    .sum()
                    .alias("resets_of_dead"),
            ])
    });
    let mut out = per_run
        .lazy()
        .left_join(transitions, col("run"), col("run"))
        .left_join(revived, col("run"), col("run"));
    if let Some(counts) = reset_counts {
        out = out.left_join(counts, col("run"), col("run"));
    } else {
        out = out.with_columns([
            lit(NULL).cast(DataType::Float64).alias("resets"),
            lit(NULL).cast(DataType::Float64).alias("resets_of_dead"),
        ]);
    }
    // A run without revivals or without interventions.parquet: nothing caused, nothing reset.
    Ok(out
        .with_columns(
            [
                "natural_revivals",
                "intervention_revivals",
                "resets",
                "resets_of_dead",
            ]
            .map(|c| col(c).fill_null(lit(0.0))),
        )
        .sort(["run"], Default::default())
        .collect()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intervention_fixtures::{redo, set_intervention, write_resets, Reset};
    use crate::load::load_runs;
    use crate::measures::tests::f64s;
    use crate::measures::{compute_measures, MeasureOptions};
    use crate::synthetic::{write_run, EpochRecord, NeuronRecord, RunSpec};

    /// Six neurons of one site over epochs 0..=5 (E = 5); `true` = dead (max_pre ≤ 0).
    const DEAD: [[bool; 6]; 6] = {
        const A: bool = false;
        const D: bool = true;
        [
            [A, A, A, A, A, A], // n0: alive; reset anyway after epoch 2
            [A, D, D, A, A, A], // n1: reset after epoch 2's records → revives at 3 (intervention)
            [A, D, A, A, A, A], // n2: revives at 2 by itself (a reset during epoch 1 is earlier)
            [A, D, D, D, A, A], // n3: reset during epoch 4's training → revives at 4 (intervention)
            [D, A, D, D, D, D], // n4: whole-network event after epoch 0 → alive at 1; dies for good
            [D, D, D, D, A, D], // n5: reset after epoch 3 → alive at 4, dead again at 5
        ]
    };

    fn write_pattern(root: &std::path::Path, seed: u64) -> std::path::PathBuf {
        let mut neurons = Vec::new();
        for e in 0..6u32 {
            for (i, pattern) in DEAD.iter().enumerate() {
                let mut r = NeuronRecord::alive(e, 0, i as u32);
                if pattern[e as usize] {
                    r.max_pre = -0.5;
                    r.mean_abs_act = 0.0;
                }
                neurons.push(r);
            }
        }
        let epochs: Vec<EpochRecord> = (0..6)
            .map(|e| EpochRecord::new(e, 0.1 * e as f64, (e > 0).then_some(1.0)))
            .collect();
        let spec = RunSpec::new(
            "cause",
            "digits",
            "relu",
            seed,
            0.05,
            5,
            vec![("fc1".into(), 6)],
        );
        write_run(root, &spec, &epochs, &neurons).unwrap()
    }

    #[test]
    fn revivals_are_split_by_cause_as_derived_by_hand() {
        let tmp = tempfile::tempdir().unwrap();
        let treated = write_pattern(tmp.path(), 0);
        set_intervention(&treated, "redo:0.1:1");
        write_resets(
            &treated,
            &[
                // Whole network (shrink-and-perturb) after epoch 0's records: acts on 0 → 1.
                Reset {
                    epoch: 0,
                    at_epoch_end: true,
                    kind: "shrink-perturb",
                    neuron: None,
                },
                // During epoch 1: row 1 is after it, so it cannot cause n2's revival at 2.
                redo(1, false, 2),
                redo(2, true, 0),
                redo(2, true, 1),
                redo(3, true, 4),
                redo(3, true, 5),
                redo(4, false, 3),
                // After E: left out, as the records after E are.
                redo(6, true, 0),
            ],
        );
        // Same pattern, no intervention: every revival natural, no reset.
        write_pattern(tmp.path(), 1);
        let runs = load_runs(&[tmp.path().to_path_buf()]).unwrap();
        assert_eq!(runs.factors, vec!["intervention".to_string()]);
        let table = runs.run_table();
        let settings: Vec<Option<&str>> = table
            .column("intervention")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(settings, vec![Some("redo:0.1:1"), Some("none")]);
        assert_eq!(runs.runs[0].setting, "lr 0.05, intervention redo:0.1:1");
        // A value with ':' is one value in a named contrast.
        let contrast: crate::contrast::Contrast =
            "activation=relu,intervention=redo:0.1:1 vs activation=relu,intervention=none"
                .parse()
                .unwrap();
        assert_eq!(
            crate::contrast::sides(&[&table], &contrast).unwrap(),
            (vec![0], vec![1])
        );

        let m = compute_measures(&runs, &MeasureOptions::default()).unwrap();
        // Transitions into each epoch, network rows of the treated run (one site: the same
        // for layer 0). e1: n4 (network event); e2: n2 (natural); e3: n1 (reset after 2);
        // e4: n3 (reset during 4) and n5 (reset after 3); e5: none.
        for layer in [NETWORK_LAYER, 0] {
            for run in [0u32, 1] {
                let rows = m
                    .layer_epoch
                    .clone()
                    .lazy()
                    .filter(col("run").eq(lit(run)).and(col("layer").eq(lit(layer))))
                    .sort(["epoch"], Default::default())
                    .collect()
                    .unwrap();
                let (all, caused, natural) = if run == 0 {
                    (
                        [0.0, 1.0, 1.0, 1.0, 2.0, 0.0],
                        [0.0, 1.0, 0.0, 1.0, 2.0, 0.0],
                        [0.0, 0.0, 1.0, 0.0, 0.0, 0.0],
                    )
                } else {
                    (
                        [0.0, 1.0, 1.0, 1.0, 2.0, 0.0],
                        [0.0; 6],
                        [0.0, 1.0, 1.0, 1.0, 2.0, 0.0],
                    )
                };
                assert_eq!(f64s(&rows, "revivals"), all, "run {run} layer {layer}");
                assert_eq!(f64s(&rows, "intervention_revivals"), caused, "run {run}");
                assert_eq!(f64s(&rows, "natural_revivals"), natural, "run {run}");
            }
        }

        let per_run = &m.per_run;
        assert_eq!(f64s(per_run, "revival_count"), [5.0, 5.0]);
        assert_eq!(f64s(per_run, "natural_revivals"), [1.0, 5.0]);
        assert_eq!(f64s(per_run, "intervention_revivals"), [4.0, 0.0]);
        // Seven rows up to E (the whole-network event counts once); the one after E does not.
        assert_eq!(f64s(per_run, "resets"), [7.0, 0.0]);
        // Dead at the last record before the reset: n1 (row 2), n4 and n5 (row 3), n3 (row 3,
        // the epoch before a reset during epoch 4). Not n0, nor n2 (row 0 alive).
        assert_eq!(f64s(per_run, "resets_of_dead"), [4.0, 0.0]);
        // Alive at E after having been dead: n1, n2, n3 of six; the last revival of n1 and n3
        // was an intervention's, of n2 natural.
        assert_eq!(f64s(per_run, "revived_frac"), [0.5, 0.5]);
        let bought = f64s(per_run, "revived_by_intervention_frac");
        assert!(
            (bought[0] - 2.0 / 6.0).abs() < 1e-12 && bought[1] == 0.0,
            "{bought:?}"
        );
        // Irreversibly dead is unchanged: n4 (dead since 2 ≤ 5 − 2), not n5 (dead since 5).
        let irreversible = f64s(per_run, "irreversibly_dead_frac");
        assert!(irreversible.iter().all(|v| (v - 1.0 / 6.0).abs() < 1e-12));
    }

    #[test]
    fn a_corrupt_interventions_file_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = write_pattern(tmp.path(), 0);
        std::fs::write(dir.join("interventions.parquet"), b"PAR1 not really").unwrap();
        let runs = load_runs(&[tmp.path().to_path_buf()]).unwrap();
        let err = format!(
            "{:#}",
            compute_measures(&runs, &MeasureOptions::default()).unwrap_err()
        );
        assert!(err.contains("interventions.parquet"), "{err}");
    }

    #[test]
    fn a_study_without_interventions_keeps_its_columns() {
        let tmp = tempfile::tempdir().unwrap();
        write_pattern(tmp.path(), 0);
        let runs = load_runs(&[tmp.path().to_path_buf()]).unwrap();
        assert!(runs.factors.is_empty());
        let m = compute_measures(&runs, &MeasureOptions::default()).unwrap();
        assert!(m.per_run.column("resets").is_err());
        assert!(m.layer_epoch.column("natural_revivals").is_err());
    }
}
