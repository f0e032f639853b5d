//! ReDo, "Recycling Dormant neurons" (Sokar, Agarwal, Castro & Evci, "The Dormant Neuron
//! Phenomenon in Deep Reinforcement Learning", ICML 2023): every period, each neuron whose
//! τ-dormant score s = E|h| / (mean over its layer of E|h|) is at most τ is re-initialised —
//! incoming weights re-drawn, bias reset, outgoing weights zeroed, optimiser state reset (see
//! [`Surgery::reset_neurons`]).
//!
//! E|h| is taken over every observation of the neuron (samples × positions for a conv channel):
//! at an epoch period on the evaluation-mode probe pass of that epoch (so the score is the
//! recorder's SPEC §3 dormancy score), at a step period on the step's own minibatch, as the
//! reference code scores a batch of the training data. A layer whose activations are all zero
//! gives every neuron the score 0, so all of them are re-initialised.

use super::{acts_after_step, acts_at_epoch_end};
use crate::hooks::{Hook, Reset, SiteForward, StepContext, Surgery};
use crate::model::SiteInfo;
use necrosis_records::intervention::Period;

pub struct Redo {
    tau: f64,
    every: Period,
    /// Per site and neuron: Σ|h| and the observations summed, over the pass being scored.
    sums: Vec<Vec<f64>>,
    observations: Vec<u64>,
}

impl Redo {
    pub fn new(tau: f64, every: Period, sites: &[SiteInfo]) -> Self {
        Self {
            tau,
            every,
            sums: sites.iter().map(|s| vec![0.0; s.neurons]).collect(),
            observations: vec![0; sites.len()],
        }
    }

    fn clear(&mut self) {
        self.sums.iter_mut().flatten().for_each(|s| *s = 0.0);
        self.observations.iter_mut().for_each(|n| *n = 0);
    }

    fn add(&mut self, site: &SiteForward) {
        let info = site.info;
        let (neurons, positions) = (info.neurons, info.positions);
        let sums = &mut self.sums[info.site];
        for sample in site.h.chunks(neurons * positions) {
            for (c, values) in sample.chunks(positions).enumerate() {
                sums[c] += values.iter().map(|v| v.abs() as f64).sum::<f64>();
            }
        }
        self.observations[info.site] += (site.batch_size * positions) as u64;
    }

    /// Resets every τ-dormant neuron of every site, then forgets the sums.
    fn recycle(&mut self, surgery: &mut Surgery) {
        for (site, sums) in self.sums.iter().enumerate() {
            let n = self.observations[site].max(1) as f64;
            let scores = dormancy_scores(&sums.iter().map(|s| s / n).collect::<Vec<_>>());
            let resets: Vec<Reset> = scores
                .iter()
                .enumerate()
                .filter(|(_, &score)| score <= self.tau)
                .map(|(neuron, &score)| Reset {
                    neuron,
                    score,
                    carry: None,
                })
                .collect();
            surgery.reset_neurons("redo", site, &resets);
        }
        self.clear();
    }
}

/// Sokar's score of each neuron from its mean |h|: divided by the layer's mean (0 where the
/// layer's mean is 0, as the SPEC's dormancy measure).
pub fn dormancy_scores(mean_abs: &[f64]) -> Vec<f64> {
    let layer_mean = mean_abs.iter().sum::<f64>() / mean_abs.len().max(1) as f64;
    mean_abs
        .iter()
        .map(|m| {
            if layer_mean > 0.0 {
                m / layer_mean
            } else {
                0.0
            }
        })
        .collect()
}

impl Hook for Redo {
    fn wants_batch_forward(&self) -> bool {
        matches!(self.every, Period::Steps(_))
    }
    fn wants_batch_backward(&self) -> bool {
        false
    }
    fn wants_backward_arrays(&self) -> bool {
        false
    }
    fn intervenes(&self) -> bool {
        true
    }
    fn on_batch_forward(&mut self, ctx: &StepContext, site: &SiteForward) {
        // Only the minibatch of a step after which ReDo acts is scored.
        if acts_after_step(self.every, ctx.step + 1) {
            self.add(site);
        }
    }
    fn after_step(&mut self, ctx: &StepContext, surgery: &mut Surgery) {
        if acts_after_step(self.every, ctx.step + 1) {
            self.recycle(surgery);
        }
    }
    fn on_probe_start(&mut self, _epoch: usize) {
        if matches!(self.every, Period::Epochs(_)) {
            self.clear();
        }
    }
    fn on_probe_batch(&mut self, _epoch: usize, site: &SiteForward) {
        if matches!(self.every, Period::Epochs(_)) {
            self.add(site);
        }
    }
    fn at_epoch_end(&mut self, epoch: usize, surgery: &mut Surgery) {
        if acts_at_epoch_end(self.every, epoch) {
            self.recycle(surgery);
        }
    }
}
