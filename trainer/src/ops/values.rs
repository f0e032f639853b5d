//! An op's output values, shared with the dfdx tensor that carries them on the tape, so that
//! neither the op that makes them nor the op that reads them copies them.
//!
//! Why: dfdx 0.13 builds a tensor only from a vector it owns, and lends a tensor's values only as
//! a copy (`copy_into`, one thread, into a buffer that must be initialised first). Our ops first
//! handed their outputs on beside the tensor and gave dfdx a parallel copy of each: still 8 % of a
//! LeNet step. Now dfdx gets the vector itself, and the next op reads it in place through a
//! pointer taken before the move, kept valid by a clone of the tensor (see [`Values`]'s safety
//! argument). Written by hand because dfdx keeps a tensor's buffer `pub(crate)`.

use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::Arc;

use dfdx::prelude::*;

use super::{tensor_values, Tensor2};

/// Values an op reads: `[f32]` through `Deref`, cheap to clone.
#[derive(Clone, Debug)]
pub struct Values(Shared);

#[derive(Clone, Debug)]
enum Shared {
    /// Values only we hold: a copy out of a tensor that dfdx made (the network's input, or the
    /// output of one of dfdx's own ops).
    Owned(Arc<Vec<f32>>),
    /// The buffer of the tensor `keep` (a clone sharing its data), which starts at `start`.
    Tensor { keep: Tensor2, start: NonNull<f32> },
}

// SAFETY: `start` is only read, and points into the buffer that `keep` (Send + Sync) holds
// alive and, as argued at `Deref`, unchanged.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Values {
    /// A dfdx tensor `(batch, features)` of `values`, without a copy, and the values themselves.
    pub fn into_tensor(
        device: &Cpu,
        values: Vec<f32>,
        batch: usize,
        features: usize,
    ) -> (Tensor2, Self) {
        assert_eq!(
            values.len(),
            batch * features,
            "values of a (batch, features) tensor"
        );
        // Moving the vector into the tensor moves its header, not its heap buffer: `start` stays
        // valid for as long as the tensor's data lives.
        let start = NonNull::new(values.as_ptr().cast_mut()).expect("a vector's buffer");
        let tensor = device.tensor_from_vec(values, (batch, features));
        let keep = tensor.clone();
        (tensor, Self(Shared::Tensor { keep, start }))
    }

    /// A copy of a tensor's values, for a tensor whose values we do not hold.
    pub fn copied_out(tensor: &Tensor2) -> Self {
        Self(Shared::Owned(Arc::new(crate::profile::span(
            "values copied out of dfdx",
            || tensor_values(tensor),
        ))))
    }
}

impl Deref for Values {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match &self.0 {
            Shared::Owned(values) => values,
            // SAFETY: `start` and `keep`'s shape describe the vector that `into_tensor` moved
            // into the tensor whose clone `keep` is. While `keep` lives, that buffer is neither freed nor
            // moved (the tensor holds it in an `Arc`), and it is not written: dfdx 0.13 writes
            // a tensor's data only through `Arc::make_mut` or `Arc::get_mut` (fills,
            // `copy_from`, in-place unary ops), which copy or refuse while `keep` shares it.
            Shared::Tensor { keep, start } => {
                let (batch, features) = *keep.shape();
                unsafe { std::slice::from_raw_parts(start.as_ptr(), batch * features) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values read the tensor's buffer, and dfdx writing to that tensor afterwards (which
    /// it does through `Arc::make_mut`) leaves them as they were: the copy is dfdx's.
    #[test]
    fn values_are_the_tensors_and_outlive_its_writes() {
        let dev = Cpu::default();
        let original: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.0).collect();
        let (mut tensor, values) = Values::into_tensor(&dev, original.clone(), 3, 4);
        assert_eq!(*values, original[..]);
        assert_eq!(tensor.as_vec(), original);
        tensor.copy_from(&[7.0; 12]);
        tensor.fill_with_zeros();
        let doubled = tensor.clone() * 2.0;
        drop((tensor, doubled));
        assert_eq!(*values, original[..], "dfdx's writes went to its own copy");
        // A copy out of a tensor we did not make.
        let other = dev.tensor_from_vec(original.clone(), (3, 4));
        assert_eq!(*Values::copied_out(&other), original[..]);
    }
}
