//! Tests of finding and reading run records: complete, diverged and skipped runs sorted apart.

use super::*;
use crate::synthetic::{write_run, EpochRecord, NeuronRecord, RunSpec};

/// A small run with epochs 0..=last and two neurons in one layer.
fn write_small(
    root: &Path,
    sweep: &str,
    seed: u64,
    status: RunStatus,
    completed: Option<u32>,
) -> PathBuf {
    let last = 4;
    let epochs: Vec<EpochRecord> = (0..=last)
        .map(|e| EpochRecord::new(e, 0.1 * e as f64, (e > 0).then_some(1.0)))
        .collect();
    let neurons: Vec<NeuronRecord> = (0..=last)
        .flat_map(|e| (0..2).map(move |n| NeuronRecord::alive(e, 0, n)))
        .collect();
    let mut spec = RunSpec::new(
        sweep,
        "digits",
        "relu",
        seed,
        0.05,
        last,
        vec![("fc1".into(), 2)],
    );
    spec.status = status;
    spec.epochs_completed = completed;
    if status == RunStatus::Failed {
        spec.error = Some("out of memory".into());
    }
    write_run(root, &spec, &epochs, &neurons).unwrap()
}

#[test]
fn sorts_runs_into_used_diverged_and_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let complete = write_small(root, "a", 0, RunStatus::Complete, None);
    let cut = write_small(root, "b", 1, RunStatus::Complete, Some(2));
    write_small(root, "a", 2, RunStatus::Failed, Some(1));
    write_small(root, "a", 3, RunStatus::Running, Some(0));
    write_small(root, "a", 4, RunStatus::Running, Some(3));
    write_small(root, "b", 5, RunStatus::Diverged, Some(2));
    let truncated = write_small(root, "b", 6, RunStatus::Complete, None);
    let bytes = std::fs::read(truncated.join("neurons.parquet")).unwrap();
    std::fs::write(truncated.join("neurons.parquet"), &bytes[..bytes.len() / 2]).unwrap();
    let missing = write_small(root, "b", 7, RunStatus::Complete, None);
    std::fs::remove_file(missing.join("epochs.parquet")).unwrap();
    let future = write_small(root, "b", 8, RunStatus::Complete, None);
    let text = std::fs::read_to_string(future.join("manifest.json")).unwrap();
    std::fs::write(
        future.join("manifest.json"),
        text.replace("\"format_version\": 2", "\"format_version\": 9"),
    )
    .unwrap();

    // The root holds sweep folders: found two levels down.
    let runs = load_runs(&[root.to_path_buf()]).unwrap();
    let used: Vec<&Path> = runs.runs.iter().map(|r| r.dir.as_path()).collect();
    assert_eq!(used, vec![complete.as_path(), cut.as_path()]);
    assert_eq!(runs.diverged.len(), 1);
    assert_eq!(runs.skipped.len(), 6, "{:#?}", runs.skipped);
    let reason = |seed: u64| {
        runs.skipped
            .iter()
            .find(|s| {
                let id = s.dir.file_name().unwrap().to_string_lossy().into_owned();
                id.starts_with(&format!("digits-relu-lr0.05-s{seed}-"))
            })
            .map(|s| s.reason.clone())
            .unwrap_or_default()
    };
    assert!(reason(2).contains("failed: out of memory"), "{}", reason(2));
    assert!(reason(3).contains("no completed epoch"), "{}", reason(3));
    assert!(reason(4).contains("incomplete"), "{}", reason(4));
    assert!(reason(6).contains("neurons.parquet"), "{}", reason(6));
    assert!(
        reason(7).contains("epochs.parquet") && reason(7).contains("missing"),
        "{}",
        reason(7)
    );
    assert!(
        reason(8).contains("format_version 9") && reason(8).contains("manifest.json"),
        "{}",
        reason(8)
    );

    // Rows after epochs_completed are not used.
    assert_eq!(runs.runs[1].epochs_completed, 2);
    let neurons = runs.neurons().collect().unwrap();
    assert_eq!(neurons.height(), 2 * 5 + 2 * 3);
    assert_eq!(runs.epochs.height(), 5 + 3);
    for c in ["run_id", "activation", "dataset", "seed", "lr"] {
        assert!(neurons.column(c).is_ok(), "missing {c}");
    }

    // A sweep folder and a run directory work as well.
    assert_eq!(load_runs(&[root.join("a")]).unwrap().runs.len(), 1);
    assert_eq!(
        load_runs(std::slice::from_ref(&complete))
            .unwrap()
            .runs
            .len(),
        1
    );
    // A folder with no run is an error, not an empty analysis.
    let empty = tempfile::tempdir().unwrap();
    assert!(load_runs(&[empty.path().to_path_buf()]).is_err());
}
