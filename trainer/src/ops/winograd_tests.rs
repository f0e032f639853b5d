//! Tests of the Winograd correlation against the definition, written out in f64.

use super::*;
use crate::ops::testing::pseudo_random;

/// The 3×3 correlation with padding p, as nested loops in f64: out[s, o, y, x] =
/// Σ_c Σ_ki Σ_kj w[o, c, ki, kj] · x[s, c, y + ki − p, x + kj − p], zero outside the input.
fn direct(wg: &Winograd, x: &[f32], weight: &[f32]) -> Vec<f64> {
    let (c, f, h, w, p) = (wg.channels, wg.filters, wg.height, wg.width, wg.padding);
    let (oh, ow) = (h + 2 * p - 2, w + 2 * p - 2);
    let samples = x.len() / (c * h * w);
    let mut out = vec![0.0f64; samples * f * oh * ow];
    for s in 0..samples {
        for o in 0..f {
            for y in 0..oh {
                for xx in 0..ow {
                    let mut acc = 0.0f64;
                    for ch in 0..c {
                        for ki in 0..3 {
                            for kj in 0..3 {
                                let (iy, ix) = (y + ki, xx + kj);
                                if iy >= p && ix >= p && iy - p < h && ix - p < w {
                                    let v = x[((s * c + ch) * h + iy - p) * w + ix - p];
                                    let k = weight[((o * c + ch) * 3 + ki) * 3 + kj];
                                    acc += v as f64 * k as f64;
                                }
                            }
                        }
                    }
                    out[((s * f + o) * oh + y) * ow + xx] = acc;
                }
            }
        }
    }
    out
}

fn run(wg: &Winograd, x: &[f32], weight: &[f32]) -> Vec<f32> {
    let samples = x.len() / (wg.channels * wg.height * wg.width);
    let mut out = vec![f32::NAN; samples * wg.filters * wg.out_height() * wg.out_width()];
    let mut stored = vec![0u32; out.len()];
    wg.correlate(x, &wg.transform_kernels(weight), |_, start, row| {
        out[start..start + row.len()].copy_from_slice(row);
        stored[start..start + row.len()]
            .iter_mut()
            .for_each(|n| *n += 1);
    });
    assert!(
        stored.iter().all(|&n| n == 1),
        "every output stored exactly once"
    );
    out
}

/// (channels, filters, height, width, padding, samples) of the correlations tested: even and
/// odd planes, a 1×1 plane (only the kernel's centre reads input), a batch of 8 samples in
/// chunks of 3, 3 and 2 (16 · 64 channels · 8 · 9 tiles = 73728 floats a sample, at most 2¹⁸
/// a chunk); no padding (LeNet's 13×13 → 11×11) and padding 2 (its dL/dx, 11×11 → 13×13).
const CASES: [(usize, usize, usize, usize, usize, usize); 9] = [
    (3, 4, 6, 6, 1, 2),
    (2, 3, 5, 7, 1, 3),
    (1, 2, 1, 1, 1, 1),
    (4, 2, 2, 3, 1, 2),
    (64, 5, 16, 16, 1, 8),
    (3, 4, 13, 13, 0, 2),
    (2, 3, 4, 3, 0, 1),
    (3, 2, 11, 11, 2, 2),
    (2, 2, 1, 2, 2, 1),
];

/// [`CASES`] as correlations and their sample counts, numbered (the seeds of their data).
fn cases() -> impl Iterator<Item = (usize, (Winograd, usize))> {
    let correlation = |(channels, filters, height, width, padding, samples)| {
        let wg = Winograd {
            channels,
            filters,
            height,
            width,
            padding,
        };
        (wg, samples)
    };
    CASES.into_iter().map(correlation).enumerate()
}

#[test]
fn correlation_matches_the_definition() {
    for (seed, (wg, samples)) in cases() {
        let (channels, filters) = (wg.channels, wg.filters);
        let (height, width) = (wg.height, wg.width);
        if channels == 64 {
            assert_eq!(wg.chunk_samples(), 3, "2¹⁸ / 73728");
        }
        let x = pseudo_random(samples * channels * height * width, seed as u64);
        let weight = pseudo_random(filters * channels * 9, 100 + seed as u64);
        let ours = run(&wg, &x, &weight);
        let expected = direct(&wg, &x, &weight);
        assert_eq!(ours.len(), expected.len());
        for (i, (a, e)) in ours.iter().zip(&expected).enumerate() {
            // Inputs and weights in [-1, 1): each output sums 9·channels products.
            let bound = 1e-5 * (9 * channels) as f64;
            assert!(
                (*a as f64 - e).abs() <= bound,
                "{wg:?} output {i}: {a} vs {e}"
            );
        }
    }
}

/// dL/dx of the correlation is the correlation of dL/dy with the flipped kernels, on the output
/// planes with padding 2 − p: for any x and g, ⟨corr(x, w), g⟩ = ⟨x, corr(g, flipped(w))⟩ (the
/// adjoint identity), in f64.
#[test]
fn flipped_kernels_give_the_adjoint() {
    for (channels, filters, height, width, padding) in [
        (3, 5, 6, 7, 1),
        (2, 2, 1, 4, 1),
        (4, 3, 5, 5, 1),
        (3, 2, 6, 5, 0),
        (2, 3, 4, 4, 2),
    ] {
        let forward = Winograd {
            channels,
            filters,
            height,
            width,
            padding,
        };
        let adjoint = Winograd {
            channels: filters,
            filters: channels,
            height: forward.out_height(),
            width: forward.out_width(),
            padding: 2 - padding,
        };
        assert_eq!((adjoint.out_height(), adjoint.out_width()), (height, width));
        let x = pseudo_random(2 * channels * height * width, 1);
        let g = pseudo_random(2 * filters * forward.out_height() * forward.out_width(), 2);
        let weight = pseudo_random(filters * channels * 9, 3);
        let y = direct(&forward, &x, &weight);
        let back = direct(&adjoint, &g, &flipped(&weight, filters, channels));
        let lhs: f64 = y.iter().zip(&g).map(|(a, b)| a * *b as f64).sum();
        let rhs: f64 = x.iter().zip(&back).map(|(a, b)| *a as f64 * b).sum();
        assert!(
            (lhs - rhs).abs() < 1e-9 * (1.0 + lhs.abs()),
            "{lhs} vs {rhs}"
        );
    }
}

#[test]
fn a_kernel_turned_twice_is_itself() {
    let weight = pseudo_random(2 * 3 * 9, 4);
    assert_eq!(flipped(&flipped(&weight, 2, 3), 3, 2), weight);
    // The 180° turn of one kernel, by hand.
    let one: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    assert_eq!(
        flipped(&one, 1, 1),
        [9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]
    );
}

/// dL/dW by Winograd against its definition in f64: dW[o, c, ki, kj] = Σ_s Σ_y Σ_x
/// g[s, o, y, x] · x[s, c, y + ki − p, x + kj − p], zero outside the input, over [`CASES`].
#[test]
fn weight_gradient_matches_the_definition() {
    for (seed, (wg, samples)) in cases() {
        let (channels, filters) = (wg.channels, wg.filters);
        let (h, w, p) = (wg.height, wg.width, wg.padding);
        let (oh, ow) = (wg.out_height(), wg.out_width());
        let x = pseudo_random(samples * channels * h * w, 200 + seed as u64);
        let g = pseudo_random(samples * filters * oh * ow, 300 + seed as u64);
        let ours = wg.weight_gradient(&x, &g);
        let mut expected = vec![0.0f64; filters * channels * 9];
        for s in 0..samples {
            for o in 0..filters {
                for y in 0..oh {
                    for xx in 0..ow {
                        let gv = g[((s * filters + o) * oh + y) * ow + xx] as f64;
                        for c in 0..channels {
                            for ki in 0..3 {
                                for kj in 0..3 {
                                    let (iy, ix) = (y + ki, xx + kj);
                                    if iy >= p && ix >= p && iy - p < h && ix - p < w {
                                        let v = x[((s * channels + c) * h + iy - p) * w + ix - p];
                                        expected[((o * channels + c) * 3 + ki) * 3 + kj] +=
                                            v as f64 * gv;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(ours.len(), expected.len());
        // Each entry sums samples · positions products of values in [-1, 1).
        let bound = 1e-6 * (samples * oh * ow) as f64;
        for (i, (a, e)) in ours.iter().zip(&expected).enumerate() {
            assert!(
                (*a as f64 - e).abs() <= bound.max(1e-5),
                "{wg:?} dW {i}: {a} vs {e}"
            );
        }
    }
}

/// An empty batch has a zero gradient.
#[test]
fn weight_gradient_of_no_samples_is_zero() {
    let wg = Winograd {
        channels: 2,
        filters: 3,
        height: 4,
        width: 4,
        padding: 1,
    };
    assert_eq!(wg.weight_gradient(&[], &[]), vec![0.0; 3 * 2 * 9]);
}
