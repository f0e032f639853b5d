//! A run's configuration: everything that decides what is trained, as `manifest.json` stores it
//! under `"config"` and `resume` reads it back. Data only, with the checks every reader and
//! writer shares; training and data loading live in the trainer.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::augment::Augment;
use crate::init::{BiasInit, InitScheme};
use crate::intervention::Intervention;

/// A setting that cannot make a run: the setting's manifest key and what is wrong. Callers that
/// took the setting from a flag name the flag instead (`--batch-size` for `batch_size`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key} {problem}")]
pub struct InvalidConfig {
    /// The key under `"config"` (`"batch_size"`, `"momentum"`, ...).
    pub key: &'static str,
    /// What is wrong, e.g. "must be at least 1".
    pub problem: String,
}

fn invalid(key: &'static str, problem: impl Into<String>) -> InvalidConfig {
    InvalidConfig {
        key,
        problem: problem.into(),
    }
}

/// Which dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// The UCI optical digits (8×8 grey, 1797 samples), compiled into the binary.
    Digits,
    /// MNIST as the four official IDX files (28×28 grey, 10 classes).
    Mnist,
    /// Fashion-MNIST as the four IDX files (28×28 grey, 10 classes).
    FashionMnist,
    /// Any IDX image set laid out like MNIST; classes = largest label + 1.
    Idx,
    /// CIFAR-10 binary version (32×32 RGB, 10 classes).
    Cifar10,
    /// CIFAR-100 binary version, fine labels (32×32 RGB, 100 classes).
    Cifar100,
    /// One sub-folder of PNG/JPEG images per class (Caltech-256, PI100 layout), or a folder of
    /// images named `<name>_<label>.<ext>`.
    Folder,
    /// Generated class prototypes plus noise, any size, for speed and scale tests.
    Synthetic,
}

impl DatasetKind {
    /// Every kind, in the order the valid names are listed in messages.
    pub const ALL: [DatasetKind; 8] = [
        DatasetKind::Digits,
        DatasetKind::Mnist,
        DatasetKind::FashionMnist,
        DatasetKind::Idx,
        DatasetKind::Cifar10,
        DatasetKind::Cifar100,
        DatasetKind::Folder,
        DatasetKind::Synthetic,
    ];

    /// The name used on the command line and in manifests, e.g. `"fashion-mnist"`.
    pub fn name(&self) -> &'static str {
        match self {
            DatasetKind::Digits => "digits",
            DatasetKind::Mnist => "mnist",
            DatasetKind::FashionMnist => "fashion-mnist",
            DatasetKind::Idx => "idx",
            DatasetKind::Cifar10 => "cifar10",
            DatasetKind::Cifar100 => "cifar100",
            DatasetKind::Folder => "folder",
            DatasetKind::Synthetic => "synthetic",
        }
    }

    /// Whether this kind reads files from [`DatasetSpec::data_dir`].
    pub fn needs_data_dir(&self) -> bool {
        !matches!(self, DatasetKind::Digits | DatasetKind::Synthetic)
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing a [`DatasetKind`] from a name that is not one of the valid names.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unknown dataset \"{given}\"; valid names: digits, mnist, fashion-mnist, idx, cifar10, cifar100, folder, synthetic")]
pub struct UnknownDatasetKind {
    /// The name that was given.
    pub given: String,
}

impl FromStr for DatasetKind {
    type Err = UnknownDatasetKind;

    /// Parses the names printed by [`DatasetKind::name`]; exact, lower case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DatasetKind::ALL
            .into_iter()
            .find(|kind| kind.name() == s)
            .ok_or_else(|| UnknownDatasetKind {
                given: s.to_string(),
            })
    }
}

/// Which dataset to load, from where, and the few options some loaders take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetSpec {
    /// Which dataset. Named `dataset` when serialised, as manifest.json's `config.dataset`.
    #[serde(rename = "dataset")]
    pub kind: DatasetKind,
    /// Folder holding the files; required for every kind but `digits` and `synthetic`.
    pub data_dir: Option<PathBuf>,
    /// `folder`: images are resized to `image_size × image_size` (default 32).
    /// `synthetic`: the side of the generated images (default 28). Ignored by the others,
    /// whose files fix the size.
    pub image_size: Option<usize>,
    /// `folder`: load images as one grey channel instead of three RGB channels.
    #[serde(default)]
    pub grayscale: bool,
    /// `synthetic`: number of training samples (default 4096); the test split has a quarter
    /// of that, rounded up.
    pub synthetic_samples: Option<usize>,
    /// `synthetic`: channels per generated image, 1 to [`MAX_SYNTHETIC_CHANNELS`] (default 1,
    /// grey). Rejected for every other kind, whose files fix the channels. Left out of the
    /// JSON when unset, so that manifests and run identities written before it existed are
    /// unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic_channels: Option<usize>,
}

/// The most channels a synthetic image may have (RGBA).
pub const MAX_SYNTHETIC_CHANNELS: usize = 4;

impl DatasetSpec {
    /// A spec for `kind` with no data folder and every option at its default.
    pub fn new(kind: DatasetKind) -> Self {
        DatasetSpec {
            kind,
            data_dir: None,
            image_size: None,
            grayscale: false,
            synthetic_samples: None,
            synthetic_channels: None,
        }
    }

    /// Rejects options that cannot make a dataset, naming the key: `synthetic_channels`
    /// outside 1..=[`MAX_SYNTHETIC_CHANNELS`], or given for a kind other than `synthetic`.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if let Some(channels) = self.synthetic_channels {
            if self.kind != DatasetKind::Synthetic {
                return Err(invalid(
                    "synthetic_channels",
                    format!(
                        "applies only to the synthetic dataset, not to {}",
                        self.kind
                    ),
                ));
            }
            if !(1..=MAX_SYNTHETIC_CHANNELS).contains(&channels) {
                return Err(invalid(
                    "synthetic_channels",
                    format!("must be between 1 and {MAX_SYNTHETIC_CHANNELS}, got {channels}"),
                ));
            }
        }
        Ok(())
    }
}

/// Per-channel mean and standard deviation, applied as `(x - mean) / std` after pixels are
/// scaled to `[0, 1]`; both computed over the training split.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Normalization {
    /// Mean of each channel over the training split, in `[0, 1]` pixel units.
    pub mean: Vec<f32>,
    /// Population standard deviation of each channel over the training split, at least `1e-6`.
    pub std: Vec<f32>,
}

/// Which optimiser and its hyper-parameters (the learning rate is set per step by the schedule).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OptimizerConfig {
    Sgd {
        momentum: f32,
        weight_decay: f32,
    },
    Adam {
        beta1: f32,
        beta2: f32,
        eps: f32,
        weight_decay: f32,
    },
}

impl OptimizerConfig {
    /// SGD with momentum 0.9, the study's setting.
    pub fn sgd() -> Self {
        OptimizerConfig::Sgd {
            momentum: 0.9,
            weight_decay: 0.0,
        }
    }

    /// Adam with PyTorch's defaults.
    pub fn adam() -> Self {
        OptimizerConfig::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }

    pub fn with_weight_decay(self, wd: f32) -> Self {
        match self {
            OptimizerConfig::Sgd { momentum, .. } => OptimizerConfig::Sgd {
                momentum,
                weight_decay: wd,
            },
            OptimizerConfig::Adam {
                beta1, beta2, eps, ..
            } => OptimizerConfig::Adam {
                beta1,
                beta2,
                eps,
                weight_decay: wd,
            },
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            OptimizerConfig::Sgd { .. } => "sgd",
            OptimizerConfig::Adam { .. } => "adam",
        }
    }

    /// Rejects hyper-parameters that cannot train: momenta and betas outside [0, 1), a negative
    /// or infinite weight decay, an ε that is not positive. A hand-edited manifest can hold any
    /// number, and one beyond f32's range arrives here as infinity.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let in_unit = |key: &'static str, v: f32| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(invalid(key, format!("must be in [0, 1), got {v}")))
            }
        };
        let decay = |v: f32| {
            if v >= 0.0 && v.is_finite() {
                Ok(())
            } else {
                Err(invalid(
                    "weight_decay",
                    format!("must be a finite number ≥ 0, got {v}"),
                ))
            }
        };
        match *self {
            OptimizerConfig::Sgd {
                momentum,
                weight_decay,
            } => {
                in_unit("momentum", momentum)?;
                decay(weight_decay)
            }
            OptimizerConfig::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                in_unit("beta1", beta1)?;
                in_unit("beta2", beta2)?;
                if !(eps > 0.0 && eps.is_finite()) {
                    return Err(invalid(
                        "eps",
                        format!("must be a finite number > 0, got {eps}"),
                    ));
                }
                decay(weight_decay)
            }
        }
    }
}

/// How the learning rate changes over epochs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Schedule {
    Constant,
    /// Multiply by `gamma` every `every` epochs.
    Step {
        every: usize,
        gamma: f64,
    },
    /// Cosine annealing from lr to 0 over all epochs, changed once per epoch.
    Cosine,
}

impl FromStr for Schedule {
    type Err = InvalidConfig;

    /// Parses `constant`, `cosine` or `step:EVERY:GAMMA`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.split(':').collect();
        let bad = |problem: String| invalid("schedule", format!("'{text}': {problem}"));
        match parts.as_slice() {
            ["constant"] => Ok(Schedule::Constant),
            ["cosine"] => Ok(Schedule::Cosine),
            ["step", every, gamma] => {
                let every: usize = every
                    .parse()
                    .map_err(|_| bad(format!("'{every}' is not a whole number")))?;
                let gamma: f64 = gamma
                    .parse()
                    .map_err(|_| bad(format!("'{gamma}' is not a number")))?;
                if every == 0 || !(gamma > 0.0 && gamma.is_finite()) {
                    return Err(bad("needs every > 0 and a positive gamma".into()));
                }
                Ok(Schedule::Step { every, gamma })
            }
            _ => Err(bad("expected constant, cosine or step:EVERY:GAMMA".into())),
        }
    }
}

impl fmt::Display for Schedule {
    /// As it is written on the command line: `constant`, `cosine`, `step:EVERY:GAMMA`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Constant => f.write_str("constant"),
            Schedule::Cosine => f.write_str("cosine"),
            Schedule::Step { every, gamma } => write!(f, "step:{every}:{gamma}"),
        }
    }
}

impl Schedule {
    /// The learning rate of training epoch `epoch` (from 1) of `epochs`.
    pub fn lr_at(&self, base: f64, epoch: usize, epochs: usize) -> f64 {
        match *self {
            Schedule::Constant => base,
            Schedule::Step { every, gamma } => base * gamma.powi(((epoch - 1) / every) as i32),
            Schedule::Cosine => {
                let progress = (epoch - 1) as f64 / epochs.max(1) as f64;
                0.5 * base * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

/// One run of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Flattened, so that `config.dataset` is the dataset's name and `config.data_dir` its folder.
    #[serde(flatten)]
    pub dataset: DatasetSpec,
    pub train_limit: Option<usize>,
    /// A preset name or a custom spec (the trainer resolves it; the manifest's
    /// `"architecture"` lists the resolved layers).
    pub arch: String,
    pub activation: String,
    pub seed: u64,
    pub optimizer: OptimizerConfig,
    /// Kept in f64 so records show the rate as typed (0.05, not 0.0500000007).
    pub lr: f64,
    pub schedule: Schedule,
    pub batch_size: usize,
    pub epochs: usize,
    /// Probe samples; `None` = [`DEFAULT_PROBE_SIZE`] or the whole training split if smaller.
    pub probe_size: Option<usize>,
    /// How conv and dense weights are drawn (he-uniform unless set). The settings below were
    /// added after format 2's first runs: each is left out of the JSON at its default, so those
    /// runs keep their identity.
    #[serde(default, skip_serializing_if = "InitScheme::is_default")]
    pub init: InitScheme,
    /// How conv and dense biases are set (zero unless set; `rai` draws its own).
    #[serde(default, skip_serializing_if = "BiasInit::is_default")]
    pub bias_init: BiasInit,
    /// Another scheme for the output layer (the last `fc`); `None`: as `init`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_init: Option<InitScheme>,
    /// Training-time augmentation (random crop, horizontal flip); none unless set.
    #[serde(default, skip_serializing_if = "Augment::is_none")]
    pub augment: Augment,
    /// What the run does to its network during training (ReDo, continual backprop,
    /// shrink-and-perturb); none unless set.
    #[serde(default, skip_serializing_if = "Intervention::is_none")]
    pub intervention: Intervention,
}

/// The probe size used when none is asked for.
pub const DEFAULT_PROBE_SIZE: usize = 2048;

impl RunConfig {
    /// A run of `activation` on `dataset` with the defaults: LeNet, seed 0, SGD with momentum
    /// 0.9, lr 0.01 constant, batch 64, 10 epochs, the default probe size.
    pub fn new(dataset: DatasetSpec, activation: &str) -> Self {
        RunConfig {
            dataset,
            train_limit: None,
            arch: "lenet".into(),
            activation: activation.into(),
            seed: 0,
            optimizer: OptimizerConfig::sgd(),
            lr: 0.01,
            schedule: Schedule::Constant,
            batch_size: 64,
            epochs: 10,
            probe_size: None,
            init: InitScheme::default(),
            bias_init: BiasInit::default(),
            output_init: None,
            augment: Augment::default(),
            intervention: Intervention::None,
        }
    }

    /// Rejects numbers that cannot make a run, naming the setting.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.batch_size == 0 {
            return Err(invalid("batch_size", "must be at least 1"));
        }
        if self.epochs == 0 {
            return Err(invalid("epochs", "must be at least 1"));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(invalid(
                "lr",
                format!("must be a positive number, got {}", self.lr),
            ));
        }
        if self.probe_size == Some(0) {
            return Err(invalid("probe_size", "must be at least 1"));
        }
        if self.train_limit == Some(0) {
            return Err(invalid("train_limit", "must be at least 1"));
        }
        if !self.bias_init_applies() && !self.bias_init.is_default() {
            return Err(invalid(
                "bias_init",
                format!(
                    "'{}' cannot be used when every layer is drawn by 'rai', which draws its own biases",
                    self.bias_init
                ),
            ));
        }
        self.dataset.validate()?;
        self.optimizer.validate()
    }
}

impl RunConfig {
    /// Whether `bias_init` sets any bias: not when every layer, the output layer included, is
    /// drawn by `rai`, which draws its own biases.
    pub fn bias_init_applies(&self) -> bool {
        self.init != InitScheme::Rai || self.output_init.is_some_and(|s| s != InitScheme::Rai)
    }

    /// The configuration with the settings that change nothing reset to their defaults, so that
    /// one training is one configuration (one identity): an output scheme equal to `init`, and
    /// a bias rule that sets no bias. A sweep's grid expands through this, as it drops momentum
    /// under Adam.
    pub fn without_inert_settings(mut self) -> Self {
        if self.output_init == Some(self.init) {
            self.output_init = None;
        }
        if !self.bias_init_applies() {
            self.bias_init = BiasInit::default();
        }
        self
    }

    /// What decides what is trained, as canonical JSON: the configuration with the data folder
    /// replaced by `data_checksum` (the data's content, wherever it lies). Threads, output
    /// folders and report options are not part of a configuration at all.
    pub fn canonical(&self, data_checksum: &str) -> String {
        let mut value = serde_json::to_value(self).expect("a config serialises");
        if let Some(map) = value.as_object_mut() {
            map.remove("data_dir");
            map.insert("data_checksum".into(), data_checksum.into());
        }
        // serde_json's maps are sorted by key, so equal settings give equal text.
        value.to_string()
    }

    /// The run's identity: the first 8 hex digits of the SHA-256 of [`RunConfig::canonical`].
    pub fn identity(&self, data_checksum: &str) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.canonical(data_checksum).as_bytes());
        digest[..4].iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
