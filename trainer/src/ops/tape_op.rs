//! The dfdx tape work of every hand-written op, written once: conv, pooling and the activation
//! sites only say how their output follows from their input (forward) and how the gradients
//! follow from dL/d(output) (backward); [`tape_op`] does the rest.
//!
//! Hand-written because dfdx 0.13 offers no public custom-op API beyond its tape primitives
//! (`split_tape`, `ghost`, `add_backward_op`, `put_tape`), and its own conv and pooling sit behind
//! the `nightly` feature, which no longer builds.

use std::sync::Arc;

use dfdx::prelude::*;

use super::{accumulate_into, input_values, Activations, GradInput, GradSlot, Values};
use crate::param::{Param, ParamTensor};
use crate::profile;

/// The gradient buffers an op's backward adds into, lent out whole, so that an op can write its
/// input's gradient and its parameters' gradients at the same time.
pub struct OpGrads<'a> {
    /// dL/d(input), `None` when the op was told its input needs none (the network's input).
    pub input: Option<GradInput<'a>>,
    /// dL/d(parameter), in the order the parameters were given to [`tape_op`].
    pub params: Vec<&'a mut [f32]>,
}

/// dfdx's gradient of one tensor, found by the tensor's ghost (a type dfdx does not export).
pub(super) struct DfdxGrad {
    len: usize,
    get: GetGrad,
}

type GetGrad =
    Box<dyn for<'g> Fn(&'g mut Gradients<f32, Cpu>) -> Result<&'g mut Vec<f32>, CpuError>>;

impl DfdxGrad {
    pub(super) fn of<S: Shape, U>(tensor: &Tensor<S, f32, Cpu, U>) -> Self {
        let ghost = tensor.ghost();
        Self {
            len: tensor.shape().num_elements(),
            get: Box::new(move |grads| Ok(&mut **grads.get_or_alloc_mut(&ghost)?)),
        }
    }
    /// The gradient moved out of dfdx (allocated, zeroed, if dfdx had none): no copy.
    pub(super) fn take(&self, grads: &mut Gradients<f32, Cpu>) -> Result<Vec<f32>, CpuError> {
        Ok(std::mem::take((self.get)(grads)?))
    }
    /// Moves a gradient taken with [`Self::take`] back.
    pub(super) fn put(
        &self,
        grads: &mut Gradients<f32, Cpu>,
        grad: Vec<f32>,
    ) -> Result<(), CpuError> {
        *(self.get)(grads)? = grad;
        Ok(())
    }
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
    let (x_tensor, mut tape, x_host, x_slot) = x.into_parts();
    let x_values = input_values(x_host, &x_tensor);
    let (out, sample_shape, saved) =
        profile::span(forward_phase, || forward(x_values, T::OWNS_TAPE));
    let features: usize = sample_shape.iter().product();
    assert_eq!(out.len(), batch * features, "op output length");
    let (out_tensor, out_values) = Values::into_tensor(x_tensor.device(), out, batch, features);
    let out_slot = T::OWNS_TAPE.then(|| Arc::new(GradSlot::default()));
    if let Some(out_slot) = out_slot.clone() {
        let x_grad = DfdxGrad::of(&x_tensor);
        let out_grad = DfdxGrad::of(&out_tensor);
        let param_grads: Vec<_> = params
            .iter()
            .map(|p| match &p.tensor {
                ParamTensor::Matrix(t) => DfdxGrad::of(t),
                ParamTensor::Vector(t) => DfdxGrad::of(t),
            })
            .collect();
        tape.add_backward_op(move |grads| {
            profile::span(backward_phase, || {
                let grad_out = output_grad(&out_slot, grads, &out_grad)?;
                // dfdx lends one gradient at a time; the op needs several at once. Each buffer is
                // moved out (no copy), written, and moved back.
                let mut grad_params = param_grads
                    .iter()
                    .map(|g| g.take(grads))
                    .collect::<Result<Vec<_>, _>>()?;
                let params = grad_params.iter_mut().map(|g| g.as_mut_slice()).collect();
                let run = |input: Option<GradInput<'_>>| {
                    backward(saved, grad_out, OpGrads { input, params })
                };
                if input_needs_grad {
                    add_to_input_grad(x_slot.as_deref(), grads, &x_grad, |g| run(Some(g)))?;
                } else {
                    run(None);
                }
                for (dfdx_grad, grad) in param_grads.iter().zip(grad_params) {
                    dfdx_grad.put(grads, grad)?;
                }
                Ok(())
            })
        });
    }
    Activations::made(
        out_tensor.put_tape(tape),
        sample_shape,
        out_values,
        out_slot,
    )
}

/// dL/d(output) of an op that made a batch on a tape: what its consumers left in its slot, plus
/// dfdx's gradient when the batch also went to one of dfdx's ops (zeros if nothing used it).
pub(super) fn output_grad(
    slot: &GradSlot,
    grads: &mut Gradients<f32, Cpu>,
    dfdx_grad: &DfdxGrad,
) -> Result<Vec<f32>, CpuError> {
    let ours = slot.take();
    if !slot.escaped() {
        if let Some(grad) = ours {
            return Ok(grad);
        }
    }
    let mut grad = dfdx_grad.take(grads)?;
    if let Some(ours) = ours {
        accumulate_into(&mut grad, &ours);
    }
    Ok(grad)
}

/// Lends `consume` dL/d(input) of an op to add into: the input's slot where one of our ops made
/// it, dfdx's gradient otherwise (the data, or a dfdx op's output).
pub(super) fn add_to_input_grad<R>(
    slot: Option<&GradSlot>,
    grads: &mut Gradients<f32, Cpu>,
    dfdx_grad: &DfdxGrad,
    consume: impl FnOnce(GradInput) -> R,
) -> Result<R, CpuError> {
    if let Some(slot) = slot {
        return Ok(slot.add_with(dfdx_grad.len, consume));
    }
    let mut grad = dfdx_grad.take(grads)?;
    let result = consume(GradInput::existing(&mut grad));
    dfdx_grad.put(grads, grad)?;
    Ok(result)
}
