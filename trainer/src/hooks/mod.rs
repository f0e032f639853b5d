//! Instruments: the [`Hook`] trait and the events the training loop emits.
//!
//! What is measured is kept apart from when (the loop) and how it is stored (the recorder writes
//! rows; analysis reads them). A new statistic is a new `Hook`, not an edit to the loop: every
//! method has an empty default, so a hook implements only the events it needs. The SPEC §2
//! statistics are one hook, [`recorder::NeuronRecorder`], the per-layer measures another,
//! [`representation::LayerRecorder`]; `examples/custom_hook.rs` adds one more.
//!
//! Array layout everywhere: `[batch, neurons, positions]` flattened, i.e. NCHW with the spatial
//! positions of one channel contiguous; a dense site has one position.

pub mod rank;
pub mod recorder;
pub mod representation;

use std::collections::BTreeMap;

pub use crate::activation::{NeuronBatchSums, SiteArrays};
use crate::model::SiteInfo;
pub use crate::surgery::{Reset, Surgery};
pub use necrosis_records::tables::InterventionRow;

/// Where in training an event happens.
#[derive(Debug, Clone, Copy)]
pub struct StepContext {
    /// The run's seed; with the epoch and the step it keys the step's dropout masks.
    pub seed: u64,
    /// The training epoch, from 1.
    pub epoch: usize,
    /// Optimiser steps taken before this one.
    pub step: u64,
    /// Samples in this minibatch.
    pub batch_size: usize,
    /// Learning rate of this step.
    pub lr: f32,
}

/// A site's values in a forward pass: pre-activations z and activations h = f(z).
pub struct SiteForward<'a> {
    pub info: &'a SiteInfo,
    pub batch_size: usize,
    pub z: &'a [f32],
    pub h: &'a [f32],
}

/// A site's values after a backward pass; L is the minibatch's mean cross-entropy.
pub struct SiteBackward<'a> {
    pub info: &'a SiteInfo,
    pub batch_size: usize,
    /// Per neuron: observations with z > 0, Σ|dL/dh| and Σ|dL/dz| over the batch, computed in
    /// the activation's own backward pass.
    pub sums: &'a [NeuronBatchSums],
    /// z, dL/dh and dL/dz of every observation; `Some` when a hook's
    /// [`Hook::wants_backward_arrays`] is true.
    pub arrays: Option<&'a SiteArrays>,
}

/// A parameter, with its gradient when the event follows a backward pass.
pub struct ParamView<'a> {
    /// `<layer_name>.weight` or `<layer_name>.bias`.
    pub name: &'a str,
    /// `[out, in, kh, kw]`, `[out, in]` or `[out]`: row i holds the incoming weights of neuron i.
    pub shape: &'a [usize],
    pub value: &'a [f32],
    pub grad: Option<&'a [f32]>,
}

pub use necrosis_records::tables::EpochRow;

/// An instrument. Events arrive in this order each epoch: for every minibatch
/// `on_batch_forward` (per site), `on_batch_backward` (per site), `on_step`, the optimiser's
/// update, `after_step`; then the probe pass (`on_probe_start`, `on_probe_batch` per batch and
/// site, `on_probe_end`); then `on_epoch_end`, the epoch's records, and `at_epoch_end`. The
/// probe pass also runs once at epoch 0, before training.
///
/// Most hooks only observe. A hook that [`Hook::intervenes`] is also lent a [`Surgery`] in
/// `after_step` and `at_epoch_end`, through which it may change the parameters and the
/// optimiser state (ReDo, continual backprop, shrink-and-perturb: `crate::interventions`); the
/// surgery logs what it changed to interventions.parquet. State such a hook carries across
/// steps goes in the checkpoint through `state` and `restore_state`, so a resumed run continues
/// exactly.
pub trait Hook {
    /// Whether `on_batch_forward` is wanted; the loop skips the event otherwise.
    fn wants_batch_forward(&self) -> bool {
        true
    }
    /// Whether `on_batch_backward` is wanted; without any such hook, the sites keep nothing for
    /// it and training runs at full speed.
    fn wants_batch_backward(&self) -> bool {
        true
    }
    /// Whether `on_batch_backward` needs the arrays of every observation rather than only the
    /// per-neuron sums; the sites copy dL/dz for it each step, so say no when the sums suffice.
    fn wants_backward_arrays(&self) -> bool {
        true
    }
    fn on_batch_forward(&mut self, _ctx: &StepContext, _site: &SiteForward) {}
    fn on_batch_backward(&mut self, _ctx: &StepContext, _site: &SiteBackward) {}
    /// After the backward pass, before the optimiser changes the parameters.
    fn on_step(&mut self, _ctx: &StepContext, _params: &[ParamView]) {}
    fn on_probe_start(&mut self, _epoch: usize) {}
    /// Evaluation-mode forward pass over a batch of the probe set.
    fn on_probe_batch(&mut self, _epoch: usize, _site: &SiteForward) {}
    /// After the probe pass, with the parameters as they are at this epoch.
    fn on_probe_end(&mut self, _epoch: usize, _params: &[ParamView]) {}
    fn on_epoch_end(&mut self, _summary: &EpochRow) {}
    /// Whether this hook changes the network; only then are `after_step` and `at_epoch_end`
    /// called, so a run of observers never builds a surgery.
    fn intervenes(&self) -> bool {
        false
    }
    /// After the optimiser's update of a step (`ctx.step` + 1 steps are then taken).
    fn after_step(&mut self, _ctx: &StepContext, _surgery: &mut Surgery) {}
    /// After epoch `epoch`'s probe pass and records, before its checkpoint; not after the last
    /// epoch, whose network is the run's result.
    fn at_epoch_end(&mut self, _epoch: usize, _surgery: &mut Surgery) {}
    /// Named values to keep in the checkpoint (f32, as stored there).
    fn state(&self) -> Vec<(String, Vec<f32>)> {
        Vec::new()
    }
    /// Takes back what `state` gave, read from the checkpoint; an error names what is missing.
    fn restore_state(&mut self, _stored: &BTreeMap<String, Vec<f32>>) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The run's instruments: the SPEC §2 recorder and the layer recorder (when on) and the user's
/// hooks, behind one `Hook` that forwards every event to each member that wants it.
pub struct HookSet {
    pub recorder: Option<recorder::NeuronRecorder>,
    pub layers: Option<representation::LayerRecorder>,
    pub others: Vec<Box<dyn Hook>>,
    /// What interventions changed since the last call of [`HookSet::take_interventions`].
    pub interventions: Vec<InterventionRow>,
}

impl HookSet {
    /// The SPEC §2 recorder (when on) and `others`; the layer recorder is set apart, as it
    /// needs the network's initial weights.
    pub fn new(recorder: Option<recorder::NeuronRecorder>, others: Vec<Box<dyn Hook>>) -> Self {
        Self {
            recorder,
            layers: None,
            others,
            interventions: Vec::new(),
        }
    }

    /// Lends the network to the intervening members, after a step (`at_epoch_end` false) or at
    /// the end of `ctx.epoch`, and keeps the log of what they changed.
    pub fn intervene(
        &mut self,
        model: &mut crate::model::Model,
        optimizer: &mut crate::optim::Optimizer,
        ctx: &StepContext,
        at_epoch_end: bool,
    ) {
        if !self.intervenes() {
            return;
        }
        let mut surgery = Surgery::new(model, optimizer, ctx.seed, ctx.epoch, at_epoch_end);
        if at_epoch_end {
            self.at_epoch_end(ctx.epoch, &mut surgery);
        } else {
            self.after_step(ctx, &mut surgery);
        }
        self.interventions.extend(surgery.finish());
    }

    /// The changes logged since the last call.
    pub fn take_interventions(&mut self) -> Vec<InterventionRow> {
        std::mem::take(&mut self.interventions)
    }

    fn members(&mut self) -> impl Iterator<Item = &mut dyn Hook> {
        let recorder = self.recorder.iter_mut().map(|r| r as &mut dyn Hook);
        let layers = self.layers.iter_mut().map(|r| r as &mut dyn Hook);
        recorder
            .chain(layers)
            .chain(self.others.iter_mut().map(|h| h.as_mut() as &mut dyn Hook))
    }

    pub fn is_empty(&self) -> bool {
        self.recorder.is_none() && self.layers.is_none() && self.others.is_empty()
    }

    /// The recorder's rows of the epochs finished since the last call (none when it is off).
    pub fn take_neuron_rows(&mut self) -> Vec<recorder::NeuronRow> {
        self.recorder
            .as_mut()
            .map(|r| r.take_rows())
            .unwrap_or_default()
    }

    /// The layer recorder's rows of the epochs finished since the last call (none when off).
    pub fn take_layer_rows(&mut self) -> Vec<representation::LayerRow> {
        self.layers
            .as_mut()
            .map(|r| r.take_rows())
            .unwrap_or_default()
    }
}

impl Hook for HookSet {
    fn wants_batch_forward(&self) -> bool {
        self.recorder.iter().any(|r| r.wants_batch_forward())
            || self.layers.iter().any(|r| r.wants_batch_forward())
            || self.others.iter().any(|h| h.wants_batch_forward())
    }
    fn wants_batch_backward(&self) -> bool {
        self.recorder.iter().any(|r| r.wants_batch_backward())
            || self.layers.iter().any(|r| r.wants_batch_backward())
            || self.others.iter().any(|h| h.wants_batch_backward())
    }
    fn wants_backward_arrays(&self) -> bool {
        let wants = |h: &dyn Hook| h.wants_batch_backward() && h.wants_backward_arrays();
        self.recorder.iter().any(|r| wants(r))
            || self.layers.iter().any(|r| wants(r))
            || self.others.iter().any(|h| wants(h.as_ref()))
    }
    fn on_batch_forward(&mut self, ctx: &StepContext, site: &SiteForward) {
        self.members()
            .filter(|h| h.wants_batch_forward())
            .for_each(|h| h.on_batch_forward(ctx, site));
    }
    fn on_batch_backward(&mut self, ctx: &StepContext, site: &SiteBackward) {
        self.members()
            .filter(|h| h.wants_batch_backward())
            .for_each(|h| h.on_batch_backward(ctx, site));
    }
    fn on_step(&mut self, ctx: &StepContext, params: &[ParamView]) {
        self.members().for_each(|h| h.on_step(ctx, params));
    }
    fn on_probe_start(&mut self, epoch: usize) {
        self.members().for_each(|h| h.on_probe_start(epoch));
    }
    fn on_probe_batch(&mut self, epoch: usize, site: &SiteForward) {
        self.members().for_each(|h| h.on_probe_batch(epoch, site));
    }
    fn on_probe_end(&mut self, epoch: usize, params: &[ParamView]) {
        self.members().for_each(|h| h.on_probe_end(epoch, params));
    }
    fn on_epoch_end(&mut self, summary: &EpochRow) {
        self.members().for_each(|h| h.on_epoch_end(summary));
    }
    fn intervenes(&self) -> bool {
        self.others.iter().any(|h| h.intervenes())
    }
    fn after_step(&mut self, ctx: &StepContext, surgery: &mut Surgery) {
        self.members()
            .filter(|h| h.intervenes())
            .for_each(|h| h.after_step(ctx, surgery));
    }
    fn at_epoch_end(&mut self, epoch: usize, surgery: &mut Surgery) {
        self.members()
            .filter(|h| h.intervenes())
            .for_each(|h| h.at_epoch_end(epoch, surgery));
    }
    fn state(&self) -> Vec<(String, Vec<f32>)> {
        self.others.iter().flat_map(|h| h.state()).collect()
    }
    fn restore_state(&mut self, stored: &BTreeMap<String, Vec<f32>>) -> anyhow::Result<()> {
        self.members().try_for_each(|h| h.restore_state(stored))
    }
}
