//! Dense layers through dfdx's own matmul and broadcast-add, so their backward pass is dfdx's.
//!
//! The weight is stored `[out, in]` (the layout of model.safetensors) and used transposed.

use dfdx::prelude::*;

use super::{Activations, Tape, Tensor2};
use crate::param::Param;

/// The two tapes a forward pass runs with: a training step's, and none (evaluation). A dense
/// layer must trace its parameters only in the former, which needs a per-tape implementation.
pub trait StepTape: dfdx::tensor::Tape<f32, Cpu> + Merge<Self> + Default + 'static {
    /// `x · Wᵀ + b` for a batch `x` of shape `(n, in)`.
    fn linear(x: Tensor2<Self>, weight: &Param, bias: &Param) -> Tensor2<Self>;
}

impl StepTape for NoneTape {
    fn linear(x: Tensor2<Self>, weight: &Param, bias: &Param) -> Tensor2<Self> {
        let (n, _) = *x.shape();
        let out = weight.shape[0];
        let w_t = weight
            .matrix_tensor()
            .clone()
            .permute::<(usize, usize), Axes2<1, 0>>();
        x.matmul(w_t)
            + bias
                .vector_tensor()
                .clone()
                .broadcast_like::<(usize, usize), Axis<0>>(&(n, out))
    }
}

impl StepTape for Tape {
    fn linear(x: Tensor2<Self>, weight: &Param, bias: &Param) -> Tensor2<Self> {
        let (n, _) = *x.shape();
        let out = weight.shape[0];
        let w_t = weight
            .traced_matrix()
            .permute::<(usize, usize), Axes2<1, 0>>();
        x.matmul(w_t)
            + bias
                .traced_vector()
                .broadcast_like::<(usize, usize), Axis<0>>(&(n, out))
    }
}

/// A dense layer on a batch; the input is read flat, whatever its sample shape.
pub fn linear<T: StepTape>(x: Activations<T>, weight: &Param, bias: &Param) -> Activations<T> {
    assert_eq!(
        x.features(),
        weight.shape[1],
        "dense layer {} input width",
        weight.name
    );
    let units = weight.shape[0];
    Activations {
        tensor: crate::profile::span("dense forward", || T::linear(x.tensor, weight, bias)),
        sample_shape: [units, 1, 1],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::tensor_values;
    use crate::ops::testing::{
        assert_gradient_matches, assert_param_gradient_matches, pseudo_random,
    };

    #[test]
    fn forward_and_gradients_match_hand_and_finite_differences() {
        let dev = Cpu::default();
        let (n, inp, out) = (3, 4, 2);
        let w = Param::matrix(
            &dev,
            "fc.weight".into(),
            vec![out, inp],
            out,
            inp,
            pseudo_random(out * inp, 1),
        );
        let b = Param::vector(&dev, "fc.bias".into(), pseudo_random(out, 2));
        let x = pseudo_random(n * inp, 3);
        let eval = |x: &[f32], w: &Param, b: &Param| {
            let a = Activations {
                tensor: dev.tensor_from_vec(x.to_vec(), (n, inp)),
                sample_shape: [inp, 1, 1],
            };
            tensor_values(&linear(a, w, b).tensor)
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
        let x_tensor = dev.tensor_from_vec(x.clone(), (n, inp));
        let a = Activations {
            tensor: x_tensor.retaped::<Tape>(),
            sample_shape: [inp, 1, 1],
        };
        let out_t = linear(a, &w, &b).tensor;
        let mut grads = (out_t * dev.tensor_from_vec(probe.clone(), (n, out)))
            .sum()
            .backward();
        let grad_x = grads.get(&x_tensor).as_vec();
        let grad_w = w.take_grad(&mut grads).unwrap();
        let grad_b = b.take_grad(&mut grads).unwrap();
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
}
