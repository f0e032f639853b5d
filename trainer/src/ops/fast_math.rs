//! exp, expm1, log1p and the logistic function in plain, branch-free f32 arithmetic, so that the
//! activation loops that call them vectorise (issue #15).
//!
//! Why hand-written: libm's `exp`, `ln_1p`, `exp_m1` and `tanh` are opaque scalar calls, so a loop
//! over a slice runs one element at a time (softplus cost 100× relu). SIMD crates such as `wide`
//! pick their instructions with `cfg(target_feature)` at compile time, so in our portable binary
//! (no `-C target-cpu`) their 8-lane types would be two SSE halves; the `multiversion` AVX-512 and
//! AVX2+FMA clones of our loops would not reach them. Written as ordinary scalar code with selects
//! instead of branches on the data, these functions are inlined into those loops and
//! auto-vectorised for whichever target the clone is compiled for. Each function takes `FMA`: the
//! AVX2+FMA and AVX-512 clones pass `true` and their multiply-adds fuse into one instruction and
//! one rounding (a third fewer instructions in the polynomials); the baseline clone passes `false`,
//! where `mul_add` would be a libm call, and multiplies then adds.
//!
//! The exponential is Cephes' `expf` (S. L. Moshier): Cody–Waite range reduction
//! x = n·ln 2 + r with |r| ≤ ln 2 / 2 and ln 2 split into an exact high part and a correction, then
//! its minimax polynomial, stated accurate to about 1 ulp; expm1 reuses the polynomial as
//! r + r²·P(r), which keeps its relative accuracy as r → 0. The logarithms the activations need
//! are all of the form ln(1 + u) with u in [0, 1], written as 2·atanh(u / (u + 2)), whose odd
//! series over [−1/3, 1/3] needs no range reduction and half the instructions of Cephes' `logf`
//! (relu-softplus's ln((1 + eˣ) / 2) likewise, as 2·atanh(m / (m + 4)) with m = eˣ − 1).
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

/// a·b + c: fused (one rounding) where `FMA`, else a product and a sum.
#[inline(always)]
pub fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// 2ⁿ for n in [-126, 127], a normal float built from its exponent bits (outside, garbage).
#[inline(always)]
fn pow2_normal(n: i32) -> f32 {
    f32::from_bits((n.wrapping_add(127) << 23) as u32)
}

/// 2ⁿ for n in [-151, 128], as the product of two normal powers of two so that the result can
/// be subnormal.
#[inline(always)]
fn pow2(n: i32) -> (f32, f32) {
    let half = n >> 1;
    (pow2_normal(half), pow2_normal(n - half))
}

/// Range reduction of x clamped to exp's range: x = n·ln 2 + r, |r| ≤ ln 2 / 2 (plus rounding).
#[inline(always)]
fn reduce<const FMA: bool>(x: f32) -> (i32, f32) {
    reduce_unclamped::<FMA>(clamp(x, EXP_LOWEST, EXP_HIGHEST))
}

/// x = n·ln 2 + r for |x| below 2²² (beyond, n and r are garbage for the caller to discard).
#[inline(always)]
fn reduce_unclamped<const FMA: bool>(x: f32) -> (i32, f32) {
    let t = madd::<FMA>(x, LOG2_E, ROUNDING_MAGIC);
    let n = (t.to_bits() as i32).wrapping_sub(ROUNDING_MAGIC.to_bits() as i32);
    let nf = t - ROUNDING_MAGIC;
    (n, madd::<FMA>(-nf, LN2_LOW, madd::<FMA>(-nf, LN2_HIGH, x)))
}

/// p(r) = (eʳ − 1 − r) / r² for |r| ≤ ln 2 / 2 (Cephes' minimax coefficients).
#[inline(always)]
fn polynomial<const FMA: bool>(r: f32) -> f32 {
    let mut p = 1.987_569_1e-4f32;
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ] {
        p = madd::<FMA>(p, r, c);
    }
    p
}

/// eʳ − 1 = r + r²·p(r) for the reduced argument r, which every exponential here scales by 2ⁿ.
#[inline(always)]
fn expm1_reduced<const FMA: bool>(r: f32) -> f32 {
    madd::<FMA>(polynomial::<FMA>(r) * r, r, r)
}

/// eˣ; 0 below -105, +∞ above 88.72 only through the clamp's bound (e^88.72 ≈ f32::MAX).
#[inline(always)]
pub fn exp<const FMA: bool>(x: f32) -> f32 {
    let (n, r) = reduce::<FMA>(x);
    let (s1, s2) = pow2(n);
    (expm1_reduced::<FMA>(r) + 1.0) * s1 * s2
}

/// eˣ − 1, accurate relative to its value as x → 0 (for |x| ≤ ln 2 / 2, n = 0 and this is
/// r + r²·p(r) with r = x exactly). For x ≤ 88 only: above it the scale 2ⁿ overflows f32 before
/// the product could, and the result is ∞ or NaN. The activations call it with x ≤ 0 (elu's
/// negative side, tanh on −2|x|), or discard it for x > 0.
#[inline(always)]
pub fn expm1<const FMA: bool>(x: f32) -> f32 {
    let (n, r) = reduce::<FMA>(x);
    let (s1, s2) = pow2(n);
    let scale = s1 * s2;
    madd::<FMA>(expm1_reduced::<FMA>(r), scale, scale - 1.0)
}

/// Below this, ln(1 + u) is u in f32: the next term, u²/2, is under a quarter of u's last place.
const LOG1P_IS_U: f32 = 1.0 / 16_777_216.0;

/// ln(1 + u) for u in [0, 1] (the range softplus needs: u = e^-|x|), accurate relative to its
/// value as u → 0: 2·atanh(u / (u + 2)), whose argument lies in [0, 1/3] ([`two_atanh`]).
///
/// Why not Cephes' `logf` (reduce 1 + u to 2ᵉ·(1 + f), then a degree-9 polynomial): the
/// softplus forward pass is bound by its arithmetic, and the odd series over a third of the
/// range needs about half the instructions for the same accuracy, one of them a division.
///
/// Below 2⁻²⁴ it returns u itself (what the series rounds to there) and runs the series on
/// 2⁻²⁴ instead: below about 1e-19, the square of u / (u + 2) is subnormal, and every
/// instruction that makes or reads a subnormal costs an Intel core a microcode assist, which
/// made softplus on |x| from 43 to 87 (the pre-activations of a neuron dying) 14 times slower.
#[inline(always)]
pub fn log1p_unit<const FMA: bool>(u: f32) -> f32 {
    let tiny = u < LOG1P_IS_U;
    let input = u;
    let u = if tiny { LOG1P_IS_U } else { u };
    let log = two_atanh::<FMA>(u / (u + 2.0));
    if tiny {
        input
    } else {
        log
    }
}

/// eˣ for |x| ≤ 126·ln 2 ≈ 87.34, where n is within ±126 and one normal power of two scales the
/// polynomial: [`exp`] bit for bit, without its clamp and its split scale. Outside that range
/// the value is garbage (NaN stays NaN), so callers bound x first or discard the result.
#[inline(always)]
pub fn exp_normal_range<const FMA: bool>(x: f32) -> f32 {
    let (n, r) = reduce_unclamped::<FMA>(x);
    (expm1_reduced::<FMA>(r) + 1.0) * pow2_normal(n)
}

/// At or above this, e^x is at least 2⁻¹²⁶ (n ≥ −126): one normal power of two scales it.
const EXP_NORMAL_LOWEST: f32 = -87.0;

/// e^-|x|, the one exponential the logistic-based functions need; it never overflows.
///
/// Equal to [`exp`] of −|x| for |x| ≤ 87, and 0 beyond, where exp is below 2⁻¹²⁵: every caller
/// multiplies it by at most |x|·(1 + e) and reports values below 2⁻⁶⁴ as 0 (the activations'
/// flush of negligible values), so only exp's clamp and second power of two are saved, a
/// quarter of its instructions.
#[inline(always)]
pub fn exp_neg_abs<const FMA: bool>(x: f32) -> f32 {
    let x = -x.abs();
    // Below the bound the value is garbage, which the select discards (a NaN x fails the
    // comparison and stays NaN).
    let e = exp_normal_range::<FMA>(x);
    if x < EXP_NORMAL_LOWEST {
        0.0
    } else {
        e
    }
}

/// eˣ − 1 for x ≤ 0, the side elu and tanh need: [`expm1`] bit for bit, with the same saving
/// as [`exp_neg_abs`] (below −87 it is −1, as expm1 rounds to there). For x > 0 the value is
/// garbage, which the callers discard.
#[inline(always)]
pub fn expm1_nonpositive<const FMA: bool>(x: f32) -> f32 {
    let (n, r) = reduce_unclamped::<FMA>(x);
    let scale = pow2_normal(n);
    let m = madd::<FMA>(expm1_reduced::<FMA>(r), scale, scale - 1.0);
    if x < EXP_NORMAL_LOWEST {
        -1.0
    } else {
        m
    }
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

/// σ(x) and σ'(x) together from e = e^-|x|, on one division: with q = 1 / (1 + e),
/// σ = q or e·q and σ' = e·q². (A division costs several multiplications' time and is not
/// pipelined; gelu's and swish's derivatives need both.)
#[inline(always)]
pub fn sigmoid_pair_from(x: f32, e: f32) -> (f32, f32) {
    let q = 1.0 / (1.0 + e);
    let eq = e * q;
    let s = if x >= 0.0 { q } else { eq };
    // NaN fails the comparison above; keep it.
    let s = if x.is_nan() { x } else { s };
    (s, eq * q)
}

/// 2·atanh(s) = ln((1 + s) / (1 − s)) for |s| ≤ 1/3, relative to its value as s → 0:
/// 2s·(1 + w/3 + w²/5 + … + w⁶/13) with w = s², the Taylor series of atanh cut where its next
/// term, w⁷/15 ≤ 9⁻⁷/15 ≈ 1.4e-8, is under a quarter of an f32 ulp.
#[inline(always)]
fn two_atanh<const FMA: bool>(s: f32) -> f32 {
    let w = s * s;
    let mut q = 1.0f32 / 13.0;
    for c in [1.0f32 / 11.0, 1.0 / 9.0, 1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0] {
        q = madd::<FMA>(q, w, c);
    }
    let two_s = 2.0 * s;
    madd::<FMA>(two_s * w, q, two_s)
}

/// ln(1 + eˣ) − ln 2 = ln((1 + eˣ) / 2) for x ≤ 0 (relu-softplus's negative side), as
/// 2·atanh(m / (m + 4)) with m = eˣ − 1 in (−1, 0]: ln u = 2·atanh((u − 1) / (u + 1)) for
/// u = (1 + eˣ) / 2 = (m + 2) / 2, and (u − 1) / (u + 1) = m / (m + 4) lies in (−1/3, 0].
///
/// Why not softplus − ln 2: one exponential and a short odd series instead of an exponential
/// and a logarithm (the forward pass is bound by its arithmetic: its AVX-512 loop went from 55
/// to 38 vector instructions per 16 values), and no cancellation where the value tends to x/2 as x → 0⁻. For x > 0
/// the value is garbage, which the caller discards; x is taken as 0 there so that no
/// intermediate is subnormal.
#[inline(always)]
pub fn softplus_minus_ln2_nonpositive<const FMA: bool>(x: f32) -> f32 {
    // NaN fails the comparison and stays NaN.
    let x = if x > 0.0 { 0.0 } else { x };
    let m = expm1_nonpositive::<FMA>(x);
    two_atanh::<FMA>(m / (m + 4.0))
}

/// ln(1 + eˣ) = max(x, 0) + ln(1 + e^-|x|).
#[inline(always)]
pub fn softplus_from<const FMA: bool>(x: f32, e: f32) -> f32 {
    let positive = if x > 0.0 { x } else { 0.0 };
    positive + log1p_unit::<FMA>(e)
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

    /// The building blocks alone, against f64 libm, over every 2⁻¹² step of their ranges, with
    /// and without fused multiply-adds.
    #[test]
    fn exp_expm1_and_log1p_are_within_a_few_ulp() {
        within_a_few_ulp::<false>();
        within_a_few_ulp::<true>();
    }

    fn within_a_few_ulp<const FMA: bool>() {
        let (mut worst_exp, mut worst_expm1, mut worst_log1p) = (0f64, 0f64, 0f64);
        for i in -(88 << 12)..=(88 << 12) {
            let x = i as f32 / 4096.0;
            worst_exp = worst_exp.max(relative_error(exp::<FMA>(x), (x as f64).exp()));
            worst_expm1 = worst_expm1.max(relative_error(expm1::<FMA>(x), (x as f64).exp_m1()));
        }
        for i in 0..=(1 << 12) {
            let u = i as f32 / 4096.0;
            worst_log1p = worst_log1p.max(relative_error(log1p_unit::<FMA>(u), (u as f64).ln_1p()));
        }
        // Tiny arguments: ln(1 + u) ≈ u, eˣ − 1 ≈ x.
        for u in [1e-30f32, 1e-20, 1e-10, 1e-7, 3e-5] {
            worst_log1p = worst_log1p.max(relative_error(log1p_unit::<FMA>(u), (u as f64).ln_1p()));
            for x in [u, -u] {
                worst_expm1 = worst_expm1.max(relative_error(expm1::<FMA>(x), (x as f64).exp_m1()));
            }
        }
        eprintln!(
            "FMA {FMA}: worst relative error: exp {worst_exp:e}, expm1 {worst_expm1:e}, log1p {worst_log1p:e}"
        );
        // 2⁻²³ ≈ 1.2e-7 is one ulp at the bottom of a binade.
        assert!(worst_exp < 2.5e-7, "exp {worst_exp:e}");
        assert!(worst_expm1 < 2.5e-7, "expm1 {worst_expm1:e}");
        assert!(worst_log1p < 2.5e-7, "log1p {worst_log1p:e}");
    }

    /// 2·atanh over its range and relu-softplus's negative side against f64 libm, with and
    /// without fused multiply-adds: the latter relative to its value even as it tends to x/2.
    #[test]
    fn two_atanh_and_the_shifted_softplus_are_within_a_few_ulp() {
        atanh_within_a_few_ulp::<false>();
        atanh_within_a_few_ulp::<true>();
    }

    fn atanh_within_a_few_ulp<const FMA: bool>() {
        let (mut worst_atanh, mut worst_softplus) = (0f64, 0f64);
        for i in -(1 << 16)..=(1 << 16) {
            let s = i as f32 / (3 << 16) as f32;
            let want = 2.0 * (s as f64).atanh();
            worst_atanh = worst_atanh.max(relative_error(two_atanh::<FMA>(s), want));
        }
        let shifted = |x: f64| x.exp().ln_1p() - std::f64::consts::LN_2;
        let tiny = [-1e-30f32, -1e-20, -1e-10, -1e-7, -3e-5];
        for x in (0..=(100 << 12)).map(|i| -(i as f32) / 4096.0).chain(tiny) {
            // f64's ln_1p(eˣ) − ln 2 cancels too as x → 0⁻; its series is x/2 + x²/8 there.
            let want = if x > -1e-4 {
                let x = x as f64;
                x / 2.0 + x * x / 8.0
            } else {
                shifted(x as f64)
            };
            let got = softplus_minus_ln2_nonpositive::<FMA>(x);
            worst_softplus = worst_softplus.max(relative_error(got, want));
        }
        eprintln!("FMA {FMA}: worst relative error: 2·atanh {worst_atanh:e}, softplus − ln 2 {worst_softplus:e}");
        assert!(worst_atanh < 2.5e-7, "2·atanh {worst_atanh:e}");
        assert!(worst_softplus < 5e-7, "softplus − ln 2 {worst_softplus:e}");
        let at = |x: f32| softplus_minus_ln2_nonpositive::<FMA>(x);
        for x in [-88.0f32, -1e30, f32::MIN, f32::NEG_INFINITY] {
            assert_eq!(at(x), -std::f32::consts::LN_2, "FMA {FMA}, {x}");
        }
        assert_eq!(at(-0.0), 0.0);
        assert!(at(f32::NAN).is_nan());
    }

    /// Below 2⁻²⁴, ln(1 + u) is u itself, down to the least subnormal; at and above, the
    /// series (checked against libm in `exp_expm1_and_log1p_are_within_a_few_ulp`).
    #[test]
    fn log1p_of_a_tiny_u_is_u() {
        tiny_u_is_u::<false>();
        tiny_u_is_u::<true>();
    }

    fn tiny_u_is_u<const FMA: bool>() {
        let mut u = LOG1P_IS_U;
        while u > 0.0 {
            u = f32::from_bits(u.to_bits() - 1);
            assert_eq!(
                log1p_unit::<FMA>(u).to_bits(),
                u.to_bits(),
                "FMA {FMA}, {u:e}"
            );
            u *= 0.9;
        }
        let at = LOG1P_IS_U as f64;
        assert!((log1p_unit::<FMA>(LOG1P_IS_U) as f64 / at.ln_1p() - 1.0).abs() < 1.2e-7);
    }

    /// exp_neg_abs is exp(−|x|) bit for bit down to −87 and 0 below; NaN stays NaN.
    #[test]
    fn exp_neg_abs_is_exp_down_to_its_bound_and_zero_below() {
        neg_abs_is_exp::<false>();
        neg_abs_is_exp::<true>();
    }

    fn neg_abs_is_exp<const FMA: bool>() {
        let (e, reference) = (exp_neg_abs::<FMA>, exp::<FMA>);
        for i in 0..=(87 << 12) {
            let x = i as f32 / 4096.0;
            assert_eq!(e(x).to_bits(), reference(-x).to_bits(), "FMA {FMA}, {x}");
            assert_eq!(e(-x).to_bits(), reference(-x).to_bits(), "FMA {FMA}, {x}");
        }
        for x in [87.001f32, 90.0, 104.0, 1e30, f32::MAX, f32::INFINITY] {
            assert_eq!(e(x), 0.0, "FMA {FMA}, {x}");
            assert_eq!(e(-x), 0.0, "FMA {FMA}, {x}");
        }
        assert!(e(f32::NAN).is_nan());
    }

    /// exp_normal_range is exp bit for bit over its range, to both ends.
    #[test]
    fn exp_normal_range_is_exp() {
        normal_range_is_exp::<false>();
        normal_range_is_exp::<true>();
    }

    fn normal_range_is_exp<const FMA: bool>() {
        let bound = 126.0 * std::f32::consts::LN_2;
        let ends = [bound, -bound, 87.33, -87.33];
        for x in (-(87 << 12)..=(87 << 12))
            .map(|i| i as f32 / 4096.0)
            .chain(ends)
        {
            let (got, want) = (exp_normal_range::<FMA>(x), exp::<FMA>(x));
            assert_eq!(got.to_bits(), want.to_bits(), "FMA {FMA}, {x}");
        }
        assert!(exp_normal_range::<FMA>(f32::NAN).is_nan());
    }

    /// expm1_nonpositive is expm1 bit for bit over every 2⁻¹² step of [−110, 0] and beyond.
    #[test]
    fn expm1_nonpositive_is_expm1() {
        nonpositive_is_expm1::<false>();
        nonpositive_is_expm1::<true>();
    }

    fn nonpositive_is_expm1<const FMA: bool>() {
        let far = [-1e30f32, f32::MIN, f32::NEG_INFINITY, -0.0];
        for x in (0..=(110 << 12)).map(|i| -(i as f32) / 4096.0).chain(far) {
            let (got, want) = (expm1_nonpositive::<FMA>(x), expm1::<FMA>(x));
            assert_eq!(got.to_bits(), want.to_bits(), "FMA {FMA}, {x}");
        }
        assert!(expm1_nonpositive::<FMA>(f32::NAN).is_nan());
    }

    #[test]
    fn exp_reaches_subnormals_zero_and_the_limits() {
        reaches_subnormals_zero_and_the_limits::<false>();
        reaches_subnormals_zero_and_the_limits::<true>();
    }

    fn reaches_subnormals_zero_and_the_limits<const FMA: bool>() {
        // Subnormal results are within a unit of their last place (2⁻¹⁴⁹).
        for x in [-90.0f32, -100.0, -103.0] {
            let error = (exp::<FMA>(x) as f64 - (x as f64).exp()).abs();
            assert!(
                error <= 2f64.powi(-149),
                "e^{x}: {} off by {error:e}",
                exp::<FMA>(x)
            );
        }
        assert_eq!(exp::<FMA>(-105.0), 0.0);
        assert_eq!(exp::<FMA>(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp::<FMA>(-1e30), 0.0);
        assert_eq!(expm1::<FMA>(f32::NEG_INFINITY), -1.0);
        assert_eq!(expm1::<FMA>(0.0), 0.0);
        assert!(exp::<FMA>(f32::NAN).is_nan());
        assert!(expm1::<FMA>(f32::NAN).is_nan());
        assert!(log1p_unit::<FMA>(f32::NAN).is_nan());
        assert_eq!(log1p_unit::<FMA>(0.0), 0.0);
        assert!((exp::<FMA>(88.0) as f64 / 88f64.exp() - 1.0).abs() < 2.5e-7);
    }
}
