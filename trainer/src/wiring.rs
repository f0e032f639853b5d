//! Which parameters make each activation site's neurons, and which read them: the map an
//! intervention needs to re-initialise a neuron (its incoming weights, bias and BN channel) and
//! to silence it (the weights of the next layer that reads it, through pooling, flatten and
//! dropout, which keep a channel's values together).
//!
//! Residual blocks, as docs/records.md states:
//! - `resK.conv1`'s neurons come from conv1 and bn1, and conv2 reads them;
//! - `resK.out`'s neurons are the sum of bn2(conv2) and the shortcut: its incoming weights are
//!   conv2's (and the projection's, when the block has one), its BN channels bn2's (and the
//!   projection BN's); the next block's conv1 and projection read it. An identity shortcut
//!   carries the neuron into the next block's sum unweighted, so no weight can silence that path
//!   (`through_identity`).

use necrosis_records::init::InitScheme;

use crate::layers::{Conv2d, Layer, Linear};
use crate::model::Initialisation;

/// A conv or dense layer: where its parameters are and how they were drawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedLayer {
    pub name: String,
    /// Indices into `Model::params()`: the `[out, fan_in]` weight matrix and the bias.
    pub weight: usize,
    pub bias: usize,
    pub out: usize,
    pub fan_in: usize,
    pub fan_out: usize,
    /// Its initialisation scheme (the output layer may have its own).
    pub scheme: InitScheme,
}

/// A BN layer's channel parameters and its place among the running statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NormRef {
    /// Index among the network's BN layers in forward order (`Model::buffers()` holds two
    /// entries per BN layer in that order).
    pub norm: usize,
    pub gamma: usize,
    pub beta: usize,
}

/// One activation site's neighbours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteWiring {
    /// Indices into [`Wiring::layers`] whose output row `neuron` feeds the site's neuron.
    pub incoming: Vec<usize>,
    /// BN layers between those and the site.
    pub norms: Vec<NormRef>,
    /// Indices into [`Wiring::layers`] that read the site's neurons as input channels: a weight
    /// row of such a layer holds `fan_in / neurons` consecutive values per channel (a conv's
    /// k×k kernel, or a flattened channel's positions).
    pub outgoing: Vec<usize>,
    /// Whether an identity shortcut also carries the neurons onwards.
    pub through_identity: bool,
}

/// Every weighted layer and every site's neighbours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wiring {
    pub layers: Vec<WeightedLayer>,
    pub sites: Vec<SiteWiring>,
}

/// The walk over the layers: parameter and BN positions, and the sites waiting for a reader.
struct Walk {
    wiring: Wiring,
    param: usize,
    norm: usize,
    /// What feeds the next site.
    incoming: Vec<usize>,
    norms: Vec<NormRef>,
    /// Sites whose reader is not yet met.
    pending: Vec<usize>,
}

impl Walk {
    fn weighted(
        &mut self,
        name: &str,
        rows: usize,
        fan_in: usize,
        fan_out: usize,
        scheme: InitScheme,
    ) -> usize {
        self.wiring.layers.push(WeightedLayer {
            name: name.to_string(),
            weight: self.param,
            bias: self.param + 1,
            out: rows,
            fan_in,
            fan_out,
            scheme,
        });
        self.param += 2;
        self.wiring.layers.len() - 1
    }

    fn conv(&mut self, conv: &Conv2d, scheme: InitScheme) -> usize {
        let g = conv.geometry;
        let k2 = g.kernel * g.kernel;
        self.weighted(
            &conv.name,
            g.out_channels,
            g.patch_len(),
            g.out_channels * k2,
            scheme,
        )
    }

    fn norm(&mut self) -> NormRef {
        let norm = NormRef {
            norm: self.norm,
            gamma: self.param,
            beta: self.param + 1,
        };
        self.param += 2;
        self.norm += 1;
        norm
    }

    /// `layer` reads the pending sites.
    fn read_by(&mut self, layer: usize) {
        for &site in &self.pending {
            self.wiring.sites[site].outgoing.push(layer);
        }
    }

    fn site(&mut self, site: usize) {
        let wiring = &mut self.wiring.sites[site];
        wiring.incoming = self.incoming.clone();
        wiring.norms = self.norms.clone();
        self.pending = vec![site];
    }
}

impl Wiring {
    /// The wiring of `layers` (a built network's, in order) with `sites` activation sites.
    pub fn of(layers: &[Layer], sites: usize, init: &Initialisation) -> Self {
        let last_linear = layers.iter().rposition(|l| matches!(l, Layer::Linear(_)));
        let mut walk = Walk {
            wiring: Wiring {
                layers: Vec::new(),
                sites: vec![SiteWiring::default(); sites],
            },
            param: 0,
            norm: 0,
            incoming: Vec::new(),
            norms: Vec::new(),
            pending: Vec::new(),
        };
        for (index, layer) in layers.iter().enumerate() {
            match layer {
                Layer::Conv(conv) => {
                    let at = walk.conv(conv, init.scheme);
                    walk.read_by(at);
                    walk.pending.clear();
                    (walk.incoming, walk.norms) = (vec![at], Vec::new());
                }
                Layer::Linear(linear) => {
                    let scheme = match init.output {
                        Some(output) if Some(index) == last_linear => output,
                        _ => init.scheme,
                    };
                    let at = linear_layer(&mut walk, linear, scheme);
                    walk.read_by(at);
                    walk.pending.clear();
                    (walk.incoming, walk.norms) = (vec![at], Vec::new());
                }
                Layer::Norm(_) => {
                    let norm = walk.norm();
                    walk.norms.push(norm);
                }
                Layer::Act(site) => walk.site(site.site),
                Layer::Pool(_) | Layer::Flatten | Layer::Dropout(_) => {}
                Layer::Residual(block) => {
                    let conv1 = walk.conv(&block.conv1, init.scheme);
                    walk.read_by(conv1);
                    let bn1 = walk.norm();
                    let conv2 = walk.conv(&block.conv2, init.scheme);
                    let bn2 = walk.norm();
                    let projection = block.projection.as_ref().map(|(conv, _)| {
                        let at = walk.conv(conv, init.scheme);
                        (at, walk.norm())
                    });
                    match projection {
                        Some((at, _)) => walk.read_by(at),
                        None => {
                            for &site in &walk.pending {
                                walk.wiring.sites[site].through_identity = true;
                            }
                        }
                    }
                    (walk.incoming, walk.norms) = (vec![conv1], vec![bn1]);
                    walk.site(block.act1.site);
                    walk.read_by(conv2);
                    walk.incoming = vec![conv2];
                    walk.norms = vec![bn2];
                    if let Some((at, norm)) = projection {
                        walk.incoming.push(at);
                        walk.norms.push(norm);
                    }
                    walk.site(block.act2.site);
                }
            }
        }
        walk.wiring
    }
}

fn linear_layer(walk: &mut Walk, linear: &Linear, scheme: InitScheme) -> usize {
    let shape = &linear.weight.shape;
    walk.weighted(&linear.name, shape[0], shape[1], shape[0], scheme)
}
