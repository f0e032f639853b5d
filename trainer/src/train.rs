//! The training loop of one run: epoch 0 probe, then for every epoch the minibatch steps, the
//! test evaluation, the probe pass, and the records and checkpoint of the epoch.
//!
//! Determinism: initialisation comes from the seed, each epoch's shuffle from (seed, epoch) alone,
//! and every reduction has a fixed order, so the same config gives identical records (timing
//! columns aside) and a resumed run continues exactly as an uninterrupted one would.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use dfdx::prelude::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::activation::{activation_by_name, Activation, CaptureRequest};
use crate::arch;
use crate::data::{Dataset, Split};
use crate::hooks::recorder::{NeuronRecorder, NeuronRow};
use crate::hooks::{EpochRow, Hook, HookSet, ParamView, SiteBackward, SiteForward, StepContext};
use crate::model::{Model, SiteInfo};
use crate::ops::{tensor_values, Tape};
use crate::optim::Optimizer;
use necrosis_records::checkpoint::{
    checkpoint_path, first_moment_name, metadata, read_safetensors, second_moment_name,
    write_safetensors, MODEL_FILE,
};
use necrosis_records::config::{InvalidConfig, RunConfig, DEFAULT_PROBE_SIZE};
use necrosis_records::files::{now_rfc3339, remove_stale_temporaries, write_probe_indices};
use necrosis_records::manifest::RunIdentity;
use necrosis_records::{Manifest, RunStatus, FORMAT_VERSION};

/// Samples per forward pass in evaluation mode (test set and probe set): as in training, so a
/// batch's buffers stay in cache (256 was 10 % slower).
const EVAL_BATCH: usize = 64;

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    Complete {
        final_test_acc: f64,
    },
    /// The loss became NaN or infinite in this epoch; earlier epochs' records stay.
    Diverged {
        epoch: usize,
    },
    /// Stopped by the caller's stop flag (Ctrl-C); records end at the last completed epoch.
    Interrupted {
        epochs_completed: usize,
    },
}

/// What the loop reports as it goes, for progress bars.
#[derive(Debug, Clone)]
pub enum Progress<'a> {
    Step {
        epoch: usize,
        batch: usize,
        batches: usize,
        loss: f32,
    },
    Epoch(&'a EpochRow),
    /// Where an epoch's wall time went, after its records are saved.
    Phases(EpochPhases),
}

/// Seconds an epoch spent in each phase: training steps (forward, backward, hooks, optimiser),
/// the test-set evaluation, the probe pass with its hooks, and writing records and checkpoint.
/// Epoch 0 has no training.
#[derive(Debug, Clone, Copy)]
pub struct EpochPhases {
    pub epoch: usize,
    pub train_seconds: f64,
    pub eval_seconds: f64,
    pub probe_seconds: f64,
    pub save_seconds: f64,
}

/// Options that change how a run is executed but not its results.
pub struct RunOptions<'a> {
    /// Record the SPEC §2 neuron statistics (off only to measure their cost).
    pub instruments: bool,
    /// More instruments, called after the recorder.
    pub hooks: Vec<Box<dyn Hook>>,
    pub stop: Option<Arc<AtomicBool>>,
    pub progress: Box<dyn FnMut(Progress) + 'a>,
    /// The sweep's name, stored in the manifest.
    pub sweep: String,
    /// The run's identity (configuration hash and data checksum), stored in the manifest; the
    /// sweep computes it. Empty when a caller trains a run outside any sweep.
    pub identity: RunIdentity,
    /// Use this activation instead of looking `config.activation` up among the built-ins.
    pub activation: Option<Activation>,
}

impl Default for RunOptions<'_> {
    fn default() -> Self {
        Self {
            instruments: true,
            hooks: Vec::new(),
            stop: None,
            progress: Box::new(|_: Progress| {}),
            sweep: String::new(),
            identity: RunIdentity::default(),
            activation: None,
        }
    }
}

/// The training state a checkpoint restores.
struct State {
    model: Model,
    optimizer: Optimizer,
    epochs: Vec<EpochRow>,
    neurons: Vec<NeuronRow>,
    completed: usize,
    seconds_before: f64,
    manifest: Manifest,
}

/// Trains one run into `run_dir`, resuming from its checkpoint if one is there.
pub fn run(
    dataset: &Dataset,
    config: &RunConfig,
    run_dir: &Path,
    mut options: RunOptions,
) -> Result<RunOutcome> {
    config.validate()?;
    let activation = match options.activation.take() {
        Some(a) => a,
        None => activation_by_name(&config.activation).map_err(|e| InvalidConfig {
            key: "activation",
            problem: format!("{e:#}"),
        })?,
    };
    let probe = probe_indices(config, dataset)?;
    std::fs::create_dir_all(run_dir.join("checkpoint"))
        .with_context(|| format!("creating {}", run_dir.display()))?;
    remove_stale_temporaries(run_dir)?;
    let started = Instant::now();
    let resumed = checkpoint_path(run_dir).exists() && run_dir.join("manifest.json").exists();
    let mut state = if resumed {
        restore(run_dir, config, dataset, activation.clone())?
    } else {
        fresh(run_dir, config, dataset, activation.clone(), &options)?
    };
    let mut hooks = HookSet {
        recorder: options
            .instruments
            .then(|| NeuronRecorder::new(state.model.sites.clone(), activation.clone())),
        others: std::mem::take(&mut options.hooks),
    };

    if state.completed == 0 && state.epochs.is_empty() {
        let ((), probe_seconds) =
            timed(|| probe_pass(&state.model, dataset, &probe, 0, &mut hooks));
        let (evaluated, eval_seconds) =
            timed(|| evaluate(&state.model, &dataset.test, dataset.sample_len()));
        let (test_loss, test_acc) = evaluated?;
        let summary = EpochRow {
            epoch: 0,
            step: 0,
            lr: config.lr,
            train_loss: None,
            train_acc: None,
            test_loss,
            test_acc,
            seconds: elapsed_now(&state, started),
            images_per_sec: None,
            diverged: false,
        };
        let (saved, save_seconds) = timed(|| {
            finish_epoch(
                run_dir,
                &mut state,
                summary,
                &mut hooks,
                &mut options,
                started,
            )
        });
        saved?;
        (options.progress)(Progress::Phases(EpochPhases {
            epoch: 0,
            train_seconds: 0.0,
            eval_seconds,
            probe_seconds,
            save_seconds,
        }));
    }

    for epoch in state.completed + 1..=config.epochs {
        let lr = config.schedule.lr_at(config.lr, epoch, config.epochs);
        let epoch_start = Instant::now();
        let trained = train_epoch(
            &mut state,
            dataset,
            config,
            epoch,
            lr,
            &mut hooks,
            &mut options,
        )?;
        let Some((train_loss, train_acc)) = trained.result else {
            if trained.interrupted {
                return Ok(RunOutcome::Interrupted {
                    epochs_completed: state.completed,
                });
            }
            let summary = EpochRow {
                epoch: epoch as u32,
                step: state.optimizer.step,
                lr,
                train_loss: Some(f64::NAN),
                train_acc: None,
                test_loss: f64::NAN,
                test_acc: f64::NAN,
                seconds: elapsed_now(&state, started),
                images_per_sec: None,
                diverged: true,
            };
            state.epochs.push(summary);
            EpochRow::write_all(run_dir, &state.epochs)?;
            state.manifest.status = RunStatus::Diverged;
            state.manifest.ended_at = Some(now_rfc3339());
            state.manifest.error = Some(format!(
                "the training loss became {} at epoch {epoch}, step {}",
                trained.bad_loss, state.optimizer.step
            ));
            state.manifest.write(run_dir)?;
            return Ok(RunOutcome::Diverged { epoch });
        };
        let train_seconds = epoch_start.elapsed().as_secs_f64();
        let images_per_sec = dataset.train.len() as f64 / train_seconds;
        let (evaluated, eval_seconds) =
            timed(|| evaluate(&state.model, &dataset.test, dataset.sample_len()));
        let (test_loss, test_acc) = evaluated?;
        let ((), probe_seconds) =
            timed(|| probe_pass(&state.model, dataset, &probe, epoch, &mut hooks));
        let summary = EpochRow {
            epoch: epoch as u32,
            step: state.optimizer.step,
            lr,
            train_loss: Some(train_loss),
            train_acc: Some(train_acc),
            test_loss,
            test_acc,
            seconds: elapsed_now(&state, started),
            images_per_sec: Some(images_per_sec),
            diverged: false,
        };
        let (saved, save_seconds) = timed(|| {
            finish_epoch(
                run_dir,
                &mut state,
                summary,
                &mut hooks,
                &mut options,
                started,
            )
        });
        saved?;
        (options.progress)(Progress::Phases(EpochPhases {
            epoch,
            train_seconds,
            eval_seconds,
            probe_seconds,
            save_seconds,
        }));
    }
    state.manifest.status = RunStatus::Complete;
    state.manifest.ended_at = Some(now_rfc3339());
    state.manifest.write(run_dir)?;
    let final_test_acc = state.epochs.last().map(|e| e.test_acc).unwrap_or(f64::NAN);
    Ok(RunOutcome::Complete { final_test_acc })
}

/// Ends an epoch: tells the hooks and the progress callback, keeps its rows, and saves it.
fn finish_epoch(
    run_dir: &Path,
    state: &mut State,
    summary: EpochRow,
    hooks: &mut HookSet,
    options: &mut RunOptions,
    started: Instant,
) -> Result<()> {
    hooks.on_epoch_end(&summary);
    (options.progress)(Progress::Epoch(&summary));
    let epoch = summary.epoch as usize;
    state.epochs.push(summary);
    state.neurons.extend(hooks.take_neuron_rows());
    let seconds = elapsed_now(state, started);
    save_epoch(run_dir, state, epoch, seconds)
}

/// `work`'s result and the seconds it took.
fn timed<T>(work: impl FnOnce() -> T) -> (T, f64) {
    let clock = Instant::now();
    let result = work();
    (result, clock.elapsed().as_secs_f64())
}

/// Wall time of the run, including the time before a resume.
fn elapsed_now(state: &State, started: Instant) -> f64 {
    state.seconds_before + started.elapsed().as_secs_f64()
}

/// The probe set: `probe_size` training indices drawn without replacement with the run's seed,
/// sorted. Indices refer to the training split as stored, before shuffling or --train-limit
/// (which keeps a prefix, so the indices stay valid).
pub fn probe_indices(config: &RunConfig, dataset: &Dataset) -> Result<Vec<usize>> {
    let n = dataset.train.len();
    let size = match config.probe_size {
        Some(size) if size > n => {
            return Err(InvalidConfig {
                key: "probe_size",
                problem: format!("{size} is larger than the training split ({n} samples)"),
            }
            .into())
        }
        Some(size) => size,
        None => DEFAULT_PROBE_SIZE.min(n),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    rng.set_stream(u64::MAX);
    let mut indices = rand::seq::index::sample(&mut rng, n, size).into_vec();
    indices.sort_unstable();
    Ok(indices)
}

fn fresh(
    run_dir: &Path,
    config: &RunConfig,
    dataset: &Dataset,
    activation: Activation,
    options: &RunOptions,
) -> Result<State> {
    let architecture = arch::resolve(&config.arch, dataset.input_shape(), dataset.classes)?;
    let model = Model::new(
        &architecture,
        dataset.input_shape(),
        dataset.classes,
        activation,
        config.seed,
    )?;
    let optimizer = Optimizer::new(config.optimizer, model.params());
    write_probe_indices(run_dir, &probe_indices(config, dataset)?)?;
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        crate_version: env!("CARGO_PKG_VERSION").to_string(),
        // The folder's name: the sweep names it from the configuration and its identity.
        run_id: run_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        sweep: options.sweep.clone(),
        config_hash: options.identity.config_hash.clone(),
        data_checksum: options.identity.data_checksum.clone(),
        status: RunStatus::Running,
        epochs_completed: 0,
        started_at: now_rfc3339(),
        ended_at: None,
        error: None,
        config: config.clone(),
        activation: config.activation.clone(),
        input: dataset.input_shape(),
        classes: dataset.classes,
        train_samples: dataset.train.len(),
        test_samples: dataset.test.len(),
        normalization: dataset.normalization.clone(),
        architecture,
        sites: model.sites.iter().map(SiteInfo::record).collect(),
    };
    Ok(State {
        model,
        optimizer,
        epochs: Vec::new(),
        neurons: Vec::new(),
        completed: 0,
        seconds_before: 0.0,
        manifest,
    })
}

/// The run directory holds a run of another configuration: an error of the request, not of
/// the stored run, which stays as it was (not marked failed).
#[derive(Debug, thiserror::Error)]
#[error("{}: the run directory holds a run with another configuration", run_dir.display())]
pub struct ConfigMismatch {
    pub run_dir: std::path::PathBuf,
}

/// Rebuilds the state of the last checkpoint; records of later epochs (written before a kill
/// reached the checkpoint) are dropped and redone.
fn restore(
    run_dir: &Path,
    config: &RunConfig,
    dataset: &Dataset,
    activation: Activation,
) -> Result<State> {
    let mut manifest = Manifest::read(run_dir)?;
    if &manifest.config != config {
        return Err(ConfigMismatch {
            run_dir: run_dir.to_path_buf(),
        }
        .into());
    }
    let checkpoint = read_safetensors(&checkpoint_path(run_dir))?;
    let completed = checkpoint.number(metadata::EPOCH)? as usize;
    let architecture = arch::resolve(&config.arch, dataset.input_shape(), dataset.classes)?;
    let mut model = Model::new(
        &architecture,
        dataset.input_shape(),
        dataset.classes,
        activation,
        config.seed,
    )?;
    let mut optimizer = Optimizer::new(config.optimizer, model.params());
    optimizer.step = checkpoint.number(metadata::STEP)? as u64;
    let in_checkpoint = || format!("reading {}", checkpoint.path.display());
    for (i, param) in model.params_mut().into_iter().enumerate() {
        param
            .set_values(checkpoint.tensor(&param.name)?)
            .with_context(in_checkpoint)?;
        let restore_moment = |moment: &mut Vec<f32>, name: String| -> Result<()> {
            let values = checkpoint.tensor(&name)?;
            if values.len() != moment.len() {
                bail!(
                    "{}: tensor {name} has {} values, the model's {} has {}",
                    in_checkpoint(),
                    values.len(),
                    param.name,
                    moment.len()
                );
            }
            moment.copy_from_slice(values);
            Ok(())
        };
        restore_moment(
            &mut optimizer.first_moment[i],
            first_moment_name(&param.name),
        )?;
        if !optimizer.second_moment.is_empty() {
            restore_moment(
                &mut optimizer.second_moment[i],
                second_moment_name(&param.name),
            )?;
        }
    }
    let mut epochs = EpochRow::read_all(run_dir)?;
    epochs.retain(|e| (e.epoch as usize) <= completed);
    let mut neurons = NeuronRow::read_all(run_dir)?;
    neurons.retain(|n| (n.epoch as usize) <= completed);
    if epochs.len() != completed + 1 {
        bail!(
            "{}: epochs.parquet has {} of the {} epochs the checkpoint covers",
            run_dir.display(),
            epochs.len(),
            completed + 1
        );
    }
    manifest.status = RunStatus::Running;
    manifest.epochs_completed = completed;
    manifest.ended_at = None;
    manifest.error = None;
    Ok(State {
        model,
        optimizer,
        epochs,
        neurons,
        completed,
        seconds_before: checkpoint.number(metadata::SECONDS)?,
        manifest,
    })
}

/// Writes the epoch's records, then the checkpoint, then the manifest that declares the epoch
/// complete: a kill between two writes leaves the manifest at the previous epoch, and readers
/// ignore rows beyond it.
fn save_epoch(run_dir: &Path, state: &mut State, epoch: usize, seconds: f64) -> Result<()> {
    EpochRow::write_all(run_dir, &state.epochs)?;
    NeuronRow::write_all(run_dir, &state.neurons)?;
    let params = state.model.params();
    let mut tensors: Vec<(String, Vec<usize>, &[f32])> = params
        .iter()
        .map(|p| (p.name.clone(), p.shape.clone(), p.value.as_slice()))
        .collect();
    let model_meta = HashMap::from([
        (
            metadata::ACTIVATION.to_string(),
            state.manifest.activation.clone(),
        ),
        (
            metadata::ARCHITECTURE.to_string(),
            serde_json::to_string(&state.manifest.architecture)?,
        ),
        (metadata::EPOCH.to_string(), epoch.to_string()),
    ]);
    write_safetensors(&run_dir.join(MODEL_FILE), &tensors, model_meta)?;
    for (i, p) in params.iter().enumerate() {
        tensors.push((
            first_moment_name(&p.name),
            p.shape.clone(),
            &state.optimizer.first_moment[i],
        ));
        if !state.optimizer.second_moment.is_empty() {
            tensors.push((
                second_moment_name(&p.name),
                p.shape.clone(),
                &state.optimizer.second_moment[i],
            ));
        }
    }
    let checkpoint_meta = HashMap::from([
        (metadata::EPOCH.to_string(), epoch.to_string()),
        (metadata::STEP.to_string(), state.optimizer.step.to_string()),
        (metadata::SECONDS.to_string(), seconds.to_string()),
    ]);
    write_safetensors(&checkpoint_path(run_dir), &tensors, checkpoint_meta)?;
    state.completed = epoch;
    state.manifest.epochs_completed = epoch;
    Ok(state.manifest.write(run_dir)?)
}

struct EpochResult {
    /// Mean training loss and accuracy; `None` if the loss diverged or the run was stopped.
    result: Option<(f64, f64)>,
    interrupted: bool,
    bad_loss: f32,
}

fn gather(split: &Split, indices: &[usize], sample_len: usize) -> (Vec<f32>, Vec<u32>) {
    let mut images = Vec::with_capacity(indices.len() * sample_len);
    let mut labels = Vec::with_capacity(indices.len());
    for &i in indices {
        images.extend_from_slice(split.sample(i, sample_len));
        labels.push(split.labels[i]);
    }
    (images, labels)
}

fn one_hot(dev: &Cpu, labels: &[u32], classes: usize) -> Tensor<(usize, usize), f32, Cpu> {
    let mut values = vec![0.0f32; labels.len() * classes];
    for (row, &label) in labels.iter().enumerate() {
        values[row * classes + label as usize] = 1.0;
    }
    dev.tensor_from_vec(values, (labels.len(), classes))
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold(0, |best, (i, v)| if *v > row[best] { i } else { best })
}

fn train_epoch(
    state: &mut State,
    dataset: &Dataset,
    config: &RunConfig,
    epoch: usize,
    lr: f64,
    hooks: &mut HookSet,
    options: &mut RunOptions,
) -> Result<EpochResult> {
    let sample_len = dataset.sample_len();
    let mut order: Vec<usize> = (0..dataset.train.len()).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    rng.set_stream(epoch as u64);
    order.shuffle(&mut rng);

    let batches = order.len().div_ceil(config.batch_size);
    let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
    for (batch_index, indices) in order.chunks(config.batch_size).enumerate() {
        if options
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::SeqCst))
        {
            return Ok(EpochResult {
                result: None,
                interrupted: true,
                bad_loss: 0.0,
            });
        }
        let (images, labels) = gather(&dataset.train, indices, sample_len);
        let ctx = StepContext {
            epoch,
            step: state.optimizer.step,
            batch_size: labels.len(),
            lr: lr as f32,
        };
        let step = train_step(
            &mut state.model,
            &mut state.optimizer,
            hooks,
            images,
            &labels,
            &ctx,
        )?;
        if !step.loss.is_finite() {
            return Ok(EpochResult {
                result: None,
                interrupted: false,
                bad_loss: step.loss,
            });
        }
        loss_sum += step.loss as f64 * labels.len() as f64;
        correct += step.correct;
        seen += labels.len();
        (options.progress)(Progress::Step {
            epoch,
            batch: batch_index + 1,
            batches,
            loss: step.loss,
        });
    }
    Ok(EpochResult {
        result: Some((loss_sum / seen as f64, correct as f64 / seen as f64)),
        interrupted: false,
        bad_loss: 0.0,
    })
}

/// What one optimiser step reports.
#[derive(Debug, Clone, Copy)]
pub struct StepResult {
    /// The minibatch's mean cross-entropy before the update.
    pub loss: f32,
    /// Samples of the minibatch the network classified correctly before the update.
    pub correct: usize,
}

/// One optimiser step on a minibatch (`images` laid out `[batch, c·h·w]`): the forward pass with
/// the hooks' forward events, the backward pass with their backward and step events, and the
/// update at `ctx.lr`. A non-finite loss returns before any backward pass or update.
///
/// [`run`] calls this for every minibatch; it is public so that a benchmark can time steps one
/// at a time.
pub fn train_step(
    model: &mut Model,
    optimizer: &mut Optimizer,
    hooks: &mut HookSet,
    images: Vec<f32>,
    labels: &[u32],
    ctx: &StepContext,
) -> Result<StepResult> {
    let dev = Cpu::default();
    let (n, classes) = (labels.len(), model.classes);
    let sample_len = images.len() / n.max(1);
    let wants_forward = hooks.wants_batch_forward();
    let captures: Option<Vec<CaptureRequest>> = hooks.wants_batch_backward().then(|| {
        let keep_arrays = hooks.wants_backward_arrays();
        model
            .sites
            .iter()
            .map(|_| CaptureRequest {
                slot: Default::default(),
                keep_arrays,
            })
            .collect()
    });
    let input = dev
        .tensor_from_vec(images, (n, sample_len))
        .retaped::<Tape>();
    let sites = &model.sites;
    let logits = model.forward(
        input,
        &mut |site, z, h| {
            if wants_forward {
                let event = SiteForward {
                    info: &sites[site],
                    batch_size: n,
                    z,
                    h,
                };
                hooks.on_batch_forward(ctx, &event);
            }
        },
        captures.as_deref(),
    );
    let logit_values = tensor_values(&logits);
    let correct = logit_values
        .chunks(classes)
        .zip(labels)
        .filter(|(row, &l)| argmax(row) == l as usize)
        .count();
    let loss = cross_entropy_with_logits_loss(logits, one_hot(&dev, labels, classes));
    let loss_value = loss.array();
    if !loss_value.is_finite() {
        return Ok(StepResult {
            loss: loss_value,
            correct,
        });
    }
    let mut grads = loss.backward();
    let param_grads = model
        .params()
        .iter()
        .map(|p| p.take_grad(&mut grads))
        .collect::<Result<Vec<_>>>()?;
    drop(grads);
    for (site, request) in sites.iter().zip(captures.iter().flatten()) {
        let taken = request.slot.lock().expect("capture slot poisoned").take();
        if let Some(capture) = taken {
            let event = SiteBackward {
                info: site,
                batch_size: n,
                sums: &capture.sums,
                arrays: capture.arrays.as_ref(),
            };
            hooks.on_batch_backward(ctx, &event);
        }
    }
    if !hooks.is_empty() {
        let views: Vec<ParamView> = model
            .params()
            .into_iter()
            .zip(&param_grads)
            .map(|(p, g)| ParamView {
                name: &p.name,
                shape: &p.shape,
                value: &p.value,
                grad: Some(g),
            })
            .collect();
        hooks.on_step(ctx, &views);
    }
    optimizer.step(model.params_mut(), &param_grads, ctx.lr);
    Ok(StepResult {
        loss: loss_value,
        correct,
    })
}

/// Mean cross-entropy and accuracy on a split, in evaluation mode (no tape).
fn evaluate(model: &Model, split: &Split, sample_len: usize) -> Result<(f64, f64)> {
    let dev = Cpu::default();
    let classes = model.classes;
    let (mut loss_sum, mut correct) = (0.0f64, 0usize);
    let all: Vec<usize> = (0..split.len()).collect();
    for indices in all.chunks(EVAL_BATCH) {
        let (images, labels) = gather(split, indices, sample_len);
        let logits = model.forward(
            dev.tensor_from_vec(images, (labels.len(), sample_len)),
            &mut |_, _, _| {},
            None,
        );
        for (row, &label) in tensor_values(&logits).chunks(classes).zip(&labels) {
            // log-softmax in f64 with the max subtracted, for a stable loss.
            let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            let log_sum: f64 = row
                .iter()
                .map(|&v| (v as f64 - max).exp())
                .sum::<f64>()
                .ln()
                + max;
            loss_sum += log_sum - row[label as usize] as f64;
            correct += (argmax(row) == label as usize) as usize;
        }
    }
    let n = split.len().max(1) as f64;
    Ok((loss_sum / n, correct as f64 / n))
}

/// The evaluation-mode forward pass over the probe set that feeds `on_probe_*`.
fn probe_pass(
    model: &Model,
    dataset: &Dataset,
    probe: &[usize],
    epoch: usize,
    hooks: &mut HookSet,
) {
    let dev = Cpu::default();
    hooks.on_probe_start(epoch);
    for indices in probe.chunks(EVAL_BATCH) {
        let (images, labels) = gather(&dataset.train, indices, dataset.sample_len());
        let n = labels.len();
        model.forward(
            dev.tensor_from_vec(images, (n, dataset.sample_len())),
            &mut |site, z, h| {
                let event = SiteForward {
                    info: &model.sites[site],
                    batch_size: n,
                    z,
                    h,
                };
                hooks.on_probe_batch(epoch, &event);
            },
            None,
        );
    }
    let views: Vec<ParamView> = model
        .params()
        .into_iter()
        .map(|p| ParamView {
            name: &p.name,
            shape: &p.shape,
            value: &p.value,
            grad: None,
        })
        .collect();
    hooks.on_probe_end(epoch, &views);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{DatasetKind, DatasetSpec, Normalization};

    fn digits_config(activation: &str, epochs: usize) -> RunConfig {
        RunConfig {
            train_limit: Some(400),
            arch: "conv:8:3:1:1,act,pool:2,fc:16,act,fc:10".into(),
            seed: 3,
            lr: 0.05,
            batch_size: 32,
            epochs,
            probe_size: Some(128),
            ..RunConfig::new(DatasetSpec::new(DatasetKind::Digits), activation)
        }
    }

    fn digits(limit: usize) -> Dataset {
        let mut d = crate::data::load(&DatasetSpec::new(DatasetKind::Digits)).unwrap();
        d.limit_train(limit).unwrap();
        d
    }

    /// The records with the wall-clock columns blanked: everything else must be reproducible.
    fn reproducible(dir: &Path) -> (Vec<EpochRow>, Vec<NeuronRow>) {
        let mut epochs = EpochRow::read_all(dir).unwrap();
        for e in &mut epochs {
            e.seconds = 0.0;
            e.images_per_sec = e.images_per_sec.map(|_| 0.0);
        }
        (epochs, NeuronRow::read_all(dir).unwrap())
    }

    #[test]
    fn same_config_and_seed_give_identical_records() {
        let data = digits(400);
        let config = digits_config("relu-softsign", 2);
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        run(&data, &config, a.path(), RunOptions::default()).unwrap();
        run(&data, &config, b.path(), RunOptions::default()).unwrap();
        let (ra, rb) = (reproducible(a.path()), reproducible(b.path()));
        assert_eq!(ra.0.len(), 3, "epoch 0 and two training epochs");
        assert_eq!(ra.1.len(), 3 * (8 + 16));
        assert_eq!(ra, rb);
        // The weights, not the bytes: safetensors orders its metadata by a randomly seeded HashMap.
        let weights = |dir: &Path| read_safetensors(&dir.join(MODEL_FILE)).unwrap();
        let (wa, wb) = (weights(a.path()), weights(b.path()));
        assert!(
            wa.tensors == wb.tensors && wa.metadata == wb.metadata,
            "model.safetensors differ"
        );
        let manifest = Manifest::read(a.path()).unwrap();
        assert_eq!(manifest.status, RunStatus::Complete);
        assert_eq!(manifest.epochs_completed, 2);
        // Training learned something in two epochs on 400 digits.
        assert!(ra.0[2].test_acc > 0.5, "{:?}", ra.0[2]);
    }

    #[test]
    fn a_resumed_run_ends_with_the_records_of_an_uninterrupted_one() {
        let data = digits(400);
        let config = digits_config("relu", 3);
        let whole = tempfile::tempdir().unwrap();
        run(&data, &config, whole.path(), RunOptions::default()).unwrap();

        let parted = tempfile::tempdir().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_after_epoch_1 = stop.clone();
        let options = RunOptions {
            stop: Some(stop.clone()),
            progress: Box::new(move |p| {
                if let Progress::Epoch(e) = p {
                    if e.epoch == 1 {
                        stop_after_epoch_1.store(true, Ordering::SeqCst);
                    }
                }
            }),
            ..Default::default()
        };
        let outcome = run(&data, &config, parted.path(), options).unwrap();
        assert_eq!(
            outcome,
            RunOutcome::Interrupted {
                epochs_completed: 1
            }
        );
        assert_eq!(Manifest::read(parted.path()).unwrap().epochs_completed, 1);
        assert_eq!(EpochRow::read_all(parted.path()).unwrap().len(), 2);
        let outcome = run(&data, &config, parted.path(), RunOptions::default()).unwrap();
        assert!(matches!(outcome, RunOutcome::Complete { .. }));
        assert_eq!(reproducible(parted.path()), reproducible(whole.path()));
    }

    #[test]
    fn temporaries_of_a_killed_writer_are_removed_and_a_live_ones_kept() {
        let data = digits(200);
        let config = digits_config("relu", 1);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("checkpoint")).unwrap();
        let dead = [
            ".epochs.parquet.tmp-4000000000",
            "checkpoint/.state.safetensors.tmp-4000000001",
        ];
        // pid 1 exists on every Linux machine: a live writer's file is not ours to delete.
        let live = ".manifest.json.tmp-1";
        for name in dead.iter().chain([&live]) {
            std::fs::write(dir.path().join(name), b"partial").unwrap();
        }
        run(&data, &config, dir.path(), RunOptions::default()).unwrap();
        for name in dead {
            assert!(!dir.path().join(name).exists(), "{name} was left");
        }
        assert!(dir.path().join(live).exists());
    }

    #[test]
    fn a_nan_loss_marks_the_run_diverged() {
        let data = digits(200);
        let mut config = digits_config("relu", 3);
        config.lr = 1e9;
        let dir = tempfile::tempdir().unwrap();
        let outcome = run(&data, &config, dir.path(), RunOptions::default()).unwrap();
        assert!(
            matches!(outcome, RunOutcome::Diverged { .. }),
            "{outcome:?}"
        );
        let manifest = Manifest::read(dir.path()).unwrap();
        assert_eq!(manifest.status, RunStatus::Diverged);
        assert!(manifest.error.unwrap().contains("loss became"));
        assert!(
            EpochRow::read_all(dir.path())
                .unwrap()
                .last()
                .unwrap()
                .diverged
        );
    }

    #[test]
    fn probe_larger_than_the_dataset_is_refused() {
        let data = digits(100);
        let mut config = digits_config("relu", 1);
        config.probe_size = Some(101);
        let err = run(
            &data,
            &config,
            tempfile::tempdir().unwrap().path(),
            RunOptions::default(),
        )
        .unwrap_err();
        assert_eq!(
            err.downcast_ref::<InvalidConfig>(),
            Some(&InvalidConfig {
                key: "probe_size",
                problem: "101 is larger than the training split (100 samples)".into()
            })
        );
    }

    /// The (layer, neuron) pairs with `max_pre <= 0` on the probe set at epoch 0.
    fn dead_at_init(model: &Model, data: &Dataset) -> Vec<(u32, u32)> {
        let mut hooks = HookSet {
            recorder: Some(NeuronRecorder::new(
                model.sites.clone(),
                model.activation.clone(),
            )),
            others: vec![],
        };
        let probe: Vec<usize> = (0..data.train.len()).collect();
        probe_pass(model, data, &probe, 0, &mut hooks);
        let rows = hooks.take_neuron_rows();
        for r in rows.iter().filter(|r| r.max_pre <= 0.0) {
            // Dead under relu means no output and no gradient for any probe input.
            assert_eq!(
                (
                    r.active_frac,
                    r.sample_active_frac,
                    r.mean_abs_act,
                    r.mean_deriv
                ),
                (0.0, 0.0, 0.0, 0.0)
            );
        }
        rows.iter()
            .filter(|r| r.max_pre <= 0.0)
            .map(|r| (r.layer, r.neuron))
            .collect()
    }

    fn force_dead(model: &mut Model, bias_param: usize, neurons: &[usize]) {
        let mut bias = model.params()[bias_param].value.clone();
        for &n in neurons {
            bias[n] = -1e3;
        }
        model.params_mut()[bias_param].set_values(&bias).unwrap();
    }

    #[test]
    fn neurons_forced_dead_are_exactly_the_ones_reported_dead() {
        let data = digits(300);
        let config = digits_config("relu", 1);
        let architecture = arch::resolve(&config.arch, data.input_shape(), data.classes).unwrap();
        let model = Model::new(
            &architecture,
            data.input_shape(),
            10,
            activation_by_name("relu").unwrap(),
            1,
        )
        .unwrap();
        let before = dead_at_init(&model, &data);
        assert!(
            !before.contains(&(0, 2))
                && !before.contains(&(0, 5))
                && !before.contains(&(1, 0))
                && !before.contains(&(1, 9))
        );

        // conv1 sees only the data and its own parameters: exactly the forced channels die.
        let mut conv_forced = model.clone();
        force_dead(&mut conv_forced, 1, &[2, 5]);
        let dead: Vec<_> = dead_at_init(&conv_forced, &data)
            .into_iter()
            .filter(|d| d.0 == 0)
            .collect();
        assert_eq!(dead, vec![(0, 2), (0, 5)]);

        // fc1 with conv1 intact: the forced units join the ones already dead, nothing else changes.
        let mut fc_forced = model.clone();
        force_dead(&mut fc_forced, 3, &[0, 9]);
        let mut expected = before.clone();
        expected.extend([(1, 0), (1, 9)]);
        expected.sort();
        assert_eq!(dead_at_init(&fc_forced, &data), expected);
    }

    /// A two-layer dense net small enough to compute by hand: z = W₁x + b₁, h = f(z),
    /// logits = W₂h + b₂, L = mean cross-entropy.
    #[test]
    fn recorded_statistics_match_an_independent_computation() {
        let (n, inputs, hidden, classes) = (6, 4, 5, 3);
        let images: Vec<f32> = (0..n * inputs)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0)
            .collect();
        let labels: Vec<u32> = (0..n as u32).map(|i| i % 3).collect();
        let data = Dataset {
            name: "tiny".into(),
            classes,
            channels: 1,
            height: 2,
            width: 2,
            train: Split {
                images: images.clone(),
                labels: labels.clone(),
            },
            test: Split {
                images: images.clone(),
                labels: labels.clone(),
            },
            normalization: Normalization {
                mean: vec![0.0],
                std: vec![1.0],
            },
        };
        let mut config = digits_config("softplus", 1);
        config.arch = format!("fc:{hidden},act,fc:{classes}");
        config.batch_size = n;
        config.probe_size = Some(n);
        config.train_limit = None;
        let dir = tempfile::tempdir().unwrap();
        run(&data, &config, dir.path(), RunOptions::default()).unwrap();
        let rows = NeuronRow::read_all(dir.path()).unwrap();

        let architecture = arch::resolve(&config.arch, [1, 2, 2], classes).unwrap();
        let f = activation_by_name("softplus").unwrap();
        let model = Model::new(&architecture, [1, 2, 2], classes, f.clone(), config.seed).unwrap();
        let params = model.params();
        let (w1, w2) = (&params[0].value, &params[2].value);
        let z: Vec<Vec<f64>> = (0..n)
            .map(|s| {
                (0..hidden)
                    .map(|u| {
                        (0..inputs)
                            .map(|k| w1[u * inputs + k] as f64 * images[s * inputs + k] as f64)
                            .sum()
                    })
                    .collect()
            })
            .collect();
        // Probe statistics at epoch 0 (biases start at zero).
        for u in 0..hidden {
            let row = rows
                .iter()
                .find(|r| r.epoch == 0 && r.neuron == u as u32)
                .unwrap();
            let zs: Vec<f64> = z.iter().map(|zs| zs[u]).collect();
            let active = zs.iter().filter(|v| **v > 0.0).count() as f64 / n as f64;
            let max = zs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let mean_abs_act = zs
                .iter()
                .map(|v| f.value(*v as f32).abs() as f64)
                .sum::<f64>()
                / n as f64;
            let mean_deriv = zs
                .iter()
                .map(|v| f.derivative(*v as f32) as f64)
                .sum::<f64>()
                / n as f64;
            assert!((row.active_frac - active).abs() < 1e-12);
            assert!((row.max_pre - max).abs() < 1e-5);
            assert!((row.mean_abs_act - mean_abs_act).abs() < 1e-5);
            assert!((row.mean_deriv - mean_deriv).abs() < 1e-5);
            let norm = (0..inputs)
                .map(|k| (w1[u * inputs + k] as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            assert!((row.weight_norm - norm).abs() < 1e-6);
        }
        // Training statistics of epoch 1: one step on the whole set, with the initial weights.
        let mut grad_h = vec![vec![0.0f64; hidden]; n];
        for s in 0..n {
            let h: Vec<f64> = z[s].iter().map(|v| f.value(*v as f32) as f64).collect();
            let logits: Vec<f64> = (0..classes)
                .map(|c| (0..hidden).map(|u| w2[c * hidden + u] as f64 * h[u]).sum())
                .collect();
            let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let denom: f64 = logits.iter().map(|l| (l - max).exp()).sum();
            for c in 0..classes {
                let p = (logits[c] - max).exp() / denom;
                let d_logit = (p - (labels[s] as usize == c) as u8 as f64) / n as f64;
                for u in 0..hidden {
                    grad_h[s][u] += w2[c * hidden + u] as f64 * d_logit;
                }
            }
        }
        for u in 0..hidden {
            let row = rows
                .iter()
                .find(|r| r.epoch == 1 && r.neuron == u as u32)
                .unwrap();
            let act = (0..n).map(|s| grad_h[s][u].abs()).sum::<f64>() / n as f64;
            let pre = (0..n)
                .map(|s| (grad_h[s][u] * f.derivative(z[s][u] as f32) as f64).abs())
                .sum::<f64>()
                / n as f64;
            let active = (0..n).filter(|&s| z[s][u] > 0.0).count() as f64 / n as f64;
            let weight_grad: f64 = (0..inputs)
                .map(|k| {
                    (0..n)
                        .map(|s| {
                            grad_h[s][u]
                                * f.derivative(z[s][u] as f32) as f64
                                * images[s * inputs + k] as f64
                        })
                        .sum::<f64>()
                        .powi(2)
                })
                .sum::<f64>()
                + (0..n)
                    .map(|s| grad_h[s][u] * f.derivative(z[s][u] as f32) as f64)
                    .sum::<f64>()
                    .powi(2);
            assert!(
                (row.grad_act_abs_mean.unwrap() - act).abs() < 1e-6 * (1.0 + act),
                "{} vs {act}",
                row.grad_act_abs_mean.unwrap()
            );
            assert!((row.grad_pre_abs_mean.unwrap() - pre).abs() < 1e-6 * (1.0 + pre));
            assert!((row.train_active_frac.unwrap() - active).abs() < 1e-12);
            assert!((row.weight_grad_norm.unwrap() - weight_grad.sqrt()).abs() < 1e-5);
        }
    }
}
