//! Writing run directories in the record format of `docs/records.md` without training: hand-made
//! records for tests whose answer is known by construction, and generated sweeps for the benchmark
//! and report tests. Nothing here is used when analysing real runs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use necrosis_records::architecture::{LayerSpec, Site};
use necrosis_records::config::{DatasetKind, DatasetSpec, Normalization, RunConfig};
use necrosis_records::files::write_probe_indices;
use necrosis_records::tables::{EpochRow, NeuronRow};
use necrosis_records::{Manifest, RunStatus, FORMAT_VERSION};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The manifest-level description of a run to write.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub sweep: String,
    pub dataset: String,
    pub activation: String,
    pub seed: u64,
    pub lr: f64,
    /// `config.epochs`, the planned number of training epochs.
    pub epochs_planned: u32,
    pub status: RunStatus,
    /// `epochs_completed`; None: the last epoch present in the records.
    pub epochs_completed: Option<u32>,
    pub error: Option<String>,
    /// (layer_name, neurons) per activation site, in site order.
    pub sites: Vec<(String, u32)>,
}

impl RunSpec {
    pub fn new(
        sweep: &str,
        dataset: &str,
        activation: &str,
        seed: u64,
        lr: f64,
        epochs_planned: u32,
        sites: Vec<(String, u32)>,
    ) -> RunSpec {
        RunSpec {
            sweep: sweep.into(),
            dataset: dataset.into(),
            activation: activation.into(),
            seed,
            lr,
            epochs_planned,
            status: RunStatus::Complete,
            epochs_completed: None,
            error: None,
            sites,
        }
    }
}

/// One row of `epochs.parquet`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochRecord {
    pub epoch: u32,
    pub train_loss: Option<f64>,
    pub test_acc: f64,
    pub test_loss: f64,
    pub seconds: f64,
}

impl EpochRecord {
    /// A row with the given test accuracy and train loss, test loss 1 − acc, one second per epoch.
    pub fn new(epoch: u32, test_acc: f64, train_loss: Option<f64>) -> EpochRecord {
        EpochRecord {
            epoch,
            train_loss,
            test_acc,
            test_loss: 1.0 - test_acc,
            seconds: epoch as f64 + 0.5,
        }
    }
}

/// One row of `neurons.parquet`; the columns the analysis does not read are derived from these.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NeuronRecord {
    pub epoch: u32,
    pub layer: u32,
    pub neuron: u32,
    pub active_frac: f64,
    pub max_pre: f64,
    pub mean_abs_act: f64,
    pub mean_deriv: f64,
    /// Null at epoch 0, as the trainer writes it.
    pub grad_pre_abs_mean: Option<f64>,
}

impl NeuronRecord {
    /// A healthy neuron: active on half the probe, positive maximum, derivative 0.5.
    pub fn alive(epoch: u32, layer: u32, neuron: u32) -> NeuronRecord {
        NeuronRecord {
            epoch,
            layer,
            neuron,
            active_frac: 0.5,
            max_pre: 1.0,
            mean_abs_act: 1.0,
            mean_deriv: 0.5,
            grad_pre_abs_mean: (epoch > 0).then_some(0.01),
        }
    }
}

/// Writes `<root>/<sweep>/<run-id>/` with `manifest.json`, `epochs.parquet`, `neurons.parquet` and
/// `probe_indices.json`, through the record format's own types and writers; returns the run
/// directory.
pub fn write_run(
    root: &Path,
    spec: &RunSpec,
    epochs: &[EpochRecord],
    neurons: &[NeuronRecord],
) -> Result<PathBuf> {
    let last_epoch = epochs.iter().map(|e| e.epoch).max().unwrap_or(0);
    let epochs_completed = spec.epochs_completed.unwrap_or(last_epoch);
    let kind: DatasetKind = spec.dataset.parse()?;

    // A dense network: flatten, then per site an fc layer and its activation, then the output.
    let mut architecture = vec![LayerSpec::Flatten];
    for (site, (name, out)) in spec.sites.iter().enumerate() {
        architecture.push(LayerSpec::Fc {
            name: name.clone(),
            out: *out as usize,
        });
        architecture.push(LayerSpec::Act { site });
    }
    architecture.push(LayerSpec::Fc {
        name: "out".into(),
        out: 10,
    });
    let mut config = RunConfig::new(DatasetSpec::new(kind), &spec.activation);
    config.arch = "mlp".into();
    config.seed = spec.seed;
    config.lr = spec.lr;
    config.epochs = spec.epochs_planned as usize;
    config.probe_size = Some(2048);
    // Named as the trainer names runs, with a checksum that says the data is made up.
    let data_checksum = "synthetic-records".to_string();
    let config_hash = config.identity(&data_checksum);
    let run_id = config.run_dir_name(&["activation", "lr", "seed"], &config_hash);
    let dir = root.join(&spec.sweep).join(&run_id);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        crate_version: "0.1.0".into(),
        run_id,
        sweep: spec.sweep.clone(),
        config_hash,
        data_checksum,
        status: spec.status,
        epochs_completed: epochs_completed as usize,
        started_at: "2026-11-27T21:00:00Z".into(),
        ended_at: None,
        error: spec.error.clone(),
        config,
        activation: spec.activation.clone(),
        input: [1, 8, 8],
        classes: 10,
        train_samples: 1437,
        test_samples: 360,
        normalization: Normalization {
            mean: vec![0.3],
            std: vec![0.38],
        },
        architecture,
        sites: spec
            .sites
            .iter()
            .enumerate()
            .map(|(site, (name, neurons))| Site {
                site,
                layer_name: name.clone(),
                neurons: *neurons as usize,
            })
            .collect(),
    };
    manifest.write(&dir)?;
    write_probe_indices(&dir, &[0, 1, 2])?;
    EpochRow::write_all(&dir, &epoch_rows(epochs, spec.lr))?;
    NeuronRow::write_all(&dir, &neuron_rows(neurons, &spec.sites))?;
    Ok(dir)
}

/// The full rows of `epochs.parquet`; the columns the records do not give are derived.
fn epoch_rows(epochs: &[EpochRecord], lr: f64) -> Vec<EpochRow> {
    epochs
        .iter()
        .map(|e| EpochRow {
            epoch: e.epoch,
            step: e.epoch as u64 * 23,
            lr,
            train_loss: e.train_loss,
            train_acc: e.train_loss.map(|_| e.test_acc),
            test_loss: e.test_loss,
            test_acc: e.test_acc,
            seconds: e.seconds,
            images_per_sec: (e.epoch > 0).then_some(1000.0),
            diverged: false,
        })
        .collect()
}

/// The full rows of `neurons.parquet`; the columns the analysis does not read are derived.
fn neuron_rows(neurons: &[NeuronRecord], sites: &[(String, u32)]) -> Vec<NeuronRow> {
    let name = |layer: u32| {
        sites
            .get(layer as usize)
            .map_or_else(|| format!("layer{layer}"), |(n, _)| n.clone())
    };
    neurons
        .iter()
        .map(|r| {
            let trained = |v: f64| (r.epoch > 0).then_some(v);
            let grad = r.grad_pre_abs_mean.unwrap_or(0.0);
            NeuronRow {
                epoch: r.epoch,
                layer: r.layer,
                layer_name: name(r.layer),
                neuron: r.neuron,
                active_frac: r.active_frac,
                sample_active_frac: r.active_frac.sqrt(),
                max_pre: r.max_pre,
                mean_pre: r.max_pre - 1.0,
                std_pre: 0.5,
                mean_abs_act: r.mean_abs_act,
                mean_deriv: r.mean_deriv,
                weight_norm: 1.0,
                bias: 0.0,
                train_active_frac: trained(r.active_frac),
                grad_act_abs_mean: trained(grad * 2.0),
                grad_pre_abs_mean: r.grad_pre_abs_mean,
                weight_grad_norm: trained(grad * 10.0),
                saturated_deriv_frac: None,
                saturated_output_frac: None,
            }
        })
        .collect()
}

/// Shape of a generated sweep.
#[derive(Debug, Clone)]
pub struct StudySpec {
    pub sweep: String,
    pub dataset: String,
    pub activations: Vec<String>,
    pub seeds: u64,
    /// Training epochs E (records hold epochs 0..=E).
    pub epochs: u32,
    pub sites: Vec<(String, u32)>,
    pub lr: f64,
}

/// Generates one complete run per (activation, seed) with plausible dynamics: neurons die at a rate
/// that depends on the activation (relu the most, softsign never, by construction of `max_pre`),
/// some revive, and accuracy rises towards a plateau. Deterministic in `seed`. Returns the run
/// directories.
pub fn generate_study(root: &Path, study: &StudySpec, seed: u64) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for (a, activation) in study.activations.iter().enumerate() {
        // Per-epoch death hazard and revival chance, by activation position and kind.
        let hazard = match activation.as_str() {
            "relu" => 0.03,
            "softsign" | "tanh" | "sigmoid" => 0.0,
            _ => 0.01 + 0.004 * a as f64,
        };
        for s in 0..study.seeds {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (a as u64 * 1_000_003 + s * 7919));
            let spec = RunSpec::new(
                &study.sweep,
                &study.dataset,
                activation,
                s,
                study.lr,
                study.epochs,
                study.sites.clone(),
            );
            let plateau = 0.9 - 0.02 * a as f64 + rng.gen_range(-0.02..0.02);
            let speed = 0.25 + 0.05 * a as f64 + rng.gen_range(-0.05..0.05);
            let epochs: Vec<EpochRecord> = (0..=study.epochs)
                .map(|e| {
                    let acc = 0.1 + (plateau - 0.1) * (1.0 - (-speed * e as f64).exp());
                    let loss = (e > 0).then(|| 2.3 * (-speed * e as f64).exp() + 0.1);
                    EpochRecord {
                        seconds: 0.2 + e as f64 * (1.0 + 0.1 * a as f64),
                        ..EpochRecord::new(e, acc, loss)
                    }
                })
                .collect();
            let total: u32 = study.sites.iter().map(|(_, n)| n).sum();
            let mut neurons = Vec::with_capacity(total as usize * (study.epochs as usize + 1));
            for (layer, (_, n)) in study.sites.iter().enumerate() {
                for neuron in 0..*n {
                    let mut dead = rng.gen_bool(hazard.min(1.0));
                    let activity: f64 = rng.gen_range(0.2..1.5);
                    for e in 0..=study.epochs {
                        if e > 0 {
                            dead = if dead {
                                !rng.gen_bool(0.05)
                            } else {
                                rng.gen_bool(hazard)
                            };
                        }
                        let mut r = NeuronRecord::alive(e, layer as u32, neuron);
                        r.mean_abs_act = activity;
                        r.grad_pre_abs_mean = (e > 0).then(|| 0.02 * activity / (1.0 + e as f64));
                        if dead {
                            r.max_pre = -rng.gen_range(0.01..1.0);
                            r.active_frac = 0.0;
                            r.mean_abs_act = 0.0;
                            r.mean_deriv = 0.0;
                            r.grad_pre_abs_mean = (e > 0).then_some(0.0);
                        } else {
                            r.active_frac = rng.gen_range(0.05..0.95);
                            r.max_pre = rng.gen_range(0.1..3.0);
                        }
                        neurons.push(r);
                    }
                }
            }
            dirs.push(write_run(root, &spec, &epochs, &neurons)?);
        }
    }
    Ok(dirs)
}
