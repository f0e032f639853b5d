//! `model.safetensors` (the final weights) and `checkpoint/state.safetensors` (weights, optimiser
//! state and position after the last completed epoch): f32 tensors by name, plus string
//! metadata. The names live here so that the writer and every reader agree on them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};

use crate::files::write_atomic;
use crate::{Problem, RecordError, Result};

/// The final weights' file name in a run directory.
pub const MODEL_FILE: &str = "model.safetensors";

/// Metadata keys of model.safetensors and the checkpoint.
pub mod metadata {
    /// Epochs completed when the file was written.
    pub const EPOCH: &str = "epoch";
    /// Optimiser steps taken (checkpoint).
    pub const STEP: &str = "step";
    /// Wall time of the run so far, in seconds (checkpoint).
    pub const SECONDS: &str = "seconds";
    /// The activation's name (model.safetensors).
    pub const ACTIVATION: &str = "activation";
    /// The architecture's layers as JSON (model.safetensors).
    pub const ARCHITECTURE: &str = "architecture";
}

/// `<run_dir>/checkpoint/state.safetensors`.
pub fn checkpoint_path(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoint").join("state.safetensors")
}

/// The checkpoint's tensor of the optimiser's first moment (SGD velocity, Adam m) of `param`.
pub fn first_moment_name(param: &str) -> String {
    format!("optimizer.first.{param}")
}

/// The checkpoint's tensor of Adam's second moment of `param`.
pub fn second_moment_name(param: &str) -> String {
    format!("optimizer.second.{param}")
}

/// The prefix of the checkpoint's tensors that hold an intervening hook's state (continual
/// backprop's utilities and ages): `hook.<name>`.
pub const HOOK_STATE_PREFIX: &str = "hook.";

/// Named f32 arrays with their shapes, plus string metadata, written as one safetensors file.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, &[f32])],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let fail = |e: safetensors::SafeTensorError| {
        RecordError::writing(path, Problem::NotSafetensors(e.to_string()))
    };
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
                TensorView::new(Dtype::F32, shape.clone(), data).map_err(fail)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = Some(metadata);
    let mut serialized = safetensors::serialize(views, &metadata).map_err(fail)?;
    if let Some(metadata) = &metadata {
        sort_metadata(&mut serialized, metadata);
    }
    write_atomic(path, &serialized)
}

/// Rewrites the header's `__metadata__` object with its keys in sorted order, so that the same
/// weights and metadata give the same bytes (a file can be checked with `cmp`).
///
/// The safetensors crate takes the metadata as a `HashMap` and writes it in that map's
/// iteration order, which its random seed changes from run to run. The header begins with
/// `{"__metadata__":` and then the map as serde_json writes it; sorted, the same entries take
/// the same number of bytes, so the object is replaced in place. Should a later version of the
/// crate lay the header out otherwise, the file is left as the crate wrote it (still valid).
fn sort_metadata(serialized: &mut [u8], metadata: &HashMap<String, String>) {
    // serde_json writes a map in its iteration order, which is fixed for one map instance:
    // this is the text the crate wrote.
    let (Ok(as_written), Ok(sorted)) = (
        serde_json::to_string(metadata),
        serde_json::to_string(&metadata.iter().collect::<BTreeMap<_, _>>()),
    ) else {
        return;
    };
    let start = 8 + br#"{"__metadata__":"#.len();
    let object = start..start + as_written.len();
    let header_is_as_expected = serialized.len() >= object.end
        && serialized[8..start] == *br#"{"__metadata__":"#
        && serialized[object.clone()] == *as_written.as_bytes()
        && sorted.len() == as_written.len();
    if header_is_as_expected {
        serialized[object].copy_from_slice(sorted.as_bytes());
    }
}

/// A safetensors file read back: tensors by name (shape, values) and the metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct SafetensorsFile {
    pub path: PathBuf,
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    pub metadata: HashMap<String, String>,
}

impl SafetensorsFile {
    /// The tensor `name`'s values, or an error naming the file and the tensor.
    pub fn tensor(&self, name: &str) -> Result<&[f32]> {
        self.tensors
            .get(name)
            .map(|(_, values)| values.as_slice())
            .ok_or_else(|| RecordError::reading(&self.path, Problem::MissingTensor(name.into())))
    }

    /// The metadata value `key` as a number, or an error naming the file and the key.
    pub fn number(&self, key: &'static str) -> Result<f64> {
        self.metadata
            .get(key)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| RecordError::reading(&self.path, Problem::MissingMetadata(key)))
    }
}

/// Reads a safetensors file of f32 tensors.
pub fn read_safetensors(path: &Path) -> Result<SafetensorsFile> {
    let bytes = std::fs::read(path).map_err(|e| RecordError::reading(path, e))?;
    let invalid = |e: safetensors::SafeTensorError| {
        RecordError::reading(path, Problem::NotSafetensors(e.to_string()))
    };
    let parsed = safetensors::SafeTensors::deserialize(&bytes).map_err(invalid)?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(invalid)?;
    let mut tensors = HashMap::new();
    for (name, view) in parsed.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(RecordError::reading(path, Problem::NotF32(name)));
        }
        let values = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        tensors.insert(name, (view.shape().to_vec(), values));
    }
    Ok(SafetensorsFile {
        path: path.to_path_buf(),
        tensors,
        metadata: header.metadata().clone().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The safetensors layout written by hand (its spec: an 8-byte little-endian header length,
    /// a JSON header, then the raw little-endian data), independently of the crate.
    fn by_hand() -> Vec<u8> {
        let header = r#"{"__metadata__":{"epoch":"3"},"fc1.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        for v in [1.0f32, -2.0, 3.5, 0.25] {
            bytes.extend(v.to_le_bytes());
        }
        bytes
    }

    #[test]
    fn reads_a_file_written_by_hand_and_writes_what_it_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        std::fs::write(&path, by_hand()).unwrap();
        let read = read_safetensors(&path).unwrap();
        assert_eq!(
            read.tensors["fc1.weight"],
            (vec![2, 2], vec![1.0, -2.0, 3.5, 0.25])
        );
        assert_eq!(read.number(metadata::EPOCH).unwrap(), 3.0);
        let missing = read.tensor("fc2.bias").unwrap_err().to_string();
        assert!(missing.contains("no tensor fc2.bias") && missing.contains("m.safetensors"));

        let again = dir.path().join("again.safetensors");
        let w = [1.0f32, -2.0, 3.5, 0.25];
        let meta = HashMap::from([("epoch".to_string(), "3".to_string())]);
        write_safetensors(&again, &[("fc1.weight".into(), vec![2, 2], &w)], meta).unwrap();
        let reread = read_safetensors(&again).unwrap();
        assert_eq!(
            (reread.tensors, reread.metadata),
            (read.tensors, read.metadata)
        );
    }

    /// The metadata's keys are written in sorted order whatever the map's iteration order, so
    /// the file is the same bytes every time: here, byte for byte the layout written by hand.
    #[test]
    fn the_metadata_is_written_in_sorted_order() {
        let dir = tempfile::tempdir().unwrap();
        let w = [1.0f32, -2.0, 3.5, 0.25];
        let keys = [
            "step",
            "activation",
            "epoch",
            "seconds",
            "architecture",
            "zeta",
            "alpha",
        ];
        let header = concat!(
            r#"{"__metadata__":{"activation":"v1","alpha":"v6","architecture":"v4","epoch":"v2","#,
            r#""seconds":"v3","step":"v0","zeta":"v5"},"#,
            r#""fc1.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#
        );
        let padded = format!("{header}{}", " ".repeat((8 - header.len() % 8) % 8));
        let mut want = (padded.len() as u64).to_le_bytes().to_vec();
        want.extend(padded.as_bytes());
        for v in w {
            want.extend(v.to_le_bytes());
        }
        // Each map has its own random seed; inserting in several orders varies it further.
        for round in 0..8 {
            let mut meta = HashMap::new();
            for k in 0..keys.len() {
                let i = (k + round) % keys.len();
                meta.insert(keys[i].to_string(), format!("v{i}"));
            }
            let path = dir.path().join(format!("m{round}.safetensors"));
            write_safetensors(&path, &[("fc1.weight".into(), vec![2, 2], &w)], meta).unwrap();
            let got = std::fs::read(&path).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&got[8..got.len() - 16]),
                padded,
                "round {round}"
            );
            assert_eq!(got, want, "round {round}");
        }
    }

    #[test]
    fn a_damaged_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.safetensors");
        std::fs::write(&path, &by_hand()[..40]).unwrap();
        let err = read_safetensors(&path).unwrap_err().to_string();
        assert!(
            err.contains("state.safetensors") && err.contains("not a valid safetensors"),
            "{err}"
        );
    }
}
