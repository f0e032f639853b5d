//! dL/dW of a Winograd F(2×2, 3×3) correlation, by Winograd too.
//!
//! The forward pass makes each 2×2 output tile as Y = Aᵀ [U ⊙ V] A, with U = G g Gᵀ (the kernel
//! g transformed) and V = Bᵀ d B (the input tile d transformed). Y is linear in U, so
//! dL/dU = Σ over tiles of Z ⊙ V with Z = A dY Aᵀ (the tile's dL/dY spread to 4×4), and
//! dL/dg = Gᵀ (dL/dU) G. The sum over tiles is, for each of the 16 positions of a tile, one gemm
//! `(filters × tiles) · (tiles × channels)`: 16 multiplications per tile and channel pair where
//! im2col's dL/dW needs 36, and no unfolded columns to write and read again.

use super::{disjoint_rows, split_columns, Scratch, Winograd};
use crate::ops::{matmul, thread_buffers, MatRef};

impl Winograd {
    /// dL/dW, `[filters, channels, 3, 3]` as the weights are stored, summed over the samples of
    /// `x` (`[samples, channels, height, width]`) and `grad_out` (their dL/d(output),
    /// `[samples, filters, out_height, out_width]`), chunk by chunk in sample order: the same
    /// bits whatever the thread count.
    pub fn weight_gradient(&self, x: &[f32], grad_out: &[f32]) -> Vec<f32> {
        let (c, f) = (self.channels, self.filters);
        let samples = x.len() / self.in_len().max(1);
        assert_eq!(x.len(), samples * self.in_len(), "whole samples");
        assert_eq!(
            grad_out.len(),
            samples * self.out_len(),
            "dL/dy of each sample"
        );
        let chunk = self.chunk_samples().min(samples.max(1));
        let most_tiles = chunk * self.tiles_per_sample();
        // V and Z are overwritten in full for every chunk, so the thread's kept buffers serve.
        let mut v = thread_buffers::take(16 * c * most_tiles);
        let mut z = thread_buffers::take(16 * f * most_tiles);
        let mut grad_u = vec![0.0f32; 16 * f * c];
        let mut scratch = Scratch::new(self);
        let mut spread = Spread::new(self);
        for (i, first) in (0..samples).step_by(chunk).enumerate() {
            let n = chunk.min(samples - first);
            let tiles = n * self.tiles_per_sample();
            let (v, z) = (&mut v[..16 * c * tiles], &mut z[..16 * f * tiles]);
            self.transform_input(
                &x[first * self.in_len()..][..n * self.in_len()],
                v,
                &mut scratch,
            );
            let grad_out = &grad_out[first * self.out_len()..][..n * self.out_len()];
            self.spread_grad_output(grad_out, z, &mut spread);
            for xi in 0..16 {
                matmul(
                    &mut grad_u[xi * f * c..][..f * c],
                    MatRef::new(&z[xi * f * tiles..][..f * tiles], f, tiles),
                    MatRef::t(&v[xi * c * tiles..][..c * tiles], tiles, c),
                    i > 0,
                );
            }
        }
        thread_buffers::give_back(v);
        thread_buffers::give_back(z);
        kernel_gradients(&grad_u, f * c)
    }

    /// Z = A dY Aᵀ for every tile's 2×2 dL/dY, into `z` (`[16, filters, tiles]`), with
    /// A = [[1, 0], [1, 1], [1, −1], [0, −1]]; dL/dY is zero where a tile reaches past an odd
    /// plane's last row or column, and on each tile row's spare tile.
    fn spread_grad_output(&self, grad_out: &[f32], z: &mut [f32], spread: &mut Spread) {
        let (h, w, f) = (self.out_height(), self.out_width(), self.filters);
        let (th, tw) = (self.tile_rows(), self.tile_cols());
        let per_sample = self.tiles_per_sample();
        let samples = grad_out.len() / self.out_len().max(1);
        let tiles = samples * per_sample;
        for s in 0..samples {
            for filter in 0..f {
                let plane = &grad_out[(s * f + filter) * h * w..][..h * w];
                // Output row y is the first (y even) or second row of tile row y / 2, each tile
                // row's pair `2 · (tile_cols + 1)` wide; what no output reaches stays zero.
                for (y, row) in plane.chunks(w).enumerate() {
                    let rows = if y % 2 == 0 {
                        &mut spread.first
                    } else {
                        &mut spread.second
                    };
                    rows[(y / 2) * 2 * (tw + 1)..][..w].copy_from_slice(row);
                }
                debug_assert_eq!(spread.first.len(), 2 * th * (tw + 1));
                let outs: [&mut [f32]; 16] = disjoint_rows(z, |xi| {
                    ((xi * f + filter) * tiles + s * per_sample, per_sample)
                });
                grad_output_spread(&spread.first, &spread.second, &mut spread.columns, outs);
            }
        }
    }
}

/// Each tile's first and second dL/dY rows, one plane's tiles laid end to end (`2 · tile_rows
/// · (tile_cols + 1)` each, two columns a tile); written only where an output exists, so the
/// rest stays the zero it started as. `columns` holds their even and odd columns apart.
struct Spread {
    first: Vec<f32>,
    second: Vec<f32>,
    columns: [Vec<f32>; 4],
}

impl Spread {
    fn new(wg: &Winograd) -> Self {
        let tiles = wg.tiles_per_sample();
        Self {
            first: vec![0.0; 2 * tiles],
            second: vec![0.0; 2 * tiles],
            columns: std::array::from_fn(|_| vec![0.0; tiles]),
        }
    }
}

/// Z = A dY Aᵀ for one plane's tiles: A down the columns gives the rows (a, b) = (y₀₀, y₀₁),
/// (y₀₀ + y₁₀, y₀₁ + y₁₁), (y₀₀ − y₁₀, y₀₁ − y₁₁), (−y₁₀, −y₁₁); A along each row gives
/// a, a + b, a − b, −b into `outs[4r + l]`.
#[multiversion::multiversion(targets(
    "x86_64+avx2+fma+avx512f+avx512vl+avx512bw+avx512dq",
    "x86_64+avx2+fma"
))]
fn grad_output_spread(
    first: &[f32],
    second: &[f32],
    columns: &mut [Vec<f32>; 4],
    outs: [&mut [f32]; 16],
) {
    let n = outs[0].len();
    let [e0, o0, e1, o1] = columns;
    let (e0, o0, e1, o1) = (&mut e0[..n], &mut o0[..n], &mut e1[..n], &mut o1[..n]);
    split_columns(first, e0, o0);
    split_columns(second, e1, o1);
    let (e0, o0, e1, o1) = (&*e0, &*o0, &*e1, &*o1);
    let [z00, z01, z02, z03, z10, z11, z12, z13, z20, z21, z22, z23, z30, z31, z32, z33] = outs;
    let rows = [
        [z00, z01, z02, z03],
        [z10, z11, z12, z13],
        [z20, z21, z22, z23],
        [z30, z31, z32, z33],
    ];
    let [r0, r1, r2, r3] = rows;
    spread_row(n, r0, |t| (e0[t], o0[t]));
    spread_row(n, r1, |t| (e0[t] + e1[t], o0[t] + o1[t]));
    spread_row(n, r2, |t| (e0[t] - e1[t], o0[t] - o1[t]));
    spread_row(n, r3, |t| (-e1[t], -o1[t]));
}

/// A along one row of every tile: a, a + b, a − b, −b from the row's (a, b). Inlined into the
/// multiversioned caller, so that it is compiled for the caller's instruction set.
#[inline(always)]
fn spread_row(n: usize, outs: [&mut [f32]; 4], ab: impl Fn(usize) -> (f32, f32)) {
    let [za, zab, zamb, zb] = outs;
    let (za, zab, zamb, zb) = (&mut za[..n], &mut zab[..n], &mut zamb[..n], &mut zb[..n]);
    for t in 0..n {
        let (a, b) = ab(t);
        za[t] = a;
        zab[t] = a + b;
        zamb[t] = a - b;
        zb[t] = -b;
    }
}

/// dL/dg = Gᵀ P G for each kernel's 4×4 dL/dU P (`grad_u` is `[16, kernels]`), as
/// `[kernels, 3, 3]`, with Gᵀ = [[1, ½, ½, 0], [0, ½, −½, 0], [0, ½, ½, 1]].
fn kernel_gradients(grad_u: &[f32], kernels: usize) -> Vec<f32> {
    // Gᵀ applied to four values (a column, then a row).
    let g_t = |p: [f32; 4]| {
        [
            p[0] + (p[1] + p[2]) * 0.5,
            (p[1] - p[2]) * 0.5,
            (p[1] + p[2]) * 0.5 + p[3],
        ]
    };
    let mut out = vec![0.0f32; kernels * 9];
    for (k, kernel) in out.chunks_exact_mut(9).enumerate() {
        let p = |i: usize, l: usize| grad_u[(i * 4 + l) * kernels + k];
        // Gᵀ P: each of P's four columns becomes three rows' entries.
        let columns: [[f32; 3]; 4] =
            std::array::from_fn(|l| g_t([p(0, l), p(1, l), p(2, l), p(3, l)]));
        for ki in 0..3 {
            let row = g_t(std::array::from_fn(|l| columns[l][ki]));
            kernel[ki * 3..ki * 3 + 3].copy_from_slice(&row);
        }
    }
    out
}
