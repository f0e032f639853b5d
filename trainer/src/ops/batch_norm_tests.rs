//! Tests of batch normalisation: forward against direct loops and a hand-worked batch, running
//! statistics, and gradients against finite differences in both modes.

use super::*;
use crate::ops::testing::{assert_gradient_matches, assert_param_gradient_matches, pseudo_random};
use crate::ops::{tensor_values, Tape};
use dfdx::prelude::*;

fn params(dev: &Cpu, channels: usize, seed: u64) -> (Param, Param) {
    // Scales away from 0 (so the input's gradient is not trivially small), shifts in [-1, 1).
    let gamma = pseudo_random(channels, seed)
        .iter()
        .map(|v| 1.0 + 0.5 * v)
        .collect();
    (
        Param::vector(dev, "bn.gamma".into(), gamma),
        Param::vector(dev, "bn.beta".into(), pseudo_random(channels, seed + 1)),
    )
}

/// The op without a tape.
fn run_eval(
    dev: &Cpu,
    x: &[f32],
    shape: [usize; 3],
    gamma: &Param,
    beta: &Param,
    stats: NormStats,
) -> (Vec<f32>, Option<BatchStats>) {
    let len: usize = shape.iter().product();
    let a = Activations::new(dev.tensor_from_vec(x.to_vec(), (x.len() / len, len)), shape);
    let (out, stats) = batch_norm(a, gamma, beta, stats);
    assert_eq!(out.sample_shape, shape);
    (tensor_values(out.tensor()), stats)
}

/// Per channel, by direct loops in f64: mean, biased variance, unbiased variance.
fn hand_moments(x: &[f32], shape: [usize; 3]) -> Vec<(f64, f64, f64)> {
    let [c_n, h, w] = shape;
    let batch = x.len() / (c_n * h * w);
    (0..c_n)
        .map(|c| {
            let mut values = Vec::new();
            for n in 0..batch {
                for y in 0..h {
                    for xx in 0..w {
                        values.push(x[((n * c_n + c) * h + y) * w + xx] as f64);
                    }
                }
            }
            let count = values.len() as f64;
            let mean = values.iter().sum::<f64>() / count;
            let sq: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
            (mean, sq / count, sq / (count - 1.0))
        })
        .collect()
}

/// `γ·(x − mean)/√(var + eps) + β` by direct loops, with per-channel (mean, var).
fn hand_normalise(
    x: &[f32],
    shape: [usize; 3],
    mean_var: &[(f64, f64)],
    gamma: &[f32],
    beta: &[f32],
) -> Vec<f64> {
    let [c_n, h, w] = shape;
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = (i / (h * w)) % c_n;
            let (mean, var) = mean_var[c];
            gamma[c] as f64 * (v as f64 - mean) / (var + BN_EPS as f64).sqrt() + beta[c] as f64
        })
        .collect()
}

fn assert_close(label: &str, ours: &[f32], expected: &[f64], tolerance: f64) {
    assert_eq!(ours.len(), expected.len(), "{label}: length");
    for (i, (a, e)) in ours.iter().zip(expected).enumerate() {
        assert!(
            (*a as f64 - e).abs() <= tolerance * (1.0 + e.abs()),
            "{label}[{i}]: {a} vs {e}"
        );
    }
}

#[test]
fn batch_mode_forward_matches_direct_loops() {
    let dev = Cpu::default();
    // Convolutional (several positions per channel) and dense ([units, 1, 1]) shapes.
    for (i, (shape, batch)) in [([3, 4, 5], 4), ([2, 3, 3], 1), ([5, 1, 1], 7)]
        .into_iter()
        .enumerate()
    {
        let (gamma, beta) = params(&dev, shape[0], 10 + i as u64);
        let len = batch * shape.iter().product::<usize>();
        // An offset, so the mean is not ~0.
        let x: Vec<f32> = pseudo_random(len, i as u64)
            .iter()
            .map(|v| 2.0 * v + 0.7)
            .collect();
        let (y, stats) = run_eval(&dev, &x, shape, &gamma, &beta, NormStats::Batch);
        let moments = hand_moments(&x, shape);
        let mean_var: Vec<_> = moments.iter().map(|&(m, v, _)| (m, v)).collect();
        let expected = hand_normalise(&x, shape, &mean_var, &gamma.value, &beta.value);
        assert_close(&format!("{shape:?} y"), &y, &expected, 1e-5);
        let stats = stats.expect("batch mode returns its statistics");
        let means: Vec<f64> = moments.iter().map(|m| m.0).collect();
        let unbiased: Vec<f64> = moments.iter().map(|m| m.2).collect();
        assert_close(&format!("{shape:?} mean"), &stats.mean, &means, 1e-6);
        assert_close(
            &format!("{shape:?} var"),
            &stats.var_unbiased,
            &unbiased,
            1e-6,
        );
    }
}

/// A case small enough to write out: one channel holding 1, 2, 3, 4 (over batch 2 and two
/// positions) has mean 2.5, biased variance 1.25 and unbiased variance 5/3, so with γ = 2,
/// β = 0.5 the outputs are 2·(x − 2.5)/√(1.25 + 1e-5) + 0.5. PyTorch's `BatchNorm2d(1)` in
/// training mode gives the same by its documented definition (torch was not available to
/// run it here); its running statistics after that step, from mean 0 and variance 1, are
/// 0.25 and 0.9 + 0.1·5/3.
#[test]
fn known_values_of_a_small_batch() {
    let dev = Cpu::default();
    let gamma = Param::vector(&dev, "bn.gamma".into(), vec![2.0]);
    let beta = Param::vector(&dev, "bn.beta".into(), vec![0.5]);
    let (y, stats) = run_eval(
        &dev,
        &[1.0, 2.0, 3.0, 4.0],
        [1, 1, 2],
        &gamma,
        &beta,
        NormStats::Batch,
    );
    let s = (1.25f64 + 1e-5).sqrt();
    let expected: Vec<f64> = [-1.5, -0.5, 0.5, 1.5]
        .iter()
        .map(|d| 2.0 * d / s + 0.5)
        .collect();
    assert_close("y", &y, &expected, 1e-6);
    let stats = stats.unwrap();
    assert_eq!(stats.mean, vec![2.5]);
    assert!((stats.var_unbiased[0] - 5.0 / 3.0).abs() < 1e-6);
    let (mut mean, mut var) = (vec![0.0], vec![1.0]);
    update_running(&mut mean, &mut var, &stats);
    assert!((mean[0] - 0.25).abs() < 1e-7);
    assert!((var[0] - (0.9 + 0.1 * 5.0 / 3.0)).abs() < 1e-6);
}

#[test]
fn running_mode_normalises_with_the_given_statistics() {
    let dev = Cpu::default();
    for (shape, batch) in [([3, 2, 3], 2), ([4, 1, 1], 3)] {
        let (gamma, beta) = params(&dev, shape[0], 3);
        let x = pseudo_random(batch * shape.iter().product::<usize>(), 4);
        let mean: Vec<f32> = pseudo_random(shape[0], 5).iter().map(|v| 0.3 * v).collect();
        let var: Vec<f32> = pseudo_random(shape[0], 6)
            .iter()
            .map(|v| 1.0 + 0.5 * v)
            .collect();
        let stats = NormStats::Running {
            mean: &mean,
            var: &var,
        };
        let (y, returned) = run_eval(&dev, &x, shape, &gamma, &beta, stats);
        assert!(
            returned.is_none(),
            "running mode reports no batch statistics"
        );
        let mean_var: Vec<_> = mean
            .iter()
            .zip(&var)
            .map(|(m, v)| (*m as f64, *v as f64))
            .collect();
        let expected = hand_normalise(&x, shape, &mean_var, &gamma.value, &beta.value);
        assert_close(&format!("{shape:?}"), &y, &expected, 1e-5);
    }
}

/// One value per channel: zero variance, the output is β and the input gets no gradient,
/// all finite.
#[test]
fn a_single_value_per_channel_gives_beta() {
    let dev = Cpu::default();
    let (gamma, beta) = params(&dev, 3, 7);
    let x = vec![0.4, -1.3, 2.0];
    let (y, stats) = run_eval(&dev, &x, [3, 1, 1], &gamma, &beta, NormStats::Batch);
    assert_eq!(y, beta.value);
    let stats = stats.unwrap();
    assert_eq!(stats.mean, x);
    assert_eq!(stats.var_unbiased, vec![0.0; 3]);

    let x_tensor = dev.tensor_from_vec(x, (1, 3));
    let a = Activations::new(x_tensor.retaped::<Tape>(), [3, 1, 1]);
    let (out, _) = batch_norm(a, &gamma, &beta, NormStats::Batch);
    let probe = dev.tensor_from_vec(vec![1.0, -2.0, 0.5], (1, 3));
    let mut grads = (out.into_tensor() * probe).sum().backward();
    assert_eq!(grads.get(&x_tensor).as_vec(), vec![0.0; 3]);
    assert_eq!(gamma.take_grad(&mut grads).unwrap(), vec![0.0; 3]);
    assert_eq!(beta.take_grad(&mut grads).unwrap(), vec![1.0, -2.0, 0.5]);
}

/// Gradients through the tape of `sum(out ⊙ probe)` against central differences, for the
/// input, γ and β, with batch or running statistics.
fn check_gradients(shape: [usize; 3], batch: usize, running: bool) {
    let dev = Cpu::default();
    let (gamma, beta) = params(&dev, shape[0], 20);
    let len = shape.iter().product::<usize>();
    let x = pseudo_random(batch * len, 21);
    let probe = pseudo_random(batch * len, 22);
    let mean: Vec<f32> = pseudo_random(shape[0], 23)
        .iter()
        .map(|v| 0.3 * v)
        .collect();
    let var: Vec<f32> = pseudo_random(shape[0], 24)
        .iter()
        .map(|v| 0.8 + 0.5 * v)
        .collect();
    let stats = || {
        if running {
            NormStats::Running {
                mean: &mean,
                var: &var,
            }
        } else {
            NormStats::Batch
        }
    };

    let x_tensor = dev.tensor_from_vec(x.clone(), (batch, len));
    let a = Activations::new(x_tensor.retaped::<Tape>(), shape);
    let (out, _) = batch_norm(a, &gamma, &beta, stats());
    let probe_t = dev.tensor_from_vec(probe.clone(), (batch, len));
    let mut grads = (out.into_tensor() * probe_t).sum().backward();
    let grad_x = grads.get(&x_tensor).as_vec();
    let grad_gamma = gamma.take_grad(&mut grads).unwrap();
    let grad_beta = beta.take_grad(&mut grads).unwrap();

    let objective = |x: &[f32], g: &Param, b: &Param| {
        run_eval(&dev, x, shape, g, b, stats())
            .0
            .iter()
            .zip(&probe)
            .map(|(o, p)| *o as f64 * *p as f64)
            .sum::<f64>()
    };
    let label = format!("{shape:?} batch {batch} running {running}");
    assert_gradient_matches(
        &format!("{label} dx"),
        &x,
        &grad_x,
        &|xp| objective(xp, &gamma, &beta),
        1e-2,
        2e-3,
    );
    assert_param_gradient_matches(
        &gamma,
        &grad_gamma,
        &|g| objective(&x, g, &beta),
        1e-2,
        1e-3,
    );
    assert_param_gradient_matches(&beta, &grad_beta, &|b| objective(&x, &gamma, b), 1e-2, 1e-3);
}

#[test]
fn training_gradients_match_finite_differences() {
    check_gradients([2, 3, 3], 3, false);
    check_gradients([3, 2, 2], 1, false);
    // The 1-d case.
    check_gradients([4, 1, 1], 6, false);
}

#[test]
fn running_gradients_match_finite_differences() {
    check_gradients([2, 3, 3], 2, true);
    check_gradients([4, 1, 1], 3, true);
}

/// Batches larger than one rayon task (and not a multiple of it) take the same path as the
/// small ones the tests above check by hand.
#[test]
fn a_batch_spanning_several_tasks_matches_direct_loops() {
    let dev = Cpu::default();
    let shape = [3, 7, 9];
    let batch = 2 * BN_TASK_ELEMENTS / (3 * 7 * 9) + 5;
    let (gamma, beta) = params(&dev, 3, 30);
    let x = pseudo_random(batch * 3 * 7 * 9, 31);
    let (y, _) = run_eval(&dev, &x, shape, &gamma, &beta, NormStats::Batch);
    let mean_var: Vec<_> = hand_moments(&x, shape)
        .iter()
        .map(|&(m, v, _)| (m, v))
        .collect();
    assert_close(
        "y",
        &y,
        &hand_normalise(&x, shape, &mean_var, &gamma.value, &beta.value),
        1e-5,
    );
}

/// The statistics are summed in one pass about a value of each channel. A channel at 10⁴ whose
/// values spread by about 10⁻² (variance ≈ 3·10⁻⁵, nearly 10⁻¹³ of the mean's square) would lose
/// about three of its digits to cancellation in Σx² − n·mean² even in f64; about the shift it
/// loses none, so the variance matches the direct two-pass sum to 10⁻⁶ relative.
#[test]
fn a_mean_far_from_zero_keeps_the_variance_exact() {
    let dev = Cpu::default();
    let (shape, batch) = ([2, 16, 16], 9);
    let (gamma, beta) = params(&dev, 2, 40);
    let x: Vec<f32> = pseudo_random(batch * 2 * 16 * 16, 41)
        .iter()
        .enumerate()
        .map(|(i, v)| {
            if (i / 256) % 2 == 0 {
                1e4 + 1e-2 * v
            } else {
                -3.0 + v
            }
        })
        .collect();
    let (_, stats) = run_eval(&dev, &x, shape, &gamma, &beta, NormStats::Batch);
    let stats = stats.expect("batch mode returns its statistics");
    for (c, &(mean, _, unbiased)) in hand_moments(&x, shape).iter().enumerate() {
        let relative = (stats.var_unbiased[c] as f64 - unbiased).abs() / unbiased;
        assert!(
            relative < 1e-6,
            "channel {c}: variance {} against {unbiased} ({relative:e} relative)",
            stats.var_unbiased[c]
        );
        assert!((stats.mean[c] as f64 - mean).abs() <= 1e-7 * mean.abs().max(1.0));
    }
    assert!(
        stats.var_unbiased[0] < 1e-4,
        "the narrow channel stays narrow"
    );
}

#[test]
fn update_running_blends_with_momentum() {
    let batch = BatchStats {
        mean: vec![1.0, -2.0],
        var_unbiased: vec![4.0, 0.5],
    };
    let (mut mean, mut var) = (vec![0.0, 1.0], vec![1.0, 2.0]);
    update_running(&mut mean, &mut var, &batch);
    let expect = |r: f64, b: f64| (1.0 - BN_MOMENTUM as f64) * r + BN_MOMENTUM as f64 * b;
    let want_mean = [expect(0.0, 1.0), expect(1.0, -2.0)];
    let want_var = [expect(1.0, 4.0), expect(2.0, 0.5)];
    assert_close("mean", &mean, &want_mean, 1e-7);
    assert_close("var", &var, &want_var, 1e-7);
    // 0.9·0 + 0.1·1, 0.9·1 − 0.1·2, 0.9·1 + 0.1·4, 0.9·2 + 0.1·0.5.
    assert!((mean[0] - 0.1).abs() < 1e-7 && (mean[1] - 0.7).abs() < 1e-7);
    assert!((var[0] - 1.3).abs() < 1e-6 && (var[1] - 1.85).abs() < 1e-6);
}

/// dL/dx written into a new gradient holds, bit for bit, what adding into zeros held (the
/// previous way): the same terms, and +0 where a term is −0.
#[test]
fn writing_a_new_input_gradient_equals_adding_into_zeros() {
    let layout = Layout {
        batch: 3,
        channels: 2,
        plane: 5,
    };
    let n = layout.batch * layout.sample_len();
    let x = pseudo_random(n, 40);
    let mut grad_out = pseudo_random(n, 41);
    grad_out[0] = 0.0;
    let (mean, inv_std) = (vec![0.1, -0.2], vec![1.5, 0.7]);
    // Channel 0: scale −1 and zero means, so its first element's term is −1·(0 − 0 − x̂·0) = −0.
    let (scale, mean_db, mean_dg) = (vec![-1.0, 0.8], vec![0.0, 0.3], vec![0.0, -0.4]);
    let norm = (&mean[..], &inv_std[..]);
    let coefficients = (&scale[..], &mean_db[..], &mean_dg[..]);
    let mut added = vec![0.0f32; n];
    input_gradient(&mut added, &grad_out, &x, layout, norm, coefficients);
    let mut new = vec![MaybeUninit::<f32>::uninit(); n];
    input_gradient(&mut new, &grad_out, &x, layout, norm, coefficients);
    for (i, (w, a)) in new.iter().zip(&added).enumerate() {
        // SAFETY: input_gradient wrote every element.
        let w = unsafe { w.assume_init() };
        assert_eq!(
            w.to_bits(),
            a.to_bits(),
            "element {i}: {w} written, {a} added"
        );
    }
    assert_eq!(added[0].to_bits(), 0.0f32.to_bits(), "−0 added to +0 is +0");
}
