//! The backward pass of the piecewise built-ins (relu, leaky-relu, softsign, relu-softsign)
//! fused with the instruments' sums (SPEC §2), written with AVX2 intrinsics by hand.
//!
//! Why: their derivative pass is bound by memory, not arithmetic. Written first and summed
//! after, the sums were a second pass over L1 that began only when the first had ended, a fifth
//! of the instrumented site's backward time on LeNet; summed in the same loop, 8 elements at a
//! time, they run while the next values arrive from memory and cost next to nothing. The
//! compiler does not vectorise that loop (it stays scalar; written for every built-in as a
//! derivative loop then the sums over 64-element blocks, it was slower than two passes, the
//! transcendental ones most, from their scalar tails), hence the intrinsics; the
//! derivatives are the same IEEE operations as [`Builtin::grad_term`]'s, and the sums keep the
//! records' order ([`avx2::Lanes`]), so both are those of the unfused pass bit for bit. The
//! transcendental built-ins are bound by their arithmetic, so fusing would not hide the sums.

use std::mem::MaybeUninit;

use super::Builtin;
use crate::site_capture::SliceSums;

/// Writes dL/dz = 0 + dL/dh·f′(z) into `grad_z` and `out[i]` = the sums of the i-th
/// `len`-element slice of z, dL/dh and dL/dz, in one pass, and says true; false, with nothing
/// written, for a built-in without a fused pass or a CPU without AVX2.
pub(super) fn backward_new_with_sums(
    b: Builtin,
    z: &[f32],
    grad_h: &[f32],
    grad_z: &mut [MaybeUninit<f32>],
    len: usize,
    out: &mut [SliceSums],
) -> bool {
    assert!(
        z.len() == out.len() * len && grad_h.len() == z.len() && grad_z.len() == z.len(),
        "fused backward and sums' lengths"
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { x86::fused(b, z, grad_h, grad_z, len, out) };
    }
    let _ = (b, grad_z, len);
    false
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    use super::super::{Builtin, LEAKY_SLOPE};
    use crate::site_capture::{avx2, SliceSums};

    /// [`super::backward_new_with_sums`] on a CPU with AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) fn fused(
        b: Builtin,
        z: &[f32],
        grad_h: &[f32],
        grad_z: &mut [MaybeUninit<f32>],
        len: usize,
        out: &mut [SliceSums],
    ) -> bool {
        let (zero, one) = (_mm256_setzero_ps(), _mm256_set1_ps(1.0));
        let sign = _mm256_set1_ps(-0.0);
        let positive = |x| _mm256_cmp_ps::<_CMP_GT_OQ>(x, zero);
        match b {
            // f′ = 1 for x > 0, else 0 (or the slope): a select, as the scalar `if` is.
            Builtin::Relu => each_slice(b, z, grad_h, grad_z, len, out, |x| {
                _mm256_and_ps(positive(x), one)
            }),
            Builtin::LeakyRelu => each_slice(b, z, grad_h, grad_z, len, out, |x| {
                _mm256_blendv_ps(_mm256_set1_ps(LEAKY_SLOPE), one, positive(x))
            }),
            // 1 / (1 + |x|)².
            Builtin::Softsign => each_slice(b, z, grad_h, grad_z, len, out, |x| {
                let d = _mm256_add_ps(one, _mm256_andnot_ps(sign, x));
                _mm256_div_ps(one, _mm256_mul_ps(d, d))
            }),
            // 1 for x > 0, else 1 / (1 − x)².
            Builtin::ReluSoftsign => each_slice(b, z, grad_h, grad_z, len, out, |x| {
                let d = _mm256_sub_ps(one, x);
                let negative = _mm256_div_ps(one, _mm256_mul_ps(d, d));
                _mm256_blendv_ps(negative, one, positive(x))
            }),
            _ => return false,
        }
        true
    }

    /// The fused loop over each slice with the derivative `df`; a slice's tail (its last
    /// `len % 8` elements) takes the scalar [`Builtin::grad_term`].
    #[inline]
    #[target_feature(enable = "avx2")]
    fn each_slice(
        b: Builtin,
        z: &[f32],
        grad_h: &[f32],
        grad_z: &mut [MaybeUninit<f32>],
        len: usize,
        out: &mut [SliceSums],
        df: impl Fn(__m256) -> __m256,
    ) {
        let zero = _mm256_setzero_ps();
        for (i, sums) in out.iter_mut().enumerate() {
            let slice = i * len..(i + 1) * len;
            let (z, gh, gz) = (
                &z[slice.clone()],
                &grad_h[slice.clone()],
                &mut grad_z[slice],
            );
            let whole = len / avx2::LANES * avx2::LANES;
            let mut lanes = avx2::Lanes::new();
            for at in (0..whole).step_by(avx2::LANES) {
                // SAFETY: at + 8 ≤ whole ≤ len, the length of each of the three slices.
                let (zv, hv) = unsafe {
                    (
                        _mm256_loadu_ps(z.as_ptr().add(at)),
                        _mm256_loadu_ps(gh.as_ptr().add(at)),
                    )
                };
                // 0 + dL/dh·f′, as the unfused pass writes a new gradient (−0 becomes +0).
                let gv = _mm256_add_ps(zero, _mm256_mul_ps(hv, df(zv)));
                // SAFETY: as for the loads; MaybeUninit<f32> has f32's layout.
                unsafe { _mm256_storeu_ps(gz.as_mut_ptr().add(at).cast(), gv) };
                lanes.add(zv, hv, gv);
            }
            let tail = whole..len;
            // These four derivatives have no multiply-add, so the FMA flag does not change them.
            for ((gz, &gh), &z) in gz[tail.clone()]
                .iter_mut()
                .zip(&gh[tail.clone()])
                .zip(&z[tail.clone()])
            {
                gz.write(0.0 + b.grad_term::<true>(gh, z));
            }
            // SAFETY: every element of the slice is written: its whole chunks by the vector loop,
            // its tail just above.
            let gz = unsafe { crate::ops::assume_written(gz) };
            *sums = lanes.finish(&z[tail.clone()], &gh[tail.clone()], &gz[tail]);
        }
    }
}
