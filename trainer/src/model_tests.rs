//! The network as a whole: parameters and sites of the presets, the gradient of every layer kind
//! against finite differences, and initialisation.

use super::*;
use crate::activation::activation_by_name;
use crate::arch::resolve;

#[test]
fn lenet_has_the_expected_parameters_and_sites() {
    let arch = resolve("lenet", [1, 28, 28], 10).unwrap();
    let model = Model::new(
        &arch,
        [1, 28, 28],
        10,
        activation_by_name("relu").unwrap(),
        0,
    )
    .unwrap();
    // conv1 32·9+32, conv2 64·288+64, fc1 128·1600+128, fc2 10·128+10
    assert_eq!(model.parameter_count(), 320 + 18496 + 204928 + 1290);
    let names: Vec<_> = model
        .sites
        .iter()
        .map(|s| (s.layer_name.as_str(), s.neurons, s.positions))
        .collect();
    assert_eq!(
        names,
        vec![("conv1", 32, 676), ("conv2", 64, 121), ("fc1", 128, 1)]
    );
    let params = model.params();
    assert_eq!(params[2].shape, vec![64, 32, 3, 3]);
    let bound = (6.0f32 / 288.0).sqrt();
    assert!(params[2].value.iter().all(|w| w.abs() <= bound));
    assert!(params[3].value.iter().all(|b| *b == 0.0));
}

/// The autodiff gradient of the whole network against central differences of the loss, for
/// every parameter tensor. `training`: the pass of a training step (BN on batch statistics);
/// otherwise evaluation (BN on running statistics, made non-trivial first).
fn assert_network_gradient(spec: &str, input: [usize; 3], activation: &str, training: bool) {
    use crate::ops::testing::pseudo_random;
    use crate::ops::{tensor_values, Tape};
    let (classes, n) = (3, 4);
    let arch = resolve(spec, input, classes).unwrap();
    let mut model = Model::new(
        &arch,
        input,
        classes,
        activation_by_name(activation).unwrap(),
        5,
    )
    .unwrap();
    for (i, p) in model.params_mut().into_iter().enumerate() {
        // Non-zero biases and BN shifts, scales away from 1, so that every gradient is exercised.
        if p.shape.len() == 1 {
            let values = pseudo_random(p.len(), 100 + i as u64)
                .iter()
                .map(|v| {
                    if p.name.ends_with(".weight") {
                        1.0 + 0.3 * v
                    } else {
                        0.1 * v
                    }
                })
                .collect::<Vec<_>>();
            p.set_values(&values).unwrap();
        }
    }
    for (i, (name, values)) in model.buffers_mut().into_iter().enumerate() {
        let noise = pseudo_random(values.len(), 300 + i as u64);
        for (v, e) in values.iter_mut().zip(noise) {
            *v = if name.ends_with("running_var") {
                1.0 + 0.5 * e.abs()
            } else {
                0.2 * e
            };
        }
    }
    let features: usize = input.iter().product();
    let x = pseudo_random(n * features, 42);
    let labels = [0usize, 2, 1, 2];
    let dev = Cpu::default();
    let loss_of = |model: &Model| -> f64 {
        let mut pass = TrainPass::default();
        let logits = tensor_values(&model.forward(
            dev.tensor_from_vec(x.clone(), (n, features)),
            &mut |_, _, _| {},
            None,
            training.then_some(&mut pass),
        ));
        let mut total = 0.0;
        for (row, &label) in logits.chunks(classes).zip(&labels) {
            let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            let log_sum = row
                .iter()
                .map(|&v| (v as f64 - max).exp())
                .sum::<f64>()
                .ln()
                + max;
            total += log_sum - row[label] as f64;
        }
        total / n as f64
    };
    let mut pass = TrainPass::default();
    let logits = model.forward(
        dev.tensor_from_vec(x.clone(), (n, features))
            .retaped::<Tape>(),
        &mut |_, _, _| {},
        None,
        training.then_some(&mut pass),
    );
    let mut one_hot = vec![0.0f32; n * classes];
    for (i, &l) in labels.iter().enumerate() {
        one_hot[i * classes + l] = 1.0;
    }
    let loss = cross_entropy_with_logits_loss(logits, dev.tensor_from_vec(one_hot, (n, classes)));
    assert!(
        (loss.array() as f64 - loss_of(&model)).abs() < 1e-5,
        "{spec}: dfdx loss equals ours"
    );
    let mut grads = loss.backward();
    let analytic: Vec<Vec<f32>> = model
        .params()
        .iter()
        .map(|p| p.take_grad(&mut grads).unwrap())
        .collect();
    for (pi, grad) in analytic.iter().enumerate() {
        // Every parameter of small tensors, a spread of 7 of the larger ones.
        let len = model.params()[pi].len();
        let step = (len / 7).max(1);
        for j in (0..len).step_by(step) {
            let eps = 1e-2f32;
            let mut plus = model.clone();
            let mut values = plus.params()[pi].value.clone();
            values[j] += eps;
            plus.params_mut()[pi].set_values(&values).unwrap();
            let mut minus = model.clone();
            values[j] -= 2.0 * eps;
            minus.params_mut()[pi].set_values(&values).unwrap();
            let numeric = (loss_of(&plus) - loss_of(&minus)) / (2.0 * eps as f64);
            let err = (numeric - grad[j] as f64).abs();
            assert!(
                err < 2e-3 * (1.0 + numeric.abs()),
                "{spec} {activation} training={training} {}[{j}]: analytic {} numeric {numeric}",
                model.params()[pi].name,
                grad[j]
            );
        }
    }
}

/// Conv, pooling, activation sites, dense layers and cross-entropy.
#[test]
fn whole_network_gradient_matches_finite_differences() {
    for activation in ["softplus", "relu-softsign"] {
        assert_network_gradient(
            "conv:3:3:1:1,act,maxpool:2,conv:4:2,act,avgpool:2,fc:5,act,fc:3",
            [2, 7, 7],
            activation,
            false,
        );
    }
}

/// BN (2-d and 1-d) in both modes, residual blocks with the identity and with a projection
/// shortcut, global average pooling; dropout at p = 0 is the identity.
#[test]
fn normalised_residual_network_gradient_matches_finite_differences() {
    let spec = "conv:3:3:1:1,bn,act,res:3,res:4:2,gap,fc:5,bn,act,dropout:0,fc:3";
    for training in [true, false] {
        assert_network_gradient(spec, [2, 6, 6], "softplus", training);
    }
}

/// He et al. (2016)'s ResNet-20 for CIFAR: 19 conv layers in a stem and 9 blocks, 3 stages of
/// 16, 32, 64 channels, 0.27 M parameters. Ours keeps conv biases (inert before BN), so the
/// count is theirs plus one bias per conv channel, derived here by hand.
#[test]
fn resnet20_has_he_et_al_s_layout() {
    let arch = resolve("resnet20", [3, 32, 32], 100).unwrap();
    let model = Model::new(
        &arch,
        [3, 32, 32],
        100,
        activation_by_name("relu").unwrap(),
        0,
    )
    .unwrap();
    let conv = |cin: usize, cout: usize, k: usize| cout * cin * k * k + cout;
    let bn = |c: usize| 2 * c;
    let block = |cin: usize, cout: usize| {
        let projection = if cin != cout {
            conv(cin, cout, 1) + bn(cout)
        } else {
            0
        };
        conv(cin, cout, 3) + bn(cout) + conv(cout, cout, 3) + bn(cout) + projection
    };
    let expected = conv(3, 16, 3)
        + bn(16)
        + 3 * block(16, 16)
        + block(16, 32)
        + 2 * block(32, 32)
        + block(32, 64)
        + 2 * block(64, 64)
        + 64 * 100
        + 100;
    assert_eq!(model.parameter_count(), expected);
    // Without the 784 conv biases (16 stem, 2·(3·16 + 3·32 + 3·64) in blocks, 32 + 64 in the
    // projections) and with a 10-class head: the widely reproduced 269 722 of the option-A
    // ResNet-20 (zero-padded shortcuts), plus the two 1×1 projections with their BN,
    // 16·32 + 2·32 + 32·64 + 2·64 = 2 752.
    assert_eq!(
        expected - 784 - (64 * 100 + 100) + (64 * 10 + 10),
        269_722 + 2_752
    );
    // 1 stem site and 2 per block; sites of a block named after it.
    assert_eq!(model.sites.len(), 19);
    let names: Vec<&str> = model.sites.iter().map(|s| s.layer_name.as_str()).collect();
    assert_eq!(
        &names[..5],
        ["conv1", "res1.conv1", "res1.out", "res2.conv1", "res2.out"]
    );
    let sums = &model.sites[8];
    assert_eq!(
        (sums.layer_name.as_str(), sums.neurons, sums.positions),
        ("res4.out", 32, 256)
    );
    let params = model.params();
    assert_eq!(params[sums.weight].name, "res4.conv2.weight");
    assert_eq!(params[sums.bias].name, "res4.bn2.bias");
    assert_eq!(params[model.sites[0].bias].name, "bn1.bias");
    assert_eq!(model.buffers().len(), 2 * (1 + 9 * 2 + 2));
}

#[test]
fn initialisation_depends_only_on_the_seed() {
    let arch = resolve("lenet", [1, 8, 8], 10).unwrap();
    let relu = activation_by_name("relu").unwrap();
    let a = Model::new(&arch, [1, 8, 8], 10, relu.clone(), 7).unwrap();
    let b = Model::new(&arch, [1, 8, 8], 10, relu.clone(), 7).unwrap();
    let c = Model::new(&arch, [1, 8, 8], 10, relu, 8).unwrap();
    assert_eq!(a.params()[0].value, b.params()[0].value);
    assert_ne!(a.params()[0].value, c.params()[0].value);
}

#[test]
fn batch_normalisation_needs_the_channels_of_the_layer_before() {
    let relu = activation_by_name("relu").unwrap();
    for spec in [
        "conv:4:3,flatten,bn,fc:10",
        "conv:4:3,act,maxpool:2,bn,act,fc:10",
    ] {
        let arch = crate::arch::parse(spec).unwrap();
        let built = Model::new(&arch, [1, 8, 8], 10, relu.clone(), 0);
        assert_eq!(built.is_ok(), spec.contains("maxpool"), "{spec}");
    }
}
