//! 2-D convolution as a dfdx tape op: im2col + gemm forward, and a backward that writes dL/dW,
//! dL/db and (unless the input is the data) dL/dx into dfdx's gradients.
//!
//! Work is split over samples with rayon; each sample's matrices are small, so single-threaded
//! gemm calls on separate samples use the cores better than one parallel gemm per sample.

use std::mem::MaybeUninit;

use anyhow::{bail, Result};
use dfdx::prelude::*;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{accumulate_into, matmul, tensor_values, Activations, MatRef};
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

    /// Unfolds one sample `[C, H, W]` into `cols[patch_len, out_positions]`, writing every
    /// element of `cols` (padding as 0), so `cols` may start uninitialised.
    fn im2col(&self, x: &[f32], cols: &mut [MaybeUninit<f32>]) {
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
                    let dst = &mut cols[row * oh * ow..(row + 1) * oh * ow];
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
                        // Output columns whose input column ix = ox·s + kj − p lies inside the
                        // row: [lo, hi). Outside it is padding; inside, a plain strided copy
                        // without a bounds test per element.
                        let lo = p.saturating_sub(kj).div_ceil(s).min(ow);
                        let hi = (w + p).saturating_sub(kj).div_ceil(s).clamp(lo, ow);
                        let (left, rest) = dst_row.split_at_mut(lo);
                        let (inside, right) = rest.split_at_mut(hi - lo);
                        for d in left.iter_mut().chain(right) {
                            d.write(0.0);
                        }
                        if !inside.is_empty() {
                            let first = lo * s + kj - p;
                            let src = src_row[first..].iter().step_by(s);
                            // Every element of `inside` gets a value (im2col's contract).
                            debug_assert!(src.len() >= inside.len());
                            for (d, &v) in inside.iter_mut().zip(src) {
                                d.write(v);
                            }
                        }
                    }
                }
            }
        }
    }

    /// The adjoint of `im2col`: adds each column entry back to the input position it came from.
    fn col2im_add(&self, cols: &[f32], dx: &mut [f32]) {
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
                    let src = &cols[row * oh * ow..(row + 1) * oh * ow];
                    for oy in 0..oh {
                        let iy = (oy * s + ki) as isize - p as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        let dst_row = &mut plane[iy as usize * w..(iy as usize + 1) * w];
                        for (ox, &v) in src[oy * ow..(oy + 1) * ow].iter().enumerate() {
                            let ix = (ox * s + kj) as isize - p as isize;
                            if ix >= 0 && ix < w as isize {
                                dst_row[ix as usize] += v;
                            }
                        }
                    }
                }
            }
        }
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
    let (x_tensor, mut tape) = x.tensor.split_tape();
    let x_values = tensor_values(&x_tensor);
    let (patch, positions) = (g.patch_len(), g.out_positions());

    // The two largest buffers of a step are written exactly once: im2col fills `cols` from
    // uninitialised memory, and `out` starts as the broadcast bias that gemm accumulates onto
    // (zero-filling them first cost a memset of ~18 MB per LeNet step).
    let mut cols: Vec<f32> = Vec::with_capacity(batch * patch * positions);
    cols.spare_capacity_mut()
        .par_chunks_mut(patch * positions)
        .zip(x_values.par_chunks(g.in_len()))
        .for_each(|(cols, x)| g.im2col(x, cols));
    // SAFETY: the loop above gave every sample's chunk to im2col, which writes all its elements.
    unsafe { cols.set_len(batch * patch * positions) };
    let w = &weight.value;
    let mut bias_plane = Vec::with_capacity(g.out_len());
    for &b in &bias.value {
        bias_plane.extend(std::iter::repeat_n(b, positions));
    }
    let mut out: Vec<f32> = Vec::with_capacity(batch * g.out_len());
    for _ in 0..batch {
        out.extend_from_slice(&bias_plane);
    }
    out.par_chunks_mut(g.out_len())
        .zip(cols.par_chunks(patch * positions))
        .for_each(|(out, cols)| {
            matmul(
                out,
                MatRef::new(w, g.out_channels, patch),
                MatRef::new(cols, patch, positions),
                true,
            );
        });
    drop(x_values);

    let dev = x_tensor.device().clone();
    let out_tensor = dev.tensor_from_vec(out, (batch, g.out_len()));
    if T::OWNS_TAPE {
        let x_ghost = x_tensor.ghost();
        let out_ghost = out_tensor.ghost();
        let w_ghost = weight.matrix_tensor().ghost();
        let b_ghost = bias.vector_tensor().ghost();
        let w_values = weight.value.clone();
        tape.add_backward_op(move |grads| {
            let grad_out = std::mem::take(&mut **grads.get_or_alloc_mut(&out_ghost)?);
            let (grad_w, grad_b) = weight_gradients(&g, &grad_out, &cols, batch);
            accumulate_into(grads.get_or_alloc_mut(&w_ghost)?, &grad_w);
            accumulate_into(grads.get_or_alloc_mut(&b_ghost)?, &grad_b);
            if input_needs_grad {
                // col2im adds straight into dfdx's gradient of x.
                let grad_x: &mut [f32] = grads.get_or_alloc_mut(&x_ghost)?;
                grad_x
                    .par_chunks_mut(g.in_len())
                    .zip(grad_out.par_chunks(g.out_len()))
                    .for_each_init(
                        || vec![0.0f32; patch * positions],
                        |grad_cols, (grad_x, grad_out)| {
                            matmul(
                                grad_cols,
                                MatRef::t(&w_values, patch, g.out_channels),
                                MatRef::new(grad_out, g.out_channels, positions),
                                false,
                            );
                            g.col2im_add(grad_cols, grad_x);
                        },
                    );
            }
            Ok(())
        });
    }
    Activations {
        tensor: out_tensor.put_tape(tape),
        sample_shape: g.out_shape(),
    }
}

/// Samples per partial sum of [`weight_gradients`]: fixed, so that the order of the floating-point
/// sums depends neither on the thread count nor on rayon's work stealing.
const GRADIENT_CHUNK: usize = 4;

/// dL/dW = Σₙ dL/dOutₙ · colsₙᵀ and dL/db = Σ over samples and positions of dL/dOut, summed
/// per fixed chunk of samples (in parallel) and then over the chunks in order, so that the
/// result is the same bit for bit on every run.
fn weight_gradients(
    g: &ConvGeometry,
    grad_out: &[f32],
    cols: &[f32],
    batch: usize,
) -> (Vec<f32>, Vec<f32>) {
    let (patch, positions, oc) = (g.patch_len(), g.out_positions(), g.out_channels);
    let zero = || (vec![0.0f32; oc * patch], vec![0.0f32; oc]);
    let partials: Vec<(Vec<f32>, Vec<f32>)> = (0..batch.div_ceil(GRADIENT_CHUNK))
        .into_par_iter()
        .map(|chunk| {
            let (mut gw, mut gb) = zero();
            for n in chunk * GRADIENT_CHUNK..((chunk + 1) * GRADIENT_CHUNK).min(batch) {
                let go = &grad_out[n * oc * positions..(n + 1) * oc * positions];
                let c = &cols[n * patch * positions..(n + 1) * patch * positions];
                matmul(
                    &mut gw,
                    MatRef::new(go, oc, positions),
                    MatRef::t(c, positions, patch),
                    true,
                );
                for (b, channel) in gb.iter_mut().zip(go.chunks(positions)) {
                    *b += channel.iter().sum::<f32>();
                }
            }
            (gw, gb)
        })
        .collect();
    let (mut gw, mut gb) = zero();
    for (w, b) in &partials {
        accumulate_into(&mut gw, w);
        accumulate_into(&mut gb, b);
    }
    (gw, gb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{
        assert_gradient_matches, assert_param_gradient_matches, pseudo_random,
    };
    use crate::ops::Tape;

    /// The definition, as four nested loops over a zero-padded input.
    fn naive_conv(g: &ConvGeometry, x: &[f32], w: &[f32], b: &[f32], batch: usize) -> Vec<f32> {
        let (oh, ow, k) = (g.out_height(), g.out_width(), g.kernel);
        let mut out = vec![0.0; batch * g.out_len()];
        for n in 0..batch {
            for o in 0..g.out_channels {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = b[o] as f64;
                        for c in 0..g.in_channels {
                            for ki in 0..k {
                                for kj in 0..k {
                                    let iy = (oy * g.stride + ki) as isize - g.padding as isize;
                                    let ix = (ox * g.stride + kj) as isize - g.padding as isize;
                                    if iy >= 0
                                        && ix >= 0
                                        && (iy as usize) < g.in_height
                                        && (ix as usize) < g.in_width
                                    {
                                        let xi = n * g.in_len()
                                            + (c * g.in_height + iy as usize) * g.in_width
                                            + ix as usize;
                                        let wi = ((o * g.in_channels + c) * k + ki) * k + kj;
                                        acc += x[xi] as f64 * w[wi] as f64;
                                    }
                                }
                            }
                        }
                        out[n * g.out_len() + (o * oh + oy) * ow + ox] = acc as f32;
                    }
                }
            }
        }
        out
    }

    fn params(dev: &Cpu, g: &ConvGeometry, seed: u64) -> (Param, Param) {
        let w = Param::matrix(
            dev,
            "conv.weight".into(),
            vec![g.out_channels, g.in_channels, g.kernel, g.kernel],
            g.out_channels,
            g.patch_len(),
            pseudo_random(g.out_channels * g.patch_len(), seed),
        );
        let b = Param::vector(
            dev,
            "conv.bias".into(),
            pseudo_random(g.out_channels, seed + 1),
        );
        (w, b)
    }

    fn run_eval(
        dev: &Cpu,
        g: &ConvGeometry,
        x: &[f32],
        w: &Param,
        b: &Param,
        batch: usize,
    ) -> Vec<f32> {
        let x = Activations {
            tensor: dev.tensor_from_vec(x.to_vec(), (batch, g.in_len())),
            sample_shape: [g.in_channels, g.in_height, g.in_width],
        };
        tensor_values(&conv2d(x, w, b, *g, false).tensor)
    }

    #[test]
    fn forward_matches_direct_loops() {
        let dev = Cpu::default();
        let shapes = [
            ([1, 8, 8], 4, 3, 1, 1, 2),
            ([3, 7, 9], 5, 3, 2, 0, 3),
            ([2, 6, 6], 3, 5, 1, 2, 1),
            ([4, 5, 5], 2, 1, 1, 0, 2),
            ([2, 10, 7], 6, 4, 3, 1, 2),
        ];
        for (seed, (input, out, k, s, p, batch)) in shapes.into_iter().enumerate() {
            let g = ConvGeometry::new(input, out, k, s, p).unwrap();
            let (w, b) = params(&dev, &g, seed as u64 * 10);
            let x = pseudo_random(batch * g.in_len(), seed as u64 * 10 + 5);
            let ours = run_eval(&dev, &g, &x, &w, &b, batch);
            let naive = naive_conv(&g, &x, &w.value, &b.value, batch);
            assert_eq!(ours.len(), naive.len());
            for (a, e) in ours.iter().zip(&naive) {
                assert!((a - e).abs() < 1e-4, "{input:?} k{k} s{s} p{p}: {a} vs {e}");
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let dev = Cpu::default();
        for (input, out, k, s, p) in [([2, 5, 5], 3, 3, 1, 1), ([1, 7, 6], 2, 3, 2, 0)] {
            let g = ConvGeometry::new(input, out, k, s, p).unwrap();
            let batch = 2;
            let (w, b) = params(&dev, &g, 3);
            let x = pseudo_random(batch * g.in_len(), 4);
            let probe = pseudo_random(batch * g.out_len(), 5);

            let x_tensor = dev.tensor_from_vec(x.clone(), (batch, g.in_len()));
            let traced = Activations {
                tensor: x_tensor.retaped::<Tape>(),
                sample_shape: input,
            };
            let out_t = conv2d(traced, &w, &b, g, true).tensor;
            let probe_t = dev.tensor_from_vec(probe.clone(), (batch, g.out_len()));
            let mut grads = (out_t * probe_t).sum().backward();
            let grad_x = grads.get(&x_tensor).as_vec();
            let grad_w = w.take_grad(&mut grads).unwrap();
            let grad_b = b.take_grad(&mut grads).unwrap();

            let objective = |out: Vec<f32>| {
                out.iter()
                    .zip(&probe)
                    .map(|(o, p)| *o as f64 * *p as f64)
                    .sum::<f64>()
            };
            assert_gradient_matches(
                "dx",
                &x,
                &grad_x,
                &|xp| objective(run_eval(&dev, &g, xp, &w, &b, batch)),
                1e-2,
                2e-3,
            );
            assert_param_gradient_matches(
                &w,
                &grad_w,
                &|w2| objective(run_eval(&dev, &g, &x, w2, &b, batch)),
                1e-2,
                2e-3,
            );
            assert_param_gradient_matches(
                &b,
                &grad_b,
                &|b2| objective(run_eval(&dev, &g, &x, &w, b2, batch)),
                1e-2,
                2e-3,
            );
        }
    }

    #[test]
    fn oversized_kernels_are_rejected() {
        let err = ConvGeometry::new([1, 2, 2], 4, 5, 1, 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("larger than its padded input"), "{err}");
    }
}
