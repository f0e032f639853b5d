//! The network as `manifest.json` lists it: the ordered layers (`"architecture"`) and the
//! activation sites whose neurons the records describe (`"sites"`). With these and
//! `model.safetensors` anyone can rebuild the trained network.

use serde::{Deserialize, Serialize};

/// One layer, as manifest.json writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum LayerSpec {
    Conv {
        name: String,
        out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    },
    /// An activation site; `site` is its index, the `layer` column of neurons.parquet.
    Act {
        site: usize,
    },
    Maxpool {
        kernel: usize,
        stride: usize,
    },
    Avgpool {
        kernel: usize,
        stride: usize,
    },
    Flatten,
    Fc {
        name: String,
        out: usize,
    },
    /// Batch normalisation of the channels (or units) of the layer before it: parameters
    /// `<name>.weight` (scale γ) and `<name>.bias` (shift β), running statistics
    /// `<name>.running_mean` and `<name>.running_var`, as PyTorch's BatchNorm1d/2d names them.
    Bn {
        name: String,
    },
    /// Inverted dropout: in training each value is zeroed with probability `p` and the rest
    /// scaled by 1/(1 − p); the identity in evaluation and in the probe pass.
    Dropout {
        p: f32,
    },
    /// Global average pooling: each channel's plane becomes its mean.
    Gap,
    /// A residual block (He et al. 2016): `<name>.conv1` (3×3, `stride`, padding 1) →
    /// `<name>.bn1` → activation site `first_site` (layer name `<name>.conv1`) → `<name>.conv2`
    /// (3×3, padding 1) → `<name>.bn2`, plus the shortcut: the identity, or when the shape
    /// changes a 1×1 convolution `<name>.proj` (`stride`) → `<name>.proj_bn`; the sum then
    /// enters activation site `first_site + 1` (layer name `<name>.out`).
    Res {
        name: String,
        out: usize,
        stride: usize,
        first_site: usize,
    },
}

/// One activation site: the neurons of the conv or fc layer that feeds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    /// The site's index, the `layer` column of neurons.parquet.
    pub site: usize,
    /// The conv or fc layer whose outputs this site activates (`conv1`, `fc1`, ...).
    pub layer_name: String,
    /// Channels (conv) or units (fc).
    pub neurons: usize,
}
