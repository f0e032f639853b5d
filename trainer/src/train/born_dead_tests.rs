//! The instrument against theory: how often a deep narrow bias-free ReLU net is "born dead" at
//! its probe point, as the epoch-0 records say, against the probability that follows from the
//! initialisation alone (issue #13, item 7).
//!
//! # The prediction
//!
//! Take fully connected layers of width N, L of them each followed by ReLU, zero biases, and
//! weights drawn independently from a distribution symmetric about 0 (He-uniform, the default
//! initialisation). Let x be a non-zero input. A unit's pre-activation is z = w·x: since w and
//! −w are equally likely and w·x = 0 has probability 0 for x ≠ 0 (a hyperplane of w), z > 0 with
//! probability exactly ½; the N units of the layer have independent weight rows, so their signs
//! are independent fair coins, and all N are inactive (z ≤ 0, hence h = max(z, 0) = 0) with
//! probability 2^−N. The next layer's weights are independent of everything before it, so given
//! that the layer before it is alive (its output h is not the zero vector) the same holds for it.
//! Once a layer's output is the zero vector, every later layer gets z = W·0 + 0 = 0 exactly and
//! is inactive too. So the last hidden layer is all-inactive — the net is born dead at x — with
//! probability
//!
//!   P(born dead) = 1 − (1 − 2^−N)^L.
//!
//! (The draws are f32 values of a uniform on a grid, symmetric up to rounding at 2^−24 of the
//! bound; that and the chance of an exactly zero z are far below what 1000 seeds can resolve.)
//!
//! # What the recorder measures
//!
//! `active_frac` counts probe observations with z > 0 (the recorder's `probe_slice`). For ReLU,
//! z > 0 ⇔ h ≠ 0, so "every neuron of the last hidden site has active_frac == 0" is exactly
//! "the last hidden layer outputs the zero vector", the event above. With `probe_size` 1 each
//! `active_frac` is 0 or 1, the sign of z at the one probe sample.
//!
//! # The input is never zero
//!
//! The digits are normalised per channel, x' = (x − m)/s with one scalar m and s > 0 for the
//! single channel, so x' is the zero vector only for an image that is constant (every pixel
//! equal to m). [`every_training_digit_is_a_non_zero_input`] checks that no training image is.
//!
//! Each seed draws both the weights and its one probe sample, so the estimate mixes over probe
//! points; the prediction holds for every non-zero x, so it holds for the mixture too. The seeds
//! are fixed, so the test is deterministic: it passes or fails the same way every time.

use super::*;
use crate::data::{DatasetKind, DatasetSpec};
use necrosis_records::checkpoint::{read_safetensors, MODEL_FILE};
use necrosis_records::files::read_probe_indices;
use std::sync::atomic::Ordering;

/// Training samples kept: the probe sample is drawn from these.
const TRAIN_LIMIT: usize = 64;

fn digits() -> Dataset {
    let mut d = crate::data::load(&DatasetSpec::new(DatasetKind::Digits)).unwrap();
    d.limit_train(TRAIN_LIMIT).unwrap();
    d
}

/// `fc:N,act` L times, then `fc:10`: fully connected from the input (a flatten is inserted).
fn narrow_arch(width: usize, depth: usize) -> String {
    let mut spec = format!("fc:{width},act,").repeat(depth);
    spec.push_str("fc:10");
    spec
}

fn narrow_config(width: usize, depth: usize, seed: u64) -> RunConfig {
    RunConfig {
        train_limit: Some(TRAIN_LIMIT),
        arch: narrow_arch(width, depth),
        seed,
        batch_size: 64,
        epochs: 1,
        probe_size: Some(1),
        ..RunConfig::new(DatasetSpec::new(DatasetKind::Digits), "relu")
    }
}

/// A run folder for one seed's run, in memory where the system has a tmpfs at /dev/shm: the
/// run syncs each file it writes, and on a busy disk the syncs of hundreds of runs take longer
/// than the runs themselves.
fn run_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    match shm.is_dir() {
        true => tempfile::tempdir_in(shm).or_else(|_| tempfile::tempdir()),
        false => tempfile::tempdir(),
    }
    .unwrap()
}

/// Runs `config` through [`run`] and stops it once epoch 0 (the initialisation, recorded
/// before any training) is saved: the records on disk are those of a full run's epoch 0.
fn record_epoch_0(data: &Dataset, config: &RunConfig, dir: &Path) {
    let stop = Arc::new(AtomicBool::new(false));
    let stop_after_epoch_0 = stop.clone();
    let options = RunOptions {
        stop: Some(stop),
        progress: Box::new(move |p| {
            if let Progress::Epoch(e) = p {
                if e.epoch == 0 {
                    stop_after_epoch_0.store(true, Ordering::SeqCst);
                }
            }
        }),
        ..Default::default()
    };
    let outcome = run(data, config, dir, options).unwrap();
    assert_eq!(
        outcome,
        RunOutcome::Interrupted {
            epochs_completed: 0
        }
    );
}

/// Whether the written epoch-0 records say that every neuron of the last hidden site was
/// inactive at the probe sample.
fn born_dead(dir: &Path, depth: usize) -> bool {
    let rows = NeuronRow::read_all(dir).unwrap();
    let last: Vec<&NeuronRow> = rows
        .iter()
        .filter(|r| r.epoch == 0 && r.layer as usize == depth - 1)
        .collect();
    assert!(!last.is_empty(), "no epoch-0 rows of the last hidden site");
    for r in &last {
        assert!(
            r.active_frac == 0.0 || r.active_frac == 1.0,
            "one probe sample: {r:?}"
        );
    }
    last.iter().all(|r| r.active_frac == 0.0)
}

#[test]
fn every_training_digit_is_a_non_zero_input() {
    let data = crate::data::load(&DatasetSpec::new(DatasetKind::Digits)).unwrap();
    let len = data.sample_len();
    for i in 0..data.train.len() {
        assert!(
            data.train.sample(i, len).iter().any(|v| *v != 0.0),
            "training digit {i} is the zero vector after normalisation"
        );
    }
}

/// Probe size 1 on a net that starts with `fc` (no conv) trains and records: the full loop,
/// two epochs, one neuron row per unit and epoch, every probe fraction 0 or 1.
#[test]
fn a_narrow_fully_connected_net_with_one_probe_sample_trains_and_records() {
    let data = digits();
    let config = RunConfig {
        epochs: 2,
        ..narrow_config(2, 3, 5)
    };
    let dir = tempfile::tempdir().unwrap();
    let outcome = run(&data, &config, dir.path(), RunOptions::default()).unwrap();
    assert!(
        matches!(outcome, RunOutcome::Complete { .. }),
        "{outcome:?}"
    );
    assert_eq!(read_probe_indices(dir.path()).unwrap().len(), 1);
    let rows = NeuronRow::read_all(dir.path()).unwrap();
    assert_eq!(rows.len(), 3 * 3 * 2, "3 epochs × 3 sites × 2 units");
    for r in &rows {
        assert!(r.active_frac == 0.0 || r.active_frac == 1.0, "{r:?}");
        assert_eq!(r.sample_active_frac, r.active_frac, "{r:?}");
        if r.epoch == 0 {
            assert_eq!(r.bias, 0.0, "{r:?}");
        }
    }
    let manifest = Manifest::read(dir.path()).unwrap();
    assert_eq!(manifest.status, RunStatus::Complete);
    assert!(manifest
        .architecture
        .contains(&crate::arch::LayerSpec::Flatten));
}

/// For a few seeds, the forward pass of the probe sample computed by hand (in f64, from the
/// written model.safetensors and probe_indices.json) gives the signs the records hold: the
/// recorded `active_frac` of every unit of every site is 1 exactly when its z > 0.
#[test]
fn recorded_activity_is_the_sign_of_the_hand_computed_pre_activation() {
    let data = digits();
    let (width, depth) = (3, 4);
    for seed in 0..12 {
        let config = narrow_config(width, depth, seed);
        let dir = run_dir();
        record_epoch_0(&data, &config, dir.path());
        let model = read_safetensors(&dir.path().join(MODEL_FILE)).unwrap();
        let probe = read_probe_indices(dir.path()).unwrap();
        assert_eq!(probe.len(), 1);
        let mut h: Vec<f64> = data
            .train
            .sample(probe[0], data.sample_len())
            .iter()
            .map(|v| *v as f64)
            .collect();
        let rows = NeuronRow::read_all(dir.path()).unwrap();
        for layer in 0..depth {
            let name = format!("fc{}", layer + 1);
            let weight = model.tensor(&format!("{name}.weight")).unwrap();
            let bias = model.tensor(&format!("{name}.bias")).unwrap();
            assert!(bias.iter().all(|b| *b == 0.0), "biases start at zero");
            assert_eq!(weight.len(), width * h.len());
            let z: Vec<f64> = weight
                .chunks(h.len())
                .map(|row| row.iter().zip(&h).map(|(w, x)| *w as f64 * x).sum())
                .collect();
            for (unit, &z) in z.iter().enumerate() {
                let row = rows
                    .iter()
                    .find(|r| {
                        r.epoch == 0 && r.layer as usize == layer && r.neuron as usize == unit
                    })
                    .unwrap();
                assert_eq!(row.layer_name, name);
                let expected = if z > 0.0 { 1.0 } else { 0.0 };
                assert_eq!(
                    row.active_frac, expected,
                    "seed {seed} {name}[{unit}]: z = {z}"
                );
            }
            h = z.iter().map(|z| z.max(0.0)).collect();
        }
    }
}

/// The born-dead frequency over 1000 seeds agrees with 1 − (1 − 2^−N)^L within 3 binomial
/// standard errors, for (N, L) = (2, 3) → 0.578 and (4, 4) → 0.228, whose predictions are
/// > 22 standard errors apart (so the check tells the two apart, not only a gross error).
#[test]
fn born_dead_frequency_at_initialisation_matches_theory() {
    const SEEDS: u64 = 1000;
    let data = digits();
    for (width, depth) in [(2usize, 3usize), (4, 4)] {
        let predicted = 1.0 - (1.0 - 0.5f64.powi(width as i32)).powi(depth as i32);
        let dead = (0..SEEDS)
            .filter(|&seed| {
                let dir = run_dir();
                record_epoch_0(&data, &narrow_config(width, depth, seed), dir.path());
                born_dead(dir.path(), depth)
            })
            .count();
        let n = SEEDS as f64;
        let estimate = dead as f64 / n;
        let standard_error = (predicted * (1.0 - predicted) / n).sqrt();
        eprintln!(
            "N = {width}, L = {depth}: born dead {dead}/{SEEDS} = {estimate:.4}, \
             predicted {predicted:.4} ± {standard_error:.4}"
        );
        assert!(
            (estimate - predicted).abs() <= 3.0 * standard_error,
            "N = {width}, L = {depth}: {estimate:.4} vs {predicted:.4} (SE {standard_error:.4})"
        );
    }
}
