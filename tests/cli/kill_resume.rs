//! Nothing lost: a sweep killed with SIGKILL at random moments (during training, the probe pass
//! and record writing) leaves every completed epoch readable, and rerunning the same command
//! until it completes gives the records of an uninterrupted sweep (wall-clock columns aside).
//! Ctrl-C (SIGINT) stops cleanly with exit code 130 and a `necrosis-report resume` hint, and two
//! processes sharing an output folder both finish cleanly with every run complete.
//!
//! The kill moments are random; the seed is printed, and `KILL_TEST_SEED=N` replays one.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::reproducible;
use necrosis::records::tables::{EpochRow, NeuronRow};
use necrosis::records::{Manifest, RunStatus};

const BIN: &str = env!("CARGO_BIN_EXE_necrosis-report");

/// The sweep of the issue: 2 activations × 2 seeds × 4 epochs on the embedded digits.
fn sweep_args(out: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        "--activations",
        "relu,relu-softsign",
        "--seeds",
        "2",
        "--epochs",
        "4",
        "--no-report",
        "--threads",
        "2",
        "--out",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(out.to_str().unwrap().to_string());
    args
}

fn spawn(args: &[String]) -> Child {
    Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts")
}

fn run_to_end(args: &[String]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("the binary starts")
}

/// xorshift64*: enough randomness for kill moments, and replayable from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [lo, hi) seconds.
    fn duration(&mut self, lo: f64, hi: f64) -> Duration {
        Duration::from_secs_f64(lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64)
    }
}

fn seed() -> u64 {
    let seed = std::env::var("KILL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("KILL_TEST_SEED={seed}");
    seed | 1
}

/// Every run directory (a folder holding manifest.json) under the sweep folders of `out`.
fn run_dirs(out: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for sweep in fs::read_dir(out).into_iter().flatten().flatten() {
        for run in fs::read_dir(sweep.path()).into_iter().flatten().flatten() {
            if run.path().join("manifest.json").exists() {
                dirs.push(run.path());
            }
        }
    }
    dirs.sort();
    dirs
}

/// What a reader may rely on at any moment: the manifest parses, both parquet files read, and
/// they hold every epoch 0..=epochs_completed, with one neuron row per site neuron and epoch;
/// `inspect` succeeds. Returns the run's manifest.
#[track_caller]
fn check_readable(run: &Path, context: &str) -> Manifest {
    let manifest =
        Manifest::read(run).unwrap_or_else(|e| panic!("{context}: {}: {e:#}", run.display()));
    let completed = manifest.epochs_completed as u32;
    let epochs = EpochRow::read_all(run).unwrap_or_else(|e| panic!("{context}: {e:#}"));
    let neurons = NeuronRow::read_all(run).unwrap_or_else(|e| panic!("{context}: {e:#}"));
    let per_epoch: usize = manifest.sites.iter().map(|s| s.neurons).sum();
    for e in 0..=completed {
        assert_eq!(
            epochs.iter().filter(|r| r.epoch == e).count(),
            1,
            "{context}: {}: epoch {e} in epochs.parquet",
            run.display()
        );
        let rows = neurons.iter().filter(|r| r.epoch == e).count();
        assert_eq!(
            rows,
            per_epoch,
            "{context}: {}: neuron rows of epoch {e}",
            run.display()
        );
    }
    if manifest.status == RunStatus::Complete {
        assert_eq!(
            manifest.epochs_completed,
            manifest.config.epochs,
            "{context}: {}",
            run.display()
        );
    }
    let inspect = run_to_end(&["inspect".to_string(), run.to_str().unwrap().to_string()]);
    assert!(
        inspect.status.success(),
        "{context}: inspect {}: {}",
        run.display(),
        String::from_utf8_lossy(&inspect.stderr)
    );
    manifest
}

/// Every run of `a` equals the run of the same name in `b`, and both hold the same runs.
fn assert_same_records(a: &Path, b: &Path) {
    let names = |out: &Path| -> Vec<String> {
        run_dirs(out)
            .iter()
            .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(names(a), names(b));
    assert_eq!(names(a).len(), 4);
    for (ra, rb) in run_dirs(a).iter().zip(run_dirs(b)) {
        let (ea, na, wa, ma) = reproducible(ra);
        let (eb, nb, wb, mb) = reproducible(&rb);
        assert_eq!(ma, mb, "manifest of {}", ra.display());
        assert_eq!(ea, eb, "epochs.parquet of {}", ra.display());
        assert!(
            na == nb,
            "neurons.parquet of {} differs from the uninterrupted run",
            ra.display()
        );
        assert!(
            wa == wb,
            "model.safetensors of {} differs from the uninterrupted run",
            ra.display()
        );
        assert_eq!(
            fs::read(ra.join("probe_indices.json")).unwrap(),
            fs::read(rb.join("probe_indices.json")).unwrap()
        );
    }
}

/// Files a killed writer may leave: `.NAME.tmp-PID` temporaries and the `.lock`.
fn leftovers(out: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![out.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().unwrap().to_string_lossy().starts_with('.') {
                found.push(p);
            }
        }
    }
    found
}

#[test]
fn sigkill_at_random_moments_then_rerun_gives_the_uninterrupted_records() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference");
    let out = run_to_end(&sweep_args(&reference));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for run in run_dirs(&reference) {
        check_readable(&run, "uninterrupted");
    }

    let mut rng = Rng(seed());
    let started = Instant::now();
    let mut kills = 0;
    let mut round = 0;
    // Rounds of kill-and-rerun until a round completes; new rounds until 10 kills have landed.
    while kills < 10 {
        round += 1;
        let killed = tmp.path().join(format!("killed-{round}"));
        let args = sweep_args(&killed);
        loop {
            let mut child = spawn(&args);
            let wait = rng.duration(0.05, 1.5);
            let deadline = Instant::now() + wait;
            let mut finished = None;
            while Instant::now() < deadline {
                if let Some(status) = child.try_wait().unwrap() {
                    finished = Some(status);
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let context = match finished {
                Some(status) => {
                    let output = child.wait_with_output().unwrap();
                    assert!(
                        status.success(),
                        "round {round}: rerun failed: {}",
                        String::from_utf8_lossy(&output.stderr)
                    );
                    format!("round {round}, completed")
                }
                None => {
                    child.kill().unwrap(); // SIGKILL
                    child.wait().unwrap();
                    kills += 1;
                    format!("round {round}, kill {kills} after {wait:?}")
                }
            };
            for run in run_dirs(&killed) {
                check_readable(&run, &context);
            }
            if finished.is_some() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(240),
                "the killed sweep makes no progress"
            );
        }
        // The command is done: every run is finished and equals the uninterrupted one.
        let again = run_to_end(&args);
        assert!(again.status.success());
        assert!(
            String::from_utf8_lossy(&again.stdout).contains("0 complete, 4 skipped"),
            "{}",
            String::from_utf8_lossy(&again.stdout)
        );
        assert_same_records(&killed, &reference);
        // A kill can leave a temporary of an atomic write, and the `.lock` of a run killed
        // between its last write and the lock's release (complete runs are skipped without
        // taking their lock); such a lock names a dead process, so it excludes nobody.
        let left: Vec<PathBuf> = leftovers(&killed)
            .into_iter()
            .filter(|p| !p.to_string_lossy().contains(".tmp-"))
            .filter(|p| {
                let pid = fs::read_to_string(p).unwrap_or_default();
                // Kept: anything but a lock, and a lock whose process is alive.
                !p.ends_with(".lock") || Path::new(&format!("/proc/{}", pid.trim())).exists()
            })
            .collect();
        assert!(left.is_empty(), "files left behind: {left:?}");
    }
    eprintln!("{kills} kills in {round} rounds, {:?}", started.elapsed());
}

/// Waits until some run of `out` has completed at least one epoch.
fn wait_for_an_epoch(out: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the sweep ended before the interrupt"
        );
        let done = run_dirs(out)
            .iter()
            .any(|d| Manifest::read(d).is_ok_and(|m| m.epochs_completed >= 1));
        if done {
            return;
        }
        assert!(Instant::now() < deadline, "no epoch completed in 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn sigint_stops_with_130_and_a_resume_hint_and_resume_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("runs");
    let mut args = sweep_args(&out);
    // One long run, so that the interrupt lands during training.
    args.splice(2..3, ["relu".to_string()]);
    args.splice(4..5, ["1".to_string()]);
    args.splice(6..7, ["12".to_string()]);
    let mut child = spawn(&args);
    wait_for_an_epoch(&out, &mut child);
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("necrosis-report resume"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let run = run_dirs(&out).pop().expect("a run directory");
    let manifest = check_readable(&run, "after SIGINT");
    assert_eq!(manifest.status, RunStatus::Running);
    assert!(
        manifest.epochs_completed >= 1 && manifest.epochs_completed < 12,
        "{}",
        manifest.epochs_completed
    );
    assert!(!run.join(".lock").exists(), "the lock is released");

    // The hint's command finishes the run.
    let hint = stderr
        .lines()
        .find(|l| l.contains("necrosis-report resume"))
        .unwrap();
    let dir = hint.split("necrosis-report resume ").nth(1).unwrap().trim();
    let resumed = run_to_end(&[
        "resume".to_string(),
        dir.to_string(),
        "--threads".to_string(),
        "2".to_string(),
    ]);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let manifest = check_readable(&run, "after resume");
    assert_eq!(manifest.status, RunStatus::Complete);
    assert_eq!(manifest.epochs_completed, 12);
}

#[test]
fn two_processes_sharing_an_output_folder_both_finish_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("shared");
    let args = sweep_args(&out);
    let (a, b) = (spawn(&args), spawn(&args));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    for (name, o) in [("first", &a), ("second", &b)] {
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{name} process: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // Each run was trained by one process; the other skipped it (or found it complete).
    let runs = run_dirs(&out);
    assert_eq!(runs.len(), 4);
    for run in &runs {
        let m = check_readable(run, "after two concurrent sweeps");
        assert!(
            matches!(m.status, RunStatus::Complete | RunStatus::Diverged),
            "{}: {:?}",
            run.display(),
            m.status
        );
        assert!(!run.join(".lock").exists());
    }
    let reference = tmp.path().join("reference");
    assert!(run_to_end(&sweep_args(&reference)).status.success());
    assert_same_records(&out, &reference);

    // A lock left by a killed process is taken over by the next one.
    let again = tmp.path().join("stale");
    let mut child = spawn(&sweep_args(&again));
    wait_for_an_epoch(&again, &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        run_dirs(&again).iter().any(|r| r.join(".lock").exists()),
        "a killed process leaves its lock"
    );
    let (c, d) = (spawn(&sweep_args(&again)), spawn(&sweep_args(&again)));
    let (c, d) = (c.wait_with_output().unwrap(), d.wait_with_output().unwrap());
    assert!(
        c.status.success() && d.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&c.stderr),
        String::from_utf8_lossy(&d.stderr)
    );
    assert_same_records(&again, &reference);
}
