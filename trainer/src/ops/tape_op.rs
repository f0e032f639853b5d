//! The dfdx tape work of every hand-written op, written once: conv, pooling and the activation
//! sites only say how their output follows from their input (forward) and how the gradients
//! follow from dL/d(output) (backward); [`tape_op`] does the rest.
//!
//! Hand-written because dfdx 0.13 offers no public custom-op API beyond its tape primitives
//! (`split_tape`, `ghost`, `add_backward_op`, `put_tape`), and its own conv and pooling sit behind
//! the `nightly` feature, which no longer builds.

use dfdx::prelude::*;

use super::{input_values, Activations, Values};
use crate::param::{Param, ParamTensor};
use crate::profile;

/// The gradient buffers an op's backward adds into: dfdx's own, lent out whole, so that an op
/// can write its input's gradient and its parameters' gradients at the same time.
pub struct OpGrads<'a> {
    /// dL/d(input), `None` when the op was told its input needs none (the network's input).
    pub input: Option<&'a mut [f32]>,
    /// dL/d(parameter), in the order the parameters were given to [`tape_op`].
    pub params: Vec<&'a mut [f32]>,
}

/// The gradient buffer of a parameter's tensor, whichever its shape.
enum ParamGhost<M, V> {
    Matrix(M),
    Vector(V),
}

/// Runs a hand-written op on a batch.
///
/// `phases` names the op's forward and backward in the step profile ([`crate::profile`]).
/// `forward(x_values, taping)` gets the input's values (shared with the input's tensor, so
/// read only: an op writes its output to a buffer of its own) and whether a backward pass will
/// follow, and returns the output's values, the output's per-sample shape, and whatever the
/// backward pass needs (`saved`; anything cheap when not taping). The output values become the
/// output tensor's buffer and go on to the next op beside it ([`Activations`]). With a tape,
/// `backward(saved, grad_out, grads)` is recorded: it gets dL/d(output) and adds the input's
/// and parameters' gradients into `grads`. dfdx runs it after every op that consumed the
/// output, so `grad_out` is complete.
pub fn tape_op<T, S>(
    phases: [&'static str; 2],
    x: Activations<T>,
    params: &[&Param],
    input_needs_grad: bool,
    forward: impl FnOnce(Values, bool) -> (Vec<f32>, [usize; 3], S),
    backward: impl FnOnce(S, Vec<f32>, OpGrads) + 'static,
) -> Activations<T>
where
    T: dfdx::tensor::Tape<f32, Cpu>,
    S: 'static,
{
    let [forward_phase, backward_phase] = phases;
    let batch = x.batch();
    let (x_tensor, mut tape) = x.tensor.split_tape();
    let x_values = input_values(x.host, &x_tensor);
    let (out, sample_shape, saved) =
        profile::span(forward_phase, || forward(x_values, T::OWNS_TAPE));
    let features: usize = sample_shape.iter().product();
    assert_eq!(out.len(), batch * features, "op output length");
    let (out_tensor, out_values) = Values::into_tensor(x_tensor.device(), out, batch, features);
    if T::OWNS_TAPE {
        let x_ghost = x_tensor.ghost();
        let out_ghost = out_tensor.ghost();
        let param_ghosts: Vec<_> = params
            .iter()
            .map(|p| match &p.tensor {
                ParamTensor::Matrix(t) => ParamGhost::Matrix(t.ghost()),
                ParamTensor::Vector(t) => ParamGhost::Vector(t.ghost()),
            })
            .collect();
        tape.add_backward_op(move |grads| {
            profile::span(backward_phase, || {
                let grad_out = std::mem::take(&mut **grads.get_or_alloc_mut(&out_ghost)?);
                // dfdx lends one gradient at a time; the op needs several at once. Each buffer is
                // moved out (no copy), written, and moved back.
                let mut grad_x = if input_needs_grad {
                    Some(std::mem::take(&mut **grads.get_or_alloc_mut(&x_ghost)?))
                } else {
                    None
                };
                let mut grad_params = Vec::with_capacity(param_ghosts.len());
                for ghost in &param_ghosts {
                    grad_params.push(std::mem::take(&mut **match ghost {
                        ParamGhost::Matrix(g) => grads.get_or_alloc_mut(g)?,
                        ParamGhost::Vector(g) => grads.get_or_alloc_mut(g)?,
                    }));
                }
                backward(
                    saved,
                    grad_out,
                    OpGrads {
                        input: grad_x.as_deref_mut(),
                        params: grad_params.iter_mut().map(|g| g.as_mut_slice()).collect(),
                    },
                );
                if let Some(grad_x) = grad_x {
                    **grads.get_or_alloc_mut(&x_ghost)? = grad_x;
                }
                for (ghost, grad) in param_ghosts.iter().zip(grad_params) {
                    **match ghost {
                        ParamGhost::Matrix(g) => grads.get_or_alloc_mut(g)?,
                        ParamGhost::Vector(g) => grads.get_or_alloc_mut(g)?,
                    } = grad;
                }
                Ok(())
            })
        });
    }
    Activations::with_host(out_tensor.put_tape(tape), sample_shape, out_values)
}
