//! 2-D convolution as a dfdx tape op: forward, and a backward that writes dL/dW, dL/db and
//! (unless the input is the data) dL/dx into the gradients [`super::tape_op`] lends. Each
//! convolution takes one of three ways, by its shape: Winograd ([`super::winograd`]) on large
//! planes, the implicit gemm ([`super::direct_conv`]) on small planes with many channels where
//! the CPU has AVX-512, and im2col ([`super::im2col`]) + gemm for the rest.
//!
//! Work is split over chunks of samples with rayon, one single-threaded gemm per chunk: a
//! chunk's matrices are large enough for gemm to run near its peak, small enough to stay in a
//! core's cache, and there are enough chunks in a batch to keep the cores busy.

use std::borrow::Cow;

use anyhow::{bail, Result};
use dfdx::prelude::*;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::direct_conv::DirectConv;
use super::tape_op::{tape_op, OpGrads};
use super::winograd::{self, Winograd};
use super::{
    accumulate_into, accumulate_into_new, assume_written, lane_sum, matmul, thread_buffers,
    transpose, zeroed, Activations, GradChunk, MatRef, Values,
};
use crate::param::Param;

/// The shape arithmetic of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvGeometry {
    pub in_channels: usize,
    pub in_height: usize,
    pub in_width: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl ConvGeometry {
    /// Checks that the kernel fits the padded input and the stride is positive.
    pub fn new(
        input: [usize; 3],
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Self> {
        let [in_channels, in_height, in_width] = input;
        if kernel == 0 || stride == 0 || out_channels == 0 {
            bail!("convolution needs kernel, stride and output channels > 0 (got kernel {kernel}, stride {stride}, out {out_channels})");
        }
        if in_height + 2 * padding < kernel || in_width + 2 * padding < kernel {
            bail!("convolution kernel {kernel} is larger than its padded input {in_height}x{in_width} (padding {padding})");
        }
        Ok(Self {
            in_channels,
            in_height,
            in_width,
            out_channels,
            kernel,
            stride,
            padding,
        })
    }

    pub fn out_height(&self) -> usize {
        (self.in_height + 2 * self.padding - self.kernel) / self.stride + 1
    }
    pub fn out_width(&self) -> usize {
        (self.in_width + 2 * self.padding - self.kernel) / self.stride + 1
    }
    /// Rows of the im2col matrix: one per (input channel, kernel row, kernel column).
    pub fn patch_len(&self) -> usize {
        self.in_channels * self.kernel * self.kernel
    }
    pub fn out_positions(&self) -> usize {
        self.out_height() * self.out_width()
    }
    pub fn in_len(&self) -> usize {
        self.in_channels * self.in_height * self.in_width
    }
    pub fn out_len(&self) -> usize {
        self.out_channels * self.out_positions()
    }
    pub fn out_shape(&self) -> [usize; 3] {
        [self.out_channels, self.out_height(), self.out_width()]
    }

    /// The Winograd F(2×2, 3×3) correlation of this convolution, where one applies: a 3×3
    /// kernel, stride 1, padding 0 to 2, at least [`winograd::MIN_CHANNELS`] input channels and
    /// output planes of at least [`winograd::MIN_POSITIONS`], or of at least
    /// [`winograd::MIN_POSITIONS_BESIDE_DIRECT`] where the implicit gemm applies.
    pub fn winograd(&self) -> Option<Winograd> {
        (self.kernel == 3
            && self.stride == 1
            && self.padding <= 2
            && self.in_channels >= winograd::MIN_CHANNELS
            && self.out_positions() >= winograd::MIN_POSITIONS
            && (self.out_positions() >= winograd::MIN_POSITIONS_BESIDE_DIRECT
                || DirectConv::of(self).is_none()))
        .then_some(Winograd {
            channels: self.in_channels,
            filters: self.out_channels,
            height: self.in_height,
            width: self.in_width,
            padding: self.padding,
        })
    }

    /// The implicit gemm of this convolution, where it applies ([`DirectConv::of`]) and
    /// Winograd does not.
    pub fn direct(&self) -> Option<DirectConv> {
        self.winograd()
            .is_none()
            .then(|| DirectConv::of(self))
            .flatten()
    }

    /// The correlation that gives dL/dx from dL/d(output) by Winograd, where one applies: on
    /// the output planes with the channels swapped and padding 2 − p, its kernels
    /// [`winograd::flipped`].
    fn winograd_adjoint(&self) -> Option<Winograd> {
        let adjoint = self.winograd().map(|w| Winograd {
            channels: w.filters,
            filters: w.channels,
            height: w.out_height(),
            width: w.out_width(),
            padding: 2 - w.padding,
        });
        adjoint.filter(|a| a.channels >= winograd::MIN_CHANNELS)
    }

    /// Samples per chunk: as many as keep the chunk's columns within [`CHUNK_COLUMN_FLOATS`],
    /// 1 to [`SAMPLE_CHUNK`]; a function of the shapes alone.
    pub fn chunk_samples(&self) -> usize {
        let per_sample = (self.patch_len() * self.out_positions()).max(1);
        (CHUNK_COLUMN_FLOATS / per_sample).clamp(1, SAMPLE_CHUNK)
    }
}

/// Applies a convolution with `weight` (`[out, in·k·k]`) and `bias` (`[out]`) to a batch.
///
/// `input_needs_grad` is false for the first layer: the data needs no gradient, and skipping it
/// saves the largest col2im of the network.
pub fn conv2d<T: dfdx::tensor::Tape<f32, Cpu>>(
    x: Activations<T>,
    weight: &Param,
    bias: &Param,
    geometry: ConvGeometry,
    input_needs_grad: bool,
) -> Activations<T> {
    let g = geometry;
    assert_eq!(
        x.sample_shape,
        [g.in_channels, g.in_height, g.in_width],
        "conv input shape"
    );
    let batch = x.batch();
    let (patch, positions, oc) = (g.patch_len(), g.out_positions(), g.out_channels);
    // Parallel tasks of SAMPLE_CHUNK samples, each worked through in chunks of `samples`.
    let samples = g.chunk_samples();
    let (task_in, task_out) = (SAMPLE_CHUNK * g.in_len(), SAMPLE_CHUNK * g.out_len());
    let (chunk_in, chunk_out) = (samples * g.in_len(), samples * g.out_len());
    let direct = g.direct();
    let forward = |x_values: Values, taping: bool| {
        // Each chunk's columns form one `[patch, samples·positions]` matrix, unfolded into a
        // buffer of the chunk's own that stays in cache, multiplied by the weights in one gemm
        // and dropped: the backward pass unfolds them again from x, which is `patch` times
        // smaller to keep (a 32×32 net's columns are ~75 MB a layer at batch 64).
        let w = &weight.value;
        let mut out: Vec<f32> = Vec::with_capacity(batch * g.out_len());
        let winograd = g.winograd().map(|wg| (wg, wg.transform_kernels(w)));
        let direct = direct.map(|d| (d, transpose(w, oc, patch)));
        let keep = taping
            && winograd.is_none()
            && direct.is_none()
            && batch * patch * positions <= KEPT_COLUMN_FLOATS;
        // Each task's chunks' columns, where they are kept for the backward pass.
        let kept: Vec<Vec<Vec<f32>>> = out
            .spare_capacity_mut()
            .par_chunks_mut(task_out)
            .zip(x_values.par_chunks(task_in))
            .map(|(out, x)| {
                let mut kept = Vec::new();
                if let Some((wg, u)) = &winograd {
                    // Every output row once, with its channel's bias.
                    wg.correlate(x, u, |o, start, row| {
                        let b = bias.value[o];
                        for (d, v) in out[start..start + row.len()].iter_mut().zip(row) {
                            d.write(v + b);
                        }
                    });
                    return kept;
                }
                if let Some((d, w_t)) = &direct {
                    d.forward(x, w_t, &bias.value, out);
                    return kept;
                }
                for (out, x) in out.chunks_mut(chunk_out).zip(x.chunks(chunk_in)) {
                    let cols = g.unfold(x);
                    let width = cols.len() / patch;
                    // Overwritten in full by the gemm, which does not read it.
                    let mut product = thread_buffers::take(oc * width);
                    matmul(
                        &mut product,
                        MatRef::new(w, oc, patch),
                        MatRef::new(&cols, patch, width),
                        false,
                    );
                    // `[oc, samples·positions]` back to NCHW with each channel's bias, writing
                    // every element. The bias is added last: a gemm onto a matrix of biases added
                    // it first, which rounds the same only where the gemm takes the patch in one
                    // block of its depth (LeNet's 288), not where it adds block by block.
                    for (j, sample) in out.chunks_mut(g.out_len()).enumerate() {
                        for (o, channel) in sample.chunks_mut(positions).enumerate() {
                            let from = &product[o * width + j * positions..][..positions];
                            let b = bias.value[o];
                            for (d, v) in channel.iter_mut().zip(from) {
                                d.write(v + b);
                            }
                        }
                    }
                    thread_buffers::give_back(product);
                    if keep {
                        kept.push(cols);
                    }
                }
                kept
            })
            .collect();
        // SAFETY: every chunk of every task of `out` was written in full by the loop above.
        unsafe { out.set_len(batch * g.out_len()) };
        // The backward pass needs the input and the weights as they were in this step.
        let saved = taping.then(|| (x_values, weight.value.clone(), kept));
        (out, g.out_shape(), saved)
    };
    type Saved = (Values, Vec<f32>, Vec<Vec<Vec<f32>>>);
    let backward = move |saved: Option<Saved>, grad_out: Vec<f32>, grads: OpGrads| {
        let (x_values, w_values, kept) = saved.expect("saved when taping");
        let adjoint = g.winograd_adjoint().map(|a| {
            (
                a,
                a.transform_kernels(&winograd::flipped(&w_values, oc, g.in_channels)),
            )
        });
        // dL/dW by Winograd where the forward pass used it, by im2col + gemm elsewhere.
        let winograd_weights = g.winograd();
        let direct = direct.map(|d| (d, d.input_gradient_kernels(&w_values)));
        // One task's dL/dW and dL/db, its chunks added in order; dL/dx into `grad_x`.
        let task_backward = |t: usize, grad_x: Option<GradChunk>, kept: Vec<Vec<f32>>| {
            let span = |len: usize, total: usize| t * len..((t + 1) * len).min(total);
            let grad_out = &grad_out[span(task_out, grad_out.len())];
            let x = &x_values[span(task_in, x_values.len())];
            let bias_gradient = || {
                let mut grad_b = vec![0.0f32; oc];
                for sample in grad_out.chunks(g.out_len()) {
                    for (b, plane) in grad_b.iter_mut().zip(sample.chunks(positions)) {
                        *b += lane_sum(plane);
                    }
                }
                grad_b
            };
            if let Some((d, kernels)) = &direct {
                let mut grad_w_t = vec![0.0f32; patch * oc];
                d.add_weight_gradient_t(x, grad_out, &mut grad_w_t);
                if let Some(grad_x) = grad_x {
                    grad_x.fill(
                        |new| d.write_input_gradient(grad_out, kernels, new),
                        |existing| d.add_input_gradient(grad_out, kernels, existing),
                    );
                }
                return (transpose(&grad_w_t, patch, oc), bias_gradient());
            }
            let col2im = grad_x.is_some() && adjoint.is_none();
            // col2im adds overlapping patches, so its gradient is cleared first; Winograd's
            // correlation stores every element once and writes a new gradient outright.
            let (mut grad_x, adjoint_grad_x) = if col2im {
                (grad_x.map(|g| g.fill(zeroed, |_| {})), None)
            } else {
                (None, grad_x)
            };
            let mut grad_b = vec![0.0f32; oc];
            // dL/dWᵀ, `[patch, oc]`: gemm runs this orientation 2–2.5× faster than
            // `[oc, patch]` when oc is small (32 output channels: 67 against 177 GFLOP/s on
            // one AVX-512 core), so the task accumulates it and transposes it once.
            let mut grad_w_t = vec![
                0.0f32;
                if winograd_weights.is_some() {
                    0
                } else {
                    patch * oc
                }
            ];
            if winograd_weights.is_some() && !col2im {
                // No chunk needs the columns or dL/dOut gathered: the bias sums each plane.
                grad_b = bias_gradient();
            } else {
                let mut kept = kept.into_iter();
                for (c, (grad_out, x)) in grad_out
                    .chunks(chunk_out)
                    .zip(x.chunks(chunk_in))
                    .enumerate()
                {
                    let width = x.len() / g.in_len() * positions;
                    // dL/dOut of the chunk as one `[oc, samples·positions]` matrix: a single
                    // sample's is that already.
                    let gathered: Cow<[f32]> = if grad_out.len() == g.out_len() {
                        Cow::Borrowed(grad_out)
                    } else {
                        let mut gathered = Vec::with_capacity(oc * width);
                        for o in 0..oc {
                            for sample in grad_out.chunks(g.out_len()) {
                                gathered
                                    .extend_from_slice(&sample[o * positions..(o + 1) * positions]);
                            }
                        }
                        Cow::Owned(gathered)
                    };
                    let cols = winograd_weights.is_none().then(|| {
                        let cols = kept.next().unwrap_or_else(|| g.unfold(x));
                        matmul(
                            &mut grad_w_t,
                            MatRef::new(&cols, patch, width),
                            MatRef::t(&gathered, width, oc),
                            c > 0,
                        );
                        cols
                    });
                    for (b, row) in grad_b.iter_mut().zip(gathered.chunks(width)) {
                        *b += lane_sum(row);
                    }
                    if let (Some(grad_x), true) = (grad_x.as_deref_mut(), col2im) {
                        // The columns' gradient reuses their buffer where there is one: every
                        // element is overwritten.
                        let mut grad_cols = cols.unwrap_or_else(|| vec![0.0; patch * width]);
                        matmul(
                            &mut grad_cols,
                            MatRef::t(&w_values, patch, oc),
                            MatRef::new(&gathered, oc, width),
                            false,
                        );
                        let grad_x = &mut grad_x[c * chunk_in..][..x.len()];
                        for (j, grad_x) in grad_x.chunks_mut(g.in_len()).enumerate() {
                            g.col2im_add(&mut grad_cols, width, j * positions, grad_x);
                        }
                    }
                }
            }
            if let (Some(grad_x), Some((adjoint, u))) = (adjoint_grad_x, &adjoint) {
                grad_x.fill(
                    |new| {
                        let mut stored = 0;
                        adjoint.correlate(grad_out, u, |_, start, row| {
                            accumulate_into_new(&mut new[start..start + row.len()], row);
                            stored += row.len();
                        });
                        // The correlation stores every row of its output exactly once, so rows
                        // adding up to the chunk's length cover it.
                        assert_eq!(stored, new.len(), "dL/dx by Winograd covers its chunk");
                        // SAFETY: every element was written (just above).
                        unsafe { assume_written(new) }
                    },
                    |existing| {
                        adjoint.correlate(grad_out, u, |_, start, row| {
                            accumulate_into(&mut existing[start..start + row.len()], row)
                        })
                    },
                );
            }
            let grad_w = match &winograd_weights {
                Some(wg) => wg.weight_gradient(x, grad_out),
                None => transpose(&grad_w_t, patch, oc),
            };
            (grad_w, grad_b)
        };
        let OpGrads { input, params } = grads;
        let partials: Vec<(Vec<f32>, Vec<f32>)> = match input {
            // col2im adds straight into x's gradient.
            Some(mut grad_x) => grad_x
                .par_chunks_new_or_existing(task_in)
                .zip(kept)
                .enumerate()
                .map(|(t, (grad_x, kept))| task_backward(t, Some(grad_x), kept))
                .collect(),
            None => kept
                .into_par_iter()
                .enumerate()
                .map(|(t, kept)| task_backward(t, None, kept))
                .collect(),
        };
        // Summed in task order: the same bits on every run, whatever the thread count.
        let [grad_w, grad_b] = <[&mut [f32]; 2]>::try_from(params).expect("weight and bias");
        for (w, b) in &partials {
            accumulate_into(grad_w, w);
            accumulate_into(grad_b, b);
        }
    };
    tape_op(
        ["conv forward", "conv backward"],
        x,
        &[weight, bias],
        input_needs_grad,
        forward,
        backward,
    )
}

/// Samples per parallel task, and the most in a chunk (the unit of the gemm calls). Fixed, and
/// the chunks fixed by the shapes, so that the floating-point sums of the gradients come out
/// the same on every machine and run, whatever the thread count.
const SAMPLE_CHUNK: usize = 16;
/// A batch's columns of at most this many floats (16 MiB) are kept from the forward pass for
/// dL/dW instead of unfolded from x again: LeNet's second convolution's at batch 64 (2.2 M
/// floats) where the implicit gemm does not apply (no AVX-512), whose unfolding was 9 % of a
/// step's CPU samples; a 32×32 net's (75 MB a layer at batch 64) are unfolded again, chunk by
/// chunk in cache.
const KEPT_COLUMN_FLOATS: usize = 1 << 22;
/// A chunk's unfolded columns stay within this many floats (1 MiB), so that they are written
/// and read in a core's cache rather than in memory; a sample whose columns are larger is a
/// chunk alone.
const CHUNK_COLUMN_FLOATS: usize = 1 << 18;

#[cfg(test)]
#[path = "conv_tests.rs"]
mod tests;
