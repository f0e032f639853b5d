//! The run directory (SPEC §5, docs/records.md): manifest.json, epochs.parquet,
//! neurons.parquet, probe_indices.json, model.safetensors and checkpoint/.
//!
//! Every file is written to a temporary name in its folder and renamed into place, so a run killed
//! at any moment leaves each file either as it was or complete.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use polars::prelude::{Column, DataFrame, DataType, ParquetReader, ParquetWriter, SerReader};
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};

use crate::arch::LayerSpec;
use crate::config::RunConfig;
use crate::data::Normalization;
use crate::hooks::recorder::NeuronRow;
use crate::hooks::EpochSummary;
use crate::model::SiteInfo;

/// The manifest format this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Complete,
    Failed,
    Diverged,
}

/// manifest.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub crate_version: String,
    pub run_id: String,
    pub sweep: String,
    pub status: RunStatus,
    pub epochs_completed: usize,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub error: Option<String>,
    pub config: RunConfig,
    pub activation: String,
    pub input: [usize; 3],
    pub classes: usize,
    pub train_samples: usize,
    pub test_samples: usize,
    pub normalization: Normalization,
    pub architecture: Vec<LayerSpec>,
    pub sites: Vec<SiteInfo>,
}

impl Manifest {
    pub fn read(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join("manifest.json");
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text, &path)
    }

    /// Parses the text of a manifest.json; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let version: serde_json::Value = serde_json::from_str(text)
            .with_context(|| format!("reading {}: not valid JSON", path.display()))?;
        match version.get("format_version").and_then(|v| v.as_u64()) {
            Some(v) if v == FORMAT_VERSION as u64 => {}
            Some(v) => bail!(
                "reading {}: format_version {v} is not supported by this version (reads {FORMAT_VERSION})",
                path.display()
            ),
            None => bail!("reading {}: no format_version", path.display()),
        }
        serde_json::from_value(version)
            .with_context(|| format!("reading {}: not a necrosis manifest", path.display()))
    }

    pub fn write(&self, run_dir: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self)?;
        write_atomic(&run_dir.join("manifest.json"), &json)
    }
}

/// The current time as RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().context("no file name")?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> Result<()> {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

/// Removes the temporary files of [`write_atomic`] that a killed writer left in `run_dir` and
/// its checkpoint folder: those of processes that no longer exist. Call it holding the run.
pub fn remove_stale_temporaries(run_dir: &Path) -> Result<()> {
    for dir in [run_dir.to_path_buf(), run_dir.join("checkpoint")] {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix('.')
                .and_then(|rest| rest.rsplit_once(".tmp-"))
                .and_then(|(_, pid)| pid.parse::<u32>().ok())
            else {
                continue;
            };
            let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
            if !alive {
                fs::remove_file(entry.path())
                    .with_context(|| format!("removing {}", entry.path().display()))?;
            }
        }
    }
    Ok(())
}

fn parquet_bytes(df: &mut DataFrame) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    ParquetWriter::new(&mut bytes).finish(df)?;
    Ok(bytes)
}

/// epochs.parquet from its rows.
pub fn write_epochs(run_dir: &Path, rows: &[EpochSummary]) -> Result<()> {
    let col = |name: &str, values: Vec<Option<f64>>| Column::new(name.into(), values);
    let mut df = DataFrame::new_infer_height(vec![
        Column::new(
            "epoch".into(),
            rows.iter().map(|r| r.epoch).collect::<Vec<u32>>(),
        ),
        Column::new(
            "step".into(),
            rows.iter().map(|r| r.step).collect::<Vec<u64>>(),
        ),
        Column::new("lr".into(), rows.iter().map(|r| r.lr).collect::<Vec<f64>>()),
        col("train_loss", rows.iter().map(|r| r.train_loss).collect()),
        col("train_acc", rows.iter().map(|r| r.train_acc).collect()),
        Column::new(
            "test_loss".into(),
            rows.iter().map(|r| r.test_loss).collect::<Vec<f64>>(),
        ),
        Column::new(
            "test_acc".into(),
            rows.iter().map(|r| r.test_acc).collect::<Vec<f64>>(),
        ),
        Column::new(
            "seconds".into(),
            rows.iter().map(|r| r.seconds).collect::<Vec<f64>>(),
        ),
        col(
            "images_per_sec",
            rows.iter().map(|r| r.images_per_sec).collect(),
        ),
        Column::new(
            "diverged".into(),
            rows.iter().map(|r| r.diverged).collect::<Vec<bool>>(),
        ),
    ])?;
    write_atomic(&run_dir.join("epochs.parquet"), &parquet_bytes(&mut df)?)
}

/// neurons.parquet from its rows.
pub fn write_neurons(run_dir: &Path, rows: &[NeuronRow]) -> Result<()> {
    let f = |name: &str, get: fn(&NeuronRow) -> f64| {
        Column::new(name.into(), rows.iter().map(get).collect::<Vec<f64>>())
    };
    let o = |name: &str, get: fn(&NeuronRow) -> Option<f64>| {
        Column::new(
            name.into(),
            rows.iter().map(get).collect::<Vec<Option<f64>>>(),
        )
    };
    let mut df = DataFrame::new_infer_height(vec![
        Column::new(
            "epoch".into(),
            rows.iter().map(|r| r.epoch).collect::<Vec<u32>>(),
        ),
        Column::new(
            "layer".into(),
            rows.iter().map(|r| r.layer).collect::<Vec<u32>>(),
        ),
        Column::new(
            "layer_name".into(),
            rows.iter()
                .map(|r| r.layer_name.as_str())
                .collect::<Vec<&str>>(),
        ),
        Column::new(
            "neuron".into(),
            rows.iter().map(|r| r.neuron).collect::<Vec<u32>>(),
        ),
        f("active_frac", |r| r.active_frac),
        f("sample_active_frac", |r| r.sample_active_frac),
        f("max_pre", |r| r.max_pre),
        f("mean_pre", |r| r.mean_pre),
        f("std_pre", |r| r.std_pre),
        f("mean_abs_act", |r| r.mean_abs_act),
        f("mean_deriv", |r| r.mean_deriv),
        f("weight_norm", |r| r.weight_norm),
        f("bias", |r| r.bias),
        o("train_active_frac", |r| r.train_active_frac),
        o("grad_act_abs_mean", |r| r.grad_act_abs_mean),
        o("grad_pre_abs_mean", |r| r.grad_pre_abs_mean),
        o("weight_grad_norm", |r| r.weight_grad_norm),
    ])?;
    write_atomic(&run_dir.join("neurons.parquet"), &parquet_bytes(&mut df)?)
}

fn read_parquet(path: &Path) -> Result<DataFrame> {
    let file = fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    // polars panics (instead of failing) on some corrupt files; a damaged record is an error.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ParquetReader::new(file).finish()
    }))
    .map_err(|_| anyhow::anyhow!("the parquet reader failed on corrupt data"))
    .and_then(|r| r.map_err(anyhow::Error::from))
    .with_context(|| format!("reading {}: not a readable parquet file", path.display()))
}

fn f64s(df: &DataFrame, name: &str, path: &Path) -> Result<Vec<Option<f64>>> {
    let column = df
        .column(name)
        .with_context(|| format!("reading {}: no column {name}", path.display()))?;
    Ok(column.cast(&DataType::Float64)?.f64()?.iter().collect())
}

fn u64s(df: &DataFrame, name: &str, path: &Path) -> Result<Vec<u64>> {
    let column = df
        .column(name)
        .with_context(|| format!("reading {}: no column {name}", path.display()))?;
    column
        .cast(&DataType::UInt64)?
        .u64()?
        .iter()
        .map(|v| v.with_context(|| format!("reading {}: null in {name}", path.display())))
        .collect()
}

/// Reads epochs.parquet back (for `resume`).
pub fn read_epochs(run_dir: &Path) -> Result<Vec<EpochSummary>> {
    let path = run_dir.join("epochs.parquet");
    let df = read_parquet(&path)?;
    let epoch = u64s(&df, "epoch", &path)?;
    let step = u64s(&df, "step", &path)?;
    let [lr, train_loss, train_acc, test_loss, test_acc, seconds, ips] = [
        "lr",
        "train_loss",
        "train_acc",
        "test_loss",
        "test_acc",
        "seconds",
        "images_per_sec",
    ]
    .map(|n| f64s(&df, n, &path));
    let (lr, train_loss, train_acc, test_loss, test_acc, seconds, ips) = (
        lr?,
        train_loss?,
        train_acc?,
        test_loss?,
        test_acc?,
        seconds?,
        ips?,
    );
    let diverged: Vec<bool> = df
        .column("diverged")
        .with_context(|| format!("reading {}: no column diverged", path.display()))?
        .bool()?
        .iter()
        .map(|v| v.unwrap_or(false))
        .collect();
    Ok((0..df.height())
        .map(|i| EpochSummary {
            epoch: epoch[i] as u32,
            step: step[i],
            lr: lr[i].unwrap_or(f64::NAN),
            train_loss: train_loss[i],
            train_acc: train_acc[i],
            test_loss: test_loss[i].unwrap_or(f64::NAN),
            test_acc: test_acc[i].unwrap_or(f64::NAN),
            seconds: seconds[i].unwrap_or(f64::NAN),
            images_per_sec: ips[i],
            diverged: diverged[i],
        })
        .collect())
}

/// Reads neurons.parquet back (for `resume`).
pub fn read_neurons(run_dir: &Path) -> Result<Vec<NeuronRow>> {
    let path = run_dir.join("neurons.parquet");
    let df = read_parquet(&path)?;
    let epoch = u64s(&df, "epoch", &path)?;
    let layer = u64s(&df, "layer", &path)?;
    let neuron = u64s(&df, "neuron", &path)?;
    let names: Vec<String> = df
        .column("layer_name")
        .with_context(|| format!("reading {}: no column layer_name", path.display()))?
        .str()?
        .iter()
        .map(|v| v.unwrap_or_default().to_string())
        .collect();
    let mut columns = HashMap::new();
    for name in [
        "active_frac",
        "sample_active_frac",
        "max_pre",
        "mean_pre",
        "std_pre",
        "mean_abs_act",
        "mean_deriv",
        "weight_norm",
        "bias",
        "train_active_frac",
        "grad_act_abs_mean",
        "grad_pre_abs_mean",
        "weight_grad_norm",
    ] {
        columns.insert(name, f64s(&df, name, &path)?);
    }
    let v = |name: &str, i: usize| columns[name][i].unwrap_or(f64::NAN);
    let o = |name: &str, i: usize| columns[name][i];
    Ok((0..df.height())
        .map(|i| NeuronRow {
            epoch: epoch[i] as u32,
            layer: layer[i] as u32,
            layer_name: names[i].clone(),
            neuron: neuron[i] as u32,
            active_frac: v("active_frac", i),
            sample_active_frac: v("sample_active_frac", i),
            max_pre: v("max_pre", i),
            mean_pre: v("mean_pre", i),
            std_pre: v("std_pre", i),
            mean_abs_act: v("mean_abs_act", i),
            mean_deriv: v("mean_deriv", i),
            weight_norm: v("weight_norm", i),
            bias: v("bias", i),
            train_active_frac: o("train_active_frac", i),
            grad_act_abs_mean: o("grad_act_abs_mean", i),
            grad_pre_abs_mean: o("grad_pre_abs_mean", i),
            weight_grad_norm: o("weight_grad_norm", i),
        })
        .collect())
}

/// probe_indices.json.
pub fn write_probe_indices(run_dir: &Path, indices: &[usize]) -> Result<()> {
    let json = serde_json::to_vec(&serde_json::json!({ "indices": indices }))?;
    write_atomic(&run_dir.join("probe_indices.json"), &json)
}

/// Named f32 arrays with their shapes, plus string metadata, as one safetensors file.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, &[f32])],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, shape, values)| {
            (
                name.clone(),
                shape.clone(),
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, shape, data)| {
            Ok((
                name.clone(),
                TensorView::new(Dtype::F32, shape.clone(), data)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let serialized = safetensors::serialize(views, &Some(metadata))?;
    write_atomic(path, &serialized)
}

/// A safetensors file read back: tensors by name and the metadata.
pub struct SafetensorsFile {
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    pub metadata: HashMap<String, String>,
}

pub fn read_safetensors(path: &Path) -> Result<SafetensorsFile> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let parsed = safetensors::SafeTensors::deserialize(&bytes)
        .with_context(|| format!("reading {}: not a valid safetensors file", path.display()))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)?;
    let mut tensors = HashMap::new();
    for (name, view) in parsed.tensors() {
        if view.dtype() != Dtype::F32 {
            bail!("reading {}: tensor {name} is not f32", path.display());
        }
        let values = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        tensors.insert(name, (view.shape().to_vec(), values));
    }
    Ok(SafetensorsFile {
        tensors,
        metadata: header.metadata().clone().unwrap_or_default(),
    })
}

/// The paths of a run directory.
pub fn checkpoint_path(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoint").join("state.safetensors")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_whole_files_and_leave_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn epochs_round_trip_through_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![
            EpochSummary {
                epoch: 0,
                step: 0,
                lr: 0.1,
                train_loss: None,
                train_acc: None,
                test_loss: 2.3,
                test_acc: 0.1,
                seconds: 0.5,
                images_per_sec: None,
                diverged: false,
            },
            EpochSummary {
                epoch: 1,
                step: 10,
                lr: 0.1,
                train_loss: Some(1.2),
                train_acc: Some(0.6),
                test_loss: 0.9,
                test_acc: 0.7,
                seconds: 2.0,
                images_per_sec: Some(640.0),
                diverged: false,
            },
        ];
        write_epochs(dir.path(), &rows).unwrap();
        assert_eq!(read_epochs(dir.path()).unwrap(), rows);
    }

    #[test]
    fn safetensors_keep_shapes_values_and_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let w = [1.0f32, -2.0, 3.5, 0.25];
        let meta = HashMap::from([("epoch".to_string(), "3".to_string())]);
        write_safetensors(&path, &[("fc1.weight".into(), vec![2, 2], &w)], meta).unwrap();
        let read = read_safetensors(&path).unwrap();
        assert_eq!(read.tensors["fc1.weight"], (vec![2, 2], w.to_vec()));
        assert_eq!(read.metadata["epoch"], "3");
    }

    #[test]
    fn corrupt_and_future_manifests_are_named() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("manifest.json"), "{not json").unwrap();
        let err = format!("{:#}", Manifest::read(dir.path()).unwrap_err());
        assert!(
            err.contains("manifest.json") && err.contains("not valid JSON"),
            "{err}"
        );
        fs::write(
            dir.path().join("manifest.json"),
            r#"{"format_version": 99}"#,
        )
        .unwrap();
        let err = format!("{:#}", Manifest::read(dir.path()).unwrap_err());
        assert!(err.contains("format_version 99"), "{err}");
    }
}
