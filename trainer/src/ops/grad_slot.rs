//! dL/d(activations) handed from the op that consumes a batch to the op that made it, beside
//! dfdx's tape instead of through its `Gradients`.
//!
//! Why: dfdx 0.13 makes every gradient buffer it holds with `Gradients::get_or_alloc_mut`, which
//! fills the new buffer with zeros on one core before an op can add into it: 3.5 % of a LeNet
//! step's CPU samples and 4 % of cifar's in `perf`, and the op then reads those zeros back. Its
//! `Gradients` has no way to insert a buffer, and its `Tensorlike` (which decides what a new
//! gradient is) is `pub(crate)`. So where both ends are our ops, the gradient goes through a
//! [`GradSlot`] that the made batch carries ([`super::Activations`]): the first consumer's
//! backward lends a new buffer whose chunks each task zeroes just before it adds into them (on
//! every core, in cache) or, where the op can, writes outright ([`GradChunk`]); later consumers
//! (a residual block's two paths) add into it, and the maker's backward takes it. A batch that
//! reaches one of dfdx's own ops (the loss) is marked escaped, and its maker then reads dfdx's
//! gradient as before.
//!
//! dfdx runs backward ops in reverse creation order, so every consumer's backward runs before
//! its maker's, as for dfdx's own gradients.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use super::{assume_written, zeroed};

/// The gradient of one made batch while the backward pass collects it.
#[derive(Debug, Default)]
pub struct GradSlot {
    /// dL/d(batch) from the consumers that have run; `None` until the first.
    grad: Mutex<Option<Vec<f32>>>,
    /// Whether the batch also went to one of dfdx's ops, which put its part in dfdx's gradient.
    escaped: AtomicBool,
}

impl GradSlot {
    /// Marks the batch as read by a dfdx op.
    pub fn escape(&self) {
        self.escaped.store(true, Ordering::Relaxed);
    }

    pub fn escaped(&self) -> bool {
        self.escaped.load(Ordering::Relaxed)
    }

    /// What the consumers left, emptying the slot (the maker's backward).
    pub fn take(&self) -> Option<Vec<f32>> {
        self.lock().take()
    }

    /// Lends `consume` the batch's gradient to add into, `len` values: the buffer an earlier
    /// consumer left, or a new one that [`GradInput::par_chunks_mut`] zeroes chunk by chunk.
    pub fn add_with<R>(&self, len: usize, consume: impl FnOnce(GradInput) -> R) -> R {
        let earlier = self.lock().take();
        let (grad, result) = match earlier {
            Some(mut grad) => {
                assert_eq!(grad.len(), len, "a batch's gradient keeps its length");
                let result = consume(GradInput::existing(&mut grad));
                (grad, result)
            }
            None => {
                let mut grad: Vec<f32> = Vec::with_capacity(len);
                let lent = AtomicUsize::new(0);
                let result = consume(GradInput {
                    grad: &mut grad.spare_capacity_mut()[..len],
                    lent: Some(&lent),
                });
                // Anything less would leave values unwritten: a bug in the op, stopped here.
                let zeroed = lent.into_inner();
                assert_eq!(
                    zeroed, len,
                    "an op's backward must take every chunk of a new gradient ({zeroed} of {len})"
                );
                // SAFETY: every one of the first `len` elements was zeroed (counted just above).
                unsafe { grad.set_len(len) };
                (grad, result)
            }
        };
        *self.lock() = Some(grad);
        result
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Vec<f32>>> {
        self.grad.lock().expect("gradient slot poisoned")
    }
}

/// dL/d(input) as an op's backward receives it, to add into: in chunks whose elements are
/// ready to add to when the task gets them, or new chunks for the task to write.
pub struct GradInput<'a> {
    grad: &'a mut [MaybeUninit<f32>],
    /// For a new buffer: how many elements have been written (zeroed or filled; all or none
    /// between calls); `None` for a buffer with values already.
    lent: Option<&'a AtomicUsize>,
}

impl<'a> GradInput<'a> {
    /// A gradient that holds values already.
    pub fn existing(grad: &'a mut [f32]) -> Self {
        // SAFETY: initialised values seen as possibly uninitialised, and only ever handed out
        // again as initialised (`lent` is None): nothing uninitialised is written to them.
        let grad = unsafe { &mut *(grad as *mut [f32] as *mut [MaybeUninit<f32>]) };
        Self { grad, lent: None }
    }

    /// Whether the buffer is new and none of it lent yet (the next call zeroes it).
    fn untouched(&self) -> bool {
        let Some(lent) = self.lent else { return false };
        match lent.load(Ordering::Relaxed) {
            0 => true,
            n if n == self.grad.len() => false,
            n => panic!(
                "a new gradient was lent in part ({n} of {})",
                self.grad.len()
            ),
        }
    }

    /// The gradient in chunks of `chunk` (the last may be shorter), in parallel, for an op that
    /// writes every element of a new chunk and adds into an existing one ([`GradChunk::fill`]):
    /// a new gradient's chunks are not zeroed first (zeroing them was a tenth of a LeNet step's
    /// CPU samples, the op then reading the zeros back). The first call on a new buffer must
    /// fill every chunk.
    pub fn par_chunks_new_or_existing(
        &mut self,
        chunk: usize,
    ) -> impl IndexedParallelIterator<Item = GradChunk<'_>> + '_ {
        let fresh = self.untouched();
        let lent = self.lent;
        self.grad
            .par_chunks_mut(chunk)
            .map(move |chunk| match lent {
                Some(lent) if fresh => GradChunk(Kind::New { chunk, lent }),
                // SAFETY: the buffer had values, or every element was written by an earlier call
                // (`untouched` checked that all were).
                _ => GradChunk(Kind::Existing(unsafe { assume_written(chunk) })),
            })
    }

    /// The gradient in chunks of `chunk` (the last may be shorter), in parallel, for the op to
    /// add into (a new buffer's chunks zeroed first); the first call on a new buffer must take
    /// every chunk.
    pub fn par_chunks_mut(
        &mut self,
        chunk: usize,
    ) -> impl IndexedParallelIterator<Item = &mut [f32]> + '_ {
        self.par_chunks_new_or_existing(chunk)
            .map(|chunk| chunk.fill(zeroed, |_| {}))
    }

    /// The whole gradient at once (zeroed on all cores if new), for ops whose backward writes
    /// it in another order than chunk by chunk.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        if self.untouched() {
            self.par_chunks_mut(1 << 15).for_each(|_| {});
        }
        // SAFETY: the buffer had values, or every element was zeroed (`untouched`, or above).
        unsafe { assume_written(self.grad) }
    }

    /// The gradient's values once the op has added into it (a copy for the instruments).
    pub fn as_slice(&mut self) -> &[f32] {
        self.as_mut_slice()
    }
}

/// A chunk of an input's gradient, from [`GradInput::par_chunks_new_or_existing`]: new (not
/// written yet) or holding earlier consumers' sums. A new chunk counts as taken only once
/// [`GradChunk::fill`] has written it, so one dropped unwritten leaves the buffer short of its
/// length, which [`GradSlot::add_with`] refuses, rather than uninitialised values for a later
/// reader.
pub struct GradChunk<'a>(Kind<'a>);

enum Kind<'a> {
    New {
        chunk: &'a mut [MaybeUninit<f32>],
        /// The new buffer's count of written elements.
        lent: &'a AtomicUsize,
    },
    Existing(&'a mut [f32]),
}

impl<'a> GradChunk<'a> {
    /// The chunk after `write` (new) or `add` (existing) filled it. `write` must hand back the
    /// slice it was given, initialised (safe code can only do that by writing every element);
    /// the check that it did keeps a wrong implementation from exposing uninitialised memory.
    pub fn fill(
        self,
        write: impl FnOnce(&'a mut [MaybeUninit<f32>]) -> &'a mut [f32],
        add: impl FnOnce(&mut [f32]),
    ) -> &'a mut [f32] {
        match self.0 {
            Kind::New { chunk, lent } => {
                let (ptr, len) = (chunk.as_ptr() as *const f32, chunk.len());
                let written = write(chunk);
                assert!(
                    std::ptr::eq(written.as_ptr(), ptr) && written.len() == len,
                    "a new gradient chunk must be written in place and in full"
                );
                lent.fetch_add(len, Ordering::Relaxed);
                written
            }
            Kind::Existing(chunk) => {
                add(chunk);
                chunk
            }
        }
    }

    /// The chunk in pieces of `size` (the last may be shorter), each new or existing as it is.
    pub fn into_chunks(self, size: usize) -> impl Iterator<Item = GradChunk<'a>> {
        let (new, existing) = match self.0 {
            Kind::New { chunk, lent } => (
                Some(
                    chunk
                        .chunks_mut(size)
                        .map(move |chunk| GradChunk(Kind::New { chunk, lent })),
                ),
                None,
            ),
            Kind::Existing(c) => (
                None,
                Some(c.chunks_mut(size).map(|c| GradChunk(Kind::Existing(c)))),
            ),
        };
        new.into_iter()
            .flatten()
            .chain(existing.into_iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new gradient starts at zero in every chunk, whatever the allocator hands back, and a
    /// second consumer adds to what the first left.
    #[test]
    fn consumers_add_into_one_gradient_that_starts_at_zero() {
        // Dirty the allocator's free memory so a new buffer is likely to reuse it.
        drop(vec![7.5f32; 10_000]);
        let slot = GradSlot::default();
        slot.add_with(10_000, |mut g| {
            g.par_chunks_mut(3_000)
                .enumerate()
                .for_each(|(c, chunk)| chunk.iter_mut().for_each(|v| *v += c as f32))
        });
        slot.add_with(10_000, |mut g| {
            g.as_mut_slice().iter_mut().for_each(|v| *v += 0.5);
        });
        let grad = slot.take().expect("both consumers ran");
        let expected: Vec<f32> = (0..10_000).map(|i| (i / 3_000) as f32 + 0.5).collect();
        assert_eq!(grad, expected);
        assert!(slot.take().is_none(), "taking empties the slot");
    }

    /// A backward that goes over a new gradient twice adds to what its first pass wrote: only
    /// the first pass zeroes.
    #[test]
    fn a_second_pass_over_a_new_gradient_keeps_the_first() {
        let slot = GradSlot::default();
        slot.add_with(1_000, |mut g| {
            g.par_chunks_mut(64)
                .for_each(|c| c.iter_mut().for_each(|v| *v += 1.0));
            g.par_chunks_mut(100)
                .for_each(|c| c.iter_mut().for_each(|v| *v += 2.0));
            assert_eq!(g.as_slice(), &[3.0; 1_000][..]);
        });
        assert_eq!(slot.take().unwrap(), vec![3.0; 1_000]);
    }

    /// A first consumer writes the chunks of a new gradient (nothing zeroes them, so it must
    /// write them all); a second adds into them.
    #[test]
    fn new_chunks_are_written_and_existing_ones_added_into() {
        drop(vec![7.5f32; 10_000]);
        let slot = GradSlot::default();
        let pass = |g: &mut GradInput, value: f32| {
            g.par_chunks_new_or_existing(3_000)
                .enumerate()
                .for_each(|(c, chunk)| {
                    chunk.fill(
                        |new| {
                            new.iter_mut().for_each(|v| {
                                v.write(c as f32 + value);
                            });
                            // SAFETY: every element was written just above.
                            unsafe { assume_written(new) }
                        },
                        |old| old.iter_mut().for_each(|v| *v += c as f32 + value),
                    );
                })
        };
        slot.add_with(10_000, |mut g| pass(&mut g, 0.25));
        slot.add_with(10_000, |mut g| pass(&mut g, 0.5));
        let expected: Vec<f32> = (0..10_000)
            .map(|i| 2.0 * (i / 3_000) as f32 + 0.75)
            .collect();
        assert_eq!(slot.take().unwrap(), expected);
    }

    /// A new chunk's writer must hand back the chunk itself, written: another slice is refused.
    #[test]
    #[should_panic(expected = "written in place and in full")]
    fn a_new_chunk_written_elsewhere_is_caught() {
        let slot = GradSlot::default();
        slot.add_with(100, |mut g| {
            g.par_chunks_new_or_existing(100).for_each(|chunk| {
                chunk.fill(|_| Vec::leak(vec![0.0; 100]), |_| {});
            })
        });
    }

    /// New chunks handed out but dropped unwritten are not counted as written: the op is
    /// stopped before anything reads them.
    #[test]
    #[should_panic(expected = "must take every chunk")]
    fn new_chunks_dropped_unwritten_are_caught() {
        let slot = GradSlot::default();
        slot.add_with(100, |mut g| {
            g.par_chunks_new_or_existing(10).for_each(drop);
        });
    }

    /// An op that leaves chunks of a new gradient untaken is stopped, not read uninitialised.
    #[test]
    #[should_panic(expected = "must take every chunk")]
    fn a_backward_that_skips_chunks_is_caught() {
        let slot = GradSlot::default();
        slot.add_with(100, |mut g| {
            g.par_chunks_mut(10).take(3).for_each(|c| c[0] = 1.0);
        });
    }
}
