//! Continual backprop (Dohare, Hernandez-Garcia, Lan, Rahman, Mahmood & Sutton, "Loss of
//! plasticity in deep continual learning", Nature 2024), after their generate-and-test code:
//! after every step each unit's age grows by one and its contribution utility is updated,
//! u ← η·u + (1 − η)·E|h|·mean|w_out| with η = 0.99 (E over the step's minibatch and a conv
//! channel's positions; mean|w_out| over every weight that reads the unit), beside a running
//! mean activation f ← η·f + (1 − η)·E h. Both are bias-corrected by 1 − η^age. Each site
//! accumulates `rate` × (units older than `maturity`) per step; each time that reaches a whole
//! number, that many mature units of lowest corrected utility are replaced: their corrected mean
//! activation times their outgoing weights is moved into the readers' biases, then they are
//! re-initialised like ReDo's neurons, and their utility, mean and age are zeroed.
//!
//! All state is f32, as the checkpoint stores it, so that a resumed run is bit-identical.

use std::collections::BTreeMap;

use anyhow::{bail, Result};

use crate::hooks::{Hook, Reset, SiteForward, StepContext, Surgery};
use crate::model::SiteInfo;

/// Dohare et al.'s decay of the utility and the mean activation.
pub const DECAY: f32 = 0.99;

#[derive(Debug, Clone, PartialEq)]
struct SiteState {
    utility: Vec<f32>,
    mean_activation: Vec<f32>,
    age: Vec<f32>,
    /// Replacements owed but not yet made (the fractional part).
    owed: f32,
    /// This step's Σh and Σ|h| per unit, and the observations summed.
    step_sum: Vec<f64>,
    step_abs: Vec<f64>,
    step_observations: u64,
}

pub struct ContinualBackprop {
    rate: f32,
    maturity: u64,
    sites: Vec<SiteState>,
}

impl ContinualBackprop {
    pub fn new(rate: f64, maturity: u64, sites: &[SiteInfo]) -> Self {
        let zeros = |n: usize| vec![0.0f32; n];
        Self {
            rate: rate as f32,
            maturity,
            sites: sites
                .iter()
                .map(|s| SiteState {
                    utility: zeros(s.neurons),
                    mean_activation: zeros(s.neurons),
                    age: zeros(s.neurons),
                    owed: 0.0,
                    step_sum: vec![0.0; s.neurons],
                    step_abs: vec![0.0; s.neurons],
                    step_observations: 0,
                })
                .collect(),
        }
    }
}

impl Hook for ContinualBackprop {
    fn wants_batch_backward(&self) -> bool {
        false
    }
    fn wants_backward_arrays(&self) -> bool {
        false
    }
    fn intervenes(&self) -> bool {
        true
    }

    fn on_batch_forward(&mut self, _ctx: &StepContext, site: &SiteForward) {
        let info = site.info;
        let state = &mut self.sites[info.site];
        for sample in site.h.chunks(info.neurons * info.positions) {
            for (c, values) in sample.chunks(info.positions).enumerate() {
                for &v in values {
                    state.step_sum[c] += v as f64;
                    state.step_abs[c] += v.abs() as f64;
                }
            }
        }
        state.step_observations += (site.batch_size * info.positions) as u64;
    }

    fn after_step(&mut self, _ctx: &StepContext, surgery: &mut Surgery) {
        for (site, state) in self.sites.iter_mut().enumerate() {
            let n = state.step_observations.max(1) as f64;
            let magnitude = surgery.outgoing_magnitude(site);
            for (c, magnitude) in magnitude.iter().enumerate() {
                state.age[c] += 1.0;
                let mean = (state.step_sum[c] / n) as f32;
                let abs = (state.step_abs[c] / n) as f32;
                state.mean_activation[c] = DECAY * state.mean_activation[c] + (1.0 - DECAY) * mean;
                state.utility[c] = DECAY * state.utility[c] + (1.0 - DECAY) * abs * magnitude;
            }
            state.step_sum.iter_mut().for_each(|s| *s = 0.0);
            state.step_abs.iter_mut().for_each(|s| *s = 0.0);
            state.step_observations = 0;

            let correction = |age: f32| 1.0 - DECAY.powf(age);
            let mut mature: Vec<usize> = (0..state.age.len())
                .filter(|&c| state.age[c] > self.maturity as f32)
                .collect();
            if mature.is_empty() {
                continue;
            }
            state.owed += self.rate * mature.len() as f32;
            if state.owed < 1.0 {
                continue;
            }
            let count = (state.owed.floor() as usize).min(mature.len());
            state.owed -= count as f32;
            let corrected = |c: usize| state.utility[c] / correction(state.age[c]);
            // Lowest corrected utility first; ties by index, so the choice is deterministic.
            mature.sort_by(|&a, &b| corrected(a).total_cmp(&corrected(b)).then(a.cmp(&b)));
            let resets: Vec<Reset> = mature[..count]
                .iter()
                .map(|&c| Reset {
                    neuron: c,
                    score: corrected(c) as f64,
                    carry: Some(state.mean_activation[c] / correction(state.age[c])),
                })
                .collect();
            surgery.reset_neurons("cbp", site, &resets);
            for reset in &resets {
                let c = reset.neuron;
                (state.utility[c], state.mean_activation[c], state.age[c]) = (0.0, 0.0, 0.0);
            }
        }
    }

    fn state(&self) -> Vec<(String, Vec<f32>)> {
        let mut stored = Vec::new();
        for (site, state) in self.sites.iter().enumerate() {
            stored.push((format!("cbp.{site}.utility"), state.utility.clone()));
            stored.push((
                format!("cbp.{site}.mean_activation"),
                state.mean_activation.clone(),
            ));
            stored.push((format!("cbp.{site}.age"), state.age.clone()));
            stored.push((format!("cbp.{site}.owed"), vec![state.owed]));
        }
        stored
    }

    fn restore_state(&mut self, stored: &BTreeMap<String, Vec<f32>>) -> Result<()> {
        for (site, state) in self.sites.iter_mut().enumerate() {
            let take = |name: &str, into: &mut [f32]| -> Result<()> {
                let key = format!("cbp.{site}.{name}");
                match stored.get(&key) {
                    Some(values) if values.len() == into.len() => {
                        into.copy_from_slice(values);
                        Ok(())
                    }
                    Some(values) => bail!(
                        "continual backprop state {key} has {} values, the site has {}",
                        values.len(),
                        into.len()
                    ),
                    None => bail!("the checkpoint has no continual backprop state {key}"),
                }
            };
            take("utility", &mut state.utility)?;
            take("mean_activation", &mut state.mean_activation)?;
            take("age", &mut state.age)?;
            let mut owed = [0.0f32];
            take("owed", &mut owed)?;
            state.owed = owed[0];
        }
        Ok(())
    }
}
