//! A sweep's grid: every setting of a run as a list of values (a factor when it holds more than
//! one), the datasets each with its own folder and options, and rules that exclude combinations.
//! The sweep is the Cartesian product, with the options that do not apply dropped and duplicate
//! runs removed. The command line builds one from flags or a sweep file; the sweep folder
//! records the grids it was started with (`sweep.json`).

use std::collections::{BTreeMap, BTreeSet};

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::augment::Augment;
use crate::config::{DatasetSpec, InvalidConfig, OptimizerConfig, RunConfig, Schedule};
use crate::files::write_atomic;
use crate::init::{BiasInit, InitScheme};
use crate::intervention::Intervention;
use crate::{Problem, RecordError, Result};

/// The grid record's file name in a sweep folder.
pub const SWEEP_FILE: &str = "sweep.json";

/// `<sweep folder>/sweep.json`: the grids the sweep was started (and deliberately extended)
/// with, so that a later invocation with another grid is noticed instead of mixed in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRecord {
    pub format_version: u32,
    pub grids: Vec<SweepGrid>,
}

impl SweepRecord {
    /// The record of `sweep_dir`, or `None` when the folder has none yet.
    pub fn read(sweep_dir: &Path) -> Result<Option<Self>> {
        let path = sweep_dir.join(SWEEP_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(RecordError::reading(&path, e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| RecordError::reading(&path, Problem::NotJson(e)))
    }

    pub fn write(&self, sweep_dir: &Path) -> Result<()> {
        let path = sweep_dir.join(SWEEP_FILE);
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| RecordError::writing(&path, Problem::Invalid(e.to_string())))?;
        write_atomic(&path, &json)
    }

    /// Whether `grid` is one of the recorded grids (folders aside).
    pub fn holds(&self, grid: &SweepGrid) -> bool {
        self.grids.iter().any(|g| g.differing_keys(grid).is_empty())
    }
}

/// Which optimiser, by name; its hyper-parameters are factors of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Sgd,
    Adam,
}

/// One exclusion rule: a run is left out when, for every key of the rule, its value (as
/// [`RunConfig::factor_values`] spells it) is one of the rule's values.
pub type ExcludeRule = BTreeMap<String, Vec<String>>;

/// The grid of a sweep. Every list must hold at least one value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepGrid {
    /// Each dataset with its own folder and options: the product never crosses a dataset with
    /// another's folder.
    pub datasets: Vec<DatasetSpec>,
    pub activation: Vec<String>,
    pub lr: Vec<f64>,
    pub seed: Vec<u64>,
    pub arch: Vec<String>,
    pub optimizer: Vec<OptimizerKind>,
    /// SGD's momentum; dropped for Adam.
    pub momentum: Vec<f32>,
    pub weight_decay: Vec<f32>,
    pub batch_size: Vec<usize>,
    pub epochs: Vec<usize>,
    pub schedule: Vec<Schedule>,
    /// `None`: the default probe size.
    pub probe_size: Vec<Option<usize>>,
    /// `None`: the whole training split.
    pub train_limit: Vec<Option<usize>>,
    /// The lists below came after the first sweeps: a sweep.json without them holds their
    /// defaults.
    #[serde(default = "one_default")]
    pub init: Vec<InitScheme>,
    #[serde(default = "one_default")]
    pub bias_init: Vec<BiasInit>,
    /// `None`: the output layer as every other.
    #[serde(default = "one_default")]
    pub output_init: Vec<Option<InitScheme>>,
    #[serde(default = "one_default")]
    pub augment: Vec<Augment>,
    #[serde(default = "one_default")]
    pub intervention: Vec<Intervention>,
    #[serde(default)]
    pub exclude: Vec<ExcludeRule>,
}

/// A list holding only the setting's default.
fn one_default<T: Default>() -> Vec<T> {
    vec![T::default()]
}

/// What a grid expands to: its runs and the settings that vary among them.
#[derive(Debug, Clone, PartialEq)]
pub struct Expansion {
    pub runs: Vec<RunConfig>,
    /// The settings with more than one value among the runs, with their values, in
    /// [`FACTOR_KEYS`] order.
    pub factors: Vec<(&'static str, Vec<String>)>,
}

/// Every setting of a run, in the order run ids and tables show them.
pub const FACTOR_KEYS: [&str; 22] = [
    "dataset",
    "image_size",
    "grayscale",
    "synthetic_samples",
    "synthetic_channels",
    "activation",
    "arch",
    "init",
    "bias_init",
    "output_init",
    "optimizer",
    "momentum",
    "weight_decay",
    "batch_size",
    "epochs",
    "schedule",
    "augment",
    "intervention",
    "probe_size",
    "train_limit",
    "lr",
    "seed",
];

impl RunConfig {
    /// Every setting as readable text, keyed as in [`FACTOR_KEYS`]: what exclusion rules match,
    /// what factors are found from, and what labels show. Settings that do not apply (momentum
    /// for Adam, the bias rule where rai draws every bias) are absent.
    pub fn factor_values(&self) -> BTreeMap<&'static str, String> {
        let mut values = BTreeMap::new();
        let d = &self.dataset;
        values.insert("dataset", d.kind.name().to_string());
        values.insert(
            "image_size",
            d.image_size.map_or("default".into(), |v| v.to_string()),
        );
        values.insert("grayscale", d.grayscale.to_string());
        values.insert(
            "synthetic_samples",
            d.synthetic_samples
                .map_or("default".into(), |v| v.to_string()),
        );
        values.insert(
            "synthetic_channels",
            d.synthetic_channels
                .map_or("default".into(), |v| v.to_string()),
        );
        values.insert("activation", self.activation.clone());
        values.insert("arch", self.arch.clone());
        values.insert("init", self.init.to_string());
        if self.bias_init_applies() {
            values.insert("bias_init", self.bias_init.to_string());
        }
        values.insert(
            "output_init",
            self.output_init.map_or("same".into(), |s| s.to_string()),
        );
        values.insert("augment", self.augment.to_string());
        values.insert("intervention", self.intervention.to_string());
        values.insert("optimizer", self.optimizer.name().to_string());
        match self.optimizer {
            OptimizerConfig::Sgd {
                momentum,
                weight_decay,
            } => {
                values.insert("momentum", momentum.to_string());
                values.insert("weight_decay", weight_decay.to_string());
            }
            OptimizerConfig::Adam { weight_decay, .. } => {
                values.insert("weight_decay", weight_decay.to_string());
            }
        }
        values.insert("batch_size", self.batch_size.to_string());
        values.insert("epochs", self.epochs.to_string());
        values.insert("schedule", self.schedule.to_string());
        values.insert(
            "probe_size",
            self.probe_size.map_or("default".into(), |v| v.to_string()),
        );
        values.insert(
            "train_limit",
            self.train_limit.map_or("all".into(), |v| v.to_string()),
        );
        values.insert("lr", self.lr.to_string());
        values.insert("seed", self.seed.to_string());
        values
    }
}

/// A setting's value as a piece of a run directory's name: `bs32`, `adam`, `e10`, ...
fn name_part(key: &str, value: &str) -> String {
    let prefix = match key {
        "image_size" => "px",
        "synthetic_samples" => "ns",
        "synthetic_channels" => "ch",
        "bias_init" => "b",
        "output_init" => "out",
        "augment" => "aug",
        "intervention" => "iv-",
        "momentum" => "m",
        "weight_decay" => "wd",
        "batch_size" => "bs",
        "epochs" => "e",
        "probe_size" => "p",
        "train_limit" => "n",
        "grayscale" => {
            return if value == "true" {
                "grey".into()
            } else {
                "rgb".into()
            }
        }
        _ => "",
    };
    let mut part: String = format!("{prefix}{value}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // A long custom architecture stays readable at its start; the hash tells runs apart.
    part.truncate(32);
    part
}

impl RunConfig {
    /// The run directory's name: `<dataset>-<activation>`, then the value of each other setting
    /// in `varying` (the sweep's factors), then `lr<lr>-s<seed>`, then the identity hash, e.g.
    /// `mnist-relu-adam-bs32-lr0.01-s0-3fa2c91b`.
    pub fn run_dir_name(&self, varying: &[&str], hash: &str) -> String {
        let values = self.factor_values();
        let mut parts = vec![values["dataset"].clone(), values["activation"].clone()];
        for key in FACTOR_KEYS {
            if matches!(key, "dataset" | "activation" | "lr" | "seed") || !varying.contains(&key) {
                continue;
            }
            if let Some(value) = values.get(key) {
                parts.push(name_part(key, value));
            }
        }
        parts.push(format!("lr{}", self.lr));
        parts.push(format!("s{}", self.seed));
        parts.push(hash.to_string());
        parts.join("-")
    }
}

impl SweepGrid {
    /// The grid of one run configuration.
    pub fn of(config: &RunConfig) -> Self {
        let (optimizer, momentum, weight_decay) = match config.optimizer {
            OptimizerConfig::Sgd {
                momentum,
                weight_decay,
            } => (OptimizerKind::Sgd, momentum, weight_decay),
            OptimizerConfig::Adam { weight_decay, .. } => (OptimizerKind::Adam, 0.9, weight_decay),
        };
        SweepGrid {
            datasets: vec![config.dataset.clone()],
            activation: vec![config.activation.clone()],
            lr: vec![config.lr],
            seed: vec![config.seed],
            arch: vec![config.arch.clone()],
            optimizer: vec![optimizer],
            momentum: vec![momentum],
            weight_decay: vec![weight_decay],
            batch_size: vec![config.batch_size],
            epochs: vec![config.epochs],
            schedule: vec![config.schedule],
            probe_size: vec![config.probe_size],
            train_limit: vec![config.train_limit],
            init: vec![config.init],
            bias_init: vec![config.bias_init],
            output_init: vec![config.output_init],
            augment: vec![config.augment],
            intervention: vec![config.intervention],
            exclude: Vec::new(),
        }
    }

    /// The runs: the Cartesian product of every list, datasets outermost and seeds innermost,
    /// without excluded combinations and without duplicates (which arise when an option does
    /// not apply, such as a momentum list crossed with Adam). Each run is validated.
    pub fn expand(&self) -> Result<Expansion, InvalidConfig> {
        let lists: [(&'static str, usize); 18] = [
            ("datasets", self.datasets.len()),
            ("activation", self.activation.len()),
            ("lr", self.lr.len()),
            ("seed", self.seed.len()),
            ("arch", self.arch.len()),
            ("optimizer", self.optimizer.len()),
            ("momentum", self.momentum.len()),
            ("weight_decay", self.weight_decay.len()),
            ("batch_size", self.batch_size.len()),
            ("epochs", self.epochs.len()),
            ("schedule", self.schedule.len()),
            ("probe_size", self.probe_size.len()),
            ("train_limit", self.train_limit.len()),
            ("init", self.init.len()),
            ("bias_init", self.bias_init.len()),
            ("output_init", self.output_init.len()),
            ("augment", self.augment.len()),
            ("intervention", self.intervention.len()),
        ];
        if let Some((key, _)) = lists.iter().find(|(_, n)| *n == 0) {
            return Err(InvalidConfig {
                key,
                problem: "needs at least one value".into(),
            });
        }
        // A mixed-radix counter over the lists, the last (seed) turning fastest.
        let sizes = [
            self.datasets.len(),
            self.activation.len(),
            self.arch.len(),
            self.init.len(),
            self.bias_init.len(),
            self.output_init.len(),
            self.optimizer.len(),
            self.momentum.len(),
            self.weight_decay.len(),
            self.batch_size.len(),
            self.epochs.len(),
            self.schedule.len(),
            self.augment.len(),
            self.intervention.len(),
            self.probe_size.len(),
            self.train_limit.len(),
            self.lr.len(),
            self.seed.len(),
        ];
        let total: usize = sizes.iter().product();
        let mut runs: Vec<RunConfig> = Vec::new();
        let mut seen = BTreeSet::new();
        for n in 0..total {
            let mut at = [0usize; 18];
            let mut rest = n;
            for k in (0..sizes.len()).rev() {
                at[k] = rest % sizes[k];
                rest /= sizes[k];
            }
            let weight_decay = self.weight_decay[at[8]];
            let optimizer = match self.optimizer[at[6]] {
                OptimizerKind::Sgd => OptimizerConfig::Sgd {
                    momentum: self.momentum[at[7]],
                    weight_decay,
                },
                OptimizerKind::Adam => OptimizerConfig::adam().with_weight_decay(weight_decay),
            };
            let run = RunConfig {
                dataset: self.datasets[at[0]].clone(),
                activation: self.activation[at[1]].clone(),
                arch: self.arch[at[2]].clone(),
                init: self.init[at[3]],
                bias_init: self.bias_init[at[4]],
                output_init: self.output_init[at[5]],
                optimizer,
                batch_size: self.batch_size[at[9]],
                epochs: self.epochs[at[10]],
                schedule: self.schedule[at[11]],
                augment: self.augment[at[12]],
                intervention: self.intervention[at[13]],
                probe_size: self.probe_size[at[14]],
                train_limit: self.train_limit[at[15]],
                lr: self.lr[at[16]],
                seed: self.seed[at[17]],
            }
            .without_inert_settings();
            if self.excludes(&run.factor_values()) {
                continue;
            }
            // Equal configurations serialise equally: that is the duplicate test.
            if seen.insert(serde_json::to_string(&run).expect("a config serialises")) {
                run.validate()?;
                runs.push(run);
            }
        }
        let factors = varying_factors(runs.iter().map(RunConfig::factor_values));
        Ok(Expansion { runs, factors })
    }

    fn excludes(&self, values: &BTreeMap<&'static str, String>) -> bool {
        self.exclude.iter().any(|rule| {
            rule.iter().all(|(key, allowed)| {
                values
                    .get(key.as_str())
                    .is_some_and(|v| allowed.contains(v))
            })
        })
    }

    /// Checks that every exclusion rule names known settings, so that a typo is an error, not a
    /// rule that silently matches nothing.
    pub fn check_rules(&self) -> Result<(), InvalidConfig> {
        for rule in &self.exclude {
            for key in rule.keys() {
                if !FACTOR_KEYS.contains(&key.as_str()) {
                    return Err(InvalidConfig {
                        key: "exclude",
                        problem: format!(
                            "unknown setting '{key}'; settings: {}",
                            FACTOR_KEYS.join(", ")
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// The top-level keys whose values differ between this grid and `other` (dataset folders
    /// aside: a moved folder is the same data; the run identity checks the files' checksum).
    pub fn differing_keys(&self, other: &SweepGrid) -> Vec<String> {
        let canonical = |grid: &SweepGrid| {
            let mut value = serde_json::to_value(grid).expect("a grid serialises");
            if let Some(datasets) = value.get_mut("datasets").and_then(|d| d.as_array_mut()) {
                for d in datasets {
                    if let Some(map) = d.as_object_mut() {
                        map.remove("data_dir");
                    }
                }
            }
            value
        };
        let (a, b) = (canonical(self), canonical(other));
        let keys: BTreeSet<&String> = a
            .as_object()
            .into_iter()
            .chain(b.as_object())
            .flat_map(|m| m.keys())
            .collect();
        keys.into_iter()
            .filter(|k| a.get(k.as_str()) != b.get(k.as_str()))
            .cloned()
            .collect()
    }
}

/// The settings with more than one value among `runs` (seed included), with their values in
/// first-seen order, in [`FACTOR_KEYS`] order.
pub fn varying_factors(
    runs: impl Iterator<Item = BTreeMap<&'static str, String>>,
) -> Vec<(&'static str, Vec<String>)> {
    let mut seen: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut count = 0;
    for values in runs {
        count += 1;
        // A setting that does not apply to a run (momentum under Adam) does not make it vary.
        for key in FACTOR_KEYS {
            let Some(value) = values.get(key) else {
                continue;
            };
            let list = seen.entry(key).or_default();
            if !list.contains(value) {
                list.push(value.clone());
            }
        }
    }
    if count == 0 {
        return Vec::new();
    }
    FACTOR_KEYS
        .iter()
        .filter_map(|key| {
            let values = seen.remove(key)?;
            (values.len() > 1).then_some((*key, values))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatasetKind;

    fn grid() -> SweepGrid {
        let mut grid = SweepGrid::of(&RunConfig::new(
            DatasetSpec::new(DatasetKind::Digits),
            "relu",
        ));
        grid.activation = vec!["relu".into(), "relu-softsign".into()];
        grid.optimizer = vec![OptimizerKind::Sgd, OptimizerKind::Adam];
        grid.batch_size = vec![32, 128];
        grid.seed = vec![0, 1, 2];
        grid
    }

    #[test]
    fn the_product_of_the_lists_in_order() {
        let expansion = grid().expand().unwrap();
        // 2 activations × 2 optimisers × 2 batch sizes × 3 seeds.
        assert_eq!(expansion.runs.len(), 24);
        let keys: Vec<&str> = expansion.factors.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["activation", "optimizer", "batch_size", "seed"]);
        let first = &expansion.runs[0];
        assert_eq!(
            (
                first.activation.as_str(),
                first.optimizer.name(),
                first.batch_size,
                first.seed
            ),
            ("relu", "sgd", 32, 0)
        );
        let last = &expansion.runs[23];
        assert_eq!(
            (
                last.activation.as_str(),
                last.optimizer.name(),
                last.batch_size,
                last.seed
            ),
            ("relu-softsign", "adam", 128, 2)
        );
    }

    #[test]
    fn options_that_do_not_apply_are_dropped_without_duplicates() {
        let mut grid = grid();
        grid.momentum = vec![0.9, 0.0];
        // sgd: 2 momenta; adam: momentum does not apply, so one run, not two.
        let runs = grid.expand().unwrap().runs;
        assert_eq!(runs.len(), 2 * (2 + 1) * 2 * 3);
        let adam_runs = runs.iter().filter(|r| r.optimizer.name() == "adam").count();
        assert_eq!(adam_runs, 2 * 2 * 3);
    }

    #[test]
    fn exclusion_rules_remove_matching_combinations() {
        let mut grid = grid();
        grid.exclude = vec![BTreeMap::from([
            ("optimizer".to_string(), vec!["adam".to_string()]),
            ("batch_size".to_string(), vec!["128".to_string()]),
        ])];
        let runs = grid.expand().unwrap().runs;
        // adam with batch 128 is gone: 24 − 2 activations × 3 seeds.
        assert_eq!(runs.len(), 18);
        assert!(!runs
            .iter()
            .any(|r| r.optimizer.name() == "adam" && r.batch_size == 128));
        grid.exclude = vec![BTreeMap::from([(
            "optimiser".to_string(),
            vec!["adam".to_string()],
        )])];
        assert_eq!(grid.check_rules().unwrap_err().key, "exclude");
    }

    #[test]
    fn datasets_keep_their_own_folders() {
        let mut grid = grid();
        let mut a = DatasetSpec::new(DatasetKind::Folder);
        a.data_dir = Some("/data/a".into());
        let mut b = DatasetSpec::new(DatasetKind::Folder);
        b.data_dir = Some("/data/b".into());
        b.image_size = Some(64);
        grid.datasets = vec![a, b];
        let runs = grid.expand().unwrap().runs;
        assert_eq!(runs.len(), 48);
        assert!(runs.iter().all(|r| {
            let dir = r.dataset.data_dir.as_ref().unwrap().to_str().unwrap();
            (dir == "/data/a") == r.dataset.image_size.is_none()
        }));
    }

    #[test]
    fn differing_keys_ignore_moved_folders() {
        let mut a = grid();
        let mut b = grid();
        b.epochs = vec![5];
        assert_eq!(a.differing_keys(&b), ["epochs"]);
        a.datasets[0].data_dir = Some("/old".into());
        b.epochs = a.epochs.clone();
        assert!(a.differing_keys(&b).is_empty());
    }

    #[test]
    fn initialisation_settings_that_change_nothing_are_one_run() {
        use crate::init::{BiasInit, InitScheme};
        let mut grid = grid();
        grid.activation = vec!["relu".into()];
        grid.optimizer = vec![OptimizerKind::Sgd];
        grid.batch_size = vec![64];
        grid.seed = vec![0];
        grid.init = vec![InitScheme::HeUniform, InitScheme::Rai];
        grid.bias_init = vec![BiasInit::Zero, BiasInit::Constant(0.01)];
        grid.output_init = vec![None, Some(InitScheme::HeUniform)];
        let expansion = grid.expand().unwrap();
        // he-uniform: 2 bias rules × (output as init, which `he-uniform` is too) = 2 runs;
        // rai: the bias rule sets no bias unless the output layer is he-uniform = 1 + 2 runs.
        let runs: Vec<(InitScheme, BiasInit, Option<InitScheme>)> = expansion
            .runs
            .iter()
            .map(|r| (r.init, r.bias_init, r.output_init))
            .collect();
        assert_eq!(
            runs,
            [
                (InitScheme::HeUniform, BiasInit::Zero, None),
                (InitScheme::HeUniform, BiasInit::Constant(0.01), None),
                (InitScheme::Rai, BiasInit::Zero, None),
                (InitScheme::Rai, BiasInit::Zero, Some(InitScheme::HeUniform)),
                (
                    InitScheme::Rai,
                    BiasInit::Constant(0.01),
                    Some(InitScheme::HeUniform)
                ),
            ]
        );
        assert!(expansion.runs.iter().all(|r| r.validate().is_ok()));
        assert!(!expansion.runs[2].factor_values().contains_key("bias_init"));
    }
}
