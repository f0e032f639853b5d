//! The activations against their definitions: derivatives against central differences, the
//! vectorised slices against f64 on a dense grid, limits, NaN, the flushed tails, the site op's
//! backward and captured sums, and the names.

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
            assert!(
                !negligible(b.derivative(x)),
                "{} f'({x}) = {:e}",
                b.name(),
                b.derivative(x)
            );
        }
    }
    // gelu at −9.9: f′ = −2.6e-35 by the f64 formula (σ(v) + x·σ′(v)·v′, v = 2u); at −9
    // f′ = −2.5e-27. Both are reported as 0.
    assert_eq!(Builtin::Gelu.derivative(-9.9), 0.0);
    assert_eq!(Builtin::Gelu.derivative(-9.0), 0.0);
    // softplus(−40) = ln(1 + e⁻⁴⁰) = 4.25e-18 stays.
    assert!((Builtin::Softplus.value(-40.0) as f64 / 4.248_354_255_291_589e-18 - 1.0).abs() < 1e-6);
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
            Activations::new(z_tensor.retaped::<Tape>(), [features, 1, 1]),
            &f,
            &mut |zs, hs| {
                seen += 1;
                assert_eq!(zs, &z[..]);
                assert_eq!(hs[3], b.value(z[3]));
            },
            Some(request.clone()),
        );
        assert_eq!(seen, 1);
        let grads = (h.into_tensor() * dev.tensor_from_vec(probe.clone(), (n, features)))
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
    // large site spans several rayon tasks; a sample of 160 × 420 values spans two groups of
    // planes, the first ending inside it; the dense site has one position per neuron.
    let shapes = [
        (5usize, [3usize, 13, 1]),
        (4, [2, 3, 3]),
        (3, [40, 30, 20]),
        (2, [160, 21, 20]),
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
                Activations::new(z_tensor.retaped::<Tape>(), sample_shape),
                f,
                &mut |_, _| {},
                Some(request.clone()),
            );
            let _ = (h.into_tensor() * dev.tensor_from_vec(upstream.clone(), (n, features)))
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

/// Writing a new gradient gives, bit for bit, what adding into zeros gave, for every built-in
/// on the dense grid, including the sign of zero: dL/dh·f′ = −0 (relu at z < 0 with dL/dh < 0)
/// added to +0 is +0, so a written −0 would be a different record.
#[test]
fn writing_a_new_gradient_equals_adding_into_zeros() {
    let z = dense_grid();
    let grad_h: Vec<f32> = (0..z.len())
        .map(|i| match i % 4 {
            0 => -0.0,
            1 => -1.5 - (i % 7) as f32,
            2 => 0.75,
            _ => (i % 11) as f32 - 5.0,
        })
        .collect();
    for b in BUILTINS {
        let mut added = vec![0.0f32; z.len()];
        b.backward_slice(&z, &grad_h, &mut added);
        let mut new = vec![MaybeUninit::<f32>::uninit(); z.len()];
        let written = b.backward_slice_new(&z, &grad_h, &mut new);
        for (i, (w, a)) in written.iter().zip(&added).enumerate() {
            assert_eq!(
                w.to_bits(),
                a.to_bits(),
                "{} at z = {}, dL/dh = {}: {w} written, {a} added",
                b.name(),
                z[i],
                grad_h[i]
            );
        }
    }
    let mut new = [MaybeUninit::<f32>::uninit()];
    let written = Builtin::Relu.backward_slice_new(&[-1.0], &[-2.0], &mut new);
    assert_eq!(written[0].to_bits(), 0.0f32.to_bits(), "relu's −2·0 is +0");
}

/// A new output written in one pass holds, bit for bit, what the slice forward writes over an
/// existing one, for every built-in over the dense grid (tails, ±0, ±∞ and NaN included); and
/// the default for an activation the crate does not ship gives its `value`.
#[test]
fn writing_a_new_output_equals_the_slice_forward() {
    let z = dense_grid();
    for b in BUILTINS {
        let mut existing = vec![7.0f32; z.len()];
        b.forward_slice(&z, &mut existing);
        let mut new = vec![MaybeUninit::<f32>::uninit(); z.len()];
        let written = b.forward_slice_new(&z, &mut new);
        for (i, (w, e)) in written.iter().zip(&existing).enumerate() {
            assert_eq!(
                w.to_bits(),
                e.to_bits(),
                "{} at z = {}: {w} written new, {e} over an existing output",
                b.name(),
                z[i]
            );
        }
    }
    let mut new = [MaybeUninit::<f32>::uninit(); 3];
    assert_eq!(
        Cube.forward_slice_new(&[-2.0, 0.5, 3.0], &mut new),
        [-8.0, 0.125, 27.0]
    );
}

/// Writing dL/dz and summing it in one pass (fused for the piecewise built-ins) gives, bit for
/// bit, the gradient of adding into zeros and the sums in the records' order written out in the
/// test, for every built-in and a user activation, over the dense grid (±0, ±∞ and NaN
/// included) cut into slices with and without a tail.
#[test]
fn writing_and_summing_in_one_pass_equals_adding_into_zeros_then_summing() {
    use crate::site_capture::eight_lane_abs_sum;
    let mut z = dense_grid();
    z.extend([f32::INFINITY, f32::NEG_INFINITY, f32::NAN, -f32::NAN]);
    let grad_h: Vec<f32> = (0..z.len())
        .map(|i| match i % 5 {
            0 => -0.0,
            1 => -1.5 - (i % 7) as f32,
            2 => 0.75e-3,
            3 => 1e30 * ((i % 3) as f32 - 1.0),
            _ => (i % 11) as f32 - 5.0,
        })
        .collect();
    let functions: Vec<Activation> = BUILTINS
        .iter()
        .map(|b| Arc::new(*b) as Activation)
        .chain([Arc::new(Cube) as Activation])
        .collect();
    for f in &functions {
        for len in [1usize, 7, 8, 9, 13, 64, 121, 676] {
            // Whole slices of the grid, the specials at its end included.
            let n = z.len() / len * len;
            let (z, grad_h) = (&z[z.len() - n..], &grad_h[grad_h.len() - n..]);
            let mut added = vec![0.0f32; n];
            f.backward_slice(z, grad_h, &mut added);
            let mut new = vec![MaybeUninit::<f32>::uninit(); n];
            let mut sums = vec![SliceSums::default(); n / len];
            let written = f.backward_slice_new_with_sums(z, grad_h, &mut new, len, &mut sums);
            for (i, (w, a)) in written.iter().zip(&added).enumerate() {
                assert_eq!(
                    w.to_bits(),
                    a.to_bits(),
                    "{} at z = {}, dL/dh = {}: {w} written, {a} added",
                    f.name(),
                    z[i],
                    grad_h[i]
                );
            }
            for (s, got) in sums.iter().enumerate() {
                let at = s * len..(s + 1) * len;
                let context = format!("{}: slice {s} of length {len}", f.name());
                let active = z[at.clone()].iter().filter(|&&v| v > 0.0).count() as u32;
                let abs_h = eight_lane_abs_sum(&grad_h[at.clone()]);
                let abs_z = eight_lane_abs_sum(&added[at]);
                assert_eq!(got.active, active, "{context}");
                assert_eq!(got.abs_grad_h.to_bits(), abs_h.to_bits(), "{context}");
                assert_eq!(got.abs_grad_z.to_bits(), abs_z.to_bits(), "{context}");
            }
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
        Activations::new(z.retaped::<Tape>(), [2, 1, 1]),
        &f,
        &mut |_, _| {},
        Some(request.clone()),
    );
    let _ = h.into_tensor().sum().backward();
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
