//! Tests of the interventions on hand-made states: which values ReDo and continual backprop
//! change (rows, columns, biases, BN channels, optimiser entries) and which they leave, derived
//! from the network's geometry in each test; and the wiring of sites to parameters.

use dfdx::prelude::*;

use super::redo::Redo;
use crate::activation::activation_by_name;
use crate::arch;
use crate::data::{DatasetKind, DatasetSpec};
use crate::hooks::{Hook, HookSet, Reset, SiteForward, StepContext, Surgery};
use crate::model::{Initialisation, Model};
use crate::optim::{Optimizer, OptimizerConfig};
use necrosis_records::intervention::Period;

/// conv:4 on the 1×8×8 digits, pooled to 4×4×4 (16 positions per channel), fc:5, fc:10.
const ARCH: &str = "conv:4:3:1:1,act,pool:2,fc:5,act,fc:10";

fn digits_model() -> (Model, crate::data::Dataset) {
    let data = crate::data::load(&DatasetSpec::new(DatasetKind::Digits)).unwrap();
    let layers = arch::resolve(ARCH, data.input_shape(), data.classes).unwrap();
    let model = Model::with_init(
        &layers,
        data.input_shape(),
        data.classes,
        activation_by_name("relu").unwrap(),
        11,
        &Initialisation::default(),
    )
    .unwrap();
    (model, data)
}

/// Adam with every moment set to a marker value, so that a reset entry shows as 0.
fn marked_adam(model: &Model) -> Optimizer {
    let mut optimizer = Optimizer::new(OptimizerConfig::adam(), model.params());
    optimizer.step = 7;
    optimizer
        .first_moment
        .iter_mut()
        .flatten()
        .for_each(|m| *m = 0.5);
    optimizer
        .second_moment
        .iter_mut()
        .flatten()
        .for_each(|v| *v = 0.25);
    optimizer
}

fn set(model: &mut Model, param: usize, entries: &[(usize, f32)]) {
    let mut values = model.params()[param].value.clone();
    for &(i, v) in entries {
        values[i] = v;
    }
    model.params_mut()[param].set_values(&values).unwrap();
}

/// Feeds the first 256 training images through the network in evaluation mode, as the probe
/// pass does, to `hook`'s probe events.
fn probe(model: &Model, data: &crate::data::Dataset, hook: &mut dyn Hook) {
    let n = 256;
    let len = data.sample_len();
    let images: Vec<f32> = (0..n)
        .flat_map(|i| data.train.sample(i, len).to_vec())
        .collect();
    hook.on_probe_start(1);
    model.forward(
        Cpu::default().tensor_from_vec(images, (n, len)),
        &mut |site, z, h| {
            let event = SiteForward {
                info: &model.sites[site],
                batch_size: n,
                z,
                h,
            };
            hook.on_probe_batch(1, &event);
        },
        None,
        None,
    );
}

#[test]
fn redo_resets_exactly_the_dormant_neurons_rows_columns_and_optimiser_entries() {
    let (mut model, data) = digits_model();
    // Params: 0 conv1.weight [4, 9], 1 conv1.bias, 2 fc1.weight [5, 64], 3 fc1.bias,
    // 4 fc2.weight [10, 5], 5 fc2.bias. A bias of −1000 silences a relu neuron on every input.
    set(&mut model, 1, &[(1, -1e3)]);
    set(&mut model, 3, &[(3, -1e3), (4, -1e3)]);
    let before = model.clone();
    let mut optimizer = marked_adam(&model);
    let mut hooks = HookSet::new(
        None,
        vec![Box::new(Redo::new(0.0, Period::Epochs(1), &model.sites))],
    );
    probe(&model, &data, &mut hooks);
    let ctx = StepContext {
        seed: 5,
        epoch: 1,
        step: optimizer.step,
        batch_size: 0,
        lr: 0.0,
    };
    hooks.intervene(&mut model, &mut optimizer, &ctx, true);
    let log = hooks.take_interventions();
    let reset: Vec<(u32, u32)> = log
        .iter()
        .map(|r| (r.layer.unwrap(), r.neuron.unwrap()))
        .collect();
    // Every other neuron of this seed is alive on the digits (checked by the assertion).
    assert_eq!(reset, [(0, 1), (1, 3), (1, 4)]);
    assert!(log
        .iter()
        .all(|r| r.kind == "redo" && r.score == Some(0.0) && r.at_epoch_end));
    assert!(log.iter().all(|r| r.epoch == 1 && r.step == 7));

    let (old, new) = (before.params(), model.params());
    // Whether entry i of parameter p was to be changed, by the geometry: conv1 row 1 (9 values)
    // and its bias; fc1 columns 16..32 (channel 1's 16 positions) zeroed, rows 3 and 4
    // re-drawn (64 values each) with their biases; fc2 columns 3 and 4 zeroed.
    let expected_change = |p: usize, i: usize| -> bool {
        match p {
            0 => i / 9 == 1,
            1 => i == 1,
            2 => matches!(i / 64, 3 | 4) || (16..32).contains(&(i % 64)),
            3 => matches!(i, 3 | 4),
            4 => matches!(i % 5, 3 | 4),
            _ => false,
        }
    };
    for p in 0..6 {
        for i in 0..old[p].len() {
            let changed = expected_change(p, i);
            let (a, b) = (old[p].value[i], new[p].value[i]);
            if !changed {
                assert_eq!(a, b, "{} [{i}] should be untouched", old[p].name);
                assert_eq!(optimizer.first_moment[p][i], 0.5);
                assert_eq!(optimizer.second_moment[p][i], 0.25);
            } else {
                assert_eq!(optimizer.first_moment[p][i], 0.0, "{} [{i}]", old[p].name);
                assert_eq!(optimizer.second_moment[p][i], 0.0, "{} [{i}]", old[p].name);
            }
        }
        // The dfdx tensors got the new values.
        let tensor = match p % 2 {
            0 => new[p].matrix_tensor().as_vec(),
            _ => new[p].vector_tensor().as_vec(),
        };
        assert_eq!(tensor, new[p].value, "{}", new[p].name);
    }
    // Zeroed outgoing weights are exactly 0; biases follow the zero bias rule; re-drawn rows
    // are He-uniform (|w| ≤ √(6/fan_in)) and differ from the old row.
    let fc1 = &new[2].value;
    for row in [0, 1, 2] {
        assert!(fc1[row * 64 + 16..row * 64 + 32].iter().all(|w| *w == 0.0));
    }
    for row in [3, 4] {
        let fresh = &fc1[row * 64..(row + 1) * 64];
        assert!(fresh.iter().all(|w| w.abs() <= (6.0f32 / 64.0).sqrt()));
        assert_ne!(fresh, &old[2].value[row * 64..(row + 1) * 64]);
    }
    assert!(new[4]
        .value
        .chunks(5)
        .all(|row| row[3] == 0.0 && row[4] == 0.0));
    assert_eq!(
        (new[1].value[1], new[3].value[3], new[3].value[4]),
        (0.0, 0.0, 0.0)
    );
    assert_ne!(&new[0].value[9..18], &old[0].value[9..18]);
    // Reset neurons are alive again on the same data.
    let mut again = Redo::new(0.0, Period::Epochs(1), &model.sites);
    probe(&model, &data, &mut again);
    let mut optimizer = marked_adam(&model);
    let mut surgery = Surgery::new(&mut model, &mut optimizer, 5, 2, true);
    again.at_epoch_end(2, &mut surgery);
    let second: Vec<_> = surgery.finish();
    assert!(
        second
            .iter()
            .all(|r| r.layer != Some(0) || r.neuron != Some(1)),
        "conv1 channel 1 stays dead after its reset: {second:?}"
    );
}

#[test]
fn a_replaced_units_mean_contribution_moves_into_the_next_bias() {
    let (mut model, _) = digits_model();
    let mut optimizer = marked_adam(&model);
    let before = model.clone();
    let mut surgery = Surgery::new(&mut model, &mut optimizer, 5, 1, false);
    // fc1 unit 2 with mean activation 0.75: each fc2 row k gains 0.75 · w2[k, 2].
    let reset = Reset {
        neuron: 2,
        score: 0.125,
        carry: Some(0.75),
    };
    surgery.reset_neurons("cbp", 1, &[reset]);
    let log = surgery.finish();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].kind.as_str(), log[0].score, log[0].at_epoch_end),
        ("cbp", Some(0.125), false)
    );
    let (w2, b2_old, b2_new) = (
        &before.params()[4].value,
        &before.params()[5].value,
        &model.params()[5].value,
    );
    for k in 0..10 {
        let expected = b2_old[k] + 0.75 * w2[k * 5 + 2];
        assert!(
            (b2_new[k] - expected).abs() < 1e-6,
            "row {k}: {} vs {expected}",
            b2_new[k]
        );
        assert_eq!(model.params()[4].value[k * 5 + 2], 0.0);
    }
    // A conv unit's outgoing weights into a flattened dense layer are its 16 positions: the
    // next bias gains carry × the sum of those 16 weights.
    let before = model.clone();
    let mut optimizer = marked_adam(&model);
    let mut surgery = Surgery::new(&mut model, &mut optimizer, 5, 1, false);
    let magnitude = surgery.outgoing_magnitude(0);
    let w1 = &before.params()[2].value;
    let hand: f32 = (0..5)
        .map(|row| {
            w1[row * 64 + 48..row * 64 + 64]
                .iter()
                .map(|w| w.abs())
                .sum::<f32>()
        })
        .sum::<f32>()
        / 80.0;
    assert!((magnitude[3] - hand).abs() < 1e-6);
    surgery.reset_neurons(
        "cbp",
        0,
        &[Reset {
            neuron: 3,
            score: 0.0,
            carry: Some(-0.5),
        }],
    );
    for row in 0..5 {
        let sum: f32 = w1[row * 64 + 48..row * 64 + 64].iter().sum();
        let expected = before.params()[3].value[row] - 0.5 * sum;
        assert!((model.params()[3].value[row] - expected).abs() < 1e-5);
    }
}

#[test]
fn residual_blocks_are_wired_as_documented() {
    let input = [3, 8, 8];
    let layers = arch::resolve("conv:4:3:1:1,bn,act,res:4,res:8:2,gap,fc:10", input, 10).unwrap();
    let model = Model::new(&layers, input, 10, activation_by_name("relu").unwrap(), 0).unwrap();
    let names: Vec<&str> = model.sites.iter().map(|s| s.layer_name.as_str()).collect();
    assert_eq!(
        names,
        ["conv1", "res1.conv1", "res1.out", "res2.conv1", "res2.out"]
    );
    let w = &model.wiring;
    let layer_names: Vec<&str> = w.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        layer_names,
        [
            "conv1",
            "res1.conv1",
            "res1.conv2",
            "res2.conv1",
            "res2.conv2",
            "res2.proj",
            "fc1"
        ]
    );
    // Parameter order: conv1 0-1, bn 2-3; res1 conv1 4-5, bn1 6-7, conv2 8-9, bn2 10-11; res2
    // conv1 12-13, bn1 14-15, conv2 16-17, bn2 18-19, proj 20-21, proj_bn 22-23; fc 24-25.
    let weights: Vec<usize> = w.layers.iter().map(|l| l.weight).collect();
    assert_eq!(weights, [0, 4, 8, 12, 16, 20, 24]);
    let params = model.params();
    for layer in &w.layers {
        assert_eq!(params[layer.weight].name, format!("{}.weight", layer.name));
        assert_eq!(params[layer.weight].len(), layer.out * layer.fan_in);
    }
    let site = |i: usize| &w.sites[i];
    let norms = |i: usize| {
        site(i)
            .norms
            .iter()
            .map(|n| (n.norm, n.gamma, n.beta))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        (site(0).incoming.clone(), norms(0)),
        (vec![0], vec![(0, 2, 3)])
    );
    assert_eq!(
        (site(0).outgoing.clone(), site(0).through_identity),
        (vec![1], true)
    );
    assert_eq!(
        (site(1).incoming.clone(), norms(1), site(1).outgoing.clone()),
        (vec![1], vec![(1, 6, 7)], vec![2])
    );
    assert_eq!(
        (site(2).incoming.clone(), norms(2)),
        (vec![2], vec![(2, 10, 11)])
    );
    assert_eq!(
        (site(2).outgoing.clone(), site(2).through_identity),
        (vec![3, 5], false)
    );
    assert_eq!(
        (site(3).outgoing.clone(), norms(3)),
        (vec![4], vec![(3, 14, 15)])
    );
    assert_eq!(
        (site(4).incoming.clone(), norms(4)),
        (vec![4, 5], vec![(4, 18, 19), (5, 22, 23)])
    );
    assert_eq!(site(4).outgoing, vec![6]);
    // The BN indices are those of the running statistics.
    let buffers = model.buffers();
    assert_eq!(buffers[2 * 5].0, "res2.proj_bn.running_mean");
    assert_eq!(buffers[2 * 2 + 1].0, "res1.bn2.running_var");
}
