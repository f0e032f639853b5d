//! The network as `manifest.json` lists it: the ordered layers (`"architecture"`) and the
//! activation sites whose neurons the records describe (`"sites"`). With these and
//! `model.safetensors` anyone can rebuild the trained network.

use serde::{Deserialize, Serialize};

/// One layer, as manifest.json writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
