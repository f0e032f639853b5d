//! Winograd's minimal filtering F(2×2, 3×3) (Lavin & Gray, "Fast Algorithms for Convolutional
//! Neural Networks", 2016) for 3×3 convolutions of stride 1 and padding 0 to 2 on planes large
//! enough to pay for the transforms (the 32×32 presets'): each 2×2 block of outputs comes from a
//! 4×4 input tile with 16 multiplications per channel pair instead of 36, done as 16 gemms of
//! `(filters × channels) · (channels × tiles)`.
//!
//! The conv's forward pass uses it, and so does its dL/dx, which is the same kind of correlation
//! of dL/d(output) with the kernel turned by 180° and its channels swapped ([`flipped`]); dL/dW
//! comes from the same transforms ([`weights`]). The transforms run over whole rows of tiles, so that they are vector code.
//!
//! Hand-written: no maintained Rust crate offers a CPU Winograd convolution, and dfdx 0.13's
//! own convolution (im2col, behind the broken `nightly` feature) has none.

use super::{matmul, thread_buffers, MatRef};

#[path = "winograd_weights.rs"]
mod weights;

/// The shapes of one correlation: `channels` in, `filters` out, on `height × width` input
/// planes, a 3×3 kernel, stride 1 and `padding` (0 to 2) zeros around the input, so that the
/// output planes are `height + 2·padding − 2` high and as much wider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Winograd {
    pub channels: usize,
    pub filters: usize,
    pub height: usize,
    pub width: usize,
    pub padding: usize,
}

/// Below this many input channels (the gemms' inner dimension) the 16 small gemms cost more than
/// im2col's one: the first layer of a colour net has 3.
pub const MIN_CHANNELS: usize = 8;
/// Below this many output positions a plane's transforms cost more than the multiplications
/// they save (measured on 2 AVX-512 cores): on LeNet's 11×11 planes its step went from 11 to
/// 13 ms, on resnet20's 8×8 planes from 162 to 172 ms; 16×16 and 32×32 planes gain.
pub const MIN_POSITIONS: usize = 256;
/// Where the implicit gemm ([`super::direct_conv`]) applies, the fewest output positions
/// Winograd takes: 32×32 planes, not 16×16 ones. Measured on 2 AVX-512 cores as the time of
/// the convolutions over that of batch norm in the same steps (the machine's speed moved
/// more than the change), 3 alternating pairs: with the implicit gemm on the 16×16 planes,
/// resnet20's (32 channels) went from 3.83 to 3.46 and cifar-bn's (64 channels) stayed at
/// 2.86 against 2.90; with it on the 32×32 planes as well, a cifar step took 3–6 % longer.
/// 28×28 planes (cifar on MNIST-sized inputs) take the implicit gemm: there the convolutions'
/// time over the pooling, dense and activation layers' went from 3.36, 3.39, 3.66 with Winograd
/// to 3.25, 3.31, 3.37 (3 alternating pairs).
pub const MIN_POSITIONS_BESIDE_DIRECT: usize = 1024;
/// The transformed inputs and products of a chunk of samples stay within this many floats each
/// (1 MiB), so that they are written and read in a core's cache.
const CHUNK_FLOATS: usize = 1 << 18;

impl Winograd {
    /// The transformed kernels, `[16, filters, channels]`, of `weight` (`[filters, channels, 3,
    /// 3]`): U = G g Gᵀ for each kernel g.
    pub fn transform_kernels(&self, weight: &[f32]) -> Vec<f32> {
        let (f, c) = (self.filters, self.channels);
        assert_eq!(weight.len(), f * c * 9, "3×3 kernels");
        // G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]], applied to rows, then columns.
        let g_rows = |a: f32, b: f32, c: f32| [a, (a + b + c) * 0.5, (a - b + c) * 0.5, c];
        let mut u = vec![0.0f32; 16 * f * c];
        for (k, g) in weight.chunks(9).enumerate() {
            // G·g: 4 rows of 3, one column of g at a time.
            let mut gg = [[0.0f32; 3]; 4];
            for j in 0..3 {
                let col = g_rows(g[j], g[3 + j], g[6 + j]);
                for i in 0..4 {
                    gg[i][j] = col[i];
                }
            }
            // (G·g)·Gᵀ: each row of 3 becomes 4.
            for (i, row) in gg.iter().enumerate() {
                for (l, value) in g_rows(row[0], row[1], row[2]).into_iter().enumerate() {
                    u[(i * 4 + l) * f * c + k] = value;
                }
            }
        }
        u
    }

    pub fn out_height(&self) -> usize {
        self.height + 2 * self.padding - 2
    }
    pub fn out_width(&self) -> usize {
        self.width + 2 * self.padding - 2
    }
    fn tile_rows(&self) -> usize {
        self.out_height().div_ceil(2)
    }
    fn tile_cols(&self) -> usize {
        self.out_width().div_ceil(2)
    }
    /// Tiles a sample takes in V and M: each tile row carries one spare tile, so that a plane's
    /// transforms run as single loops over all its tiles (rows of tiles laid end to end) rather
    /// than a short loop per tile row. The spare tiles' values are never stored.
    fn tiles_per_sample(&self) -> usize {
        self.tile_rows() * (self.tile_cols() + 1)
    }
    fn in_len(&self) -> usize {
        self.channels * self.height * self.width
    }
    fn out_len(&self) -> usize {
        self.filters * self.out_height() * self.out_width()
    }

    /// Samples per chunk: as many as keep a chunk's transformed inputs and products within
    /// [`CHUNK_FLOATS`] each, at least one; a function of the shapes alone.
    pub fn chunk_samples(&self) -> usize {
        let per_sample = 16 * self.channels.max(self.filters) * self.tiles_per_sample();
        (CHUNK_FLOATS / per_sample.max(1)).max(1)
    }

    /// Correlates the samples in `x` (`[samples, channels, height, width]`) with the kernels
    /// `u` ([`Self::transform_kernels`]) and hands each output row to `store(filter, start,
    /// values)`, `start` being the row's first index in `[samples, filters, out_height,
    /// out_width]`. Every output row is stored exactly once.
    pub fn correlate(&self, x: &[f32], u: &[f32], mut store: impl FnMut(usize, usize, &[f32])) {
        assert_eq!(x.len() % self.in_len().max(1), 0, "whole samples");
        assert_eq!(
            u.len(),
            16 * self.filters * self.channels,
            "transformed kernels"
        );
        let (c, f) = (self.channels, self.filters);
        let samples = x.len() / self.in_len().max(1);
        let chunk = self.chunk_samples().min(samples.max(1));
        // One buffer of each for all the chunks, kept by the thread from call to call
        // ([`thread_buffers`]): V is overwritten in full, M by gemm.
        let most_tiles = chunk * self.tiles_per_sample();
        let mut v = thread_buffers::take(16 * c * most_tiles);
        let mut m = thread_buffers::take(16 * f * most_tiles);
        let mut scratch = Scratch::new(self);
        for first in (0..samples).step_by(chunk) {
            let n = chunk.min(samples - first);
            let tiles = n * self.tiles_per_sample();
            let (v, m) = (&mut v[..16 * c * tiles], &mut m[..16 * f * tiles]);
            let x = &x[first * self.in_len()..][..n * self.in_len()];
            self.transform_input(x, v, &mut scratch);
            for xi in 0..16 {
                matmul(
                    &mut m[xi * f * tiles..][..f * tiles],
                    MatRef::new(&u[xi * f * c..][..f * c], f, c),
                    MatRef::new(&v[xi * c * tiles..][..c * tiles], c, tiles),
                    false,
                );
            }
            self.transform_output(m, n, &mut scratch, |filter, start, values| {
                store(filter, first * self.out_len() + start, values)
            });
        }
        thread_buffers::give_back(v);
        thread_buffers::give_back(m);
    }

    /// V = Bᵀ d B for every 4×4 input tile d, into `v` (`[16, channels, tiles]`), with
    /// Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]]. Tile (ty, tx) reads input
    /// rows 2ty − p … 2ty − p + 3 and columns 2tx − p … 2tx − p + 3 (p the padding), zero
    /// outside the plane.
    fn transform_input(&self, x: &[f32], v: &mut [f32], scratch: &mut Scratch) {
        let (h, w, c, p) = (self.height, self.width, self.channels, self.padding);
        let per_sample = self.tiles_per_sample();
        let samples = x.len() / self.in_len();
        let tiles = samples * per_sample;
        let padded = 2 * (self.tile_cols() + 1);
        let rows_kept = self.tile_rows() + 1;
        for s in 0..samples {
            for ch in 0..c {
                let plane = &x[(s * c + ch) * h * w..][..h * w];
                // Input rows 2k − p and 2k + 1 − p (k = 0 … tile rows), zero-padded to `padded`
                // columns (input column j − p at j); rows outside the plane stay zero.
                for (y, row) in plane.chunks(w).enumerate() {
                    let k = (y + p) / 2;
                    if k < rows_kept {
                        let rows = if (y + p) % 2 == 0 {
                            &mut scratch.first_rows
                        } else {
                            &mut scratch.second_rows
                        };
                        rows[k * padded + p..][..w].copy_from_slice(row);
                    }
                }
                let outs: [&mut [f32]; 16] =
                    disjoint_rows(v, |xi| ((xi * c + ch) * tiles + s * per_sample, per_sample));
                input_transform(
                    &scratch.first_rows,
                    &scratch.second_rows,
                    &mut scratch.halves,
                    outs,
                );
            }
        }
    }

    /// Y = Aᵀ M A for every tile's 4×4 products M, with Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]],
    /// handed to `store` a whole output row at a time (the last tile's second column or row is
    /// left out where the plane's width or height is odd).
    fn transform_output(
        &self,
        m: &[f32],
        samples: usize,
        scratch: &mut Scratch,
        mut store: impl FnMut(usize, usize, &[f32]),
    ) {
        let (h, w, f) = (self.out_height(), self.out_width(), self.filters);
        let (th, tw) = (self.tile_rows(), self.tile_cols());
        let per_sample = self.tiles_per_sample();
        let tiles = samples * per_sample;
        let mut row = vec![0.0f32; 2 * tw];
        for s in 0..samples {
            for filter in 0..f {
                let products: [&[f32]; 16] = std::array::from_fn(|xi| {
                    &m[(xi * f + filter) * tiles + s * per_sample..][..per_sample]
                });
                output_transform(&products, &mut scratch.outputs);
                let [y00, y01, y10, y11] = &scratch.outputs;
                for ty in 0..th {
                    let tile_row = ty * (tw + 1)..ty * (tw + 1) + tw;
                    for (dy, (left, right)) in [(y00, y01), (y10, y11)].into_iter().enumerate() {
                        let y = 2 * ty + dy;
                        if y >= h {
                            continue;
                        }
                        for (pair, (l, r)) in row
                            .chunks_exact_mut(2)
                            .zip(left[tile_row.clone()].iter().zip(&right[tile_row.clone()]))
                        {
                            pair[0] = *l;
                            pair[1] = *r;
                        }
                        store(filter, ((s * f + filter) * h + y) * w, &row[..w]);
                    }
                }
            }
        }
    }
}

/// Scratch planes of one correlation, reused for every plane of every chunk.
struct Scratch {
    /// Input rows 2k − p and 2k + 1 − p: `tile_rows + 1` zero-padded rows each.
    first_rows: Vec<f32>,
    second_rows: Vec<f32>,
    /// The even and odd columns of `first_rows` and `second_rows`, apart: `(tile_rows + 1) ·
    /// (tile_cols + 1)` each and one spare zero, which the last (spare) tile reads.
    halves: [Vec<f32>; 4],
    /// The four outputs of every tile, `[4, tiles]`: Y₀₀, Y₀₁, Y₁₀, Y₁₁.
    outputs: [Vec<f32>; 4],
}

impl Scratch {
    fn new(wg: &Winograd) -> Self {
        let (th, tw) = (wg.tile_rows(), wg.tile_cols());
        let padded = 2 * (tw + 1);
        let tiles = th * (tw + 1);
        Self {
            first_rows: vec![0.0; (th + 1) * padded],
            second_rows: vec![0.0; (th + 1) * padded],
            halves: std::array::from_fn(|_| vec![0.0; (th + 1) * (tw + 1) + 1]),
            outputs: std::array::from_fn(|_| vec![0.0; tiles]),
        }
    }
}

/// Sixteen disjoint `&mut` runs of `v`, the run `xi` at `place(xi) = (start, len)`; the starts
/// must increase with `xi` and the runs not overlap.
fn disjoint_rows(v: &mut [f32], place: impl Fn(usize) -> (usize, usize)) -> [&mut [f32]; 16] {
    let mut outs: [&mut [f32]; 16] = Default::default();
    let mut rest = v;
    let mut taken = 0;
    for (xi, out) in outs.iter_mut().enumerate() {
        let (start, len) = place(xi);
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(start - taken);
        let (head, tail) = tail.split_at_mut(len);
        *out = head;
        rest = tail;
        taken = start + len;
    }
    outs
}

/// The input transform of one plane. Tile row ty reads d₀ = first[ty], d₁ = second[ty],
/// d₂ = first[ty + 1], d₃ = second[ty + 1] (input rows 2ty − p … 2ty − p + 3); Bᵀ down the
/// columns gives the rows c₀ = d₀ − d₂, c₁ = d₁ + d₂, c₂ = d₂ − d₁, c₃ = d₁ − d₃, and Bᵀ along
/// row r, from its even (e) and odd (o) columns, gives tile t's e[t] − e[t+1], o[t] + e[t+1],
/// e[t+1] − o[t], o[t] − o[t+1] into `outs[4r + l]`. The rows are split into even and odd
/// columns once, and then one pass per combined row makes its four outputs for every tile, so
/// that the combined rows are never stored.
#[multiversion::multiversion(targets(
    "x86_64+avx2+fma+avx512f+avx512vl+avx512bw+avx512dq",
    "x86_64+avx2+fma"
))]
fn input_transform(
    first: &[f32],
    second: &[f32],
    halves: &mut [Vec<f32>; 4],
    outs: [&mut [f32]; 16],
) {
    let [fe, fo, se, so] = halves;
    split_columns(first, fe, fo);
    split_columns(second, se, so);
    let tiles = outs[0].len();
    // The next tile row starts `tile_cols + 1` tiles further on.
    let down = first.len() / 2 - tiles;
    // Input rows d₀ … d₃ as (e[t], e[t+1], o[t], o[t+1]): each half at the tile and at its
    // right neighbour, in the tile's row or the next one down.
    fn row<'a>(even: &'a [f32], odd: &'a [f32], at: usize, tiles: usize) -> [&'a [f32]; 4] {
        [
            &even[at..at + tiles],
            &even[at + 1..=at + tiles],
            &odd[at..at + tiles],
            &odd[at + 1..=at + tiles],
        ]
    }
    let d0 = row(fe, fo, 0, tiles);
    let d1 = row(se, so, 0, tiles);
    let d2 = row(fe, fo, down, tiles);
    let d3 = row(se, so, down, tiles);
    let [o00, o01, o02, o03, o10, o11, o12, o13, o20, o21, o22, o23, o30, o31, o32, o33] = outs;
    // One pass per combined row: four outputs from eight inputs keep every pointer in a
    // register, so the loop is vector code (all sixteen at once spilled and stayed scalar).
    along_row::<false>(d0, d2, [o00, o01, o02, o03]);
    along_row::<true>(d1, d2, [o10, o11, o12, o13]);
    along_row::<false>(d2, d1, [o20, o21, o22, o23]);
    along_row::<false>(d1, d3, [o30, o31, o32, o33]);
}

/// `rows`' even and odd columns into `even` and `odd`, as far as the shortest reaches. Inlined
/// into the multiversioned transforms, so that it is compiled for their instruction set.
#[inline(always)]
fn split_columns(rows: &[f32], even: &mut [f32], odd: &mut [f32]) {
    for ((e, o), pair) in even
        .iter_mut()
        .zip(odd.iter_mut())
        .zip(rows.chunks_exact(2))
    {
        *e = pair[0];
        *o = pair[1];
    }
}

/// Bᵀ along the combined row c = a + b (`ADD`) or a − b, each given as (e[t], e[t+1], o[t],
/// o[t+1]): tile t's e[t] − e[t+1], o[t] + e[t+1], e[t+1] − o[t], o[t] − o[t+1]. Inlined into
/// the multiversioned [`input_transform`], so that it is compiled for its instruction set.
#[inline(always)]
fn along_row<const ADD: bool>(a: [&[f32]; 4], b: [&[f32]; 4], outs: [&mut [f32]; 4]) {
    let n = outs[0].len();
    let [ae, ae_next, ao, ao_next] = a;
    let [be, be_next, bo, bo_next] = b;
    let (ae, ae_next, ao, ao_next) = (&ae[..n], &ae_next[..n], &ao[..n], &ao_next[..n]);
    let (be, be_next, bo, bo_next) = (&be[..n], &be_next[..n], &bo[..n], &bo_next[..n]);
    let [v0, v1, v2, v3] = outs;
    let (v0, v1, v2, v3) = (&mut v0[..n], &mut v1[..n], &mut v2[..n], &mut v3[..n]);
    let combine = |x: f32, y: f32| if ADD { x + y } else { x - y };
    for t in 0..n {
        let e = combine(ae[t], be[t]);
        let e_next = combine(ae_next[t], be_next[t]);
        let o = combine(ao[t], bo[t]);
        let o_next = combine(ao_next[t], bo_next[t]);
        v0[t] = e - e_next;
        v1[t] = o + e_next;
        v2[t] = e_next - o;
        v3[t] = o - o_next;
    }
}

/// The output transform of one plane's tiles: with a_r = M_r0 + M_r1 + M_r2 and
/// b_r = M_r1 − M_r2 − M_r3 (Aᵀ along row r of a tile's products), Y₀₀ = a₀ + a₁ + a₂,
/// Y₀₁ = b₀ + b₁ + b₂, Y₁₀ = a₁ − a₂ − a₃, Y₁₁ = b₁ − b₂ − b₃, one loop over all tiles.
#[multiversion::multiversion(targets(
    "x86_64+avx2+fma+avx512f+avx512vl+avx512bw+avx512dq",
    "x86_64+avx2+fma"
))]
fn output_transform(products: &[&[f32]; 16], outputs: &mut [Vec<f32>; 4]) {
    let n = outputs[0].len();
    let m: [&[f32]; 16] = std::array::from_fn(|xi| &products[xi][..n]);
    let [y00, y01, y10, y11] = outputs;
    let (y00, y01, y10, y11) = (&mut y00[..n], &mut y01[..n], &mut y10[..n], &mut y11[..n]);
    for t in 0..n {
        let a = |r: usize| m[4 * r][t] + m[4 * r + 1][t] + m[4 * r + 2][t];
        let b = |r: usize| m[4 * r + 1][t] - m[4 * r + 2][t] - m[4 * r + 3][t];
        let (a0, a1, a2, a3) = (a(0), a(1), a(2), a(3));
        let (b0, b1, b2, b3) = (b(0), b(1), b(2), b(3));
        y00[t] = a0 + a1 + a2;
        y01[t] = b0 + b1 + b2;
        y10[t] = a1 - a2 - a3;
        y11[t] = b1 - b2 - b3;
    }
}

/// The kernels of the correlation that gives dL/dx from dL/d(output): `[channels, filters, 3,
/// 3]` from `[filters, channels, 3, 3]`, each kernel turned by 180°.
pub fn flipped(weight: &[f32], filters: usize, channels: usize) -> Vec<f32> {
    assert_eq!(weight.len(), filters * channels * 9, "3×3 kernels");
    let mut out = vec![0.0f32; weight.len()];
    for o in 0..filters {
        for c in 0..channels {
            let from = &weight[(o * channels + c) * 9..][..9];
            let to = &mut out[(c * filters + o) * 9..][..9];
            for (i, v) in from.iter().enumerate() {
                to[8 - i] = *v;
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "winograd_tests.rs"]
mod tests;
