//! `--config sweep.toml`: the grid of a sweep written down. Every setting takes one value or a
//! list (a list is a factor of the sweep), each dataset entry carries its own folder and options,
//! and `[[exclude]]` tables leave combinations out. Checked strictly: unknown keys and wrong
//! types are errors naming the file and the key. See docs/sweeps.md.
//!
//! ```toml
//! name = "mnist-study"
//! activations = ["relu", "relu-softsign"]
//! optimizer = ["sgd", "adam"]
//! batch_size = [32, 128]
//! lr = 0.01
//! seeds = 3
//! epochs = 10
//! train_limit = 10000
//!
//! [[datasets]]
//! name = "mnist"
//! data_dir = "../shared/data/mnist"
//!
//! [[exclude]]
//! optimizer = "adam"
//! batch_size = 128
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use necrosis::data::{DatasetKind, DatasetSpec};
use necrosis_records::grid::{ExcludeRule, SweepGrid};
use serde::Deserialize;

use crate::cli::RunArgs;

/// One value or a list of values.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    fn to_vec(&self) -> Vec<T> {
        match self {
            OneOrMany::One(v) => vec![v.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// A value in an exclusion rule, written as the setting's value is.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RuleValue {
    Text(String),
    Integer(i64),
    Number(f64),
    Flag(bool),
}

impl RuleValue {
    /// As [`necrosis_records::config::RunConfig::factor_values`] spells values.
    fn text(&self) -> String {
        match self {
            RuleValue::Text(v) => v.clone(),
            RuleValue::Integer(v) => v.to_string(),
            RuleValue::Number(v) => v.to_string(),
            RuleValue::Flag(v) => v.to_string(),
        }
    }
}

/// One dataset of the grid, with its own folder and options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetEntry {
    pub name: String,
    pub data_dir: Option<PathBuf>,
    pub image_size: Option<usize>,
    #[serde(default)]
    pub grayscale: bool,
    pub synthetic_samples: Option<usize>,
    pub synthetic_channels: Option<usize>,
}

/// The file's contents; every key but `datasets` and `activations` has the flag's default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepFile {
    pub name: Option<String>,
    pub out: Option<PathBuf>,
    pub datasets: Vec<DatasetEntry>,
    pub activations: OneOrMany<String>,
    pub lr: Option<OneOrMany<f64>>,
    pub seeds: Option<u64>,
    pub seed_list: Option<Vec<u64>>,
    pub epochs: Option<OneOrMany<usize>>,
    pub batch_size: Option<OneOrMany<usize>>,
    pub optimizer: Option<OneOrMany<String>>,
    pub momentum: Option<OneOrMany<f32>>,
    pub weight_decay: Option<OneOrMany<f32>>,
    pub schedule: Option<OneOrMany<String>>,
    pub arch: Option<OneOrMany<String>>,
    pub probe_size: Option<OneOrMany<usize>>,
    pub train_limit: Option<OneOrMany<usize>>,
    pub init: Option<OneOrMany<String>>,
    pub bias_init: Option<OneOrMany<String>>,
    pub output_init: Option<OneOrMany<String>>,
    pub augment: Option<OneOrMany<String>>,
    pub intervention: Option<OneOrMany<String>>,
    #[serde(default)]
    pub exclude: Vec<BTreeMap<String, OneOrMany<RuleValue>>>,
    /// Named contrasts for the report, as `--contrast` takes them.
    #[serde(default)]
    pub contrasts: Vec<String>,
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
        if file.activations.to_vec().is_empty() {
            bail!("--config {}: `activations` is empty", path.display());
        }
        Ok(file)
    }

    /// The file's grid, starting from `base` (the flags' defaults) for the keys it leaves out.
    pub fn grid(&self, base: &RunArgs) -> Result<SweepGrid> {
        let mut args = base.clone();
        args.activations = self.activations.to_vec();
        macro_rules! take {
            ($field:ident) => {
                if let Some(v) = &self.$field {
                    args.$field = v.to_vec();
                }
            };
        }
        take!(lr);
        take!(epochs);
        take!(batch_size);
        take!(optimizer);
        take!(momentum);
        take!(weight_decay);
        take!(schedule);
        take!(arch);
        take!(probe_size);
        take!(train_limit);
        take!(init);
        take!(bias_init);
        take!(output_init);
        take!(augment);
        take!(intervention);
        if let Some(seeds) = self.seeds {
            args.seeds = seeds;
        }
        args.seed_list = self.seed_list.clone().unwrap_or_default();
        args.exclude.clear();
        // The flags' grid of the first dataset, then every dataset with its own options.
        let first = &self.datasets[0];
        args.dataset = first.name.clone();
        args.data_dir = first.data_dir.clone();
        let mut grid = args.grid()?;
        grid.datasets = self
            .datasets
            .iter()
            .map(|d| {
                let kind: DatasetKind = d
                    .name
                    .parse()
                    .map_err(|e| anyhow::anyhow!("datasets: {e}"))?;
                if kind.needs_data_dir() && d.data_dir.is_none() {
                    bail!("datasets: `data_dir` is required for {}", kind.name());
                }
                Ok(DatasetSpec {
                    kind,
                    data_dir: d.data_dir.clone(),
                    image_size: d.image_size,
                    grayscale: d.grayscale,
                    synthetic_samples: d.synthetic_samples,
                    synthetic_channels: d.synthetic_channels,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        grid.exclude = self
            .exclude
            .iter()
            .map(|rule| -> ExcludeRule {
                rule.iter()
                    .map(|(key, values)| {
                        (
                            key.clone(),
                            values.to_vec().iter().map(RuleValue::text).collect(),
                        )
                    })
                    .collect()
            })
            .collect();
        grid.check_rules()?;
        Ok(grid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The `run` flags at their defaults: what a file's missing keys take.
    fn default_run_args() -> crate::cli::RunArgs {
        let cli = crate::cli::Cli::parse_from(["necrosis-report", "run"]);
        let crate::cli::Command::Run(args) = cli.command else {
            panic!("`run` parses as the run command")
        };
        *args
    }

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
        let base = default_run_args();
        let grid = SweepFile::read(&path).unwrap().grid(&base).unwrap();
        assert_eq!(grid, flags.grid().unwrap());
        // 2 activations × 2 rates × 2 seeds.
        assert_eq!(grid.expand().unwrap().runs.len(), 8);
    }

    #[test]
    fn lists_exclusions_and_datasets_with_their_own_options() {
        let (_dir, path) = write(concat!(
            "name = \"s\"\nactivations = [\"relu\", \"relu-softsign\"]\n",
            "optimizer = [\"sgd\", \"adam\"]\nbatch_size = [32, 128]\nseeds = 3\n",
            "[[datasets]]\nname = \"digits\"\n",
            "[[datasets]]\nname = \"synthetic\"\nimage_size = 12\n",
            "[[exclude]]\noptimizer = \"adam\"\nbatch_size = [128]\n",
        ));
        let base = default_run_args();
        let runs = SweepFile::read(&path)
            .unwrap()
            .grid(&base)
            .unwrap()
            .expand()
            .unwrap()
            .runs;
        // Per dataset: 2 activations × (sgd × 2 batch sizes + adam × 1) × 3 seeds = 18.
        assert_eq!(runs.len(), 36);
        assert!(runs
            .iter()
            .all(|r| (r.dataset.kind == DatasetKind::Synthetic)
                == (r.dataset.image_size == Some(12))));
        assert!(!runs
            .iter()
            .any(|r| r.optimizer.name() == "adam" && r.batch_size == 128));
    }

    /// The factors of initialisation and augmentation, from a file as from the flags.
    #[test]
    fn initialisation_and_augmentation_lists_are_factors() {
        let (_dir, path) = write(concat!(
            "activations = \"relu\"\nseeds = 1\n",
            "init = [\"he-uniform\", \"xavier-normal\", \"pytorch\"]\n",
            "bias_init = [\"zero\", \"0.01\"]\noutput_init = \"lecun-normal\"\n",
            "augment = \"crop:2+flip\"\n[[datasets]]\nname = \"synthetic\"\nsynthetic_channels = 3\n",
        ));
        let base = default_run_args();
        let expansion = SweepFile::read(&path)
            .unwrap()
            .grid(&base)
            .unwrap()
            .expand()
            .unwrap();
        // 3 schemes × 2 bias rules.
        assert_eq!(expansion.runs.len(), 6);
        let keys: Vec<&str> = expansion.factors.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["init", "bias_init"]);
        let run = &expansion.runs[5];
        assert_eq!(
            (
                run.init.to_string(),
                run.bias_init.to_string(),
                run.output_init.map(|s| s.to_string()),
                run.augment.to_string(),
                run.dataset.synthetic_channels
            ),
            (
                "pytorch".to_string(),
                "0.01".to_string(),
                Some("lecun-normal".to_string()),
                "crop:2+flip".to_string(),
                Some(3)
            )
        );
        assert_eq!(
            run.run_dir_name(&["init", "bias_init"], "0badcafe"),
            "synthetic-relu-pytorch-b0.01-lr0.01-s0-0badcafe"
        );
    }

    /// Interventions are a factor of a sweep file as of the flags, and name their run folders.
    #[test]
    fn intervention_lists_are_factors() {
        let (_dir, path) = write(concat!(
            "activations = [\"relu\", \"relu-softsign\"]\nseeds = 2\n",
            "intervention = [\"none\", \"redo:0.1:1\", \"cbp:0.0001:100\"]\n",
            "[[datasets]]\nname = \"synthetic\"\n",
        ));
        let expansion = SweepFile::read(&path)
            .unwrap()
            .grid(&default_run_args())
            .unwrap()
            .expand()
            .unwrap();
        assert_eq!(expansion.runs.len(), 2 * 3 * 2);
        let keys: Vec<&str> = expansion.factors.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["activation", "intervention", "seed"]);
        let run = &expansion.runs[3];
        assert_eq!(run.intervention.to_string(), "redo:0.1:1");
        assert_eq!(
            run.run_dir_name(&keys, "0badcafe"),
            "synthetic-relu-iv_redo_0.1_1-lr0.01-s1-0badcafe"
        );
        let (_dir, bad) = write(concat!(
            "activations = \"relu\"\nintervention = \"redo:0.1\"\n",
            "[[datasets]]\nname = \"synthetic\"\n",
        ));
        let err = SweepFile::read(&bad)
            .unwrap()
            .grid(&default_run_args())
            .unwrap_err();
        assert!(format!("{err:#}").contains("redo:0.1"), "{err:#}");
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
