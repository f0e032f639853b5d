//! 2-D convolution as a dfdx tape op: im2col + gemm (or Winograd, [`super::winograd`], where it
//! applies) forward, and a backward that writes dL/dW, dL/db and (unless the input is the data)
//! dL/dx into the gradients [`super::tape_op`] lends.
//!
//! Work is split over chunks of samples with rayon, one single-threaded gemm per chunk: a
//! chunk's matrices are large enough for gemm to run near its peak, small enough to stay in a
//! core's cache, and there are enough chunks in a batch to keep the cores busy.

use std::borrow::Cow;
use std::mem::MaybeUninit;

use anyhow::{bail, Result};
use dfdx::prelude::*;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::direct_conv::DirectConv;
use super::tape_op::{tape_op, OpGrads};
use super::winograd::{self, Winograd};
use super::{
    accumulate_into, lane_sum, matmul, thread_buffers, transpose, write_copy, Activations, MatRef,
    Values,
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

    /// The `[patch_len, samples·out_positions]` columns of a chunk of samples.
    fn unfold(&self, x: &[f32]) -> Vec<f32> {
        let positions = self.out_positions();
        let width = x.len() / self.in_len() * positions;
        let mut cols: Vec<f32> = Vec::with_capacity(self.patch_len() * width);
        let spare = cols.spare_capacity_mut();
        for (j, sample) in x.chunks(self.in_len()).enumerate() {
            self.im2col(sample, spare, width, j * positions);
        }
        // SAFETY: im2col wrote every column of every sample, so all patch·width elements.
        unsafe { cols.set_len(self.patch_len() * width) };
        cols
    }

    /// For a "same" convolution (stride 1, output as large as the input), the offset of
    /// kernel position (ki, kj)'s input element from its output position in the flattened
    /// plane: output (oy, ox) reads input (oy + ki − p, ox + kj − p), a constant shift, so that
    /// im2col's block for (c, ki, kj) is one copy of the plane and col2im's one add. None for
    /// other geometries.
    fn same_shift(&self, ki: usize, kj: usize) -> Option<isize> {
        let same = self.stride == 1
            && self.out_width() == self.in_width
            && self.out_height() == self.in_height;
        let p = self.padding as isize;
        same.then(|| (ki as isize - p) * self.in_width as isize + kj as isize - p)
    }

    /// The output positions `[a, b)` of a "same" convolution whose shifted input position
    /// (`+ shift`, see [`Self::same_shift`]) lies inside the plane, on rows that read a real
    /// input row: outside it every output position reads padding. Inside it, output columns
    /// outside [`Self::columns_inside`] read a neighbouring row's end instead of padding.
    fn same_copy_range(&self, ki: usize, shift: isize) -> (usize, usize) {
        let (h, w, p) = (self.in_height, self.in_width, self.padding);
        // Input row oy + ki − p inside [0, h).
        let rows = (p.saturating_sub(ki), (h + p).saturating_sub(ki).min(h));
        let plane = (h * w) as isize;
        let a = ((rows.0 * w) as isize).max(-shift).min(plane) as usize;
        let b = ((rows.1 * w) as isize).min(plane - shift).max(a as isize) as usize;
        (a, b)
    }

    /// The output columns `[lo, hi)` whose input column `ox·stride + kj − padding` lies inside
    /// the input row, for kernel column `kj`; the others read padding.
    fn columns_inside(&self, kj: usize) -> (usize, usize) {
        let (ow, s, p) = (self.out_width(), self.stride, self.padding);
        let lo = p.saturating_sub(kj).div_ceil(s).min(ow);
        let hi = (self.in_width + p)
            .saturating_sub(kj)
            .div_ceil(s)
            .clamp(lo, ow);
        (lo, hi)
    }

    /// Unfolds one sample `[C, H, W]` into its `out_positions` columns of a `[patch_len, ·]`
    /// matrix whose rows are `row_stride` long, starting at column `first_column`. Writes every
    /// element of those columns (padding as 0), so `cols` may start uninitialised.
    fn im2col(
        &self,
        x: &[f32],
        cols: &mut [MaybeUninit<f32>],
        row_stride: usize,
        first_column: usize,
    ) {
        let (oh, ow, k, s, p) = (
            self.out_height(),
            self.out_width(),
            self.kernel,
            self.stride,
            self.padding,
        );
        let (h, w) = (self.in_height, self.in_width);
        for c in 0..self.in_channels {
            let plane = &x[c * h * w..(c + 1) * h * w];
            for ki in 0..k {
                for kj in 0..k {
                    let row = (c * k + ki) * k + kj;
                    let start = row * row_stride + first_column;
                    let dst = &mut cols[start..start + oh * ow];
                    let (lo, hi) = self.columns_inside(kj);
                    if let Some(shift) = self.same_shift(ki, kj) {
                        // One shifted copy of the whole plane, then the padding written over
                        // the rows and row ends that fall outside it.
                        let (a, b) = self.same_copy_range(ki, shift);
                        if a < b {
                            let from = (a as isize + shift) as usize;
                            write_copy(&mut dst[a..b], &plane[from..from + (b - a)]);
                        }
                        let (before, rest) = dst.split_at_mut(a);
                        for d in before.iter_mut().chain(&mut rest[b - a..]) {
                            d.write(0.0);
                        }
                        for run in wrapped_row_ends((a, b), ow, (lo, hi)) {
                            for d in &mut dst[run] {
                                d.write(0.0);
                            }
                        }
                        continue;
                    }
                    for oy in 0..oh {
                        let iy = (oy * s + ki) as isize - p as isize;
                        let dst_row = &mut dst[oy * ow..(oy + 1) * ow];
                        if iy < 0 || iy >= h as isize {
                            dst_row.iter_mut().for_each(|d| {
                                d.write(0.0);
                            });
                            continue;
                        }
                        let src_row = &plane[iy as usize * w..(iy as usize + 1) * w];
                        // Outside [lo, hi) is padding; inside, a plain strided copy without a
                        // bounds test per element.
                        let (left, rest) = dst_row.split_at_mut(lo);
                        let (inside, right) = rest.split_at_mut(hi - lo);
                        for d in left.iter_mut().chain(right) {
                            d.write(0.0);
                        }
                        if !inside.is_empty() {
                            let first = lo * s + kj - p;
                            // Every element of `inside` gets a value (im2col's contract).
                            if s == 1 {
                                // A contiguous run: a plain copy the compiler vectorises.
                                let src = &src_row[first..first + inside.len()];
                                for (d, &v) in inside.iter_mut().zip(src) {
                                    d.write(v);
                                }
                            } else {
                                strided_copy(inside, &src_row[first..], s);
                            }
                        }
                    }
                }
            }
        }
    }

    /// The adjoint of `im2col` (same matrix layout): adds each column entry back to the input
    /// position it came from. `cols` is scratch: the entries of padding positions may be
    /// overwritten with zeros (so that a "same" convolution adds whole blocks at once).
    fn col2im_add(&self, cols: &mut [f32], row_stride: usize, first_column: usize, dx: &mut [f32]) {
        let (oh, ow, k, s, p) = (
            self.out_height(),
            self.out_width(),
            self.kernel,
            self.stride,
            self.padding,
        );
        let (h, w) = (self.in_height, self.in_width);
        for c in 0..self.in_channels {
            let plane = &mut dx[c * h * w..(c + 1) * h * w];
            for ki in 0..k {
                for kj in 0..k {
                    let row = (c * k + ki) * k + kj;
                    let start = row * row_stride + first_column;
                    let src = &mut cols[start..start + oh * ow];
                    let (lo, hi) = self.columns_inside(kj);
                    if lo == hi {
                        continue;
                    }
                    if let Some(shift) = self.same_shift(ki, kj) {
                        // The adjoint of im2col's shifted copy: whole rows added at once, with
                        // the row ends that read padding left out.
                        let (a, b) = self.same_copy_range(ki, shift);
                        for run in wrapped_row_ends((a, b), ow, (lo, hi)) {
                            src[run].fill(0.0);
                        }
                        if a < b {
                            let into = (a as isize + shift) as usize;
                            accumulate_into(&mut plane[into..into + (b - a)], &src[a..b]);
                        }
                        continue;
                    }
                    for oy in 0..oh {
                        let iy = (oy * s + ki) as isize - p as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        let dst_row = &mut plane[iy as usize * w..(iy as usize + 1) * w];
                        // Only the output columns [lo, hi) read inside the row.
                        let values = &src[oy * ow + lo..oy * ow + hi];
                        let first = lo * s + kj - p;
                        if s == 1 {
                            let dst = &mut dst_row[first..first + values.len()];
                            for (d, v) in dst.iter_mut().zip(values) {
                                *d += v;
                            }
                        } else {
                            strided_add(&mut dst_row[first..], values, s);
                        }
                    }
                }
            }
        }
    }
}

/// `dst[i] = src[i·s]` for every element of `dst` (`src` holds at least `(len − 1)·s + 1`
/// values). Stride 2 (resnet20's downsampling convolutions) goes through whole pairs, which the
/// compiler turns into vector shuffles; `iter().step_by` moved one element at a time, and
/// those copies and their adjoint were 5 % of a resnet20 step's CPU samples.
fn strided_copy(dst: &mut [MaybeUninit<f32>], src: &[f32], s: usize) {
    let Some((last, body)) = dst.split_last_mut() else {
        return;
    };
    last.write(src[body.len() * s]);
    if s == 2 {
        for (d, pair) in body.iter_mut().zip(src.chunks_exact(2)) {
            d.write(pair[0]);
        }
    } else {
        for (d, &v) in body.iter_mut().zip(src.iter().step_by(s)) {
            d.write(v);
        }
    }
}

/// `dst[i·s] += values[i]` for every value, the adjoint of [`strided_copy`].
fn strided_add(dst: &mut [f32], values: &[f32], s: usize) {
    let Some((last, body)) = values.split_last() else {
        return;
    };
    dst[body.len() * s] += last;
    if s == 2 {
        for (pair, v) in dst.chunks_exact_mut(2).zip(body) {
            pair[0] += v;
        }
    } else {
        for (d, v) in dst.iter_mut().step_by(s).zip(body) {
            *d += v;
        }
    }
}

/// The runs of a "same" convolution's shifted block `[a, b)` (rows `ow` long) whose output
/// columns lie outside `[lo, hi)`: there the shifted copy read a neighbouring row's end where
/// the convolution reads padding. None for the kernel's middle column (`[lo, hi)` the whole
/// row).
fn wrapped_row_ends(
    (a, b): (usize, usize),
    ow: usize,
    (lo, hi): (usize, usize),
) -> impl Iterator<Item = std::ops::Range<usize>> {
    let rows = if lo > 0 || hi < ow {
        a - a % ow..b
    } else {
        b..b
    };
    rows.step_by(ow)
        .flat_map(move |start| [start..start + lo, start + hi..start + ow])
        .map(move |run| run.start.max(a)..run.end.min(b))
        .filter(|run| run.start < run.end)
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
    // The implicit gemm where it applies and Winograd does not.
    let direct = g.winograd().is_none().then(|| DirectConv::of(&g)).flatten();
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
        let task_backward = |t: usize, mut grad_x: Option<&mut [f32]>, kept: Vec<Vec<f32>>| {
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
                    d.add_input_gradient(grad_out, kernels, grad_x);
                }
                return (transpose(&grad_w_t, patch, oc), bias_gradient());
            }
            let col2im = grad_x.is_some() && adjoint.is_none();
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
            if let (Some(grad_x), Some((adjoint, u))) = (grad_x, &adjoint) {
                adjoint.correlate(grad_out, u, |_, start, row| {
                    accumulate_into(&mut grad_x[start..start + row.len()], row)
                });
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
                .par_chunks_mut(task_in)
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
/// floats), whose unfolding was 9 % of a step's CPU samples; a 32×32 net's (75 MB a layer at
/// batch 64) are unfolded again, chunk by chunk in cache.
const KEPT_COLUMN_FLOATS: usize = 1 << 22;
/// A chunk's unfolded columns stay within this many floats (1 MiB), so that they are written
/// and read in a core's cache rather than in memory; a sample whose columns are larger is a
/// chunk alone.
const CHUNK_COLUMN_FLOATS: usize = 1 << 18;

#[cfg(test)]
#[path = "conv_tests.rs"]
mod tests;
