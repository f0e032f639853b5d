//! Batch normalisation over channels as a dfdx tape op, as PyTorch's `BatchNorm1d`/`BatchNorm2d`
//! (eps 1e-5, momentum 0.1, learnable scale γ and shift β).
//!
//! A sample of shape `[C, H, W]` is normalised per channel, with statistics over the batch and
//! the `H·W` positions; a dense layer's output `[units, 1, 1]` is the 1-d case of the same code.
//! A training pass normalises with the batch's own mean and biased variance and reports the
//! batch statistics (mean, unbiased variance) for the running averages; evaluation normalises
//! with the running statistics.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::linear::StepTape;
use super::tape_op::{tape_op, OpGrads};
use super::{assume_written, Activations, GradTerm, Values};
use crate::param::Param;
use sums::{gradient_sums, shifted_moments};

#[path = "batch_norm_sums.rs"]
mod sums;

/// Added to the variance before its square root, as PyTorch's default.
pub const BN_EPS: f32 = 1e-5;
/// The weight of a batch's statistics in the running averages, as PyTorch's default.
pub const BN_MOMENTUM: f32 = 0.1;

/// Elements per rayon task of the element-wise passes.
const BN_TASK_ELEMENTS: usize = 1 << 14;

/// Batch statistics of a training pass: per-channel mean and *unbiased* variance (what PyTorch
/// folds into the running variance).
///
/// With a single value per channel (batch 1, one position) the unbiased variance is undefined
/// (PyTorch refuses to train on it); it is reported as 0, the biased variance, so that the
/// running statistics stay finite.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchStats {
    pub mean: Vec<f32>,
    pub var_unbiased: Vec<f32>,
}

/// Which statistics normalise the batch.
#[derive(Debug, Clone, Copy)]
pub enum NormStats<'a> {
    /// The batch's own (training).
    Batch,
    /// Given running statistics, one value per channel (evaluation).
    Running { mean: &'a [f32], var: &'a [f32] },
}

/// How a channel's values lie in a batch: `batch` runs of `plane` values, `channels·plane` apart.
#[derive(Debug, Clone, Copy)]
struct Layout {
    batch: usize,
    channels: usize,
    plane: usize,
}

impl Layout {
    /// Values per channel.
    fn count(self) -> usize {
        self.batch * self.plane
    }
    fn sample_len(self) -> usize {
        self.channels * self.plane
    }
    /// Whole samples per rayon task of an element-wise pass.
    fn task_len(self) -> usize {
        (BN_TASK_ELEMENTS / self.sample_len().max(1)).max(1) * self.sample_len().max(1)
    }
}

/// Per channel, `sums_of(samples, partial)` over the batch: tasks of whole samples, each with its
/// own partial sums, added in task order so that the result does not depend on the threads.
fn channel_sums(
    layout: Layout,
    sums_of: impl Fn(std::ops::Range<usize>, &mut [(f64, f64)]) + Sync,
) -> Vec<(f64, f64)> {
    let (task, len) = (layout.task_len(), layout.batch * layout.sample_len());
    let partials: Vec<Vec<(f64, f64)>> = (0..len.div_ceil(task))
        .into_par_iter()
        .map(|t| {
            let mut sums = vec![(0.0, 0.0); layout.channels];
            sums_of(t * task..((t + 1) * task).min(len), &mut sums);
            sums
        })
        .collect();
    partials
        .into_iter()
        .reduce(|mut total, part| {
            for (t, p) in total.iter_mut().zip(part) {
                t.0 += p.0;
                t.1 += p.1;
            }
            total
        })
        .unwrap_or_else(|| vec![(0.0, 0.0); layout.channels])
}

/// y = γ·x̂ + β with x̂ = (x − mean)·inv_std, for whole samples, compiled for AVX-512 and AVX2
/// too.
#[multiversion::multiversion(targets(
    "x86_64+avx2+fma+avx512f+avx512vl+avx512bw+avx512dq",
    "x86_64+avx2+fma"
))]
fn normalise(x: &[f32], y: &mut [MaybeUninit<f32>], layout: Layout, affine: &Affine) {
    let sample = layout.sample_len();
    for (x, y) in x.chunks(sample).zip(y.chunks_mut(sample)) {
        for (c, (x, y)) in x
            .chunks(layout.plane)
            .zip(y.chunks_mut(layout.plane))
            .enumerate()
        {
            let (m, s) = (affine.mean[c], affine.inv_std[c]);
            let (g, b) = (affine.gamma[c], affine.beta[c]);
            for (x, y) in x.iter().zip(y) {
                y.write((*x - m) * s * g + b);
            }
        }
    }
}

/// dL/dx += γ/σ·(g − mean(g) − x̂·mean(g·x̂)) for whole samples (the means 0 with running
/// statistics), x̂ made again from x, compiled for AVX-512 and AVX2 too: added into a gradient
/// with values, or written into a new one ([`GradTerm`]).
#[multiversion::multiversion(targets(
    "x86_64+avx2+fma+avx512f+avx512vl+avx512bw+avx512dq",
    "x86_64+avx2+fma"
))]
fn input_gradient<G: GradTerm>(
    grad_x: &mut [G],
    grad_out: &[f32],
    x: &[f32],
    layout: Layout,
    norm: (&[f32], &[f32]),
    coefficients: (&[f32], &[f32], &[f32]),
) {
    assert!(
        grad_x.len() == grad_out.len() && x.len() == grad_out.len(),
        "batch norm's dL/dx, dL/dy and x have one length"
    );
    let sample = layout.sample_len();
    let samples = grad_x
        .chunks_mut(sample)
        .zip(grad_out.chunks(sample))
        .zip(x.chunks(sample));
    for ((gx, go), x) in samples {
        let planes = gx
            .chunks_mut(layout.plane)
            .zip(go.chunks(layout.plane))
            .zip(x.chunks(layout.plane));
        for (c, ((gx, go), x)) in planes.enumerate() {
            let (m, s) = (norm.0[c], norm.1[c]);
            let (scale, db, dg) = (coefficients.0[c], coefficients.1[c], coefficients.2[c]);
            for ((gx, go), x) in gx.iter_mut().zip(go).zip(x) {
                let xh = (*x - m) * s;
                gx.store(scale * (go - db - xh * dg));
            }
        }
    }
}

/// Per channel: what normalises it and the affine map after.
struct Affine {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

/// What the backward pass needs.
struct Saved {
    layout: Layout,
    /// The input, shared with its tensor. The backward pass makes x̂ again from it: keeping x̂
    /// instead cost the forward pass a second stream of writes, as large as its output.
    input: Values,
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    gamma: Vec<f32>,
    /// Whether the statistics came from the batch (and so depend on the input).
    batch_stats: bool,
}

/// Normalises every channel of a batch and applies `γ·x̂ + β`.
///
/// `NormStats::Batch` normalises with the batch's mean and biased variance and returns the
/// batch statistics (mean, unbiased variance) for [`update_running`]; `NormStats::Running`
/// normalises with the given statistics and returns `None`. With a tape, gradients flow to the
/// input, `gamma` and `beta` in both modes (with running statistics, those of the affine map
/// only: the statistics are constants then).
pub fn batch_norm<T: StepTape>(
    x: Activations<T>,
    gamma: &Param,
    beta: &Param,
    stats: NormStats,
) -> (Activations<T>, Option<BatchStats>) {
    let [channels, height, width] = x.sample_shape;
    let layout = Layout {
        batch: x.batch(),
        channels,
        plane: height * width,
    };
    assert_eq!(
        gamma.len(),
        channels,
        "{}: one scale per channel",
        gamma.name
    );
    assert_eq!(beta.len(), channels, "{}: one shift per channel", beta.name);
    if let NormStats::Running { mean, var } = stats {
        assert_eq!(mean.len(), channels, "running mean: one value per channel");
        assert_eq!(
            var.len(),
            channels,
            "running variance: one value per channel"
        );
    }
    let sample_shape = x.sample_shape;
    let mut batch_stats = None;
    let forward = |values: Values, taping: bool| {
        // Per channel: the mean and 1/√(var + eps) that normalise it.
        let (mean, inv_std): (Vec<f32>, Vec<f32>) = match stats {
            NormStats::Batch => {
                let count = layout.count() as f64;
                // Each channel's value in the first sample: the shift of its sums.
                let shift: Vec<f32> = (0..channels)
                    .map(|c| values.get(c * layout.plane).copied().unwrap_or(0.0))
                    .collect();
                let moments: Vec<(f64, f64)> = channel_sums(layout, |at, sums| {
                    shifted_moments(&values[at], layout, &shift, sums)
                })
                .into_iter()
                .zip(&shift)
                .map(|((s1, s2), &k)| {
                    let mean_shifted = s1 / count;
                    // Σ(x − k)² ≥ (Σ(x − k))²/n; the max keeps rounding from making it negative.
                    let var = ((s2 - s1 * mean_shifted) / count).max(0.0);
                    (k as f64 + mean_shifted, var)
                })
                .collect();
                let unbiased = |var: f64| {
                    if layout.count() > 1 {
                        var * count / (count - 1.0)
                    } else {
                        var
                    }
                };
                batch_stats = Some(BatchStats {
                    mean: moments.iter().map(|(m, _)| *m as f32).collect(),
                    var_unbiased: moments.iter().map(|(_, v)| unbiased(*v) as f32).collect(),
                });
                moments
                    .iter()
                    .map(|&(m, v)| (m as f32, (1.0 / (v + BN_EPS as f64).sqrt()) as f32))
                    .unzip()
            }
            NormStats::Running { mean, var } => (
                mean.to_vec(),
                var.iter()
                    .map(|&v| (1.0 / (v as f64 + BN_EPS as f64).sqrt()) as f32)
                    .collect(),
            ),
        };
        let affine = Affine {
            mean,
            inv_std,
            gamma: gamma.value.clone(),
            beta: beta.value.clone(),
        };
        let (n, task) = (values.len(), layout.task_len());
        let mut out: Vec<f32> = Vec::with_capacity(n);
        values
            .par_chunks(task)
            .zip(out.spare_capacity_mut()[..n].par_chunks_mut(task))
            .for_each(|(x, y)| normalise(x, y, layout, &affine));
        // SAFETY: the tasks cover all n values and wrote each of them.
        unsafe { out.set_len(n) };
        let saved = taping.then(|| Saved {
            layout,
            input: values.clone(),
            mean: affine.mean,
            inv_std: affine.inv_std,
            gamma: affine.gamma,
            batch_stats: matches!(stats, NormStats::Batch),
        });
        (out, sample_shape, saved)
    };
    let backward = |saved: Option<Saved>, grad_out: Vec<f32>, grads: OpGrads| {
        let Saved {
            layout,
            input: x,
            mean,
            inv_std,
            gamma,
            batch_stats,
        } = saved.expect("batch norm saved its normalised input for the backward pass");
        // Per channel: dL/dβ = Σ g and dL/dγ = Σ g·x̂.
        let norm = (&mean[..], &inv_std[..]);
        let sums = channel_sums(layout, |at, sums| {
            gradient_sums(&grad_out[at.clone()], &x[at], layout, norm, sums)
        });
        let OpGrads { input, mut params } = grads;
        for (c, (db, dg)) in sums.iter().enumerate() {
            params[0][c] += *dg as f32;
            params[1][c] += *db as f32;
        }
        let Some(mut grad_x) = input else { return };
        // dL/dx = γ/σ·(g − [Σg + x̂·Σg·x̂]/n) with batch statistics (the mean and variance move
        // with x), γ/σ·g with running ones.
        let count = layout.count() as f64;
        let (mean_db, mean_dg): (Vec<f32>, Vec<f32>) = sums
            .iter()
            .map(|(db, dg)| {
                if batch_stats {
                    ((db / count) as f32, (dg / count) as f32)
                } else {
                    (0.0, 0.0)
                }
            })
            .unzip();
        let scale: Vec<f32> = gamma.iter().zip(&inv_std).map(|(g, s)| g * s).collect();
        let task = layout.task_len();
        let coefficients = (&scale[..], &mean_db[..], &mean_dg[..]);
        grad_x
            .par_chunks_new_or_existing(task)
            .zip(grad_out.par_chunks(task))
            .zip(x.par_chunks(task))
            .for_each(|((grad_x, grad_out), x)| {
                grad_x.fill(
                    |new| {
                        input_gradient(new, grad_out, x, layout, norm, coefficients);
                        // SAFETY: every element was written (grad_x, grad_out and x have one
                        // length, asserted there).
                        unsafe { assume_written(new) }
                    },
                    |existing| input_gradient(existing, grad_out, x, layout, norm, coefficients),
                );
            });
    };
    let out = tape_op(
        ["batch norm forward", "batch norm backward"],
        x,
        &[gamma, beta],
        true,
        forward,
        backward,
    );
    (out, batch_stats)
}

/// running ← (1 − momentum)·running + momentum·batch (mean; unbiased variance), as PyTorch.
pub fn update_running(mean: &mut [f32], var: &mut [f32], batch: &BatchStats) {
    assert_eq!(
        mean.len(),
        batch.mean.len(),
        "running mean: one value per channel"
    );
    assert_eq!(
        var.len(),
        batch.var_unbiased.len(),
        "running variance: one value per channel"
    );
    let m = BN_MOMENTUM as f64;
    let blend = |running: &mut f32, batch: f32| {
        *running = ((1.0 - m) * *running as f64 + m * batch as f64) as f32;
    };
    mean.iter_mut()
        .zip(&batch.mean)
        .for_each(|(r, b)| blend(r, *b));
    var.iter_mut()
        .zip(&batch.var_unbiased)
        .for_each(|(r, b)| blend(r, *b));
}

#[cfg(test)]
#[path = "batch_norm_tests.rs"]
mod tests;
