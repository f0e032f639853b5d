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
use multiversion::multiversion;
use rayon::prelude::*;

use crate::ops::fast_math::{self, clamp};
use crate::ops::tape_op::{tape_op, OpGrads};
use crate::ops::{lane_sum_of, Activations};
use crate::saturation;

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
    /// sup f′, the scale of `saturated_deriv_frac`. Unless stated, estimated on a grid
    /// ([`saturation::estimate_max_derivative`]); `None` makes that column null.
    fn max_derivative(&self) -> Option<f32> {
        saturation::estimate_max_derivative(self)
    }
    /// The finite, nonzero limits of f at ±∞, the bounds of `saturated_output_frac`. None are
    /// assumed unless stated (the column is then null): a grid cannot tell a slow approach to
    /// a bound from unbounded growth.
    fn asymptotes(&self) -> saturation::Asymptotes {
        saturation::Asymptotes::default()
    }
}

/// Sums over a slice of observations of one neuron, in f32 (a slice is at most one sample's
/// positions, so f32 loses nothing the analysis could see).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SliceSums {
    /// Observations with z > 0.
    pub active: u32,
    /// Σ |dL/dh|.
    pub abs_grad_h: f32,
    /// Σ |dL/dz|.
    pub abs_grad_z: f32,
}

impl SliceSums {
    /// The sums of a slice just written by the backward pass, so still in cache: a second pass
    /// over it is cheaper than one fused loop, which the compiler does not vectorise well.
    pub fn of(z: &[f32], grad_h: &[f32], grad_z: &[f32]) -> Self {
        slice_sums(z, grad_h, grad_z)
    }
}

#[multiversion(targets(
    "x86_64+avx2+fma+avx512f+avx512vl+avx512bw+avx512dq",
    "x86_64+avx2+fma"
))]
fn slice_sums(z: &[f32], grad_h: &[f32], grad_z: &[f32]) -> SliceSums {
    SliceSums {
        active: z.iter().filter(|&&v| v > 0.0).count() as u32,
        abs_grad_h: lane_sum_of(grad_h, f32::abs),
        abs_grad_z: lane_sum_of(grad_z, f32::abs),
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

// The transcendental activations (softplus, relu-softplus, elu, tanh, sigmoid, gelu, swish) are
// written on `ops::fast_math`'s branch-free exp, expm1 and log1p, with selects rather than branches
// on x, so that the slice loops below vectorise (libm's scalar calls did not: softplus cost 100×
// relu). Each f and f' is within 1e-6 relative or 2e-7 absolute error of its exact value for every
// finite input (tested on a dense grid against f64 definitions), gives the limits at ±∞ and
// propagates NaN. The scalar `f`/`df` and the slice loops run the same code, so the values a
// figure draws are the ones the training and the probe record. relu, leaky-relu, softsign and
// relu-softsign are untouched.

/// σ(x) = 1 / (1 + e⁻ˣ), with e = e^-|x| so that exp never overflows.
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    fast_math::sigmoid_from(x, fast_math::exp_neg_abs(x))
}

/// σ'(x) = σ(x)(1 − σ(x)), as e / (1 + e)² with e = e^-|x|: accurate in both tails, where
/// 1 − σ would cancel.
#[inline(always)]
fn sigmoid_derivative(x: f32) -> f32 {
    fast_math::sigmoid_derivative_from(fast_math::exp_neg_abs(x))
}

/// ln(1 + e^x) = max(x, 0) + ln(1 + e^-|x|): no overflow for large x, no loss of precision for
/// very negative x.
#[inline(always)]
fn softplus(x: f32) -> f32 {
    fast_math::softplus_from(x, fast_math::exp_neg_abs(x))
}

/// tanh x = sign(x)·(1 − e^-2|x|) / (1 + e^-2|x|) = −sign(x)·m / (2 + m) with m = expm1(−2|x|):
/// relative accuracy near 0 (where 1 − 2/(e^2x + 1) would cancel), ±1 beyond |x| ≈ 9.
#[inline(always)]
fn tanh(x: f32) -> f32 {
    let m = fast_math::expm1(-2.0 * x.abs());
    (-m / (2.0 + m)).copysign(x)
}

/// tanh' x = 1 − tanh² x = 4e / (1 + e)² with e = e^-2|x|: no cancellation as tanh → ±1.
#[inline(always)]
fn tanh_derivative(x: f32) -> f32 {
    4.0 * fast_math::sigmoid_derivative_from(fast_math::exp_neg_abs(2.0 * x))
}

/// 2⁻⁶⁴ ≈ 5.4e-20: below it, an activation on exp reports 0 ([`Builtin::flushes`]).
const NEGLIGIBLE: f32 = f32::from_bits((127 - 64) << 23);

/// 0 for |x| below `bound` (NaN kept: it fails the comparison).
#[inline(always)]
fn flush_below(x: f32, bound: f32) -> f32 {
    if x.abs() < bound {
        0.0
    } else {
        x
    }
}

/// x clamped to the finite floats (NaN kept), so that x·0 is 0 at x = ±∞.
#[inline(always)]
fn finite(x: f32) -> f32 {
    clamp(x, f32::MIN, f32::MAX)
}

/// GELU's tanh form rewritten with 1 + tanh u = 2σ(2u), which does not cancel for negative x:
/// returns σ(v) and σ'(v), v = 2u, for |x| ≤ 10 (beyond, the callers select relu's values).
#[inline(always)]
fn gelu_parts(x: f32) -> (f32, f32) {
    let x = clamp(x, -10.0, 10.0);
    let v = 2.0 * SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x);
    let e = fast_math::exp_neg_abs(v);
    (
        fast_math::sigmoid_from(v, e),
        fast_math::sigmoid_derivative_from(e),
    )
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

    /// Whether f or f′ has a tail that decays towards 0 through ever smaller floats (the
    /// activations on exp): their values below [`NEGLIGIBLE`] are flushed to 0, and so are the
    /// backward terms gh·f′ below the least normal float.
    ///
    /// Why: a subnormal operand or product costs an Intel core a microcode assist, in every
    /// gemm downstream. gelu's Gaussian tail gave values down to 1e-36, whose products with
    /// weights and gradients are subnormal: a LeNet step ran 1.7× slower (conv backward 9.3 ms
    /// against 4.2 with the CPU flushing subnormals itself). The change is far inside the stated
    /// error (2e-7 absolute) and below any threshold of the measures (gradient-starved is
    /// mean f′ < 1e-3); PyTorch's tanh-form gelu gives exact zeros there (1 + tanh u rounds to
    /// 0 or to at least 6e-8).
    #[inline(always)]
    fn flushes(self) -> bool {
        matches!(
            self,
            Builtin::Softplus
                | Builtin::ReluSoftplus
                | Builtin::Elu
                | Builtin::Tanh
                | Builtin::Sigmoid
                | Builtin::Gelu
                | Builtin::Swish
        )
    }

    #[inline(always)]
    fn f(self, x: f32) -> f32 {
        let v = self.f_exact(x);
        if self.flushes() {
            flush_below(v, NEGLIGIBLE)
        } else {
            v
        }
    }

    #[inline(always)]
    fn df(self, x: f32) -> f32 {
        let d = self.df_exact(x);
        if self.flushes() {
            flush_below(d, NEGLIGIBLE)
        } else {
            d
        }
    }

    /// dL/dz's term gh · f′(z); for the flushing activations, 0 where it would be subnormal.
    #[inline(always)]
    fn grad_term(self, gh: f32, x: f32) -> f32 {
        let g = gh * self.df(x);
        if self.flushes() {
            flush_below(g, f32::MIN_POSITIVE)
        } else {
            g
        }
    }

    #[inline(always)]
    fn f_exact(self, x: f32) -> f32 {
        match self {
            Builtin::Relu => x.max(0.0),
            Builtin::Softplus => softplus(x),
            Builtin::Softsign => x / (1.0 + x.abs()),
            Builtin::ReluSoftplus => {
                let negative = softplus(x) - std::f32::consts::LN_2;
                if x > 0.0 {
                    x
                } else {
                    negative
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
                let m = fast_math::expm1(x);
                if x > 0.0 {
                    x
                } else {
                    m
                }
            }
            Builtin::Tanh => tanh(x),
            Builtin::Sigmoid => sigmoid(x),
            // The tanh approximation (as PyTorch's approximate="tanh"), so f and f' are exact
            // analytic pairs of each other: 0.5·x·(1 + tanh u) = x·σ(2u).
            // Beyond |x| = 10 it has saturated in f32, and x³ would overflow for huge x.
            Builtin::Gelu => {
                let (s, _) = gelu_parts(x);
                let inner = x * s;
                if x.abs() > 10.0 {
                    x.max(0.0)
                } else {
                    inner
                }
            }
            // x·σ(x) → 0 as x → −∞, where σ is 0 and −∞·0 would be NaN.
            Builtin::Swish => clamp(x, f32::MIN, f32::INFINITY) * sigmoid(x),
        }
    }

    #[inline(always)]
    fn df_exact(self, x: f32) -> f32 {
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
                let s = sigmoid(x);
                if x > 0.0 {
                    1.0
                } else {
                    s
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
                let e = fast_math::exp(x);
                if x > 0.0 {
                    1.0
                } else {
                    e
                }
            }
            Builtin::Tanh => tanh_derivative(x),
            Builtin::Sigmoid => sigmoid_derivative(x),
            // d/dx x·σ(v) = σ(v) + x·σ'(v)·dv/dx, v = 2u.
            Builtin::Gelu => {
                let (s, ds) = gelu_parts(x);
                let xc = clamp(x, -10.0, 10.0);
                let dv = 2.0 * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_CUBIC * xc * xc);
                let inner = s + xc * ds * dv;
                let outer = if x > 0.0 { 1.0 } else { 0.0 };
                if x.abs() > 10.0 {
                    outer
                } else {
                    inner
                }
            }
            Builtin::Swish => sigmoid(x) + finite(x) * sigmoid_derivative(x),
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
        builtin_forward(*self, z, h)
    }
    fn backward_slice(&self, z: &[f32], grad_h: &[f32], grad_z: &mut [f32]) {
        builtin_backward(*self, z, grad_h, grad_z)
    }
    fn max_derivative(&self) -> Option<f32> {
        Some(saturation::builtin_max_derivative(*self))
    }
    fn asymptotes(&self) -> saturation::Asymptotes {
        saturation::builtin_asymptotes(*self)
    }
}

// The element-wise loops are compiled twice more, for AVX-512 and for AVX2 + FMA, and the best the
// CPU has is chosen at run time, so one portable binary (a cluster's nodes differ) still gets 16-
// or 8-wide vectors. Element-wise code gives the same values at every width.

#[multiversion(targets(
    "x86_64+avx2+fma+avx512f+avx512vl+avx512bw+avx512dq",
    "x86_64+avx2+fma"
))]
fn builtin_forward(b: Builtin, z: &[f32], h: &mut [f32]) {
    for_each_builtin!(b, b => {
        for (h, &z) in h.iter_mut().zip(z) {
            *h = b.f(z);
        }
    })
}

#[multiversion(targets(
    "x86_64+avx2+fma+avx512f+avx512vl+avx512bw+avx512dq",
    "x86_64+avx2+fma"
))]
fn builtin_backward(b: Builtin, z: &[f32], grad_h: &[f32], grad_z: &mut [f32]) {
    for_each_builtin!(b, b => {
        for ((gz, &gh), &z) in grad_z.iter_mut().zip(grad_h).zip(z) {
            *gz += b.grad_term(gh, z);
        }
    })
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

/// One neuron's sums over a minibatch's observations at a site: the SPEC §2 training statistics
/// before they are divided, computed in the site's own backward pass.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NeuronBatchSums {
    /// Observations with z > 0.
    pub active: u64,
    /// Σ |dL/dh|.
    pub abs_grad_h: f64,
    /// Σ |dL/dz|.
    pub abs_grad_z: f64,
}

impl NeuronBatchSums {
    fn add_slice(&mut self, slice: SliceSums) {
        self.active += slice.active as u64;
        self.abs_grad_h += slice.abs_grad_h as f64;
        self.abs_grad_z += slice.abs_grad_z as f64;
    }

    fn add(&mut self, other: &NeuronBatchSums) {
        self.active += other.active;
        self.abs_grad_h += other.abs_grad_h;
        self.abs_grad_z += other.abs_grad_z;
    }
}

/// A site's values of one minibatch, laid out `[batch, neurons, positions]`.
#[derive(Debug, Default)]
pub struct SiteArrays {
    pub z: Vec<f32>,
    /// dL/dh.
    pub grad_h: Vec<f32>,
    /// dL/dz = dL/dh · f'(z).
    pub grad_z: Vec<f32>,
}

/// What an activation site hands back after the backward pass, for the instruments.
#[derive(Debug, Default)]
pub struct SiteCapture {
    /// One entry per neuron.
    pub sums: Vec<NeuronBatchSums>,
    /// Only when the request asked for them: keeping them costs a copy of dL/dz per step.
    pub arrays: Option<SiteArrays>,
}

/// Where a site's backward op leaves its [`SiteCapture`]; the training loop takes it after
/// `backward()` (tape closures must be `'static`, so they cannot call the hooks themselves).
pub type CaptureSlot = Arc<Mutex<Option<SiteCapture>>>;

/// What a site's backward op captures, and where it leaves it.
#[derive(Debug, Clone, Default)]
pub struct CaptureRequest {
    pub slot: CaptureSlot,
    /// Also keep z, dL/dh and dL/dz, for hooks that read every observation.
    pub keep_arrays: bool,
}

/// Elements per rayon task for the element-wise passes: large enough to amortise scheduling.
const ELEMENTWISE_CHUNK: usize = 1 << 14;

/// Applies `f` at an activation site.
///
/// `observe(z, h)` sees the batch's pre-activations and activations before h becomes a tensor
/// (the forward event of the hooks). With a tape and a `capture` request, the backward op leaves
/// per-neuron sums (and on request z, dL/dh and dL/dz) in the request's slot; dL/dh is the
/// gradient of this op's output, complete when the op runs because the tape runs in reverse
/// creation order and every consumer of h came later.
pub fn activate<T: dfdx::tensor::Tape<f32, Cpu>>(
    z: Activations<T>,
    f: &Activation,
    observe: &mut dyn FnMut(&[f32], &[f32]),
    capture: Option<CaptureRequest>,
) -> Activations<T> {
    let sample_shape = z.sample_shape;
    let forward = |z_values: Vec<f32>, _taping: bool| {
        let mut h = vec![0.0f32; z_values.len()];
        h.par_chunks_mut(ELEMENTWISE_CHUNK)
            .zip(z_values.par_chunks(ELEMENTWISE_CHUNK))
            .for_each(|(h, z)| f.forward_slice(z, h));
        observe(&z_values, &h);
        (h, sample_shape, z_values)
    };
    let f = f.clone();
    let backward = move |z_values: Vec<f32>, grad_h: Vec<f32>, grads: OpGrads| {
        // Accumulated straight into dfdx's gradient of z. z comes from a conv or dense layer and
        // this site is its only consumer, so that buffer then holds exactly dL/dz.
        let grad_z = grads
            .input
            .expect("an activation site passes its gradient on");
        let Some(request) = capture else {
            grad_z
                .par_chunks_mut(ELEMENTWISE_CHUNK)
                .zip(
                    grad_h
                        .par_chunks(ELEMENTWISE_CHUNK)
                        .zip(z_values.par_chunks(ELEMENTWISE_CHUNK)),
                )
                .for_each(|(gz, (gh, z))| f.backward_slice(z, gh, gz));
            return;
        };
        let sums = backward_with_sums(&*f, sample_shape, &z_values, &grad_h, grad_z);
        let arrays = request.keep_arrays.then(|| SiteArrays {
            grad_z: grad_z.to_vec(),
            z: z_values,
            grad_h,
        });
        *request.slot.lock().expect("capture slot poisoned") = Some(SiteCapture { sums, arrays });
    };
    tape_op(
        ["activation forward", "activation backward"],
        z,
        &[],
        true,
        forward,
        backward,
    )
}

/// The backward pass of a site together with each neuron's sums over the batch.
///
/// Tasks cover whole samples and are fixed by the shapes alone, and their partial sums are
/// added in sample order, so the result does not depend on how rayon schedules them.
fn backward_with_sums(
    f: &dyn ActivationFunction,
    sample_shape: [usize; 3],
    z: &[f32],
    grad_h: &[f32],
    grad_z: &mut [f32],
) -> Vec<NeuronBatchSums> {
    let neurons = sample_shape[0];
    let positions = sample_shape[1] * sample_shape[2];
    let sample_len = neurons * positions;
    let task_len = (ELEMENTWISE_CHUNK / sample_len).max(1) * sample_len;
    let partials: Vec<Vec<NeuronBatchSums>> = grad_z
        .par_chunks_mut(task_len)
        .zip(grad_h.par_chunks(task_len).zip(z.par_chunks(task_len)))
        .map(|(gz, (gh, z))| {
            let mut sums = vec![NeuronBatchSums::default(); neurons];
            if positions == 1 {
                // A dense site: a sample is one row across the neurons, so the derivative pass
                // runs over whole rows and the sums are added column-wise.
                f.backward_slice(z, gh, gz);
                for ((z, gh), gz) in z
                    .chunks(neurons)
                    .zip(gh.chunks(neurons))
                    .zip(gz.chunks(neurons))
                {
                    for (c, sums) in sums.iter_mut().enumerate() {
                        sums.active += (z[c] > 0.0) as u64;
                        sums.abs_grad_h += gh[c].abs() as f64;
                        sums.abs_grad_z += gz[c].abs() as f64;
                    }
                }
            } else {
                let slices = z
                    .chunks(positions)
                    .zip(gh.chunks(positions))
                    .zip(gz.chunks_mut(positions));
                for (i, ((z, gh), gz)) in slices.enumerate() {
                    f.backward_slice(z, gh, gz);
                    sums[i % neurons].add_slice(SliceSums::of(z, gh, gz));
                }
            }
            sums
        })
        .collect();
    let mut total = vec![NeuronBatchSums::default(); neurons];
    for partial in &partials {
        for (t, p) in total.iter_mut().zip(partial) {
            t.add(p);
        }
    }
    total
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

    /// SPEC §1's definitions written out again in f64, independently of the f32 code, with their
    /// derivatives derived by hand (gelu: PyTorch's approximate="tanh" form).
    fn by_definition(name: &str, x: f64) -> (f64, f64) {
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        let softplus = |x: f64| x.max(0.0) + (-x.abs()).exp().ln_1p();
        match name {
            "relu" => (x.max(0.0), (x > 0.0) as u8 as f64),
            "softplus" => (softplus(x), sigmoid(x)),
            "softsign" => (x / (1.0 + x.abs()), 1.0 / (1.0 + x.abs()).powi(2)),
            "relu-softplus" if x > 0.0 => (x, 1.0),
            "relu-softplus" => (softplus(x) - 2f64.ln(), sigmoid(x)),
            "relu-softsign" if x > 0.0 => (x, 1.0),
            "relu-softsign" => (x / (1.0 - x), 1.0 / (1.0 - x).powi(2)),
            "leaky-relu" if x > 0.0 => (x, 1.0),
            "leaky-relu" => (0.01 * x, 0.01),
            "elu" if x > 0.0 => (x, 1.0),
            "elu" => (x.exp() - 1.0, x.exp()),
            "tanh" => (x.tanh(), 1.0 - x.tanh().powi(2)),
            "sigmoid" => (sigmoid(x), sigmoid(x) * (1.0 - sigmoid(x))),
            "gelu" => {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                let u = c * (x + 0.044715 * x.powi(3));
                let du = c * (1.0 + 3.0 * 0.044715 * x * x);
                let t = u.tanh();
                (
                    0.5 * x * (1.0 + t),
                    0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du,
                )
            }
            "swish" => (
                x * sigmoid(x),
                sigmoid(x) + x * sigmoid(x) * (1.0 - sigmoid(x)),
            ),
            other => panic!("no definition written for {other}"),
        }
    }

    #[test]
    fn slices_match_the_definitions() {
        let z = test_points();
        let grad_h: Vec<f32> = z.iter().map(|x| 0.5 - x * 0.1).collect();
        for b in BUILTINS {
            let mut h = vec![0.0; z.len()];
            b.forward_slice(&z, &mut h);
            // backward_slice accumulates onto what the gradient buffer holds.
            let mut grad_z = vec![1.0; z.len()];
            b.backward_slice(&z, &grad_h, &mut grad_z);
            for i in 0..z.len() {
                let (f, df) = by_definition(b.name(), z[i] as f64);
                let close =
                    |got: f32, want: f64| (got as f64 - want).abs() <= 2e-6 * (1.0 + want.abs());
                assert!(close(h[i], f), "{}({}) = {} not {f}", b.name(), z[i], h[i]);
                let want = 1.0 + grad_h[i] as f64 * df;
                assert!(
                    close(grad_z[i], want),
                    "{}'({}): {} not {want}",
                    b.name(),
                    z[i],
                    grad_z[i]
                );
            }
        }
        // The study's function by hand: relu-softsign(-1, -3, 2.5) = (-1/2, -3/4, 2.5), and
        // with dL/dh = 1 onto a buffer of ones, dL/dz = 1 + (1/4, 1/16, 1).
        let mut h = [0.0; 3];
        Builtin::ReluSoftsign.forward_slice(&[-1.0, -3.0, 2.5], &mut h);
        assert_eq!(h, [-0.5, -0.75, 2.5]);
        let mut grad_z = [1.0; 3];
        Builtin::ReluSoftsign.backward_slice(&[-1.0, -3.0, 2.5], &[1.0; 3], &mut grad_z);
        assert_eq!(grad_z, [1.25, 1.0625, 2.0]);
    }

    /// The activations written on `ops::fast_math`; the others are not changed by it.
    const TRANSCENDENTAL: [Builtin; 7] = [
        Builtin::Softplus,
        Builtin::ReluSoftplus,
        Builtin::Elu,
        Builtin::Tanh,
        Builtin::Sigmoid,
        Builtin::Gelu,
        Builtin::Swish,
    ];

    /// The accuracy stated in the comment on the activations: within 1e-6 relative or 2e-7
    /// absolute error of the exact value. Returns the error in units of what is allowed.
    fn error_over_allowed(got: f32, want: f64) -> f64 {
        let error = (got as f64 - want).abs();
        let allowed = (1e-6 * want.abs()).max(2e-7);
        if error.is_nan() {
            f64::INFINITY
        } else {
            error / allowed
        }
    }

    /// Every 2⁻¹⁰ step over [-100, 100], the tails out to ±f32::MAX, ±0 and tiny magnitudes.
    fn dense_grid() -> Vec<f32> {
        let mut z: Vec<f32> = (-(100 << 10)..=(100 << 10))
            .map(|i| i as f32 / 1024.0)
            .collect();
        for magnitude in [
            0.0f32,
            1e-38,
            1e-30,
            1e-20,
            1e-10,
            1e-7,
            1e-5,
            0.1234567,
            101.5,
            150.0,
            1e3,
            1e4,
            1e10,
            1e20,
            1e30,
            f32::MAX,
        ] {
            z.extend([magnitude, -magnitude]);
        }
        z
    }

    #[test]
    fn vectorised_slices_are_accurate_on_a_dense_grid() {
        let z = dense_grid();
        let ones = vec![1.0f32; z.len()];
        for b in BUILTINS {
            let mut h = vec![0.0; z.len()];
            b.forward_slice(&z, &mut h);
            // dL/dh = 1 onto zeros leaves f'(z), as in the probe pass.
            let mut df = vec![0.0; z.len()];
            b.backward_slice(&z, &ones, &mut df);
            // (error / allowed, x, |error|, |exact|) where the ratio is largest.
            let (mut worst_f, mut worst_df) = ((0.0, 0.0f32, 0.0, 0.0), (0.0, 0.0f32, 0.0, 0.0));
            for i in 0..z.len() {
                let (f, d) = by_definition(b.name(), z[i] as f64);
                let ef = error_over_allowed(h[i], f);
                let ed = error_over_allowed(df[i], d);
                assert!(ef <= 1.0, "{}({}) = {} not {f}", b.name(), z[i], h[i]);
                assert!(ed <= 1.0, "{}'({}) = {} not {d}", b.name(), z[i], df[i]);
                if ef > worst_f.0 {
                    worst_f = (ef, z[i], (h[i] as f64 - f).abs(), f.abs());
                }
                if ed > worst_df.0 {
                    worst_df = (ed, z[i], (df[i] as f64 - d).abs(), d.abs());
                }
                // The scalar methods (figures, custom callers) run the same code.
                if TRANSCENDENTAL.contains(&b) {
                    assert_eq!(h[i].to_bits(), b.value(z[i]).to_bits(), "{}", b.name());
                    assert_eq!(df[i].to_bits(), b.derivative(z[i]).to_bits());
                }
            }
            let show = |(ratio, x, error, exact): (f64, f32, f64, f64)| {
                format!("{ratio:.3} of allowed at {x} (error {error:.1e}, |exact| {exact:.2e})")
            };
            eprintln!(
                "{:<14} f {}; f' {}",
                b.name(),
                show(worst_f),
                show(worst_df)
            );
        }
    }

    /// The activations on exp report no value or derivative below 2⁻⁶⁴ but 0, and no subnormal
    /// backward term gh·f′ (gh from 1 down to 1e-30); the others are left as they were, so relu
    /// passes a subnormal input through.
    #[test]
    fn no_negligible_value_leaves_the_activations_on_exp() {
        assert_eq!(NEGLIGIBLE as f64, 2f64.powi(-64));
        let negligible = |v: f32| v != 0.0 && (v.abs() as f64) < 2f64.powi(-64);
        let subnormal = |v: f32| v != 0.0 && v.abs() < f32::MIN_POSITIVE;
        let z = dense_grid();
        for b in BUILTINS.into_iter().filter(|b| b.flushes()) {
            let mut h = vec![0.0; z.len()];
            b.forward_slice(&z, &mut h);
            for gh in [1.0f32, 1e-10, 1e-20, 1e-30] {
                let mut gz = vec![0.0; z.len()];
                b.backward_slice(&z, &vec![gh; z.len()], &mut gz);
                for (i, &x) in z.iter().enumerate() {
                    assert!(
                        !subnormal(gz[i]),
                        "{} gh {gh} at {x}: {:e}",
                        b.name(),
                        gz[i]
                    );
                }
            }
            for (i, &x) in z.iter().enumerate() {
                assert!(!negligible(h[i]), "{} f({x}) = {:e}", b.name(), h[i]);
                assert!(!negligible(b.df(x)), "{} f'({x}) = {:e}", b.name(), b.df(x));
            }
        }
        // gelu at −9.9: f′ = −2.6e-35 by the f64 formula (σ(v) + x·σ′(v)·v′, v = 2u); at −9
        // f′ = −2.5e-27. Both are reported as 0.
        assert_eq!(Builtin::Gelu.derivative(-9.9), 0.0);
        assert_eq!(Builtin::Gelu.derivative(-9.0), 0.0);
        // softplus(−40) = ln(1 + e⁻⁴⁰) = 4.25e-18 stays.
        assert!(
            (Builtin::Softplus.value(-40.0) as f64 / 4.248_354_255_291_589e-18 - 1.0).abs() < 1e-6
        );
        let tiny = 1e-40f32;
        assert!(subnormal(tiny));
        assert_eq!(Builtin::Relu.value(tiny), tiny);
        assert_eq!(Builtin::ReluSoftsign.value(-tiny), -tiny);
    }

    #[test]
    fn transcendental_activations_give_the_limits_at_infinity_and_keep_nan() {
        let ln2 = std::f32::consts::LN_2;
        // (f(+∞), f'(+∞), f(−∞), f'(−∞)).
        let limits = [
            (f32::INFINITY, 1.0, 0.0, 0.0),
            (f32::INFINITY, 1.0, -ln2, 0.0),
            (f32::INFINITY, 1.0, -1.0, 0.0),
            (1.0, 0.0, -1.0, 0.0),
            (1.0, 0.0, 0.0, 0.0),
            (f32::INFINITY, 1.0, 0.0, 0.0),
            (f32::INFINITY, 1.0, 0.0, 0.0),
        ];
        for (b, (f_hi, df_hi, f_lo, df_lo)) in TRANSCENDENTAL.into_iter().zip(limits) {
            let z = [f32::INFINITY, f32::NEG_INFINITY, f32::NAN];
            let mut h = [0.0; 3];
            b.forward_slice(&z, &mut h);
            let mut df = [0.0; 3];
            b.backward_slice(&z, &[1.0; 3], &mut df);
            assert_eq!(
                [h[0], df[0], h[1], df[1]],
                [f_hi, df_hi, f_lo, df_lo],
                "{}",
                b.name()
            );
            assert!(h[2].is_nan() && df[2].is_nan(), "{} keeps NaN", b.name());
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
            let request = CaptureRequest {
                slot: Default::default(),
                keep_arrays: true,
            };
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
                Some(request.clone()),
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
            let captured = request
                .slot
                .lock()
                .unwrap()
                .take()
                .expect("backward filled the slot");
            let arrays = captured.arrays.expect("arrays were asked for");
            assert_eq!(arrays.z, z);
            assert_eq!(arrays.grad_h, probe, "dL/dh of sum(h·probe) is the probe");
            assert_eq!(arrays.grad_z, grad_z);
            assert_eq!(captured.sums.len(), features);
        }
    }

    /// The per-neuron sums in f64 straight from the arrays, the definition the site's
    /// backward pass must meet.
    fn sums_by_definition(
        arrays: &SiteArrays,
        neurons: usize,
        positions: usize,
    ) -> Vec<(u64, f64, f64)> {
        let mut sums = vec![(0u64, 0.0f64, 0.0f64); neurons];
        for i in 0..arrays.z.len() {
            let c = (i / positions) % neurons;
            sums[c].0 += (arrays.z[i] > 0.0) as u64;
            sums[c].1 += arrays.grad_h[i].abs() as f64;
            sums[c].2 += arrays.grad_z[i].abs() as f64;
        }
        sums
    }

    /// A user activation, on the trait's default slice methods.
    #[derive(Debug)]
    struct Cube;
    impl ActivationFunction for Cube {
        fn name(&self) -> &str {
            "cube"
        }
        fn value(&self, x: f32) -> f32 {
            x * x * x
        }
        fn derivative(&self, x: f32) -> f32 {
            3.0 * x * x
        }
    }

    #[test]
    fn captured_sums_match_the_arrays_for_conv_and_dense_sites() {
        use crate::ops::testing::pseudo_random;
        use crate::ops::Tape;
        let dev = Cpu::default();
        // 13 positions leave a tail after the 8 lanes; 3×3 = 9 positions a tail of 1; the
        // large site spans several rayon tasks; the dense site has one position per neuron.
        let shapes = [
            (5usize, [3usize, 13, 1]),
            (4, [2, 3, 3]),
            (3, [40, 30, 20]),
            (7, [6, 1, 1]),
            (300, [128, 1, 1]),
        ];
        let functions: Vec<Activation> = vec![
            Arc::new(Builtin::Relu),
            Arc::new(Builtin::ReluSoftsign),
            Arc::new(Builtin::Softplus),
            Arc::new(Cube),
        ];
        for (n, sample_shape) in shapes {
            let features = sample_shape.iter().product::<usize>();
            let z: Vec<f32> = pseudo_random(n * features, 5)
                .iter()
                .map(|v| v * 3.0)
                .collect();
            let upstream = pseudo_random(n * features, 6);
            for f in &functions {
                let request = CaptureRequest {
                    slot: Default::default(),
                    keep_arrays: true,
                };
                let z_tensor = dev.tensor_from_vec(z.clone(), (n, features));
                let h = activate(
                    Activations {
                        tensor: z_tensor.retaped::<Tape>(),
                        sample_shape,
                    },
                    f,
                    &mut |_, _| {},
                    Some(request.clone()),
                );
                let _ = (h.tensor * dev.tensor_from_vec(upstream.clone(), (n, features)))
                    .sum()
                    .backward();
                let captured = request.slot.lock().unwrap().take().unwrap();
                let arrays = captured.arrays.as_ref().unwrap();
                let positions = sample_shape[1] * sample_shape[2];
                let expected = sums_by_definition(arrays, sample_shape[0], positions);
                assert_eq!(captured.sums.len(), sample_shape[0]);
                for (c, (got, want)) in captured.sums.iter().zip(&expected).enumerate() {
                    let context = format!("{} {sample_shape:?} neuron {c}", f.name());
                    assert_eq!(got.active, want.0, "{context}");
                    assert!(
                        (got.abs_grad_h - want.1).abs() <= 1e-5 * want.1.max(1.0),
                        "{context}"
                    );
                    assert!(
                        (got.abs_grad_z - want.2).abs() <= 1e-5 * want.2.max(1.0),
                        "{context}"
                    );
                }
                assert!(expected.iter().any(|s| s.0 > 0 && s.2 > 0.0));
            }
        }
    }

    #[test]
    fn slice_sums_count_and_sum_every_element_including_the_tail() {
        for len in [0usize, 1, 7, 8, 9, 676] {
            let z: Vec<f32> = (0..len).map(|i| i as f32 - 3.5).collect();
            let grad_h: Vec<f32> = (0..len).map(|i| -(i as f32) * 0.5).collect();
            let grad_z: Vec<f32> = (0..len).map(|i| i as f32 * 0.25 - 1.0).collect();
            let sums = SliceSums::of(&z, &grad_h, &grad_z);
            assert_eq!(sums.active as usize, len.saturating_sub(4), "len {len}");
            let abs = |v: &[f32]| v.iter().map(|x| x.abs() as f64).sum::<f64>();
            assert!((sums.abs_grad_h as f64 - abs(&grad_h)).abs() <= 1e-5 * abs(&grad_h).max(1.0));
            assert!((sums.abs_grad_z as f64 - abs(&grad_z)).abs() <= 1e-5 * abs(&grad_z).max(1.0));
        }
    }

    #[test]
    fn sums_are_only_captured_without_arrays_when_arrays_are_not_asked_for() {
        use crate::ops::Tape;
        let dev = Cpu::default();
        let request = CaptureRequest::default();
        let z = dev.tensor_from_vec(vec![1.0f32, -2.0, 3.0, 0.5], (2, 2));
        let f: Activation = Arc::new(Builtin::Relu);
        let h = activate(
            Activations {
                tensor: z.retaped::<Tape>(),
                sample_shape: [2, 1, 1],
            },
            &f,
            &mut |_, _| {},
            Some(request.clone()),
        );
        let _ = h.tensor.sum().backward();
        let captured = request.slot.lock().unwrap().take().unwrap();
        assert!(captured.arrays.is_none());
        assert_eq!(captured.sums[0].active, 2);
        assert_eq!(captured.sums[1].active, 1);
        assert_eq!(captured.sums[1].abs_grad_h, 2.0);
        assert_eq!(captured.sums[1].abs_grad_z, 1.0);
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
