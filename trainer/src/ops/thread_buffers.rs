//! Scratch buffers that a thread keeps from one call to the next, for the large work buffers
//! of an op that overwrites them in full before it reads them (Winograd's transformed tiles and
//! products, im2col's gemm products).
//!
//! Why: a new `vec![0.0; n]` of a megabyte is cleared on the calling core every time, and each
//! of a 32×32 net's convolution tasks made four of them: 2.3 % of cifar's CPU samples in
//! `perf`. A buffer taken from here holds whatever its last user left (finite or not), so it
//! is only for work whose every element is written before it is read.

use std::cell::RefCell;

thread_local! {
    static FREE: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of `len` values whose contents are unspecified (a previous user's, or zeros where
/// it grew); hand it back with [`give_back`].
pub fn take(len: usize) -> Vec<f32> {
    let mut buffer = FREE
        .with(|free| free.borrow_mut().pop())
        .unwrap_or_default();
    buffer.resize(len, 0.0);
    buffer
}

/// Keeps `buffer` for this thread's next [`take`]; a thread keeps at most a few.
pub fn give_back(buffer: Vec<f32>) {
    FREE.with(|free| {
        let mut free = free.borrow_mut();
        if free.len() < KEPT_PER_THREAD {
            free.push(buffer);
        }
    });
}

/// Buffers a thread keeps: the most an op holds at once (Winograd's dL/dW: three).
const KEPT_PER_THREAD: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer comes back at the length asked for; a given-back one is reused (its memory,
    /// with what its last user left), and what it grows by is zero.
    #[test]
    fn buffers_are_reused_and_sized_as_asked() {
        // Each test runs on a thread of its own, so this thread's free list starts empty.
        let mut first = take(1000);
        assert_eq!(first.len(), 1000);
        first.iter_mut().for_each(|v| *v = 7.0);
        let at = first.as_ptr();
        give_back(first);
        let again = take(10);
        assert_eq!(again.len(), 10);
        assert_eq!(again.as_ptr(), at, "the same memory");
        give_back(again);
        let grown = take(2000);
        assert_eq!(grown.len(), 2000);
        assert_eq!(grown[..10], [7.0; 10], "the last user's values");
        assert!(grown[10..].iter().all(|v| *v == 0.0), "the growth");
    }
}
