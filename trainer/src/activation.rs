//! Activation functions (SPEC §1): value and analytic derivative of each, chosen by name, and the
//! dfdx tape op that applies one at an activation site.
//!
//! The op is ours rather than a composition of dfdx ops because the instruments need z, h and
//! dL/dh of every site in the same pass: the forward hands z and h to the hooks before h becomes a
//! tensor, and the backward receives dL/dh directly as the gradient of its output.

use std::fmt;
use std::mem::MaybeUninit;
use std::sync::Arc;

use anyhow::{bail, Result};
use dfdx::prelude::*;
use multiversion::multiversion;
use multiversion::target::target_cfg;
use rayon::prelude::*;

use crate::ops::fast_math::{self, clamp};
use crate::ops::tape_op::{tape_op, OpGrads};
use crate::ops::{assume_written, written_by_chunks, Activations, GradChunk, Values};
use crate::saturation;
use crate::site_capture::backward_with_sums;
pub use crate::site_capture::{
    CaptureRequest, CaptureSlot, NeuronBatchSums, SiteArrays, SiteCapture, SliceSums,
};

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
    /// h[i] = f(z[i]) into an output not written yet, returned written in full. The default
    /// zeroes it, then writes it as [`Self::forward_slice`]; the built-ins write it in one pass.
    fn forward_slice_new<'a>(&self, z: &[f32], h: &'a mut [MaybeUninit<f32>]) -> &'a mut [f32] {
        let h = crate::ops::zeroed(h);
        self.forward_slice(z, h);
        h
    }
    /// grad_z[i] += grad_h[i] * f'(z[i]).
    fn backward_slice(&self, z: &[f32], grad_h: &[f32], grad_z: &mut [f32]) {
        for ((gz, &gh), &z) in grad_z.iter_mut().zip(grad_h).zip(z) {
            *gz += gh * self.derivative(z);
        }
    }
    /// grad_z[i] = grad_h[i] * f'(z[i]) into a gradient no other consumer has written, returned
    /// written in full. The default zeroes it, then adds as [`Self::backward_slice`]; the
    /// built-ins write it in one pass.
    fn backward_slice_new<'a>(
        &self,
        z: &[f32],
        grad_h: &[f32],
        grad_z: &'a mut [MaybeUninit<f32>],
    ) -> &'a mut [f32] {
        let grad_z = crate::ops::zeroed(grad_z);
        self.backward_slice(z, grad_h, grad_z);
        grad_z
    }
    /// [`Self::backward_slice_new`], and the instruments' sums of each `len`-element slice of z,
    /// dL/dh and the dL/dz written into `sums` (one per slice), which must equal
    /// [`SliceSums::of`] bit for bit. The default writes, then sums; relu, leaky-relu, softsign
    /// and relu-softsign sum 8 values at a time as they write them, so the sums run while the
    /// next values arrive from memory.
    fn backward_slice_new_with_sums<'a>(
        &self,
        z: &[f32],
        grad_h: &[f32],
        grad_z: &'a mut [MaybeUninit<f32>],
        len: usize,
        sums: &mut [SliceSums],
    ) -> &'a mut [f32] {
        crate::site_capture::backward_new_then_sums(self, z, grad_h, grad_z, len, sums)
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
fn sigmoid<const FMA: bool>(x: f32) -> f32 {
    fast_math::sigmoid_from(x, fast_math::exp_neg_abs::<FMA>(x))
}

/// σ'(x) = σ(x)(1 − σ(x)), as e / (1 + e)² with e = e^-|x|: accurate in both tails, where
/// 1 − σ would cancel.
#[inline(always)]
fn sigmoid_derivative<const FMA: bool>(x: f32) -> f32 {
    fast_math::sigmoid_derivative_from(fast_math::exp_neg_abs::<FMA>(x))
}

/// ln(1 + e^x) = max(x, 0) + ln(1 + e^-|x|): no overflow for large x, no loss of precision for
/// very negative x.
#[inline(always)]
fn softplus<const FMA: bool>(x: f32) -> f32 {
    fast_math::softplus_from::<FMA>(x, fast_math::exp_neg_abs::<FMA>(x))
}

/// tanh x = sign(x)·(1 − e^-2|x|) / (1 + e^-2|x|) = −sign(x)·m / (2 + m) with m = expm1(−2|x|):
/// relative accuracy near 0 (where 1 − 2/(e^2x + 1) would cancel), ±1 beyond |x| ≈ 9.
#[inline(always)]
fn tanh<const FMA: bool>(x: f32) -> f32 {
    let m = fast_math::expm1_nonpositive::<FMA>(-2.0 * x.abs());
    (-m / (2.0 + m)).copysign(x)
}

/// tanh' x = 1 − tanh² x = 4e / (1 + e)² with e = e^-2|x|: no cancellation as tanh → ±1.
#[inline(always)]
fn tanh_derivative<const FMA: bool>(x: f32) -> f32 {
    4.0 * fast_math::sigmoid_derivative_from(fast_math::exp_neg_abs::<FMA>(2.0 * x))
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
/// returns σ(v) and σ'(v), v = 2u, with x clamped to [−10, 10] (beyond, gelu has relu's values
/// and slopes in f32; `f_exact` and `df_exact` say how they reach them).
/// There |v| ≤ 87.32, where e^-v is a normal float, so σ = 1 / (1 + e^-v) and σ' = e^-v·σ²
/// need no branch on v's sign and no cancellation.
#[inline(always)]
fn gelu_parts<const FMA: bool>(x: f32) -> (f32, f32) {
    let x = clamp(x, -10.0, 10.0);
    let v = 2.0 * SQRT_2_OVER_PI * fast_math::madd::<FMA>(GELU_CUBIC * x * x, x, x);
    let e = fast_math::exp_normal_range::<FMA>(-v);
    let s = 1.0 / (1.0 + e);
    (s, e * s * s)
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

    /// `v`, or 0 where `flushes` and |v| < `bound`.
    #[inline(always)]
    fn flushed(self, v: f32, bound: f32) -> f32 {
        if self.flushes() {
            flush_below(v, bound)
        } else {
            v
        }
    }

    #[inline(always)]
    fn f<const FMA: bool>(self, x: f32) -> f32 {
        self.flushed(self.f_exact::<FMA>(x), NEGLIGIBLE)
    }

    #[inline(always)]
    fn df<const FMA: bool>(self, x: f32) -> f32 {
        self.flushed(self.df_exact::<FMA>(x), NEGLIGIBLE)
    }

    /// dL/dz's term gh · f′(z); for the flushing activations, 0 where it would be subnormal.
    #[inline(always)]
    fn grad_term<const FMA: bool>(self, gh: f32, x: f32) -> f32 {
        self.flushed(gh * self.df::<FMA>(x), f32::MIN_POSITIVE)
    }

    #[inline(always)]
    fn f_exact<const FMA: bool>(self, x: f32) -> f32 {
        match self {
            Builtin::Relu => x.max(0.0),
            Builtin::Softplus => softplus::<FMA>(x),
            Builtin::Softsign => x / (1.0 + x.abs()),
            Builtin::ReluSoftplus => {
                let negative = fast_math::softplus_minus_ln2_nonpositive::<FMA>(x);
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
                let m = fast_math::expm1_nonpositive::<FMA>(x);
                if x > 0.0 {
                    x
                } else {
                    m
                }
            }
            Builtin::Tanh => tanh::<FMA>(x),
            Builtin::Sigmoid => sigmoid::<FMA>(x),
            // The tanh approximation (as PyTorch's approximate="tanh"), so f and f' are exact
            // analytic pairs of each other: 0.5·x·(1 + tanh u) = x·σ(2u).
            // Beyond |x| = 10 it has saturated in f32, and x³ would overflow for huge x.
            // Above 10, σ(v) is 1 and x·σ is x; below −10 it is 0, which x·σ(v) with v at its
            // clamp (σ ≈ 1e-38) would give only for moderate x.
            Builtin::Gelu => {
                let (s, _) = gelu_parts::<FMA>(x);
                let inner = x * s;
                if x < -10.0 {
                    0.0
                } else {
                    inner
                }
            }
            // x·σ(x) → 0 as x → −∞, where σ is 0 and −∞·0 would be NaN.
            Builtin::Swish => clamp(x, f32::MIN, f32::INFINITY) * sigmoid::<FMA>(x),
        }
    }

    #[inline(always)]
    fn df_exact<const FMA: bool>(self, x: f32) -> f32 {
        match self {
            Builtin::Relu => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Builtin::Softplus => sigmoid::<FMA>(x),
            Builtin::Softsign => {
                let d = 1.0 + x.abs();
                1.0 / (d * d)
            }
            Builtin::ReluSoftplus => {
                let s = sigmoid::<FMA>(x);
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
            // eˣ = e^-|x| on the side it is kept.
            Builtin::Elu => {
                let e = fast_math::exp_neg_abs::<FMA>(x);
                if x > 0.0 {
                    1.0
                } else {
                    e
                }
            }
            Builtin::Tanh => tanh_derivative::<FMA>(x),
            Builtin::Sigmoid => sigmoid_derivative::<FMA>(x),
            // d/dx x·σ(v) = σ(v) + x·σ'(v)·dv/dx, v = 2u. Beyond |x| = 10 the clamped x gives
            // relu's slopes by itself: exactly 1 above (σ = 1, and x·σ'·v' ≈ 3e-36 rounds away),
            // and below a value under 2⁻⁶⁴, which `df` reports as 0.
            Builtin::Gelu => {
                let (s, ds) = gelu_parts::<FMA>(x);
                let xc = clamp(x, -10.0, 10.0);
                let dv = 2.0 * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_CUBIC * xc * xc);
                fast_math::madd::<FMA>(xc * ds, dv, s)
            }
            Builtin::Swish => {
                let (s, ds) = fast_math::sigmoid_pair_from(x, fast_math::exp_neg_abs::<FMA>(x));
                fast_math::madd::<FMA>(finite(x), ds, s)
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
    // One element through the slice loops, so that a figure draws the values the training and
    // the probe record (the loops' fused multiply-adds round differently from the baseline's).
    fn value(&self, x: f32) -> f32 {
        let mut h = [0.0];
        builtin_forward(*self, &[x], &mut h);
        h[0]
    }
    fn derivative(&self, x: f32) -> f32 {
        let mut d = [0.0];
        builtin_derivative(*self, &[x], &mut d);
        d[0]
    }
    fn forward_slice(&self, z: &[f32], h: &mut [f32]) {
        builtin_forward(*self, z, h)
    }
    fn forward_slice_new<'a>(&self, z: &[f32], h: &'a mut [MaybeUninit<f32>]) -> &'a mut [f32] {
        builtin_forward_new(*self, z, h);
        // SAFETY: builtin_forward_new wrote every element (z and h have one length).
        unsafe { assume_written(h) }
    }
    fn backward_slice(&self, z: &[f32], grad_h: &[f32], grad_z: &mut [f32]) {
        builtin_backward(*self, z, grad_h, grad_z)
    }
    fn backward_slice_new<'a>(
        &self,
        z: &[f32],
        grad_h: &[f32],
        grad_z: &'a mut [MaybeUninit<f32>],
    ) -> &'a mut [f32] {
        builtin_backward_new(*self, z, grad_h, grad_z);
        // SAFETY: builtin_backward_new wrote every element (grad_z, grad_h and z have one length).
        unsafe { assume_written(grad_z) }
    }
    fn backward_slice_new_with_sums<'a>(
        &self,
        z: &[f32],
        grad_h: &[f32],
        grad_z: &'a mut [MaybeUninit<f32>],
        len: usize,
        sums: &mut [SliceSums],
    ) -> &'a mut [f32] {
        if !fused_sums::backward_new_with_sums(*self, z, grad_h, grad_z, len, sums) {
            return crate::site_capture::backward_new_then_sums(self, z, grad_h, grad_z, len, sums);
        }
        // SAFETY: backward_new_with_sums wrote every element (grad_z, grad_h and z have one
        // length) when it says true.
        unsafe { assume_written(grad_z) }
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
// or 8-wide vectors. Both clones fuse multiply-adds, so they give the same values at every width;
// the baseline (no FMA) rounds its polynomials differently, within the same stated error.

#[multiversion(targets(
    "x86_64+avx2+fma+avx512f+avx512vl+avx512bw+avx512dq",
    "x86_64+avx2+fma"
))]
fn builtin_forward(b: Builtin, z: &[f32], h: &mut [f32]) {
    #[target_cfg(target_feature = "fma")]
    const FMA: bool = true;
    #[target_cfg(not(target_feature = "fma"))]
    const FMA: bool = false;
    for_each_builtin!(b, b => {
        for (h, &z) in h.iter_mut().zip(z) {
            *h = b.f::<FMA>(z);
        }
    })
}

/// [`builtin_forward`] into a new output, written element by element (not cleared first).
#[multiversion(targets(
    "x86_64+avx2+fma+avx512f+avx512vl+avx512bw+avx512dq",
    "x86_64+avx2+fma"
))]
fn builtin_forward_new(b: Builtin, z: &[f32], h: &mut [MaybeUninit<f32>]) {
    #[target_cfg(target_feature = "fma")]
    const FMA: bool = true;
    #[target_cfg(not(target_feature = "fma"))]
    const FMA: bool = false;
    assert_eq!(
        z.len(),
        h.len(),
        "an activation's output has its input's length"
    );
    for_each_builtin!(b, b => {
        for (h, &z) in h.iter_mut().zip(z) {
            h.write(b.f::<FMA>(z));
        }
    })
}

#[multiversion(targets(
    "x86_64+avx2+fma+avx512f+avx512vl+avx512bw+avx512dq",
    "x86_64+avx2+fma"
))]
fn builtin_backward(b: Builtin, z: &[f32], grad_h: &[f32], grad_z: &mut [f32]) {
    #[target_cfg(target_feature = "fma")]
    const FMA: bool = true;
    #[target_cfg(not(target_feature = "fma"))]
    const FMA: bool = false;
    for_each_builtin!(b, b => {
        for ((gz, &gh), &z) in grad_z.iter_mut().zip(grad_h).zip(z) {
            *gz += b.grad_term::<FMA>(gh, z);
        }
    })
}

/// [`builtin_backward`] into a new gradient: written, as 0 + dL/dh·f′ so that its values are
/// those of the sum into zeros bit for bit (a product of −0 stays +0, as there).
#[multiversion(targets(
    "x86_64+avx2+fma+avx512f+avx512vl+avx512bw+avx512dq",
    "x86_64+avx2+fma"
))]
fn builtin_backward_new(b: Builtin, z: &[f32], grad_h: &[f32], grad_z: &mut [MaybeUninit<f32>]) {
    #[target_cfg(target_feature = "fma")]
    const FMA: bool = true;
    #[target_cfg(not(target_feature = "fma"))]
    const FMA: bool = false;
    assert!(z.len() == grad_z.len() && grad_h.len() == grad_z.len());
    for_each_builtin!(b, b => {
        for ((gz, &gh), &z) in grad_z.iter_mut().zip(grad_h).zip(z) {
            gz.write(0.0 + b.grad_term::<FMA>(gh, z));
        }
    })
}

/// f′ at each z, for [`ActivationFunction::derivative`].
#[multiversion(targets(
    "x86_64+avx2+fma+avx512f+avx512vl+avx512bw+avx512dq",
    "x86_64+avx2+fma"
))]
fn builtin_derivative(b: Builtin, z: &[f32], df: &mut [f32]) {
    #[target_cfg(target_feature = "fma")]
    const FMA: bool = true;
    #[target_cfg(not(target_feature = "fma"))]
    const FMA: bool = false;
    for (df, &z) in df.iter_mut().zip(z) {
        *df = b.df::<FMA>(z);
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

/// dL/dz = dL/dh·f′ for one chunk of z's gradient: written into a new chunk, added into one
/// that earlier consumers wrote.
pub(crate) fn backward_into<'a>(
    f: &dyn ActivationFunction,
    z: &[f32],
    grad_h: &[f32],
    grad_z: GradChunk<'a>,
) -> &'a mut [f32] {
    grad_z.fill(
        |gz| f.backward_slice_new(z, grad_h, gz),
        |gz| f.backward_slice(z, grad_h, gz),
    )
}

/// Elements per rayon task for the element-wise passes: large enough to amortise scheduling.
pub(crate) const ELEMENTWISE_CHUNK: usize = 1 << 14;

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
    let forward = |z_values: Values, _taping: bool| {
        let h = written_by_chunks(z_values.len(), ELEMENTWISE_CHUNK, |at, h| {
            f.forward_slice_new(&z_values[at], h)
        });
        observe(&z_values, &h);
        (h, sample_shape, z_values)
    };
    let f = f.clone();
    let backward = move |z_values: Values, grad_h: Vec<f32>, grads: OpGrads| {
        // Written straight into z's gradient (new, written chunk by chunk; added into were it
        // not). z comes from a conv or dense layer and this site is its only consumer, so that
        // buffer then holds exactly dL/dz.
        let mut grad_z = grads
            .input
            .expect("an activation site passes its gradient on");
        let Some(request) = capture else {
            grad_z
                .par_chunks_new_or_existing(ELEMENTWISE_CHUNK)
                .zip(
                    grad_h
                        .par_chunks(ELEMENTWISE_CHUNK)
                        .zip(z_values.par_chunks(ELEMENTWISE_CHUNK)),
                )
                .for_each(|(gz, (gh, z))| {
                    backward_into(&*f, z, gh, gz);
                });
            return;
        };
        let sums = backward_with_sums(&*f, sample_shape, &z_values, &grad_h, &mut grad_z);
        let arrays = request.keep_arrays.then(|| SiteArrays {
            grad_z: grad_z.as_slice().to_vec(),
            z: z_values.to_vec(),
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

#[path = "activation_fused_sums.rs"]
mod fused_sums;

#[cfg(test)]
#[path = "activation_tests.rs"]
mod tests;
