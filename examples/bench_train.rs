//! Training throughput of LeNet (conv32-conv64-fc128) on 28×28 inputs, batch 64, with the
//! instruments on and off, for relu and relu-softsign. One line per case:
//! `relu instruments=on: 2310.5 img/s, peak RSS 45 MB`.
//!
//! Run: `cargo run --release --example bench_train [-- --threads 2 --samples 4096 --epochs 2]`.
//! The img/s of a case is the best of its epochs' training-only throughput (the test evaluation
//! and probe pass are timed apart, as "probe+eval"), measured on the synthetic dataset.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use necrosis::config::RunConfig;
use necrosis::data::{self, DatasetKind, DatasetSpec};
use necrosis::train::{self, Progress, RunOptions};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn flag(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() -> anyhow::Result<()> {
    if std::env::var_os("NECROSIS_PURGE").is_none() {
        necrosis::keep_freed_memory();
    }
    let args: Vec<String> = std::env::args().collect();
    let threads = flag(&args, "--threads", 2);
    let samples = flag(&args, "--samples", 4096);
    let epochs = flag(&args, "--epochs", 2);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()?;
    let mut spec = DatasetSpec::new(DatasetKind::Synthetic);
    spec.synthetic_samples = Some(samples);
    let dataset = data::load(&spec)?;
    println!(
        "# LeNet, 28x28 synthetic, {} training samples, batch 64, {threads} threads",
        dataset.train.len()
    );
    for activation in ["relu", "relu-softsign"] {
        for instruments in [false, true] {
            let config = RunConfig {
                epochs,
                ..RunConfig::new(spec.clone(), activation)
            };
            let dir = tempfile::tempdir()?;
            let best = Arc::new(Mutex::new(0.0f64));
            let best_in = best.clone();
            let started = Instant::now();
            let options = RunOptions {
                instruments,
                progress: Box::new(move |event| {
                    if let Progress::Epoch(e) = event {
                        if let Some(ips) = e.images_per_sec {
                            let mut b = best_in.lock().unwrap();
                            *b = b.max(ips);
                        }
                    }
                }),
                ..Default::default()
            };
            train::run(&dataset, &config, dir.path(), options)?;
            let total = started.elapsed().as_secs_f64();
            let ips = *best.lock().unwrap();
            let train_seconds = epochs as f64 * dataset.train.len() as f64 / ips;
            println!(
                "{activation} instruments={}: {ips:.1} img/s, peak RSS {:.0} MB (run {total:.1} s, of which probe+eval+records ≈ {:.1} s)",
                if instruments { "on" } else { "off" },
                peak_rss_mb(),
                (total - train_seconds).max(0.0),
            );
        }
    }
    Ok(())
}
