//! The training loop of one run: epoch 0 probe, then for every epoch the minibatch steps, the
//! test evaluation, the probe pass, and the records and checkpoint of the epoch.
//!
//! Determinism: initialisation comes from the seed, each epoch's shuffle from (seed, epoch) alone,
//! and every reduction has a fixed order, so the same config gives identical records (timing
//! columns aside) and a resumed run continues exactly as an uninterrupted one would.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::activation::{activation_by_name, Activation};
use crate::data::Dataset;
use crate::hooks::recorder::{NeuronRecorder, NeuronRow};
use crate::hooks::representation::{LayerRecorder, LayerRow};
use crate::hooks::{EpochRow, Hook, HookSet, InterventionRow, StepContext};
use crate::model::Model;
use crate::optim::Optimizer;
use necrosis_records::checkpoint::checkpoint_path;
use necrosis_records::config::{InvalidConfig, RunConfig};
use necrosis_records::files::{now_rfc3339, remove_stale_temporaries};
use necrosis_records::manifest::RunIdentity;
use necrosis_records::{Manifest, RunStatus};

#[cfg(test)]
mod born_dead_tests;
mod checkpoint;
mod step;
#[cfg(test)]
mod tests;

use checkpoint::*;
pub use checkpoint::{probe_indices, ConfigMismatch};
use step::*;
pub use step::{train_step, StepResult};

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
    /// What interventions changed, through the last completed epoch.
    interventions: Vec<InterventionRow>,
    /// The intervening hooks' state from the checkpoint (empty on a fresh start).
    hook_state: BTreeMap<String, Vec<f32>>,
    /// layers.parquet's rows; `None` when the instruments are off (the file is not written).
    layers: Option<Vec<LayerRow>>,
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
        restore(
            run_dir,
            config,
            dataset,
            activation.clone(),
            options.instruments,
        )?
    } else {
        fresh(run_dir, config, dataset, activation.clone(), &options)?
    };
    let mut others = std::mem::take(&mut options.hooks);
    // The configuration's intervention acts after the user's hooks have seen each event.
    others.extend(crate::interventions::hook_for(
        &config.intervention,
        &state.model.sites,
    ));
    let mut hooks = HookSet::new(
        options
            .instruments
            .then(|| NeuronRecorder::new(state.model.sites.clone(), activation.clone())),
        others,
    );
    // W₀: a fresh run's model as drawn; a resumed run's model is the checkpoint's, so its
    // initialisation is drawn again from the seed.
    if options.instruments {
        let rebuilt;
        let initial = match resumed {
            true => {
                rebuilt = build_model(config, dataset, activation.clone())?.1;
                &rebuilt
            }
            false => &state.model,
        };
        hooks.layers = Some(LayerRecorder::new(
            state.model.sites.clone(),
            &initial.params(),
        ));
    }
    if resumed {
        hooks
            .restore_state(&state.hook_state)
            .with_context(|| format!("resuming {}", checkpoint_path(run_dir).display()))?;
    }

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
        let phases = EpochPhases {
            epoch: 0,
            train_seconds: 0.0,
            eval_seconds,
            probe_seconds,
            save_seconds: 0.0,
        };
        finish_epoch(
            run_dir,
            &mut state,
            summary,
            &mut hooks,
            &mut options,
            started,
            phases,
        )?;
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
        let phases = EpochPhases {
            epoch,
            train_seconds,
            eval_seconds,
            probe_seconds,
            save_seconds: 0.0,
        };
        finish_epoch(
            run_dir,
            &mut state,
            summary,
            &mut hooks,
            &mut options,
            started,
            phases,
        )?;
    }
    state.manifest.status = RunStatus::Complete;
    state.manifest.ended_at = Some(now_rfc3339());
    state.manifest.write(run_dir)?;
    let final_test_acc = state.epochs.last().map(|e| e.test_acc).unwrap_or(f64::NAN);
    Ok(RunOutcome::Complete { final_test_acc })
}

/// Ends an epoch: tells the hooks and the progress callback, keeps its rows, and saves it; then
/// reports the epoch's `phases`, whose `save_seconds` is the time this took.
fn finish_epoch(
    run_dir: &Path,
    state: &mut State,
    summary: EpochRow,
    hooks: &mut HookSet,
    options: &mut RunOptions,
    started: Instant,
    phases: EpochPhases,
) -> Result<()> {
    let (saved, save_seconds) = timed(|| {
        hooks.on_epoch_end(&summary);
        (options.progress)(Progress::Epoch(&summary));
        let epoch = summary.epoch as usize;
        let config = &state.manifest.config;
        // The records above show the network as the epoch left it; an intervention acts on it
        // now, before the checkpoint, and not after the last epoch, whose network is the result.
        if epoch >= 1 && epoch < config.epochs {
            let ctx = StepContext {
                seed: config.seed,
                epoch,
                step: state.optimizer.step,
                batch_size: 0,
                lr: summary.lr as f32,
            };
            hooks.intervene(&mut state.model, &mut state.optimizer, &ctx, true);
        }
        state.epochs.push(summary);
        state.neurons.extend(hooks.take_neuron_rows());
        state.interventions.extend(hooks.take_interventions());
        if let Some(layers) = &mut state.layers {
            layers.extend(hooks.take_layer_rows());
        }
        let seconds = elapsed_now(state, started);
        save_epoch(run_dir, state, epoch, seconds, &hooks.state())
    });
    saved?;
    (options.progress)(Progress::Phases(EpochPhases {
        save_seconds,
        ..phases
    }));
    Ok(())
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
