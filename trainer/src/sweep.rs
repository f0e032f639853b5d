//! A sweep: the Cartesian product of activations × learning rates × seeds on one dataset, run
//! one after another into `<out>/<name>/<run-id>/`, with a progress bar.
//!
//! A run directory that is already complete (or diverged) is skipped and one that was
//! interrupted is resumed, so re-running the same command finishes a killed sweep. A `.lock`
//! file per run, locked with flock while a process trains the run, keeps two processes sharing
//! an output folder from training the same run.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::data::{self, Dataset};
use crate::train::{self, Progress, RunOptions, RunOutcome};
use necrosis_records::config::{InvalidConfig, RunConfig};
use necrosis_records::files::now_rfc3339;
use necrosis_records::grid::{SweepGrid, SweepRecord};
use necrosis_records::manifest::RunIdentity;
use necrosis_records::{Manifest, RunStatus};

/// What the sweep runs and where.
#[derive(Debug, Clone)]
pub struct SweepPlan {
    pub name: String,
    pub out: PathBuf,
    pub runs: Vec<RunConfig>,
    /// The settings that vary among the sweep's runs: they name its run directories.
    pub factors: Vec<&'static str>,
    /// The grid the runs come from, recorded in the sweep folder (`sweep.json`); `None` for a
    /// resumed run, which belongs to a recorded sweep already.
    pub grid: Option<SweepGrid>,
    /// Add this grid's runs to a sweep recorded with another grid, instead of refusing.
    pub extend: bool,
    /// Record neuron statistics (always on, except to measure their cost).
    pub instruments: bool,
}

/// A sweep folder recorded with another grid than the one asked for.
#[derive(Debug, thiserror::Error)]
#[error(
    "{}: the sweep was started with another grid (differing: {}); run it under another --name, or pass --extend to add this grid's runs to the sweep",
    sweep_dir.display(),
    differing.join(", ")
)]
pub struct GridMismatch {
    pub sweep_dir: PathBuf,
    pub differing: Vec<String>,
}

/// Checks `grid` against the one `sweep_dir` records, and records it: a new sweep records its
/// grid, the same grid goes on, another grid is refused unless `extend`, which adds it.
fn record_grid(sweep_dir: &Path, grid: &SweepGrid, extend: bool) -> Result<()> {
    match SweepRecord::read(sweep_dir)? {
        None => SweepRecord {
            format_version: 1,
            grids: vec![grid.clone()],
        }
        .write(sweep_dir)?,
        Some(record) if record.holds(grid) => {}
        Some(mut record) if extend => {
            record.grids.push(grid.clone());
            record.write(sweep_dir)?;
        }
        Some(record) => {
            let last = record.grids.last().expect("a record holds a grid");
            return Err(GridMismatch {
                sweep_dir: sweep_dir.to_path_buf(),
                differing: last.differing_keys(grid),
            }
            .into());
        }
    }
    Ok(())
}

/// The run directories already in `sweep_dir`, by the identity hash their name ends with.
fn runs_by_identity(sweep_dir: &Path) -> HashMap<String, String> {
    let Ok(entries) = fs::read_dir(sweep_dir) else {
        return HashMap::new();
    };
    entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let (_, hash) = name.rsplit_once('-')?;
            Some((hash.to_string(), name))
        })
        .collect()
}

/// How each run of a sweep ended.
#[derive(Debug, Default)]
pub struct SweepSummary {
    pub completed: Vec<String>,
    pub skipped: Vec<String>,
    pub diverged: Vec<String>,
    /// Each failed run with its error (a setting error names the setting by its key).
    pub failed: Vec<(String, anyhow::Error)>,
    pub interrupted: bool,
}

/// Checks a sweep name used as a folder name: no path separators, no `..`, not empty.
pub fn check_name(name: &str) -> Result<(), InvalidConfig> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && !name.starts_with('.');
    if !ok {
        return Err(InvalidConfig {
            key: "name",
            problem: format!(
                "'{name}' must be a plain folder name (no '/', '\\', leading '.' or '..')"
            ),
        });
    }
    Ok(())
}

/// Part `index` of `count` of a sweep's runs: every `count`-th run from `index`, so the parts are
/// disjoint, cover the sweep, and each mixes activations and seeds evenly.
pub fn shard(runs: &[RunConfig], index: usize, count: usize) -> Vec<RunConfig> {
    runs.iter().skip(index).step_by(count).cloned().collect()
}

/// Loads a run's dataset with its --train-limit applied.
fn load_dataset(config: &RunConfig) -> Result<Dataset> {
    let mut dataset = data::load(&config.dataset)?;
    if let Some(limit) = config.train_limit {
        dataset.limit_train(limit).map_err(|e| InvalidConfig {
            key: "train_limit",
            problem: format!("{e:#}"),
        })?;
    }
    Ok(dataset)
}

/// Runs every run of the plan; each dataset is loaded once (runs of one dataset are adjacent).
pub fn run_sweep(plan: &SweepPlan, stop: Arc<AtomicBool>) -> Result<SweepSummary> {
    check_name(&plan.name)?;
    if plan.runs.is_empty() {
        bail!("the sweep has no runs (an empty shard?)");
    }
    for run in &plan.runs {
        run.validate()?;
    }
    let mut dataset = load_dataset(&plan.runs[0])?;
    let sweep_dir = plan.out.join(&plan.name);
    fs::create_dir_all(&sweep_dir).with_context(|| format!("creating {}", sweep_dir.display()))?;
    if let Some(grid) = &plan.grid {
        record_grid(&sweep_dir, grid, plan.extend)?;
    }
    let existing = runs_by_identity(&sweep_dir);
    // One checksum per data folder, however many runs read it.
    let mut checksums: HashMap<String, String> = HashMap::new();

    // Sizes of later datasets are not known before they load; the bar counts with the first's.
    let steps_per_run: u64 = plan
        .runs
        .iter()
        .map(|r| (r.epochs * dataset.train.len().div_ceil(r.batch_size)) as u64)
        .sum();
    let bar = ProgressBar::new(steps_per_run);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {percent:>3}% {msg} [{elapsed_precise} < {eta_precise}]",
        )
        .expect("valid template"),
    );
    let mut summary = SweepSummary::default();
    let total = plan.runs.len();
    for (i, config) in plan.runs.iter().enumerate() {
        if i > 0
            && (config.dataset != plan.runs[i - 1].dataset
                || config.train_limit != plan.runs[i - 1].train_limit)
        {
            dataset = load_dataset(config)?;
        }
        let data_key = serde_json::to_string(&config.dataset)?;
        let data_checksum = match checksums.get(&data_key) {
            Some(sum) => sum.clone(),
            None => {
                let sum = data::checksum::checksum(&config.dataset)?;
                checksums.insert(data_key, sum.clone());
                sum
            }
        };
        let identity = RunIdentity {
            config_hash: config.identity(&data_checksum),
            data_checksum,
        };
        // A run is found by its identity, whatever the grid that named it.
        let run_id = existing
            .get(&identity.config_hash)
            .cloned()
            .unwrap_or_else(|| config.run_dir_name(&plan.factors, &identity.config_hash));
        let run_dir = sweep_dir.join(&run_id);
        let steps = (config.epochs * dataset.train.len().div_ceil(config.batch_size)) as u64;
        if let Ok(manifest) = Manifest::read(&run_dir) {
            if manifest.status.is_finished() && manifest.config == *config {
                bar.inc(steps);
                say(
                    &bar,
                    format!(
                        "run {}/{total} {run_id}: already {}, skipped",
                        i + 1,
                        manifest.status
                    ),
                );
                summary.skipped.push(run_id);
                continue;
            }
        }
        // Checked before the run directory exists, so a refused run leaves nothing behind.
        train::probe_indices(config, &dataset)?;
        let lock = match RunLock::acquire(&run_dir)? {
            Some(lock) => lock,
            None => {
                bar.inc(steps);
                say(
                    &bar,
                    format!(
                        "run {}/{total} {run_id}: another process is training it, skipped",
                        i + 1
                    ),
                );
                summary.skipped.push(run_id);
                continue;
            }
        };
        let start_position = bar.position();
        let label = format!("run {}/{total} {run_id}", i + 1);
        let bar_in_run = bar.clone();
        let label_in_run = label.clone();
        let mut last_ips = String::new();
        let options = RunOptions {
            instruments: plan.instruments,
            hooks: Vec::new(),
            stop: Some(stop.clone()),
            sweep: plan.name.clone(),
            identity,
            activation: None,
            progress: Box::new(move |event| match event {
                Progress::Step {
                    epoch,
                    batch,
                    batches,
                    loss,
                } => {
                    bar_in_run
                        .set_position(start_position + ((epoch - 1) * batches + batch) as u64);
                    bar_in_run.set_message(format!(
                        "{label_in_run} epoch {epoch} loss {loss:.3}{last_ips}"
                    ));
                }
                Progress::Epoch(e) => {
                    if let Some(ips) = e.images_per_sec {
                        last_ips = format!(" {ips:.0} img/s");
                    }
                }
                Progress::Phases(_) => {}
            }),
        };
        let outcome = train::run(&dataset, config, &run_dir, options);
        bar.set_position(start_position + steps);
        match outcome {
            Ok(RunOutcome::Complete { final_test_acc }) => {
                say(
                    &bar,
                    format!(
                        "{label}: complete, test accuracy {:.2} %",
                        final_test_acc * 100.0
                    ),
                );
                summary.completed.push(run_id);
            }
            Ok(RunOutcome::Diverged { epoch }) => {
                say(
                    &bar,
                    format!("{label}: diverged (loss NaN/inf) in epoch {epoch}; the sweep goes on"),
                );
                summary.diverged.push(run_id);
            }
            Ok(RunOutcome::Interrupted { epochs_completed }) => {
                say(
                    &bar,
                    format!("{label}: interrupted after epoch {epochs_completed}"),
                );
                summary.interrupted = true;
                break;
            }
            Err(err) => {
                let message = format!("{err:#}");
                // A request that does not match the stored run leaves that run as it was.
                if err.downcast_ref::<train::ConfigMismatch>().is_none() {
                    lock.mark_failed(&message);
                }
                say(&bar, format!("{label}: failed: {message}"));
                summary.failed.push((run_id, err));
            }
        }
        // Held until the outcome is recorded: released earlier, another process could take
        // the run and have its manifest overwritten by this one's failure.
        drop(lock);
    }
    bar.finish_and_clear();
    Ok(summary)
}

/// Prints a line above the progress bar, or plainly when the bar is hidden (output is not a
/// terminal), so logs of batch jobs still say how every run ended.
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        println!("{line}");
    } else {
        bar.println(line);
    }
}

/// Resumes every unfinished run under `dir` (a run directory or a sweep folder).
pub fn resume(dir: &Path, stop: Arc<AtomicBool>) -> Result<SweepSummary> {
    let run_dirs: Vec<PathBuf> = if dir.join("manifest.json").exists() {
        vec![dir.to_path_buf()]
    } else {
        let mut dirs: Vec<PathBuf> = fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("manifest.json").exists())
            .collect();
        dirs.sort();
        if dirs.is_empty() {
            bail!(
                "{}: no run directory (with a manifest.json) here",
                dir.display()
            );
        }
        dirs
    };
    let mut summary = SweepSummary::default();
    for run_dir in run_dirs {
        let manifest = Manifest::read(&run_dir)?;
        let run_id = manifest.run_id.clone();
        if manifest.status.is_finished() {
            summary.skipped.push(run_id);
            continue;
        }
        let name = run_dir
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let plan = SweepPlan {
            name: manifest.sweep.clone(),
            out: run_dir
                .parent()
                .and_then(Path::parent)
                .unwrap_or(Path::new("."))
                .to_path_buf(),
            runs: vec![manifest.config.clone()],
            factors: Vec::new(),
            grid: None,
            extend: false,
            instruments: true,
        };
        if name != manifest.sweep {
            bail!(
                "{}: the run belongs to sweep '{}' but sits in folder '{name}'",
                run_dir.display(),
                manifest.sweep
            );
        }
        if manifest.config_hash.is_empty() {
            bail!(
                "{}: written by an earlier version (record format 1, before runs were identified by their whole configuration); rerun it with `run`",
                run_dir.display()
            );
        }
        // The run continues only on the data it started on.
        let data_checksum = data::checksum::checksum(&manifest.config.dataset)?;
        if data_checksum != manifest.data_checksum {
            bail!(
                "{}: the data changed since the run started (checksum {} then, {} now)",
                run_dir.display(),
                manifest.data_checksum,
                data_checksum
            );
        }
        let part = run_sweep(&plan, stop.clone())?;
        summary.completed.extend(part.completed);
        summary.diverged.extend(part.diverged);
        summary.failed.extend(part.failed);
        if part.interrupted {
            summary.interrupted = true;
            break;
        }
    }
    Ok(summary)
}

/// An exclusive claim on a run directory: an OS file lock (`flock`) on its `.lock` file, held
/// while the value lives. The OS drops the lock when its process dies, however it dies, so a
/// killed run never leaves a claim behind, and there is no stale-lock takeover to race on (two
/// processes could both judge a dead holder's lock stale and both take it over). Linux's NFS
/// client maps `flock` to NFS locks, so a cluster's shared folder works too.
///
/// The holder deletes the file when it is done. A process that locked the file just before the
/// deletion would hold a lock on a name that no longer exists, so a lock counts only if the path
/// still names the locked file afterwards; otherwise acquiring starts over.
struct RunLock {
    path: PathBuf,
    _file: fs::File,
}

impl RunLock {
    /// Records a failure in the run's manifest, if it has one (its completed epochs stay
    /// readable). A method of the lock so that only the run's holder can mark it.
    fn mark_failed(&self, message: &str) {
        let Some(run_dir) = self.path.parent() else {
            return;
        };
        if let Ok(mut manifest) = Manifest::read(run_dir) {
            manifest.status = RunStatus::Failed;
            manifest.error = Some(message.to_string());
            manifest.ended_at = Some(now_rfc3339());
            let _ = manifest.write(run_dir);
        }
    }

    /// The lock, or `None` when another process (or another handle of this one) holds it.
    fn acquire(run_dir: &Path) -> Result<Option<Self>> {
        fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
        let path = run_dir.join(".lock");
        for _ in 0..100 {
            let mut file = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => return Ok(None),
                Err(fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {}", path.display()))
                }
            }
            if !names_the_same_file(&path, &file) {
                continue;
            }
            // The holder's pid, for a person wondering who holds it; nothing reads it.
            file.set_len(0)?;
            write!(file, "{}", std::process::id())?;
            return Ok(Some(Self { path, _file: file }));
        }
        bail!("{}: the lock file keeps being replaced", path.display())
    }
}

#[cfg(unix)]
fn names_the_same_file(path: &Path, file: &fs::File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(path), file.metadata()) {
        (Ok(named), Ok(open)) => named.dev() == open.dev() && named.ino() == open.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn names_the_same_file(path: &Path, _file: &fs::File) -> bool {
    path.exists()
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Deleted while still locked; the lock goes when the file is closed right after.
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_disjoint_and_cover_the_sweep() {
        use necrosis_records::config::{DatasetKind, DatasetSpec};
        // 5 activations × 2 learning rates × 3 seeds = 30 runs with 30 distinct ids.
        let mut runs = Vec::new();
        for activation in [
            "relu",
            "softplus",
            "softsign",
            "relu-softplus",
            "relu-softsign",
        ] {
            for lr in [0.01, 0.1] {
                for seed in 0..3 {
                    let mut run = RunConfig::new(DatasetSpec::new(DatasetKind::Digits), activation);
                    (run.lr, run.seed) = (lr, seed);
                    runs.push(run);
                }
            }
        }
        let mut union: Vec<String> = (0..4)
            .flat_map(|i| shard(&runs, i, 4))
            .map(|r| r.identity("data"))
            .collect();
        // 30 runs in 4 parts: 8, 8, 7, 7.
        assert_eq!(
            (0..4).map(|i| shard(&runs, i, 4).len()).collect::<Vec<_>>(),
            [8, 8, 7, 7]
        );
        assert_eq!(union.len(), runs.len(), "disjoint");
        union.sort();
        let mut all: Vec<String> = runs.iter().map(|r| r.identity("data")).collect();
        all.sort();
        all.dedup();
        assert_eq!(union, all, "covering");
    }

    #[test]
    fn names_cannot_leave_the_output_folder() {
        for bad in ["../x", "/etc", "a/b", "..", ".hidden", ""] {
            assert_eq!(check_name(bad).unwrap_err().key, "name", "{bad}");
        }
        check_name("mnist-study_2").unwrap();
    }

    #[test]
    fn a_held_lock_excludes_and_a_released_or_leftover_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let lock = RunLock::acquire(dir.path()).unwrap().expect("first lock");
        assert!(
            RunLock::acquire(dir.path()).unwrap().is_none(),
            "a second handle is refused while the first holds the lock"
        );
        drop(lock);
        assert!(
            !dir.path().join(".lock").exists(),
            "the holder deletes the file"
        );
        assert!(RunLock::acquire(dir.path()).unwrap().is_some(), "released");
        // What a killed run leaves: the file, but no lock (the OS released it with the process).
        fs::write(dir.path().join(".lock"), "4000000000").unwrap();
        assert!(RunLock::acquire(dir.path()).unwrap().is_some(), "left over");
    }

    #[test]
    fn a_lock_on_a_deleted_or_replaced_lock_file_does_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        fs::write(&path, "").unwrap();
        let waiter = fs::File::open(&path).unwrap();
        assert!(names_the_same_file(&path, &waiter));
        fs::remove_file(&path).unwrap();
        assert!(!names_the_same_file(&path, &waiter), "deleted");
        fs::write(&path, "").unwrap();
        assert!(
            !names_the_same_file(&path, &waiter),
            "replaced by a new file"
        );
    }

    #[test]
    fn a_lock_held_by_another_process_excludes() {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        fs::write(&path, "").unwrap();
        // flock(1) takes the lock and execs the shell (-F: no fork), which says so on stdout
        // and then becomes `sleep`, holding the lock until killed. Waiting for that line, not
        // polling with acquire (whose drop deletes the file the child may be about to lock),
        // makes the order certain. util-linux's flock is on every Linux this runs on; without
        // it the test fails rather than passing untested.
        let mut child = Command::new("flock")
            .arg("-F")
            .arg(&path)
            .args(["sh", "-c", "echo held; exec sleep 30"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("flock(1) from util-linux is needed by this test");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "held", "flock did not take the lock");
        let refused = RunLock::acquire(dir.path()).unwrap().is_none();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(refused, "a lock held by another process must exclude");
        assert!(
            RunLock::acquire(dir.path()).unwrap().is_some(),
            "the lock is free once the holder is killed"
        );
    }
}
