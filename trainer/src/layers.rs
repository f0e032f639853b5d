//! The layers a network is built of. Each owns its parameters and has a forward that reads top to
//! bottom; [`crate::model::Model`] holds them in order. A new layer is one more type here, one
//! more [`Layer`] variant, and one arm in `Model::new`.

use dfdx::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::activation::{activate, Activation, CaptureRequest};
use crate::ops::conv::{conv2d, ConvGeometry};
use crate::ops::linear::{linear, StepTape};
use crate::ops::pool::{pool2d, PoolGeometry};
use crate::ops::Activations;
use crate::param::Param;

/// He (Kaiming) uniform weights, U(−√(6/fan_in), √(6/fan_in)), drawn from `rng` in order.
fn he_uniform(rng: &mut ChaCha8Rng, len: usize, fan_in: usize) -> Vec<f32> {
    let bound = (6.0 / fan_in as f64).sqrt() as f32;
    (0..len).map(|_| rng.gen_range(-bound..bound)).collect()
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
    /// He-uniform weights with fan_in = in·k·k, zero biases.
    pub fn new(
        dev: &Cpu,
        rng: &mut ChaCha8Rng,
        name: &str,
        geometry: ConvGeometry,
        input_needs_grad: bool,
    ) -> Self {
        let (out, fan_in) = (geometry.out_channels, geometry.patch_len());
        let shape = vec![out, geometry.in_channels, geometry.kernel, geometry.kernel];
        Self {
            name: name.to_string(),
            weight: Param::matrix(
                dev,
                format!("{name}.weight"),
                shape,
                out,
                fan_in,
                he_uniform(rng, out * fan_in, fan_in),
            ),
            bias: Param::vector(dev, format!("{name}.bias"), vec![0.0; out]),
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
    /// He-uniform weights with fan_in = in, zero biases.
    pub fn new(dev: &Cpu, rng: &mut ChaCha8Rng, name: &str, fan_in: usize, out: usize) -> Self {
        Self {
            name: name.to_string(),
            weight: Param::matrix(
                dev,
                format!("{name}.weight"),
                vec![out, fan_in],
                out,
                fan_in,
                he_uniform(rng, out * fan_in, fan_in),
            ),
            bias: Param::vector(dev, format!("{name}.bias"), vec![0.0; out]),
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
    /// `observe(z, h)` sees the batch at this site; `capture` asks the backward op for the
    /// instruments' sums (see [`activate`]).
    pub fn forward<T: StepTape>(
        &self,
        x: Activations<T>,
        f: &Activation,
        observe: &mut dyn FnMut(&[f32], &[f32]),
        capture: Option<CaptureRequest>,
    ) -> Activations<T> {
        // Seen as [neurons, positions], so that the statistics are per channel even after
        // flatten (a sample keeps each channel's values together).
        let shape = x.sample_shape;
        let viewed = Activations {
            sample_shape: [self.neurons, x.features() / self.neurons, 1],
            tensor: x.tensor,
        };
        let mut h = activate(viewed, f, observe, capture);
        h.sample_shape = shape;
        h
    }
}

/// One layer of a network.
#[derive(Debug, Clone)]
pub enum Layer {
    Conv(Conv2d),
    Linear(Linear),
    Pool(Pool2d),
    /// A sample's values read as one vector: free, since a batch is `(batch, features)` already.
    Flatten,
    Act(ActivationSite),
}

impl Layer {
    /// The layer's parameters: weight then bias for conv and dense layers, none otherwise.
    pub fn params(&self) -> Vec<&Param> {
        match self {
            Layer::Conv(c) => vec![&c.weight, &c.bias],
            Layer::Linear(l) => vec![&l.weight, &l.bias],
            _ => Vec::new(),
        }
    }

    pub fn params_mut(&mut self) -> Vec<&mut Param> {
        match self {
            Layer::Conv(c) => vec![&mut c.weight, &mut c.bias],
            Layer::Linear(l) => vec![&mut l.weight, &mut l.bias],
            _ => Vec::new(),
        }
    }
}
