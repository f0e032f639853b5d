//! Draws the initial weights and biases of one conv or fc layer under an [`InitScheme`] and a
//! [`BiasInit`]; nothing else.
//!
//! Every draw comes from the run's one `ChaCha8Rng`, layer after layer, so a seed fixes the whole
//! network. The default (he-uniform weights, zero biases) draws exactly what every run drew before
//! the schemes existed, so those runs reproduce bit for bit.

use nalgebra::DMatrix;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution, Normal, StandardNormal};

pub use crate::records::init::{BiasInit, InitScheme};

/// The gain of ReLU, √2, by which [`InitScheme::Orthogonal`] scales its matrix.
pub const RELU_GAIN: f64 = std::f64::consts::SQRT_2;

/// RAI's constant: the symmetric part of a unit's weights and bias is N(0, σ²) with
/// σ = `RAI_SIGMA`/√fan_in (Lu, Shin, Su & Karniadakis, see [`init_layer`]).
pub const RAI_SIGMA: f64 = 0.6007;

/// Weights row-major [out, fan_in] (conv: fan_in = in·k·k, fan_out = out·k·k) and biases [out].
///
/// The weights, by `scheme` (PyTorch's conventions: gain 1 for Xavier, no truncation):
/// - `he-uniform`: U(−b, b), b = √(6/fan_in) (He et al. 2015), drawn with the very expression of
///   the runs before this setting, so they reproduce bit for bit;
/// - `he-normal`: N(0, 2/fan_in);
/// - `xavier-uniform`: U(−b, b), b = √(6/(fan_in + fan_out)) (Glorot & Bengio 2010);
/// - `xavier-normal`: N(0, 2/(fan_in + fan_out));
/// - `lecun-normal`: N(0, 1/fan_in);
/// - `orthogonal` (Saxe et al. 2014), as PyTorch's `nn.init.orthogonal_`: a standard-normal
///   [out, fan_in] matrix A (read row-major from the generator), transposed when out < fan_in so
///   that it is tall; A = QR (nalgebra's Householder QR, thin Q); each column of Q multiplied by
///   the sign of R's diagonal entry (which makes Q Haar-distributed), transposed back, and scaled
///   by g = √2, ReLU's gain, whatever the activation (as He's schemes assume ReLU too). Hence
///   W·Wᵀ = g²·I when out ≤ fan_in and Wᵀ·W = g²·I when out > fan_in. Computed in f64, O(m·n²)
///   for an m×n matrix with m ≥ n;
/// - `pytorch`: PyTorch's default for `Conv2d` and `Linear`, `kaiming_uniform_` with a = √5:
///   gain √(2/(1 + a²)) = √(1/3), bound √3·gain/√fan_in, i.e. U(−1/√fan_in, 1/√fan_in);
/// - `rai`: randomized asymmetric initialisation, Algorithm 1 of L. Lu, Y. Shin, Y. Su and
///   G. E. Karniadakis, "Dying ReLU and Initialization: Theory and Numerical Examples",
///   Commun. Comput. Phys. 28(5):1671–1706 (2020), arXiv:1903.06733. Unit j's weights and bias
///   form one row V of length fan_in + 1, drawn N(0, σ²) with σ = 0.6007/√fan_in ([`RAI_SIGMA`]);
///   then one index k, uniform over the fan_in + 1 entries (the bias included), is replaced by a
///   draw from the asymmetric Beta(2, 1) (density 2x on [0, 1]). Weights = V[..fan_in],
///   bias = V[fan_in]. All normals are drawn first (row-major [out, fan_in + 1]), then k and the
///   Beta draw row by row, as the authors' reference code does. RAI draws its own biases:
///   `bias` is ignored (the configuration refuses any but the default with rai).
///
/// The biases, by `bias`, for every scheme but rai:
/// - `Zero`: all 0, drawing nothing (so the default draws what the runs before it drew);
/// - `Constant(c)`: all c, drawing nothing;
/// - `Pytorch`: U(−1/√fan_in, 1/√fan_in), PyTorch's default bias, drawn after the layer's weights.
pub fn init_layer(
    scheme: InitScheme,
    bias: BiasInit,
    rng: &mut ChaCha8Rng,
    out: usize,
    fan_in: usize,
    fan_out: usize,
) -> (Vec<f32>, Vec<f32>) {
    assert!(fan_in > 0, "a layer needs at least one input");
    let len = out * fan_in;
    let weights = match scheme {
        InitScheme::HeUniform => uniform(rng, len, (6.0 / fan_in as f64).sqrt()),
        InitScheme::HeNormal => normal(rng, len, (2.0 / fan_in as f64).sqrt()),
        InitScheme::XavierUniform => uniform(rng, len, (6.0 / (fan_in + fan_out) as f64).sqrt()),
        InitScheme::XavierNormal => normal(rng, len, (2.0 / (fan_in + fan_out) as f64).sqrt()),
        InitScheme::LecunNormal => normal(rng, len, (1.0 / fan_in as f64).sqrt()),
        InitScheme::Orthogonal => orthogonal(rng, out, fan_in, RELU_GAIN),
        InitScheme::Pytorch => uniform(rng, len, (1.0 / fan_in as f64).sqrt()),
        InitScheme::Rai => return rai(rng, out, fan_in),
    };
    let biases = match bias {
        BiasInit::Zero => vec![0.0; out],
        BiasInit::Constant(value) => vec![value; out],
        BiasInit::Pytorch => uniform(rng, out, (1.0 / fan_in as f64).sqrt()),
    };
    (weights, biases)
}

/// `len` draws of U(−bound, bound), the bound rounded to f32 first: the legacy he-uniform
/// expression, which every uniform scheme shares.
fn uniform(rng: &mut ChaCha8Rng, len: usize, bound: f64) -> Vec<f32> {
    let bound = bound as f32;
    (0..len).map(|_| rng.gen_range(-bound..bound)).collect()
}

/// `len` draws of N(0, std²).
fn normal(rng: &mut ChaCha8Rng, len: usize, std: f64) -> Vec<f32> {
    let normal = Normal::new(0.0, std).expect("a finite, positive standard deviation");
    (0..len).map(|_| normal.sample(rng) as f32).collect()
}

/// A `gain`-scaled random [out, fan_in] matrix with orthonormal rows or columns, row-major.
fn orthogonal(rng: &mut ChaCha8Rng, out: usize, fan_in: usize, gain: f64) -> Vec<f32> {
    if out == 0 {
        return Vec::new();
    }
    let draws: Vec<f64> = (0..out * fan_in)
        .map(|_| StandardNormal.sample(rng))
        .collect();
    let drawn = DMatrix::from_row_slice(out, fan_in, &draws);
    let wide = out < fan_in;
    let tall = if wide { drawn.transpose() } else { drawn };
    let qr = tall.qr();
    let mut q = qr.q(); // rows × cols, orthonormal columns
    let r = qr.r();
    for (j, mut column) in q.column_iter_mut().enumerate() {
        if r[(j, j)] < 0.0 {
            column.neg_mut();
        }
    }
    let w = if wide { q.transpose() } else { q };
    // nalgebra stores columns first; the layer wants rows first.
    w.transpose().iter().map(|&x| (gain * x) as f32).collect()
}

/// RAI's weights and biases; see [`init_layer`].
fn rai(rng: &mut ChaCha8Rng, out: usize, fan_in: usize) -> (Vec<f32>, Vec<f32>) {
    let row = fan_in + 1;
    let mut v = normal(rng, out * row, RAI_SIGMA / (fan_in as f64).sqrt());
    let beta = Beta::new(2.0, 1.0).expect("valid Beta parameters");
    for unit in v.chunks_exact_mut(row) {
        let k = rng.gen_range(0..row);
        unit[k] = Distribution::<f64>::sample(&beta, rng) as f32;
    }
    let mut weights = Vec::with_capacity(out * fan_in);
    let mut biases = Vec::with_capacity(out);
    for unit in v.chunks_exact(row) {
        weights.extend_from_slice(&unit[..fan_in]);
        biases.push(unit[fan_in]);
    }
    (weights, biases)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use statrs::distribution::{Beta as BetaDist, ContinuousCDF, Normal as NormalDist};

    const OUT: usize = 256;
    const FAN_IN: usize = 576; // e.g. 64 channels × 3×3
    const FAN_OUT: usize = 2304; // 256 channels × 3×3

    fn rng(seed: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(seed)
    }

    /// Sample mean, variance (divisor n) and fourth central moment.
    fn moments(xs: &[f32]) -> (f64, f64, f64) {
        let n = xs.len() as f64;
        let mean = xs.iter().map(|&x| x as f64).sum::<f64>() / n;
        let central = |p: i32| xs.iter().map(|&x| (x as f64 - mean).powi(p)).sum::<f64>() / n;
        (mean, central(2), central(4))
    }

    /// Asserts mean and variance within 4 standard errors of the targets; the errors come from
    /// the target variance (mean) and the sample's fourth moment (variance).
    fn assert_moments(what: &str, xs: &[f32], mean: f64, var: f64) {
        let n = xs.len() as f64;
        let (m, v, m4) = moments(xs);
        let se_mean = (var / n).sqrt();
        let se_var = ((m4 - v * v) / n).sqrt();
        assert!(
            (m - mean).abs() < 4.0 * se_mean,
            "{what}: mean {m} vs {mean} (se {se_mean})"
        );
        assert!(
            (v - var).abs() < 4.0 * se_var,
            "{what}: variance {v} vs {var} (se {se_var})"
        );
    }

    /// Asserts the Kolmogorov–Smirnov statistic of `xs` against `cdf` is below the 1 % critical
    /// value 1.63/√n.
    fn assert_ks(what: &str, xs: &[f32], cdf: impl Fn(f64) -> f64) {
        let mut sorted: Vec<f64> = xs.iter().map(|&x| x as f64).collect();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len() as f64;
        let d = sorted
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let f = cdf(x);
                (f - i as f64 / n).max((i + 1) as f64 / n - f)
            })
            .fold(0.0, f64::max);
        let critical = 1.63 / n.sqrt();
        assert!(d < critical, "{what}: KS D = {d} ≥ {critical}");
    }

    fn uniform_cdf(bound: f64) -> impl Fn(f64) -> f64 {
        move |x| ((x + bound) / (2.0 * bound)).clamp(0.0, 1.0)
    }

    fn normal_cdf(std: f64) -> impl Fn(f64) -> f64 {
        let normal = NormalDist::new(0.0, std).unwrap();
        move |x| normal.cdf(x)
    }

    /// The schemes whose weights are i.i.d. uniform or normal: (scheme, is uniform, variance).
    fn iid_targets() -> [(InitScheme, bool, f64); 6] {
        let (fi, fo) = (FAN_IN as f64, FAN_OUT as f64);
        [
            (InitScheme::HeUniform, true, 2.0 / fi),
            (InitScheme::HeNormal, false, 2.0 / fi),
            (InitScheme::XavierUniform, true, 2.0 / (fi + fo)),
            (InitScheme::XavierNormal, false, 2.0 / (fi + fo)),
            (InitScheme::LecunNormal, false, 1.0 / fi),
            (InitScheme::Pytorch, true, 1.0 / (3.0 * fi)),
        ]
    }

    #[test]
    fn init_he_uniform_draws_exactly_the_legacy_expression() {
        for (seed, out, fan_in) in [(0, OUT, FAN_IN), (7, 6, 25), (12345, 10, 400)] {
            let mut legacy = rng(seed);
            let bound = (6.0 / fan_in as f64).sqrt() as f32;
            let expected: Vec<f32> = (0..out * fan_in)
                .map(|_| legacy.gen_range(-bound..bound))
                .collect();
            let mut fresh = rng(seed);
            let (w, b) = init_layer(
                InitScheme::HeUniform,
                BiasInit::Zero,
                &mut fresh,
                out,
                fan_in,
                3 * out,
            );
            let bits = |xs: &[f32]| xs.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&w), bits(&expected));
            assert_eq!(b, vec![0.0; out]);
            // Zero biases draw nothing: the next layer starts where it did before.
            assert_eq!(fresh.gen::<u64>(), legacy.gen::<u64>());
        }
    }

    #[test]
    fn init_iid_schemes_match_target_mean_and_variance() {
        for (scheme, _, var) in iid_targets() {
            let (w, _) = init_layer(scheme, BiasInit::Zero, &mut rng(1), OUT, FAN_IN, FAN_OUT);
            assert_eq!(w.len(), OUT * FAN_IN);
            assert_moments(scheme.name(), &w, 0.0, var);
        }
    }

    #[test]
    fn init_iid_schemes_pass_kolmogorov_smirnov_against_their_distribution() {
        for (scheme, is_uniform, var) in iid_targets() {
            let (w, _) = init_layer(scheme, BiasInit::Zero, &mut rng(2), OUT, FAN_IN, FAN_OUT);
            if is_uniform {
                // Var U(−b, b) = b²/3.
                assert_ks(scheme.name(), &w, uniform_cdf((3.0 * var).sqrt()));
            } else {
                assert_ks(scheme.name(), &w, normal_cdf(var.sqrt()));
            }
        }
    }

    #[test]
    fn init_ks_test_rejects_a_wrong_scale() {
        // The KS check above has the power to tell the schemes apart: he-normal weights are not
        // lecun-normal (variance 2/fan_in against 1/fan_in).
        let (w, _) = init_layer(
            InitScheme::HeNormal,
            BiasInit::Zero,
            &mut rng(2),
            OUT,
            FAN_IN,
            FAN_OUT,
        );
        let result = std::panic::catch_unwind(|| {
            assert_ks("he as lecun", &w, normal_cdf((1.0 / FAN_IN as f64).sqrt()))
        });
        assert!(result.is_err());
    }

    /// The f64 product W·Wᵀ (or Wᵀ·W) of a row-major [out, fan_in] matrix.
    fn gram(w: &[f32], out: usize, fan_in: usize, rows: bool) -> Vec<Vec<f64>> {
        let at = |i: usize, j: usize| w[i * fan_in + j] as f64;
        let (n, inner) = if rows { (out, fan_in) } else { (fan_in, out) };
        let entry = |a: usize, b: usize| -> f64 {
            (0..inner)
                .map(|k| {
                    if rows {
                        at(a, k) * at(b, k)
                    } else {
                        at(k, a) * at(k, b)
                    }
                })
                .sum()
        };
        (0..n)
            .map(|a| (0..n).map(|b| entry(a, b)).collect())
            .collect()
    }

    #[test]
    fn init_orthogonal_is_gain_squared_identity() {
        let g2 = 2.0; // (√2)²
        for (out, fan_in, rows) in [
            (64, 144, true),
            (32, 32, true),
            (120, 50, false),
            (10, 1, false),
        ] {
            let (w, b) = init_layer(
                InitScheme::Orthogonal,
                BiasInit::Zero,
                &mut rng(3),
                out,
                fan_in,
                9 * out,
            );
            assert_eq!(w.len(), out * fan_in);
            assert_eq!(b, vec![0.0; out]);
            let product = gram(&w, out, fan_in, rows);
            for (a, row) in product.iter().enumerate() {
                for (c, &x) in row.iter().enumerate() {
                    let expected = if a == c { g2 } else { 0.0 };
                    assert!(
                        (x - expected).abs() < 1e-5,
                        "[{out}, {fan_in}] entry ({a}, {c}) = {x}"
                    );
                }
            }
        }
    }

    #[test]
    fn init_orthogonal_entries_have_the_marginal_of_a_random_unit_vector() {
        // out ≤ fan_in: each row is g·u with u uniform on the unit sphere of R^fan_in, whose
        // entries have (u + 1)/2 ~ Beta((n−1)/2, (n−1)/2) and E u² = 1/n.
        let (w, _) = init_layer(
            InitScheme::Orthogonal,
            BiasInit::Zero,
            &mut rng(4),
            OUT,
            FAN_IN,
            FAN_OUT,
        );
        let g = RELU_GAIN;
        assert_moments("orthogonal", &w, 0.0, g * g / FAN_IN as f64);
        let a = (FAN_IN as f64 - 1.0) / 2.0;
        let marginal = BetaDist::new(a, a).unwrap();
        assert_ks("orthogonal", &w, |x| {
            marginal.cdf(((x / g + 1.0) / 2.0).clamp(0.0, 1.0))
        });
        // out > fan_in: columns are unit vectors of R^out, entries of variance g²/out.
        let (w, _) = init_layer(
            InitScheme::Orthogonal,
            BiasInit::Zero,
            &mut rng(5),
            FAN_IN,
            OUT,
            9 * FAN_IN,
        );
        assert_moments("orthogonal tall", &w, 0.0, g * g / FAN_IN as f64);
    }

    #[test]
    fn init_pytorch_weights_and_biases_fill_their_bound() {
        let bound = 1.0 / (FAN_IN as f64).sqrt();
        let (w, b) = init_layer(
            InitScheme::Pytorch,
            BiasInit::Pytorch,
            &mut rng(6),
            OUT,
            FAN_IN,
            FAN_OUT,
        );
        let max_abs = |xs: &[f32]| xs.iter().map(|x| x.abs() as f64).fold(0.0, f64::max);
        let f32_bound = bound as f32 as f64;
        assert!(max_abs(&w) <= f32_bound && max_abs(&b) <= f32_bound);
        // P(max |w| < (1 − x)·bound) = (1 − x)^n: about e^−147 for the weights at x = 0.001,
        // 2e−6 for 256 biases at x = 0.05.
        assert!(max_abs(&w) > 0.999 * bound, "{}", max_abs(&w));
        assert!(max_abs(&b) > 0.95 * bound, "{}", max_abs(&b));
        assert_moments("pytorch bias", &b, 0.0, bound * bound / 3.0);
        assert_ks("pytorch bias", &b, uniform_cdf(bound));
    }

    #[test]
    fn init_biases_follow_their_rule_and_pytorch_draws_after_the_weights() {
        for scheme in InitScheme::ALL
            .into_iter()
            .filter(|s| *s != InitScheme::Rai)
        {
            let (w_zero, b_zero) = init_layer(scheme, BiasInit::Zero, &mut rng(8), 16, 75, 144);
            assert_eq!(b_zero, vec![0.0; 16]);
            let mut after = rng(8);
            let (w_const, b_const) =
                init_layer(scheme, BiasInit::Constant(0.01), &mut after, 16, 75, 144);
            assert_eq!(w_const, w_zero);
            assert_eq!(b_const, vec![0.01; 16]);
            // Constant biases draw nothing either: continuing the generator after the weights
            // gives the PyTorch biases.
            let bound = (1.0 / 75.0_f64).sqrt() as f32;
            let expected: Vec<f32> = (0..16).map(|_| after.gen_range(-bound..bound)).collect();
            let (w_torch, b_torch) =
                init_layer(scheme, BiasInit::Pytorch, &mut rng(8), 16, 75, 144);
            assert_eq!(w_torch, w_zero, "{scheme}: the weights come first");
            assert_eq!(b_torch, expected, "{scheme}");
        }
    }

    /// RAI draws for a layer with σ = 0.6007/16 ≈ 0.0375, so that an entry above 0.3 (8σ) is,
    /// but for a chance of about 1e−15 per entry, the Beta(2, 1) one.
    const RAI_OUT: usize = 8192;
    const RAI_FAN_IN: usize = 256;
    const THRESHOLD: f64 = 0.3;

    fn rai_rows() -> Vec<Vec<f32>> {
        let (w, b) = init_layer(
            InitScheme::Rai,
            BiasInit::Zero,
            &mut rng(9),
            RAI_OUT,
            RAI_FAN_IN,
            9 * RAI_OUT,
        );
        assert_eq!((w.len(), b.len()), (RAI_OUT * RAI_FAN_IN, RAI_OUT));
        w.chunks_exact(RAI_FAN_IN)
            .zip(&b)
            .map(|(weights, &bias)| weights.iter().copied().chain([bias]).collect())
            .collect()
    }

    #[test]
    fn init_rai_pooled_entries_follow_the_normal_beta_mixture() {
        // Each row of n + 1 entries holds n draws of N(0, σ²) and one of Beta(2, 1) (mean 2/3,
        // E x² = 1/2, CDF x² on [0, 1]), so a pooled entry has mean (2/3)/(n + 1),
        // E x² = (n·σ² + 1/2)/(n + 1) and CDF (n·Φ(x/σ) + F_beta(x))/(n + 1).
        let entries: Vec<f32> = rai_rows().concat();
        let n = RAI_FAN_IN as f64;
        let sigma = RAI_SIGMA / n.sqrt();
        let mean = (2.0 / 3.0) / (n + 1.0);
        let var = (n * sigma * sigma + 0.5) / (n + 1.0) - mean * mean;
        assert_moments("rai", &entries, mean, var);
        let normal = NormalDist::new(0.0, sigma).unwrap();
        assert_ks("rai", &entries, |x| {
            (n * normal.cdf(x) + x.clamp(0.0, 1.0).powi(2)) / (n + 1.0)
        });
    }

    #[test]
    fn init_rai_has_one_beta_entry_per_row_at_a_uniform_position() {
        let rows = rai_rows();
        let slots = RAI_FAN_IN + 1;
        let mut betas = Vec::new(); // the entries above the threshold
        let mut positions = Vec::new();
        let mut normals = Vec::new(); // the other entries of rows whose Beta entry was found
        for row in &rows {
            let above: Vec<usize> = (0..slots).filter(|&i| row[i] as f64 > THRESHOLD).collect();
            assert!(above.len() <= 1, "two Beta entries in one row: {above:?}");
            if let [k] = above[..] {
                betas.push(row[k]);
                positions.push(k as f64);
                normals.extend(
                    row.iter()
                        .enumerate()
                        .filter(|&(i, _)| i != k)
                        .map(|(_, &x)| x),
                );
            }
        }
        // A row shows its Beta entry when it exceeds t: P = 1 − t² (Beta(2, 1)'s CDF is x²).
        let p = 1.0 - THRESHOLD * THRESHOLD;
        let rows_n = RAI_OUT as f64;
        let found = betas.len() as f64;
        let se = (rows_n * p * (1.0 - p)).sqrt();
        assert!(
            (found - rows_n * p).abs() < 4.0 * se,
            "{found} rows show a Beta entry"
        );
        // Those entries are Beta(2, 1) given x > t: CDF (x² − t²)/(1 − t²).
        assert_ks("rai beta", &betas, |x| {
            ((x * x - THRESHOLD * THRESHOLD) / p).clamp(0.0, 1.0)
        });
        // The rest of those rows are N(0, σ²) with σ = 0.6007/√fan_in.
        let sigma = RAI_SIGMA / (RAI_FAN_IN as f64).sqrt();
        assert_moments("rai normals", &normals, 0.0, sigma * sigma);
        assert_ks("rai normals", &normals, normal_cdf(sigma));
        // The Beta entry's position is uniform over the fan_in + 1 slots, the bias included:
        // mean n/2 for slots 0..=n, and the bias slot holds it in 1/(n + 1) of the rows.
        let slots_f = slots as f64;
        let mean_position = positions.iter().sum::<f64>() / found;
        let se_position = ((slots_f * slots_f - 1.0) / 12.0 / found).sqrt();
        assert!(
            (mean_position - RAI_FAN_IN as f64 / 2.0).abs() < 4.0 * se_position,
            "mean position {mean_position}"
        );
        let at_bias = positions
            .iter()
            .filter(|&&k| k == RAI_FAN_IN as f64)
            .count() as f64;
        let expected = found / slots_f;
        let se_bias = (found * (1.0 / slots_f) * (1.0 - 1.0 / slots_f)).sqrt();
        assert!(
            (at_bias - expected).abs() < 4.0 * se_bias,
            "{at_bias} Beta biases, expected {expected} ± {se_bias}"
        );
    }

    #[test]
    fn init_rai_ignores_the_bias_rule() {
        let draw = |bias| init_layer(InitScheme::Rai, bias, &mut rng(10), 8, 27, 72);
        let reference = draw(BiasInit::Zero);
        assert_eq!(draw(BiasInit::Pytorch), reference);
        assert_eq!(draw(BiasInit::Constant(0.5)), reference);
        assert!(reference.1.iter().any(|&b| b != 0.0));
    }

    #[test]
    fn init_is_deterministic_per_seed_and_differs_across_seeds() {
        for scheme in InitScheme::ALL {
            let draw = |seed| init_layer(scheme, BiasInit::Pytorch, &mut rng(seed), 12, 50, 108);
            assert_eq!(draw(11), draw(11), "{scheme}");
            assert_ne!(draw(11), draw(12), "{scheme}");
        }
    }
}
