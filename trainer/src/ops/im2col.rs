//! im2col and its adjoint col2im for [`ConvGeometry`]: a convolution's patches unfolded into
//! the columns of a `[patch_len, positions]` matrix for gemm, and the columns' gradient added
//! back to the input. Padding is written as zeros; "same" convolutions copy each kernel
//! position's block as one shifted plane.

use std::mem::MaybeUninit;

use super::conv::ConvGeometry;
use super::{accumulate_into, write_copy};

impl ConvGeometry {
    /// The `[patch_len, samples·out_positions]` columns of a chunk of samples.
    pub(super) fn unfold(&self, x: &[f32]) -> Vec<f32> {
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

    /// Each patch element (c, ki, kj) of the `[patch_len, ·]` matrix whose rows are
    /// `row_stride` long, with the range of its row that one sample's columns fill from
    /// `first_column` on.
    fn kernel_blocks(
        &self,
        row_stride: usize,
        first_column: usize,
    ) -> impl Iterator<Item = (usize, usize, usize, std::ops::Range<usize>)> {
        let (k, positions) = (self.kernel, self.out_positions());
        (0..self.in_channels).flat_map(move |c| {
            (0..k).flat_map(move |ki| {
                (0..k).map(move |kj| {
                    let start = ((c * k + ki) * k + kj) * row_stride + first_column;
                    (c, ki, kj, start..start + positions)
                })
            })
        })
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
        let (oh, ow, s, p) = (
            self.out_height(),
            self.out_width(),
            self.stride,
            self.padding,
        );
        let (h, w) = (self.in_height, self.in_width);
        for (c, ki, kj, block) in self.kernel_blocks(row_stride, first_column) {
            let plane = &x[c * h * w..(c + 1) * h * w];
            let dst = &mut cols[block];
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

    /// The adjoint of `im2col` (same matrix layout): adds each column entry back to the input
    /// position it came from. `cols` is scratch: the entries of padding positions may be
    /// overwritten with zeros (so that a "same" convolution adds whole blocks at once).
    pub(super) fn col2im_add(
        &self,
        cols: &mut [f32],
        row_stride: usize,
        first_column: usize,
        dx: &mut [f32],
    ) {
        let (oh, ow, s, p) = (
            self.out_height(),
            self.out_width(),
            self.stride,
            self.padding,
        );
        let (h, w) = (self.in_height, self.in_width);
        for (c, ki, kj, block) in self.kernel_blocks(row_stride, first_column) {
            let plane = &mut dx[c * h * w..(c + 1) * h * w];
            let src = &mut cols[block];
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
