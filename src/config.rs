//! The configuration of one run: everything that determines its records, as manifest.json
//! stores it under `"config"` and `resume` reads it back.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::data::DatasetSpec;
use crate::optim::OptimizerConfig;

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

impl Schedule {
    /// Parses `constant`, `cosine` or `step:EVERY:GAMMA`.
    pub fn parse(text: &str) -> Result<Self> {
        let parts: Vec<&str> = text.split(':').collect();
        match parts.as_slice() {
            ["constant"] => Ok(Schedule::Constant),
            ["cosine"] => Ok(Schedule::Cosine),
            ["step", every, gamma] => {
                let every: usize = every.parse().map_err(|_| {
                    anyhow::anyhow!("--schedule '{text}': '{every}' is not a whole number")
                })?;
                let gamma: f64 = gamma.parse().map_err(|_| {
                    anyhow::anyhow!("--schedule '{text}': '{gamma}' is not a number")
                })?;
                if every == 0 || !(gamma > 0.0 && gamma.is_finite()) {
                    bail!("--schedule '{text}': needs every > 0 and a positive gamma");
                }
                Ok(Schedule::Step { every, gamma })
            }
            _ => bail!("--schedule '{text}': expected constant, cosine or step:EVERY:GAMMA"),
        }
    }

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
    /// `--arch`: a preset name or a custom spec.
    pub arch: String,
    pub activation: String,
    pub seed: u64,
    pub optimizer: OptimizerConfig,
    /// Kept in f64 so records show the rate as typed (0.05, not 0.0500000007).
    pub lr: f64,
    pub schedule: Schedule,
    pub batch_size: usize,
    pub epochs: usize,
    /// Probe samples; `None` = 2048 or the whole training split if smaller.
    pub probe_size: Option<usize>,
}

/// The probe size used when none is asked for.
pub const DEFAULT_PROBE_SIZE: usize = 2048;

impl RunConfig {
    /// A run of `activation` on `dataset` with the CLI's defaults: LeNet, seed 0, SGD with
    /// momentum 0.9, lr 0.01 constant, batch 64, 10 epochs, the default probe size.
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
        }
    }

    /// Rejects numbers that cannot make a run, naming the flag.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        if self.epochs == 0 {
            bail!("--epochs must be at least 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bail!("--lr must be a positive number, got {}", self.lr);
        }
        if self.probe_size == Some(0) {
            bail!("--probe-size must be at least 1");
        }
        if self.train_limit == Some(0) {
            bail!("--train-limit must be at least 1");
        }
        self.optimizer.validate()
    }

    /// The run directory's name: `<dataset>-<activation>-lr<lr>-s<seed>`.
    pub fn run_id(&self) -> String {
        format!(
            "{}-{}-lr{}-s{}",
            self.dataset.kind.name(),
            self.activation,
            self.lr,
            self.seed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_give_the_documented_rates() {
        assert_eq!(Schedule::parse("constant").unwrap().lr_at(0.1, 5, 10), 0.1);
        let step = Schedule::parse("step:2:0.5").unwrap();
        assert_eq!(
            [1, 2, 3, 4, 5].map(|e| step.lr_at(0.8, e, 5)),
            [0.8, 0.8, 0.4, 0.4, 0.2]
        );
        let cosine = Schedule::Cosine;
        assert_eq!(cosine.lr_at(1.0, 1, 4), 1.0);
        assert!((cosine.lr_at(1.0, 3, 4) - 0.5).abs() < 1e-6);
        assert!(Schedule::parse("step:0:0.5").is_err());
        assert!(Schedule::parse("linear")
            .unwrap_err()
            .to_string()
            .contains("--schedule"));
    }
}
