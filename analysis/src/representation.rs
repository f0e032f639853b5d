//! The health of representations (issue #14): the rank and weight drift of each activation
//! site from `layers.parquet`, and the saturation of its neurons from the `saturated_*` columns of
//! `neurons.parquet` — per condition, layer and epoch for the figures, and per run at E as
//! exploratory measures.
//!
//! Both files' columns are new: runs written before them have neither, and a set of runs where
//! none has them gives no series at all (the report then shows no such section). Only epochs up to
//! a run's last completed epoch E are read, as for the neuron records.

use anyhow::{Context, Result};
use necrosis_records::files::without_reader_panics;
use polars::prelude::*;

use crate::load::{scan_checked, Run, RunSet};
use crate::measures::NETWORK_LAYER;

/// The file of per-site measures in a run directory.
pub const LAYERS_FILE: &str = "layers.parquet";

/// The rank measures aggregated per condition, layer and epoch: the effective rank as a share of
/// the site's neurons (its largest possible rank), the two integer ranks and the weight drift.
pub const RANK_MEASURES: [&str; 4] = [
    "effective_rank_share",
    "srank",
    "feature_rank",
    "weight_drift",
];

/// The saturation columns of `neurons.parquet`.
pub const SATURATION: [&str; 2] = ["saturated_deriv_frac", "saturated_output_frac"];

/// The per-run measures at E this module adds to [`crate::measures::Measures::per_run`].
pub const FINAL_MEASURES: [&str; 6] = [
    "effective_rank_share_final",
    "srank_share_final",
    "feature_rank_share_final",
    "weight_drift_final",
    "saturated_deriv_frac_final",
    "saturated_output_frac_final",
];

/// What the records say about the representations; each `None` when no run has the data.
#[derive(Debug, Clone, Default)]
pub struct Representation {
    /// One row per condition (`dataset`, `activation`, `setting`), `layer` (UInt32 site),
    /// `layer_name` and `epoch`: `runs`, and `<m>_mean`, `<m>_min`, `<m>_max` over the seeds for
    /// each of [`RANK_MEASURES`].
    pub layers: Option<DataFrame>,
    /// One row per condition, `layer` (Int64; [`NETWORK_LAYER`] for all sites pooled) and
    /// `epoch`: the mean over neurons and seeds of each of [`SATURATION`] (nulls skipped; null
    /// when every value is null, e.g. `saturated_output_frac` of relu).
    pub saturation: Option<DataFrame>,
    /// One row per run that has either file: `run` and [`FINAL_MEASURES`] at its E (network
    /// means over sites; saturation as a mean over all neurons).
    pub per_run: Option<DataFrame>,
}

fn layer_columns() -> Vec<(&'static str, DataType)> {
    vec![
        ("epoch", DataType::UInt32),
        ("layer", DataType::UInt32),
        ("layer_name", DataType::String),
        ("features", DataType::UInt32),
        ("effective_rank", DataType::Float64),
        ("srank", DataType::UInt32),
        ("feature_rank", DataType::UInt32),
        ("rms_weight", DataType::Float64),
        ("weight_drift", DataType::Float64),
    ]
}

/// Reads `path` through `read`, turning a reader panic or error into one naming the file.
fn guarded(path: &std::path::Path, read: impl FnOnce() -> Result<DataFrame>) -> Result<DataFrame> {
    without_reader_panics(path, read)?.with_context(|| format!("reading {}", path.display()))
}

/// `layers.parquet` of `run` up to E with `run` and the rank shares, or None without the file.
fn read_layers(run: &Run) -> Result<Option<DataFrame>> {
    let path = run.dir.join(LAYERS_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let share = |rank: &str| {
        (col(rank).cast(DataType::Float64) / col("features").cast(DataType::Float64))
            .alias(format!("{rank}_share"))
    };
    let frame = guarded(&path, || {
        Ok(scan_checked(&path, &layer_columns())?
            .filter(col("epoch").lt_eq(lit(run.epochs_completed)))
            .with_columns([
                lit(run.index).cast(DataType::UInt32).alias("run"),
                share("effective_rank"),
                share("srank"),
                share("feature_rank"),
            ])
            .collect()?)
    })?;
    Ok(Some(frame))
}

/// Per (run, layer, epoch) the sum and count of the non-null saturation values of `run`'s
/// neurons, or None when its `neurons.parquet` has neither column (an older run) or no value in
/// them.
fn read_saturation(run: &Run) -> Result<Option<DataFrame>> {
    let path = run.dir.join("neurons.parquet");
    let present: Vec<&str> = {
        let schema = guarded(&path, || {
            let source = PlRefPath::try_from_path(&path)?;
            Ok(LazyFrame::scan_parquet(source, ScanArgsParquet::default())?
                .limit(0)
                .collect()?)
        })?;
        SATURATION
            .into_iter()
            .filter(|c| schema.column(c).is_ok())
            .collect()
    };
    if present.is_empty() {
        return Ok(None);
    }
    let mut aggs = Vec::new();
    for c in SATURATION {
        let value = if present.contains(&c) {
            col(c).strict_cast(DataType::Float64)
        } else {
            lit(NULL).cast(DataType::Float64)
        };
        aggs.push(value.clone().sum().alias(format!("{c}_sum")));
        aggs.push(
            value
                .count()
                .cast(DataType::Float64)
                .alias(format!("{c}_n")),
        );
    }
    let frame = guarded(&path, || {
        let source = PlRefPath::try_from_path(&path)?;
        Ok(LazyFrame::scan_parquet(source, ScanArgsParquet::default())?
            .filter(col("epoch").lt_eq(lit(run.epochs_completed)))
            .group_by([
                col("epoch").strict_cast(DataType::UInt32),
                col("layer").strict_cast(DataType::UInt32),
            ])
            .agg(aggs)
            .with_column(lit(run.index).cast(DataType::UInt32).alias("run"))
            // group_by returns its groups in any order; sorted, later sums over these rows add
            // in one order, so a report regenerates digit for digit.
            .sort(["epoch", "layer"], Default::default())
            .collect()?)
    })?;
    // A run written without the measure (its rows built with the columns but no values, as by
    // a generator that predates it) has no saturation, rather than a share of nothing.
    let counted: f64 = SATURATION
        .iter()
        .filter_map(|c| frame.column(&format!("{c}_n")).ok()?.f64().ok()?.sum())
        .sum();
    Ok((counted > 0.0).then_some(frame))
}

fn stacked(frames: Vec<DataFrame>) -> Result<Option<DataFrame>> {
    if frames.is_empty() {
        return Ok(None);
    }
    let lazy: Vec<LazyFrame> = frames.into_iter().map(|f| f.lazy()).collect();
    Ok(Some(concat(lazy, UnionArgs::default())?.collect()?))
}

/// The condition of each run: `run`, `dataset`, `activation`, `setting`.
fn conditions(runs: &RunSet) -> LazyFrame {
    runs.run_table().lazy().select([
        col("run"),
        col("dataset"),
        col("activation"),
        col("setting"),
    ])
}

/// Mean over neurons (and seeds) of each saturation column: pooled sum / pooled count.
fn saturation_means() -> Vec<Expr> {
    SATURATION
        .iter()
        .map(|c| {
            let n = col(format!("{c}_n")).sum();
            when(n.clone().gt(lit(0.0)))
                .then(col(format!("{c}_sum")).sum() / n)
                .otherwise(lit(NULL).cast(DataType::Float64))
                .alias(*c)
        })
        .collect()
}

/// Reads and aggregates the representation records of every complete run of `runs`.
pub fn measure_representation(runs: &RunSet) -> Result<Representation> {
    let (mut layer_frames, mut saturation_frames) = (Vec::new(), Vec::new());
    for run in &runs.runs {
        layer_frames.extend(read_layers(run)?);
        saturation_frames.extend(read_saturation(run)?);
    }
    let layers = stacked(layer_frames)?;
    let saturation = stacked(saturation_frames)?;
    let condition = [col("dataset"), col("activation"), col("setting")];

    let layer_summary = match &layers {
        None => None,
        Some(layers) => {
            let mut aggs = vec![len().alias("runs")];
            for m in RANK_MEASURES {
                let v = col(m).cast(DataType::Float64);
                aggs.push(v.clone().mean().alias(format!("{m}_mean")));
                aggs.push(v.clone().min().alias(format!("{m}_min")));
                aggs.push(v.max().alias(format!("{m}_max")));
            }
            let mut keys = condition.to_vec();
            keys.extend([col("layer"), col("layer_name"), col("epoch")]);
            Some(
                layers
                    .clone()
                    .lazy()
                    .join(
                        conditions(runs),
                        [col("run")],
                        [col("run")],
                        JoinArgs::new(JoinType::Inner),
                    )
                    .group_by(keys)
                    .agg(aggs)
                    .sort(
                        ["dataset", "activation", "setting", "layer", "epoch"],
                        Default::default(),
                    )
                    .collect()?,
            )
        }
    };

    let saturation_summary = match &saturation {
        None => None,
        Some(sat) => {
            let with_condition = sat.clone().lazy().join(
                conditions(runs),
                [col("run")],
                [col("run")],
                JoinArgs::new(JoinType::Inner),
            );
            let mut per_layer_keys = condition.to_vec();
            per_layer_keys.extend([col("layer"), col("epoch")]);
            let per_layer = with_condition
                .clone()
                .group_by(per_layer_keys)
                .agg(saturation_means())
                .with_column(col("layer").cast(DataType::Int64));
            let mut network_keys = condition.to_vec();
            network_keys.push(col("epoch"));
            let network = with_condition
                .group_by(network_keys)
                .agg(saturation_means())
                .with_column(lit(NETWORK_LAYER).cast(DataType::Int64).alias("layer"));
            let order: Vec<Expr> = ["dataset", "activation", "setting", "layer", "epoch"]
                .into_iter()
                .chain(SATURATION)
                .map(col)
                .collect();
            Some(
                concat(
                    [per_layer.select(order.clone()), network.select(order)],
                    UnionArgs::default(),
                )?
                .sort(
                    ["dataset", "activation", "setting", "layer", "epoch"],
                    Default::default(),
                )
                .collect()?,
            )
        }
    };

    let per_run = final_values(runs, layers.as_ref(), saturation.as_ref())?;
    Ok(Representation {
        layers: layer_summary,
        saturation: saturation_summary,
        per_run,
    })
}

/// [`FINAL_MEASURES`] of each run at its last completed epoch E.
fn final_values(
    runs: &RunSet,
    layers: Option<&DataFrame>,
    saturation: Option<&DataFrame>,
) -> Result<Option<DataFrame>> {
    if layers.is_none() && saturation.is_none() {
        return Ok(None);
    }
    let last = df!(
        "run" => runs.runs.iter().map(|r| r.index).collect::<Vec<_>>(),
        "last_epoch" => runs.runs.iter().map(|r| r.epochs_completed).collect::<Vec<_>>(),
    )?
    .lazy();
    let at_end = |frame: &DataFrame| {
        frame
            .clone()
            .lazy()
            .join(
                last.clone(),
                [col("run")],
                [col("run")],
                JoinArgs::new(JoinType::Inner),
            )
            .filter(col("epoch").eq(col("last_epoch")))
    };
    let mut out = last.clone().select([col("run")]);
    out = match layers {
        Some(layers) => out.left_join(
            at_end(layers).group_by([col("run")]).agg([
                col("effective_rank_share")
                    .mean()
                    .alias("effective_rank_share_final"),
                col("srank_share").mean().alias("srank_share_final"),
                col("feature_rank_share")
                    .mean()
                    .alias("feature_rank_share_final"),
                col("weight_drift").mean().alias("weight_drift_final"),
            ]),
            col("run"),
            col("run"),
        ),
        None => out.with_columns(
            FINAL_MEASURES[..4]
                .iter()
                .map(|c| lit(NULL).cast(DataType::Float64).alias(*c))
                .collect::<Vec<_>>(),
        ),
    };
    out = match saturation {
        Some(sat) => out.left_join(
            at_end(sat)
                .group_by([col("run")])
                .agg(saturation_means())
                .select([
                    col("run"),
                    col(SATURATION[0]).alias(FINAL_MEASURES[4]),
                    col(SATURATION[1]).alias(FINAL_MEASURES[5]),
                ]),
            col("run"),
            col("run"),
        ),
        None => out.with_columns(
            FINAL_MEASURES[4..]
                .iter()
                .map(|c| lit(NULL).cast(DataType::Float64).alias(*c))
                .collect::<Vec<_>>(),
        ),
    };
    Ok(Some(out.sort(["run"], Default::default()).collect()?))
}

/// `per_run` with [`FINAL_MEASURES`] joined on (NaN for a run without the records, which the
/// statistics leave out as undefined).
pub fn with_final_measures(per_run: DataFrame, finals: &DataFrame) -> Result<DataFrame> {
    Ok(per_run
        .lazy()
        .left_join(finals.clone().lazy(), col("run"), col("run"))
        .with_columns(
            FINAL_MEASURES
                .iter()
                .map(|c| col(*c).fill_null(lit(f64::NAN)))
                .collect::<Vec<_>>(),
        )
        .sort(["run"], Default::default())
        .collect()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intervention_fixtures::{add_saturation, write_layers, LayerRecord};
    use crate::load::load_runs;
    use crate::synthetic::{write_run, EpochRecord, NeuronRecord, RunSpec};

    /// A run of two sites of two neurons, records for epochs 0..=3.
    fn write(
        root: &std::path::Path,
        activation: &str,
        seed: u64,
        completed: u32,
    ) -> std::path::PathBuf {
        let neurons: Vec<NeuronRecord> = (0..=3)
            .flat_map(|e| {
                (0..2).flat_map(move |l| (0..2).map(move |n| NeuronRecord::alive(e, l, n)))
            })
            .collect();
        let epochs: Vec<EpochRecord> = (0..=3)
            .map(|e| EpochRecord::new(e, 0.2 * e as f64, (e > 0).then_some(1.0)))
            .collect();
        let mut spec = RunSpec::new(
            "representation",
            "digits",
            activation,
            seed,
            0.05,
            3,
            vec![("fc1".into(), 2), ("fc2".into(), 2)],
        );
        spec.epochs_completed = Some(completed);
        write_run(root, &spec, &epochs, &neurons).unwrap()
    }

    fn value(df: &DataFrame, filter: Expr, name: &str) -> Option<f64> {
        let rows = df.clone().lazy().filter(filter).collect().unwrap();
        assert_eq!(rows.height(), 1, "{filter_rows}", filter_rows = rows);
        rows.column(name)
            .unwrap()
            .cast(&DataType::Float64)
            .unwrap()
            .f64()
            .unwrap()
            .get(0)
    }

    fn close(a: Option<f64>, b: f64) {
        let a = a.unwrap_or(f64::NAN);
        assert!(
            (a - b).abs() < 1e-12 || (a.is_nan() && b.is_nan()),
            "{a} vs {b}"
        );
    }

    #[test]
    fn ranks_and_saturation_are_aggregated_as_derived_by_hand() {
        let tmp = tempfile::tempdir().unwrap();
        // Seed 0 completed 2 of its 3 epochs: its rows of epoch 3 are not read.
        let a = write(tmp.path(), "relu", 0, 2);
        let b = write(tmp.path(), "relu", 1, 3);
        let c = write(tmp.path(), "softsign", 0, 3);
        let rows_a: Vec<LayerRecord> = (0..=3)
            .flat_map(|e| {
                [
                    (e, 0, 2, 1.0 + 0.2 * e as f64, 2, 1, 0.1 * e as f64),
                    (e, 1, 4, 2.0, 3, 2, 0.5),
                ]
            })
            .collect();
        // Seed 1 stops at E = 2 in its layers file too, so both relu runs end at epoch 2.
        let rows_b: Vec<LayerRecord> = (0..=2)
            .flat_map(|e| {
                [
                    (e, 0, 2, 1.5, 1, 1, 0.2 * e as f64),
                    (e, 1, 4, 3.0, 4, 4, 1.0),
                ]
            })
            .collect();
        write_layers(&a, &rows_a);
        write_layers(&b, &rows_b);
        // Relu has no output asymptote: its saturated_output_frac is null.
        add_saturation(&a, |_, l, n| match (l, n) {
            (0, n) => (Some(0.1 * (n + 1) as f64), None),
            (_, 0) => (None, None),
            _ => (Some(0.4), None),
        });
        add_saturation(&b, |_, l, _| (Some(if l == 0 { 0.3 } else { 0.5 }), None));
        add_saturation(&c, |_, _, _| (Some(0.05), Some(0.9)));
        let runs = load_runs(&[tmp.path().to_path_buf()]).unwrap();
        let rep = measure_representation(&runs).unwrap();

        let layers = rep.layers.unwrap();
        // relu: layers 0, 1 × epochs 0..=2 (seed 0's epoch 3 is past its E; seed 1 has none).
        assert_eq!(layers.height(), 6, "{layers}");
        let at = |layer: u32, epoch: u32| {
            col("activation")
                .eq(lit("relu"))
                .and(col("layer").eq(lit(layer)))
                .and(col("epoch").eq(lit(epoch)))
        };
        // fc1 at epoch 2: effective rank 1.4 of 2 and 1.5 of 2.
        close(value(&layers, at(0, 2), "effective_rank_share_mean"), 0.725);
        close(value(&layers, at(0, 2), "effective_rank_share_min"), 0.7);
        close(value(&layers, at(0, 2), "effective_rank_share_max"), 0.75);
        close(value(&layers, at(0, 2), "srank_mean"), 1.5);
        close(value(&layers, at(0, 2), "weight_drift_mean"), 0.3);
        close(value(&layers, at(1, 0), "feature_rank_max"), 4.0);
        close(value(&layers, at(0, 2), "runs"), 2.0);

        let sat = rep.saturation.unwrap();
        let at = |activation: &str, layer: i64| {
            col("activation")
                .eq(lit(activation.to_string()))
                .and(col("layer").eq(lit(layer)))
                .and(col("epoch").eq(lit(1u32)))
        };
        // Layer 0: 0.1, 0.2 (seed 0), 0.3, 0.3 (seed 1); layer 1: null, 0.4, 0.5, 0.5.
        close(value(&sat, at("relu", 0), "saturated_deriv_frac"), 0.225);
        close(
            value(&sat, at("relu", 1), "saturated_deriv_frac"),
            1.4 / 3.0,
        );
        close(
            value(&sat, at("relu", NETWORK_LAYER), "saturated_deriv_frac"),
            2.3 / 7.0,
        );
        assert_eq!(
            value(&sat, at("relu", NETWORK_LAYER), "saturated_output_frac"),
            None
        );
        close(
            value(&sat, at("softsign", NETWORK_LAYER), "saturated_output_frac"),
            0.9,
        );

        // At E, network means over sites: seed 0 (E = 2) (1.4/2 + 2/4)/2, srank (2/2 + 3/4)/2,
        // feature rank (1/2 + 2/4)/2, drift (0.2 + 0.5)/2; seed 1 (E = 3, no layer row there).
        let finals = rep.per_run.unwrap();
        let run = |i: u32| col("run").eq(lit(i));
        close(value(&finals, run(0), "effective_rank_share_final"), 0.6);
        close(value(&finals, run(0), "srank_share_final"), 0.875);
        close(value(&finals, run(0), "feature_rank_share_final"), 0.5);
        close(value(&finals, run(0), "weight_drift_final"), 0.35);
        assert_eq!(value(&finals, run(1), "effective_rank_share_final"), None);
        close(
            value(&finals, run(0), "saturated_deriv_frac_final"),
            0.7 / 3.0,
        );
        close(value(&finals, run(1), "saturated_deriv_frac_final"), 0.4);
        assert_eq!(value(&finals, run(0), "saturated_output_frac_final"), None);
        close(value(&finals, run(2), "saturated_output_frac_final"), 0.9);
    }

    #[test]
    fn runs_without_the_records_have_no_representation() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "relu", 0, 3);
        let runs = load_runs(&[tmp.path().to_path_buf()]).unwrap();
        let rep = measure_representation(&runs).unwrap();
        assert!(rep.layers.is_none() && rep.saturation.is_none() && rep.per_run.is_none());
    }

    #[test]
    fn a_corrupt_layers_file_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = write(tmp.path(), "relu", 0, 3);
        std::fs::write(dir.join(LAYERS_FILE), b"PAR1 nope").unwrap();
        let runs = load_runs(&[tmp.path().to_path_buf()]).unwrap();
        let err = format!("{:#}", measure_representation(&runs).unwrap_err());
        assert!(err.contains("layers.parquet"), "{err}");
    }
}
