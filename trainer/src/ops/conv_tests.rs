//! The convolution against its definition: the forward pass against direct loops (im2col,
//! "same" shifted copies and Winograd), the gradients against finite differences and a chunked
//! batch against per-sample gradients.

use super::*;
use crate::ops::tensor_values;
use crate::ops::testing::{assert_gradient_matches, assert_param_gradient_matches, pseudo_random};
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
    let x = Activations::new(
        dev.tensor_from_vec(x.to_vec(), (batch, g.in_len())),
        [g.in_channels, g.in_height, g.in_width],
    );
    tensor_values(&conv2d(x, w, b, *g, false).into_tensor())
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
        // Three chunks of samples, the last one partial.
        ([2, 6, 5], 3, 3, 1, 1, 2 * SAMPLE_CHUNK + 5),
        // Columns of 576 × 256 floats: a sample alone is a chunk.
        ([64, 16, 16], 2, 3, 1, 1, 3),
        // "Same" convolutions (one shifted copy per kernel position) on thin planes, where
        // most kernel positions read padding and some no input row at all.
        ([2, 1, 4], 3, 3, 1, 1, 2),
        ([1, 5, 1], 2, 3, 1, 1, 2),
        ([2, 2, 3], 2, 5, 1, 2, 2),
        ([1, 1, 1], 2, 5, 1, 2, 1),
        // Winograd F(2×2, 3×3) (3×3, stride 1, ≥ 8 channels, ≥ 256 output positions) with
        // padding 1, 0 and 2, on even and odd planes.
        ([9, 16, 17], 8, 3, 1, 1, 2),
        ([8, 18, 18], 10, 3, 1, 0, 3),
        ([8, 15, 14], 9, 3, 1, 2, 2),
        // The implicit gemm (DIRECT_SHAPES), its panels of 64, 48 and 16 lanes.
        ([16, 7, 6], 16, 3, 1, 0, 3),
        ([32, 5, 5], 32, 3, 1, 1, 2),
        ([16, 6, 6], 48, 5, 1, 2, 2),
        ([16, 5, 5], 80, 3, 1, 2, 1),
        ([32, 13, 13], 64, 3, 1, 0, 2 * SAMPLE_CHUNK + 5),
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
    for (input, out, k, s, p) in [
        ([2, 5, 5], 3, 3, 1, 1),
        ([1, 7, 6], 2, 3, 2, 0),
        ([2, 6, 7], 2, 3, 2, 1),
        ([1, 5, 5], 2, 4, 3, 2),
        ([2, 1, 4], 2, 3, 1, 1),
        ([1, 3, 2], 2, 5, 1, 2),
        ([2, 6, 7], 2, 4, 1, 1),
        // The implicit gemm.
        ([16, 4, 4], 16, 3, 1, 1),
    ] {
        let g = ConvGeometry::new(input, out, k, s, p).unwrap();
        let batch = 2;
        let (w, b) = params(&dev, &g, 3);
        let x = pseudo_random(batch * g.in_len(), 4);
        let probe = pseudo_random(batch * g.out_len(), 5);
        let (grad_x, grad_w, grad_b) = taped_gradients(&dev, &g, (&w, &b), &x, &probe);

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

/// The gradients of a batch that spans several chunks (the last one partial) equal those of
/// its samples one at a time, which the finite-difference test above checks: for chunks of
/// 16 samples, of 7 (columns of 144 × 256 floats) and of one (576 × 256).
#[test]
fn gradients_of_a_chunked_batch_equal_per_sample_gradients() {
    for (input, chunk) in [([2, 6, 5], 16), ([16, 16, 16], 7), ([64, 16, 16], 1)] {
        let g = ConvGeometry::new(input, 3, 3, 1, 1).unwrap();
        // 2¹⁸ / (patch · positions), at most 16: 2¹⁸ / 36864 = 7.1, 2¹⁸ / 147456 = 1.8.
        assert_eq!(g.chunk_samples(), chunk, "{input:?}");
        check_chunked_gradients(g, 2 * chunk + chunk.div_ceil(2));
    }
    // Winograd both ways, over three tasks of samples (the last one partial).
    let g = ConvGeometry::new([8, 16, 16], 9, 3, 1, 1).unwrap();
    assert!(g.winograd().is_some() && g.winograd_adjoint().is_some());
    check_chunked_gradients(g, 2 * SAMPLE_CHUNK + 3);
}

/// A batch whose columns are too many to keep (over [`KEPT_COLUMN_FLOATS`]) unfolds them again
/// in the backward pass; its gradients equal those of its samples one at a time, whose columns
/// are kept from the forward pass.
#[test]
fn gradients_from_columns_unfolded_again_equal_those_from_kept_columns() {
    // 5×5 kernels, so im2col rather than Winograd: 400 · 1024 floats of columns a sample.
    let g = ConvGeometry::new([16, 32, 32], 3, 5, 1, 2).unwrap();
    assert!(g.winograd().is_none());
    let per_sample = g.patch_len() * g.out_positions();
    let batch = KEPT_COLUMN_FLOATS / per_sample + 1;
    assert!(per_sample <= KEPT_COLUMN_FLOATS && batch * per_sample > KEPT_COLUMN_FLOATS);
    check_chunked_gradients(g, batch);
}

/// The gradients where Winograd computes dL/dW, and dL/dx unless fewer than 8 filters make the
/// adjoint's channels (planes of ≥ 256 positions, too many inputs for the finite-difference
/// test), against their definitions in f64: dL/dx[c, y, x] =
/// Σ_o Σ_ki Σ_kj w[o, c, ki, kj] · g[o, y − ki + p, x − kj + p], dL/dW[o, c, ki, kj] =
/// Σ g[o, y, x] · x[c, y + ki − p, x + kj − p], dL/db[o] = Σ g[o, ·, ·].
#[test]
fn winograd_gradients_match_their_definitions() {
    let dev = Cpu::default();
    for (input, out, p) in [
        ([8, 16, 16], 9, 1),
        ([9, 18, 18], 8, 0),
        ([8, 14, 15], 8, 2),
        ([8, 16, 16], 4, 1),
    ] {
        let g = ConvGeometry::new(input, out, 3, 1, p).unwrap();
        assert!(g.winograd().is_some(), "{input:?} p{p}");
        assert_eq!(g.winograd_adjoint().is_some(), out >= 8, "{input:?} p{p}");
        let batch = 2;
        let (w, b) = params(&dev, &g, 11);
        let x = pseudo_random(batch * g.in_len(), 12);
        let probe = pseudo_random(batch * g.out_len(), 13);
        let (grad_x, grad_w, grad_b) = taped_gradients(&dev, &g, (&w, &b), &x, &probe);

        let [c_in, h, wd] = input;
        let (oh, ow) = (g.out_height(), g.out_width());
        let mut dx = vec![0.0f64; grad_x.len()];
        let mut dw = vec![0.0f64; grad_w.len()];
        let mut db = vec![0.0f64; out];
        for n in 0..batch {
            for o in 0..out {
                for y in 0..oh {
                    for xx in 0..ow {
                        let gv = probe[((n * out + o) * oh + y) * ow + xx] as f64;
                        db[o] += gv;
                        for c in 0..c_in {
                            for ki in 0..3 {
                                for kj in 0..3 {
                                    let (iy, ix) = (y + ki, xx + kj);
                                    if iy < p || ix < p || iy - p >= h || ix - p >= wd {
                                        continue;
                                    }
                                    let xi = ((n * c_in + c) * h + iy - p) * wd + ix - p;
                                    let wi = ((o * c_in + c) * 3 + ki) * 3 + kj;
                                    dx[xi] += w.value[wi] as f64 * gv;
                                    dw[wi] += x[xi] as f64 * gv;
                                }
                            }
                        }
                    }
                }
            }
        }
        for (name, ours, expected) in [
            ("dx", &grad_x, &dx),
            ("dW", &grad_w, &dw),
            ("db", &grad_b, &db),
        ] {
            for (a, e) in ours.iter().zip(expected.iter()) {
                assert!(
                    (*a as f64 - e).abs() < 1e-4 * (1.0 + e.abs()),
                    "{input:?} p{p} {name}: {a} vs {e}"
                );
            }
        }
    }
}

/// dL/dx, dL/dW and dL/db from the tape for the loss Σ probe · conv(x) over the samples in `x`.
fn taped_gradients(
    dev: &Cpu,
    g: &ConvGeometry,
    (w, b): (&Param, &Param),
    x: &[f32],
    probe: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let n = x.len() / g.in_len();
    let x_tensor = dev.tensor_from_vec(x.to_vec(), (n, g.in_len()));
    let input = [g.in_channels, g.in_height, g.in_width];
    let traced = Activations::new(x_tensor.retaped::<Tape>(), input);
    let out_t = conv2d(traced, w, b, *g, true).into_tensor();
    let probe_t = dev.tensor_from_vec(probe.to_vec(), (n, g.out_len()));
    let mut grads = (out_t * probe_t).sum().backward();
    (
        grads.get(&x_tensor).as_vec(),
        w.take_grad(&mut grads).unwrap(),
        b.take_grad(&mut grads).unwrap(),
    )
}

fn check_chunked_gradients(g: ConvGeometry, batch: usize) {
    let dev = Cpu::default();
    let (w, b) = params(&dev, &g, 8);
    let x = pseudo_random(batch * g.in_len(), 9);
    let probe = pseudo_random(batch * g.out_len(), 10);
    let gradients = |x: &[f32], probe: &[f32]| taped_gradients(&dev, &g, (&w, &b), x, probe);
    let (grad_x, grad_w, grad_b) = gradients(&x, &probe);
    let mut summed_w = vec![0.0f64; grad_w.len()];
    let mut summed_b = vec![0.0f64; grad_b.len()];
    for n in 0..batch {
        let (gx, gw, gb) = gradients(
            &x[n * g.in_len()..(n + 1) * g.in_len()],
            &probe[n * g.out_len()..(n + 1) * g.out_len()],
        );
        for (a, e) in grad_x[n * g.in_len()..(n + 1) * g.in_len()].iter().zip(&gx) {
            assert!((a - e).abs() < 1e-5, "dx of sample {n}: {a} vs {e}");
        }
        summed_w
            .iter_mut()
            .zip(&gw)
            .for_each(|(s, v)| *s += *v as f64);
        summed_b
            .iter_mut()
            .zip(&gb)
            .for_each(|(s, v)| *s += *v as f64);
    }
    for (a, e) in grad_w
        .iter()
        .zip(&summed_w)
        .chain(grad_b.iter().zip(&summed_b))
    {
        assert!((*a as f64 - e).abs() < 1e-4 * (1.0 + e.abs()), "{a} vs {e}");
    }
}

#[test]
fn oversized_kernels_are_rejected() {
    let err = ConvGeometry::new([1, 2, 2], 4, 5, 1, 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("larger than its padded input"), "{err}");
}

/// Convolutions the implicit gemm computes where the CPU has AVX-512: `(input, out, kernel,
/// padding, batch)`, stride 1. Rows of output and input positions that fill no whole block
/// (121, 25, 36 and 30 positions), every panel width, padding 0 to 2.
const DIRECT_SHAPES: [([usize; 3], usize, usize, usize, usize); 6] = [
    ([32, 13, 13], 64, 3, 0, SAMPLE_CHUNK + 3),
    ([64, 14, 14], 64, 3, 1, 2),
    ([16, 5, 5], 80, 3, 1, 2),
    ([16, 6, 6], 48, 5, 2, 2),
    ([32, 7, 6], 32, 3, 1, 2),
    ([16, 6, 7], 16, 2, 1, 3),
];

/// On a CPU with AVX-512 the shapes above do go through the implicit gemm (elsewhere through
/// im2col, which the other tests check), and LeNet's second convolution is one of them.
#[test]
fn the_implicit_gemm_takes_the_direct_shapes() {
    if !std::arch::is_x86_feature_detected!("avx512f") {
        return;
    }
    for (input, out, k, p, _) in DIRECT_SHAPES {
        let g = ConvGeometry::new(input, out, k, 1, p).unwrap();
        assert!(
            g.winograd().is_none() && DirectConv::of(&g).is_some(),
            "{input:?} k{k}"
        );
    }
    let lenet = ConvGeometry::new([32, 13, 13], 64, 3, 1, 0).unwrap();
    assert!(DirectConv::of(&lenet).is_some());
    // 16×16 planes go to the implicit gemm, 32×32 ones to Winograd; too few channels or
    // stride 2 stay with im2col.
    let sixteen = ConvGeometry::new([32, 16, 16], 64, 3, 1, 1).unwrap();
    assert!(sixteen.winograd().is_none() && DirectConv::of(&sixteen).is_some());
    let large = ConvGeometry::new([32, 32, 32], 64, 3, 1, 1).unwrap();
    assert!(large.winograd().is_some());
    for (input, out, s) in [([3, 13, 13], 64, 1), ([32, 13, 13], 64, 2)] {
        let g = ConvGeometry::new(input, out, 3, s, 1).unwrap();
        assert!(
            g.winograd().is_some() || DirectConv::of(&g).is_none(),
            "{input:?} s{s}"
        );
    }
}

/// The three gradients of Σ probe · conv(x) by their definitions, in f64: each output
/// position's probe flows to the bias, to every weight times the input it read, and to every
/// input it read times that weight.
#[test]
fn implicit_gemm_gradients_match_their_definitions() {
    let dev = Cpu::default();
    for (seed, (input, out, k, p, batch)) in DIRECT_SHAPES.into_iter().enumerate() {
        let g = ConvGeometry::new(input, out, k, 1, p).unwrap();
        let (w, b) = params(&dev, &g, 40 + seed as u64);
        let x = pseudo_random(batch * g.in_len(), 50 + seed as u64);
        let probe = pseudo_random(batch * g.out_len(), 60 + seed as u64);
        let (grad_x, grad_w, grad_b) = taped_gradients(&dev, &g, (&w, &b), &x, &probe);

        let (oh, ow, ic) = (g.out_height(), g.out_width(), g.in_channels);
        let mut want_x = vec![0.0f64; x.len()];
        let mut want_w = vec![0.0f64; w.value.len()];
        let mut want_b = vec![0.0f64; out];
        for n in 0..batch {
            for o in 0..out {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let pr = probe[n * g.out_len() + (o * oh + oy) * ow + ox] as f64;
                        want_b[o] += pr;
                        for c in 0..ic {
                            for ki in 0..k {
                                for kj in 0..k {
                                    let (iy, ix) = (
                                        (oy + ki) as isize - p as isize,
                                        (ox + kj) as isize - p as isize,
                                    );
                                    if iy < 0
                                        || ix < 0
                                        || iy as usize >= g.in_height
                                        || ix as usize >= g.in_width
                                    {
                                        continue;
                                    }
                                    let xi = n * g.in_len()
                                        + (c * g.in_height + iy as usize) * g.in_width
                                        + ix as usize;
                                    let wi = ((o * ic + c) * k + ki) * k + kj;
                                    want_w[wi] += pr * x[xi] as f64;
                                    want_x[xi] += pr * w.value[wi] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        for (name, got, want) in [
            ("dx", &grad_x, &want_x),
            ("dW", &grad_w, &want_w),
            ("db", &grad_b, &want_b),
        ] {
            assert_eq!(got.len(), want.len());
            for (i, (a, e)) in got.iter().zip(want).enumerate() {
                assert!(
                    (*a as f64 - e).abs() < 1e-4 * (1.0 + e.abs()),
                    "{input:?} out {out} k{k} p{p}: {name}[{i}] {a} vs {e}"
                );
            }
        }
    }
}

/// The implicit gemm's dL/dx written into a new gradient holds, bit for bit, what adding it into
/// zeros held (the way before gradients were written once).
#[test]
fn implicit_gemm_writes_a_new_input_gradient_as_adding_into_zeros() {
    for (seed, (input, out, k, p, batch)) in DIRECT_SHAPES.into_iter().enumerate() {
        let g = ConvGeometry::new(input, out, k, 1, p).unwrap();
        let Some(d) = DirectConv::of(&g) else {
            continue;
        };
        let seed = seed as u64;
        let kernels = d.input_gradient_kernels(&pseudo_random(out * g.patch_len(), 70 + seed));
        let grad_out = pseudo_random(batch * g.out_len(), 80 + seed);
        let mut added = vec![0.0f32; batch * g.in_len()];
        d.add_input_gradient(&grad_out, &kernels, &mut added);
        let mut new = vec![std::mem::MaybeUninit::<f32>::uninit(); added.len()];
        let written = d.write_input_gradient(&grad_out, &kernels, &mut new);
        for (i, (w, a)) in written.iter().zip(&added).enumerate() {
            assert_eq!(
                w.to_bits(),
                a.to_bits(),
                "{input:?} out {out}: dx[{i}] {w} written, {a} added"
            );
        }
    }
}
