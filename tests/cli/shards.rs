//! `--shard I/N`: N shards run one after another produce exactly the runs of the unsharded
//! sweep, record for record (all but the wall-clock columns).

use std::path::Path;
use std::process::Command;

use crate::common::{assert_succeeded, reproducible, run_dir_names};

const BIN: &str = env!("CARGO_BIN_EXE_necrosis-report");

fn sweep(out: &Path, shard: Option<&str>) {
    let mut args = vec![
        "run",
        "--activations",
        "relu,relu-softsign",
        "--seeds",
        "2",
        "--epochs",
        "2",
        "--train-limit",
        "300",
        "--probe-size",
        "64",
        "--name",
        "s",
        "--no-report",
        "--threads",
        "2",
    ];
    if let Some(shard) = shard {
        args.extend(["--shard", shard]);
    }
    let output = Command::new(BIN)
        .args(&args)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert_succeeded(&output);
}

#[test]
fn shards_together_are_the_unsharded_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let (sharded, whole) = (dir.path().join("sharded"), dir.path().join("whole"));
    for shard in ["0/3", "1/3", "2/3"] {
        sweep(&sharded, Some(shard));
    }
    sweep(&whole, None);
    let names = run_dir_names(&whole.join("s"));
    assert_eq!(names.len(), 4);
    assert_eq!(run_dir_names(&sharded.join("s")), names);
    // Every shard recorded the same grid: the whole sweep's.
    assert_eq!(
        std::fs::read_to_string(sharded.join("s/sweep.json")).unwrap(),
        std::fs::read_to_string(whole.join("s/sweep.json")).unwrap()
    );
    for name in &names {
        assert_eq!(
            reproducible(&sharded.join("s").join(name)),
            reproducible(&whole.join("s").join(name)),
            "{name}"
        );
    }
}

#[test]
fn bad_shards_are_refused() {
    for bad in ["3/3", "1/0", "x/2", "2"] {
        let output = Command::new(BIN)
            .args(["run", "--shard", bad, "--no-report"])
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--shard"), "{bad}: {stderr}");
    }
}
