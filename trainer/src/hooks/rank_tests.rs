//! Tests of the rank measures against numpy reference values.
//!
//! Every expectation below was computed with numpy 2.4 by this function, on the matrix written
//! out in the test:
//!
//! ```python
//! def measures(phi):
//!     n = phi.shape[0]
//!     s = np.linalg.svd(phi, compute_uv=False)
//!     tot = s.sum()
//!     p = s / tot; p = p[p > 0]
//!     er = np.exp(-(p * np.log(p)).sum())                  # effective_rank
//!     sr = int(np.argmax(np.cumsum(s) >= 0.99 * tot) + 1)  # srank
//!     fr = int((s / np.sqrt(n) > 0.01).sum())              # feature_rank
//!     return s, er, sr, fr
//! ```

use super::*;

fn assert_measures(phi: &[f64], samples: usize, features: usize, want: (f64, u32, u32)) {
    let got = rank_measures(phi, samples, features);
    assert!(
        (got.effective_rank - want.0).abs() < 1e-12,
        "effective rank {} not {}",
        got.effective_rank,
        want.0
    );
    assert_eq!((got.srank, got.feature_rank), (want.1, want.2), "{got:?}");
}

/// Rank 2 of 3: the third column is the sum of the first two.
/// `A = np.array([[1.,2,3],[2,4,6],[1,0,1],[0,1,1]])`: σ = (8.539934920503983,
/// 1.0341719168284524, 5.6e-16), effective rank 1.4082537283850984, srank 2, feature rank 2.
const RANK_DEFICIENT: [f64; 12] = [1.0, 2.0, 3.0, 2.0, 4.0, 6.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0];

#[test]
fn a_rank_deficient_matrix_matches_numpy() {
    assert_measures(&RANK_DEFICIENT, 4, 3, (1.4082537283850984, 2, 2));
    let sigma = singular_values(&RANK_DEFICIENT, 4, 3).unwrap();
    let numpy = [8.539934920503983, 1.0341719168284524, 0.0];
    for (s, n) in sigma.iter().zip(numpy) {
        assert!((s - n).abs() < 1e-12, "{sigma:?}");
    }
}

/// Fewer samples than features, so the other Gram matrix: `A.T` (3 × 4) has A's singular
/// values; numpy: effective rank 1.4082537283850964, srank 2, feature rank 2 (σ/√3).
#[test]
fn a_wide_matrix_matches_numpy() {
    let transposed: Vec<f64> = (0..3)
        .flat_map(|c| (0..4).map(move |r| RANK_DEFICIENT[r * 3 + c]))
        .collect();
    assert_measures(&transposed, 3, 4, (1.4082537283850964, 2, 2));
}

/// The three measures disagree: σ = (10, 1, 0.05, 0.01) (a diagonal times the Householder
/// reflection I − ½·ones, exact in binary):
/// `D = np.diag([10,1,0.05,0.01]) @ (np.eye(4) - 0.5*np.ones((4,4)))`: rank 4, effective rank
/// 1.4037378296924294, srank 2 (10 + 1 ≥ 0.99 · 11.06), feature rank 3 (0.01/√4 < 0.01).
#[test]
fn srank_and_feature_rank_drop_small_directions_differently() {
    let phi = [
        5.0, -5.0, -5.0, -5.0, -0.5, 0.5, -0.5, -0.5, -0.025, -0.025, 0.025, -0.025, -0.005,
        -0.005, -0.005, 0.005,
    ];
    assert_measures(&phi, 4, 4, (1.4037378296924294, 2, 3));
}

/// A conv site: 3 samples × 2 channels × 4 positions; each channel's entry is its positions'
/// mean (`H.mean(axis=2)` of
/// `H = np.array([[[1,2,3,4],[0,0,1,1]],[[2,2,2,2],[1,1,1,1]],[[0,1,0,1],[4,0,0,0]]])`),
/// Φ = [[2.5, 0.5], [2, 1], [0.5, 1]]: σ = (3.45684477236749, 0.8945525248723857), effective
/// rank 1.6620286118242429, srank 2, feature rank 2. Through the hook, as the probe pass feeds it.
#[test]
fn a_conv_site_averages_positions_and_matches_numpy() {
    use crate::hooks::representation::LayerRecorder;
    use crate::hooks::{Hook, ParamView, SiteForward};
    use crate::model::SiteInfo;
    let h: Vec<f32> = [
        [[1, 2, 3, 4], [0, 0, 1, 1]],
        [[2, 2, 2, 2], [1, 1, 1, 1]],
        [[0, 1, 0, 1], [4, 0, 0, 0]],
    ]
    .iter()
    .flatten()
    .flatten()
    .map(|v| *v as f32)
    .collect();
    let info = SiteInfo {
        site: 0,
        layer_name: "conv1".into(),
        neurons: 2,
        positions: 4,
        weight: 0,
        bias: 1,
    };
    let mut recorder = LayerRecorder::new(vec![info.clone()], &[]);
    recorder.on_probe_start(0);
    // Two probe batches, of 2 samples and 1, as EVAL_BATCH would split a larger set.
    for (batch, values) in [(2usize, &h[..16]), (1, &h[16..])] {
        let event = SiteForward {
            info: &info,
            batch_size: batch,
            z: values,
            h: values,
        };
        recorder.on_probe_batch(0, &event);
    }
    let weight = [1.0f32, 2.0];
    let params = [ParamView {
        name: "conv1.weight",
        shape: &[2, 1],
        value: &weight,
        grad: None,
    }];
    recorder.on_probe_end(0, &params);
    let rows = recorder.take_rows();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert!(
        (row.effective_rank - 1.6620286118242429).abs() < 1e-12,
        "{row:?}"
    );
    assert_eq!((row.srank, row.feature_rank, row.features), (2, 2, 2));
    // No initial weights were given: the drift has no scale (NaN); the RMS is √((1+4)/2).
    assert!(row.weight_drift.is_nan());
    assert!((row.rms_weight - 2.5f64.sqrt()).abs() < 1e-15);
}

#[test]
fn an_all_zero_matrix_has_rank_zero() {
    // numpy: σ = (0, 0, 0); Σσ = 0, so by our convention effective rank 0 and srank 0.
    assert_measures(&[0.0; 12], 4, 3, (0.0, 0, 0));
    assert_eq!(
        singular_values(&[0.0; 12], 4, 3).unwrap(),
        vec![0.0, 0.0, 0.0]
    );
}

#[test]
fn bad_input_gives_undefined_measures_without_panicking() {
    let mut phi = RANK_DEFICIENT;
    phi[4] = f64::NAN;
    let undefined = rank_measures(&phi, 4, 3);
    assert!(undefined.effective_rank.is_nan());
    assert_eq!((undefined.srank, undefined.feature_rank), (0, 0));
    phi[4] = f64::INFINITY;
    assert!(rank_measures(&phi, 4, 3).effective_rank.is_nan());
    // Finite entries whose squares overflow.
    assert!(rank_measures(&[1e300; 4], 2, 2).effective_rank.is_nan());
    // A length that is not samples × features, and overflowing sizes.
    assert!(singular_values(&RANK_DEFICIENT, 5, 3).is_none());
    assert!(singular_values(&[], usize::MAX, 2).is_none());
    // No samples or no features: nothing to rank.
    assert_eq!(rank_measures(&[], 0, 3), measures_of(&[], 0));
    assert_eq!(measures_of(&[], 0).effective_rank, 0.0);
}

#[test]
fn weight_measures_match_a_hand_computation() {
    // W₀ = (3, 4): ‖W₀‖ = 5. W = (3, 0): W − W₀ = (0, −4), ‖·‖ = 4, drift 4/5 = 0.8;
    // RMS of W = √((9 + 0)/2) = √4.5.
    use crate::hooks::representation::weight_measures;
    let (rms, drift) = weight_measures(&[3.0, 0.0], &[3.0, 4.0]);
    assert!((rms - 4.5f64.sqrt()).abs() < 1e-15);
    assert!((drift - 0.8).abs() < 1e-15);
    assert_eq!(
        weight_measures(&[3.0, 4.0], &[3.0, 4.0]),
        (12.5f64.sqrt(), 0.0)
    );
    assert!(weight_measures(&[1.0], &[0.0]).1.is_nan(), "no scale");
    assert!(
        weight_measures(&[1.0], &[1.0, 2.0]).1.is_nan(),
        "shapes differ"
    );
    assert_eq!(weight_measures(&[], &[]).0, 0.0);
}
