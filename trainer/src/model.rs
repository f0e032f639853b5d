//! A CNN built at run time from a list of [`LayerSpec`]s: its layers ([`crate::layers`], each
//! owning its He-uniform parameters drawn from the run's seed), its activation sites, and its
//! forward pass.

use anyhow::{Context, Result};
use dfdx::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::activation::{Activation, CaptureRequest};
use crate::arch::LayerSpec;
use crate::layers::{ActivationSite, Conv2d, Layer, Linear, Pool2d};
use crate::ops::conv::ConvGeometry;
use crate::ops::linear::StepTape;
use crate::ops::pool::{PoolGeometry, PoolKind};
use crate::ops::{Activations, Tensor2};
use crate::param::Param;

/// One activation site: the neurons of the layer that feeds it, and where its parameters are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteInfo {
    pub site: usize,
    /// The conv or fc layer whose outputs this site activates (`conv1`, `fc1`, ...).
    pub layer_name: String,
    /// Channels (conv) or units (fc).
    pub neurons: usize,
    /// Spatial positions per sample (1 for a dense layer).
    pub positions: usize,
    /// Indices into [`Model::params`] (and the hooks' parameter list) of that layer's weight
    /// and bias.
    pub weight: usize,
    pub bias: usize,
}

impl SiteInfo {
    /// The site as manifest.json lists it.
    pub fn record(&self) -> necrosis_records::architecture::Site {
        necrosis_records::architecture::Site {
            site: self.site,
            layer_name: self.layer_name.clone(),
            neurons: self.neurons,
        }
    }
}

/// Called at every activation site of a forward pass with (site, z, h).
pub type SiteObserver<'a> = dyn FnMut(usize, &[f32], &[f32]) + 'a;

/// The network: its layers in order (each owning its parameters) and its activation sites.
#[derive(Debug, Clone)]
pub struct Model {
    layers: Vec<Layer>,
    pub sites: Vec<SiteInfo>,
    pub activation: Activation,
    pub input_shape: [usize; 3],
    pub classes: usize,
}

impl Model {
    /// Builds the network and initialises it: weights He (Kaiming) uniform,
    /// U(−√(6/fan_in), √(6/fan_in)) with fan_in = in·k·k (conv) or in (fc), drawn in layer order
    /// from ChaCha8 seeded with `seed`; biases zero, so no neuron starts dead or alive by its bias.
    pub fn new(
        arch: &[LayerSpec],
        input_shape: [usize; 3],
        classes: usize,
        activation: Activation,
        seed: u64,
    ) -> Result<Self> {
        let dev = Cpu::default();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut shape = input_shape;
        let mut layers = Vec::new();
        let mut sites = Vec::new();
        let mut params = 0;
        // The layer whose neurons the next activation site sees: name, weight index, neurons.
        let mut last_neuron_layer: Option<(String, usize, usize)> = None;
        for spec in arch {
            let layer = match spec {
                LayerSpec::Conv {
                    name,
                    out,
                    kernel,
                    stride,
                    padding,
                } => {
                    let geometry = ConvGeometry::new(shape, *out, *kernel, *stride, *padding)
                        .with_context(|| format!("layer {name} on input {shape:?}"))?;
                    shape = geometry.out_shape();
                    last_neuron_layer = Some((name.clone(), params, *out));
                    Layer::Conv(Conv2d::new(&dev, &mut rng, name, geometry, params > 0))
                }
                LayerSpec::Act { site } => {
                    let (layer_name, weight, neurons) = last_neuron_layer
                        .clone()
                        .context("an activation site must follow a conv or fc layer")?;
                    // The neurons are the layer's output channels even after pooling or
                    // flatten, which keep each channel's positions together in a sample.
                    sites.push(SiteInfo {
                        site: *site,
                        layer_name,
                        neurons,
                        positions: shape.iter().product::<usize>() / neurons,
                        weight,
                        bias: weight + 1,
                    });
                    Layer::Act(ActivationSite {
                        site: *site,
                        neurons,
                    })
                }
                LayerSpec::Maxpool { kernel, stride } | LayerSpec::Avgpool { kernel, stride } => {
                    let kind = if matches!(spec, LayerSpec::Maxpool { .. }) {
                        PoolKind::Max
                    } else {
                        PoolKind::Avg
                    };
                    let geometry = PoolGeometry::new(kind, shape, *kernel, *stride)
                        .with_context(|| format!("pooling after input {shape:?}"))?;
                    shape = geometry.out_shape();
                    Layer::Pool(Pool2d { geometry })
                }
                LayerSpec::Flatten => {
                    shape = [shape.iter().product(), 1, 1];
                    Layer::Flatten
                }
                LayerSpec::Fc { name, out } => {
                    let fan_in: usize = shape.iter().product();
                    shape = [*out, 1, 1];
                    last_neuron_layer = Some((name.clone(), params, *out));
                    Layer::Linear(Linear::new(&dev, &mut rng, name, fan_in, *out))
                }
            };
            params += layer.params().len();
            layers.push(layer);
        }
        anyhow::ensure!(
            shape == [classes, 1, 1],
            "the network ends with {shape:?}, expected {classes} outputs"
        );
        Ok(Self {
            layers,
            sites,
            activation,
            input_shape,
            classes,
        })
    }

    /// Runs the network on a batch `(n, c·h·w)` and returns the logits `(n, classes)`.
    ///
    /// `observe(site, z, h)` is called at every activation site; with a tape, `captures[site]`
    /// (when given) says what the site's backward op captures for the instruments.
    pub fn forward<T: StepTape>(
        &self,
        input: Tensor2<T>,
        observe: &mut SiteObserver,
        captures: Option<&[CaptureRequest]>,
    ) -> Tensor2<T> {
        let mut x = Activations {
            tensor: input,
            sample_shape: self.input_shape,
        };
        for layer in &self.layers {
            x = match layer {
                Layer::Conv(conv) => conv.forward(x),
                Layer::Linear(dense) => dense.forward(x),
                Layer::Pool(pool) => pool.forward(x),
                Layer::Flatten => Activations {
                    sample_shape: [x.features(), 1, 1],
                    tensor: x.tensor,
                },
                Layer::Act(site) => site.forward(
                    x,
                    &self.activation,
                    &mut |z, h| observe(site.site, z, h),
                    captures.map(|c| c[site.site].clone()),
                ),
            };
        }
        x.tensor
    }

    /// Every parameter, in layer order: weight then bias of each conv and dense layer (the
    /// order of model.safetensors, the checkpoint and the hooks' parameter list).
    pub fn params(&self) -> Vec<&Param> {
        self.layers.iter().flat_map(Layer::params).collect()
    }

    pub fn params_mut(&mut self) -> Vec<&mut Param> {
        self.layers.iter_mut().flat_map(Layer::params_mut).collect()
    }

    /// Total trainable values.
    pub fn parameter_count(&self) -> usize {
        self.params().iter().map(|p| p.len()).sum()
    }
}

#[cfg(test)]
mod tests {
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

    /// The autodiff gradient of the whole network (conv, pool, activation sites, dense layers,
    /// cross-entropy) against central differences of the loss, for every parameter tensor.
    #[test]
    fn whole_network_gradient_matches_finite_differences() {
        use crate::ops::testing::pseudo_random;
        use crate::ops::{tensor_values, Tape};
        let (input, classes, n) = ([2, 7, 7], 3, 4);
        let arch = crate::arch::resolve(
            "conv:3:3:1:1,act,maxpool:2,conv:4:2,act,avgpool:2,fc:5,act,fc:3",
            input,
            classes,
        )
        .unwrap();
        for activation in ["softplus", "relu-softsign"] {
            let mut model = Model::new(
                &arch,
                input,
                classes,
                activation_by_name(activation).unwrap(),
                5,
            )
            .unwrap();
            for (i, p) in model.params_mut().into_iter().enumerate() {
                // Non-zero biases, so that every bias gradient is exercised.
                if p.shape.len() == 1 {
                    let values = pseudo_random(p.len(), 100 + i as u64)
                        .iter()
                        .map(|v| v * 0.1)
                        .collect::<Vec<_>>();
                    p.set_values(&values).unwrap();
                }
            }
            let x = pseudo_random(n * 2 * 7 * 7, 42);
            let labels = [0usize, 2, 1, 2];
            let dev = Cpu::default();
            let loss_of = |model: &Model| -> f64 {
                let logits = tensor_values(&model.forward(
                    dev.tensor_from_vec(x.clone(), (n, 98)),
                    &mut |_, _, _| {},
                    None,
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
            let logits = model.forward(
                dev.tensor_from_vec(x.clone(), (n, 98)).retaped::<Tape>(),
                &mut |_, _, _| {},
                None,
            );
            let mut one_hot = vec![0.0f32; n * classes];
            for (i, &l) in labels.iter().enumerate() {
                one_hot[i * classes + l] = 1.0;
            }
            let loss =
                cross_entropy_with_logits_loss(logits, dev.tensor_from_vec(one_hot, (n, classes)));
            assert!(
                (loss.array() as f64 - loss_of(&model)).abs() < 1e-5,
                "dfdx loss equals ours"
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
                        "{activation} {}[{j}]: analytic {} numeric {numeric}",
                        model.params()[pi].name,
                        grad[j]
                    );
                }
            }
        }
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
}
