//! Tests of the training loop, the step, the checkpoint and the probe pass.

use super::*;
use crate::arch;
use crate::data::Split;
use crate::data::{DatasetKind, DatasetSpec, Normalization};
use crate::optim::OptimizerConfig;
use necrosis_records::checkpoint::{read_safetensors, MODEL_FILE};
use std::sync::atomic::Ordering;

fn digits_config(activation: &str, epochs: usize) -> RunConfig {
    RunConfig {
        train_limit: Some(400),
        arch: "conv:8:3:1:1,act,pool:2,fc:16,act,fc:10".into(),
        seed: 3,
        lr: 0.05,
        batch_size: 32,
        epochs,
        probe_size: Some(128),
        ..RunConfig::new(DatasetSpec::new(DatasetKind::Digits), activation)
    }
}

fn digits(limit: usize) -> Dataset {
    let mut d = crate::data::load(&DatasetSpec::new(DatasetKind::Digits)).unwrap();
    d.limit_train(limit).unwrap();
    d
}

/// The records with the wall-clock columns blanked: everything else must be reproducible.
fn reproducible(dir: &Path) -> (Vec<EpochRow>, Vec<NeuronRow>, Vec<LayerRow>) {
    let mut epochs = EpochRow::read_all(dir).unwrap();
    for e in &mut epochs {
        e.seconds = 0.0;
        e.images_per_sec = e.images_per_sec.map(|_| 0.0);
    }
    (
        epochs,
        NeuronRow::read_all(dir).unwrap(),
        LayerRow::read_all(dir).unwrap(),
    )
}

#[test]
fn same_config_and_seed_give_identical_records() {
    let data = digits(400);
    let config = digits_config("relu-softsign", 2);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run(&data, &config, a.path(), RunOptions::default()).unwrap();
    run(&data, &config, b.path(), RunOptions::default()).unwrap();
    let (ra, rb) = (reproducible(a.path()), reproducible(b.path()));
    assert_eq!(ra.0.len(), 3, "epoch 0 and two training epochs");
    assert_eq!(ra.1.len(), 3 * (8 + 16));
    assert_eq!(ra.2.len(), 3 * 2, "one row per site per epoch");
    assert_eq!(ra, rb);
    // The final weights, byte for byte (their metadata holds no time).
    let weights = |dir: &Path| std::fs::read(dir.join(MODEL_FILE)).unwrap();
    assert!(
        weights(a.path()) == weights(b.path()),
        "model.safetensors differ"
    );
    let manifest = Manifest::read(a.path()).unwrap();
    assert_eq!(manifest.status, RunStatus::Complete);
    assert_eq!(manifest.epochs_completed, 2);
    // Training learned something in two epochs on 400 digits.
    assert!(ra.0[2].test_acc > 0.5, "{:?}", ra.0[2]);
}

#[test]
fn layers_parquet_has_a_row_per_site_and_epoch_with_bounded_ranks() {
    let data = digits(400);
    let config = digits_config("tanh", 2);
    let dir = tempfile::tempdir().unwrap();
    run(&data, &config, dir.path(), RunOptions::default()).unwrap();
    let layers = LayerRow::read_all(dir.path()).unwrap();
    let keys: Vec<(u32, u32, &str, u32)> = layers
        .iter()
        .map(|l| (l.epoch, l.layer, l.layer_name.as_str(), l.features))
        .collect();
    let expected: Vec<(u32, u32, &str, u32)> = (0..=2)
        .flat_map(|e| [(e, 0, "conv1", 8), (e, 1, "fc1", 16)])
        .collect();
    assert_eq!(keys, expected);
    for l in &layers {
        assert!(
            l.feature_rank <= l.features && l.srank <= l.features,
            "{l:?}"
        );
        assert!(
            l.srank >= 1 && l.feature_rank >= 1,
            "tanh features are not all zero"
        );
        assert!(l.effective_rank >= 1.0 && l.effective_rank <= l.features as f64);
        assert!(l.rms_weight > 0.0);
        // W₀ is the network at epoch 0 exactly; training then moves it.
        assert_eq!(l.weight_drift == 0.0, l.epoch == 0, "{l:?}");
    }
    // tanh has both asymptotes and a known f′: the saturation columns are filled.
    let neurons = NeuronRow::read_all(dir.path()).unwrap();
    assert!(neurons.iter().all(|n| {
        let fracs = [
            n.saturated_deriv_frac.unwrap(),
            n.saturated_output_frac.unwrap(),
        ];
        fracs.iter().all(|f| (0.0..=1.0).contains(f))
    }));
    // Without instruments there is no layers.parquet.
    let off = tempfile::tempdir().unwrap();
    let options = RunOptions {
        instruments: false,
        ..Default::default()
    };
    run(&data, &digits_config("tanh", 1), off.path(), options).unwrap();
    assert!(!off.path().join(LayerRow::FILE).exists());
}

#[test]
fn a_resumed_run_ends_with_the_records_of_an_uninterrupted_one() {
    assert_resume_is_seamless(&digits_config("relu", 3));
}

/// BN's running statistics, dropout's masks, the augmentation's crops and another
/// initialisation continue across a resume as in an uninterrupted run.
#[test]
fn a_resumed_run_with_bn_dropout_and_augmentation_is_seamless() {
    let config = RunConfig {
        arch: "conv:8:3:1:1,bn,act,pool:2,fc:16,bn,act,dropout:0.3,fc:10".into(),
        init: "he-normal".parse().unwrap(),
        bias_init: "pytorch".parse().unwrap(),
        output_init: Some("xavier-normal".parse().unwrap()),
        augment: "crop:1+flip".parse().unwrap(),
        ..digits_config("relu-softsign", 3)
    };
    assert_resume_is_seamless(&config);
}

/// Trains `config` whole and in two parts (stopped after epoch 1); returns both directories.
fn assert_resume_is_seamless(config: &RunConfig) -> (tempfile::TempDir, tempfile::TempDir) {
    let data = digits(400);
    let config = config.clone();
    let whole = tempfile::tempdir().unwrap();
    run(&data, &config, whole.path(), RunOptions::default()).unwrap();

    let parted = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_after_epoch_1 = stop.clone();
    let options = RunOptions {
        stop: Some(stop.clone()),
        progress: Box::new(move |p| {
            if let Progress::Epoch(e) = p {
                if e.epoch == 1 {
                    stop_after_epoch_1.store(true, Ordering::SeqCst);
                }
            }
        }),
        ..Default::default()
    };
    let outcome = run(&data, &config, parted.path(), options).unwrap();
    assert_eq!(
        outcome,
        RunOutcome::Interrupted {
            epochs_completed: 1
        }
    );
    assert_eq!(Manifest::read(parted.path()).unwrap().epochs_completed, 1);
    assert_eq!(EpochRow::read_all(parted.path()).unwrap().len(), 2);
    let outcome = run(&data, &config, parted.path(), RunOptions::default()).unwrap();
    assert!(matches!(outcome, RunOutcome::Complete { .. }));
    assert_eq!(reproducible(parted.path()), reproducible(whole.path()));
    let weights = |dir: &Path| read_safetensors(&dir.join(MODEL_FILE)).unwrap().tensors;
    assert_eq!(weights(parted.path()), weights(whole.path()));
    (whole, parted)
}

#[test]
fn temporaries_of_a_killed_writer_are_removed_and_a_live_ones_kept() {
    let data = digits(200);
    let config = digits_config("relu", 1);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("checkpoint")).unwrap();
    let dead = [
        ".epochs.parquet.tmp-4000000000",
        "checkpoint/.state.safetensors.tmp-4000000001",
    ];
    // pid 1 exists on every Linux machine: a live writer's file is not ours to delete.
    let live = ".manifest.json.tmp-1";
    for name in dead.iter().chain([&live]) {
        std::fs::write(dir.path().join(name), b"partial").unwrap();
    }
    run(&data, &config, dir.path(), RunOptions::default()).unwrap();
    for name in dead {
        assert!(!dir.path().join(name).exists(), "{name} was left");
    }
    assert!(dir.path().join(live).exists());
}

#[test]
fn a_nan_loss_marks_the_run_diverged() {
    let data = digits(200);
    let mut config = digits_config("relu", 3);
    config.lr = 1e9;
    let dir = tempfile::tempdir().unwrap();
    let outcome = run(&data, &config, dir.path(), RunOptions::default()).unwrap();
    assert!(
        matches!(outcome, RunOutcome::Diverged { .. }),
        "{outcome:?}"
    );
    let manifest = Manifest::read(dir.path()).unwrap();
    assert_eq!(manifest.status, RunStatus::Diverged);
    assert!(manifest.error.unwrap().contains("loss became"));
    assert!(
        EpochRow::read_all(dir.path())
            .unwrap()
            .last()
            .unwrap()
            .diverged
    );
}

#[test]
fn probe_larger_than_the_dataset_is_refused() {
    let data = digits(100);
    let mut config = digits_config("relu", 1);
    config.probe_size = Some(101);
    let err = run(
        &data,
        &config,
        tempfile::tempdir().unwrap().path(),
        RunOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.downcast_ref::<InvalidConfig>(),
        Some(&InvalidConfig {
            key: "probe_size",
            problem: "101 is larger than the training split (100 samples)".into()
        })
    );
}

/// The (layer, neuron) pairs with `max_pre <= 0` on the probe set at epoch 0.
fn dead_at_init(model: &Model, data: &Dataset) -> Vec<(u32, u32)> {
    let mut hooks = HookSet::new(
        Some(NeuronRecorder::new(
            model.sites.clone(),
            model.activation.clone(),
        )),
        vec![],
    );
    let probe: Vec<usize> = (0..data.train.len()).collect();
    probe_pass(model, data, &probe, 0, &mut hooks);
    let rows = hooks.take_neuron_rows();
    for r in rows.iter().filter(|r| r.max_pre <= 0.0) {
        // Dead under relu means no output and no gradient for any probe input.
        assert_eq!(
            (
                r.active_frac,
                r.sample_active_frac,
                r.mean_abs_act,
                r.mean_deriv
            ),
            (0.0, 0.0, 0.0, 0.0)
        );
    }
    rows.iter()
        .filter(|r| r.max_pre <= 0.0)
        .map(|r| (r.layer, r.neuron))
        .collect()
}

fn force_dead(model: &mut Model, bias_param: usize, neurons: &[usize]) {
    let mut bias = model.params()[bias_param].value.clone();
    for &n in neurons {
        bias[n] = -1e3;
    }
    model.params_mut()[bias_param].set_values(&bias).unwrap();
}

#[test]
fn neurons_forced_dead_are_exactly_the_ones_reported_dead() {
    let data = digits(300);
    let config = digits_config("relu", 1);
    let architecture = arch::resolve(&config.arch, data.input_shape(), data.classes).unwrap();
    let model = Model::new(
        &architecture,
        data.input_shape(),
        10,
        activation_by_name("relu").unwrap(),
        1,
    )
    .unwrap();
    let before = dead_at_init(&model, &data);
    assert!(
        !before.contains(&(0, 2))
            && !before.contains(&(0, 5))
            && !before.contains(&(1, 0))
            && !before.contains(&(1, 9))
    );

    // conv1 sees only the data and its own parameters: exactly the forced channels die.
    let mut conv_forced = model.clone();
    force_dead(&mut conv_forced, 1, &[2, 5]);
    let dead: Vec<_> = dead_at_init(&conv_forced, &data)
        .into_iter()
        .filter(|d| d.0 == 0)
        .collect();
    assert_eq!(dead, vec![(0, 2), (0, 5)]);

    // fc1 with conv1 intact: the forced units join the ones already dead, nothing else changes.
    let mut fc_forced = model.clone();
    force_dead(&mut fc_forced, 3, &[0, 9]);
    let mut expected = before.clone();
    expected.extend([(1, 0), (1, 9)]);
    expected.sort();
    assert_eq!(dead_at_init(&fc_forced, &data), expected);
}

/// A two-layer dense net small enough to compute by hand: z = W₁x + b₁, h = f(z),
/// logits = W₂h + b₂, L = mean cross-entropy.
#[test]
fn recorded_statistics_match_an_independent_computation() {
    let (n, inputs, hidden, classes) = (6, 4, 5, 3);
    let images: Vec<f32> = (0..n * inputs)
        .map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0)
        .collect();
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 3).collect();
    let data = Dataset {
        name: "tiny".into(),
        classes,
        channels: 1,
        height: 2,
        width: 2,
        train: Split {
            images: images.clone(),
            labels: labels.clone(),
        },
        test: Split {
            images: images.clone(),
            labels: labels.clone(),
        },
        normalization: Normalization {
            mean: vec![0.0],
            std: vec![1.0],
        },
    };
    let mut config = digits_config("softplus", 1);
    config.arch = format!("fc:{hidden},act,fc:{classes}");
    config.batch_size = n;
    config.probe_size = Some(n);
    config.train_limit = None;
    let dir = tempfile::tempdir().unwrap();
    run(&data, &config, dir.path(), RunOptions::default()).unwrap();
    let rows = NeuronRow::read_all(dir.path()).unwrap();

    let architecture = arch::resolve(&config.arch, [1, 2, 2], classes).unwrap();
    let f = activation_by_name("softplus").unwrap();
    let model = Model::new(&architecture, [1, 2, 2], classes, f.clone(), config.seed).unwrap();
    let params = model.params();
    let (w1, w2) = (&params[0].value, &params[2].value);
    let z: Vec<Vec<f64>> = (0..n)
        .map(|s| {
            (0..hidden)
                .map(|u| {
                    (0..inputs)
                        .map(|k| w1[u * inputs + k] as f64 * images[s * inputs + k] as f64)
                        .sum()
                })
                .collect()
        })
        .collect();
    // Probe statistics at epoch 0 (biases start at zero).
    for u in 0..hidden {
        let row = rows
            .iter()
            .find(|r| r.epoch == 0 && r.neuron == u as u32)
            .unwrap();
        let zs: Vec<f64> = z.iter().map(|zs| zs[u]).collect();
        let active = zs.iter().filter(|v| **v > 0.0).count() as f64 / n as f64;
        let max = zs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let mean_abs_act = zs
            .iter()
            .map(|v| f.value(*v as f32).abs() as f64)
            .sum::<f64>()
            / n as f64;
        let mean_deriv = zs
            .iter()
            .map(|v| f.derivative(*v as f32) as f64)
            .sum::<f64>()
            / n as f64;
        assert!((row.active_frac - active).abs() < 1e-12);
        assert!((row.max_pre - max).abs() < 1e-5);
        assert!((row.mean_abs_act - mean_abs_act).abs() < 1e-5);
        assert!((row.mean_deriv - mean_deriv).abs() < 1e-5);
        let norm = (0..inputs)
            .map(|k| (w1[u * inputs + k] as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!((row.weight_norm - norm).abs() < 1e-6);
    }
    // Training statistics of epoch 1: one step on the whole set, with the initial weights.
    let mut grad_h = vec![vec![0.0f64; hidden]; n];
    for s in 0..n {
        let h: Vec<f64> = z[s].iter().map(|v| f.value(*v as f32) as f64).collect();
        let logits: Vec<f64> = (0..classes)
            .map(|c| (0..hidden).map(|u| w2[c * hidden + u] as f64 * h[u]).sum())
            .collect();
        let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let denom: f64 = logits.iter().map(|l| (l - max).exp()).sum();
        for c in 0..classes {
            let p = (logits[c] - max).exp() / denom;
            let d_logit = (p - (labels[s] as usize == c) as u8 as f64) / n as f64;
            for u in 0..hidden {
                grad_h[s][u] += w2[c * hidden + u] as f64 * d_logit;
            }
        }
    }
    for u in 0..hidden {
        let row = rows
            .iter()
            .find(|r| r.epoch == 1 && r.neuron == u as u32)
            .unwrap();
        let act = (0..n).map(|s| grad_h[s][u].abs()).sum::<f64>() / n as f64;
        let pre = (0..n)
            .map(|s| (grad_h[s][u] * f.derivative(z[s][u] as f32) as f64).abs())
            .sum::<f64>()
            / n as f64;
        let active = (0..n).filter(|&s| z[s][u] > 0.0).count() as f64 / n as f64;
        let weight_grad: f64 = (0..inputs)
            .map(|k| {
                (0..n)
                    .map(|s| {
                        grad_h[s][u]
                            * f.derivative(z[s][u] as f32) as f64
                            * images[s * inputs + k] as f64
                    })
                    .sum::<f64>()
                    .powi(2)
            })
            .sum::<f64>()
            + (0..n)
                .map(|s| grad_h[s][u] * f.derivative(z[s][u] as f32) as f64)
                .sum::<f64>()
                .powi(2);
        assert!(
            (row.grad_act_abs_mean.unwrap() - act).abs() < 1e-6 * (1.0 + act),
            "{} vs {act}",
            row.grad_act_abs_mean.unwrap()
        );
        assert!((row.grad_pre_abs_mean.unwrap() - pre).abs() < 1e-6 * (1.0 + pre));
        assert!((row.train_active_frac.unwrap() - active).abs() < 1e-12);
        assert!((row.weight_grad_norm.unwrap() - weight_grad.sqrt()).abs() < 1e-5);
    }
    // The layer measures recomputed from the weights: epoch 0's (the seed's network) and epoch
    // 1's (model.safetensors), on the probe set (all 6 samples). Singular values here by
    // nalgebra's SVD of Φ, not the recorder's Gram eigenvalues; the measures by their papers'
    // formulas written out again.
    let layers = LayerRow::read_all(dir.path()).unwrap();
    assert_eq!(layers.len(), 2);
    let saved = read_safetensors(&dir.path().join(MODEL_FILE)).unwrap();
    let (w1_end, b1_end) = (
        saved.tensor("fc1.weight").unwrap(),
        saved.tensor("fc1.bias").unwrap(),
    );
    let biases0 = vec![0.0f32; hidden];
    for (row, (w, b)) in layers
        .iter()
        .zip([(&w1[..], &biases0[..]), (w1_end, b1_end)])
    {
        let phi = nalgebra::DMatrix::from_fn(n, hidden, |s, u| {
            let z: f64 = (0..inputs)
                .map(|k| w[u * inputs + k] as f64 * images[s * inputs + k] as f64)
                .sum::<f64>()
                + b[u] as f64;
            f.value(z as f32) as f64
        });
        let mut sigma: Vec<f64> = phi
            .svd(false, false)
            .singular_values
            .iter()
            .copied()
            .collect();
        sigma.sort_by(|a, b| b.total_cmp(a));
        let total: f64 = sigma.iter().sum();
        let entropy: f64 = sigma.iter().map(|s| s / total).map(|p| -p * p.ln()).sum();
        let srank = 1
            + (0..sigma.len())
                .position(|k| sigma[..=k].iter().sum::<f64>() >= 0.99 * total)
                .unwrap() as u32;
        let feature_rank = sigma
            .iter()
            .filter(|s| **s / (n as f64).sqrt() > 0.01)
            .count() as u32;
        assert!(
            (row.effective_rank - entropy.exp()).abs() < 1e-5,
            "{row:?}: {}",
            entropy.exp()
        );
        assert_eq!(
            (row.srank, row.feature_rank, row.features),
            (srank, feature_rank, 5)
        );
        let change: f64 = w
            .iter()
            .zip(w1)
            .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
            .sum();
        let scale: f64 = w1.iter().map(|v| (*v as f64).powi(2)).sum();
        assert!((row.weight_drift - (change / scale).sqrt()).abs() < 1e-12);
        let rms = (w.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
        assert!((row.rms_weight - rms).abs() < 1e-12);
    }
    assert!(layers[1].weight_drift > 0.0);
}

/// The interventions' log of a run directory (empty when the file is absent).
fn interventions(dir: &Path) -> Vec<InterventionRow> {
    InterventionRow::read_if_present(dir)
        .unwrap()
        .unwrap_or_default()
}

#[test]
fn an_intervention_that_changes_nothing_leaves_the_run_bit_identical() {
    let data = digits(400);
    let plain = digits_config("relu-softsign", 3);
    let base = tempfile::tempdir().unwrap();
    run(&data, &plain, base.path(), RunOptions::default()).unwrap();
    let weights = |dir: &Path| read_safetensors(&dir.join(MODEL_FILE)).unwrap().tensors;
    // relu-softsign never outputs exactly 0 on a whole probe set, so no neuron scores 0; a
    // shrink of 1 with no noise keeps every weight.
    for (text, rows) in [
        ("redo:0:1", 0),
        ("redo:0:7s", 0),
        ("shrink-perturb:1:0:1", 2),
    ] {
        let config = RunConfig {
            intervention: text.parse().unwrap(),
            ..plain.clone()
        };
        let dir = tempfile::tempdir().unwrap();
        run(&data, &config, dir.path(), RunOptions::default()).unwrap();
        assert_eq!(
            reproducible(dir.path()),
            reproducible(base.path()),
            "{text}"
        );
        assert_eq!(weights(dir.path()), weights(base.path()), "{text}");
        let log = interventions(dir.path());
        assert_eq!(log.len(), rows, "{text}: {log:?}");
        // Shrink-and-perturb acts at the end of epochs 1 and 2, not after the last.
        assert!(log
            .iter()
            .all(|r| r.at_epoch_end && r.neuron.is_none() && r.epoch < 3));
    }
    assert!(!base.path().join(InterventionRow::FILE).exists());
}

#[test]
fn redo_resets_the_neurons_the_records_show_dormant_after_recording_them() {
    let data = digits(400);
    let config = RunConfig {
        intervention: "redo:0.3:1".parse().unwrap(),
        ..digits_config("relu", 3)
    };
    let dir = tempfile::tempdir().unwrap();
    run(&data, &config, dir.path(), RunOptions::default()).unwrap();
    let neurons = NeuronRow::read_all(dir.path()).unwrap();
    let log = interventions(dir.path());
    for epoch in 1..3u32 {
        // Sokar's score from the epoch's records: mean |h| over the layer's mean.
        let mut expected = Vec::new();
        for layer in 0..2u32 {
            let rows: Vec<&NeuronRow> = neurons
                .iter()
                .filter(|r| r.epoch == epoch && r.layer == layer)
                .collect();
            let mean = rows.iter().map(|r| r.mean_abs_act).sum::<f64>() / rows.len() as f64;
            expected.extend(
                rows.iter()
                    .filter(|r| r.mean_abs_act / mean <= 0.3)
                    .map(|r| (layer, r.neuron)),
            );
        }
        let reset: Vec<(u32, u32)> = log
            .iter()
            .filter(|r| r.epoch == epoch)
            .map(|r| (r.layer.unwrap(), r.neuron.unwrap()))
            .collect();
        assert_eq!(reset, expected, "epoch {epoch}");
    }
    assert!(!log.is_empty(), "the test needs some dormant neurons");
    assert!(log.iter().all(|r| r.epoch < 3 && r.at_epoch_end));
}

#[test]
fn resumed_runs_with_interventions_are_seamless() {
    for text in [
        "cbp:0.02:5",
        "redo:0.5:9s",
        "redo:0.3:1",
        "shrink-perturb:0.9:0.05:1",
    ] {
        let config = RunConfig {
            intervention: text.parse().unwrap(),
            optimizer: OptimizerConfig::adam(),
            lr: 0.003,
            ..digits_config("relu", 3)
        };
        let (whole, parted) = assert_resume_is_seamless(&config);
        let log = interventions(whole.path());
        assert!(!log.is_empty(), "{text} changed nothing");
        assert_eq!(interventions(parted.path()), log, "{text}");
    }
}
