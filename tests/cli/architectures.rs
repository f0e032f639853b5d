//! Architectures whose activation sites sit after pooling or flatten: a site's neurons are the
//! channels of the conv or fc layer before it, wherever the site is.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{only_run, reproducible};

/// Trains one relu run of `arch` on 64 embedded digits and returns its run directory.
fn run_arch(out: &Path, arch: &str) -> PathBuf {
    let output = Command::new(env!("CARGO_BIN_EXE_necrosis-report"))
        .args(["run", "--arch", arch, "--epochs", "2", "--seeds", "1"])
        .args([
            "--activations",
            "relu",
            "--train-limit",
            "64",
            "--probe-size",
            "32",
        ])
        .args(["--threads", "1", "--no-report", "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{arch}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    only_run(&out.join("digits"))
}

#[test]
fn a_site_after_flatten_records_the_conv_channels_like_a_site_before_it() {
    // flatten only renames positions, and an elementwise activation commutes with it, so the
    // two nets compute the same function from the same seeded weights: their records must be
    // identical. Before the fix the site after flatten took the 144 flattened values for
    // neurons and indexed conv1's 4 biases with them.
    let tmp = tempfile::tempdir().unwrap();
    let after = run_arch(&tmp.path().join("a"), "conv:4:3,flatten,act,fc:10");
    let before = run_arch(&tmp.path().join("b"), "conv:4:3,act,flatten,fc:10");
    let (epochs_after, neurons_after, weights_after, _) = reproducible(&after);
    let (epochs_before, neurons_before, weights_before, _) = reproducible(&before);
    assert_eq!(epochs_after, epochs_before);
    assert_eq!(neurons_after, neurons_before);
    assert_eq!(weights_after, weights_before);
    // 8×8 digits through a 3×3 conv without padding: 4 channels of 6×6 = 36 positions.
    let rows = necrosis::records::tables::NeuronRow::read_all(&after).unwrap();
    let epoch0: Vec<_> = rows.iter().filter(|r| r.epoch == 0).collect();
    assert_eq!(epoch0.len(), 4);
    assert!(epoch0.iter().all(|r| r.layer_name == "conv1"));
    let manifest = necrosis::records::Manifest::read(&after).unwrap();
    assert_eq!(manifest.sites.len(), 1);
    assert_eq!(manifest.sites[0].neurons, 4);
}
