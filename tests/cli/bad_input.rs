//! Bad input, end to end: every malformed dataset file, corrupt run record and nonsense flag is
//! fed to the real `necrosis-report` binary, which must exit non-zero with one clear `error:`
//! message naming the input and the problem, never panic, and never leave output that looks
//! complete (a manifest with status `complete` or a report that was not there before).
//!
//! The data loaders have their own unit tests; these check what a user sees.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::tiny_complete_run;
use flate2::write::GzEncoder;
use flate2::Compression;

const BIN: &str = env!("CARGO_BIN_EXE_necrosis-report");

/// `run` with flags that keep it tiny, plus `extra`; a flag `extra` sets is not set twice.
fn tiny_args(extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec!["run".into()];
    let pairs = [
        ("--epochs", "1"),
        ("--seeds", "1"),
        ("--activations", "relu"),
        ("--train-limit", "64"),
        ("--probe-size", "32"),
        ("--threads", "1"),
    ];
    for (flag, value) in pairs {
        if !extra
            .iter()
            .any(|a| *a == flag || a.starts_with(&format!("{flag}=")))
        {
            args.push(flag.into());
            args.push(value.into());
        }
    }
    if !extra.contains(&"--no-report") {
        args.push("--no-report".into());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn run_in(cwd: &Path, args: &[String]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the binary starts")
}

/// Every `manifest.json` under `dir` whose status is `complete`, and every `index.html`.
fn complete_looking_outputs(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "manifest.json") {
                let text = fs::read_to_string(&path).unwrap_or_default();
                if text.contains(r#""status": "complete""#)
                    || text.contains(r#""status":"complete""#)
                {
                    found.push(path);
                }
            } else if path.file_name().is_some_and(|n| n == "index.html") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Runs `args` in `cwd` and checks the failure: non-zero exit, exactly one `error:` line (the
/// message may continue on indented lines), every `expect` substring in stderr, no panic, and no
/// new output that looks complete.
#[track_caller]
fn assert_fails(cwd: &Path, args: &[String], expect: &[&str]) -> String {
    let before = complete_looking_outputs(cwd);
    let out = run_in(cwd, args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let context = format!("args {args:?}\n--- stderr ---\n{stderr}--- stdout ---\n{stdout}");
    assert!(!out.status.success(), "expected a failure: {context}");
    assert!(!stderr.contains("panicked"), "panic: {context}");
    assert!(!stderr.contains("RUST_BACKTRACE"), "panic: {context}");
    let error_lines = stderr.lines().filter(|l| l.starts_with("error:")).count();
    assert_eq!(error_lines, 1, "expected one error message: {context}");
    for e in expect {
        assert!(stderr.contains(e), "stderr lacks {e:?}: {context}");
    }
    let after = complete_looking_outputs(cwd);
    assert_eq!(before, after, "new output that looks complete: {context}");
    if std::env::var_os("BAD_INPUT_SHOW").is_some() {
        eprintln!(
            "{:?}\n  {}",
            &args[..args.len().min(2)],
            stderr.trim_end().replace('\n', "\n  ")
        );
    }
    stderr
}

fn run_fails(extra: &[&str], expect: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut args = tiny_args(extra);
    args.extend(["--out".to_string(), "out".to_string()]);
    assert_fails(dir.path(), &args, expect)
}

// ---------------------------------------------------------------- IDX (MNIST layout)

fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut bytes = magic.to_be_bytes().to_vec();
    for d in dims {
        bytes.extend(d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A valid MNIST-layout folder: 80 training and 20 test images of 8×8, labels 0..10.
fn write_idx_set(dir: &Path) {
    for (prefix, n) in [("train", 80u32), ("t10k", 20u32)] {
        let pixels: Vec<u8> = (0..n * 64).map(|i| (i * 7 % 256) as u8).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        fs::write(
            dir.join(format!("{prefix}-images-idx3-ubyte")),
            idx(0x803, &[n, 8, 8], &pixels),
        )
        .unwrap();
        fs::write(
            dir.join(format!("{prefix}-labels-idx1-ubyte")),
            idx(0x801, &[n], &labels),
        )
        .unwrap();
    }
}

/// Runs `--dataset mnist` on a valid IDX folder after `spoil` has damaged it.
fn idx_fails(spoil: impl FnOnce(&Path), expect: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fs::create_dir(&data).unwrap();
    write_idx_set(&data);
    spoil(&data);
    let args = tiny_args(&["--dataset", "mnist", "--data-dir", "data", "--out", "out"]);
    assert_fails(dir.path(), &args, expect)
}

#[test]
fn valid_idx_set_runs() {
    // The fixture itself is fine: the failures below come from the damage alone.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fs::create_dir(&data).unwrap();
    write_idx_set(&data);
    let out = run_in(
        dir.path(),
        &tiny_args(&["--dataset", "mnist", "--data-dir", "data", "--out", "out"]),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(complete_looking_outputs(dir.path()).len(), 1);
}

#[test]
fn idx_wrong_magic() {
    idx_fails(
        |d| {
            let p = d.join("train-images-idx3-ubyte");
            let mut b = fs::read(&p).unwrap();
            b[3] = 0x04;
            fs::write(p, b).unwrap();
        },
        &["train-images-idx3-ubyte", "magic"],
    );
}

#[test]
fn idx_truncated_header() {
    idx_fails(
        |d| {
            fs::write(
                d.join("t10k-images-idx3-ubyte"),
                &idx(0x803, &[20], &[])[..7],
            )
            .unwrap()
        },
        &["t10k-images-idx3-ubyte", "truncated header"],
    );
}

#[test]
fn idx_truncated_data() {
    idx_fails(
        |d| {
            let p = d.join("train-images-idx3-ubyte");
            let b = fs::read(&p).unwrap();
            fs::write(p, &b[..b.len() - 100]).unwrap();
        },
        &["train-images-idx3-ubyte", "truncated data"],
    );
}

#[test]
fn idx_trailing_bytes() {
    idx_fails(
        |d| {
            let p = d.join("train-labels-idx1-ubyte");
            let mut b = fs::read(&p).unwrap();
            b.extend([0, 0, 0]);
            fs::write(p, b).unwrap();
        },
        &["train-labels-idx1-ubyte", "trailing bytes"],
    );
}

#[test]
fn idx_image_label_count_mismatch() {
    idx_fails(
        |d| {
            let labels: Vec<u8> = (0..79).map(|i| (i % 10) as u8).collect();
            fs::write(
                d.join("train-labels-idx1-ubyte"),
                idx(0x801, &[79], &labels),
            )
            .unwrap();
        },
        &["train-images-idx3-ubyte", "80 images", "79 labels"],
    );
}

#[test]
fn idx_corrupt_gzip() {
    idx_fails(
        |d| {
            let p = d.join("train-images-idx3-ubyte");
            let mut gz = gzip(&fs::read(&p).unwrap());
            fs::remove_file(&p).unwrap();
            let mid = gz.len() / 2;
            for b in &mut gz[12..mid] {
                *b ^= 0x5a;
            }
            fs::write(d.join("train-images-idx3-ubyte.gz"), gz).unwrap();
        },
        &["train-images-idx3-ubyte.gz", "gzip"],
    );
}

#[test]
fn idx_not_gzip_at_all() {
    idx_fails(
        |d| {
            let p = d.join("t10k-labels-idx1-ubyte");
            fs::remove_file(&p).unwrap();
            fs::write(
                d.join("t10k-labels-idx1-ubyte.gz"),
                b"this is not a gzip stream",
            )
            .unwrap();
        },
        &["t10k-labels-idx1-ubyte.gz", "gzip"],
    );
}

#[test]
fn idx_zero_images() {
    idx_fails(
        |d| {
            fs::write(
                d.join("t10k-images-idx3-ubyte"),
                idx(0x803, &[0, 8, 8], &[]),
            )
            .unwrap();
            fs::write(d.join("t10k-labels-idx1-ubyte"), idx(0x801, &[0], &[])).unwrap();
        },
        &["t10k-images-idx3-ubyte", "zero samples"],
    );
}

#[test]
fn idx_label_out_of_range() {
    idx_fails(
        |d| {
            let mut labels: Vec<u8> = (0..20).map(|i| (i % 10) as u8).collect();
            labels[5] = 42;
            fs::write(d.join("t10k-labels-idx1-ubyte"), idx(0x801, &[20], &labels)).unwrap();
        },
        &["t10k-labels-idx1-ubyte", "label 42", "out of range"],
    );
}

#[test]
fn idx_missing_file() {
    idx_fails(
        |d| fs::remove_file(d.join("t10k-labels-idx1-ubyte")).unwrap(),
        &["missing file", "t10k-labels-idx1-ubyte"],
    );
}

#[test]
fn idx_huge_dimensions() {
    idx_fails(
        |d| {
            fs::write(
                d.join("train-images-idx3-ubyte"),
                idx(0x803, &[u32::MAX, u32::MAX, u32::MAX], &[1, 2, 3]),
            )
            .unwrap()
        },
        &["train-images-idx3-ubyte"],
    );
}

// ---------------------------------------------------------------- CIFAR binary

const CIFAR10_RECORD: usize = 1 + 3072;
const CIFAR100_RECORD: usize = 2 + 3072;

fn cifar10_file(records: usize) -> Vec<u8> {
    let mut b = vec![0u8; records * CIFAR10_RECORD];
    for r in 0..records {
        b[r * CIFAR10_RECORD] = (r % 10) as u8;
    }
    b
}

fn write_cifar10_set(dir: &Path) {
    for i in 1..=5 {
        fs::write(dir.join(format!("data_batch_{i}.bin")), cifar10_file(4)).unwrap();
    }
    fs::write(dir.join("test_batch.bin"), cifar10_file(3)).unwrap();
}

fn cifar_fails(dataset: &str, build: impl FnOnce(&Path), expect: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fs::create_dir(&data).unwrap();
    build(&data);
    let args = tiny_args(&[
        "--dataset",
        dataset,
        "--data-dir",
        "data",
        "--out",
        "out",
        "--arch",
        "cifar",
    ]);
    assert_fails(dir.path(), &args, expect)
}

#[test]
fn cifar10_file_of_the_wrong_length() {
    cifar_fails(
        "cifar10",
        |d| {
            write_cifar10_set(d);
            let mut b = cifar10_file(4);
            b.truncate(b.len() - 1);
            fs::write(d.join("data_batch_2.bin"), b).unwrap();
        },
        &[
            "data_batch_2.bin",
            "not a positive multiple of the record size 3073",
        ],
    );
}

#[test]
fn cifar10_empty_file() {
    cifar_fails(
        "cifar10",
        |d| {
            write_cifar10_set(d);
            fs::write(d.join("test_batch.bin"), b"").unwrap();
        },
        &["test_batch.bin", "length 0 bytes"],
    );
}

#[test]
fn cifar100_file_of_the_cifar10_record_length() {
    // 10 CIFAR-10 records (30 730 bytes) are not a whole number of CIFAR-100 records.
    cifar_fails(
        "cifar100",
        |d| {
            fs::write(d.join("train.bin"), cifar10_file(10)).unwrap();
            fs::write(d.join("test.bin"), vec![0u8; 2 * CIFAR100_RECORD]).unwrap();
        },
        &["train.bin", "record size 3074"],
    );
}

#[test]
fn cifar10_missing_batch() {
    cifar_fails(
        "cifar10",
        |d| {
            write_cifar10_set(d);
            fs::remove_file(d.join("data_batch_3.bin")).unwrap();
        },
        &["missing file", "data_batch_3.bin"],
    );
}

#[test]
fn cifar10_label_out_of_range() {
    cifar_fails(
        "cifar10",
        |d| {
            write_cifar10_set(d);
            let mut b = cifar10_file(3);
            b[CIFAR10_RECORD] = 200;
            fs::write(d.join("test_batch.bin"), b).unwrap();
        },
        &["test_batch.bin", "label 200", "out of range"],
    );
}

// ---------------------------------------------------------------- image folders

fn write_png(path: &Path, shade: u8) {
    image::RgbImage::from_pixel(6, 6, image::Rgb([shade, 255 - shade, shade / 2]))
        .save(path)
        .unwrap();
}

/// Two classes `cat` and `dog` of six PNGs each.
fn write_folder_set(dir: &Path) {
    for class in ["cat", "dog"] {
        fs::create_dir_all(dir.join(class)).unwrap();
        for i in 0..6u8 {
            write_png(&dir.join(class).join(format!("{i}.png")), i * 40);
        }
    }
}

fn folder_fails(spoil: impl FnOnce(&Path), expect: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fs::create_dir(&data).unwrap();
    write_folder_set(&data);
    spoil(&data);
    let args = tiny_args(&[
        "--dataset",
        "folder",
        "--data-dir",
        "data",
        "--image-size",
        "8",
        "--out",
        "out",
    ]);
    assert_fails(dir.path(), &args, expect)
}

#[test]
fn valid_folder_set_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fs::create_dir(&data).unwrap();
    write_folder_set(&data);
    let args = tiny_args(&[
        "--dataset",
        "folder",
        "--data-dir",
        "data",
        "--image-size",
        "8",
        "--out",
        "out",
        "--probe-size",
        "4",
    ]);
    let out = run_in(dir.path(), &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn folder_with_a_non_image_file() {
    folder_fails(
        |d| fs::write(d.join("dog").join("notes.txt"), "hello").unwrap(),
        &["not an image", "notes.txt"],
    );
}

#[test]
fn folder_with_an_empty_class() {
    folder_fails(
        |d| fs::create_dir(d.join("emu")).unwrap(),
        &["emu", "empty class folder"],
    );
}

#[test]
fn folder_with_a_corrupt_png() {
    folder_fails(
        |d| {
            fs::write(
                d.join("cat").join("3.png"),
                b"\x89PNG\r\n\x1a\n garbage that is no chunk",
            )
            .unwrap()
        },
        &["3.png", "cannot decode image"],
    );
}

#[test]
fn folder_with_a_truncated_png() {
    folder_fails(
        |d| {
            let p = d.join("dog").join("2.png");
            let b = fs::read(&p).unwrap();
            fs::write(&p, &b[..b.len() / 2]).unwrap();
        },
        &["2.png", "cannot decode image"],
    );
}

#[test]
fn folder_without_class_folders() {
    folder_fails(
        |d| {
            fs::remove_dir_all(d.join("cat")).unwrap();
            fs::remove_dir_all(d.join("dog")).unwrap();
        },
        &["data", "no class folders"],
    );
}

#[test]
fn folder_with_a_stray_file_beside_the_classes() {
    folder_fails(
        |d| fs::write(d.join("README"), "x").unwrap(),
        &["README", "not a class folder"],
    );
}

// ---------------------------------------------------------------- run records

/// Like [`complete_run`] but with the manifest turned back to `running` after epoch 1 of 2, as
/// a kill would leave it (the checkpoint is the final one, which `resume` accepts).
fn interrupted_run() -> (tempfile::TempDir, PathBuf) {
    let (dir, run) = tiny_complete_run();
    edit_manifest(&run, |m| {
        m["status"] = "running".into();
        m["ended_at"] = serde_json::Value::Null;
    });
    (dir, run)
}

/// Rewrites the run's manifest.json after `edit` and returns the text written.
fn edit_manifest(run: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let path = run.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut m);
    let text = serde_json::to_string_pretty(&m).unwrap();
    fs::write(&path, &text).unwrap();
    text
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// `inspect`, `resume` and `analyze` on the damaged run must all fail naming `expect`.
fn all_readers_fail(tmp: &Path, run: &Path, expect: &[&str]) {
    let run = run.to_str().unwrap();
    assert_fails(tmp, &args(&["inspect", run]), expect);
    assert_fails(tmp, &args(&["resume", run, "--threads", "1"]), expect);
    assert_fails(tmp, &args(&["analyze", run, "--out", "report"]), expect);
    assert!(!tmp.join("report/index.html").exists());
}

#[test]
fn corrupt_manifest_json() {
    let (tmp, run) = interrupted_run();
    fs::write(
        run.join("manifest.json"),
        "{\"format_version\": 1, \"run_id\": ",
    )
    .unwrap();
    all_readers_fail(tmp.path(), &run, &["manifest.json", "JSON"]);
}

#[test]
fn manifest_that_is_not_a_manifest() {
    let (tmp, run) = interrupted_run();
    fs::write(
        run.join("manifest.json"),
        r#"{"format_version": 1, "status": "complete"}"#,
    )
    .unwrap();
    all_readers_fail(tmp.path(), &run, &["manifest.json"]);
}

#[test]
fn manifest_from_a_future_format_version() {
    let (tmp, run) = interrupted_run();
    let path = run.join("manifest.json");
    let text = fs::read_to_string(&path)
        .unwrap()
        .replace("\"format_version\": 2", "\"format_version\": 7");
    assert!(text.contains("\"format_version\": 7"));
    fs::write(&path, text).unwrap();
    all_readers_fail(
        tmp.path(),
        &run,
        &["manifest.json", "format_version 7", "not supported"],
    );
}

#[test]
fn corrupt_neurons_parquet() {
    let (tmp, run) = interrupted_run();
    let path = run.join("neurons.parquet");
    let b = fs::read(&path).unwrap();
    fs::write(&path, &b[..b.len() / 2]).unwrap();
    all_readers_fail(tmp.path(), &run, &["neurons.parquet"]);
}

#[test]
fn neurons_parquet_of_garbage_with_valid_magic() {
    let (tmp, run) = interrupted_run();
    let mut junk = b"PAR1".to_vec();
    junk.extend((0..4000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    junk.extend(b"PAR1");
    fs::write(run.join("neurons.parquet"), junk).unwrap();
    all_readers_fail(tmp.path(), &run, &["neurons.parquet"]);
}

#[test]
fn run_directory_missing_epochs_parquet() {
    let (tmp, run) = interrupted_run();
    fs::remove_file(run.join("epochs.parquet")).unwrap();
    all_readers_fail(tmp.path(), &run, &["epochs.parquet"]);
}

#[test]
fn run_directory_missing_the_manifest() {
    let (tmp, run) = tiny_complete_run();
    fs::remove_file(run.join("manifest.json")).unwrap();
    let r = run.to_str().unwrap();
    assert_fails(tmp.path(), &args(&["inspect", r]), &[r, "manifest.json"]);
    assert_fails(tmp.path(), &args(&["resume", r]), &[r, "no run directory"]);
    assert_fails(
        tmp.path(),
        &args(&["analyze", r, "--out", "report"]),
        &[r, "no run directory"],
    );
}

#[test]
fn manifest_with_a_number_beyond_f32_on_resume() {
    let (tmp, run) = interrupted_run();
    let path = run.join("manifest.json");
    let text = edit_manifest(&run, |m| {
        m["config"]["optimizer"]["momentum"] = serde_json::json!(1e308)
    });
    let r = run.to_str().unwrap();
    assert_fails(tmp.path(), &args(&["resume", r]), &["momentum", "inf"]);
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        text,
        "the refused manifest is left as it was"
    );
}

#[test]
fn corrupt_checkpoint_on_resume() {
    let (tmp, run) = interrupted_run();
    let path = run.join("checkpoint/state.safetensors");
    let b = fs::read(&path).unwrap();
    fs::write(&path, &b[..b.len() / 3]).unwrap();
    let r = run.to_str().unwrap();
    assert_fails(tmp.path(), &args(&["resume", r]), &["state.safetensors"]);
}

#[test]
fn checkpoint_with_an_optimizer_tensor_of_the_wrong_length_on_resume() {
    // A checkpoint that parses but whose momentum buffer is one value short (a hand-edited or
    // foreign file) panicked in copy_from_slice before.
    let (tmp, run) = interrupted_run();
    let path = run.join("checkpoint/state.safetensors");
    let checkpoint = necrosis::records::checkpoint::read_safetensors(&path).unwrap();
    let name = checkpoint
        .tensors
        .keys()
        .find(|n| n.starts_with("optimizer.first."))
        .expect("SGD with momentum keeps a first moment")
        .clone();
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = checkpoint
        .tensors
        .into_iter()
        .map(|(n, (shape, values))| (n, shape, values))
        .collect();
    for (n, shape, values) in &mut tensors {
        if *n == name {
            values.pop();
            *shape = vec![values.len()];
        }
    }
    let borrowed: Vec<(String, Vec<usize>, &[f32])> = tensors
        .iter()
        .map(|(n, shape, values)| (n.clone(), shape.clone(), values.as_slice()))
        .collect();
    necrosis::records::checkpoint::write_safetensors(&path, &borrowed, checkpoint.metadata)
        .unwrap();
    let r = run.to_str().unwrap();
    assert_fails(
        tmp.path(),
        &args(&["resume", r]),
        &["state.safetensors", &name, "values"],
    );
}

#[test]
fn a_run_with_another_stored_configuration_is_refused_and_left_as_it_was() {
    // The stored run differs from the request in one setting: the request fails, and the stored
    // run keeps its status (it was marked failed before, losing a resumable run).
    let (tmp, run) = interrupted_run();
    let path = run.join("manifest.json");
    let text = edit_manifest(&run, |m| {
        m["config"]["optimizer"]["weight_decay"] = serde_json::json!(0.5)
    });
    let out = run_in(
        tmp.path(),
        &tiny_args(&[
            "--epochs",
            "2",
            "--out",
            tmp.path().join("runs").to_str().unwrap(),
        ]),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("another configuration"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        text,
        "the stored run is left as it was"
    );
}

#[test]
fn resume_of_a_folder_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    assert_fails(
        dir.path(),
        &args(&["resume", "no/such/sweep"]),
        &["no/such/sweep"],
    );
    assert_fails(
        dir.path(),
        &args(&["inspect", "no/such/run"]),
        &["no/such/run"],
    );
    assert_fails(
        dir.path(),
        &args(&["analyze", "no/such/sweep", "--out", "r"]),
        &["no/such/sweep"],
    );
}

// ---------------------------------------------------------------- names and numbers

#[test]
fn unknown_activation() {
    run_fails(
        &["--activations", "relu,reluu"],
        &["--activations", "reluu", "valid names"],
    );
}

#[test]
fn unknown_dataset() {
    run_fails(
        &["--dataset", "imagenet"],
        &["--dataset", "imagenet", "valid names"],
    );
}

#[test]
fn unknown_arch_layer() {
    run_fails(
        &["--arch", "conv:8:3,act,blorp:2,fc:10"],
        &["--arch", "blorp"],
    );
}

#[test]
fn arch_with_the_wrong_number_of_outputs() {
    run_fails(
        &["--arch", "conv:8:3,act,fc:7"],
        &["--arch", "7 outputs", "10 classes"],
    );
}

#[test]
fn zero_batch_size() {
    run_fails(&["--batch-size", "0"], &["--batch-size", "at least 1"]);
}

#[test]
fn negative_learning_rate() {
    run_fails(&["--lr", "-1"], &["--lr", "positive", "-1"]);
    run_fails(&["--lr=0"], &["--lr", "positive"]);
    run_fails(&["--lr", "nan"], &["--lr", "positive"]);
}

#[test]
fn zero_epochs() {
    run_fails(&["--epochs", "0"], &["--epochs", "at least 1"]);
}

#[test]
fn probe_larger_than_the_dataset() {
    run_fails(
        &["--probe-size", "65"],
        &["--probe-size 65", "larger than the training split", "64"],
    );
    run_fails(&["--probe-size", "0"], &["--probe-size", "at least 1"]);
}

#[test]
fn zero_threads() {
    run_fails(&["--threads", "0"], &["--threads", "at least 1"]);
}

#[test]
fn zero_train_limit() {
    run_fails(&["--train-limit", "0"], &["--train-limit", "at least 1"]);
}

#[test]
fn zero_seeds() {
    run_fails(&["--seeds", "0"], &["--seeds", "at least 1"]);
}

#[test]
fn bad_momentum_and_weight_decay() {
    run_fails(&["--momentum", "-0.5"], &["--momentum"]);
    run_fails(&["--weight-decay", "-1"], &["--weight-decay"]);
    run_fails(&["--schedule", "step:0:0.5"], &["--schedule"]);
    run_fails(&["--optimizer", "rmsprop"], &["--optimizer", "rmsprop"]);
}

#[test]
fn bad_initialisation_augmentation_and_layers() {
    run_fails(&["--init", "kaiming"], &["--init", "kaiming", "he-uniform"]);
    run_fails(&["--bias-init", "NaN"], &["--bias-init", "NaN"]);
    run_fails(&["--output-init", "glorot"], &["--output-init", "glorot"]);
    run_fails(&["--augment", "crop:x"], &["--augment", "crop:x"]);
    run_fails(
        &["--intervention", "redo:0.1"],
        &["--intervention", "redo:0.1", "redo:TAU:EVERY"],
    );
    run_fails(
        &["--intervention", "cbp:1.5:100"],
        &["--intervention", "RATE must lie in [0, 1]"],
    );
    run_fails(
        &["--arch", "conv:4:3,act,dropout:1.5,fc:10"],
        &["--arch", "dropout:1.5", "[0, 1)"],
    );
    run_fails(
        &["--arch", "conv:4:3,fc:8,res:8,fc:10"],
        &["--arch", "res:8", "cannot follow a dense layer"],
    );
    run_fails(
        &["--dataset", "synthetic", "--synthetic-channels", "9"],
        &["--synthetic-channels", "9"],
    );
}

#[test]
fn missing_data_dir() {
    run_fails(
        &["--dataset", "mnist"],
        &["--data-dir", "mnist", "required"],
    );
    run_fails(
        &["--dataset", "cifar10", "--data-dir", "nowhere"],
        &["--data-dir", "nowhere", "no such folder"],
    );
}

#[test]
fn name_that_escapes_the_output_folder() {
    run_fails(
        &["--name", "../escape"],
        &["--name", "../escape", "plain folder name"],
    );
    run_fails(&["--name", ".."], &["--name", "plain folder name"]);
}

#[test]
fn absolute_name() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("elsewhere");
    let target = target.to_str().unwrap();
    run_fails(
        &["--name", target],
        &["--name", target, "plain folder name"],
    );
    assert!(!dir.path().join("elsewhere").exists());
}

#[test]
fn analyze_with_a_bad_target() {
    let (tmp, run) = tiny_complete_run();
    let r = run.to_str().unwrap();
    assert_fails(
        tmp.path(),
        &args(&["analyze", r, "--out", "report", "--target-acc", "1.5"]),
        &["--target-acc"],
    );
}

#[test]
fn analyze_with_a_bad_contrast() {
    let (tmp, run) = tiny_complete_run();
    let r = run.to_str().unwrap();
    assert_fails(
        tmp.path(),
        &args(&[
            "analyze",
            r,
            "--out",
            "report",
            "--contrast",
            "activation=relu",
        ]),
        &["--contrast", "expected 'KEY=VALUE,... vs KEY=VALUE,...'"],
    );
    assert_fails(
        tmp.path(),
        &args(&[
            "analyze",
            r,
            "--out",
            "report",
            "--contrast",
            "activation=relu vs batch_size=32",
        ]),
        &["'batch_size' is not a setting that varies among the runs"],
    );
}
