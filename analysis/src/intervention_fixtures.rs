//! Test fixtures for issue #14's records, which the trainer writes but `crate::synthetic` does
//! not: the `intervention` setting in a manifest, `interventions.parquet`, `layers.parquet` and
//! the saturation columns of `neurons.parquet`, each written by hand in the documented format.

use std::path::Path;

use polars::prelude::*;

/// Sets `config.intervention` in `<dir>/manifest.json`.
pub(crate) fn set_intervention(dir: &Path, setting: &str) {
    let path = dir.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    manifest["config"]["intervention"] = setting.into();
    std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
}

fn write_parquet(path: &Path, mut frame: DataFrame) {
    let file = std::fs::File::create(path).unwrap();
    ParquetWriter::new(file).finish(&mut frame).unwrap();
}

/// One row of `interventions.parquet`.
pub(crate) struct Reset {
    pub epoch: u32,
    pub at_epoch_end: bool,
    pub kind: &'static str,
    /// (layer, neuron); None: a whole-network event.
    pub neuron: Option<(u32, u32)>,
}

/// A reset of `neuron` of site 0.
pub(crate) fn redo(epoch: u32, at_epoch_end: bool, neuron: u32) -> Reset {
    Reset {
        epoch,
        at_epoch_end,
        kind: "redo",
        neuron: Some((0, neuron)),
    }
}

/// Writes `<dir>/interventions.parquet`.
pub(crate) fn write_resets(dir: &Path, resets: &[Reset]) {
    let frame = df!(
        "epoch" => resets.iter().map(|r| r.epoch).collect::<Vec<u32>>(),
        "step" => resets.iter().map(|r| 10 * r.epoch as u64).collect::<Vec<u64>>(),
        "at_epoch_end" => resets.iter().map(|r| r.at_epoch_end).collect::<Vec<bool>>(),
        "kind" => resets.iter().map(|r| r.kind).collect::<Vec<&str>>(),
        "layer" => resets.iter().map(|r| r.neuron.map(|n| n.0)).collect::<Vec<Option<u32>>>(),
        "layer_name" => resets.iter().map(|r| r.neuron.map(|_| "fc1")).collect::<Vec<Option<&str>>>(),
        "neuron" => resets.iter().map(|r| r.neuron.map(|n| n.1)).collect::<Vec<Option<u32>>>(),
        "score" => resets.iter().map(|r| r.neuron.map(|_| 0.0)).collect::<Vec<Option<f64>>>(),
    )
    .unwrap();
    write_parquet(&dir.join("interventions.parquet"), frame);
}

/// One row of `layers.parquet`: (epoch, layer, features, effective_rank, srank, feature_rank,
/// weight_drift).
pub(crate) type LayerRecord = (u32, u32, u32, f64, u32, u32, f64);

/// Writes `<dir>/layers.parquet`; sites are named `fc<layer + 1>`.
pub(crate) fn write_layers(dir: &Path, rows: &[LayerRecord]) {
    let frame = df!(
        "epoch" => rows.iter().map(|r| r.0).collect::<Vec<u32>>(),
        "layer" => rows.iter().map(|r| r.1).collect::<Vec<u32>>(),
        "layer_name" => rows.iter().map(|r| format!("fc{}", r.1 + 1)).collect::<Vec<String>>(),
        "features" => rows.iter().map(|r| r.2).collect::<Vec<u32>>(),
        "effective_rank" => rows.iter().map(|r| r.3).collect::<Vec<f64>>(),
        "srank" => rows.iter().map(|r| r.4).collect::<Vec<u32>>(),
        "feature_rank" => rows.iter().map(|r| r.5).collect::<Vec<u32>>(),
        "rms_weight" => rows.iter().map(|_| 0.1).collect::<Vec<f64>>(),
        "weight_drift" => rows.iter().map(|r| r.6).collect::<Vec<f64>>(),
    )
    .unwrap();
    write_parquet(&dir.join("layers.parquet"), frame);
}

/// Adds the two saturation columns to `<dir>/neurons.parquet`, their values a function of
/// (epoch, layer, neuron).
pub(crate) fn add_saturation(
    dir: &Path,
    value: impl Fn(u32, u32, u32) -> (Option<f64>, Option<f64>),
) {
    let path = dir.join("neurons.parquet");
    let mut frame = ParquetReader::new(std::fs::File::open(&path).unwrap())
        .finish()
        .unwrap();
    let epoch = frame.column("epoch").unwrap().u32().unwrap().clone();
    let layer = frame.column("layer").unwrap().u32().unwrap().clone();
    let neuron = frame.column("neuron").unwrap().u32().unwrap().clone();
    let values: Vec<(Option<f64>, Option<f64>)> = (0..frame.height())
        .map(|i| {
            value(
                epoch.get(i).unwrap(),
                layer.get(i).unwrap(),
                neuron.get(i).unwrap(),
            )
        })
        .collect();
    frame
        .with_column(Column::new(
            "saturated_deriv_frac".into(),
            values.iter().map(|v| v.0).collect::<Vec<_>>(),
        ))
        .unwrap();
    frame
        .with_column(Column::new(
            "saturated_output_frac".into(),
            values.iter().map(|v| v.1).collect::<Vec<_>>(),
        ))
        .unwrap();
    write_parquet(&path, frame);
}
