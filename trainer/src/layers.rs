//! The layers a network is built of. Each owns its parameters and has a forward that reads top to
//! bottom; [`crate::model::Model`] holds them in order. A new layer is one more type here, one
//! more [`Layer`] variant, and one arm in `Model::new`.

use dfdx::prelude::*;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::activation::{activate, Activation, CaptureRequest};
use crate::init::init_layer;
use crate::ops::batch_norm::{batch_norm, update_running, BatchStats, NormStats};
use crate::ops::conv::{conv2d, ConvGeometry};
use crate::ops::dropout::dropout;
use crate::ops::linear::{linear, StepTape};
use crate::ops::pool::{pool2d, PoolGeometry};
use crate::ops::residual::residual_add;
use crate::ops::Activations;
use crate::param::Param;
use necrosis_records::init::{BiasInit, InitScheme};

/// How one conv or dense layer's parameters are drawn (see [`crate::init`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerInit {
    pub scheme: InitScheme,
    pub bias: BiasInit,
}

/// Called at every activation site of a forward pass with (site, z, h).
pub type SiteObserver<'a> = dyn FnMut(usize, &[f32], &[f32]) + 'a;

/// What a training step's forward pass carries beyond its input: the key its dropout masks are
/// drawn from (see [`dropout_key`]), and the batch statistics its BN layers computed, in forward
/// order, which the step folds into the running statistics afterwards. A BN layer that saw one
/// value per channel (a 1-d BN on a last minibatch of one sample) leaves `None`: its variance
/// is undefined, so the running statistics skip that step (PyTorch refuses such a batch).
#[derive(Debug, Default)]
pub struct TrainPass {
    pub dropout_key: u64,
    pub batch_stats: Vec<Option<BatchStats>>,
}

/// The ChaCha stream of dropout keys, apart from the streams the seed already drives (the
/// initialisation on 0, epoch e's shuffle on e, the augmentation's in [2^62, 2^63), the probe's
/// last).
const DROPOUT_STREAM: u64 = 3 << 62;

/// The key of a training step's dropout masks: the `step`-th draw of the seed's dropout stream
/// for `epoch`, so a run's masks depend on its seed, the epoch and the optimiser step only, and a
/// resumed run draws what the uninterrupted one drew. Each dropout layer adds its index to it
/// (the op seeds ChaCha from the key, which scrambles neighbouring keys).
pub fn dropout_key(seed: u64, epoch: usize, step: u64) -> u64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(DROPOUT_STREAM + epoch as u64);
    rng.set_word_pos(2 * step as u128);
    rng.next_u64()
}

/// What every layer's forward gets besides its input: the network's activation, the observer of
/// its sites, what the sites' backward ops capture, and in a training step the pass state (BN
/// uses batch statistics and dropout is on only then).
pub struct Pass<'a, 'o> {
    pub activation: &'a Activation,
    pub observe: &'a mut SiteObserver<'o>,
    pub captures: Option<&'a [CaptureRequest]>,
    pub training: Option<&'a mut TrainPass>,
}

/// A 2-d convolution: `[out, in, k, k]` weights and one bias per output channel.
#[derive(Debug, Clone)]
pub struct Conv2d {
    pub name: String,
    pub weight: Param,
    pub bias: Param,
    pub geometry: ConvGeometry,
    /// False for the network's first layer: the data needs no gradient, and skipping it saves
    /// the largest col2im of the network.
    pub input_needs_grad: bool,
}

impl Conv2d {
    /// Weights drawn by `init` with fan_in = in·k·k and fan_out = out·k·k.
    pub fn new(
        dev: &Cpu,
        rng: &mut ChaCha8Rng,
        name: &str,
        geometry: ConvGeometry,
        input_needs_grad: bool,
        init: LayerInit,
    ) -> Self {
        let (out, fan_in) = (geometry.out_channels, geometry.patch_len());
        let fan_out = out * geometry.kernel * geometry.kernel;
        let shape = vec![out, geometry.in_channels, geometry.kernel, geometry.kernel];
        let (weights, biases) = init_layer(init.scheme, init.bias, rng, out, fan_in, fan_out);
        Self {
            name: name.to_string(),
            weight: Param::matrix(dev, format!("{name}.weight"), shape, out, fan_in, weights),
            bias: Param::vector(dev, format!("{name}.bias"), biases),
            geometry,
            input_needs_grad,
        }
    }

    pub fn forward<T: StepTape>(&self, x: Activations<T>) -> Activations<T> {
        conv2d(
            x,
            &self.weight,
            &self.bias,
            self.geometry,
            self.input_needs_grad,
        )
    }
}

/// A dense layer: `[out, in]` weights and one bias per unit.
#[derive(Debug, Clone)]
pub struct Linear {
    pub name: String,
    pub weight: Param,
    pub bias: Param,
}

impl Linear {
    /// Weights drawn by `init` with fan_in = in and fan_out = out.
    pub fn new(
        dev: &Cpu,
        rng: &mut ChaCha8Rng,
        name: &str,
        fan_in: usize,
        out: usize,
        init: LayerInit,
    ) -> Self {
        let (weights, biases) = init_layer(init.scheme, init.bias, rng, out, fan_in, out);
        Self {
            name: name.to_string(),
            weight: Param::matrix(
                dev,
                format!("{name}.weight"),
                vec![out, fan_in],
                out,
                fan_in,
                weights,
            ),
            bias: Param::vector(dev, format!("{name}.bias"), biases),
        }
    }

    pub fn forward<T: StepTape>(&self, x: Activations<T>) -> Activations<T> {
        linear(x, &self.weight, &self.bias)
    }
}

/// Max or average pooling of every channel plane.
#[derive(Debug, Clone)]
pub struct Pool2d {
    pub geometry: PoolGeometry,
}

impl Pool2d {
    pub fn forward<T: StepTape>(&self, x: Activations<T>) -> Activations<T> {
        pool2d(x, self.geometry)
    }
}

/// An activation site: the network's activation applied to the outputs of the conv or dense
/// layer before it, whose channels (or units) are the site's neurons.
#[derive(Debug, Clone)]
pub struct ActivationSite {
    pub site: usize,
    pub neurons: usize,
}

impl ActivationSite {
    /// The pass's observer sees the batch at this site; its capture request asks the backward
    /// op for the instruments' sums (see [`activate`]).
    pub fn forward<T: StepTape>(&self, x: Activations<T>, pass: &mut Pass) -> Activations<T> {
        // Seen as [neurons, positions], so that the statistics are per channel even after
        // flatten (a sample keeps each channel's values together).
        let shape = x.sample_shape;
        let positions = x.features() / self.neurons;
        let viewed = x.reshaped([self.neurons, positions, 1]);
        let site = self.site;
        let capture = pass.captures.map(|c| c[site].clone());
        let observe = &mut *pass.observe;
        let mut h = activate(
            viewed,
            pass.activation,
            &mut |z, hv| observe(site, z, hv),
            capture,
        );
        h.sample_shape = shape;
        h
    }
}

/// Batch normalisation of the channels (or units) before it, as PyTorch's BatchNorm1d/2d:
/// batch statistics in a training step, running statistics in evaluation and the probe pass.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    pub name: String,
    /// Scale γ, `<name>.weight`, initially 1.
    pub gamma: Param,
    /// Shift β, `<name>.bias`, initially 0.
    pub beta: Param,
    /// `<name>.running_mean` (initially 0) and `<name>.running_var` (initially 1).
    pub running_mean: Vec<f32>,
    pub running_var: Vec<f32>,
}

impl BatchNorm {
    pub fn new(dev: &Cpu, name: &str, channels: usize) -> Self {
        Self {
            name: name.to_string(),
            gamma: Param::vector(dev, format!("{name}.weight"), vec![1.0; channels]),
            beta: Param::vector(dev, format!("{name}.bias"), vec![0.0; channels]),
            running_mean: vec![0.0; channels],
            running_var: vec![1.0; channels],
        }
    }

    pub fn forward<T: StepTape>(&self, x: Activations<T>, pass: &mut Pass) -> Activations<T> {
        match pass.training.as_deref_mut() {
            Some(training) => {
                let values_per_channel = x.batch() * x.features() / self.gamma.len();
                let (y, stats) = batch_norm(x, &self.gamma, &self.beta, NormStats::Batch);
                let stats = stats.expect("a training pass returns its batch statistics");
                training
                    .batch_stats
                    .push((values_per_channel > 1).then_some(stats));
                y
            }
            None => {
                let running = NormStats::Running {
                    mean: &self.running_mean,
                    var: &self.running_var,
                };
                batch_norm(x, &self.gamma, &self.beta, running).0
            }
        }
    }

    /// The running statistics as model.safetensors stores them: (name, values).
    fn buffers(&self) -> [(String, &Vec<f32>); 2] {
        [
            (format!("{}.running_mean", self.name), &self.running_mean),
            (format!("{}.running_var", self.name), &self.running_var),
        ]
    }

    fn buffers_mut(&mut self) -> [(String, &mut Vec<f32>); 2] {
        [
            (
                format!("{}.running_mean", self.name),
                &mut self.running_mean,
            ),
            (format!("{}.running_var", self.name), &mut self.running_var),
        ]
    }
}

/// Inverted dropout; `index` (its place among the network's dropout layers) gives each layer
/// its own masks.
#[derive(Debug, Clone)]
pub struct Dropout {
    pub p: f32,
    pub index: u64,
}

impl Dropout {
    pub fn forward<T: StepTape>(&self, x: Activations<T>, pass: &mut Pass) -> Activations<T> {
        match pass.training.as_deref() {
            Some(training) if self.p > 0.0 => {
                dropout(x, self.p, training.dropout_key.wrapping_add(self.index))
            }
            _ => x,
        }
    }
}

/// A residual block (see [`necrosis_records::architecture::LayerSpec::Res`]).
#[derive(Debug, Clone)]
pub struct ResidualBlock {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub act1: ActivationSite,
    pub conv2: Conv2d,
    pub bn2: BatchNorm,
    /// The 1×1 projection and its BN when the block changes the shape; identity otherwise.
    pub projection: Option<(Conv2d, BatchNorm)>,
    pub act2: ActivationSite,
}

impl ResidualBlock {
    pub fn forward<T: StepTape>(&self, x: Activations<T>, pass: &mut Pass) -> Activations<T> {
        let (main, shortcut_in) = x.branch();
        let main = self.conv1.forward(main);
        let main = self.bn1.forward(main, pass);
        let main = self.act1.forward(main, pass);
        let main = self.conv2.forward(main);
        let main = self.bn2.forward(main, pass);
        let shortcut = match &self.projection {
            Some((conv, bn)) => bn.forward(conv.forward(shortcut_in), pass),
            None => shortcut_in,
        };
        let sum = residual_add(main, shortcut);
        self.act2.forward(sum, pass)
    }

    fn norms(&self) -> Vec<&BatchNorm> {
        let mut norms = vec![&self.bn1, &self.bn2];
        norms.extend(self.projection.as_ref().map(|(_, bn)| bn));
        norms
    }

    fn norms_mut(&mut self) -> Vec<&mut BatchNorm> {
        let mut norms = vec![&mut self.bn1, &mut self.bn2];
        norms.extend(self.projection.as_mut().map(|(_, bn)| bn));
        norms
    }
}

/// One layer of a network.
#[derive(Debug, Clone)]
pub enum Layer {
    Conv(Conv2d),
    Linear(Linear),
    /// Max or average pooling; global average pooling is average pooling over the whole plane.
    Pool(Pool2d),
    /// A sample's values read as one vector: free, since a batch is `(batch, features)` already.
    Flatten,
    Act(ActivationSite),
    Norm(BatchNorm),
    Dropout(Dropout),
    Residual(Box<ResidualBlock>),
}

impl Layer {
    pub fn forward<T: StepTape>(&self, x: Activations<T>, pass: &mut Pass) -> Activations<T> {
        match self {
            Layer::Conv(conv) => conv.forward(x),
            Layer::Linear(dense) => dense.forward(x),
            Layer::Pool(pool) => pool.forward(x),
            Layer::Flatten => {
                let features = x.features();
                x.reshaped([features, 1, 1])
            }
            Layer::Act(site) => site.forward(x, pass),
            Layer::Norm(bn) => bn.forward(x, pass),
            Layer::Dropout(d) => d.forward(x, pass),
            Layer::Residual(block) => block.forward(x, pass),
        }
    }

    /// The layer's parameters in the order of model.safetensors: weight then bias of conv and
    /// dense layers, scale then shift of BN; a residual block's in the order conv1, bn1, conv2,
    /// bn2, projection, projection BN.
    pub fn params(&self) -> Vec<&Param> {
        match self {
            Layer::Conv(c) => vec![&c.weight, &c.bias],
            Layer::Linear(l) => vec![&l.weight, &l.bias],
            Layer::Norm(bn) => vec![&bn.gamma, &bn.beta],
            Layer::Residual(b) => {
                let mut params = vec![
                    &b.conv1.weight,
                    &b.conv1.bias,
                    &b.bn1.gamma,
                    &b.bn1.beta,
                    &b.conv2.weight,
                    &b.conv2.bias,
                    &b.bn2.gamma,
                    &b.bn2.beta,
                ];
                if let Some((conv, bn)) = &b.projection {
                    params.extend([&conv.weight, &conv.bias, &bn.gamma, &bn.beta]);
                }
                params
            }
            _ => Vec::new(),
        }
    }

    pub fn params_mut(&mut self) -> Vec<&mut Param> {
        match self {
            Layer::Conv(c) => vec![&mut c.weight, &mut c.bias],
            Layer::Linear(l) => vec![&mut l.weight, &mut l.bias],
            Layer::Norm(bn) => vec![&mut bn.gamma, &mut bn.beta],
            Layer::Residual(b) => {
                let b = &mut **b;
                let mut params = vec![
                    &mut b.conv1.weight,
                    &mut b.conv1.bias,
                    &mut b.bn1.gamma,
                    &mut b.bn1.beta,
                    &mut b.conv2.weight,
                    &mut b.conv2.bias,
                    &mut b.bn2.gamma,
                    &mut b.bn2.beta,
                ];
                if let Some((conv, bn)) = &mut b.projection {
                    params.extend([
                        &mut conv.weight,
                        &mut conv.bias,
                        &mut bn.gamma,
                        &mut bn.beta,
                    ]);
                }
                params
            }
            _ => Vec::new(),
        }
    }

    /// The BN layers, in the order a forward pass meets them.
    pub fn norms(&self) -> Vec<&BatchNorm> {
        match self {
            Layer::Norm(bn) => vec![bn],
            Layer::Residual(b) => b.norms(),
            _ => Vec::new(),
        }
    }

    pub fn norms_mut(&mut self) -> Vec<&mut BatchNorm> {
        match self {
            Layer::Norm(bn) => vec![bn],
            Layer::Residual(b) => b.norms_mut(),
            _ => Vec::new(),
        }
    }
}

/// Every BN layer's running statistics, named as model.safetensors stores them.
pub fn buffers<'a>(norms: impl IntoIterator<Item = &'a BatchNorm>) -> Vec<(String, &'a Vec<f32>)> {
    norms.into_iter().flat_map(BatchNorm::buffers).collect()
}

pub fn buffers_mut<'a>(
    norms: impl IntoIterator<Item = &'a mut BatchNorm>,
) -> Vec<(String, &'a mut Vec<f32>)> {
    norms.into_iter().flat_map(BatchNorm::buffers_mut).collect()
}

/// Folds a training step's batch statistics into the running statistics of `norms` (in forward
/// order), as PyTorch: momentum 0.1, the unbiased batch variance.
pub fn fold_batch_stats<'a>(
    norms: impl IntoIterator<Item = &'a mut BatchNorm>,
    stats: &[Option<BatchStats>],
) {
    let norms: Vec<_> = norms.into_iter().collect();
    assert_eq!(norms.len(), stats.len(), "one batch statistic per BN layer");
    for (bn, batch) in norms.into_iter().zip(stats) {
        if let Some(batch) = batch {
            update_running(&mut bn.running_mean, &mut bn.running_var, batch);
        }
    }
}
