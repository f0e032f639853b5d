//! Shrink-and-perturb (Ash & Adams, "On Warm-Starting Neural Network Training", NeurIPS 2020):
//! periodically w ← shrink·w + sigma·ε for every conv and dense weight and bias, ε a fresh draw
//! of the run's initialisation (see [`Surgery::shrink_perturb`]).

use super::{acts_after_step, acts_at_epoch_end};
use crate::hooks::{Hook, StepContext, Surgery};
use necrosis_records::intervention::Period;

/// `shrink-perturb:SHRINK:SIGMA:EVERY`.
pub struct ShrinkPerturb {
    pub shrink: f32,
    pub sigma: f32,
    pub every: Period,
}

impl Hook for ShrinkPerturb {
    fn wants_batch_forward(&self) -> bool {
        false
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
    fn after_step(&mut self, ctx: &StepContext, surgery: &mut Surgery) {
        if acts_after_step(self.every, ctx.step + 1) {
            surgery.shrink_perturb(self.shrink, self.sigma);
        }
    }
    fn at_epoch_end(&mut self, epoch: usize, surgery: &mut Surgery) {
        if acts_at_epoch_end(self.every, epoch) {
            surgery.shrink_perturb(self.shrink, self.sigma);
        }
    }
}
