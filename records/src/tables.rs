//! `epochs.parquet`, `neurons.parquet`, `layers.parquet` and `interventions.parquet`: each table is declared once, as a row type whose
//! fields are the columns in file order, and that one declaration gives the writer, the reader,
//! the column names (constants the analysis selects by) and the column types.

use std::path::Path;

use polars::prelude::{Column, DataFrame, DataType, PolarsResult};

use crate::files::{read_parquet, write_parquet};
use crate::{Problem, RecordError, Result};

/// How one Rust type is stored as a parquet column, and read back.
pub trait Cell: Sized {
    /// The column's type in the file.
    fn dtype() -> DataType;
    /// A column of these values.
    fn column<'a>(name: &str, values: impl Iterator<Item = &'a Self>) -> Column
    where
        Self: 'a;
    /// The column's values; integers and floats are cast from any numeric type. A null is an
    /// error in an integer or string column, NaN in a float column, `false` in a flag column.
    /// A missing column is an error, except an optional (`Option`) one, which reads as nulls:
    /// files written before such a column was added still read.
    fn values(frame: &DataFrame, name: &'static str) -> std::result::Result<Vec<Self>, Problem>;
}

fn column_of(
    frame: &DataFrame,
    name: &'static str,
    dtype: &DataType,
) -> std::result::Result<Column, Problem> {
    let column = frame
        .column(name)
        .map_err(|_| Problem::MissingColumn(name))?;
    column.cast(dtype).map_err(|e| Problem::BadColumn {
        column: name,
        message: e.to_string(),
    })
}

fn bad(column: &'static str, message: impl ToString) -> Problem {
    Problem::BadColumn {
        column,
        message: message.to_string(),
    }
}

macro_rules! integer_cell {
    ($ty:ty, $dtype:expr, $accessor:ident) => {
        impl Cell for $ty {
            fn dtype() -> DataType {
                $dtype
            }
            fn column<'a>(name: &str, values: impl Iterator<Item = &'a Self>) -> Column {
                Column::new(name.into(), values.copied().collect::<Vec<$ty>>())
            }
            fn values(
                frame: &DataFrame,
                name: &'static str,
            ) -> std::result::Result<Vec<Self>, Problem> {
                let column = column_of(frame, name, &$dtype)?;
                let values = column.$accessor().map_err(|e| bad(name, e))?;
                values
                    .iter()
                    .map(|v| v.ok_or_else(|| bad(name, "null value")))
                    .collect()
            }
        }
    };
}

integer_cell!(u32, DataType::UInt32, u32);
integer_cell!(u64, DataType::UInt64, u64);

impl Cell for f64 {
    fn dtype() -> DataType {
        DataType::Float64
    }
    fn column<'a>(name: &str, values: impl Iterator<Item = &'a Self>) -> Column {
        Column::new(name.into(), values.copied().collect::<Vec<f64>>())
    }
    fn values(frame: &DataFrame, name: &'static str) -> std::result::Result<Vec<Self>, Problem> {
        let column = column_of(frame, name, &DataType::Float64)?;
        let values = column.f64().map_err(|e| bad(name, e))?;
        Ok(values.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    }
}

impl Cell for Option<f64> {
    fn dtype() -> DataType {
        DataType::Float64
    }
    fn column<'a>(name: &str, values: impl Iterator<Item = &'a Self>) -> Column {
        Column::new(name.into(), values.copied().collect::<Vec<Option<f64>>>())
    }
    fn values(frame: &DataFrame, name: &'static str) -> std::result::Result<Vec<Self>, Problem> {
        if frame.column(name).is_err() {
            return Ok(vec![None; frame.height()]);
        }
        let column = column_of(frame, name, &DataType::Float64)?;
        let values = column.f64().map_err(|e| bad(name, e))?;
        Ok(values.iter().collect())
    }
}

impl Cell for bool {
    fn dtype() -> DataType {
        DataType::Boolean
    }
    fn column<'a>(name: &str, values: impl Iterator<Item = &'a Self>) -> Column {
        Column::new(name.into(), values.copied().collect::<Vec<bool>>())
    }
    fn values(frame: &DataFrame, name: &'static str) -> std::result::Result<Vec<Self>, Problem> {
        let column = frame
            .column(name)
            .map_err(|_| Problem::MissingColumn(name))?;
        let values = column.bool().map_err(|e| bad(name, e))?;
        Ok(values.iter().map(|v| v.unwrap_or(false)).collect())
    }
}

impl Cell for String {
    fn dtype() -> DataType {
        DataType::String
    }
    fn column<'a>(name: &str, values: impl Iterator<Item = &'a Self>) -> Column {
        Column::new(
            name.into(),
            values.map(String::as_str).collect::<Vec<&str>>(),
        )
    }
    fn values(frame: &DataFrame, name: &'static str) -> std::result::Result<Vec<Self>, Problem> {
        let column = frame
            .column(name)
            .map_err(|_| Problem::MissingColumn(name))?;
        let values = column.str().map_err(|e| bad(name, e))?;
        values
            .iter()
            .map(|v| v.map(str::to_string).ok_or_else(|| bad(name, "null value")))
            .collect()
    }
}

impl Cell for Option<u32> {
    fn dtype() -> DataType {
        DataType::UInt32
    }
    fn column<'a>(name: &str, values: impl Iterator<Item = &'a Self>) -> Column {
        Column::new(name.into(), values.copied().collect::<Vec<Option<u32>>>())
    }
    fn values(frame: &DataFrame, name: &'static str) -> std::result::Result<Vec<Self>, Problem> {
        let column = column_of(frame, name, &DataType::UInt32)?;
        let values = column.u32().map_err(|e| bad(name, e))?;
        Ok(values.iter().collect())
    }
}

impl Cell for Option<String> {
    fn dtype() -> DataType {
        DataType::String
    }
    fn column<'a>(name: &str, values: impl Iterator<Item = &'a Self>) -> Column {
        Column::new(
            name.into(),
            values.map(Option::as_deref).collect::<Vec<Option<&str>>>(),
        )
    }
    fn values(frame: &DataFrame, name: &'static str) -> std::result::Result<Vec<Self>, Problem> {
        let column = frame
            .column(name)
            .map_err(|_| Problem::MissingColumn(name))?;
        let values = column.str().map_err(|e| bad(name, e))?;
        Ok(values.iter().map(|v| v.map(str::to_string)).collect())
    }
}

/// Declares a record table: its row struct (fields = columns, in file order), a module of column
/// name constants, and the conversions to and from a polars frame.
macro_rules! record_table {
    (
        $(#[$meta:meta])*
        pub struct $row:ident in $file:literal, column names in $names:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty => $constant:ident, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        pub struct $row {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        #[doc = concat!("The column names of `", $file, "`, in file order.")]
        pub mod $names {
            $( #[doc = concat!("`", stringify!($field), "`")] pub const $constant: &str = stringify!($field); )*
            /// Every column, in file order.
            pub const ALL: &[&str] = &[$( stringify!($field) ),*];
        }

        impl $row {
            /// The table's file name in a run directory.
            pub const FILE: &'static str = $file;

            /// Every column with its type, in file order.
            pub fn schema() -> Vec<(&'static str, DataType)> {
                vec![$( (stringify!($field), <$ty as Cell>::dtype()) ),*]
            }

            /// The rows as a frame with the file's columns.
            pub fn to_frame(rows: &[Self]) -> PolarsResult<DataFrame> {
                DataFrame::new_infer_height(vec![
                    $( <$ty as Cell>::column(stringify!($field), rows.iter().map(|r| &r.$field)), )*
                ])
            }

            /// The rows of a frame with the file's columns (others are ignored).
            pub fn from_frame(frame: &DataFrame) -> std::result::Result<Vec<Self>, Problem> {
                $( let mut $field = <$ty as Cell>::values(frame, stringify!($field))?.into_iter(); )*
                Ok((0..frame.height())
                    .map(|_| Self {
                        $( $field: $field.next().expect("the columns of a frame have one height"), )*
                    })
                    .collect())
            }

            /// Writes `<run_dir>/<FILE>` atomically.
            pub fn write_all(run_dir: &Path, rows: &[Self]) -> Result<()> {
                let path = run_dir.join(Self::FILE);
                let mut frame = Self::to_frame(rows)
                    .map_err(|e| RecordError::writing(&path, Problem::NotParquet(e.to_string())))?;
                write_parquet(&path, &mut frame)
            }

            /// Reads `<run_dir>/<FILE>`: every row, including those past the manifest's
            /// `epochs_completed` (which readers ignore).
            pub fn read_all(run_dir: &Path) -> Result<Vec<Self>> {
                let path = run_dir.join(Self::FILE);
                let frame = read_parquet(&path)?;
                Self::from_frame(&frame).map_err(|problem| RecordError::reading(&path, problem))
            }

            /// [`Self::read_all`], or `None` when the run has no such file (a table written only
            /// by some runs, or added after the run began).
            pub fn read_if_present(run_dir: &Path) -> Result<Option<Vec<Self>>> {
                match run_dir.join(Self::FILE).exists() {
                    true => Self::read_all(run_dir).map(Some),
                    false => Ok(None),
                }
            }
        }
    };
}

record_table! {
    /// One epoch's training and test figures: a row of epochs.parquet. Epoch 0 is the network
    /// at initialisation, before any training step.
    pub struct EpochRow in "epochs.parquet", column names in epoch_columns {
        epoch: u32 => EPOCH,
        /// Optimiser steps taken by the end of the epoch.
        step: u64 => STEP,
        lr: f64 => LR,
        /// Mean over the epoch's minibatches; null at epoch 0.
        train_loss: Option<f64> => TRAIN_LOSS,
        train_acc: Option<f64> => TRAIN_ACC,
        test_loss: f64 => TEST_LOSS,
        test_acc: f64 => TEST_ACC,
        /// Wall time since the run started, in seconds.
        seconds: f64 => SECONDS,
        /// Training images per second of the epoch; null at epoch 0.
        images_per_sec: Option<f64> => IMAGES_PER_SEC,
        diverged: bool => DIVERGED,
    }
}

record_table! {
    /// One neuron in one epoch: a row of neurons.parquet (SPEC §2; docs/records.md defines
    /// every column). Probe statistics are never null; training statistics are null at epoch 0.
    pub struct NeuronRow in "neurons.parquet", column names in neuron_columns {
        epoch: u32 => EPOCH,
        /// The activation site's index.
        layer: u32 => LAYER,
        layer_name: String => LAYER_NAME,
        neuron: u32 => NEURON,
        active_frac: f64 => ACTIVE_FRAC,
        sample_active_frac: f64 => SAMPLE_ACTIVE_FRAC,
        max_pre: f64 => MAX_PRE,
        mean_pre: f64 => MEAN_PRE,
        std_pre: f64 => STD_PRE,
        mean_abs_act: f64 => MEAN_ABS_ACT,
        mean_deriv: f64 => MEAN_DERIV,
        weight_norm: f64 => WEIGHT_NORM,
        bias: f64 => BIAS,
        train_active_frac: Option<f64> => TRAIN_ACTIVE_FRAC,
        grad_act_abs_mean: Option<f64> => GRAD_ACT_ABS_MEAN,
        grad_pre_abs_mean: Option<f64> => GRAD_PRE_ABS_MEAN,
        weight_grad_norm: Option<f64> => WEIGHT_GRAD_NORM,
        /// Share of probe observations with f'(z) below 1 % of the activation's largest
        /// derivative; null where that largest derivative is unknown. Absent in older runs
        /// (read as null).
        saturated_deriv_frac: Option<f64> => SATURATED_DERIV_FRAC,
        /// Share of probe observations with f(z) within 1 % of a finite, nonzero asymptote of
        /// f; null for activations without one. Absent in older runs (read as null).
        saturated_output_frac: Option<f64> => SATURATED_OUTPUT_FRAC,
    }
}

record_table! {
    /// One activation site in one epoch: a row of layers.parquet (docs/records.md defines every
    /// column). The rank measures describe the probe set's features at the site.
    pub struct LayerRow in "layers.parquet", column names in layer_columns {
        epoch: u32 => EPOCH,
        /// The activation site's index.
        layer: u32 => LAYER,
        layer_name: String => LAYER_NAME,
        /// The site's neurons: the largest rank the features can have.
        features: u32 => FEATURES,
        /// Roy & Vetterli 2007: exp of the entropy of the normalised singular values.
        effective_rank: f64 => EFFECTIVE_RANK,
        /// Kumar et al. 2021, δ = 0.01.
        srank: u32 => SRANK,
        /// Lyle et al. 2022: singular values of Φ/√n above 0.01.
        feature_rank: u32 => FEATURE_RANK,
        /// Root mean square of the site's incoming weights.
        rms_weight: f64 => RMS_WEIGHT,
        /// ‖W − W₀‖_F / ‖W₀‖_F against the run's initial weights.
        weight_drift: f64 => WEIGHT_DRIFT,
    }
}

record_table! {
    /// One change an intervention made: a row of interventions.parquet, written only by runs with
    /// an intervention (docs/records.md). One row per reset neuron; a change to the whole network
    /// (shrink-and-perturb) is one row with no layer and no neuron.
    pub struct InterventionRow in "interventions.parquet", column names in intervention_columns {
        /// The epoch in which it acted.
        epoch: u32 => EPOCH,
        /// Optimiser steps taken when it acted.
        step: u64 => STEP,
        /// True: after the epoch's probe pass and records (the epoch's neuron rows show the
        /// neuron before the change, the next epoch's after it); false: after a training step
        /// of the epoch (its rows show the neuron after the change).
        at_epoch_end: bool => AT_EPOCH_END,
        /// `redo`, `cbp` or `shrink-perturb`.
        kind: String => KIND,
        /// The activation site's index; null for a change to the whole network.
        layer: Option<u32> => LAYER,
        layer_name: Option<String> => LAYER_NAME,
        neuron: Option<u32> => NEURON,
        /// ReDo: the neuron's τ-dormant score; CBP: its bias-corrected contribution utility;
        /// null for shrink-and-perturb.
        score: Option<f64> => SCORE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::{col, IntoLazy, LazyFrame, PlRefPath, ScanArgsParquet};

    fn epoch(epoch: u32, test_acc: f64, trained: bool) -> EpochRow {
        EpochRow {
            epoch,
            step: 10 * epoch as u64,
            lr: 0.1,
            train_loss: trained.then_some(1.2),
            train_acc: trained.then_some(0.6),
            test_loss: 0.9,
            test_acc,
            seconds: 2.0,
            images_per_sec: trained.then_some(640.0),
            diverged: false,
        }
    }

    #[test]
    fn epochs_are_written_as_the_documented_columns() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![epoch(0, 0.1, false), epoch(1, 0.7, true)];
        EpochRow::write_all(dir.path(), &rows).unwrap();
        // Read with polars alone, by the names and types docs/records.md gives.
        let path = PlRefPath::try_from_path(&dir.path().join("epochs.parquet")).unwrap();
        let frame = LazyFrame::scan_parquet(path, ScanArgsParquet::default())
            .unwrap()
            .collect()
            .unwrap();
        let names: Vec<&str> = frame
            .get_column_names()
            .iter()
            .map(|n| n.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "epoch",
                "step",
                "lr",
                "train_loss",
                "train_acc",
                "test_loss",
                "test_acc",
                "seconds",
                "images_per_sec",
                "diverged"
            ]
        );
        assert_eq!(frame.column("epoch").unwrap().dtype(), &DataType::UInt32);
        assert_eq!(frame.column("step").unwrap().dtype(), &DataType::UInt64);
        let acc: Vec<Option<f64>> = frame
            .column("test_acc")
            .unwrap()
            .f64()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(acc, [Some(0.1), Some(0.7)]);
        let loss: Vec<Option<f64>> = frame
            .column("train_loss")
            .unwrap()
            .f64()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(loss, [None, Some(1.2)], "null at epoch 0");
        // And back through the reader.
        assert_eq!(EpochRow::read_all(dir.path()).unwrap(), rows);
    }

    #[test]
    fn neurons_read_from_a_frame_built_by_hand() {
        // Integer columns stored as i64 (as pandas would write them) still read.
        let frame = polars::df!(
            "epoch" => [0i64, 1], "layer" => [0i64, 0], "layer_name" => ["conv1", "conv1"],
            "neuron" => [3i64, 3], "active_frac" => [0.5, 0.0], "sample_active_frac" => [1.0, 0.0],
            "max_pre" => [1.5, -0.25], "mean_pre" => [0.1, -1.0], "std_pre" => [1.0, 0.5],
            "mean_abs_act" => [0.4, 0.0], "mean_deriv" => [0.5, 0.0], "weight_norm" => [2.0, 2.5],
            "bias" => [0.0, -0.1], "train_active_frac" => [None, Some(0.0)],
            "grad_act_abs_mean" => [None, Some(0.01)], "grad_pre_abs_mean" => [None, Some(0.0)],
            "weight_grad_norm" => [None, Some(0.0)],
        )
        .unwrap();
        let rows = NeuronRow::from_frame(&frame).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[1].epoch, rows[1].neuron, rows[1].max_pre),
            (1, 3, -0.25)
        );
        assert_eq!(rows[0].grad_act_abs_mean, None);
        assert_eq!(rows[1].layer_name, "conv1");
        // The frame is as older runs wrote it, without the saturation columns: they read as null.
        assert!(rows
            .iter()
            .all(|r| r.saturated_deriv_frac.is_none() && r.saturated_output_frac.is_none()));
        // Present, they read as written.
        let with = frame
            .clone()
            .lazy()
            .with_columns([
                polars::prelude::lit(0.25).alias(neuron_columns::SATURATED_DERIV_FRAC),
                polars::prelude::lit(polars::prelude::NULL)
                    .cast(DataType::Float64)
                    .alias(neuron_columns::SATURATED_OUTPUT_FRAC),
            ])
            .collect()
            .unwrap();
        let rows = NeuronRow::from_frame(&with).unwrap();
        assert_eq!(
            (rows[1].saturated_deriv_frac, rows[1].saturated_output_frac),
            (Some(0.25), None)
        );
        // A missing column is named (a required one; optional ones read as null).
        let err = NeuronRow::from_frame(&frame.drop("bias").unwrap()).unwrap_err();
        assert_eq!(err.to_string(), "no column bias");
        let _ = frame
            .lazy()
            .select([col(neuron_columns::MAX_PRE)])
            .collect()
            .unwrap();
    }

    #[test]
    fn interventions_keep_their_nulls() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![
            InterventionRow {
                epoch: 2,
                step: 1876,
                at_epoch_end: true,
                kind: "redo".into(),
                layer: Some(1),
                layer_name: Some("conv2".into()),
                neuron: Some(7),
                score: Some(0.0),
            },
            InterventionRow {
                epoch: 3,
                step: 2000,
                at_epoch_end: false,
                kind: "shrink-perturb".into(),
                layer: None,
                layer_name: None,
                neuron: None,
                score: None,
            },
        ];
        InterventionRow::write_all(dir.path(), &rows).unwrap();
        let path = PlRefPath::try_from_path(&dir.path().join("interventions.parquet")).unwrap();
        let frame = LazyFrame::scan_parquet(path, ScanArgsParquet::default())
            .unwrap()
            .collect()
            .unwrap();
        assert_eq!(frame.column("layer").unwrap().dtype(), &DataType::UInt32);
        assert_eq!(frame.column("neuron").unwrap().null_count(), 1);
        assert_eq!(frame.column("layer_name").unwrap().null_count(), 1);
        assert_eq!(InterventionRow::read_all(dir.path()).unwrap(), rows);
    }

    #[test]
    fn layers_are_written_as_the_documented_columns() {
        let dir = tempfile::tempdir().unwrap();
        let row = |epoch: u32, layer: u32| LayerRow {
            epoch,
            layer,
            layer_name: format!("fc{}", layer + 1),
            features: 16,
            effective_rank: 7.5,
            srank: 6,
            feature_rank: 9,
            rms_weight: 0.1,
            weight_drift: 0.05 * epoch as f64,
        };
        let rows = vec![row(0, 0), row(0, 1), row(1, 0), row(1, 1)];
        LayerRow::write_all(dir.path(), &rows).unwrap();
        let frame = crate::files::read_parquet(&dir.path().join("layers.parquet")).unwrap();
        let names: Vec<&str> = frame
            .get_column_names()
            .iter()
            .map(|n| n.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "epoch",
                "layer",
                "layer_name",
                "features",
                "effective_rank",
                "srank",
                "feature_rank",
                "rms_weight",
                "weight_drift"
            ]
        );
        for (name, dtype) in [
            ("features", DataType::UInt32),
            ("srank", DataType::UInt32),
            ("feature_rank", DataType::UInt32),
            ("effective_rank", DataType::Float64),
            ("weight_drift", DataType::Float64),
        ] {
            assert_eq!(frame.column(name).unwrap().dtype(), &dtype, "{name}");
        }
        assert_eq!(LayerRow::read_all(dir.path()).unwrap(), rows);
        // Without a required column the reader names it rather than guessing.
        let err = LayerRow::from_frame(&frame.drop("srank").unwrap()).unwrap_err();
        assert_eq!(err.to_string(), "no column srank");
    }
}
