//! The rank measures of a feature matrix Φ (samples × features) that layers.parquet records:
//! Roy & Vetterli's effective rank, Kumar et al.'s srank and Lyle et al.'s feature rank, all from
//! Φ's singular values.
//!
//! Singular values: the eigenvalues λ of the smaller Gram matrix (ΦᵀΦ or ΦΦᵀ) in f64, σ =
//! √max(λ, 0), with nalgebra's symmetric eigendecomposition, rather than an SVD of Φ. The Gram is
//! one blocked matrix product and the eigenproblem is only features × features, where the SVD
//! bidiagonalises all of Φ (n_probe × features, 2048 × 512 for a cifar fc layer) every epoch.
//! The price is resolution: λ is exact to about n·ε·λ_max, so σ below ~10⁻⁶·σ_max is rounding
//! noise; such values are set to 0. They are a negligible share of Σσ (effective rank, srank)
//! and count in the feature rank only if σ_max/√n > 10⁴, far beyond the activations of a
//! trainable network.
//!
//! Φ is not centred: its mean direction is one of the directions the rank counts, as in the
//! three papers' definitions.

use nalgebra::DMatrix;

/// Kumar et al.'s δ: srank is the number of singular values holding 1 − δ of their sum.
pub const SRANK_DELTA: f64 = 0.01;
/// Lyle et al.'s ε: the feature rank counts singular values of Φ/√n above it.
pub const FEATURE_RANK_EPSILON: f64 = 0.01;
/// Singular values below this share of the largest are rounding noise of the Gram matrix.
const RESOLUTION: f64 = 1e-6;

/// The rank measures of one feature matrix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankMeasures {
    /// exp(H(p)), p_k = σ_k / Σσ, H = −Σ p log p (0 log 0 = 0); 0 when Σσ = 0.
    pub effective_rank: f64,
    /// The smallest k with Σ_{i≤k} σ_i ≥ (1 − δ) Σσ, σ descending; 0 when Σσ = 0.
    pub srank: u32,
    /// The number of singular values of Φ/√n above ε.
    pub feature_rank: u32,
}

impl RankMeasures {
    /// What a matrix with a NaN or infinite entry gets: its singular values are undefined.
    const UNDEFINED: Self = Self {
        effective_rank: f64::NAN,
        srank: 0,
        feature_rank: 0,
    };
}

/// The singular values of Φ (`samples` × `features`, row-major), largest first; `None` when Φ
/// has a NaN or infinite entry or its length is not `samples × features`.
pub fn singular_values(phi: &[f64], samples: usize, features: usize) -> Option<Vec<f64>> {
    if phi.len() != samples.checked_mul(features)? || phi.iter().any(|v| !v.is_finite()) {
        return None;
    }
    if samples == 0 || features == 0 {
        return Some(Vec::new());
    }
    let phi = DMatrix::from_row_slice(samples, features, phi);
    let gram = if samples >= features {
        phi.tr_mul(&phi)
    } else {
        &phi * phi.transpose()
    };
    // A finite Φ can still overflow its Gram (entries near 1e154); the eigensolver's iteration
    // is only bounded for finite input.
    if gram.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let mut sigma: Vec<f64> = gram
        .symmetric_eigenvalues()
        .iter()
        .map(|l| l.max(0.0).sqrt())
        .collect();
    sigma.sort_by(|a, b| b.total_cmp(a));
    let floor = sigma.first().copied().unwrap_or(0.0) * RESOLUTION;
    for s in &mut sigma {
        if *s < floor {
            *s = 0.0;
        }
    }
    Some(sigma)
}

/// The measures of singular values `sigma` (largest first) of a matrix with `samples` rows.
pub fn measures_of(sigma: &[f64], samples: usize) -> RankMeasures {
    let total: f64 = sigma.iter().sum();
    let feature_scale = (samples as f64).sqrt();
    let feature_rank = sigma
        .iter()
        .filter(|s| **s / feature_scale > FEATURE_RANK_EPSILON)
        .count() as u32;
    if total <= 0.0 || !total.is_finite() {
        return RankMeasures {
            effective_rank: 0.0,
            srank: 0,
            feature_rank,
        };
    }
    let entropy: f64 = sigma
        .iter()
        .map(|s| s / total)
        .filter(|p| *p > 0.0)
        .map(|p| -p * p.ln())
        .sum();
    let mut cumulative = 0.0;
    let mut srank = sigma.len() as u32;
    for (k, s) in sigma.iter().enumerate() {
        cumulative += s;
        if cumulative >= (1.0 - SRANK_DELTA) * total {
            srank = k as u32 + 1;
            break;
        }
    }
    RankMeasures {
        effective_rank: entropy.exp(),
        srank,
        feature_rank,
    }
}

/// The rank measures of Φ (`samples` × `features`, row-major).
pub fn rank_measures(phi: &[f64], samples: usize, features: usize) -> RankMeasures {
    match singular_values(phi, samples, features) {
        Some(sigma) => measures_of(&sigma, samples),
        None => RankMeasures::UNDEFINED,
    }
}

#[cfg(test)]
#[path = "rank_tests.rs"]
mod tests;
