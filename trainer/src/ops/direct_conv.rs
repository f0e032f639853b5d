//! Stride-1 convolutions with many channels on small planes as an implicit gemm on AVX-512:
//! every product reads its patch in place, through a table of offsets into the (padded) input,
//! instead of from columns that im2col unfolded and gemm packed again.
//!
//! Why: on LeNet's second convolution (32 → 64 channels, 13×13 → 11×11) the unfolding, gemm's
//! packing of the columns and col2im were ~25 % of a step's CPU samples, more than the products
//! left for the gemm kernel; Winograd costs more than it saves on 11×11 planes
//! ([`super::winograd::MIN_POSITIONS`]). The kernel is written by hand with intrinsics because
//! no crate multiplies through an offset table (gemm takes strided matrices only); it is the
//! shape of gemm's own AVX-512 kernel, up to 24 vector accumulators, a panel of up to 64
//! lanes by 6–8 rows.
//!
//! All three products are `C[p][lane] = Σ_k src[koff[k] + poff[p]] · B[k][lane]`:
//! - forward: p an output position, k a patch element (c, ki, kj), lanes the output channels;
//! - dL/dW: p a patch element, k an output position, lanes the output channels (dL/dWᵀ);
//! - dL/dx: p an input position, k (output channel, ki, kj) over dL/d(output) padded by
//!   `kernel − 1 − padding`, lanes the input channels: the correlation with the flipped kernel.

use std::mem::MaybeUninit;

use super::conv::ConvGeometry;
use super::{assume_written, transpose, transpose_into, GradTerm};

/// The fewest patch elements (input channels × kernel²) for which the kernel pays: its
/// accumulators are loaded and stored once per output row and panel, around a loop over the
/// patch.
const MIN_PATCH: usize = 64;

/// A convolution the implicit gemm computes: stride 1, channels in multiples of 16 (a vector)
/// on both sides, padding below the kernel.
#[derive(Debug, Clone, Copy)]
pub struct DirectConv {
    g: ConvGeometry,
}

impl DirectConv {
    /// The direct kernel for `g`, where it applies and the CPU has AVX-512.
    pub fn of(g: &ConvGeometry) -> Option<Self> {
        let shape = g.stride == 1
            && g.in_channels.is_multiple_of(16)
            && g.out_channels.is_multiple_of(16)
            && g.padding < g.kernel
            && g.patch_len() >= MIN_PATCH;
        (shape && avx512()).then_some(Self { g: *g })
    }

    /// Sides of the padded input.
    fn padded(&self) -> (usize, usize) {
        let g = &self.g;
        (g.in_height + 2 * g.padding, g.in_width + 2 * g.padding)
    }

    /// Offsets into a padded sample of each patch element (c, ki, kj), in the weights' order.
    fn patch_offsets(&self) -> Vec<usize> {
        let (g, (hp, wp)) = (&self.g, self.padded());
        let k = g.kernel;
        let mut offsets = Vec::with_capacity(g.patch_len());
        for c in 0..g.in_channels {
            for ki in 0..k {
                offsets.extend((0..k).map(|kj| c * hp * wp + ki * wp + kj));
            }
        }
        offsets
    }

    /// Offsets of each output position's patch corner in a plane `row` wide.
    fn position_offsets(height: usize, width: usize, row: usize) -> Vec<usize> {
        (0..height)
            .flat_map(|y| (0..width).map(move |x| y * row + x))
            .collect()
    }

    /// One sample `[C, H, W]` with `pad` zeros around each plane, into `buf`. A buffer that
    /// held a sample of the same shape keeps its zeros: only the planes' insides are written
    /// (zeroing it whole for every sample: LeNet's convolutions took 2–3 % longer against its
    /// pooling and dense layers, 3 alternating pairs).
    fn pad_planes(x: &[f32], (h, w): (usize, usize), pad: usize, buf: &mut Vec<f32>) {
        let (hp, wp) = (h + 2 * pad, w + 2 * pad);
        let len = x.len() / (h * w) * hp * wp;
        if buf.len() != len {
            buf.clear();
            buf.resize(len, 0.0);
        }
        for (plane, padded) in x.chunks(h * w).zip(buf.chunks_mut(hp * wp)) {
            for (row, dst) in plane.chunks(w).zip(padded[pad * wp..].chunks_mut(wp)) {
                dst[pad..pad + w].copy_from_slice(row);
            }
        }
    }

    /// The output of a run of whole samples, NCHW, with each channel's bias: `weights_t` is
    /// the weights transposed, `[patch, out_channels]`. Writes every element of `out`.
    pub fn forward(
        &self,
        x: &[f32],
        weights_t: &[f32],
        bias: &[f32],
        out: &mut [MaybeUninit<f32>],
    ) {
        let g = &self.g;
        let (oc, positions) = (g.out_channels, g.out_positions());
        let koff = self.patch_offsets();
        let poff = Self::position_offsets(g.out_height(), g.out_width(), self.padded().1);
        let (mut padded, mut product) = (Vec::new(), vec![0.0f32; positions * oc]);
        for (x, out) in x.chunks(g.in_len()).zip(out.chunks_mut(g.out_len())) {
            let src = self.input(x, &mut padded);
            implicit_gemm(src, &koff, &poff, weights_t, oc, &mut product, false);
            // `[positions, oc]` to `[oc, positions]`, with the bias.
            for (o, channel) in out.chunks_mut(positions).enumerate() {
                let b = bias[o];
                for (d, row) in channel.iter_mut().zip(product.chunks(oc)) {
                    d.write(row[o] + b);
                }
            }
        }
    }

    /// Adds dL/dWᵀ (`[patch, out_channels]`) of a run of whole samples into `grad_w_t`.
    pub fn add_weight_gradient_t(&self, x: &[f32], grad_out: &[f32], grad_w_t: &mut [f32]) {
        let g = &self.g;
        let (oc, positions) = (g.out_channels, g.out_positions());
        let koff = Self::position_offsets(g.out_height(), g.out_width(), self.padded().1);
        let poff = self.patch_offsets();
        let (mut padded, mut grad_t) = (Vec::new(), vec![0.0f32; positions * oc]);
        for (x, grad_out) in x.chunks(g.in_len()).zip(grad_out.chunks(g.out_len())) {
            let src = self.input(x, &mut padded);
            transpose_into(grad_out, oc, positions, &mut grad_t);
            implicit_gemm(src, &koff, &poff, &grad_t, oc, grad_w_t, true);
        }
    }

    /// The kernels of dL/dx's correlation, `[(out_channel, ki, kj), in_channel]`, from the
    /// weights `[out_channel, in_channel, ki, kj]`.
    pub fn input_gradient_kernels(&self, weights: &[f32]) -> Vec<f32> {
        // Each output channel's `[in_channel, ki·kj]` block transposed.
        let (ic, kk) = (self.g.in_channels, self.g.kernel * self.g.kernel);
        weights
            .chunks(ic * kk)
            .flat_map(|block| transpose(block, ic, kk))
            .collect()
    }

    /// Adds dL/dx of a run of whole samples into `grad_x`; `kernels` from
    /// [`Self::input_gradient_kernels`].
    pub fn add_input_gradient(&self, grad_out: &[f32], kernels: &[f32], grad_x: &mut [f32]) {
        self.input_gradient(grad_out, kernels, grad_x)
    }

    /// [`Self::add_input_gradient`] into a new gradient, written once instead of cleared and
    /// added into (the same bits).
    pub fn write_input_gradient<'a>(
        &self,
        grad_out: &[f32],
        kernels: &[f32],
        grad_x: &'a mut [MaybeUninit<f32>],
    ) -> &'a mut [f32] {
        self.input_gradient(grad_out, kernels, grad_x);
        // SAFETY: `input_gradient` stores into every element: each sample's planes, each plane's
        // positions (the lengths asserted there).
        unsafe { assume_written(grad_x) }
    }

    fn input_gradient<G: GradTerm>(&self, grad_out: &[f32], kernels: &[f32], grad_x: &mut [G]) {
        let g = &self.g;
        let (out_len, in_len) = (g.out_len().max(1), g.in_len().max(1));
        assert!(
            grad_out.len().is_multiple_of(out_len)
                && grad_x.len().is_multiple_of(in_len)
                && grad_x.len() / in_len == grad_out.len() / out_len,
            "dL/dx of whole samples"
        );
        let (k, ic) = (g.kernel, g.in_channels);
        let pad = k - 1 - g.padding;
        let (gh, gw) = (g.out_height() + 2 * pad, g.out_width() + 2 * pad);
        let mut koff = Vec::with_capacity(g.out_channels * k * k);
        for o in 0..g.out_channels {
            for ki in 0..k {
                koff.extend((0..k).map(|kj| o * gh * gw + (k - 1 - ki) * gw + (k - 1 - kj)));
            }
        }
        let positions = g.in_height * g.in_width;
        let poff = Self::position_offsets(g.in_height, g.in_width, gw);
        let (mut padded, mut product) = (Vec::new(), vec![0.0f32; positions * ic]);
        let out_side = (g.out_height(), g.out_width());
        for (grad_out, grad_x) in grad_out
            .chunks(g.out_len())
            .zip(grad_x.chunks_mut(g.in_len()))
        {
            Self::pad_planes(grad_out, out_side, pad, &mut padded);
            implicit_gemm(&padded, &koff, &poff, kernels, ic, &mut product, false);
            for (c, plane) in grad_x.chunks_mut(positions).enumerate() {
                for (d, row) in plane.iter_mut().zip(product.chunks(ic)) {
                    d.store(row[c]);
                }
            }
        }
    }

    /// One sample's input as the kernel reads it: padded into `buf` where there is padding.
    fn input<'a>(&self, x: &'a [f32], buf: &'a mut Vec<f32>) -> &'a [f32] {
        let g = &self.g;
        if g.padding == 0 {
            return x;
        }
        Self::pad_planes(x, (g.in_height, g.in_width), g.padding, buf);
        buf
    }
}

/// Whether the CPU has AVX-512F.
fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f");
    #[allow(unreachable_code)]
    false
}

/// `c[p·lanes + l] (+)= Σ_k src[koff[k] + poff[p]] · b[k·lanes + l]` for every row p of `poff`
/// and lane l < `lanes` (a multiple of 16); `accumulate` adds onto `c`, else overwrites it.
fn implicit_gemm(
    src: &[f32],
    koff: &[usize],
    poff: &[usize],
    b: &[f32],
    lanes: usize,
    c: &mut [f32],
    accumulate: bool,
) {
    let reach = koff.iter().max().copied().unwrap_or(0) + poff.iter().max().copied().unwrap_or(0);
    assert!(
        lanes.is_multiple_of(16)
            && (koff.is_empty() || poff.is_empty() || reach < src.len())
            && b.len() >= koff.len() * lanes
            && c.len() >= poff.len() * lanes,
        "implicit gemm's operands"
    );
    assert!(avx512(), "the implicit gemm needs AVX-512F");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has AVX-512F; every read is src[koff + poff] < src.len(), b[k·lanes + l]
    // with k < koff.len(), l < lanes, and every write c[p·lanes + l] with p < poff.len(), all
    // checked above.
    unsafe {
        kernel::run(
            src.as_ptr(),
            koff,
            poff,
            b.as_ptr(),
            lanes,
            c.as_mut_ptr(),
            accumulate,
        )
    }
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    //! The AVX-512 loops of [`super::implicit_gemm`].

    use std::arch::x86_64::*;

    /// Panels of up to 64 lanes, each through blocks of rows: 24 accumulators of the 32 vector
    /// registers for panels of 4 and 3 vectors; 8 rows at most, because every row holds a
    /// pointer in a general register (12 rows of 2 vectors spilled both kinds of register to
    /// the stack: LeNet's convolution backward pass took ~25 % longer).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn run(
        src: *const f32,
        koff: &[usize],
        poff: &[usize],
        b: *const f32,
        lanes: usize,
        c: *mut f32,
        accumulate: bool,
    ) {
        let mut lane = 0;
        while lane < lanes {
            let vectors = ((lanes - lane) / 16).min(4);
            // SAFETY (all four): the caller's bounds hold for every lane below `lanes`.
            unsafe {
                let (b, c) = (b.add(lane), c.add(lane));
                match vectors {
                    4 => panel::<4, 6>(src, koff, poff, b, lanes, c, accumulate),
                    3 => panel::<3, 8>(src, koff, poff, b, lanes, c, accumulate),
                    2 => panel::<2, 8>(src, koff, poff, b, lanes, c, accumulate),
                    _ => panel::<1, 8>(src, koff, poff, b, lanes, c, accumulate),
                }
            }
            lane += vectors * 16;
        }
    }

    /// One panel of `V` vectors of lanes, `R` rows at a time, the last rows one by one.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn panel<const V: usize, const R: usize>(
        src: *const f32,
        koff: &[usize],
        poff: &[usize],
        b: *const f32,
        ld: usize,
        c: *mut f32,
        accumulate: bool,
    ) {
        let mut rows = poff.chunks_exact(R);
        for (i, block) in rows.by_ref().enumerate() {
            // SAFETY: the block's rows are below poff.len().
            unsafe { rows_block::<V, R>(src, koff, block, b, ld, c.add(i * R * ld), accumulate) };
        }
        let done = poff.len() / R * R;
        for (i, row) in rows.remainder().chunks(1).enumerate() {
            let c = unsafe { c.add((done + i) * ld) };
            unsafe { rows_block::<V, 1>(src, koff, row, b, ld, c, accumulate) };
        }
    }

    /// `R` rows of the panel: the accumulators stay in registers over the whole loop over k.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn rows_block<const V: usize, const R: usize>(
        src: *const f32,
        koff: &[usize],
        rows: &[usize],
        b: *const f32,
        ld: usize,
        c: *mut f32,
        accumulate: bool,
    ) {
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        let mut bases = [src; R];
        for (r, (base, &row)) in bases.iter_mut().zip(rows).enumerate() {
            // SAFETY: src + row + koff stays inside src for every k (the caller's bound).
            *base = unsafe { src.add(row) };
            if accumulate {
                for (v, a) in acc[r].iter_mut().enumerate() {
                    // SAFETY: row r of the block, lane v·16 of the panel, inside c.
                    *a = unsafe { _mm512_loadu_ps(c.add(r * ld + v * 16)) };
                }
            }
        }
        let mut bk = b;
        let mut bv = [_mm512_setzero_ps(); V];
        for &k in koff {
            for (v, vector) in bv.iter_mut().enumerate() {
                *vector = unsafe { _mm512_loadu_ps(bk.add(v * 16)) };
            }
            for (base, acc) in bases.iter().zip(&mut acc) {
                let a = _mm512_set1_ps(unsafe { *base.add(k) });
                for (a_v, b_v) in acc.iter_mut().zip(&bv) {
                    *a_v = _mm512_fmadd_ps(a, *b_v, *a_v);
                }
            }
            bk = unsafe { bk.add(ld) };
        }
        for (r, acc) in acc.iter().enumerate() {
            for (v, a) in acc.iter().enumerate() {
                unsafe { _mm512_storeu_ps(c.add(r * ld + v * 16), *a) };
            }
        }
    }
}
