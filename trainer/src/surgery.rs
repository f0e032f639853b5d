//! What an intervention may do to the network between steps, and the record of what it did.
//!
//! A [`Surgery`] is handed to an intervening hook after an optimiser step or at the end of an
//! epoch. It holds the model and the optimiser and offers the operations of the literature in
//! the study's terms — re-initialise a neuron (ReDo, continual backprop), shrink and perturb the
//! weights — each of which keeps the parameters, their dfdx tensors, the BN running statistics
//! and the optimiser state consistent, and logs one [`InterventionRow`] per neuron it touched.
//! The training loop knows nothing of any particular intervention.
//!
//! Fresh values are drawn from the run's own initialisation (scheme and bias rule of the layer,
//! see [`crate::init`]) with a ChaCha8 stream keyed by (seed, optimiser step, event kind), so an
//! intervention is deterministic and a resumed run draws what the uninterrupted one drew.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::init::init_layer;
use crate::model::{Model, SiteInfo};
use crate::optim::Optimizer;
use crate::param::Param;
use crate::wiring::WeightedLayer;
use necrosis_records::init::BiasInit;
use necrosis_records::tables::InterventionRow;

/// The ChaCha stream base of interventions' draws, apart from the seed's other streams (the
/// initialisation on 0, the shuffles on the epoch numbers, augmentation in [2^62, 2^63),
/// dropout from 3·2^62, the probe on the last).
const INTERVENTION_STREAM: u64 = 1 << 61;

/// One neuron to re-initialise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reset {
    pub neuron: usize,
    /// What the intervention scored it by (ReDo's dormancy score, CBP's utility); recorded.
    pub score: f64,
    /// Continual backprop: the neuron's mean activation, whose contribution through the
    /// outgoing weights is moved into the readers' biases before those weights are zeroed.
    pub carry: Option<f32>,
}

/// The network, its optimiser and the log of changes, lent to an intervention.
pub struct Surgery<'a> {
    model: &'a mut Model,
    optimizer: &'a mut Optimizer,
    rng: ChaCha8Rng,
    epoch: usize,
    at_epoch_end: bool,
    log: Vec<InterventionRow>,
}

impl<'a> Surgery<'a> {
    /// A surgery after optimiser step `optimizer.step` of `epoch` (`at_epoch_end`: after the
    /// epoch's probe pass and records).
    pub fn new(
        model: &'a mut Model,
        optimizer: &'a mut Optimizer,
        seed: u64,
        epoch: usize,
        at_epoch_end: bool,
    ) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(INTERVENTION_STREAM + 2 * optimizer.step + at_epoch_end as u64);
        Self {
            model,
            optimizer,
            rng,
            epoch,
            at_epoch_end,
            log: Vec::new(),
        }
    }

    /// The changes made, one row per neuron (or per whole-network change).
    pub fn finish(self) -> Vec<InterventionRow> {
        self.log
    }

    pub fn sites(&self) -> &[SiteInfo] {
        &self.model.sites
    }

    /// Every parameter, in model order.
    pub fn params(&self) -> Vec<&Param> {
        self.model.params()
    }

    /// Per neuron of `site`, the mean |w| over every weight that reads it: the outgoing weight
    /// magnitude of continual backprop's contribution utility (Dohare et al.'s mean over the
    /// next layer's output units, and kernel positions for a conv).
    pub fn outgoing_magnitude(&self, site: usize) -> Vec<f32> {
        let neurons = self.model.sites[site].neurons;
        let params = self.model.params();
        let mut magnitude = vec![0.0f32; neurons];
        let mut count = 0usize;
        for &reader in &self.model.wiring.sites[site].outgoing {
            let layer = &self.model.wiring.layers[reader];
            let span = layer.fan_in / neurons;
            count += layer.out * span;
            for row in params[layer.weight].value.chunks(layer.fan_in) {
                for (c, m) in magnitude.iter_mut().enumerate() {
                    *m += row[c * span..(c + 1) * span]
                        .iter()
                        .map(|w| w.abs())
                        .sum::<f32>();
                }
            }
        }
        magnitude.iter_mut().for_each(|m| *m /= count.max(1) as f32);
        magnitude
    }

    /// Re-initialises `resets` of `site` as ReDo does (Sokar et al. 2023, their reference code):
    /// the incoming weights and bias re-drawn from the run's initialisation, each BN channel on
    /// the way back to γ = 1, β = 0 and running statistics (0, 1), every weight that reads the
    /// neuron zeroed (after moving `carry` × those weights into the reader's bias, when given),
    /// and the optimiser state of every changed value zeroed. Logs one row per neuron.
    pub fn reset_neurons(&mut self, kind: &str, site: usize, resets: &[Reset]) {
        if resets.is_empty() {
            return;
        }
        let info = self.model.sites[site].clone();
        let wiring = self.model.wiring.sites[site].clone();
        let layers = self.model.wiring.layers.clone();
        let init = self.model.init;
        let mut changed: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        // One fresh draw of each incoming layer serves every neuron reset in this call.
        let fresh: Vec<(Vec<f32>, Vec<f32>)> = wiring
            .incoming
            .iter()
            .map(|&at| fresh_draw(&layers[at], init.bias, &mut self.rng))
            .collect();
        {
            let mut params = self.model.params_mut();
            for (&at, (weights, biases)) in wiring.incoming.iter().zip(&fresh) {
                let layer = &layers[at];
                for reset in resets {
                    let row = reset.neuron * layer.fan_in..(reset.neuron + 1) * layer.fan_in;
                    params[layer.weight].value[row.clone()].copy_from_slice(&weights[row.clone()]);
                    changed.entry(layer.weight).or_default().extend(row);
                    params[layer.bias].value[reset.neuron] = biases[reset.neuron];
                    changed.entry(layer.bias).or_default().push(reset.neuron);
                }
            }
            for norm in &wiring.norms {
                for reset in resets {
                    params[norm.gamma].value[reset.neuron] = 1.0;
                    params[norm.beta].value[reset.neuron] = 0.0;
                    changed.entry(norm.gamma).or_default().push(reset.neuron);
                    changed.entry(norm.beta).or_default().push(reset.neuron);
                }
            }
            for &reader in &wiring.outgoing {
                let layer = &layers[reader];
                let span = layer.fan_in / info.neurons;
                for reset in resets {
                    let columns = reset.neuron * span..(reset.neuron + 1) * span;
                    for row in 0..layer.out {
                        let start = row * layer.fan_in;
                        let entries = start + columns.start..start + columns.end;
                        if let Some(mean) = reset.carry {
                            // The reader's input from this neuron was, on average, mean × Σ w.
                            let sum = params[layer.weight].value[entries.clone()]
                                .iter()
                                .sum::<f32>();
                            params[layer.bias].value[row] += mean * sum;
                        }
                        params[layer.weight].value[entries].fill(0.0);
                        changed
                            .entry(layer.weight)
                            .or_default()
                            .extend(start + columns.start..start + columns.end);
                    }
                    if reset.carry.is_some() {
                        changed.entry(layer.bias).or_default();
                    }
                }
            }
            for &index in changed.keys() {
                params[index].upload();
            }
        }
        let mut buffers = self.model.buffers_mut();
        for norm in &wiring.norms {
            for reset in resets {
                buffers[2 * norm.norm].1[reset.neuron] = 0.0;
                buffers[2 * norm.norm + 1].1[reset.neuron] = 1.0;
            }
        }
        for (index, entries) in &changed {
            for &entry in entries {
                self.optimizer.first_moment[*index][entry] = 0.0;
                if let Some(second) = self.optimizer.second_moment.get_mut(*index) {
                    second[entry] = 0.0;
                }
            }
        }
        for reset in resets {
            self.log.push(InterventionRow {
                epoch: self.epoch as u32,
                step: self.optimizer.step,
                at_epoch_end: self.at_epoch_end,
                kind: kind.to_string(),
                layer: Some(site as u32),
                layer_name: Some(info.layer_name.clone()),
                neuron: Some(reset.neuron as u32),
                score: Some(reset.score),
            });
        }
    }

    /// Shrink and perturb (Ash & Adams 2020): every conv and dense weight and bias becomes
    /// `shrink`·w + `sigma`·ε, ε a fresh draw of its layer's initialisation (biases: the bias
    /// rule's draw). BN scales and shifts, which no scheme draws, are left alone; the optimiser
    /// state is kept. Logs one row with no layer and no neuron.
    pub fn shrink_perturb(&mut self, shrink: f32, sigma: f32) {
        let init = self.model.init;
        let layers = self.model.wiring.layers.clone();
        let mut params = self.model.params_mut();
        for layer in &layers {
            let (weights, biases) = fresh_draw(layer, init.bias, &mut self.rng);
            for (index, noise) in [(layer.weight, weights), (layer.bias, biases)] {
                let param = &mut params[index];
                for (w, e) in param.value.iter_mut().zip(noise) {
                    *w = shrink * *w + sigma * e;
                }
                param.upload();
            }
        }
        self.log.push(InterventionRow {
            epoch: self.epoch as u32,
            step: self.optimizer.step,
            at_epoch_end: self.at_epoch_end,
            kind: "shrink-perturb".into(),
            layer: None,
            layer_name: None,
            neuron: None,
            score: None,
        });
    }
}

/// A fresh draw of `layer`'s weights and biases, as its initialisation drew them.
fn fresh_draw(layer: &WeightedLayer, bias: BiasInit, rng: &mut ChaCha8Rng) -> (Vec<f32>, Vec<f32>) {
    init_layer(
        layer.scheme,
        bias,
        rng,
        layer.out,
        layer.fan_in,
        layer.fan_out,
    )
}
