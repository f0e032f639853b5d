//! The SPEC §2 recorder: per neuron and epoch, probe statistics (evaluation-mode pass over the
//! probe set) and training statistics (accumulated over the epoch's minibatches), one
//! [`NeuronRow`] each, the rows of neurons.parquet.
//!
//! Sums are kept in f64 per neuron (f32 within one sample's positions) so that means over
//! millions of observations stay exact to well below the precision the analysis uses.

use multiversion::multiversion;
use rayon::prelude::*;

use super::{Hook, ParamView, SiteBackward, SiteForward, StepContext};
use crate::activation::Activation;
use crate::model::SiteInfo;
use crate::ops::lane_sum_of;
use crate::saturation::SaturationThresholds;

pub use necrosis_records::tables::NeuronRow;

/// Weights of a layer from which its per-neuron gradient norms are summed in parallel; below
/// it, on one thread (a neuron's norm is the same either way).
const PARALLEL_NORMS_FROM: usize = 1 << 20;

/// Probe-pass sums of one neuron.
#[derive(Debug, Clone, Default)]
struct ProbeSums {
    observations: u64,
    active: u64,
    samples: u64,
    samples_active: u64,
    max_pre: f64,
    sum_pre: f64,
    sum_sq_pre: f64,
    sum_abs_act: f64,
    sum_deriv: f64,
    saturated_deriv: u64,
    saturated_output: u64,
}

/// Training sums of one neuron over an epoch.
#[derive(Debug, Clone, Default)]
struct TrainingSums {
    observations: u64,
    active: u64,
    sum_abs_grad_act: f64,
    sum_abs_grad_pre: f64,
    sum_weight_grad_norm: f64,
    steps: u64,
}

/// Records the SPEC §2 statistics of every neuron.
pub struct NeuronRecorder {
    sites: Vec<SiteInfo>,
    activation: Activation,
    /// The activation's saturation thresholds, worked out once.
    saturation: SaturationThresholds,
    probe: Vec<Vec<ProbeSums>>,
    training: Vec<Vec<TrainingSums>>,
    rows: Vec<NeuronRow>,
}

impl NeuronRecorder {
    pub fn new(sites: Vec<SiteInfo>, activation: Activation) -> Self {
        let probe = sites
            .iter()
            .map(|s| vec![ProbeSums::default(); s.neurons])
            .collect();
        let training = sites
            .iter()
            .map(|s| vec![TrainingSums::default(); s.neurons])
            .collect();
        Self {
            sites,
            saturation: SaturationThresholds::of(&*activation),
            activation,
            probe,
            training,
            rows: Vec::new(),
        }
    }

    /// The rows of the epochs finished since the last call.
    pub fn take_rows(&mut self) -> Vec<NeuronRow> {
        std::mem::take(&mut self.rows)
    }
}

/// The probe statistics of one neuron's positions in one sample.
struct ProbeSlice {
    active: u32,
    max: f32,
    /// Σ z and Σ z² in f64: the variance is their difference, which f32 would cancel away.
    sum: f64,
    sum_sq: f64,
    abs_h: f32,
    derivative: f32,
    /// Observations with |f'(z)| or f(z) past the saturation thresholds.
    saturated_deriv: u32,
    saturated_output: u32,
}

/// [`ProbeSlice`] of z, h = f(z) and f'(z), over 8 lanes of independent accumulators so that
/// the loop is vector code rather than eight chains of dependent operations.
#[multiversion(targets(
    "x86_64+avx2+fma+avx512f+avx512vl+avx512bw+avx512dq",
    "x86_64+avx2+fma"
))]
fn probe_slice(
    z: &[f32],
    h: &[f32],
    derivative: &[f32],
    saturation: &SaturationThresholds,
) -> ProbeSlice {
    const LANES: usize = 8;
    let mut saturated_deriv = [0u32; LANES];
    let mut saturated_output = [0u32; LANES];
    let mut active = [0u32; LANES];
    let mut max = [f32::NEG_INFINITY; LANES];
    let mut sum = [0.0f64; LANES];
    let mut sum_sq = [0.0f64; LANES];
    let mut abs_h = [0.0f32; LANES];
    let mut deriv = [0.0f32; LANES];
    let whole = z.len() / LANES * LANES;
    let chunks = z[..whole]
        .chunks_exact(LANES)
        .zip(h[..whole].chunks_exact(LANES))
        .zip(derivative[..whole].chunks_exact(LANES));
    for ((z, h), d) in chunks {
        let z: &[f32; LANES] = z.try_into().expect("exact chunk");
        let h: &[f32; LANES] = h.try_into().expect("exact chunk");
        let d: &[f32; LANES] = d.try_into().expect("exact chunk");
        for i in 0..LANES {
            active[i] += (z[i] > 0.0) as u32;
            max[i] = max[i].max(z[i]);
            let v = z[i] as f64;
            sum[i] += v;
            sum_sq[i] += v * v;
            abs_h[i] += h[i].abs();
            deriv[i] += d[i];
            saturated_deriv[i] += saturation.derivative_saturated(d[i]) as u32;
            saturated_output[i] += saturation.output_saturated(h[i]) as u32;
        }
    }
    let mut slice = ProbeSlice {
        active: active.iter().sum(),
        max: max.iter().cloned().fold(f32::NEG_INFINITY, f32::max),
        sum: sum.iter().sum(),
        sum_sq: sum_sq.iter().sum(),
        abs_h: abs_h.iter().sum(),
        derivative: deriv.iter().sum(),
        saturated_deriv: saturated_deriv.iter().sum(),
        saturated_output: saturated_output.iter().sum(),
    };
    for ((&z, &h), &d) in z[whole..].iter().zip(&h[whole..]).zip(&derivative[whole..]) {
        slice.active += (z > 0.0) as u32;
        slice.max = slice.max.max(z);
        slice.sum += z as f64;
        slice.sum_sq += (z as f64) * (z as f64);
        slice.abs_h += h.abs();
        slice.derivative += d;
        slice.saturated_deriv += saturation.derivative_saturated(d) as u32;
        slice.saturated_output += saturation.output_saturated(h) as u32;
    }
    slice
}

/// Σ v² in f64, over lanes of independent sums so that the loop is vector code rather than one
/// chain of dependent adds (this runs on every weight gradient, every step).
#[multiversion(targets(
    "x86_64+avx2+fma+avx512f+avx512vl+avx512bw+avx512dq",
    "x86_64+avx2+fma"
))]
fn sum_of_squares(values: &[f32]) -> f64 {
    lane_sum_of(values, |v| (v as f64) * (v as f64))
}

/// Splits `[batch, neurons, positions]` into the slices of neuron `c`, one per sample.
fn neuron_slices(
    values: &[f32],
    batch: usize,
    neurons: usize,
    positions: usize,
    c: usize,
) -> impl Iterator<Item = &[f32]> {
    (0..batch).map(move |n| {
        let start = (n * neurons + c) * positions;
        &values[start..start + positions]
    })
}

impl Hook for NeuronRecorder {
    // train_active_frac is counted in the backward pass, so the forward event is not needed.
    fn wants_batch_forward(&self) -> bool {
        false
    }

    fn wants_backward_arrays(&self) -> bool {
        false
    }

    fn on_batch_backward(&mut self, _ctx: &StepContext, event: &SiteBackward) {
        let observations = (event.batch_size * event.info.positions) as u64;
        for (sums, batch) in self.training[event.info.site].iter_mut().zip(event.sums) {
            sums.active += batch.active;
            sums.sum_abs_grad_act += batch.abs_grad_h;
            sums.sum_abs_grad_pre += batch.abs_grad_z;
            sums.observations += observations;
        }
    }

    fn on_step(&mut self, _ctx: &StepContext, params: &[ParamView]) {
        for info in &self.sites {
            let (weight, bias) = (&params[info.weight], &params[info.bias]);
            let (Some(grad_w), Some(grad_b)) = (weight.grad, bias.grad) else {
                continue;
            };
            let fan_in = grad_w.len() / info.neurons;
            let add_norm = |((sums, row), bias): ((&mut TrainingSums, &[f32]), &f32)| {
                let squares = sum_of_squares(row) + (*bias as f64).powi(2);
                sums.sum_weight_grad_norm += squares.sqrt();
                sums.steps += 1;
            };
            let sums = &mut self.training[info.site];
            if grad_w.len() < PARALLEL_NORMS_FROM {
                // Waking rayon's sleeping threads costs more than a small layer's sums (a
                // LeNet step's norms took 0.13 ms in parallel).
                let rows = sums.iter_mut().zip(grad_w.chunks(fan_in.max(1)));
                rows.zip(grad_b).for_each(add_norm);
            } else {
                let rows = sums.par_iter_mut().zip(grad_w.par_chunks(fan_in.max(1)));
                rows.zip(grad_b.par_iter()).for_each(add_norm);
            }
        }
    }

    fn on_probe_start(&mut self, _epoch: usize) {
        for sums in self.probe.iter_mut().flatten() {
            *sums = ProbeSums {
                max_pre: f64::NEG_INFINITY,
                ..Default::default()
            };
        }
    }

    fn on_probe_batch(&mut self, _epoch: usize, event: &SiteForward) {
        let info = event.info;
        let (batch, neurons, positions) = (event.batch_size, info.neurons, info.positions);
        let (activation, saturation) = (&self.activation, &self.saturation);
        self.probe[info.site]
            .par_iter_mut()
            .enumerate()
            .for_each_init(
                || (vec![1.0f32; positions], vec![0.0f32; positions]),
                |(ones, derivative), (c, sums)| {
                    let slices = neuron_slices(event.z, batch, neurons, positions, c)
                        .zip(neuron_slices(event.h, batch, neurons, positions, c));
                    for (z, h) in slices {
                        derivative.fill(0.0);
                        activation.backward_slice(z, ones, derivative);
                        let slice = probe_slice(z, h, derivative, saturation);
                        sums.active += slice.active as u64;
                        sums.samples_active += (slice.active > 0) as u64;
                        sums.samples += 1;
                        sums.observations += positions as u64;
                        sums.max_pre = sums.max_pre.max(slice.max as f64);
                        sums.sum_pre += slice.sum;
                        sums.sum_sq_pre += slice.sum_sq;
                        sums.sum_abs_act += slice.abs_h as f64;
                        sums.sum_deriv += slice.derivative as f64;
                        sums.saturated_deriv += slice.saturated_deriv as u64;
                        sums.saturated_output += slice.saturated_output as u64;
                    }
                },
            );
    }

    fn on_probe_end(&mut self, epoch: usize, params: &[ParamView]) {
        for info in &self.sites {
            let (weight, bias) = (&params[info.weight], &params[info.bias]);
            let fan_in = weight.value.len() / info.neurons;
            for c in 0..info.neurons {
                let p = &self.probe[info.site][c];
                let t = &self.training[info.site][c];
                let obs = p.observations.max(1) as f64;
                let mean_pre = p.sum_pre / obs;
                // Population variance from the sums; clamped because rounding can make it −0.
                let var_pre = (p.sum_sq_pre / obs - mean_pre * mean_pre).max(0.0);
                let trained = epoch > 0 && t.steps > 0;
                let per_obs = |sum: f64| trained.then(|| sum / t.observations.max(1) as f64);
                self.rows.push(NeuronRow {
                    epoch: epoch as u32,
                    layer: info.site as u32,
                    layer_name: info.layer_name.clone(),
                    neuron: c as u32,
                    active_frac: p.active as f64 / obs,
                    sample_active_frac: p.samples_active as f64 / p.samples.max(1) as f64,
                    max_pre: p.max_pre,
                    mean_pre,
                    std_pre: var_pre.sqrt(),
                    mean_abs_act: p.sum_abs_act / obs,
                    mean_deriv: p.sum_deriv / obs,
                    weight_norm: weight.value[c * fan_in..(c + 1) * fan_in]
                        .iter()
                        .map(|w| (*w as f64).powi(2))
                        .sum::<f64>()
                        .sqrt(),
                    bias: bias.value[c] as f64,
                    train_active_frac: per_obs(t.active as f64),
                    grad_act_abs_mean: per_obs(t.sum_abs_grad_act),
                    grad_pre_abs_mean: per_obs(t.sum_abs_grad_pre),
                    weight_grad_norm: trained.then(|| t.sum_weight_grad_norm / t.steps as f64),
                    saturated_deriv_frac: self
                        .saturation
                        .derivative_known
                        .then(|| p.saturated_deriv as f64 / obs),
                    saturated_output_frac: self
                        .saturation
                        .output_known
                        .then(|| p.saturated_output as f64 / obs),
                });
            }
        }
        for sums in self.training.iter_mut().flatten() {
            *sums = TrainingSums::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_slices_match_the_definitions_for_every_length() {
        for len in [1usize, 3, 8, 9, 17, 676] {
            let z: Vec<f32> = (0..len)
                .map(|i| ((i * 37) % 23) as f32 * 0.3 - 2.9)
                .collect();
            let h: Vec<f32> = z.iter().map(|v| v.max(0.0) - 0.1).collect();
            let d: Vec<f32> = z.iter().map(|v| (*v > 0.0) as u8 as f32 * 0.5).collect();
            // Thresholds of tanh: |f'| < 0.01, f(z) >= 0.99 or <= -0.99. Here f' and f are the
            // made-up d and h, so some observations of each kind cross them.
            let saturation = SaturationThresholds::of(&crate::activation::Builtin::Tanh);
            let slice = probe_slice(&z, &h, &d, &saturation);
            assert_eq!(
                slice.saturated_deriv as usize,
                d.iter().filter(|v| v.abs() < 0.01).count(),
                "{len}"
            );
            assert_eq!(
                slice.saturated_output as usize,
                h.iter().filter(|v| **v >= 0.99 || **v <= -0.99).count(),
                "{len}"
            );
            let f64_sum = |it: &mut dyn Iterator<Item = f64>| it.sum::<f64>();
            assert_eq!(
                slice.active as usize,
                z.iter().filter(|v| **v > 0.0).count(),
                "{len}"
            );
            assert_eq!(
                slice.max,
                z.iter().cloned().fold(f32::NEG_INFINITY, f32::max)
            );
            let close = |a: f64, e: f64| (a - e).abs() <= 1e-5 * e.abs().max(1.0);
            assert!(close(slice.sum, f64_sum(&mut z.iter().map(|v| *v as f64))));
            assert!(close(
                slice.sum_sq,
                f64_sum(&mut z.iter().map(|v| (*v as f64).powi(2)))
            ));
            assert!(close(
                slice.abs_h as f64,
                f64_sum(&mut h.iter().map(|v| v.abs() as f64))
            ));
            assert!(close(
                slice.derivative as f64,
                f64_sum(&mut d.iter().map(|v| *v as f64))
            ));
        }
    }

    #[test]
    fn sums_of_squares_match_the_definition() {
        for len in [0usize, 5, 8, 1601] {
            let v: Vec<f32> = (0..len).map(|i| (i as f32 * 0.01).sin()).collect();
            let expected: f64 = v.iter().map(|x| (*x as f64).powi(2)).sum();
            assert!((sum_of_squares(&v) - expected).abs() <= 1e-9 * expected.max(1.0));
        }
    }
}
