//! Inverted dropout as a dfdx tape op: a training pass (one with a tape) zeroes each value with
//! probability `p` and scales the survivors by `1/(1 − p)`, so that evaluation (no tape) is the
//! identity.
//!
//! The mask is drawn from ChaCha8 seeded by a caller-given key, so that a run and its resume
//! drop the same values: value `i` of the batch (row-major, `(batch, features)`) is dropped when
//! the `i`-th 32-bit draw, read as a 24-bit fraction in [0, 1), is below `p`.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::linear::StepTape;
use super::tape_op::{tape_op, OpGrads};
use super::{filled_by_chunks, Activations, Values};

/// Elements per rayon task of the element-wise passes.
const DROPOUT_TASK_ELEMENTS: usize = 1 << 14;

/// The per-value factors of one mask: 0 for a dropped value, `1/(1 − p)` for a survivor.
fn mask(len: usize, p: f32, key: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(key);
    let scale = 1.0 / (1.0 - p);
    // Scaling by 2²⁴ is exact, and so is a 24-bit integer in f32: P(drop) = ⌈p·2²⁴⌉/2²⁴.
    let threshold = p * (1u32 << 24) as f32;
    (0..len)
        .map(|_| {
            if ((rng.next_u32() >> 8) as f32) < threshold {
                0.0
            } else {
                scale
            }
        })
        .collect()
}

/// Inverted dropout with drop probability `p` (0 ≤ p < 1), its mask drawn from `key`; the
/// identity without a tape.
pub fn dropout<T: StepTape>(x: Activations<T>, p: f32, key: u64) -> Activations<T> {
    assert!(
        (0.0..1.0).contains(&p),
        "dropout probability must be in [0, 1), got {p}"
    );
    if !T::OWNS_TAPE {
        return x;
    }
    let sample_shape = x.sample_shape;
    let forward = |values: Values, _taping: bool| {
        let mask = mask(values.len(), p, key);
        let out = filled_by_chunks(values.len(), DROPOUT_TASK_ELEMENTS, |at, out| {
            for ((o, v), m) in out.iter_mut().zip(&values[at.clone()]).zip(&mask[at]) {
                *o = v * m;
            }
        });
        (out, sample_shape, mask)
    };
    let backward = |mask: Vec<f32>, grad_out: Vec<f32>, grads: OpGrads| {
        let mut grad_x = grads.input.expect("dropout passes its gradient on");
        grad_x
            .par_chunks_mut(DROPOUT_TASK_ELEMENTS)
            .zip(grad_out.par_chunks(DROPOUT_TASK_ELEMENTS))
            .zip(mask.par_chunks(DROPOUT_TASK_ELEMENTS))
            .for_each(|((gx, go), mask)| {
                for ((gx, go), m) in gx.iter_mut().zip(go).zip(mask) {
                    *gx += go * m;
                }
            });
    };
    tape_op(
        ["dropout forward", "dropout backward"],
        x,
        &[],
        true,
        forward,
        backward,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    // Named, so that it wins over dfdx's own `dropout` from the prelude.
    use super::dropout;
    use crate::ops::testing::pseudo_random;
    use crate::ops::{tensor_values, Tape};
    use dfdx::prelude::*;

    /// Values bounded away from 0, so that a zero in the output is a dropped value.
    fn input(len: usize, seed: u64) -> Vec<f32> {
        pseudo_random(len, seed)
            .iter()
            .map(|v| v.signum() * (0.5 + v.abs()))
            .collect()
    }

    /// The op with a tape: its output and the tape's gradient of `sum(out ⊙ probe)`.
    fn run_taped(
        x: &[f32],
        shape: (usize, usize),
        p: f32,
        key: u64,
        probe: &[f32],
    ) -> (Vec<f32>, Vec<f32>) {
        let dev = Cpu::default();
        let x_tensor = dev.tensor_from_vec(x.to_vec(), shape);
        let a = Activations::new(x_tensor.retaped::<Tape>(), [shape.1, 1, 1]);
        let out = dropout(a, p, key);
        assert_eq!(out.sample_shape, [shape.1, 1, 1]);
        let (out_t, tape) = out.into_tensor().split_tape();
        let values = tensor_values(&out_t);
        let probe_t = dev.tensor_from_vec(probe.to_vec(), shape);
        let grads = (out_t.put_tape(tape) * probe_t).sum().backward();
        (values, grads.get(&x_tensor).as_vec())
    }

    #[test]
    fn without_a_tape_it_is_the_identity() {
        let dev = Cpu::default();
        let x = input(24, 1);
        let a = Activations::new(dev.tensor_from_vec(x.clone(), (2, 12)), [3, 2, 2]);
        let out = dropout(a, 0.5, 7);
        assert_eq!(out.sample_shape, [3, 2, 2]);
        assert_eq!(tensor_values(out.tensor()), x);
    }

    #[test]
    fn drops_a_fraction_p_and_scales_the_survivors() {
        let shape = (50, 400);
        let len = shape.0 * shape.1;
        let x = input(len, 2);
        for (i, p) in [0.1f32, 0.3, 0.5, 0.8].into_iter().enumerate() {
            let (out, _) = run_taped(&x, shape, p, 100 + i as u64, &vec![0.0; len]);
            let zeros = out.iter().filter(|v| **v == 0.0).count() as f64;
            // Binomial(len, p): within 5 standard deviations of its mean (a false alarm about
            // once in 3·10⁶ runs, and the keys are fixed anyway).
            let (n, q) = (len as f64, p as f64);
            let sd = (n * q * (1.0 - q)).sqrt();
            assert!(
                (zeros - n * q).abs() < 5.0 * sd,
                "p {p}: {zeros} zeros of {len}, expected {} ± {}",
                n * q,
                5.0 * sd
            );
            for (o, v) in out.iter().zip(&x) {
                if *o != 0.0 {
                    let expected = *v as f64 / (1.0 - p as f64);
                    assert!(
                        (*o as f64 - expected).abs() <= 1e-6 * expected.abs(),
                        "p {p}: survivor {o}, expected {expected}"
                    );
                }
            }
        }
    }

    #[test]
    fn p_zero_drops_nothing() {
        let x = input(1000, 3);
        let (out, grad) = run_taped(&x, (10, 100), 0.0, 4, &vec![1.0; 1000]);
        assert_eq!(out, x);
        assert_eq!(grad, vec![1.0; 1000]);
    }

    #[test]
    fn the_key_decides_the_mask() {
        let shape = (8, 64);
        let x = input(shape.0 * shape.1, 5);
        let probe = vec![0.0; x.len()];
        let dropped = |key: u64| -> Vec<bool> {
            let (out, _) = run_taped(&x, shape, 0.5, key, &probe);
            out.iter().map(|v| *v == 0.0).collect()
        };
        assert_eq!(dropped(11), dropped(11), "the same key gives the same mask");
        let (a, b) = (dropped(11), dropped(12));
        let differing = a.iter().zip(&b).filter(|(a, b)| a != b).count();
        // Two independent masks at p = 0.5 differ in about half their 512 places.
        assert!(
            differing > 150,
            "another key gives another mask ({differing} differences)"
        );
    }

    #[test]
    fn gradient_is_the_scaled_mask_times_the_output_gradient() {
        let shape = (6, 50);
        let len = shape.0 * shape.1;
        let x = input(len, 6);
        let probe = pseudo_random(len, 7);
        let p = 0.4f32;
        let (out, grad) = run_taped(&x, shape, p, 8, &probe);
        let scale = 1.0 / (1.0 - p);
        let mut kept = 0;
        for i in 0..len {
            // The output tells the mask: x is never 0.
            let expected = if out[i] == 0.0 {
                0.0
            } else {
                kept += 1;
                probe[i] * scale
            };
            assert!(
                (grad[i] - expected).abs() <= 1e-6 * (1.0 + expected.abs()),
                "[{i}]: {} vs {expected}",
                grad[i]
            );
        }
        assert!(kept > 0 && kept < len, "the mask keeps some and drops some");
    }

    #[test]
    #[should_panic(expected = "dropout probability")]
    fn p_of_one_is_rejected() {
        let dev = Cpu::default();
        let a: Activations<NoneTape> =
            Activations::new(dev.tensor_from_vec(vec![1.0; 4], (1, 4)), [4, 1, 1]);
        dropout(a, 1.0, 0);
    }
}
