//! exp, expm1, log1p and the logistic function in plain, branch-free f32 arithmetic, so that the
//! activation loops that call them vectorise (issue #15).
//!
//! Why hand-written: libm's `exp`, `ln_1p`, `exp_m1` and `tanh` are opaque scalar calls, so a loop
//! over a slice runs one element at a time (softplus cost 100× relu). SIMD crates such as `wide`
//! pick their instructions with `cfg(target_feature)` at compile time, so in our portable binary
//! (no `-C target-cpu`) their 8-lane types would be two SSE halves; the `multiversion` AVX-512 and
//! AVX2+FMA clones of our loops would not reach them. Written as ordinary scalar code with selects
//! instead of branches on the data, these functions are inlined into those loops and
//! auto-vectorised for whichever target the clone is compiled for. No `mul_add`: without FMA it is a libm call.
//!
//! The method is Cephes' `expf` and `logf` (S. L. Moshier): Cody–Waite range reduction
//! x = n·ln 2 + r with |r| ≤ ln 2 / 2 and ln 2 split into an exact high part and a correction, then
//! their minimax polynomials. Their stated accuracy is about 1 ulp; expm1 reuses exp's polynomial
//! as r + r²·P(r), which keeps its relative accuracy as r → 0.
//!
//! Accuracy (tested in `activation.rs` against f64 definitions over every 2⁻¹⁰ step of [-100, 100]
//! and the tails): the activations built on these functions are within 1e-6 relative or 2e-7
//! absolute error of the exact value. NaN propagates; ±∞ give the limits.

/// 1.5·2²³: adding it rounds an f32 of magnitude below 2²² to an integer, which then sits in the
/// low bits of the sum's representation.
const ROUNDING_MAGIC: f32 = 12_582_912.0;
const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// ln 2 = LN2_HIGH + LN2_LOW, LN2_HIGH = 0.693359375 with 9 significant bits so that n·LN2_HIGH
/// is exact. (Cephes' coefficients below are written as the f32 they round to.)
const LN2_HIGH: f32 = 355.0 / 512.0;
const LN2_LOW: f32 = -2.121_944_4e-4;
/// Below this exp(x) rounds to 0 in f32 (e⁻¹⁰⁵ < 2⁻¹⁵⁰, half the least subnormal).
const EXP_LOWEST: f32 = -105.0;
/// Above this exp(x) overflows f32.
const EXP_HIGHEST: f32 = 88.722_83;

/// `lo ≤ x ≤ hi`, by selects that keep NaN (f32::max/min would turn it into a bound).
#[inline(always)]
pub fn clamp(x: f32, lo: f32, hi: f32) -> f32 {
    let x = if x < lo { lo } else { x };
    if x > hi {
        hi
    } else {
        x
    }
}

/// 2ⁿ for n in [-151, 128], as the product of two normal powers of two so that the result can
/// be subnormal.
#[inline(always)]
fn pow2(n: i32) -> (f32, f32) {
    let half = n >> 1;
    let rest = n - half;
    let bits = |k: i32| f32::from_bits(((k + 127) << 23) as u32);
    (bits(half), bits(rest))
}

/// Range reduction: x = n·ln 2 + r, |r| ≤ ln 2 / 2 (plus rounding), and p(r) = (eʳ − 1 − r) / r².
#[inline(always)]
fn reduce(x: f32) -> (i32, f32, f32) {
    let x = clamp(x, EXP_LOWEST, EXP_HIGHEST);
    let t = x * LOG2_E + ROUNDING_MAGIC;
    let n = (t.to_bits() as i32).wrapping_sub(ROUNDING_MAGIC.to_bits() as i32);
    let nf = t - ROUNDING_MAGIC;
    let r = (x - nf * LN2_HIGH) - nf * LN2_LOW;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    (n, r, p)
}

/// eˣ; 0 below -105, +∞ above 88.72 only through the clamp's bound (e^88.72 ≈ f32::MAX).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let (n, r, p) = reduce(x);
    let (s1, s2) = pow2(n);
    (p * r * r + r + 1.0) * s1 * s2
}

/// eˣ − 1, accurate relative to its value as x → 0 (for |x| ≤ ln 2 / 2, n = 0 and this is
/// r + r²·p(r) with r = x exactly). For x ≤ 88 only: above it the scale 2ⁿ overflows f32 before
/// the product could, and the result is ∞ or NaN. The activations call it with x ≤ 0 (elu's
/// negative side, tanh on −2|x|), or discard it for x > 0.
#[inline(always)]
pub fn expm1(x: f32) -> f32 {
    let (n, r, p) = reduce(x);
    let (s1, s2) = pow2(n);
    let scale = s1 * s2;
    (p * r * r + r) * scale + (scale - 1.0)
}

/// ln(1 + u) for u in [0, 1] (the range softplus needs: u = e^-|x|), accurate relative to its
/// value as u → 0.
#[inline(always)]
pub fn log1p_unit(u: f32) -> f32 {
    // 1 + u = 2ᵉ·(1 + f) with f in [√½ − 1, √2 − 1]: f = u (e = 0) or (u − 1) / 2 (e = 1),
    // both without forming 1 + u, which would round u away.
    let high = u > std::f32::consts::SQRT_2 - 1.0;
    let f = if high { 0.5 * (u - 1.0) } else { u };
    let e = if high { 1.0f32 } else { 0.0 };
    let z = f * f;
    let mut y = 7.037_683_6e-2f32;
    y = y * f - 1.151_461e-1;
    y = y * f + 1.167_699_9e-1;
    y = y * f - 1.242_014_1e-1;
    y = y * f + 1.424_932_3e-1;
    y = y * f - 1.666_805_8e-1;
    y = y * f + 2.000_071_4e-1;
    y = y * f - 2.499_999_4e-1;
    y = y * f + 3.333_333e-1;
    y = y * f * z;
    y += e * LN2_LOW;
    y += -0.5 * z;
    (f + y) + e * LN2_HIGH
}

/// e^-|x|, the one exponential the logistic-based functions need; it never overflows.
#[inline(always)]
pub fn exp_neg_abs(x: f32) -> f32 {
    exp(-x.abs())
}

/// σ(x) = 1 / (1 + e⁻ˣ) from e = e^-|x|: 1/(1+e) for x ≥ 0, e/(1+e) below.
#[inline(always)]
pub fn sigmoid_from(x: f32, e: f32) -> f32 {
    let numerator = if x >= 0.0 { 1.0 } else { e };
    let s = numerator / (1.0 + e);
    // NaN fails both comparisons above; keep it.
    if x.is_nan() {
        x
    } else {
        s
    }
}

/// σ'(x) = σ(x)·(1 − σ(x)) = e / (1 + e)² with e = e^-|x|: no cancellation in the tails.
#[inline(always)]
pub fn sigmoid_derivative_from(e: f32) -> f32 {
    let d = 1.0 + e;
    e / (d * d)
}

/// ln(1 + eˣ) = max(x, 0) + ln(1 + e^-|x|).
#[inline(always)]
pub fn softplus_from(x: f32, e: f32) -> f32 {
    let positive = if x > 0.0 { x } else { 0.0 };
    positive + log1p_unit(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relative_error(got: f32, want: f64) -> f64 {
        if want == 0.0 {
            got.abs() as f64
        } else {
            ((got as f64 - want) / want).abs()
        }
    }

    /// The building blocks alone, against f64 libm, over every 2⁻¹² step of their ranges.
    #[test]
    fn exp_expm1_and_log1p_are_within_a_few_ulp() {
        let (mut worst_exp, mut worst_expm1, mut worst_log1p) = (0f64, 0f64, 0f64);
        for i in -(88 << 12)..=(88 << 12) {
            let x = i as f32 / 4096.0;
            worst_exp = worst_exp.max(relative_error(exp(x), (x as f64).exp()));
            worst_expm1 = worst_expm1.max(relative_error(expm1(x), (x as f64).exp_m1()));
        }
        for i in 0..=(1 << 12) {
            let u = i as f32 / 4096.0;
            worst_log1p = worst_log1p.max(relative_error(log1p_unit(u), (u as f64).ln_1p()));
        }
        // Tiny arguments: ln(1 + u) ≈ u, eˣ − 1 ≈ x.
        for u in [1e-30f32, 1e-20, 1e-10, 1e-7, 3e-5] {
            worst_log1p = worst_log1p.max(relative_error(log1p_unit(u), (u as f64).ln_1p()));
            for x in [u, -u] {
                worst_expm1 = worst_expm1.max(relative_error(expm1(x), (x as f64).exp_m1()));
            }
        }
        eprintln!(
            "worst relative error: exp {worst_exp:e}, expm1 {worst_expm1:e}, log1p {worst_log1p:e}"
        );
        // 2⁻²³ ≈ 1.2e-7 is one ulp at the bottom of a binade.
        assert!(worst_exp < 2.5e-7, "exp {worst_exp:e}");
        assert!(worst_expm1 < 2.5e-7, "expm1 {worst_expm1:e}");
        assert!(worst_log1p < 2.5e-7, "log1p {worst_log1p:e}");
    }

    #[test]
    fn exp_reaches_subnormals_zero_and_the_limits() {
        // Subnormal results are within a unit of their last place (2⁻¹⁴⁹).
        for x in [-90.0f32, -100.0, -103.0] {
            let error = (exp(x) as f64 - (x as f64).exp()).abs();
            assert!(
                error <= 2f64.powi(-149),
                "e^{x}: {} off by {error:e}",
                exp(x)
            );
        }
        assert_eq!(exp(-105.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-1e30), 0.0);
        assert_eq!(expm1(f32::NEG_INFINITY), -1.0);
        assert_eq!(expm1(0.0), 0.0);
        assert!(exp(f32::NAN).is_nan());
        assert!(expm1(f32::NAN).is_nan());
        assert!(log1p_unit(f32::NAN).is_nan());
        assert_eq!(log1p_unit(0.0), 0.0);
        assert!((exp(88.0) as f64 / 88f64.exp() - 1.0).abs() < 2.5e-7);
    }
}
