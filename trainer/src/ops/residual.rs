//! A residual block's join, main + shortcut, as a tape op on two inputs: the sum on all cores
//! from the values our ops hand on ([`Activations`]), and a backward that adds dL/d(sum) into
//! both inputs' gradients. dfdx's own `+` ran on one core and made the next op copy the sum back
//! out of dfdx: ~9 % of a resnet20 step.
//!
//! Hand-written for the reason of every op here: [`super::tape_op`] is for one input, and dfdx
//! 0.13 offers no custom op beyond its tape primitives.

use std::sync::Arc;

use dfdx::prelude::*;
use rayon::prelude::*;

use super::linear::StepTape;
use super::tape_op::{add_to_input_grad, output_grad, DfdxGrad};
use super::{
    accumulate_into, accumulate_into_new, assume_written, input_values, written_by_chunks,
    Activations, GradSlot, Values,
};
use crate::profile;

/// Elements per rayon task of the sum and of its backward.
const ADD_CHUNK: usize = 1 << 15;

/// `main + shortcut`, element-wise, on one tape that holds both inputs' histories.
pub fn residual_add<T: StepTape>(main: Activations<T>, shortcut: Activations<T>) -> Activations<T> {
    assert_eq!(main.sample_shape, shortcut.sample_shape, "residual shapes");
    assert_eq!(main.batch(), shortcut.batch(), "residual batch");
    let (sample_shape, batch, features) = (main.sample_shape, main.batch(), main.features());
    let (a_tensor, a_tape, a_host, a_slot) = main.into_parts();
    let (b_tensor, b_tape, b_host, b_slot) = shortcut.into_parts();
    let mut tape = a_tape.merge(b_tape);
    let a = input_values(a_host, &a_tensor);
    let b = input_values(b_host, &b_tensor);
    assert_eq!(a.len(), b.len(), "residual inputs' lengths");
    let sum = profile::span("residual add forward", || {
        written_by_chunks(a.len(), ADD_CHUNK, |at, sum| {
            for ((s, x), y) in sum.iter_mut().zip(&a[at.clone()]).zip(&b[at]) {
                s.write(x + y);
            }
            // SAFETY: every element was written just above (a, b and sum have one length).
            unsafe { assume_written(sum) }
        })
    });
    let (out_tensor, sum) = Values::into_tensor(a_tensor.device(), sum, batch, features);
    let out_slot = T::OWNS_TAPE.then(|| Arc::new(GradSlot::default()));
    if let Some(out_slot) = out_slot.clone() {
        let (a_grad, b_grad, out_grad) = (
            DfdxGrad::of(&a_tensor),
            DfdxGrad::of(&b_tensor),
            DfdxGrad::of(&out_tensor),
        );
        tape.add_backward_op(move |grads| {
            profile::span("residual add backward", || {
                let grad_out = output_grad(&out_slot, grads, &out_grad)?;
                for (slot, dfdx_grad) in [(&a_slot, &a_grad), (&b_slot, &b_grad)] {
                    add_to_input_grad(slot.as_deref(), grads, dfdx_grad, |mut grad| {
                        grad.par_chunks_new_or_existing(ADD_CHUNK)
                            .zip(grad_out.par_chunks(ADD_CHUNK))
                            .for_each(|(g, o)| {
                                g.fill(
                                    |new| accumulate_into_new(new, o),
                                    |existing| accumulate_into(existing, o),
                                );
                            })
                    })?;
                }
                Ok(())
            })
        });
    }
    Activations::made(out_tensor.put_tape(tape), sample_shape, sum, out_slot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::pseudo_random;
    use crate::ops::{tensor_values, Tape};

    /// The sum and both gradients against dfdx's own `+` on the same tape: the values must be
    /// the same bits (one f32 add each), and for a loss Σ probe·(a + b) each input's gradient is
    /// the probe itself.
    #[test]
    fn the_join_adds_and_passes_the_gradient_to_both_paths() {
        let dev = Cpu::default();
        let (batch, shape) = (3, [2, 3, 4]);
        let n = 24;
        let a = pseudo_random(batch * n, 1);
        let b = pseudo_random(batch * n, 2);
        let probe = pseudo_random(batch * n, 3);
        let a_t = dev.tensor_from_vec(a.clone(), (batch, n));
        let b_t = dev.tensor_from_vec(b.clone(), (batch, n));
        let main = Activations::new(a_t.retaped::<Tape>(), shape);
        let shortcut = Activations::new(b_t.retaped::<Tape>(), shape);
        let sum = residual_add(main, shortcut);
        assert_eq!(sum.sample_shape, shape);
        let expected: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        assert_eq!(tensor_values(sum.tensor()), expected);
        let probe_t = dev.tensor_from_vec(probe.clone(), (batch, n));
        let grads = (sum.into_tensor() * probe_t).sum().backward();
        assert_eq!(grads.get(&a_t).as_vec(), probe);
        assert_eq!(grads.get(&b_t).as_vec(), probe);
        // Without a tape, the same sum.
        let plain = residual_add(
            Activations::<NoneTape>::new(a_t.clone(), shape),
            Activations::new(b_t.clone(), shape),
        );
        assert_eq!(tensor_values(plain.tensor()), expected);
    }

    /// A block whose shortcut is its input: the input's gradient sums both paths.
    #[test]
    fn an_identity_shortcut_gets_both_gradients() {
        let dev = Cpu::default();
        let x = pseudo_random(8, 4);
        let probe = pseudo_random(8, 5);
        let x_t = dev.tensor_from_vec(x.clone(), (2, 4));
        let (main, shortcut) = Activations::new(x_t.retaped::<Tape>(), [4, 1, 1]).branch();
        // main path: x · 3 by dfdx, so that its gradient differs from the shortcut's.
        let main = Activations::new(main.into_tensor() * 3.0, [4, 1, 1]);
        let sum = residual_add(main, shortcut);
        let probe_t = dev.tensor_from_vec(probe.clone(), (2, 4));
        let grads = (sum.into_tensor() * probe_t).sum().backward();
        let expected: Vec<f32> = probe.iter().map(|p| 3.0 * p + p).collect();
        assert_eq!(grads.get(&x_t).as_vec(), expected);
    }
}
