//! Tests of the saturation thresholds: per built-in, points on either side of the boundaries
//! that the definitions give, and the defaults for custom activations.

use super::*;
use crate::activation::BUILTINS;

/// (z, derivative-saturated, output-saturated or None for a null column) per built-in.
///
/// The boundaries, from the definitions (|f′| < 1 % of max |f′|; f(z)/a ≥ 0.99 for an asymptote
/// a), computed with numpy on a 1e-5 grid over [−200, 200]
/// (`x = np.linspace(-200, 200, 40000001); sat = np.abs(d) < 0.01 * m;
/// x[np.nonzero(np.diff(sat.astype(int)))[0]]` for each f′ = d written out in numpy):
/// sigmoid' at ±5.98645; tanh' at ±2.99323; gelu' at −3.00936 and in (−0.77935, −0.72683)
/// (where f′ crosses 0); swish' at −6.14292 and in (−1.33079, −1.22959); softplus' at −4.59512;
/// elu' at −4.60518. By hand: softsign' (1/(1+|z|)² < 0.01) beyond |z| = 9; relu-softsign' for
/// z < −9; output: softsign |z| ≥ 99, relu-softsign z ≤ −99, tanh |z| ≥ atanh 0.99 = 2.64665,
/// sigmoid z ≥ ln 99 = 4.59512, elu z ≤ ln 0.01 = −4.60517, relu-softplus z ≤
/// ln(e^(0.01·ln 2) − 1) = −4.96822 (numpy: `np.log(np.exp(0.01*np.log(2))-1)`).
fn expected(b: Builtin) -> Vec<(f32, bool, Option<bool>)> {
    let none = |points: &[(f32, bool)]| points.iter().map(|&(z, d)| (z, d, None)).collect();
    let some = |points: &[(f32, bool, bool)]| {
        points
            .iter()
            .map(|&(z, d, o)| (z, d, Some(o)))
            .collect::<Vec<_>>()
    };
    match b {
        Builtin::Relu => none(&[(-0.5, true), (0.0, true), (1e-3, false), (0.5, false)]),
        // Its negative slope is exactly 1 % of 1, not below it.
        Builtin::LeakyRelu => none(&[(-5.0, false), (5.0, false)]),
        Builtin::Softplus => none(&[(-4.7, true), (-4.5, false), (3.0, false)]),
        Builtin::Gelu => none(&[
            (-3.1, true),
            (-2.9, false),
            (-0.75, true),
            (-0.8, false),
            (-0.7, false),
            (2.0, false),
        ]),
        Builtin::Swish => none(&[
            (-6.25, true),
            (-6.05, false),
            (-1.28, true),
            (-1.35, false),
            (-1.2, false),
        ]),
        Builtin::Softsign => some(&[
            (9.5, true, false),
            (-9.5, true, false),
            (8.0, false, false),
            (-8.0, false, false),
            (100.0, true, true),
            (-100.0, true, true),
            (98.0, true, false),
            (-98.0, true, false),
        ]),
        Builtin::ReluSoftsign => some(&[
            (-9.5, true, false),
            (-8.0, false, false),
            (-100.0, true, true),
            (-98.0, true, false),
            (100.0, false, false),
            (0.5, false, false),
        ]),
        Builtin::ReluSoftplus => some(&[
            (-4.7, true, false),
            (-4.5, false, false),
            (-5.07, true, true),
            (-4.87, true, false),
            (100.0, false, false),
        ]),
        Builtin::Elu => some(&[
            (-4.7, true, true),
            (-4.5, false, false),
            (3.0, false, false),
        ]),
        Builtin::Tanh => some(&[
            (3.1, true, true),
            (-3.1, true, true),
            (2.9, false, true),
            (-2.9, false, true),
            (2.6, false, false),
            (-2.6, false, false),
        ]),
        Builtin::Sigmoid => some(&[
            (6.1, true, true),
            (-6.1, true, false),
            (5.9, false, true),
            (-5.9, false, false),
            (4.5, false, false),
            (-10.0, true, false),
        ]),
    }
}

#[test]
fn builtins_saturate_where_the_definitions_say() {
    for b in BUILTINS {
        let t = SaturationThresholds::of(&b);
        let points = expected(b);
        assert!(t.derivative_known, "{}", b.name());
        assert_eq!(t.output_known, points[0].2.is_some(), "{}", b.name());
        for (z, derivative, output) in points {
            assert_eq!(
                t.derivative_saturated(b.derivative(z)),
                derivative,
                "{}'({z}) = {}",
                b.name(),
                b.derivative(z)
            );
            if let Some(output) = output {
                assert_eq!(
                    t.output_saturated(b.value(z)),
                    output,
                    "{}({z}) = {}",
                    b.name(),
                    b.value(z)
                );
            }
        }
    }
}

#[test]
fn stated_maximum_derivatives_match_a_grid_search() {
    // The hand-derived maxima against the grid estimate (step 2⁻⁸): the grid can only fall
    // short of a supremum, and for softplus (sup 1 at +∞) reaches it within f32 rounding.
    for b in BUILTINS {
        let stated = builtin_max_derivative(b);
        let grid = estimate_max_derivative(&b).unwrap();
        assert!(
            grid <= stated * (1.0 + 1e-6),
            "{}: {grid} > {stated}",
            b.name()
        );
        assert!(
            grid >= stated * (1.0 - 1e-4),
            "{}: {grid} < {stated}",
            b.name()
        );
    }
}

/// 2·tanh(x), a custom activation on the trait's defaults.
#[derive(Debug)]
struct DoubleTanh;
impl ActivationFunction for DoubleTanh {
    fn name(&self) -> &str {
        "double-tanh"
    }
    fn value(&self, x: f32) -> f32 {
        2.0 * x.tanh()
    }
    fn derivative(&self, x: f32) -> f32 {
        2.0 * (1.0 - x.tanh().powi(2))
    }
}

/// An activation whose derivative is never a number.
#[derive(Debug)]
struct Broken;
impl ActivationFunction for Broken {
    fn name(&self) -> &str {
        "broken"
    }
    fn value(&self, x: f32) -> f32 {
        x
    }
    fn derivative(&self, _: f32) -> f32 {
        f32::NAN
    }
}

#[test]
fn custom_activations_estimate_the_derivative_and_declare_no_bound() {
    // 2·tanh' peaks at x = 0, a grid point: 2 exactly, so |f′| < 0.02 is saturated.
    let t = SaturationThresholds::of(&DoubleTanh);
    assert_eq!(DoubleTanh.max_derivative(), Some(2.0));
    assert!(t.derivative_known && !t.output_known);
    assert!(t.derivative_saturated(0.019) && !t.derivative_saturated(0.021));
    assert!(!t.output_saturated(1.999) && !t.output_saturated(-1.999));
    // Nothing finite to scale by: both columns null, nothing counted.
    let t = SaturationThresholds::of(&Broken);
    assert_eq!(Broken.max_derivative(), None);
    assert!(!t.derivative_known && !t.output_known);
    assert!(!t.derivative_saturated(0.0) && !t.output_saturated(f32::INFINITY));
}

/// Limits 2 at −∞ and 0.5 at +∞, both positive (only the stated asymptotes matter here).
#[derive(Debug)]
struct TwoPositiveLimits;
impl ActivationFunction for TwoPositiveLimits {
    fn name(&self) -> &str {
        "two-positive-limits"
    }
    fn value(&self, x: f32) -> f32 {
        x
    }
    fn derivative(&self, _: f32) -> f32 {
        1.0
    }
    fn asymptotes(&self) -> Asymptotes {
        Asymptotes {
            below: Some(2.0),
            above: Some(0.5),
        }
    }
}

#[test]
fn the_nearer_of_two_positive_asymptotes_sets_the_bound() {
    // Within 1 % of 0.5 (≥ 0.495) counts, and so does anything beyond, up to and past 2.
    let t = SaturationThresholds::of(&TwoPositiveLimits);
    assert!(t.output_known);
    assert!(t.output_saturated(0.496) && t.output_saturated(1.99));
    assert!(!t.output_saturated(0.49) && !t.output_saturated(-1e9));
    assert!(!t.output_saturated(f32::NAN));
}
