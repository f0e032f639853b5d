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

pub use crate::activation::{NeuronBatchSums, SiteArrays};
use crate::model::SiteInfo;

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
/// `on_batch_forward` (per site), `on_batch_backward` (per site), `on_step`; then the probe pass
/// (`on_probe_start`, `on_probe_batch` per batch and site, `on_probe_end`); then `on_epoch_end`.
/// The probe pass also runs once at epoch 0, before training.
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
}

/// The run's instruments: the SPEC §2 recorder and the layer recorder (when on) and the user's
/// hooks, behind one `Hook` that forwards every event to each member that wants it.
pub struct HookSet {
    pub recorder: Option<recorder::NeuronRecorder>,
    pub layers: Option<representation::LayerRecorder>,
    pub others: Vec<Box<dyn Hook>>,
}

impl HookSet {
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
}
