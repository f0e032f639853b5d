//! A factorial sweep from a sweep file: every factor crossed into one folder, run directories
//! named by the factors that vary plus the identity hash, and a changed grid refused, not mixed.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::run_dir_names;

const BIN: &str = env!("CARGO_BIN_EXE_necrosis-report");

const SWEEP: &str = r#"
name = "factorial"
activations = ["relu", "relu-softsign"]
optimizer = ["sgd", "adam"]
batch_size = [32, 128]
seeds = 3
epochs = 1
train_limit = 64
probe_size = 32

[[datasets]]
name = "digits"
"#;

fn run(dir: &Path, extra: &[&str]) -> Output {
    Command::new(BIN)
        .args([
            "run",
            "--config",
            "sweep.toml",
            "--threads",
            "1",
            "--no-report",
        ])
        .args(extra)
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn a_factorial_sweep_runs_into_one_folder_and_a_changed_grid_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("sweep.toml"), SWEEP).unwrap();
    let first = run(tmp.path(), &[]);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    // 2 activations × 2 optimisers × 2 batch sizes × 3 seeds.
    assert!(stdout.contains("24 runs"), "{stdout}");
    assert!(
        stdout.contains("activation (relu, relu-softsign) × optimizer (sgd, adam) × batch_size (32, 128) × seed (0, 1, 2)"),
        "{stdout}"
    );
    let names = run_dir_names(&tmp.path().join("runs/factorial"));
    assert_eq!(names.len(), 24);
    // Readable parts for the factors, then lr and seed, then 8 hex digits of identity.
    let example = names
        .iter()
        .find(|n| n.starts_with("digits-relu-adam-bs32-lr0.01-s0-"))
        .unwrap_or_else(|| panic!("{names:?}"));
    let hash = example.rsplit('-').next().unwrap();
    assert!(
        hash.len() == 8 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        "{example}"
    );

    // The analysis finds the factors from the manifests and never pools unlike runs: one cell
    // per activation and (optimizer, batch size), three seeds each, and relu-softsign compared
    // with relu within each of the four settings.
    let set = necrosis_analysis::load_runs(&[tmp.path().join("runs/factorial")]).unwrap();
    assert_eq!(set.factors, ["activation", "optimizer", "batch_size"]);
    let measures =
        necrosis_analysis::compute_measures(&set, &necrosis_analysis::MeasureOptions::default())
            .unwrap();
    let options = necrosis_analysis::aggregate::AggregateOptions {
        baseline: Some("relu".into()),
        all_pairs: false,
        seed: 1,
        contrasts: vec![
            "activation=relu,optimizer=adam,batch_size=32 vs activation=relu-softsign,optimizer=sgd,batch_size=32"
                .parse()
                .unwrap(),
        ],
    };
    let agg = necrosis_analysis::aggregate(&measures, &options).unwrap();
    let cells: std::collections::BTreeSet<(String, String)> = agg
        .summaries
        .iter()
        .map(|g| (g.activation.clone(), g.setting.clone()))
        .collect();
    assert_eq!(cells.len(), 8, "{cells:?}");
    assert!(cells.contains(&(
        "relu".to_string(),
        "lr 0.01, optimizer adam, batch_size 32".to_string()
    )));
    assert!(agg.summaries.iter().all(|g| g.runs == 3));
    let strata: std::collections::BTreeSet<&str> = agg
        .comparisons
        .iter()
        .filter(|c| c.measure == "final_acc")
        .map(|c| c.setting.as_str())
        .collect();
    // 4 settings, and the named contrast as a stratum of its own.
    assert_eq!(strata.len(), 5);
    let contrast = agg
        .comparisons
        .iter()
        .find(|c| c.measure == "final_acc" && c.setting.starts_with("contrast: "))
        .unwrap();
    assert_eq!(
        (contrast.activation.as_str(), contrast.other.as_str()),
        ("relu", "relu-softsign")
    );
    assert_eq!(contrast.design(), "paired by seed (3 pairs)");

    // The same grid again: every run is found and skipped.
    let again = run(tmp.path(), &[]);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success());
    assert!(stdout.contains("0 complete, 24 skipped"), "{stdout}");

    // Another number of epochs is another grid: refused, naming the key and the ways out, and
    // nothing new is trained.
    std::fs::write(
        tmp.path().join("sweep.toml"),
        SWEEP.replace("epochs = 1", "epochs = 2"),
    )
    .unwrap();
    let changed = run(tmp.path(), &[]);
    let stderr = String::from_utf8_lossy(&changed.stderr);
    assert!(!changed.status.success());
    assert!(
        stderr.contains("another grid (differing: epochs)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--name") && stderr.contains("--extend"),
        "{stderr}"
    );
    assert_eq!(run_dir_names(&tmp.path().join("runs/factorial")).len(), 24);

    // Asked to extend, the 24 new runs join the sweep beside the old ones.
    let extended = run(tmp.path(), &["--extend"]);
    assert!(
        extended.status.success(),
        "{}",
        String::from_utf8_lossy(&extended.stderr)
    );
    assert_eq!(run_dir_names(&tmp.path().join("runs/factorial")).len(), 48);
}
