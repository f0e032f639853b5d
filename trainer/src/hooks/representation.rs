//! The layer recorder: per activation site and epoch, the rank of the probe set's features
//! ([`rank`](super::rank)) and the size and drift of the site's incoming weights, one
//! [`LayerRow`] each, the rows of layers.parquet.
//!
//! The features Φ of a site are n_probe × neurons: row i holds the activations h = f(z) of probe
//! sample i in the evaluation-mode probe pass. A conv channel is one feature, as a dense unit is:
//! its entry is the mean of h over the channel's positions, so the rank counts independent
//! channels rather than channel-positions (whose number, and the cost of an SVD of them, grows
//! with the image).

use rayon::prelude::*;

use super::rank::rank_measures;
use super::{Hook, ParamView, SiteForward};
use crate::model::SiteInfo;
use crate::ops::lane_sum_of;
use crate::param::Param;

pub use necrosis_records::tables::LayerRow;

/// Records the representation measures and weight drift of every activation site.
pub struct LayerRecorder {
    sites: Vec<SiteInfo>,
    /// Each site's incoming weights at initialisation, W₀.
    initial: Vec<Vec<f32>>,
    /// Each site's Φ so far in this probe pass, row-major (samples × neurons).
    features: Vec<Vec<f64>>,
    rows: Vec<LayerRow>,
}

impl LayerRecorder {
    /// `initial` is the network's parameter list at initialisation (the run rebuilds it from the
    /// seed, also when resuming, so W₀ never needs storing).
    pub fn new(sites: Vec<SiteInfo>, initial: &[&Param]) -> Self {
        let initial = sites
            .iter()
            .map(|s| initial.get(s.weight).map(|p| p.value.clone()))
            .map(Option::unwrap_or_default)
            .collect();
        Self {
            features: vec![Vec::new(); sites.len()],
            sites,
            initial,
            rows: Vec::new(),
        }
    }

    /// The rows of the epochs finished since the last call.
    pub fn take_rows(&mut self) -> Vec<LayerRow> {
        std::mem::take(&mut self.rows)
    }
}

/// Root mean square of `w` and ‖w − w₀‖_F / ‖w₀‖_F, in f64. The drift is NaN when the shapes
/// differ or w₀ is all zero (no scale to measure against); the RMS of no weights is 0.
pub fn weight_measures(w: &[f32], w0: &[f32]) -> (f64, f64) {
    let squares: f64 = w.iter().map(|v| (*v as f64).powi(2)).sum();
    let rms = (squares / w.len().max(1) as f64).sqrt();
    if w.len() != w0.len() {
        return (rms, f64::NAN);
    }
    let (change, scale) = w.iter().zip(w0).fold((0.0f64, 0.0f64), |(c, s), (v, v0)| {
        let (v, v0) = (*v as f64, *v0 as f64);
        (c + (v - v0).powi(2), s + v0 * v0)
    });
    let drift = if scale > 0.0 {
        (change / scale).sqrt()
    } else {
        f64::NAN
    };
    (rms, drift)
}

impl Hook for LayerRecorder {
    fn wants_batch_forward(&self) -> bool {
        false
    }
    fn wants_batch_backward(&self) -> bool {
        false
    }
    fn wants_backward_arrays(&self) -> bool {
        false
    }

    fn on_probe_start(&mut self, _epoch: usize) {
        self.features.iter_mut().for_each(Vec::clear);
    }

    fn on_probe_batch(&mut self, _epoch: usize, event: &SiteForward) {
        let info = event.info;
        let (neurons, positions) = (info.neurons, info.positions.max(1));
        let Some(phi) = self.features.get_mut(info.site) else {
            return;
        };
        let start = phi.len();
        phi.resize(start + event.batch_size * neurons, 0.0);
        // One entry per (sample, neuron): each a contiguous run of `positions` values of h.
        phi[start..]
            .par_iter_mut()
            .zip(event.h.par_chunks(positions))
            .for_each(|(entry, h)| {
                *entry = lane_sum_of(h, |v| v as f64) / positions as f64;
            });
    }

    fn on_probe_end(&mut self, epoch: usize, params: &[ParamView]) {
        let rows: Vec<LayerRow> = self
            .sites
            .par_iter()
            .zip(&self.features)
            .zip(&self.initial)
            .map(|((info, phi), w0)| {
                let samples = phi.len() / info.neurons.max(1);
                let ranks = rank_measures(phi, samples, info.neurons);
                let w = params.get(info.weight).map_or(&[][..], |p| p.value);
                let (rms_weight, weight_drift) = weight_measures(w, w0);
                LayerRow {
                    epoch: epoch as u32,
                    layer: info.site as u32,
                    layer_name: info.layer_name.clone(),
                    features: info.neurons as u32,
                    effective_rank: ranks.effective_rank,
                    srank: ranks.srank,
                    feature_rank: ranks.feature_rank,
                    rms_weight,
                    weight_drift,
                }
            })
            .collect();
        self.rows.extend(rows);
    }
}
