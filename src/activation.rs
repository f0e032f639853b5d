//! Activation functions (SPEC §1): value and analytic derivative of each, chosen by name, and the
//! dfdx tape op that applies one at an activation site.
//!
//! The op is ours rather than a composition of dfdx ops because the instruments need z, h and
//! dL/dh of every site in the same pass: the forward hands z and h to the hooks before h becomes a
//! tensor, and the backward receives dL/dh directly as the gradient of its output.

use std::fmt;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};
use dfdx::prelude::*;
use rayon::prelude::*;

use crate::ops::{tensor_values, Activations};

/// A scalar activation function with its analytic derivative.
///
/// Implement this to study an activation the crate does not ship (see
/// `examples/custom_activation.rs`); the slice methods exist so that built-ins can hoist their
/// dispatch out of the element loop, and have correct defaults for everyone else.
pub trait ActivationFunction: Send + Sync + fmt::Debug {
    /// The name used on the CLI and in records (`relu-softsign`, ...).
    fn name(&self) -> &str;
    /// f(x).
    fn value(&self, x: f32) -> f32;
    /// f'(x), analytic.
    fn derivative(&self, x: f32) -> f32;
    /// h[i] = f(z[i]).
    fn forward_slice(&self, z: &[f32], h: &mut [f32]) {
        for (h, &z) in h.iter_mut().zip(z) {
            *h = self.value(z);
        }
    }
    /// grad_z[i] += grad_h[i] * f'(z[i]).
    fn backward_slice(&self, z: &[f32], grad_h: &[f32], grad_z: &mut [f32]) {
        for ((gz, &gh), &z) in grad_z.iter_mut().zip(grad_h).zip(z) {
            *gz += gh * self.derivative(z);
        }
    }
}

/// A shared handle to an activation function; cheap to clone into tape closures.
pub type Activation = Arc<dyn ActivationFunction>;

/// The built-in activations of SPEC §1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    Relu,
    Softplus,
    Softsign,
    ReluSoftplus,
    ReluSoftsign,
    LeakyRelu,
    Elu,
    Tanh,
    Sigmoid,
    Gelu,
    Swish,
}

/// Every built-in, in the order the CLI lists them.
pub const BUILTINS: [Builtin; 11] = [
    Builtin::Relu,
    Builtin::Softplus,
    Builtin::Softsign,
    Builtin::ReluSoftplus,
    Builtin::ReluSoftsign,
    Builtin::LeakyRelu,
    Builtin::Elu,
    Builtin::Tanh,
    Builtin::Sigmoid,
    Builtin::Gelu,
    Builtin::Swish,
];

const LEAKY_SLOPE: f32 = 0.01;
const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_CUBIC: f32 = 0.044_715;

fn sigmoid(x: f32) -> f32 {
    // Two branches so that exp never overflows.
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// ln(1 + e^x) without overflow for large x or loss of precision for very negative x.
fn softplus(x: f32) -> f32 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

impl Builtin {
    /// The SPEC §1 name.
    pub fn name(self) -> &'static str {
        match self {
            Builtin::Relu => "relu",
            Builtin::Softplus => "softplus",
            Builtin::Softsign => "softsign",
            Builtin::ReluSoftplus => "relu-softplus",
            Builtin::ReluSoftsign => "relu-softsign",
            Builtin::LeakyRelu => "leaky-relu",
            Builtin::Elu => "elu",
            Builtin::Tanh => "tanh",
            Builtin::Sigmoid => "sigmoid",
            Builtin::Gelu => "gelu",
            Builtin::Swish => "swish",
        }
    }

    #[inline(always)]
    fn f(self, x: f32) -> f32 {
        match self {
            Builtin::Relu => x.max(0.0),
            Builtin::Softplus => softplus(x),
            Builtin::Softsign => x / (1.0 + x.abs()),
            Builtin::ReluSoftplus => {
                if x > 0.0 {
                    x
                } else {
                    softplus(x) - std::f32::consts::LN_2
                }
            }
            // For x <= 0, |x| = -x, so softsign x/(1+|x|) is x/(1-x).
            Builtin::ReluSoftsign => {
                if x > 0.0 {
                    x
                } else {
                    x / (1.0 - x)
                }
            }
            Builtin::LeakyRelu => {
                if x > 0.0 {
                    x
                } else {
                    LEAKY_SLOPE * x
                }
            }
            Builtin::Elu => {
                if x > 0.0 {
                    x
                } else {
                    x.exp_m1()
                }
            }
            Builtin::Tanh => x.tanh(),
            Builtin::Sigmoid => sigmoid(x),
            // The tanh approximation (as PyTorch's approximate="tanh"), so f and f' are exact
            // analytic pairs of each other.
            // Beyond |x| = 10 tanh has saturated in f32, and x³ would overflow for huge x.
            Builtin::Gelu if x.abs() > 10.0 => x.max(0.0),
            Builtin::Gelu => {
                let u = SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x);
                0.5 * x * (1.0 + u.tanh())
            }
            Builtin::Swish => x * sigmoid(x),
        }
    }

    #[inline(always)]
    fn df(self, x: f32) -> f32 {
        match self {
            Builtin::Relu => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Builtin::Softplus => sigmoid(x),
            Builtin::Softsign => {
                let d = 1.0 + x.abs();
                1.0 / (d * d)
            }
            Builtin::ReluSoftplus => {
                if x > 0.0 {
                    1.0
                } else {
                    sigmoid(x)
                }
            }
            Builtin::ReluSoftsign => {
                if x > 0.0 {
                    1.0
                } else {
                    let d = 1.0 - x;
                    1.0 / (d * d)
                }
            }
            Builtin::LeakyRelu => {
                if x > 0.0 {
                    1.0
                } else {
                    LEAKY_SLOPE
                }
            }
            Builtin::Elu => {
                if x > 0.0 {
                    1.0
                } else {
                    x.exp()
                }
            }
            Builtin::Tanh => {
                let t = x.tanh();
                1.0 - t * t
            }
            Builtin::Sigmoid => {
                let s = sigmoid(x);
                s * (1.0 - s)
            }
            Builtin::Gelu if x.abs() > 10.0 => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Builtin::Gelu => {
                let u = SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x);
                let t = u.tanh();
                let du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_CUBIC * x * x);
                0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du
            }
            Builtin::Swish => {
                let s = sigmoid(x);
                s + x * s * (1.0 - s)
            }
        }
    }
}

/// Hoists the `match` on the built-in out of the element loop, so each loop is monomorphic and
/// the compiler can vectorise it.
macro_rules! for_each_builtin {
    ($self:expr, $b:ident => $body:expr) => {
        match $self {
            Builtin::Relu => {
                let $b = Builtin::Relu;
                $body
            }
            Builtin::Softplus => {
                let $b = Builtin::Softplus;
                $body
            }
            Builtin::Softsign => {
                let $b = Builtin::Softsign;
                $body
            }
            Builtin::ReluSoftplus => {
                let $b = Builtin::ReluSoftplus;
                $body
            }
            Builtin::ReluSoftsign => {
                let $b = Builtin::ReluSoftsign;
                $body
            }
            Builtin::LeakyRelu => {
                let $b = Builtin::LeakyRelu;
                $body
            }
            Builtin::Elu => {
                let $b = Builtin::Elu;
                $body
            }
            Builtin::Tanh => {
                let $b = Builtin::Tanh;
                $body
            }
            Builtin::Sigmoid => {
                let $b = Builtin::Sigmoid;
                $body
            }
            Builtin::Gelu => {
                let $b = Builtin::Gelu;
                $body
            }
            Builtin::Swish => {
                let $b = Builtin::Swish;
                $body
            }
        }
    };
}

impl ActivationFunction for Builtin {
    fn name(&self) -> &str {
        Builtin::name(*self)
    }
    fn value(&self, x: f32) -> f32 {
        self.f(x)
    }
    fn derivative(&self, x: f32) -> f32 {
        self.df(x)
    }
    fn forward_slice(&self, z: &[f32], h: &mut [f32]) {
        for_each_builtin!(*self, b => {
            for (h, &z) in h.iter_mut().zip(z) {
                *h = b.f(z);
            }
        })
    }
    fn backward_slice(&self, z: &[f32], grad_h: &[f32], grad_z: &mut [f32]) {
        for_each_builtin!(*self, b => {
            for ((gz, &gh), &z) in grad_z.iter_mut().zip(grad_h).zip(z) {
                *gz += gh * b.df(z);
            }
        })
    }
}

/// The built-in activation called `name`; the error lists the valid names.
pub fn activation_by_name(name: &str) -> Result<Activation> {
    match BUILTINS.iter().find(|b| b.name() == name) {
        Some(b) => Ok(Arc::new(*b)),
        None => bail!(
            "unknown activation '{name}'; valid names: {}",
            builtin_names().join(", ")
        ),
    }
}

/// The names of every built-in activation.
pub fn builtin_names() -> Vec<&'static str> {
    BUILTINS.iter().map(|b| b.name()).collect()
}

/// What an activation site hands back after the backward pass, for the instruments: its
/// pre-activations, dL/dh and dL/dz for the step's batch, laid out `[batch, neurons, positions]`.
#[derive(Debug, Default)]
pub struct SiteCapture {
    pub z: Vec<f32>,
    pub grad_h: Vec<f32>,
    pub grad_z: Vec<f32>,
}

/// Where a site's backward op leaves its [`SiteCapture`]; the training loop takes it after
/// `backward()` (tape closures must be `'static`, so they cannot call the hooks themselves).
pub type CaptureSlot = Arc<Mutex<Option<SiteCapture>>>;

/// Elements per rayon task for the element-wise passes: large enough to amortise scheduling.
const ELEMENTWISE_CHUNK: usize = 1 << 14;

/// Applies `f` at an activation site.
///
/// `observe(z, h)` sees the batch's pre-activations and activations before h becomes a tensor
/// (the forward event of the hooks). With a tape and a `capture` slot, the backward op leaves
/// z, dL/dh and dL/dz in the slot; dL/dh is the gradient of this op's output, complete when the
/// op runs because the tape runs in reverse creation order and every consumer of h came later.
pub fn activate<T: dfdx::tensor::Tape<f32, Cpu>>(
    z: Activations<T>,
    f: &Activation,
    observe: &mut dyn FnMut(&[f32], &[f32]),
    capture: Option<CaptureSlot>,
) -> Activations<T> {
    let sample_shape = z.sample_shape;
    let (z_tensor, mut tape) = z.tensor.split_tape();
    let z_values = tensor_values(&z_tensor);
    let mut h = vec![0.0f32; z_values.len()];
    h.par_chunks_mut(ELEMENTWISE_CHUNK)
        .zip(z_values.par_chunks(ELEMENTWISE_CHUNK))
        .for_each(|(h, z)| f.forward_slice(z, h));
    observe(&z_values, &h);
    let shape = *z_tensor.shape();
    let h_tensor = z_tensor.device().tensor_from_vec(h, shape);
    if T::OWNS_TAPE {
        let z_ghost = z_tensor.ghost();
        let h_ghost = h_tensor.ghost();
        let f = f.clone();
        tape.add_backward_op(move |grads| {
            let grad_h = std::mem::take(&mut **grads.get_or_alloc_mut(&h_ghost)?);
            // Accumulated straight into dfdx's gradient of z. z comes from a conv or dense layer
            // and this site is its only consumer, so that buffer then holds exactly dL/dz.
            let grad_z: &mut [f32] = grads.get_or_alloc_mut(&z_ghost)?;
            grad_z
                .par_chunks_mut(ELEMENTWISE_CHUNK)
                .zip(
                    grad_h
                        .par_chunks(ELEMENTWISE_CHUNK)
                        .zip(z_values.par_chunks(ELEMENTWISE_CHUNK)),
                )
                .for_each(|(gz, (gh, z))| f.backward_slice(z, gh, gz));
            if let Some(slot) = capture {
                let grad_z = grad_z.to_vec();
                *slot.lock().expect("capture slot poisoned") = Some(SiteCapture {
                    z: z_values,
                    grad_h,
                    grad_z,
                });
            }
            Ok(())
        });
    }
    Activations {
        tensor: h_tensor.put_tape(tape),
        sample_shape,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Central difference in f64 on the f32 function: h = 1e-3 keeps the rounding error of f32
    /// (≈ 1e-7 / 1e-3 = 1e-4 relative) below the tolerance while the truncation error stays O(h²).
    fn central_difference(f: &dyn ActivationFunction, x: f32) -> f64 {
        let h = 1e-3f32;
        (f.value(x + h) as f64 - f.value(x - h) as f64) / (2.0 * h as f64)
    }

    fn test_points() -> Vec<f32> {
        // Offset so that no point sits on the kink at 0 of the relu-like functions.
        let mut points: Vec<f32> = (-30..=30).map(|i| i as f32 * 0.37 + 0.011).collect();
        points.extend([-1e-2, -3e-3, 3e-3, 1e-2, -25.0, 25.0, -60.0, 60.0]);
        points
    }

    #[test]
    fn derivatives_match_central_differences() {
        for b in BUILTINS {
            for x in test_points() {
                // Kinks: relu-like functions are not differentiable at 0; the points avoid it by
                // more than the step.
                let numeric = central_difference(&b, x);
                let analytic = b.derivative(x) as f64;
                let tolerance = 2e-3 * (1.0 + analytic.abs());
                assert!(
                    (numeric - analytic).abs() < tolerance,
                    "{}: f'({x}) analytic {analytic}, numeric {numeric}",
                    b.name()
                );
            }
        }
    }

    #[test]
    fn at_least_fifty_points_are_checked() {
        assert!(test_points().len() >= 50);
    }

    #[test]
    fn combined_functions_are_continuous_at_zero() {
        for b in [Builtin::ReluSoftsign, Builtin::ReluSoftplus] {
            let eps = 1e-6f32;
            assert!((b.value(eps) - b.value(-eps)).abs() < 1e-5, "{}", b.name());
            assert_eq!(b.value(0.0), 0.0, "{} passes through the origin", b.name());
            // Both halves have slope 1 at 0 for relu-softsign (1/(1-0)^2 = 1), 1/2 for the
            // softplus half of relu-softplus: the derivative is continuous only for the former.
            assert!((b.derivative(eps) - 1.0).abs() < 1e-5);
        }
        assert!((Builtin::ReluSoftsign.derivative(-1e-6) - 1.0).abs() < 1e-4);
        assert!((Builtin::ReluSoftplus.derivative(-1e-6) - 0.5).abs() < 1e-4);
    }

    #[test]
    fn relu_softsign_matches_the_study() {
        let f = Builtin::ReluSoftsign;
        assert_eq!(f.value(2.5), 2.5);
        assert!((f.value(-1.0) - (-0.5)).abs() < 1e-7);
        assert!((f.value(-3.0) - (-0.75)).abs() < 1e-7);
        // Bounded below by -1, unlike relu-softplus which is bounded by -ln 2.
        assert!(f.value(-1e6) > -1.0);
        assert!((Builtin::ReluSoftplus.value(-1e6) + std::f32::consts::LN_2).abs() < 1e-6);
    }

    #[test]
    fn large_inputs_stay_finite() {
        for b in BUILTINS {
            for x in [-1e30f32, -1e4, 1e4, 1e30] {
                assert!(b.value(x).is_finite(), "{}({x})", b.name());
                assert!(b.derivative(x).is_finite(), "{}'({x})", b.name());
            }
        }
    }

    #[test]
    fn slice_methods_agree_with_scalar_ones() {
        let z = test_points();
        let grad_h: Vec<f32> = z.iter().map(|x| 0.5 - x * 0.1).collect();
        for b in BUILTINS {
            let mut h = vec![0.0; z.len()];
            b.forward_slice(&z, &mut h);
            let mut grad_z = vec![1.0; z.len()];
            b.backward_slice(&z, &grad_h, &mut grad_z);
            for i in 0..z.len() {
                assert_eq!(h[i], b.value(z[i]));
                assert_eq!(grad_z[i], 1.0 + grad_h[i] * b.derivative(z[i]));
            }
        }
    }

    #[test]
    fn site_op_backward_matches_finite_differences_and_captures() {
        use crate::ops::testing::{assert_gradient_matches, pseudo_random};
        use crate::ops::Tape;
        let dev = Cpu::default();
        let (n, features) = (2, 12);
        // Spread over [-4, 4) and away from relu's kink, so central differences are valid.
        let z: Vec<f32> = pseudo_random(n * features, 11)
            .iter()
            .map(|v| if v.abs() < 0.05 { v + 0.2 } else { v * 4.0 })
            .collect();
        let probe = pseudo_random(n * features, 12);
        for b in BUILTINS {
            let f: Activation = Arc::new(b);
            let z_tensor = dev.tensor_from_vec(z.clone(), (n, features));
            let slot: CaptureSlot = Default::default();
            let mut seen = 0;
            let h = activate(
                Activations {
                    tensor: z_tensor.retaped::<Tape>(),
                    sample_shape: [features, 1, 1],
                },
                &f,
                &mut |zs, hs| {
                    seen += 1;
                    assert_eq!(zs, &z[..]);
                    assert_eq!(hs[3], b.value(z[3]));
                },
                Some(slot.clone()),
            );
            assert_eq!(seen, 1);
            let grads = (h.tensor * dev.tensor_from_vec(probe.clone(), (n, features)))
                .sum()
                .backward();
            let grad_z = grads.get(&z_tensor).as_vec();
            let objective = |zp: &[f32]| {
                zp.iter()
                    .zip(&probe)
                    .map(|(z, p)| b.value(*z) as f64 * *p as f64)
                    .sum::<f64>()
            };
            assert_gradient_matches(b.name(), &z, &grad_z, &objective, 1e-3, 5e-3);
            let captured = slot
                .lock()
                .unwrap()
                .take()
                .expect("backward filled the slot");
            assert_eq!(captured.z, z);
            assert_eq!(captured.grad_h, probe, "dL/dh of sum(h·probe) is the probe");
            assert_eq!(captured.grad_z, grad_z);
        }
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_explained() {
        for b in BUILTINS {
            assert_eq!(activation_by_name(b.name()).unwrap().name(), b.name());
        }
        let err = activation_by_name("relu-sofsign").unwrap_err().to_string();
        assert!(err.contains("unknown activation 'relu-sofsign'"));
        assert!(err.contains("relu-softsign"));
    }
}
