//! Batch normalisation over channels as a dfdx tape op, as PyTorch's `BatchNorm1d`/`BatchNorm2d`
//! (eps 1e-5, momentum 0.1, learnable scale γ and shift β).
//!
//! A sample of shape `[C, H, W]` is normalised per channel, with statistics over the batch and
//! the `H·W` positions; a dense layer's output `[units, 1, 1]` is the 1-d case of the same code.
//! A training pass normalises with the batch's own mean and biased variance and reports the
//! batch statistics (mean, unbiased variance) for the running averages; evaluation normalises
//! with the running statistics.

use rayon::prelude::*;

use super::linear::StepTape;
use super::tape_op::{tape_op, OpGrads};
use super::{filled_by_chunks, lane_sum_of, Activations, Values};
use crate::param::Param;

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
    /// The index ranges of channel `c`'s values, one per sample.
    fn runs(self, c: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
        (0..self.batch).map(move |n| {
            let start = (n * self.channels + c) * self.plane;
            start..start + self.plane
        })
    }
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

/// Σ v in f64. This and the sums below run over 8 independent lanes and are compiled for
/// AVX-512 and AVX2 as well: at the crate's baseline (SSE2, two f64 a register) they took most
/// of a resnet20 step's batch norm.
#[multiversion::multiversion(targets(
    "x86_64+avx2+fma+avx512f+avx512vl+avx512bw+avx512dq",
    "x86_64+avx2+fma"
))]
fn sum_f64(values: &[f32]) -> f64 {
    lane_sum_of(values, |v| v as f64)
}

/// Σ (v − mean)² in f64.
#[multiversion::multiversion(targets(
    "x86_64+avx2+fma+avx512f+avx512vl+avx512bw+avx512dq",
    "x86_64+avx2+fma"
))]
fn squared_deviations_f64(values: &[f32], mean: f64) -> f64 {
    lane_sum_of(values, |v| {
        let d = v as f64 - mean;
        d * d
    })
}

/// Σ a·b in f64, over 8 lanes of independent sums.
#[multiversion::multiversion(targets(
    "x86_64+avx2+fma+avx512f+avx512vl+avx512bw+avx512dq",
    "x86_64+avx2+fma"
))]
fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
    const LANES: usize = 8;
    let mut lanes = [0.0f64; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f64 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| *x as f64 * *y as f64)
        .sum();
    for (x, y) in ac.zip(bc) {
        for ((lane, x), y) in lanes.iter_mut().zip(x).zip(y) {
            *lane += *x as f64 * *y as f64;
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// What the backward pass needs.
struct Saved {
    layout: Layout,
    /// The normalised input `(x − mean)/√(var + eps)`.
    x_hat: Vec<f32>,
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
                let moments: Vec<(f64, f64)> = (0..channels)
                    .into_par_iter()
                    .map(|c| {
                        let mean = layout.runs(c).map(|r| sum_f64(&values[r])).sum::<f64>() / count;
                        // Two passes: Σ(x − mean)² does not cancel as Σx² − n·mean² can.
                        let sq: f64 = layout
                            .runs(c)
                            .map(|r| squared_deviations_f64(&values[r], mean))
                            .sum();
                        (mean, sq / count)
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
        let (g, b) = (&gamma.value, &beta.value);
        if taping {
            // One pass over x (shared with its tensor, so read only): x̂, which the backward pass
            // keeps, and γ·x̂ + β, the output.
            let n = values.len();
            let (mut x_hat, mut out): (Vec<f32>, Vec<f32>) =
                (Vec::with_capacity(n), Vec::with_capacity(n));
            let task = layout.task_len();
            values
                .par_chunks(task)
                .zip(x_hat.spare_capacity_mut()[..n].par_chunks_mut(task))
                .zip(out.spare_capacity_mut()[..n].par_chunks_mut(task))
                .for_each(|((samples, x_hats), outs)| {
                    let sample = layout.sample_len();
                    let samples = samples
                        .chunks(sample)
                        .zip(x_hats.chunks_mut(sample))
                        .zip(outs.chunks_mut(sample));
                    for ((x, x_hat), y) in samples {
                        let planes = x
                            .chunks(layout.plane)
                            .zip(x_hat.chunks_mut(layout.plane))
                            .zip(y.chunks_mut(layout.plane));
                        for (c, ((x, x_hat), y)) in planes.enumerate() {
                            let (m, s) = (mean[c], inv_std[c]);
                            for ((x, x_hat), y) in x.iter().zip(x_hat).zip(y) {
                                let v = (*x - m) * s;
                                x_hat.write(v);
                                y.write(v * g[c] + b[c]);
                            }
                        }
                    }
                });
            // SAFETY: the tasks cover all n values, and each wrote its part of `x_hat` and of
            // `out` in full.
            unsafe {
                x_hat.set_len(n);
                out.set_len(n);
            }
            let saved = Saved {
                layout,
                x_hat,
                inv_std,
                gamma: g.clone(),
                batch_stats: matches!(stats, NormStats::Batch),
            };
            (out, sample_shape, Some(saved))
        } else {
            // Without a backward pass (evaluation), only the output γ·x̂ + β.
            let sample = layout.sample_len();
            let out = filled_by_chunks(values.len(), layout.task_len(), |at, out| {
                for (x, y) in values[at].chunks(sample).zip(out.chunks_mut(sample)) {
                    let planes = x.chunks(layout.plane).zip(y.chunks_mut(layout.plane));
                    for (c, (x, y)) in planes.enumerate() {
                        let (m, s) = (mean[c], inv_std[c]);
                        for (x, y) in x.iter().zip(y) {
                            *y = (*x - m) * s * g[c] + b[c];
                        }
                    }
                }
            });
            (out, sample_shape, None)
        }
    };
    let backward = |saved: Option<Saved>, grad_out: Vec<f32>, grads: OpGrads| {
        let Saved {
            layout,
            x_hat,
            inv_std,
            gamma,
            batch_stats,
        } = saved.expect("batch norm saved its normalised input for the backward pass");
        // Per channel: dL/dβ = Σ g and dL/dγ = Σ g·x̂.
        let sums: Vec<(f64, f64)> = (0..layout.channels)
            .into_par_iter()
            .map(|c| {
                layout.runs(c).fold((0.0, 0.0), |(db, dg), r| {
                    (
                        db + sum_f64(&grad_out[r.clone()]),
                        dg + dot_f64(&grad_out[r.clone()], &x_hat[r]),
                    )
                })
            })
            .collect();
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
        let task = layout.task_len();
        grad_x
            .par_chunks_mut(task)
            .zip(grad_out.par_chunks(task))
            .zip(x_hat.par_chunks(task))
            .for_each(|((grad_x, grad_out), x_hat)| {
                let sample = layout.sample_len();
                for ((gx, go), xh) in grad_x
                    .chunks_mut(sample)
                    .zip(grad_out.chunks(sample))
                    .zip(x_hat.chunks(sample))
                {
                    let planes = gx
                        .chunks_mut(layout.plane)
                        .zip(go.chunks(layout.plane))
                        .zip(xh.chunks(layout.plane));
                    for (c, ((gx, go), xh)) in planes.enumerate() {
                        let scale = gamma[c] * inv_std[c];
                        let (db, dg) = (mean_db[c], mean_dg[c]);
                        for ((gx, go), xh) in gx.iter_mut().zip(go).zip(xh) {
                            *gx += scale * (go - db - xh * dg);
                        }
                    }
                }
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
