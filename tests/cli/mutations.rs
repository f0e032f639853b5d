//! Bounded, deterministic fuzzing of the run-record readers: thousands of mutations of a valid
//! manifest.json and of valid parquet files, each read by the trainer's readers (what `resume`
//! uses) and the analysis crate's (what `analyze` and `inspect` use). Each must return a result
//! or an error, never panic. (The IDX and CIFAR parsers have cargo-fuzz targets in fuzz/.)

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use crate::common::tiny_complete_run;
use serde_json::Value;

/// splitmix64: deterministic, so a failing case number always names the same input.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A byte-level mutation: flips, deletions, duplications, insertions, truncation.
fn mutate_bytes(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        if b.is_empty() {
            b.push(rng.next() as u8);
        }
        let at = rng.below(b.len());
        match rng.below(6) {
            0 => b[at] ^= 1 << rng.below(8),
            1 => b[at] = rng.next() as u8,
            2 => {
                let end = (at + 1 + rng.below(64)).min(b.len());
                b.drain(at..end);
            }
            3 => {
                let end = (at + 1 + rng.below(64)).min(b.len());
                let piece = b[at..end].to_vec();
                let to = rng.below(b.len());
                b.splice(to..to, piece);
            }
            4 => {
                let pick = [
                    b"{".as_slice(),
                    b"}",
                    b"[",
                    b"]",
                    b"\"",
                    b",",
                    b":",
                    b"-",
                    b"1e999",
                    b"null",
                    b"\\u0000",
                    b"18446744073709551616",
                ];
                let piece = pick[rng.below(pick.len())];
                b.splice(at..at, piece.iter().copied());
            }
            _ => b.truncate(at),
        }
    }
    b
}

/// Values that stress a deserialiser: wrong types, extremes, empties.
fn odd_value(rng: &mut Rng) -> Value {
    match rng.below(14) {
        0 => Value::Null,
        1 => Value::from(-1),
        2 => Value::from(u64::MAX),
        3 => Value::from(i64::MIN),
        4 => serde_json::json!(1e308),
        5 => Value::from(0.5),
        6 => Value::from(""),
        7 => Value::from("running"),
        8 => Value::from("complete"),
        9 => serde_json::json!([]),
        10 => serde_json::json!({}),
        11 => serde_json::json!([1, 2, 3]),
        12 => Value::from(true),
        _ => Value::from("x".repeat(rng.below(100))),
    }
}

/// A structural mutation: some value somewhere in the tree replaced, removed or added.
fn mutate_json(rng: &mut Rng, value: &mut Value) {
    let mut node = value;
    loop {
        let descend = rng.below(3) != 0;
        let next = match node {
            Value::Object(map) if !map.is_empty() && descend => {
                let key = map.keys().nth(rng.below(map.len())).unwrap().clone();
                Some(key)
            }
            Value::Array(items) if !items.is_empty() && descend => {
                Some(rng.below(items.len()).to_string())
            }
            _ => None,
        };
        match next {
            Some(key) => {
                node = match node {
                    Value::Object(map) => map.get_mut(&key).unwrap(),
                    Value::Array(items) => &mut items[key.parse::<usize>().unwrap()],
                    _ => unreachable!(),
                }
            }
            None => break,
        }
    }
    match (rng.below(4), &mut *node) {
        (0, Value::Object(map)) if !map.is_empty() => {
            let key = map.keys().nth(rng.below(map.len())).unwrap().clone();
            map.remove(&key);
        }
        (1, Value::Object(map)) => {
            map.insert("extra".into(), odd_value(rng));
        }
        (1, Value::Array(items)) => items.push(odd_value(rng)),
        _ => *node = odd_value(rng),
    }
}

#[track_caller]
fn no_panic<T>(case: usize, what: &str, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
            panic!("case {case}: {what} panicked: {msg:?}");
        }
    }
}

#[test]
fn mutated_manifests_never_panic_either_reader() {
    let (_tmp, run) = tiny_complete_run();
    let text = fs::read_to_string(run.join("manifest.json")).unwrap();
    let tree: Value = serde_json::from_str(&text).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let path = scratch.path().join("manifest.json");
    let mut rng = Rng(0x6e65_6372_6f73_6973);
    let (mut trainer_ok, mut round_trip_failures) = (0, 0);
    const CASES: usize = 20_000;
    for case in 0..CASES {
        let bytes = if case % 2 == 0 {
            mutate_bytes(&mut rng, text.as_bytes())
        } else {
            let mut t = tree.clone();
            for _ in 0..1 + rng.below(3) {
                mutate_json(&mut rng, &mut t);
            }
            serde_json::to_vec_pretty(&t).unwrap()
        };
        let as_text = String::from_utf8_lossy(&bytes);
        let parsed = no_panic(case, "Manifest::parse", || {
            necrosis::records::Manifest::parse(&as_text, &path)
        });
        if let Ok(manifest) = parsed {
            trainer_ok += 1;
            let json = serde_json::to_string(&manifest).unwrap();
            // Not asserted: an f32 field given 1e308 parses as infinity and is written back as
            // null, which no longer reads (reported; counted here).
            if necrosis::records::Manifest::parse(&json, &path).is_err() {
                round_trip_failures += 1;
            }
        }
    }
    eprintln!(
        "{CASES} mutated manifests: {trainer_ok} accepted ({round_trip_failures} not re-readable once written)"
    );
    assert!(
        trainer_ok > 100 && trainer_ok < CASES,
        "the mutations should both keep and break manifests"
    );
}

/// Mutates `file` of a copy of `run` `cases` times and reads it with every reader.
fn mutate_parquet(run: &Path, file: &str, cases: usize, seed: u64, analysis: bool) {
    let original = fs::read(run.join(file)).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let copy = scratch.path().join("digits-relu-lr0.05-s0");
    fs::create_dir(&copy).unwrap();
    for name in [
        "manifest.json",
        "epochs.parquet",
        "neurons.parquet",
        "probe_indices.json",
    ] {
        fs::copy(run.join(name), copy.join(name)).unwrap();
    }
    let mut rng = Rng(seed);
    let mut readable = 0;
    for case in 0..cases {
        // Keep the footer magic most of the time so that the mutation reaches the decoder.
        let mut bytes = mutate_bytes(&mut rng, &original);
        if case % 4 != 0 && bytes.len() > 8 && original.len() > 8 {
            let n = bytes.len();
            bytes[n - 4..].copy_from_slice(b"PAR1");
        }
        fs::write(copy.join(file), &bytes).unwrap();
        let ok = if file == "epochs.parquet" {
            no_panic(case, "EpochRow::read_all", || {
                necrosis::records::tables::EpochRow::read_all(&copy)
            })
            .is_ok()
        } else {
            no_panic(case, "NeuronRow::read_all", || {
                necrosis::records::tables::NeuronRow::read_all(&copy)
            })
            .is_ok()
        };
        readable += ok as usize;
        if analysis {
            // What `inspect` and `analyze` read.
            let _ = no_panic(case, "analysis inspect_run", || {
                necrosis_analysis::inspect_run(&copy)
            });
            let _ = no_panic(case, "analysis load_runs", || {
                necrosis_analysis::load_runs(std::slice::from_ref(&copy)).map(|set| {
                    let _ = set.neurons_by_run().collect();
                })
            });
        }
    }
    eprintln!("{cases} mutated {file}: {readable} still readable");
    // Some mutations must get past the footer into the decoder (readable, or failing inside
    // it), and some must be refused: otherwise this test exercised nothing.
    assert!(
        0 < readable && readable < cases,
        "{readable} of {cases} mutated {file} readable"
    );
}

#[test]
fn mutated_epochs_parquet_never_panics_the_trainer() {
    let (_tmp, run) = tiny_complete_run();
    mutate_parquet(&run, "epochs.parquet", 1_500, 1, false);
}

#[test]
fn mutated_neurons_parquet_never_panics_the_trainer() {
    let (_tmp, run) = tiny_complete_run();
    mutate_parquet(&run, "neurons.parquet", 1_500, 2, false);
}

/// The analysis crate's readers (`inspect`, `analyze`) on the same mutations. polars panics on
/// some corrupt files (e.g. "range end index 4900 out of range" in polars-utils, an assertion in
/// polars-stream's row-group decoder); `load_runs` decodes each run once under a guard, so such a
/// run is skipped with a reason and the later scans never meet it.
#[test]
fn mutated_parquet_never_panics_the_analysis() {
    let (_tmp, run) = tiny_complete_run();
    mutate_parquet(&run, "epochs.parquet", 1_500, 1, true);
    mutate_parquet(&run, "neurons.parquet", 1_500, 2, true);
}
