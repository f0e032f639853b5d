//! Dense layers as a tape op on our `gemm` (its run-time AVX-512 kernels; dfdx's own matmul is
//! gemm 0.15's AVX2). The weight is stored `[out, in]` (the layout of model.safetensors) and
//! used transposed.
//!
//! Work is split over fixed blocks of the weights' rows or columns, one single-threaded gemm per
//! block, so each block reads its part of the weights once (a 32×32 net's first dense layer is
//! 8 MB), and every element of an output or gradient comes from exactly one gemm: the values do
//! not depend on the thread count.

use dfdx::prelude::*;
use rayon::prelude::*;

use super::tape_op::{tape_op, OpGrads};
use super::{accumulate_into, matmul, Activations, MatRef, Tape, Values};
use crate::param::Param;

/// The two tapes a forward pass runs with: a training step's, and none (evaluation).
pub trait StepTape: dfdx::tensor::Tape<f32, Cpu> + Merge<Self> + Default + 'static {}

impl StepTape for NoneTape {}
impl StepTape for Tape {}

/// Output units per block of the forward pass, and of dL/dW. Measured on one AVX-512 core for
/// a 4096 → 512 layer at batch 64: the forward as y[:, block] = x · W[block]ᵀ runs at 110
/// GFLOP/s in blocks of 32 against 68 as yᵀ[block] = W[block] · xᵀ; dL/dW at 163 GFLOP/s in
/// blocks of 64 against 113 in blocks of 32.
const UNIT_BLOCK: usize = 32;
const GRAD_UNIT_BLOCK: usize = 64;
/// Inputs per block of dL/dx.
const INPUT_BLOCK: usize = 256;

/// A dense layer on a batch, `x · Wᵀ + b`; the input is read flat, whatever its sample shape.
pub fn linear<T: StepTape>(x: Activations<T>, weight: &Param, bias: &Param) -> Activations<T> {
    assert_eq!(
        x.features(),
        weight.shape[1],
        "dense layer {} input width",
        weight.name
    );
    let (units, inputs) = (weight.shape[0], weight.shape[1]);
    let forward = |x_values: Values, taping: bool| {
        let w = &weight.value;
        let batch = x_values.len() / inputs;
        // y[:, block] = x · W[block]ᵀ by blocks of units (rows of W), so each block reads its
        // rows of W once, onto the block's biases; then the blocks' columns side by side.
        let blocks: Vec<Vec<f32>> = w
            .par_chunks(UNIT_BLOCK * inputs)
            .zip(bias.value.par_chunks(UNIT_BLOCK))
            .map(|(w, b)| {
                let rows = b.len();
                let mut y_block = Vec::with_capacity(batch * rows);
                for _ in 0..batch {
                    y_block.extend_from_slice(b);
                }
                matmul(
                    &mut y_block,
                    MatRef::new(&x_values, batch, inputs),
                    MatRef::t(w, inputs, rows),
                    true,
                );
                y_block
            })
            .collect();
        let mut out = Vec::with_capacity(batch * units);
        for i in 0..batch {
            for y_block in &blocks {
                let rows = y_block.len() / batch;
                out.extend_from_slice(&y_block[i * rows..(i + 1) * rows]);
            }
        }
        let saved = taping.then(|| (x_values, w.clone()));
        (out, [units, 1, 1], saved)
    };
    let backward = move |saved: Option<(Values, Vec<f32>)>, grad_out: Vec<f32>, grads: OpGrads| {
        let (x_values, w) = saved.expect("saved when taping");
        let batch = x_values.len() / inputs;
        let OpGrads { input, params } = grads;
        let [grad_w, grad_b] = <[&mut [f32]; 2]>::try_from(params).expect("weight and bias");
        if let Some(mut grad_x) = input {
            // dL/dx[:, block] = dL/dy · W[:, block] by blocks of inputs (columns of W), then
            // added to x's gradient. 127 GFLOP/s on one AVX-512 core for a 4096 → 512
            // layer at batch 64, against 83 for dL/dxᵀ = Wᵀ · dL/dyᵀ and its transpose.
            let blocks: Vec<Vec<f32>> = (0..inputs.div_ceil(INPUT_BLOCK))
                .into_par_iter()
                .map(|block| {
                    let first = block * INPUT_BLOCK;
                    let columns = INPUT_BLOCK.min(inputs - first);
                    let w_block = MatRef::new(&w[first..], units, columns).with_row_stride(inputs);
                    let mut grad_x_block = vec![0.0f32; batch * columns];
                    matmul(
                        &mut grad_x_block,
                        MatRef::new(&grad_out, batch, units),
                        w_block,
                        false,
                    );
                    grad_x_block
                })
                .collect();
            for (block, grad_x_block) in blocks.iter().enumerate() {
                let columns = grad_x_block.len() / batch;
                let rows = grad_x.as_mut_slice().chunks_mut(inputs);
                for (row, block_row) in rows.zip(grad_x_block.chunks(columns)) {
                    accumulate_into(&mut row[block * INPUT_BLOCK..][..columns], block_row);
                }
            }
        }
        // dL/dW = dL/dyᵀ · x, a block of units (of dL/dy's columns) at a time.
        grad_w
            .par_chunks_mut(GRAD_UNIT_BLOCK * inputs)
            .enumerate()
            .for_each(|(block, grad_w)| {
                let first = block * GRAD_UNIT_BLOCK;
                let rows = grad_w.len() / inputs;
                let grad_out_block =
                    MatRef::t(&grad_out[first..], rows, batch).with_row_stride(units);
                matmul(
                    grad_w,
                    grad_out_block,
                    MatRef::new(&x_values, batch, inputs),
                    true,
                );
            });
        // dL/db: the column sums of dL/dy, sample by sample.
        for row in grad_out.chunks(units) {
            accumulate_into(grad_b, row);
        }
    };
    tape_op(
        ["dense forward", "dense backward"],
        x,
        &[weight, bias],
        true,
        forward,
        backward,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::tensor_values;
    use crate::ops::testing::{
        assert_gradient_matches, assert_param_gradient_matches, pseudo_random,
    };

    /// An `out × inp` layer's weight and bias, pseudo-random from `seed`.
    fn layer(dev: &Cpu, out: usize, inp: usize, seed: u64) -> (Param, Param) {
        let w = Param::matrix(
            dev,
            "fc.weight".into(),
            vec![out, inp],
            out,
            inp,
            pseudo_random(out * inp, seed),
        );
        let b = Param::vector(dev, "fc.bias".into(), pseudo_random(out, seed + 1));
        (w, b)
    }

    /// The layer's output on `x` (`n × inp`), and dL/dx, dL/dW, dL/db of L = Σ probe ⊙ y
    /// through dfdx's tape.
    #[allow(clippy::type_complexity)]
    fn traced(
        dev: &Cpu,
        x: &[f32],
        (n, inp): (usize, usize),
        (w, b): (&Param, &Param),
        probe: &[f32],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
        let x_tensor = dev.tensor_from_vec(x.to_vec(), (n, inp));
        let a = Activations::new(x_tensor.retaped::<Tape>(), [inp, 1, 1]);
        let y_t = linear(a, w, b).into_tensor();
        let y = tensor_values(&y_t);
        let out = w.shape[0];
        let mut grads = (y_t * dev.tensor_from_vec(probe.to_vec(), (n, out)))
            .sum()
            .backward();
        let grad_x = grads.get(&x_tensor).as_vec();
        let grad_w = w.take_grad(&mut grads).unwrap();
        let grad_b = b.take_grad(&mut grads).unwrap();
        (y, grad_x, grad_w, grad_b)
    }

    #[test]
    fn forward_and_gradients_match_hand_and_finite_differences() {
        let dev = Cpu::default();
        let (n, inp, out) = (3, 4, 2);
        let (w, b) = layer(&dev, out, inp, 1);
        let x = pseudo_random(n * inp, 3);
        let eval = |x: &[f32], w: &Param, b: &Param| {
            let a = Activations::new(dev.tensor_from_vec(x.to_vec(), (n, inp)), [inp, 1, 1]);
            tensor_values(linear(a, w, b).tensor())
        };
        let y = eval(&x, &w, &b);
        for i in 0..n {
            for o in 0..out {
                let expected: f32 = (0..inp)
                    .map(|k| x[i * inp + k] * w.value[o * inp + k])
                    .sum::<f32>()
                    + b.value[o];
                assert!((y[i * out + o] - expected).abs() < 1e-5);
            }
        }
        let probe = pseudo_random(n * out, 4);
        let (_, grad_x, grad_w, grad_b) = traced(&dev, &x, (n, inp), (&w, &b), &probe);
        let objective = |y: Vec<f32>| {
            y.iter()
                .zip(&probe)
                .map(|(a, p)| *a as f64 * *p as f64)
                .sum::<f64>()
        };
        assert_gradient_matches(
            "dx",
            &x,
            &grad_x,
            &|xp| objective(eval(xp, &w, &b)),
            1e-2,
            1e-3,
        );
        assert_param_gradient_matches(&w, &grad_w, &|w2| objective(eval(&x, w2, &b)), 1e-2, 1e-3);
        assert_param_gradient_matches(&b, &grad_b, &|b2| objective(eval(&x, &w, b2)), 1e-2, 1e-3);
    }

    /// Several blocks of inputs and of units, the last ones partial: forward and every
    /// gradient against the sums written out in f64 (y = x·Wᵀ + b; for L = Σ probe ⊙ y,
    /// dL/dx = probe·W, dL/dW = probeᵀ·x, dL/db = Σ over samples of probe).
    #[test]
    fn blocks_of_inputs_and_units_match_the_sums_written_out() {
        let dev = Cpu::default();
        let (n, inp, out) = (37, 2 * INPUT_BLOCK + 9, 2 * UNIT_BLOCK + 6);
        let (w, b) = layer(&dev, out, inp, 11);
        let x = pseudo_random(n * inp, 13);
        let probe = pseudo_random(n * out, 14);
        let (y, grad_x, grad_w, grad_b) = traced(&dev, &x, (n, inp), (&w, &b), &probe);
        let close = |what: &str, got: f32, want: f64| {
            assert!(
                (got as f64 - want).abs() < 1e-5 * (1.0 + want.abs()),
                "{what}: {got} vs {want}"
            );
        };
        let (xv, wv, bv) = (
            |i: usize, k: usize| x[i * inp + k] as f64,
            |o: usize, k: usize| w.value[o * inp + k] as f64,
            |o: usize| b.value[o] as f64,
        );
        let pv = |i: usize, o: usize| probe[i * out + o] as f64;
        for i in 0..n {
            for o in 0..out {
                let want = (0..inp).map(|k| xv(i, k) * wv(o, k)).sum::<f64>() + bv(o);
                close("y", y[i * out + o], want);
            }
            for k in 0..inp {
                close(
                    "dx",
                    grad_x[i * inp + k],
                    (0..out).map(|o| pv(i, o) * wv(o, k)).sum(),
                );
            }
        }
        for o in 0..out {
            for k in 0..inp {
                close(
                    "dW",
                    grad_w[o * inp + k],
                    (0..n).map(|i| pv(i, o) * xv(i, k)).sum(),
                );
            }
            close("db", grad_b[o], (0..n).map(|i| pv(i, o)).sum());
        }
    }
}
