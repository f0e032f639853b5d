//! A CNN built at run time from a list of [`LayerSpec`]s: its layers ([`crate::layers`], each
//! owning its parameters, drawn from the run's seed by the run's initialisation), its activation
//! sites, and its forward pass.

use anyhow::{bail, Context, Result};
use dfdx::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::activation::{Activation, CaptureRequest};
use crate::arch::LayerSpec;
use crate::layers::{
    self, ActivationSite, BatchNorm, Conv2d, Dropout, Layer, LayerInit, Linear, Pass, Pool2d,
    ResidualBlock, TrainPass,
};
use crate::ops::conv::ConvGeometry;
use crate::ops::linear::StepTape;
use crate::ops::pool::{PoolGeometry, PoolKind};
use crate::ops::{Activations, Tensor2};
use crate::param::Param;
use crate::wiring::Wiring;
use necrosis_records::init::{BiasInit, InitScheme};

pub use crate::layers::SiteObserver;

/// One activation site: the neurons of the layer that feeds it, and where its parameters are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteInfo {
    pub site: usize,
    /// The conv or fc layer whose outputs this site activates (`conv1`, `fc1`, ...); inside a
    /// residual block `<block>.conv1`, and `<block>.out` for the block's sum.
    pub layer_name: String,
    /// Channels (conv) or units (fc).
    pub neurons: usize,
    /// Spatial positions per sample (1 for a dense layer).
    pub positions: usize,
    /// Indices into [`Model::params`] (and the hooks' parameter list) of the neurons' incoming
    /// weights and their bias: the conv or fc layer's own, except that a site fed by BN has the
    /// BN's shift β as its bias, and a block's sum site has the block's conv2 and bn2.
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

/// How a network's parameters are drawn: one scheme and bias rule for every conv and dense layer,
/// optionally another scheme for the output layer.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Initialisation {
    pub scheme: InitScheme,
    pub bias: BiasInit,
    pub output: Option<InitScheme>,
}

/// The network: its layers in order (each owning its parameters) and its activation sites.
#[derive(Debug, Clone)]
pub struct Model {
    layers: Vec<Layer>,
    pub sites: Vec<SiteInfo>,
    /// How the parameters were drawn: interventions re-draw neurons the same way.
    pub init: Initialisation,
    /// Which parameters make and read each site's neurons.
    pub wiring: Wiring,
    pub activation: Activation,
    pub input_shape: [usize; 3],
    pub classes: usize,
}

/// The state of building a network layer by layer.
struct Builder<'a> {
    dev: Cpu,
    rng: ChaCha8Rng,
    init: &'a Initialisation,
    shape: [usize; 3],
    params: usize,
    sites: Vec<SiteInfo>,
    /// The layer whose neurons the next activation site sees: name, weight index, bias index,
    /// neurons.
    feeding: Option<(String, usize, usize, usize)>,
    dropouts: u64,
}

impl Builder<'_> {
    fn conv(
        &mut self,
        name: &str,
        out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Conv2d> {
        let geometry = ConvGeometry::new(self.shape, out, kernel, stride, padding)
            .with_context(|| format!("layer {name} on input {:?}", self.shape))?;
        self.shape = geometry.out_shape();
        self.feeding = Some((name.to_string(), self.params, self.params + 1, out));
        let init = LayerInit {
            scheme: self.init.scheme,
            bias: self.init.bias,
        };
        let conv = Conv2d::new(
            &self.dev,
            &mut self.rng,
            name,
            geometry,
            self.params > 0,
            init,
        );
        self.params += 2;
        Ok(conv)
    }

    fn norm(&mut self, name: &str) -> BatchNorm {
        let channels = self.shape[0];
        // The sites after it see β as their neurons' bias.
        if let Some(feeding) = &mut self.feeding {
            feeding.2 = self.params + 1;
        }
        self.params += 2;
        BatchNorm::new(&self.dev, name, channels)
    }

    fn site(&mut self, site: usize) -> Result<ActivationSite> {
        let (layer_name, weight, bias, neurons) = self
            .feeding
            .clone()
            .context("an activation site must follow a conv or fc layer")?;
        // The neurons are the layer's output channels even after pooling or flatten, which
        // keep each channel's positions together in a sample.
        self.sites.push(SiteInfo {
            site,
            layer_name,
            neurons,
            positions: self.shape.iter().product::<usize>() / neurons,
            weight,
            bias,
        });
        Ok(ActivationSite { site, neurons })
    }

    fn pool(&mut self, kind: PoolKind, kernel: usize, stride: usize) -> Result<Pool2d> {
        let geometry = PoolGeometry::new(kind, self.shape, kernel, stride)
            .with_context(|| format!("pooling after input {:?}", self.shape))?;
        self.shape = geometry.out_shape();
        Ok(Pool2d { geometry })
    }

    fn residual(
        &mut self,
        name: &str,
        out: usize,
        stride: usize,
        first_site: usize,
    ) -> Result<ResidualBlock> {
        let input = self.shape;
        let conv1 = self.conv(&format!("{name}.conv1"), out, 3, stride, 1)?;
        let bn1 = self.norm(&format!("{name}.bn1"));
        let act1 = self.site(first_site)?;
        let conv2 = self.conv(&format!("{name}.conv2"), out, 3, 1, 1)?;
        let bn2 = self.norm(&format!("{name}.bn2"));
        let main_shape = self.shape;
        let projection = if input == main_shape {
            None
        } else {
            // The shortcut's 1×1 conv reads the block's input.
            let feeding = self.feeding.clone();
            self.shape = input;
            let conv = self.conv(&format!("{name}.proj"), out, 1, stride, 0)?;
            let bn = self.norm(&format!("{name}.proj_bn"));
            if self.shape != main_shape {
                bail!(
                    "block {name}: the shortcut gives {:?} but the block {main_shape:?}",
                    self.shape
                );
            }
            self.feeding = feeding;
            Some((conv, bn))
        };
        let act2 = self.site(first_site + 1)?;
        self.sites.last_mut().expect("just added").layer_name = format!("{name}.out");
        Ok(ResidualBlock {
            conv1,
            bn1,
            act1,
            conv2,
            bn2,
            projection,
            act2,
        })
    }
}

impl Model {
    /// Builds the network with today's default initialisation (He-uniform weights, zero
    /// biases); see [`Model::with_init`].
    pub fn new(
        arch: &[LayerSpec],
        input_shape: [usize; 3],
        classes: usize,
        activation: Activation,
        seed: u64,
    ) -> Result<Self> {
        Self::with_init(
            arch,
            input_shape,
            classes,
            activation,
            seed,
            &Initialisation::default(),
        )
    }

    /// Builds the network and initialises it: every conv and dense layer's parameters drawn by
    /// `init` (the last dense layer by `init.output` when given) in layer order from ChaCha8
    /// seeded with `seed`; BN scales 1 and shifts 0.
    pub fn with_init(
        arch: &[LayerSpec],
        input_shape: [usize; 3],
        classes: usize,
        activation: Activation,
        seed: u64,
        init: &Initialisation,
    ) -> Result<Self> {
        let mut b = Builder {
            dev: Cpu::default(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            init,
            shape: input_shape,
            params: 0,
            sites: Vec::new(),
            feeding: None,
            dropouts: 0,
        };
        let last_fc = arch.iter().rposition(|l| matches!(l, LayerSpec::Fc { .. }));
        let mut layers = Vec::new();
        for (index, spec) in arch.iter().enumerate() {
            let layer = match spec {
                LayerSpec::Conv {
                    name,
                    out,
                    kernel,
                    stride,
                    padding,
                } => Layer::Conv(b.conv(name, *out, *kernel, *stride, *padding)?),
                LayerSpec::Act { site } => Layer::Act(b.site(*site)?),
                LayerSpec::Maxpool { kernel, stride } => {
                    Layer::Pool(b.pool(PoolKind::Max, *kernel, *stride)?)
                }
                LayerSpec::Avgpool { kernel, stride } => {
                    Layer::Pool(b.pool(PoolKind::Avg, *kernel, *stride)?)
                }
                LayerSpec::Gap => {
                    let [_, h, w] = b.shape;
                    if h != w {
                        bail!("gap needs square planes, got {:?}", b.shape);
                    }
                    Layer::Pool(b.pool(PoolKind::Avg, h, h)?)
                }
                LayerSpec::Flatten => {
                    b.shape = [b.shape.iter().product(), 1, 1];
                    Layer::Flatten
                }
                LayerSpec::Fc { name, out } => {
                    let fan_in: usize = b.shape.iter().product();
                    b.shape = [*out, 1, 1];
                    b.feeding = Some((name.clone(), b.params, b.params + 1, *out));
                    let scheme = match init.output {
                        Some(output) if Some(index) == last_fc => output,
                        _ => init.scheme,
                    };
                    let layer_init = LayerInit {
                        scheme,
                        bias: init.bias,
                    };
                    b.params += 2;
                    Layer::Linear(Linear::new(
                        &b.dev, &mut b.rng, name, fan_in, *out, layer_init,
                    ))
                }
                LayerSpec::Bn { name } => {
                    // Its channels must be the neurons of the layer before it, whose sites then
                    // report β as their bias (not the values of a flattened conv output).
                    match &b.feeding {
                        Some((_, _, _, neurons)) if *neurons == b.shape[0] => {}
                        _ => bail!(
                            "{name}: batch normalisation must follow a conv or fc layer (or pooling after a conv), got input {:?}",
                            b.shape
                        ),
                    }
                    Layer::Norm(b.norm(name))
                }
                LayerSpec::Dropout { p } => {
                    b.dropouts += 1;
                    Layer::Dropout(Dropout {
                        p: *p,
                        index: b.dropouts,
                    })
                }
                LayerSpec::Res {
                    name,
                    out,
                    stride,
                    first_site,
                } => Layer::Residual(Box::new(b.residual(name, *out, *stride, *first_site)?)),
            };
            layers.push(layer);
        }
        anyhow::ensure!(
            b.shape == [classes, 1, 1],
            "the network ends with {:?}, expected {classes} outputs",
            b.shape
        );
        let wiring = Wiring::of(&layers, b.sites.len(), init);
        let model = Self {
            layers,
            sites: b.sites,
            init: *init,
            wiring,
            activation,
            input_shape,
            classes,
        };
        debug_assert_eq!(model.params().len(), b.params);
        Ok(model)
    }

    /// Runs the network on a batch `(n, c·h·w)` and returns the logits `(n, classes)`.
    ///
    /// `observe(site, z, h)` is called at every activation site; with a tape, `captures[site]`
    /// (when given) says what the site's backward op captures for the instruments. `training`
    /// is a training step's pass state: BN then normalises with the batch's statistics (and
    /// leaves them in it) and dropout is on; without it the pass is in evaluation mode.
    pub fn forward<T: StepTape>(
        &self,
        input: Tensor2<T>,
        observe: &mut SiteObserver,
        captures: Option<&[CaptureRequest]>,
        training: Option<&mut TrainPass>,
    ) -> Tensor2<T> {
        let mut pass = Pass {
            activation: &self.activation,
            observe,
            captures,
            training,
        };
        let mut x = Activations::new(input, self.input_shape);
        for layer in &self.layers {
            x = layer.forward(x, &mut pass);
        }
        x.into_tensor()
    }

    /// Every parameter, in layer order (the order of model.safetensors, the checkpoint and the
    /// hooks' parameter list; see [`Layer::params`]).
    pub fn params(&self) -> Vec<&Param> {
        self.layers.iter().flat_map(Layer::params).collect()
    }

    pub fn params_mut(&mut self) -> Vec<&mut Param> {
        self.layers.iter_mut().flat_map(Layer::params_mut).collect()
    }

    /// The BN layers' running statistics, `(<name>.running_mean | .running_var, values)`, saved
    /// beside the parameters in model.safetensors and the checkpoint.
    pub fn buffers(&self) -> Vec<(String, &Vec<f32>)> {
        layers::buffers(self.layers.iter().flat_map(Layer::norms))
    }

    pub fn buffers_mut(&mut self) -> Vec<(String, &mut Vec<f32>)> {
        layers::buffers_mut(self.layers.iter_mut().flat_map(Layer::norms_mut))
    }

    /// Folds a training step's BN batch statistics into the running statistics.
    pub fn update_running_stats(&mut self, pass: &TrainPass) {
        layers::fold_batch_stats(
            self.layers.iter_mut().flat_map(Layer::norms_mut),
            &pass.batch_stats,
        );
    }

    /// Total trainable values.
    pub fn parameter_count(&self) -> usize {
        self.params().iter().map(|p| p.len()).sum()
    }
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
