//! Helpers shared by the integration tests: a tiny complete run, and run records compared
//! without their wall-clock columns.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use necrosis::records::checkpoint::{read_safetensors, MODEL_FILE};
use necrosis::records::tables::{EpochRow, NeuronRow};
use necrosis::records::Manifest;

/// The run's records with the wall-clock columns (`seconds`, `images_per_sec`) blanked, as text
/// (Debug keeps NaN equal to NaN, which a diverged run's rows hold), plus the final weights.
pub fn reproducible(run: &Path) -> (String, String, Vec<u8>, String) {
    let mut epochs = EpochRow::read_all(run).unwrap();
    for e in &mut epochs {
        e.seconds = 0.0;
        e.images_per_sec = e.images_per_sec.map(|_| 0.0);
    }
    let neurons = NeuronRow::read_all(run).unwrap();
    let m = Manifest::read(run).unwrap();
    let manifest = format!(
        "{:?} {} {:?} {:?} {:?} {:?}",
        m.status, m.epochs_completed, m.config, m.error, m.architecture, m.normalization
    );
    // Compared as tensors: the header's metadata order varies from process to process.
    let weights = read_safetensors(&run.join(MODEL_FILE)).unwrap();
    let mut tensors: Vec<_> = weights.tensors.into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut bits = Vec::new();
    for (name, (shape, values)) in tensors {
        bits.extend(name.bytes());
        bits.extend(shape.iter().flat_map(|d| (*d as u64).to_le_bytes()));
        bits.extend(values.iter().flat_map(|v| v.to_bits().to_le_bytes()));
    }
    (
        format!("{epochs:?}"),
        format!("{neurons:?}"),
        bits,
        manifest,
    )
}

/// A complete two-epoch relu run on 64 of the embedded digits: (tempdir, run dir).
pub fn tiny_complete_run() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_necrosis-report"))
        .args([
            "run",
            "--epochs",
            "2",
            "--seeds",
            "1",
            "--activations",
            "relu",
            "--no-report",
        ])
        .args([
            "--train-limit",
            "64",
            "--probe-size",
            "32",
            "--threads",
            "1",
            "--out",
        ])
        .arg(dir.path().join("runs"))
        .output()
        .unwrap();
    assert_succeeded(&out);
    // The sweep folder holds the run directory and the sweep's grid record (sweep.json).
    let run = std::fs::read_dir(dir.path().join("runs/digits"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    assert!(run.join("manifest.json").is_file());
    (dir, run)
}

/// The names of the run directories in a sweep folder, sorted (the folder also holds the sweep's
/// grid record, sweep.json).
pub fn run_dir_names(sweep: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(sweep)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Fails the test with the command's stderr unless it exited with success.
pub fn assert_succeeded(output: &Output) {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The one run directory of a sweep folder (beside its sweep.json).
pub fn only_run(sweep: &Path) -> PathBuf {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(sweep)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs.pop().unwrap()
}
