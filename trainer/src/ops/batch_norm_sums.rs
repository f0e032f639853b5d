//! Batch norm's per-channel sums over whole samples: the forward pass's moments about a shift and
//! the backward pass's Σ dL/dy and Σ dL/dy·x̂, each in f64 over 8 independent lanes per channel.
//!
//! Where the CPU has AVX2 both run as loops written with intrinsics by hand: the compiler left
//! the portable loops scalar (one f32 → f64 conversion and one add at a time; by `perf` of a
//! cifar-bn step, Σ dL/dy·x̂ alone took more CPU samples than batch norm's dL/dx pass, which
//! moves twice the memory). Both ways add the same values in the same order, lane by lane, so
//! they give the same bits (tested), and the records do not depend on the CPU.

use super::Layout;

/// Independent f64 sums per channel in the statistics' loops: one chain of adds would wait on
/// the add latency. Lane i takes a plane's elements i, i + 8, … in order.
const LANES: usize = 8;

/// Per channel of whole samples (`samples` holds `k` of them, in NCHW order): Σ(x − k) and
/// Σ(x − k)² about the channel's `shift`, added into `sums`. A plane's elements past its last
/// whole group of 8 go first, into lane 0; the lanes are added first to last.
pub(super) fn shifted_moments(
    samples: &[f32],
    layout: Layout,
    shift: &[f32],
    sums: &mut [(f64, f64)],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { shifted_moments_avx2(samples, layout, shift, sums) };
    }
    portable_shifted_moments(samples, layout, shift, sums)
}

/// Per channel of whole samples: Σ dL/dy (dL/dβ) and Σ dL/dy·x̂ (dL/dγ), added into `sums`, with
/// x̂ = (x − mean)·inv_std made again from x in f32 as the forward pass made it. A plane's
/// elements past its last whole group of 8 are added last, into lane 0.
pub(super) fn gradient_sums(
    grad_out: &[f32],
    x: &[f32],
    layout: Layout,
    norm: (&[f32], &[f32]),
    sums: &mut [(f64, f64)],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { gradient_sums_avx2(grad_out, x, layout, norm, sums) };
    }
    portable_gradient_sums(grad_out, x, layout, norm, sums)
}

/// Adds `plane_sums(c, range)` into `sums[c]` for each channel `c`'s plane, sample after sample,
/// `len` values in all: the walk both ways share, so that they add the planes in one order.
#[inline(always)]
fn add_plane_sums(
    layout: Layout,
    len: usize,
    sums: &mut [(f64, f64)],
    mut plane_sums: impl FnMut(usize, std::ops::Range<usize>) -> (f64, f64),
) {
    for (i, start) in (0..len).step_by(layout.plane.max(1)).enumerate() {
        let c = i % layout.channels;
        let (first, second) = plane_sums(c, start..start + layout.plane);
        sums[c].0 += first;
        sums[c].1 += second;
    }
}

/// [`shifted_moments`] where the CPU lacks AVX2 (and the tests' second way).
fn portable_shifted_moments(
    samples: &[f32],
    layout: Layout,
    shift: &[f32],
    sums: &mut [(f64, f64)],
) {
    add_plane_sums(layout, samples.len(), sums, |c, at| {
        plane_moments(&samples[at], shift[c] as f64)
    })
}

/// Σ(x − k) and Σ(x − k)² over one plane, about a value k of the channel itself, so that the
/// variance (Σ(x − k)² − (Σ(x − k))²/n)/n loses no digits to a mean far from zero.
fn plane_moments(plane: &[f32], k: f64) -> (f64, f64) {
    let (mut d1, mut d2) = ([0.0f64; LANES], [0.0f64; LANES]);
    let chunks = plane.chunks_exact(LANES);
    for &v in chunks.remainder() {
        let d = v as f64 - k;
        d1[0] += d;
        d2[0] += d * d;
    }
    for v in chunks {
        for i in 0..LANES {
            let d = v[i] as f64 - k;
            d1[i] += d;
            d2[i] += d * d;
        }
    }
    (d1.iter().sum(), d2.iter().sum())
}

/// [`gradient_sums`] where the CPU lacks AVX2 (and the tests' second way).
fn portable_gradient_sums(
    grad_out: &[f32],
    x: &[f32],
    layout: Layout,
    norm: (&[f32], &[f32]),
    sums: &mut [(f64, f64)],
) {
    add_plane_sums(layout, x.len(), sums, |c, at| {
        plane_gradient_sums(&grad_out[at.clone()], &x[at], norm.0[c], norm.1[c])
    })
}

/// Σ g and Σ g·x̂ over one plane, x̂ = (x − m)·s in f32.
fn plane_gradient_sums(go: &[f32], x: &[f32], m: f32, s: f32) -> (f64, f64) {
    let (mut b, mut g) = ([0.0f64; LANES], [0.0f64; LANES]);
    let (gc, xc) = (go.chunks_exact(LANES), x.chunks_exact(LANES));
    let (gt, xt) = (gc.remainder(), xc.remainder());
    for (gv, xv) in gc.zip(xc) {
        for i in 0..LANES {
            b[i] += gv[i] as f64;
            g[i] += gv[i] as f64 * ((xv[i] - m) * s) as f64;
        }
    }
    add_tail(&mut b, &mut g, gt, xt, m, s);
    (b.iter().sum(), g.iter().sum())
}

/// The elements past a plane's last whole group of 8, added into lane 0 of Σ g and Σ g·x̂.
fn add_tail(b: &mut [f64; LANES], g: &mut [f64; LANES], go: &[f32], x: &[f32], m: f32, s: f32) {
    for (gv, xv) in go.iter().zip(x) {
        b[0] += *gv as f64;
        g[0] += *gv as f64 * ((*xv - m) * s) as f64;
    }
}

/// 8 f32 lanes as two vectors of 4 f64: lanes 0–3 and lanes 4–7.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn widen(v: std::arch::x86_64::__m256) -> [std::arch::x86_64::__m256d; 2] {
    use std::arch::x86_64::*;
    [
        _mm256_cvtps_pd(_mm256_castps256_ps128(v)),
        _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v)),
    ]
}

/// The 8 lanes held as two vectors of 4 f64, as an array in lane order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn lanes_of(v: [std::arch::x86_64::__m256d; 2]) -> [f64; LANES] {
    use std::arch::x86_64::*;
    let mut out = [0.0f64; LANES];
    // SAFETY: `out` holds 8 f64, two 256-bit vectors.
    unsafe {
        _mm256_storeu_pd(out.as_mut_ptr(), v[0]);
        _mm256_storeu_pd(out.as_mut_ptr().add(4), v[1]);
    }
    out
}

/// [`portable_shifted_moments`] with [`plane_moments_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn shifted_moments_avx2(samples: &[f32], layout: Layout, shift: &[f32], sums: &mut [(f64, f64)]) {
    add_plane_sums(layout, samples.len(), sums, |c, at| {
        plane_moments_avx2(&samples[at], shift[c] as f64)
    })
}

/// [`plane_moments`] in AVX2 vectors: the same operations on the same lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn plane_moments_avx2(plane: &[f32], k: f64) -> (f64, f64) {
    use std::arch::x86_64::*;
    let chunks = plane.chunks_exact(LANES);
    let (mut first1, mut first2) = (0.0f64, 0.0f64);
    for &v in chunks.remainder() {
        let d = v as f64 - k;
        first1 += d;
        first2 += d * d;
    }
    let kv = _mm256_set1_pd(k);
    let zero = _mm256_setzero_pd();
    let mut d1 = [_mm256_setr_pd(first1, 0.0, 0.0, 0.0), zero];
    let mut d2 = [_mm256_setr_pd(first2, 0.0, 0.0, 0.0), zero];
    for v in chunks {
        // SAFETY: an exact chunk holds 8 f32.
        let v = widen(unsafe { _mm256_loadu_ps(v.as_ptr()) });
        for h in 0..2 {
            let d = _mm256_sub_pd(v[h], kv);
            d1[h] = _mm256_add_pd(d1[h], d);
            d2[h] = _mm256_add_pd(d2[h], _mm256_mul_pd(d, d));
        }
    }
    (lanes_of(d1).iter().sum(), lanes_of(d2).iter().sum())
}

/// [`portable_gradient_sums`] with [`plane_gradient_sums_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn gradient_sums_avx2(
    grad_out: &[f32],
    x: &[f32],
    layout: Layout,
    norm: (&[f32], &[f32]),
    sums: &mut [(f64, f64)],
) {
    add_plane_sums(layout, x.len(), sums, |c, at| {
        plane_gradient_sums_avx2(&grad_out[at.clone()], &x[at], norm.0[c], norm.1[c])
    })
}

/// [`plane_gradient_sums`] in AVX2 vectors: the same operations on the same lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn plane_gradient_sums_avx2(go: &[f32], x: &[f32], m: f32, s: f32) -> (f64, f64) {
    use std::arch::x86_64::*;
    let (mv, sv) = (_mm256_set1_ps(m), _mm256_set1_ps(s));
    let zero = _mm256_setzero_pd();
    let (mut b, mut g) = ([zero; 2], [zero; 2]);
    let (gc, xc) = (go.chunks_exact(LANES), x.chunks_exact(LANES));
    let (gt, xt) = (gc.remainder(), xc.remainder());
    for (gv, xv) in gc.zip(xc) {
        // SAFETY: exact chunks hold 8 f32 each.
        let (gv, xv) = unsafe { (_mm256_loadu_ps(gv.as_ptr()), _mm256_loadu_ps(xv.as_ptr())) };
        // x̂ in f32, as the forward pass made it, then widened.
        let xh = _mm256_mul_ps(_mm256_sub_ps(xv, mv), sv);
        let (gv, xh) = (widen(gv), widen(xh));
        for h in 0..2 {
            b[h] = _mm256_add_pd(b[h], gv[h]);
            g[h] = _mm256_add_pd(g[h], _mm256_mul_pd(gv[h], xh[h]));
        }
    }
    let (mut b, mut g) = (lanes_of(b), lanes_of(g));
    add_tail(&mut b, &mut g, gt, xt, m, s);
    (b.iter().sum(), g.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Σ over a plane as the records have always taken it, written out: 8 f64 lanes, lane i
    /// taking elements i, i + 8, … of the whole groups of 8; the rest into lane 0, before the
    /// groups (`tail_first`) or after them; then the lanes first to last.
    fn eight_lanes(terms: &[f64], tail_first: bool) -> f64 {
        let full = terms.len() / 8 * 8;
        let mut lanes = [0.0f64; 8];
        if tail_first {
            for t in &terms[full..] {
                lanes[0] += t;
            }
        }
        for (i, t) in terms[..full].iter().enumerate() {
            lanes[i % 8] += t;
        }
        if !tail_first {
            for t in &terms[full..] {
                lanes[0] += t;
            }
        }
        lanes.iter().sum()
    }

    /// Both sums, by the dispatched code (AVX2 where the CPU has it) and by the portable loops,
    /// are bit for bit the eight-lane sums written out above, for planes with and without a
    /// tail, one position (a dense layer) included, over several samples and channels.
    #[test]
    fn both_ways_keep_the_eight_lane_order_bit_for_bit() {
        type Moments = fn(&[f32], Layout, &[f32], &mut [(f64, f64)]);
        type Gradients = fn(&[f32], &[f32], Layout, (&[f32], &[f32]), &mut [(f64, f64)]);
        let ways: [(&str, Moments, Gradients); 2] = [
            ("dispatched", shifted_moments, gradient_sums),
            ("portable", portable_shifted_moments, portable_gradient_sums),
        ];
        // Magnitudes from 1e-10 to 1e10, so that the f64 sums round and their order shows.
        let value = |i: usize, scale: f32| {
            ((i as f32 * 0.618_034).fract() - 0.4) * scale * 10f32.powi((i * 7 % 21) as i32 - 10)
        };
        for (way, moments, gradients) in ways {
            for plane in [1usize, 3, 8, 13, 64, 121] {
                let layout = Layout {
                    batch: 5,
                    channels: 3,
                    plane,
                };
                let n = layout.batch * layout.sample_len();
                let x: Vec<f32> = (0..n).map(|i| value(i, 3.0)).collect();
                let grad: Vec<f32> = (0..n).map(|i| value(i + 7, 1e-3)).collect();
                let shift = [0.5f32, -1.0, 1.25];
                let (mean, inv_std) = ([0.1f32, -0.1, 0.0], [0.9f32, 1.1, 1.3]);
                let mut got_moments = vec![(0.0, 0.0); 3];
                moments(&x, layout, &shift, &mut got_moments);
                let mut got_gradients = vec![(0.0, 0.0); 3];
                gradients(&grad, &x, layout, (&mean, &inv_std), &mut got_gradients);
                for c in 0..3 {
                    let (mut want_moments, mut want_gradients) = ((0.0f64, 0.0f64), (0.0, 0.0));
                    for sample in 0..layout.batch {
                        let at = sample * layout.sample_len() + c * plane..;
                        let (xs, gs) = (&x[at.clone()][..plane], &grad[at][..plane]);
                        let d: Vec<f64> = xs.iter().map(|&v| v as f64 - shift[c] as f64).collect();
                        let d2: Vec<f64> = d.iter().map(|d| d * d).collect();
                        want_moments.0 += eight_lanes(&d, true);
                        want_moments.1 += eight_lanes(&d2, true);
                        let g: Vec<f64> = gs.iter().map(|&g| g as f64).collect();
                        let gx: Vec<f64> = gs
                            .iter()
                            .zip(xs)
                            .map(|(&g, &v)| g as f64 * ((v - mean[c]) * inv_std[c]) as f64)
                            .collect();
                        want_gradients.0 += eight_lanes(&g, false);
                        want_gradients.1 += eight_lanes(&gx, false);
                    }
                    let context = format!("{way}: plane {plane}, channel {c}");
                    let bits = |p: (f64, f64)| (p.0.to_bits(), p.1.to_bits());
                    assert_eq!(
                        bits(got_moments[c]),
                        bits(want_moments),
                        "moments, {context}"
                    );
                    assert_eq!(
                        bits(got_gradients[c]),
                        bits(want_gradients),
                        "gradient sums, {context}"
                    );
                }
            }
        }
    }
}
