//! One epoch's work on the model: the minibatch steps (forward, backward, hooks, optimiser), the
//! test evaluation, and the probe pass that the instruments read.

use std::sync::atomic::Ordering;

use anyhow::Result;
use dfdx::prelude::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::activation::CaptureRequest;
use crate::data::{augment, Dataset, Split};
use crate::hooks::{Hook, HookSet, ParamView, SiteBackward, SiteForward, StepContext};
use crate::layers::{dropout_key, TrainPass};
use crate::model::Model;
use crate::ops::{tensor_values, Tape};
use crate::optim::Optimizer;
use crate::profile;
use necrosis_records::config::RunConfig;

use super::*;

pub(super) struct EpochResult {
    /// Mean training loss and accuracy; `None` if the loss diverged or the run was stopped.
    pub(super) result: Option<(f64, f64)>,
    pub(super) interrupted: bool,
    pub(super) bad_loss: f32,
}

pub(super) fn gather(split: &Split, indices: &[usize], sample_len: usize) -> (Vec<f32>, Vec<u32>) {
    let mut images = Vec::with_capacity(indices.len() * sample_len);
    let mut labels = Vec::with_capacity(indices.len());
    for &i in indices {
        images.extend_from_slice(split.sample(i, sample_len));
        labels.push(split.labels[i]);
    }
    (images, labels)
}

pub(super) fn one_hot(
    dev: &Cpu,
    labels: &[u32],
    classes: usize,
) -> Tensor<(usize, usize), f32, Cpu> {
    let mut values = vec![0.0f32; labels.len() * classes];
    for (row, &label) in labels.iter().enumerate() {
        values[row * classes + label as usize] = 1.0;
    }
    dev.tensor_from_vec(values, (labels.len(), classes))
}

pub(super) fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold(0, |best, (i, v)| if *v > row[best] { i } else { best })
}

pub(super) fn train_epoch(
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
    let pad_values = augment::pad_values(&dataset.normalization);
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
        let (mut images, labels) = gather(&dataset.train, indices, sample_len);
        if !config.augment.is_none() {
            augment::augment_batch(
                &mut images,
                dataset.input_shape(),
                &config.augment,
                &pad_values,
                config.seed,
                epoch,
                batch_index,
            );
        }
        let ctx = StepContext {
            seed: config.seed,
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
    let mut pass = TrainPass {
        dropout_key: dropout_key(ctx.seed, ctx.epoch, ctx.step),
        batch_stats: Vec::new(),
    };
    let logits = profile::span("forward: glue (flatten, residual adds)", || {
        model.forward(
            input,
            &mut |site, z, h| {
                if wants_forward {
                    let event = SiteForward {
                        info: &sites[site],
                        batch_size: n,
                        z,
                        h,
                    };
                    profile::span("instruments: forward events", || {
                        hooks.on_batch_forward(ctx, &event)
                    });
                }
            },
            captures.as_deref(),
            Some(&mut pass),
        )
    });
    let logit_values = tensor_values(&logits);
    let correct = logit_values
        .chunks(classes)
        .zip(labels)
        .filter(|(row, &l)| argmax(row) == l as usize)
        .count();
    let loss = profile::span("loss forward", || {
        cross_entropy_with_logits_loss(logits, one_hot(&dev, labels, classes))
    });
    let loss_value = loss.array();
    if !loss_value.is_finite() {
        return Ok(StepResult {
            loss: loss_value,
            correct,
        });
    }
    // What the tape runs besides our ops: the loss's backward and dfdx's own bookkeeping.
    let mut grads = profile::span("backward: loss, dfdx's tape", || loss.backward());
    let param_grads = profile::span("gradients taken from the tape", || {
        model
            .params()
            .iter()
            .map(|p| p.take_grad(&mut grads))
            .collect::<Result<Vec<_>>>()
    })?;
    drop(grads);
    profile::span("instruments: backward and step events", || {
        site_backward_and_step_events(model, hooks, ctx, n, captures.as_deref(), &param_grads)
    });
    profile::span("optimiser", || {
        optimizer.step(model.params_mut(), &param_grads, ctx.lr)
    });
    profile::span("interventions, BN running statistics", || {
        model.update_running_stats(&pass);
        hooks.intervene(model, optimizer, ctx, false);
    });
    Ok(StepResult {
        loss: loss_value,
        correct,
    })
}

/// The hooks' backward event of each site whose capture was asked for, then their step event.
fn site_backward_and_step_events(
    model: &Model,
    hooks: &mut HookSet,
    ctx: &StepContext,
    n: usize,
    captures: Option<&[CaptureRequest]>,
    param_grads: &[Vec<f32>],
) {
    let sites = &model.sites;
    for (site, request) in sites.iter().zip(captures.iter().copied().flatten()) {
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
            .zip(param_grads)
            .map(|(p, g)| ParamView {
                name: &p.name,
                shape: &p.shape,
                value: &p.value,
                grad: Some(g),
            })
            .collect();
        hooks.on_step(ctx, &views);
    }
}

/// Mean cross-entropy and accuracy on a split, in evaluation mode (no tape).
pub(super) fn evaluate(model: &Model, split: &Split, sample_len: usize) -> Result<(f64, f64)> {
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
pub(super) fn probe_pass(
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
