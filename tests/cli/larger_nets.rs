//! The study's larger nets end to end: ResNet-20 (batch normalisation, residual blocks, global
//! average pooling) trained with augmentation on the CIFAR-100 sample PNGs, probed every epoch
//! and reported; and a deep narrow fully connected net with a single probe sample.

use std::path::{Path, PathBuf};
use std::process::Command;

use necrosis::records::architecture::LayerSpec;
use necrosis::records::checkpoint::{read_safetensors, MODEL_FILE};
use necrosis::records::tables::{EpochRow, NeuronRow};
use necrosis::records::{Manifest, RunStatus};

use crate::common::{assert_succeeded, only_run};

const BIN: &str = env!("CARGO_BIN_EXE_necrosis-report");

/// The 20 CIFAR-100 test images of the fixtures (`cifar100_<index>_<label>.png`), alone in a
/// folder: the flat layout takes each label from the file name.
fn cifar100_samples(dir: &Path) -> PathBuf {
    let fixtures =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("trainer/tests/fixtures/cifar-samples");
    let folder = dir.join("cifar100-samples");
    std::fs::create_dir_all(&folder).unwrap();
    for entry in std::fs::read_dir(fixtures).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name.starts_with("cifar100_") {
            std::fs::copy(&path, folder.join(name)).unwrap();
        }
    }
    folder
}

#[test]
fn resnet20_trains_probes_and_reports_on_the_cifar_samples() {
    let tmp = tempfile::tempdir().unwrap();
    let data = cifar100_samples(tmp.path());
    let (out, report) = (tmp.path().join("runs"), tmp.path().join("report"));
    let output = Command::new(BIN)
        .args(["run", "--dataset", "folder", "--data-dir"])
        .arg(&data)
        .args([
            "--arch",
            "resnet20",
            "--activations",
            "relu-softsign",
            "--seeds",
            "1",
        ])
        .args([
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--augment",
            "crop:4+flip",
        ])
        .args([
            "--init",
            "pytorch",
            "--bias-init",
            "pytorch",
            "--name",
            "cifar-samples",
        ])
        .args(["--threads", "2", "--out"])
        .arg(&out)
        .arg("--report-dir")
        .arg(&report)
        .output()
        .unwrap();
    assert_succeeded(&output);
    let run = only_run(&out.join("cifar-samples"));
    let manifest = Manifest::read(&run).unwrap();
    assert_eq!(manifest.status, RunStatus::Complete);
    // 20 files, every 5th to the test split; labels up to 97, so 98 classes.
    assert_eq!((manifest.train_samples, manifest.test_samples), (16, 4));
    assert_eq!((manifest.input, manifest.classes), ([3, 32, 32], 98));
    assert_eq!(manifest.config.augment.to_string(), "crop:4+flip");
    let blocks = manifest
        .architecture
        .iter()
        .filter(|l| matches!(l, LayerSpec::Res { .. }))
        .count();
    assert_eq!(blocks, 9);
    // The stem's site and two per block, each named after its layer.
    assert_eq!(manifest.sites.len(), 19);
    assert_eq!(manifest.sites[18].layer_name, "res9.out");
    let neurons = NeuronRow::read_all(&run).unwrap();
    let per_epoch: usize = manifest.sites.iter().map(|s| s.neurons).sum();
    // 16 + 3·2·16 + 3·2·32 + 3·2·64 channels, every epoch including 0.
    assert_eq!(per_epoch, 16 + 96 + 192 + 384);
    assert_eq!(neurons.len(), 3 * per_epoch);
    assert!(neurons.iter().all(|r| r.active_frac.is_finite()));
    let epochs = EpochRow::read_all(&run).unwrap();
    assert_eq!(epochs.len(), 3);
    assert!(epochs.iter().all(|e| e.test_loss.is_finite()));
    // The BN layers' running statistics were trained and saved beside the weights.
    let weights = read_safetensors(&run.join(MODEL_FILE)).unwrap();
    let running = weights.tensor("res1.bn1.running_var").unwrap();
    assert_eq!(running.len(), 16);
    assert!(running.iter().any(|v| *v != 1.0), "{running:?}");
    assert!(weights.tensor("res4.proj.weight").is_ok());
    // The report was written, and its per-layer table names the blocks' sites.
    assert!(report.join("index.html").is_file());
    let per_layer = std::fs::read_to_string(report.join("tables/per_run_layer.csv")).unwrap();
    assert!(per_layer.contains("res9.out") && per_layer.contains("res1.conv1"));
}

#[test]
fn a_deep_narrow_dense_net_records_one_probe_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args(["run", "--arch", "fc:2,act,fc:2,act,fc:2,act,fc:2,act,fc:10"])
        .args(["--activations", "relu", "--seeds", "1", "--epochs", "1"])
        .args([
            "--probe-size",
            "1",
            "--train-limit",
            "64",
            "--no-report",
            "--out",
        ])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_succeeded(&output);
    let run = only_run(&tmp.path().join("digits"));
    let rows = NeuronRow::read_all(&run).unwrap();
    // 4 sites of 2 units, epochs 0 and 1; one probe sample, so a unit is active or not.
    assert_eq!(rows.len(), 2 * 4 * 2);
    assert!(rows
        .iter()
        .all(|r| r.active_frac == 0.0 || r.active_frac == 1.0));
}
