//! Layers written as dfdx tape ops on its public API (dfdx 0.13's own conv and pooling need its
//! `nightly` feature, which no longer builds on stable Rust).
//!
//! Every activation between layers is a 2-D dfdx tensor `(batch, features)` in NCHW order, with
//! the per-sample shape `[channels, height, width]` carried beside it in [`Activations`], so that
//! flatten is free, and with its values readable in place ([`Values`]: the tensor's own buffer),
//! so that no op copies its output into dfdx or its input out of it.

pub mod batch_norm;
pub mod conv;
pub mod direct_conv;
pub mod dropout;
pub mod fast_math;
pub mod grad_slot;
pub mod im2col;
pub mod linear;
pub mod pool;
pub mod residual;
pub mod tape_op;
pub mod thread_buffers;
pub mod values;
pub mod winograd;

use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::Arc;

use dfdx::prelude::*;
pub use grad_slot::{GradChunk, GradInput, GradSlot};
use rayon::prelude::*;
pub use values::Values;

/// A batch of activations, `(batch, channels·height·width)`.
pub type Tensor2<T = NoneTape> = Tensor<(usize, usize), f32, Cpu, T>;
/// The tape that records a training step.
pub type Tape = OwnedTape<f32, Cpu>;

/// A batch with the shape of one sample.
#[derive(Debug)]
pub struct Activations<T> {
    /// Private so that every way out to a dfdx op goes through [`Self::into_tensor`], which
    /// tells the batch's maker to read dfdx's gradient ([`GradSlot`]).
    tensor: Tensor2<T>,
    /// `[channels, height, width]`; a dense layer's output is `[units, 1, 1]`.
    pub sample_shape: [usize; 3],
    /// The tensor's values, where one of our ops made it ([`Values`]: the tensor's own buffer):
    /// dfdx 0.13 lends a tensor's values only as a copy (`copy_into`, one thread, into a buffer
    /// that must be initialised first), which cost a 32×32 net ~8 % of its step when every op
    /// copied its input out.
    host: Option<Values>,
    /// Where the ops that consume the batch leave dL/d(batch) for the op that made it, when one
    /// of our ops made it on a tape.
    grad: Option<Arc<GradSlot>>,
}

impl<T> Activations<T> {
    /// A batch whose values only the tensor holds.
    pub fn new(tensor: Tensor2<T>, sample_shape: [usize; 3]) -> Self {
        Self {
            tensor,
            sample_shape,
            host: None,
            grad: None,
        }
    }
    /// A batch made by one of our ops: `values` are the tensor's values, and with a tape its
    /// consumers leave its gradient in `grad`.
    fn made(
        tensor: Tensor2<T>,
        sample_shape: [usize; 3],
        values: Values,
        grad: Option<Arc<GradSlot>>,
    ) -> Self {
        debug_assert_eq!(values.len(), tensor.shape().0 * tensor.shape().1);
        Self {
            tensor,
            sample_shape,
            host: Some(values),
            grad,
        }
    }
    /// The tensor, for one of dfdx's ops (the loss): the batch's maker then takes its
    /// gradient from dfdx.
    pub fn into_tensor(self) -> Tensor2<T> {
        if let Some(slot) = &self.grad {
            slot.escape();
        }
        self.tensor
    }
    /// The tensor, to read (its shape, a copy of its values).
    pub fn tensor(&self) -> &Tensor2<T> {
        &self.tensor
    }
    /// The same values read with another per-sample shape of as many features (flatten, or
    /// a site's `[neurons, positions]` view).
    pub fn reshaped(self, sample_shape: [usize; 3]) -> Self {
        assert_eq!(
            sample_shape.iter().product::<usize>(),
            self.features(),
            "a reshape keeps the features"
        );
        Self {
            sample_shape,
            ..self
        }
    }
    /// The batch as two paths, (main, shortcut), for a residual block. dfdx keys gradients
    /// by tensor id, so the shortcut reads the same tensor on a fresh tape and the add that
    /// joins the paths merges the tapes again: x's gradient sums both paths (in dfdx's
    /// gradient or in the shared [`GradSlot`]). The values are shared, not copied.
    pub fn branch(self) -> (Self, Self)
    where
        T: dfdx::tensor::Tape<f32, Cpu>,
    {
        let (tensor, tape) = self.tensor.split_tape();
        let shortcut = Self {
            tensor: tensor.clone().retaped::<T>(),
            sample_shape: self.sample_shape,
            host: self.host.clone(),
            grad: self.grad.clone(),
        };
        let main = Self {
            tensor: tensor.put_tape(tape),
            ..self
        };
        (main, shortcut)
    }
    pub fn batch(&self) -> usize {
        self.tensor.shape().0
    }
    pub fn features(&self) -> usize {
        self.tensor.shape().1
    }
    /// Splits the batch for an op: its tensor (tape split off), values, and gradient slot.
    fn into_parts(self) -> (Tensor2, T, Option<Values>, Option<Arc<GradSlot>>)
    where
        T: dfdx::tensor::Tape<f32, Cpu>,
    {
        let (tensor, tape) = self.tensor.split_tape();
        (tensor, tape, self.host, self.grad)
    }
}

/// The values of an op's input: those its maker handed on, or else (the data, or the output of
/// a dfdx op) a copy out of the tensor.
pub fn input_values(host: Option<Values>, tensor: &Tensor2) -> Values {
    host.unwrap_or_else(|| Values::copied_out(tensor))
}

/// `dst = src` into memory that may be uninitialised (`<[MaybeUninit]>::write_copy_of_slice`
/// is newer than the crate's MSRV, 1.89); the compiler makes it a vector copy.
pub fn write_copy(dst: &mut [MaybeUninit<f32>], src: &[f32]) {
    assert_eq!(dst.len(), src.len(), "copy lengths");
    for (d, s) in dst.iter_mut().zip(src) {
        d.write(*s);
    }
}

/// Memory that may be uninitialised, zeroed and lent out as initialised values.
///
/// Why: an op's new output buffer from `vec![0.0; len]` is cleared by one core before the
/// parallel work that overwrites it (mimalloc reuses freed memory, so its calloc must clear
/// it): in `perf` that was 2.3 % of a LeNet step's CPU time, for the activation sites' and the
/// pooling's outputs alone. Zeroed by the task about to write it, a chunk is cleared on every
/// core and is still in cache when it is written.
pub fn zeroed<T: Copy + Default>(dst: &mut [MaybeUninit<T>]) -> &mut [T] {
    for d in dst.iter_mut() {
        d.write(T::default());
    }
    // SAFETY: every element was written just above.
    unsafe { assume_written(dst) }
}

/// A new vector of `len` values that `fill(at, values)` writes, chunk by chunk on all cores:
/// `values` are the vector's elements `at`, a chunk of `chunk` (the last may be shorter),
/// [`zeroed`] first. For a `fill` that may leave elements unwritten; one that writes them all
/// can use [`written_by_chunks`] and save the clearing.
pub fn filled_by_chunks<T: Copy + Default + Send + Sync>(
    len: usize,
    chunk: usize,
    fill: impl Fn(Range<usize>, &mut [T]) + Sync + Send,
) -> Vec<T> {
    written_by_chunks(len, chunk, |at, dst| {
        let values = zeroed(dst);
        fill(at, values);
        values
    })
}

/// A new vector of `len` values that `write(at, values)` writes, chunk by chunk on all cores,
/// without clearing them first: `values` are the vector's elements `at` (a chunk of `chunk`, the
/// last may be shorter), and `write` hands them back written.
///
/// Why: an op's output cleared by the task that then overwrites it is written twice; for an
/// activation site's output that was a tenth of its forward pass (LeNet: 0.38 against 0.34 ms
/// for relu's 1.9 M values, 0.89 against 0.80 ms for softplus's).
///
/// Safe code can hand back the chunk as initialised values only by writing every element
/// (`MaybeUninit::write`, `write_copy_of_slice`); a `write` that hands back anything else (a
/// slice of another buffer, or of a different length) panics here rather than leave
/// uninitialised values in the vector.
pub fn written_by_chunks<T: Copy + Send + Sync>(
    len: usize,
    chunk: usize,
    write: impl for<'a> Fn(Range<usize>, &'a mut [MaybeUninit<T>]) -> &'a mut [T] + Sync + Send,
) -> Vec<T> {
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, dst)| {
            let (start, n) = (dst.as_ptr() as *const T, dst.len());
            let written = write(i * chunk..i * chunk + n, dst);
            assert!(
                std::ptr::eq(written.as_ptr(), start) && written.len() == n,
                "an op must write its new output in place and in full"
            );
        });
    // SAFETY: the chunks cover the first `len` elements, and each was handed back as
    // initialised values in place (checked above).
    unsafe { out.set_len(len) };
    out
}

/// Copies a tensor's values out. Our tensors are always contiguous (we create them from vectors
/// and dfdx's own ops produce contiguous outputs), which `copy_into` requires.
pub fn tensor_values<T>(t: &Tensor2<T>) -> Vec<f32> {
    let (rows, cols) = *t.shape();
    let mut out = vec![0.0; rows * cols];
    t.copy_into(&mut out);
    out
}

/// A row-major matrix operand: `rows × cols`, optionally read transposed from storage, and
/// optionally a block of columns of a wider stored matrix.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    /// When true, `data` holds the `cols × rows` matrix and this operand is its transpose.
    pub transposed: bool,
    /// The distance between the starts of two stored rows (the stored width unless a block).
    pub row_stride: usize,
}

impl<'a> MatRef<'a> {
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            transposed: false,
            row_stride: cols,
        }
    }
    pub fn t(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            transposed: true,
            row_stride: rows,
        }
    }
    /// The same operand read from stored rows `row_stride` apart: `data` starts at the block's
    /// first element.
    pub fn with_row_stride(self, row_stride: usize) -> Self {
        Self { row_stride, ..self }
    }
    /// (stored rows, stored columns).
    fn stored(&self) -> (usize, usize) {
        if self.transposed {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        }
    }
    /// The elements of `data` the operand spans.
    fn span(&self) -> usize {
        let (rows, cols) = self.stored();
        if rows == 0 || cols == 0 {
            0
        } else {
            (rows - 1) * self.row_stride + cols
        }
    }
    fn strides(&self) -> (isize, isize) {
        // (column stride, row stride) in elements, as gemm wants them.
        if self.transposed {
            (self.row_stride as isize, 1)
        } else {
            (1, self.row_stride as isize)
        }
    }
}

/// `dst = a · b` (or `dst += a · b` when `accumulate`), single-threaded: the callers parallelise
/// over samples, which keeps both cores busy on the small per-sample matrices of a CNN.
pub fn matmul(dst: &mut [f32], a: MatRef, b: MatRef, accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(k, b.rows, "inner dimensions");
    let (_, a_width) = a.stored();
    let (_, b_width) = b.stored();
    assert!(
        a.row_stride >= a_width && b.row_stride >= b_width,
        "row strides"
    );
    assert!(a.data.len() >= a.span() && b.data.len() >= b.span() && dst.len() >= m * n);
    let (a_cs, a_rs) = a.strides();
    let (b_cs, b_rs) = b.strides();
    // SAFETY: the asserts above keep every index gemm forms (row·rs + col·cs, within the
    // declared m, n, k) inside the three slices; dst does not alias a or b (&mut vs &).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a_cs,
            a_rs,
            b.data.as_ptr(),
            b_cs,
            b_rs,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// Σ values, over 8 lanes of independent sums: one sequential chain of adds is bound by the
/// add latency (a bias gradient sums ~10⁴ values per row).
#[multiversion::multiversion(targets(
    "x86_64+avx2+fma+avx512f+avx512vl+avx512bw+avx512dq",
    "x86_64+avx2+fma"
))]
pub fn lane_sum(values: &[f32]) -> f32 {
    lane_sum_of(values, |v| v)
}

/// Σ term(v) over 8 lanes of independent sums (in `T`, f32 or f64), inlined into its callers so
/// that each compiles it for its own target features.
#[inline(always)]
pub fn lane_sum_of<T>(values: &[f32], term: impl Fn(f32) -> T) -> T
where
    T: Copy + Default + std::ops::AddAssign + std::ops::Add<Output = T> + std::iter::Sum,
{
    const LANES: usize = 8;
    let mut lanes = [T::default(); LANES];
    let mut chunks = values.chunks_exact(LANES);
    for chunk in &mut chunks {
        // A fixed-size view, so the lane loop has no bounds checks and becomes vector code.
        let chunk: &[f32; LANES] = chunk.try_into().expect("exact chunk");
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane += term(*v);
        }
    }
    let tail: T = chunks.remainder().iter().map(|v| term(*v)).sum();
    lanes.into_iter().sum::<T>() + tail
}

/// The `cols × rows` transpose of a row-major `rows × cols` matrix.
pub fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0f32; rows * cols];
    transpose_into(m, rows, cols, &mut t);
    t
}

/// [`transpose`] into `t` (`cols × rows`, every element written), for a caller that reuses
/// its buffer.
pub fn transpose_into(m: &[f32], rows: usize, cols: usize, t: &mut [f32]) {
    assert!(
        m.len() == rows * cols && t.len() == rows * cols,
        "transpose's shapes"
    );
    for (c, t_row) in t.chunks_mut(rows.max(1)).enumerate() {
        for (r, v) in t_row.iter_mut().enumerate() {
            *v = m[r * cols + c];
        }
    }
}

/// Adds `src` into a gradient buffer element-wise.
pub fn accumulate_into(grad: &mut [f32], src: &[f32]) {
    for (g, s) in grad.iter_mut().zip(src) {
        *g += s;
    }
}

/// How a backward pass stores a term of an input's gradient: added to a gradient with values, or
/// written into a new one as 0 + term, the bits of adding into zeros (a term of −0 gives +0 both
/// ways), so that a new gradient is written once instead of cleared and added into.
pub(crate) trait GradTerm {
    fn store(&mut self, term: f32);
}

impl GradTerm for f32 {
    #[inline(always)]
    fn store(&mut self, term: f32) {
        *self += term;
    }
}

impl GradTerm for MaybeUninit<f32> {
    #[inline(always)]
    fn store(&mut self, term: f32) {
        self.write(0.0 + term);
    }
}

/// A chunk of a new buffer as values, once every element has been written (an op's output, or
/// a gradient stored into through [`GradTerm`]).
///
/// # Safety
/// Every element of `chunk` must have been written.
pub(crate) unsafe fn assume_written<T>(chunk: &mut [MaybeUninit<T>]) -> &mut [T] {
    // SAFETY: the caller's promise, and MaybeUninit<T> has T's layout.
    unsafe { &mut *(chunk as *mut [MaybeUninit<T>] as *mut [T]) }
}

/// [`accumulate_into`] a new gradient: written once as 0 + src (the bits of adding into zeros:
/// −0 becomes +0 as there) instead of cleared and added into.
pub fn accumulate_into_new<'a>(grad: &'a mut [MaybeUninit<f32>], src: &[f32]) -> &'a mut [f32] {
    assert_eq!(grad.len(), src.len(), "a gradient and its source's lengths");
    for (g, s) in grad.iter_mut().zip(src) {
        g.store(*s);
    }
    // SAFETY: every element was written just above (the lengths are equal).
    unsafe { assume_written(grad) }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Finite-difference checking of whole ops through dfdx's tape.

    use super::*;

    /// A fixed pseudo-random vector in [-1, 1) (no rand needed for test inputs).
    pub fn pseudo_random(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Checks `d(sum(out ⊙ probe))/d input` from the tape against central differences in f64.
    pub fn assert_gradient_matches(
        label: &str,
        input: &[f32],
        analytic: &[f32],
        loss: &dyn Fn(&[f32]) -> f64,
        eps: f32,
        tolerance: f64,
    ) {
        let mut worst = 0.0f64;
        for i in 0..input.len() {
            let mut plus = input.to_vec();
            plus[i] += eps;
            let mut minus = input.to_vec();
            minus[i] -= eps;
            let numeric = (loss(&plus) - loss(&minus)) / (2.0 * eps as f64);
            let err = (numeric - analytic[i] as f64).abs() / (1.0 + numeric.abs());
            worst = worst.max(err);
            assert!(
                err < tolerance,
                "{label}[{i}]: analytic {} numeric {numeric}",
                analytic[i]
            );
        }
        assert!(worst.is_finite());
    }

    /// [`assert_gradient_matches`] for a parameter: `loss(p)` evaluates the op with `p` in place
    /// of `param`.
    pub fn assert_param_gradient_matches(
        param: &crate::param::Param,
        analytic: &[f32],
        loss: &dyn Fn(&crate::param::Param) -> f64,
        eps: f32,
        tolerance: f64,
    ) {
        let with_values = |values: &[f32]| {
            let mut changed = param.clone();
            changed.set_values(values).unwrap();
            loss(&changed)
        };
        assert_gradient_matches(
            &param.name,
            &param.value,
            analytic,
            &with_values,
            eps,
            tolerance,
        );
    }

    /// Our ops hand their output values to the next op beside the tensor; those values must be
    /// the tensor's own, through reshapes and a residual branch, with and without a tape.
    #[test]
    fn an_ops_values_travel_beside_its_tensor() {
        use super::conv::{conv2d, ConvGeometry};
        use super::pool::{pool2d, PoolGeometry, PoolKind};
        use crate::param::Param;

        fn beside<T>(a: &Activations<T>) -> Values {
            let host = a.host.clone().expect("an op's output keeps its values");
            assert_eq!(*host, tensor_values(a.tensor()));
            host
        }
        let dev = Cpu::default();
        let g = ConvGeometry::new([2, 6, 6], 3, 3, 1, 1).unwrap();
        let w = Param::matrix(
            &dev,
            "w".into(),
            vec![3, 2, 3, 3],
            3,
            18,
            pseudo_random(54, 1),
        );
        let b = Param::vector(&dev, "b".into(), pseudo_random(3, 2));
        let input = dev.tensor_from_vec(pseudo_random(2 * 72, 3), (2, 72));
        let x = Activations::new(input.clone(), [2, 6, 6]);
        assert!(
            x.host.is_none(),
            "the data's values live in its tensor only"
        );
        let y = conv2d(x, &w, &b, g, false);
        beside(&y);
        let pooled = pool2d(
            y,
            PoolGeometry::new(PoolKind::Max, [3, 6, 6], 2, 2).unwrap(),
        );
        let before = beside(&pooled);
        let flat = pooled.reshaped([27, 1, 1]);
        assert!(
            std::ptr::eq(before.as_ptr(), beside(&flat).as_ptr()),
            "a reshape copies nothing"
        );
        let (main, shortcut) = flat.branch();
        assert!(std::ptr::eq(
            beside(&main).as_ptr(),
            beside(&shortcut).as_ptr()
        ));
        // With a tape, the same.
        let traced = Activations::new(input.retaped::<Tape>(), [2, 6, 6]);
        let (main, shortcut) = conv2d(traced, &w, &b, g, true).branch();
        assert_eq!(*beside(&main), *beside(&shortcut));
    }

    /// Every element of the new vector is the one its chunk's task wrote for its index, across
    /// chunk boundaries and a short last chunk.
    #[test]
    fn written_by_chunks_places_every_chunk_at_its_elements() {
        for (len, chunk) in [(0usize, 4usize), (1, 4), (10, 4), (12, 4), (1000, 7)] {
            let v = written_by_chunks(len, chunk, |at, dst| {
                assert_eq!(at.len(), dst.len());
                for (d, i) in dst.iter_mut().zip(at) {
                    d.write(3 * i + 1);
                }
                // SAFETY: every element was written just above.
                unsafe { assume_written(dst) }
            });
            let want: Vec<usize> = (0..len).map(|i| 3 * i + 1).collect();
            assert_eq!(v, want, "len {len}, chunk {chunk}");
        }
    }

    /// A writer that hands back a shorter slice (elements left unwritten) is stopped.
    #[test]
    #[should_panic(expected = "in place and in full")]
    fn written_by_chunks_refuses_a_chunk_handed_back_in_part() {
        written_by_chunks(8, 8, |_, dst: &mut [MaybeUninit<f32>]| {
            let (head, _) = dst.split_at_mut(4);
            zeroed(head)
        });
    }

    /// A gradient written new holds what adding into zeros held, −0 turned into +0 as there.
    #[test]
    fn accumulating_into_a_new_gradient_equals_adding_into_zeros() {
        let src = [1.5f32, -0.0, 0.0, -2.25, f32::MIN_POSITIVE / 4.0, f32::NAN];
        let mut added = [0.0f32; 6];
        accumulate_into(&mut added, &src);
        let mut new = [MaybeUninit::<f32>::uninit(); 6];
        let written = accumulate_into_new(&mut new, &src);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(written), bits(&added));
        assert_eq!(written[1].to_bits(), 0.0f32.to_bits(), "0 + −0 is +0");
    }

    #[test]
    fn matmul_handles_transposes_and_accumulation() {
        // a = [[1,2],[3,4]], b = [[5,6],[7,8]]
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [5.0, 6.0, 7.0, 8.0];
        let mut out = [0.0; 4];
        matmul(
            &mut out,
            MatRef::new(&a, 2, 2),
            MatRef::new(&b, 2, 2),
            false,
        );
        assert_eq!(out, [19.0, 22.0, 43.0, 50.0]);
        // aᵀ·b with aᵀ = [[1,3],[2,4]]
        matmul(&mut out, MatRef::t(&a, 2, 2), MatRef::new(&b, 2, 2), false);
        assert_eq!(out, [26.0, 30.0, 38.0, 44.0]);
        // a·bᵀ accumulated onto the previous result
        matmul(&mut out, MatRef::new(&a, 2, 2), MatRef::t(&b, 2, 2), true);
        assert_eq!(out, [26.0 + 17.0, 30.0 + 23.0, 38.0 + 39.0, 44.0 + 53.0]);
        // Blocks of columns of a stored 2×3 matrix c = [[1,2,3],[4,5,6]]: its last two columns
        // [[2,3],[5,6]] times b, and the transpose of its first two, [[1,4],[2,5]], times b.
        let c = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let block = MatRef::new(&c[1..], 2, 2).with_row_stride(3);
        matmul(&mut out, block, MatRef::new(&b, 2, 2), false);
        assert_eq!(out, [31.0, 36.0, 67.0, 78.0]);
        let block_t = MatRef::t(&c, 2, 2).with_row_stride(3);
        matmul(&mut out, block_t, MatRef::new(&b, 2, 2), false);
        assert_eq!(out, [33.0, 38.0, 45.0, 52.0]);
    }
}
