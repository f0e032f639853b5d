//! `--config sweep.toml`: the grid of a sweep written down — datasets, activations, learning
//! rates, seeds, architecture, epochs — checked strictly (unknown keys and wrong types are errors
//! naming the file and the key).
//!
//! ```toml
//! name = "mnist-study"
//! activations = ["relu", "softplus", "softsign", "relu-softplus", "relu-softsign"]
//! lr = [0.05]
//! seeds = 5
//! epochs = 10
//! arch = "lenet"
//! train_limit = 10000
//!
//! [[datasets]]
//! name = "mnist"
//! data_dir = "../shared/data/mnist"
//! ```

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::cli::RunArgs;

/// One dataset of the grid.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetEntry {
    pub name: String,
    pub data_dir: Option<PathBuf>,
    pub image_size: Option<usize>,
    #[serde(default)]
    pub grayscale: bool,
    pub synthetic_samples: Option<usize>,
}

/// The file's contents; every key but `datasets` and `activations` has the CLI flag's default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepFile {
    pub name: Option<String>,
    pub out: Option<PathBuf>,
    pub datasets: Vec<DatasetEntry>,
    pub activations: Vec<String>,
    pub lr: Option<Vec<f64>>,
    pub seeds: Option<u64>,
    pub seed_list: Option<Vec<u64>>,
    pub epochs: Option<usize>,
    pub batch_size: Option<usize>,
    pub optimizer: Option<String>,
    pub momentum: Option<f32>,
    pub weight_decay: Option<f32>,
    pub schedule: Option<String>,
    pub arch: Option<String>,
    pub probe_size: Option<usize>,
    pub train_limit: Option<usize>,
}

impl SweepFile {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--config {}", path.display()))?;
        let file: SweepFile =
            toml::from_str(&text).with_context(|| format!("--config {}", path.display()))?;
        if file.datasets.is_empty() {
            bail!("--config {}: `datasets` is empty", path.display());
        }
        if file.activations.is_empty() {
            bail!("--config {}: `activations` is empty", path.display());
        }
        Ok(file)
    }

    /// The file as one `run` invocation per dataset, starting from `base` (the flags' defaults
    /// and the flags that do not describe the grid, such as --threads).
    pub fn to_run_args(&self, base: &RunArgs) -> Vec<RunArgs> {
        self.datasets
            .iter()
            .map(|d| {
                let mut args = base.clone();
                args.dataset = d.name.clone();
                args.data_dir = d.data_dir.clone();
                args.image_size = d.image_size;
                args.grayscale = d.grayscale;
                args.synthetic_samples = d.synthetic_samples;
                args.activations = self.activations.clone();
                macro_rules! take {
                    ($field:ident) => {
                        if let Some(v) = &self.$field {
                            args.$field = v.clone();
                        }
                    };
                }
                take!(lr);
                take!(seeds);
                take!(epochs);
                take!(batch_size);
                take!(optimizer);
                take!(momentum);
                take!(weight_decay);
                take!(schedule);
                take!(arch);
                take!(out);
                args.seed_list = self.seed_list.clone().unwrap_or_default();
                args.probe_size = self.probe_size.or(args.probe_size);
                args.train_limit = self.train_limit.or(args.train_limit);
                args.name = self.name.clone().or(args.name.clone());
                args
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sweep.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn a_file_gives_the_same_grid_as_the_flags() {
        let (_dir, path) = write(
            "name = \"s\"\nactivations = [\"relu\", \"relu-softsign\"]\nlr = [0.01, 0.05]\nseeds = 2\nepochs = 3\n[[datasets]]\nname = \"digits\"\n",
        );
        let from_flags = crate::cli::Cli::parse_from([
            "necrosis-report",
            "run",
            "--activations",
            "relu,relu-softsign",
            "--lr",
            "0.01,0.05",
            "--seeds",
            "2",
            "--epochs",
            "3",
            "--name",
            "s",
        ]);
        let crate::cli::Command::Run(flags) = from_flags.command else {
            panic!()
        };
        let base = crate::cli::Cli::parse_from(["necrosis-report", "run"]);
        let crate::cli::Command::Run(base) = base.command else {
            panic!()
        };
        let file = SweepFile::read(&path).unwrap().to_run_args(&base);
        assert_eq!(file.len(), 1);
        assert_eq!(file[0].plan().unwrap().runs, flags.plan().unwrap().runs);
        assert_eq!(file[0].plan().unwrap().runs.len(), 8);
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_file_and_key() {
        let (_dir, path) = write(
            "activations = [\"relu\"]\nlearning_rate = 0.1\n[[datasets]]\nname = \"digits\"\n",
        );
        let err = format!("{:#}", SweepFile::read(&path).unwrap_err());
        assert!(
            err.contains("sweep.toml") && err.contains("learning_rate"),
            "{err}"
        );
        let (_dir, path) =
            write("activations = [\"relu\"]\nepochs = \"ten\"\n[[datasets]]\nname = \"digits\"\n");
        let err = format!("{:#}", SweepFile::read(&path).unwrap_err());
        assert!(
            err.contains("sweep.toml") && err.contains("epochs"),
            "{err}"
        );
        let (_dir, path) = write("activations = [\"relu\"]\ndatasets = []\n");
        assert!(
            format!("{:#}", SweepFile::read(&path).unwrap_err()).contains("`datasets` is empty")
        );
    }
}
