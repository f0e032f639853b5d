//! What saturation means for an activation: its largest derivative and its finite, nonzero
//! asymptotes, turned into the thresholds against which the probe pass counts saturated
//! observations (neurons.parquet's `saturated_deriv_frac` and `saturated_output_frac`).
//!
//! A bounded activation can die without its output being zero: tanh or softsign stuck in a
//! tail pass almost no gradient. An observation is derivative-saturated when |f′(z)| is below
//! 1 % of the activation's largest |f′| (for a monotone activation simply f′; for gelu and swish
//! the absolute value keeps their dip, where f′ ≈ −0.1 still passes gradient, from counting), and output-saturated when f(z) is within 1 % of an
//! asymptote a, i.e. f(z)/a ≥ 0.99 (for a symmetric bound: |f(z)| ≥ 0.99).

use crate::activation::{ActivationFunction, Builtin};

/// The share of the largest derivative below which f′(z) counts as saturated.
pub const DERIVATIVE_SHARE: f32 = 0.01;
/// The share of an asymptote beyond which f(z) counts as saturated.
pub const OUTPUT_SHARE: f32 = 0.99;

/// The limits of f at −∞ and +∞, each where it is finite and nonzero (a zero limit, as relu's
/// or sigmoid's at −∞, is where a neuron is off rather than saturated, which `active_frac`
/// already measures).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Asymptotes {
    pub below: Option<f32>,
    pub above: Option<f32>,
}

impl Asymptotes {
    /// Whether there is any asymptote: without one the output column is null.
    pub fn any(&self) -> bool {
        self.below.is_some() || self.above.is_some()
    }
}

/// The largest derivative of a built-in, sup |f′| over the reals, derived by hand (gelu's and
/// swish's negative dips, down to about −0.13 and −0.10, are smaller in magnitude):
/// - relu, leaky-relu, elu, relu-softplus, relu-softsign: 1, the slope for x > 0 (their negative
///   sides have f′ = 0.01, eˣ < 1, σ(x) < ½ and 1/(1−x)² ≤ 1 respectively).
/// - softplus: f′ = σ(x), increasing to 1 (the supremum, not attained).
/// - softsign: f′ = 1/(1+|x|)², largest at 0: 1. tanh: 1 − tanh² x, largest at 0: 1.
/// - sigmoid: σ(1−σ), largest at σ = ½: ¼.
/// - swish: f′ = σ + xσ(1−σ), f″ = σ(1−σ)(2 + x(1−2σ)) = 0 at x(2σ(x)−1) = 2, x ≈ 2.39936:
///   f′ ≈ 1.09984 (numpy on a 1e-5 grid over [−10, 10]: 1.0998393201285284).
/// - gelu (tanh form): f″ = 0 has no closed form; numpy on the same grid gives the maximum
///   1.128993068655481 at x ≈ 1.4185 (the exact erf GELU: Φ(√2) + √2·φ(√2) ≈ 1.12897).
pub fn builtin_max_derivative(b: Builtin) -> f32 {
    match b {
        Builtin::Relu
        | Builtin::LeakyRelu
        | Builtin::Elu
        | Builtin::ReluSoftplus
        | Builtin::ReluSoftsign
        | Builtin::Softplus
        | Builtin::Softsign
        | Builtin::Tanh => 1.0,
        Builtin::Sigmoid => 0.25,
        Builtin::Swish => 1.099_839_3,
        Builtin::Gelu => 1.128_993_1,
    }
}

/// The finite, nonzero asymptotes of a built-in: softsign and tanh ±1, sigmoid +1 (at +∞),
/// relu-softsign and elu −1, relu-softplus −ln 2 (softplus(x) − ln 2 → −ln 2 as x → −∞).
/// relu, leaky-relu, softplus, gelu and swish have none (their limits are 0 or infinite).
pub fn builtin_asymptotes(b: Builtin) -> Asymptotes {
    let (below, above) = match b {
        Builtin::Softsign | Builtin::Tanh => (Some(-1.0), Some(1.0)),
        Builtin::Sigmoid => (None, Some(1.0)),
        Builtin::ReluSoftsign | Builtin::Elu => (Some(-1.0), None),
        Builtin::ReluSoftplus => (Some(-std::f32::consts::LN_2), None),
        Builtin::Relu | Builtin::LeakyRelu | Builtin::Softplus | Builtin::Gelu | Builtin::Swish => {
            (None, None)
        }
    };
    Asymptotes { below, above }
}

/// The largest |f′| of an activation that does not state it, estimated as the maximum over a grid
/// of step 2⁻⁸ on [−64, 64] (wide enough for any peak a sensible activation has near its inputs'
/// scale, fine enough that a smooth peak is missed by a negligible amount). `None` when no
/// grid value is finite and positive: the derivative column is then null.
pub fn estimate_max_derivative<F: ActivationFunction + ?Sized>(f: &F) -> Option<f32> {
    let max = (-(64 << 8)..=(64 << 8))
        .map(|i| f.derivative(i as f32 / 256.0).abs())
        .filter(|d| d.is_finite())
        .fold(f32::NEG_INFINITY, f32::max);
    (max > 0.0).then_some(max)
}

/// What the probe pass compares each observation with. A NaN threshold never compares true,
/// so an unknown threshold counts nothing (and its column is null).
#[derive(Debug, Clone, Copy)]
pub struct SaturationThresholds {
    /// |f′(z)| < this is derivative-saturated.
    pub derivative_below: f32,
    /// f(z) ≥ this is output-saturated (0.99 × the smallest positive asymptote).
    pub output_at_least: f32,
    /// f(z) ≤ this is output-saturated (0.99 × the negative asymptote nearest 0).
    pub output_at_most: f32,
    /// Whether the columns are defined (not null).
    pub derivative_known: bool,
    pub output_known: bool,
}

impl SaturationThresholds {
    pub fn of<F: ActivationFunction + ?Sized>(f: &F) -> Self {
        let max_derivative = f.max_derivative().filter(|d| d.is_finite() && *d > 0.0);
        let asymptotes = f.asymptotes();
        let limits = [asymptotes.below, asymptotes.above];
        let finite = || limits.into_iter().flatten().filter(|a| a.is_finite());
        let positive = finite().filter(|a| *a > 0.0).fold(f32::NAN, f32::min);
        let negative = finite().filter(|a| *a < 0.0).fold(f32::NAN, f32::max);
        Self {
            derivative_below: max_derivative.map_or(f32::NAN, |d| DERIVATIVE_SHARE * d),
            output_at_least: OUTPUT_SHARE * positive,
            output_at_most: OUTPUT_SHARE * negative,
            derivative_known: max_derivative.is_some(),
            output_known: !positive.is_nan() || !negative.is_nan(),
        }
    }

    /// Whether f′(z) = `derivative` is saturated.
    #[inline(always)]
    pub fn derivative_saturated(&self, derivative: f32) -> bool {
        derivative.abs() < self.derivative_below
    }

    /// Whether f(z) = `h` is saturated.
    #[inline(always)]
    pub fn output_saturated(&self, h: f32) -> bool {
        (h >= self.output_at_least) | (h <= self.output_at_most)
    }
}

#[cfg(test)]
#[path = "saturation_tests.rs"]
mod tests;
