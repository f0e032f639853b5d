//! Max and average pooling as dfdx tape ops (no padding; PyTorch's floor mode for the output
//! size). Max pooling remembers the winning input of every window for its backward pass.

use anyhow::{bail, Result};
use dfdx::prelude::*;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::tape_op::{tape_op, OpGrads};
use super::{zeroed, Activations, Values};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolKind {
    Max,
    Avg,
}

/// Input elements per rayon task of the forward pass.
const POOL_TASK_ELEMENTS: usize = 1 << 14;

/// A window's running maximum meets candidate `v` at input index `i`. `>` keeps the first
/// maximum, as PyTorch does; NaN never wins, but the loss turns NaN anyway and the run is
/// stopped. Selects, not a branch: which input wins is data-dependent, and mispredicted branches
/// were most of the cost of max pooling.
#[inline(always)]
fn challenge(best: &mut f32, at: &mut usize, v: f32, i: usize) {
    let better = v > *best;
    *best = if better { v } else { *best };
    *at = if better { i } else { *at };
}

/// The shape arithmetic of one pooling layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolGeometry {
    pub kind: PoolKind,
    pub channels: usize,
    pub in_height: usize,
    pub in_width: usize,
    pub kernel: usize,
    pub stride: usize,
}

impl PoolGeometry {
    pub fn new(kind: PoolKind, input: [usize; 3], kernel: usize, stride: usize) -> Result<Self> {
        let [channels, in_height, in_width] = input;
        if kernel == 0 || stride == 0 {
            bail!("pooling needs kernel and stride > 0 (got kernel {kernel}, stride {stride})");
        }
        if in_height < kernel || in_width < kernel {
            bail!("pooling window {kernel} is larger than its input {in_height}x{in_width}");
        }
        Ok(Self {
            kind,
            channels,
            in_height,
            in_width,
            kernel,
            stride,
        })
    }
    pub fn out_height(&self) -> usize {
        (self.in_height - self.kernel) / self.stride + 1
    }
    pub fn out_width(&self) -> usize {
        (self.in_width - self.kernel) / self.stride + 1
    }
    pub fn out_shape(&self) -> [usize; 3] {
        [self.channels, self.out_height(), self.out_width()]
    }
    /// Max pooling of one plane: each output and the index of its window's first maximum.
    fn max_pool_plane(&self, plane: &[f32], out: &mut [f32], winners: &mut [u32]) {
        if self.kernel == 2 && self.stride == 2 {
            self.max_pool_plane_2x2(plane, out, winners)
        } else {
            self.max_pool_plane_general(plane, out, winners)
        }
    }

    fn max_pool_plane_general(&self, plane: &[f32], out: &mut [f32], winners: &mut [u32]) {
        let (ow, k, s, w) = (self.out_width(), self.kernel, self.stride, self.in_width);
        for (oy, (out_row, win_row)) in out.chunks_mut(ow).zip(winners.chunks_mut(ow)).enumerate() {
            let top = oy * s * w;
            for (ox, (best_out, at_out)) in out_row.iter_mut().zip(win_row.iter_mut()).enumerate() {
                let corner = top + ox * s;
                let (mut best, mut at) = (f32::NEG_INFINITY, corner);
                for ky in 0..k {
                    let row = corner + ky * w;
                    for (kx, &v) in plane[row..row + k].iter().enumerate() {
                        challenge(&mut best, &mut at, v, row + kx);
                    }
                }
                *best_out = best;
                *at_out = at as u32;
            }
        }
    }
    /// `max_pool_plane` for the common 2×2 window with stride 2: the four candidates of a
    /// window in the same order (top-left, top-right, bottom-left, bottom-right), without the
    /// general loops.
    fn max_pool_plane_2x2(&self, plane: &[f32], out: &mut [f32], winners: &mut [u32]) {
        let (ow, w) = (self.out_width(), self.in_width);
        for (oy, (out_row, win_row)) in out.chunks_mut(ow).zip(winners.chunks_mut(ow)).enumerate() {
            let top = 2 * oy * w;
            let (upper, lower) = (&plane[top..top + 2 * ow], &plane[top + w..top + w + 2 * ow]);
            for (ox, (best_out, at_out)) in out_row.iter_mut().zip(win_row.iter_mut()).enumerate() {
                let (mut best, mut at) = (f32::NEG_INFINITY, top + 2 * ox);
                for (v, i) in [
                    (upper[2 * ox], top + 2 * ox),
                    (upper[2 * ox + 1], top + 2 * ox + 1),
                    (lower[2 * ox], top + w + 2 * ox),
                    (lower[2 * ox + 1], top + w + 2 * ox + 1),
                ] {
                    challenge(&mut best, &mut at, v, i);
                }
                *best_out = best;
                *at_out = at as u32;
            }
        }
    }
    fn in_plane(&self) -> usize {
        self.in_height * self.in_width
    }
    fn out_plane(&self) -> usize {
        self.out_height() * self.out_width()
    }
}

/// Pools every channel plane of a batch.
pub fn pool2d<T: dfdx::tensor::Tape<f32, Cpu>>(
    x: Activations<T>,
    geometry: PoolGeometry,
) -> Activations<T> {
    let g = geometry;
    assert_eq!(
        x.sample_shape,
        [g.channels, g.in_height, g.in_width],
        "pool input shape"
    );
    let batch = x.batch();
    let (oh, ow, k, s) = (g.out_height(), g.out_width(), g.kernel, g.stride);
    let planes = batch * g.channels;
    let window_scale = 1.0 / (k * k) as f32;
    // Several planes per rayon task, forward and backward: one 2×2 pooling of a small plane is
    // far less work than a task costs (one 26×26 plane per task left LeNet's pooling backward
    // mostly rayon's overhead).
    let planes_per_task = (POOL_TASK_ELEMENTS / g.in_plane()).max(1);
    let (out_task, in_task) = (
        planes_per_task * g.out_plane(),
        planes_per_task * g.in_plane(),
    );
    let forward = |x_values: Values, _taping: bool| {
        let len = planes * g.out_plane();
        // Both written by the tasks below, each chunk zeroed by its task ([`zeroed`]).
        let mut out = Vec::with_capacity(len);
        // For max pooling, the index within its plane of each window's maximum.
        let mut winners = Vec::with_capacity(match g.kind {
            PoolKind::Max => len,
            PoolKind::Avg => 0,
        });
        match g.kind {
            PoolKind::Max => out.spare_capacity_mut()[..len]
                .par_chunks_mut(out_task)
                .zip(winners.spare_capacity_mut()[..len].par_chunks_mut(out_task))
                .zip(x_values.par_chunks(in_task))
                .for_each(|((out, winners), planes)| {
                    let (out, winners) = (zeroed(out), zeroed(winners));
                    let planes = planes.chunks(g.in_plane());
                    let outs = out.chunks_mut(g.out_plane());
                    for ((plane, out), winners) in
                        planes.zip(outs).zip(winners.chunks_mut(g.out_plane()))
                    {
                        g.max_pool_plane(plane, out, winners);
                    }
                }),
            PoolKind::Avg => out.spare_capacity_mut()[..len]
                .par_chunks_mut(out_task)
                .zip(x_values.par_chunks(in_task))
                .for_each(|(out, planes)| {
                    for (out, plane) in zeroed(out)
                        .chunks_mut(g.out_plane())
                        .zip(planes.chunks(g.in_plane()))
                    {
                        for oy in 0..oh {
                            for ox in 0..ow {
                                let mut sum = 0.0;
                                for ky in 0..k {
                                    let row = (oy * s + ky) * g.in_width + ox * s;
                                    sum += plane[row..row + k].iter().sum::<f32>();
                                }
                                out[oy * ow + ox] = sum * window_scale;
                            }
                        }
                    }
                }),
        }
        // SAFETY: the tasks' chunks cover the first `len` elements (of `winners` too, for max
        // pooling), each zeroed in full.
        unsafe {
            out.set_len(len);
            if g.kind == PoolKind::Max {
                winners.set_len(len);
            }
        }
        (out, g.out_shape(), winners)
    };
    let backward = move |winners: Vec<u32>, grad_out: Vec<f32>, grads: OpGrads| {
        // Accumulated straight into x's gradient, in the forward pass's tasks.
        let mut grad_x = grads.input.expect("pooling passes its gradient on");
        match g.kind {
            PoolKind::Max => grad_x
                .par_chunks_mut(in_task)
                .zip(grad_out.par_chunks(out_task))
                .zip(winners.par_chunks(out_task))
                .for_each(|((grad_x, grad_out), winners)| {
                    let planes = grad_x
                        .chunks_mut(g.in_plane())
                        .zip(grad_out.chunks(g.out_plane()))
                        .zip(winners.chunks(g.out_plane()));
                    for ((grad_x, grad_out), winners) in planes {
                        for (&go, &at) in grad_out.iter().zip(winners) {
                            grad_x[at as usize] += go;
                        }
                    }
                }),
            PoolKind::Avg => grad_x
                .par_chunks_mut(in_task)
                .zip(grad_out.par_chunks(out_task))
                .for_each(|(grad_x, grad_out)| {
                    let planes = grad_x
                        .chunks_mut(g.in_plane())
                        .zip(grad_out.chunks(g.out_plane()));
                    for (grad_x, grad_out) in planes {
                        for oy in 0..oh {
                            for ox in 0..ow {
                                let share = grad_out[oy * ow + ox] * window_scale;
                                for ky in 0..k {
                                    let row = (oy * s + ky) * g.in_width + ox * s;
                                    grad_x[row..row + k].iter_mut().for_each(|v| *v += share);
                                }
                            }
                        }
                    }
                }),
        }
    };
    tape_op(
        ["pooling forward", "pooling backward"],
        x,
        &[],
        true,
        forward,
        backward,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::tensor_values;
    use crate::ops::testing::{assert_gradient_matches, pseudo_random};
    use crate::ops::Tape;

    fn naive_pool(g: &PoolGeometry, x: &[f32], batch: usize) -> Vec<f32> {
        let mut out = Vec::new();
        for plane in 0..batch * g.channels {
            for oy in 0..g.out_height() {
                for ox in 0..g.out_width() {
                    let mut window = Vec::new();
                    for ky in 0..g.kernel {
                        for kx in 0..g.kernel {
                            let iy = oy * g.stride + ky;
                            let ix = ox * g.stride + kx;
                            window.push(x[plane * g.in_plane() + iy * g.in_width + ix]);
                        }
                    }
                    out.push(match g.kind {
                        PoolKind::Max => window.iter().cloned().fold(f32::NEG_INFINITY, f32::max),
                        PoolKind::Avg => window.iter().sum::<f32>() / window.len() as f32,
                    });
                }
            }
        }
        out
    }

    fn run_eval(dev: &Cpu, g: &PoolGeometry, x: &[f32], batch: usize) -> Vec<f32> {
        let x = Activations::new(
            dev.tensor_from_vec(x.to_vec(), (batch, g.channels * g.in_plane())),
            [g.channels, g.in_height, g.in_width],
        );
        tensor_values(&pool2d(x, *g).into_tensor())
    }

    #[test]
    fn forward_matches_direct_loops() {
        let dev = Cpu::default();
        for kind in [PoolKind::Max, PoolKind::Avg] {
            for (i, (input, k, s, batch)) in [
                ([2, 8, 8], 2, 2, 3),
                ([3, 7, 9], 3, 2, 2),
                ([1, 5, 5], 2, 1, 1),
                ([4, 11, 11], 2, 2, 2),
            ]
            .into_iter()
            .enumerate()
            {
                let g = PoolGeometry::new(kind, input, k, s).unwrap();
                let x = pseudo_random(batch * g.channels * g.in_plane(), i as u64);
                let ours = run_eval(&dev, &g, &x, batch);
                let naive = naive_pool(&g, &x, batch);
                assert_eq!(ours.len(), naive.len());
                for (a, e) in ours.iter().zip(&naive) {
                    assert!((a - e).abs() < 1e-6, "{kind:?} {input:?}: {a} vs {e}");
                }
            }
        }
    }

    #[test]
    fn the_2x2_path_picks_the_same_winners_as_the_general_one_with_ties() {
        let g = PoolGeometry::new(PoolKind::Max, [1, 9, 8], 2, 2).unwrap();
        // Values from {0, 1, 2}: most windows hold ties, where the first maximum must win.
        let plane: Vec<f32> = (0..g.in_plane()).map(|i| ((i * 7) % 3) as f32).collect();
        let run = |general: bool| {
            let mut out = vec![0.0; g.out_plane()];
            let mut winners = vec![0u32; g.out_plane()];
            if general {
                g.max_pool_plane_general(&plane, &mut out, &mut winners);
            } else {
                g.max_pool_plane_2x2(&plane, &mut out, &mut winners);
            }
            (out, winners)
        };
        assert_eq!(run(false), run(true));

        // By hand, on a 2×4 plane whose two windows are all ties:
        //   2 1 | 0 2
        //   2 0 | 2 2
        // the first maximum in reading order wins (as PyTorch's CPU max_pool2d, which takes a
        // new maximum only when strictly greater): plane index 0 (not 4) and 3 (not 6 or 7).
        let g = PoolGeometry::new(PoolKind::Max, [1, 2, 4], 2, 2).unwrap();
        let plane = [2.0, 1.0, 0.0, 2.0, 2.0, 0.0, 2.0, 2.0];
        for general in [false, true] {
            let (mut out, mut winners) = ([0.0; 2], [0u32; 2]);
            if general {
                g.max_pool_plane_general(&plane, &mut out, &mut winners);
            } else {
                g.max_pool_plane_2x2(&plane, &mut out, &mut winners);
            }
            assert_eq!((out, winners), ([2.0, 2.0], [0, 3]), "general: {general}");
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let dev = Cpu::default();
        for kind in [PoolKind::Max, PoolKind::Avg] {
            for (input, k, s) in [([2, 6, 6], 2, 2), ([1, 7, 7], 3, 2)] {
                let g = PoolGeometry::new(kind, input, k, s).unwrap();
                let batch = 2;
                // Distinct values 0.01 apart, so the small step below never changes a window's winner.
                let len = batch * g.channels * g.in_plane();
                let x: Vec<f32> = (0..len)
                    .map(|i| ((i * 37) % len) as f32 * 0.01 - 0.5)
                    .collect();
                let out_len = g.channels * g.out_plane();
                let probe = pseudo_random(batch * out_len, 8);
                let x_tensor = dev.tensor_from_vec(x.clone(), (batch, g.channels * g.in_plane()));
                let traced = Activations::new(x_tensor.retaped::<Tape>(), input);
                let out_t = pool2d(traced, g).into_tensor();
                let probe_t = dev.tensor_from_vec(probe.clone(), (batch, out_len));
                let grads = (out_t * probe_t).sum().backward();
                let grad_x = grads.get(&x_tensor).as_vec();
                let objective = |xp: &[f32]| {
                    run_eval(&dev, &g, xp, batch)
                        .iter()
                        .zip(&probe)
                        .map(|(o, p)| *o as f64 * *p as f64)
                        .sum::<f64>()
                };
                assert_gradient_matches(
                    &format!("{kind:?} dx"),
                    &x,
                    &grad_x,
                    &objective,
                    1e-3,
                    5e-3,
                );
            }
        }
    }

    #[test]
    fn oversized_windows_are_rejected() {
        assert!(PoolGeometry::new(PoolKind::Max, [1, 1, 1], 2, 2).is_err());
    }
}
