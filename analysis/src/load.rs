//! Finding and reading run records (`docs/records.md`): manifests, `epochs.parquet` and
//! `neurons.parquet` of many runs, gathered into one [`RunSet`].
//!
//! Only runs whose status is `complete` enter the statistics. Diverged runs are kept apart
//! ([`RunSet::diverged`]) so that a report can say how many runs an activation lost to divergence;
//! failed, still running and unreadable runs are listed in [`RunSet::skipped`] with the reason, and
//! never stop the analysis. Neuron records stay lazy: all runs' `neurons.parquet` files become one
//! polars [`LazyFrame`] that the measures aggregate with `group_by`, so thousands of runs never pass
//! through a Rust row loop.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use polars::prelude::*;

use necrosis_records::files::without_reader_panics;
use necrosis_records::grid::varying_factors;
use necrosis_records::tables::{epoch_columns as ec, neuron_columns as nc, EpochRow, NeuronRow};
pub use necrosis_records::{Manifest, RunStatus};

use crate::interventions::{intervention_setting, run_settings, INTERVENTION, NO_INTERVENTION};

/// Columns of `neurons.parquet` the measures use.
const NEURON_COLUMNS: [&str; 9] = [
    nc::EPOCH,
    nc::LAYER,
    nc::LAYER_NAME,
    nc::NEURON,
    nc::ACTIVE_FRAC,
    nc::MAX_PRE,
    nc::MEAN_ABS_ACT,
    nc::MEAN_DERIV,
    nc::GRAD_PRE_ABS_MEAN,
];

/// Columns of `epochs.parquet` the convergence measures use.
const EPOCH_COLUMNS: [&str; 6] = [
    ec::EPOCH,
    ec::TRAIN_LOSS,
    ec::TRAIN_ACC,
    ec::TEST_LOSS,
    ec::TEST_ACC,
    ec::SECONDS,
];

/// `names` with the type each has in the record format (`schema`).
fn typed(
    names: &[&'static str],
    schema: Vec<(&'static str, DataType)>,
) -> Vec<(&'static str, DataType)> {
    names
        .iter()
        .map(|name| {
            schema
                .iter()
                .find(|(n, _)| n == name)
                .cloned()
                .expect("a column of the record format")
        })
        .collect()
}

fn neuron_columns() -> Vec<(&'static str, DataType)> {
    typed(&NEURON_COLUMNS, NeuronRow::schema())
}

fn epoch_columns() -> Vec<(&'static str, DataType)> {
    typed(&EPOCH_COLUMNS, EpochRow::schema())
}

/// A run whose records enter the analysis.
#[derive(Debug, Clone)]
pub struct Run {
    /// Index of the run in [`RunSet::runs`]; the `run` column of the record frames.
    pub index: u32,
    pub run_id: String,
    pub sweep: String,
    pub dir: PathBuf,
    pub dataset: String,
    pub activation: String,
    pub seed: u64,
    pub lr: f64,
    /// The run's setting: its learning rate and every other setting that varies among the
    /// loaded runs (dataset, activation and seed aside), e.g. `lr 0.01, optimizer adam,
    /// batch_size 32`. Runs are summarised and compared within one dataset and setting, so
    /// runs trained differently are never pooled as if they were seeds.
    pub setting: String,
    pub status: RunStatus,
    /// E: the last epoch whose records are used.
    pub epochs_completed: u32,
    pub manifest: Manifest,
    /// `config.intervention` of the manifest ("none" without one; [`crate::interventions`]).
    pub intervention: String,
}

impl Run {
    /// Neurons of the network (all activation sites), from the manifest; `None` if it does not
    /// list its sites.
    pub fn neuron_count(&self) -> Option<u64> {
        let sites = &self.manifest.sites;
        (!sites.is_empty()).then(|| sites.iter().map(|s| s.neurons as u64).sum())
    }
}

/// A run left out of the statistics, with the reason a reader should see.
#[derive(Debug, Clone)]
pub struct ExcludedRun {
    pub dir: PathBuf,
    pub run_id: Option<String>,
    pub sweep: Option<String>,
    pub activation: Option<String>,
    pub reason: String,
    /// The dataset's name, when the manifest could be read.
    pub dataset: Option<String>,
    /// The run's setting (as [`Run::setting`]); set for diverged runs, which count as outcomes
    /// of their condition.
    pub setting: Option<String>,
    /// The number of classes, when the manifest could be read.
    pub classes: Option<usize>,
    /// For a diverged run: its manifest and the test accuracy of the epochs it completed before
    /// the loss became NaN/inf (empty when `epochs.parquet` could not be read), from which
    /// [`crate::worst_case`] takes its worst-case measures.
    pub diverged: Option<Box<DivergedRecord>>,
}

/// What a diverged run left that its worst-case measures need.
#[derive(Debug, Clone)]
pub struct DivergedRecord {
    pub manifest: Manifest,
    /// `config.intervention` of the manifest, as [`Run::intervention`].
    pub intervention: String,
    /// (epoch, test accuracy) of epochs 0..=epochs_completed, in epoch order.
    pub test_acc: Vec<(u32, f64)>,
}

/// All runs found under the given paths.
#[derive(Clone)]
pub struct RunSet {
    /// Complete runs: the ones measured and compared.
    pub runs: Vec<Run>,
    /// Runs whose loss became NaN/inf: not measured, listed in the report.
    pub diverged: Vec<ExcludedRun>,
    /// Failed, incomplete and unreadable runs, with the reason.
    pub skipped: Vec<ExcludedRun>,
    /// The settings that vary among [`RunSet::runs`] (seed aside), as manifest keys.
    pub factors: Vec<String>,
    /// `epochs.parquet` of all [`RunSet::runs`], rows with `epoch <= epochs_completed`, plus a `run`
    /// column (UInt32 index into `runs`). Small: one row per run and epoch.
    pub epochs: DataFrame,
    /// Per run (in the order of `runs`): its `neurons.parquet`, rows with
    /// `epoch <= epochs_completed`, with a `run` column. Only the columns the measures need (see
    /// `NEURON_COLUMNS`) are read.
    neuron_scans: Vec<LazyFrame>,
}

impl fmt::Debug for RunSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunSet")
            .field("runs", &self.runs.len())
            .field("diverged", &self.diverged.len())
            .field("skipped", &self.skipped.len())
            .finish()
    }
}

impl RunSet {
    /// Neuron records of all runs with only the `run` index as run-level column (what the measures
    /// group by; cheaper than strings on every row).
    pub fn neurons_by_run(&self) -> LazyFrame {
        concat_scans(self.neuron_scans.clone())
    }

    /// The neuron records of one run (`run` is its index in [`RunSet::runs`]).
    pub fn neurons_of(&self, run: u32) -> LazyFrame {
        self.neuron_scans[run as usize].clone()
    }

    /// [`RunSet::neurons_by_run`] cut into batches of whole runs of at most about `max_rows`
    /// rows each (a run larger than that is a batch of its own), so that a computation over
    /// every neuron row can hold one batch in memory at a time. Never empty: without runs, one
    /// empty frame.
    pub fn neuron_batches(&self, max_rows: u64) -> Vec<LazyFrame> {
        let mut batches = Vec::new();
        let (mut batch, mut rows) = (Vec::new(), 0u64);
        for (run, scan) in self.runs.iter().zip(&self.neuron_scans) {
            // A run of unknown size gets a batch of its own.
            let run_rows = run
                .neuron_count()
                .map_or(max_rows, |n| n * (run.epochs_completed as u64 + 1));
            if !batch.is_empty() && rows + run_rows > max_rows {
                batches.push(concat_scans(std::mem::take(&mut batch)));
                rows = 0;
            }
            batch.push(scan.clone());
            rows += run_rows;
        }
        if !batch.is_empty() || batches.is_empty() {
            batches.push(concat_scans(batch));
        }
        batches
    }

    /// Neuron records of all runs with the run-level columns `run_id`, `activation`, `dataset`,
    /// `seed` and `lr` joined on, for users who want to query the records themselves.
    pub fn neurons(&self) -> LazyFrame {
        self.neurons_by_run()
            .left_join(self.run_table().lazy(), col("run"), col("run"))
    }

    /// One row per run: `run`, `run_id`, `sweep`, `activation`, `dataset`, `seed`, `lr`,
    /// `setting`, `epochs`, then one column per setting that varies among the runs.
    pub fn run_table(&self) -> DataFrame {
        let r = &self.runs;
        let mut table = df!(
            "run" => r.iter().map(|r| r.index).collect::<Vec<_>>(),
            "run_id" => r.iter().map(|r| r.run_id.clone()).collect::<Vec<_>>(),
            "sweep" => r.iter().map(|r| r.sweep.clone()).collect::<Vec<_>>(),
            "activation" => r.iter().map(|r| r.activation.clone()).collect::<Vec<_>>(),
            "dataset" => r.iter().map(|r| r.dataset.clone()).collect::<Vec<_>>(),
            "seed" => r.iter().map(|r| r.seed).collect::<Vec<_>>(),
            "lr" => r.iter().map(|r| r.lr).collect::<Vec<_>>(),
            "setting" => r.iter().map(|r| r.setting.clone()).collect::<Vec<_>>(),
            "epochs" => r.iter().map(|r| r.epochs_completed).collect::<Vec<_>>(),
        )
        .expect("columns of equal length");
        add_factor_columns(
            &mut table,
            r.iter().map(|r| run_settings(&r.manifest, &r.intervention)),
            &self.factors,
        );
        table
    }
}

/// Adds one column per factor (a setting that varies among the loaded runs) to `table`, whose
/// rows are the runs whose settings ([`run_settings`]) come in order; "n/a" where a run lacks the
/// setting (an option of another optimiser, say). Columns the table has already are left as they
/// are.
pub(crate) fn add_factor_columns(
    table: &mut DataFrame,
    settings: impl Iterator<Item = std::collections::BTreeMap<&'static str, String>>,
    factors: &[String],
) {
    let settings: Vec<_> = settings.collect();
    for key in factors {
        if table.column(key).is_ok() || key == "data" {
            continue;
        }
        let values: Vec<String> = settings
            .iter()
            .map(|s| s.get(key.as_str()).cloned().unwrap_or_else(|| "n/a".into()))
            .collect();
        table
            .with_column(Column::new(key.as_str().into(), values))
            .expect("a column of the run count");
    }
}

/// Finds run directories under `paths` and reads them.
///
/// Each path is a run directory (it holds `manifest.json`), a sweep folder holding run directories,
/// or a folder of sweep folders (searched two levels deep). A path that holds no run at all is an
/// error; a run that cannot be used is listed in [`RunSet::skipped`] instead.
pub fn load_runs(paths: &[PathBuf]) -> Result<RunSet> {
    let mut dirs = BTreeSet::new();
    for path in paths {
        let found = find_run_dirs(path)?;
        if found.is_empty() {
            bail!(
                "{}: no run directory (a folder with manifest.json) here or two levels below",
                path.display()
            );
        }
        dirs.extend(found);
    }

    let mut runs = Vec::new();
    let mut diverged = Vec::new();
    let mut skipped = Vec::new();
    let mut epoch_frames = Vec::new();
    let mut neuron_frames = Vec::new();
    for dir in dirs {
        let manifest = match Manifest::read(&dir) {
            Ok(m) => m,
            Err(e) => {
                skipped.push(ExcludedRun {
                    dir,
                    run_id: None,
                    sweep: None,
                    activation: None,
                    reason: format!("{e:#}"),
                    dataset: None,
                    setting: None,
                    classes: None,
                    diverged: None,
                });
                continue;
            }
        };
        let exclude = |reason: String| ExcludedRun {
            dir: dir.clone(),
            run_id: Some(manifest.run_id.clone()),
            sweep: Some(manifest.sweep.clone()),
            activation: Some(manifest.config.activation.clone()),
            reason,
            dataset: Some(manifest.config.dataset.kind.name().to_string()),
            setting: None,
            classes: Some(manifest.classes),
            diverged: None,
        };
        match manifest.status {
            RunStatus::Complete => {}
            RunStatus::Diverged => {
                let mut run = exclude(format!(
                    "diverged (loss NaN/inf) after {} completed epochs",
                    manifest.epochs_completed
                ));
                // A curve that cannot be read leaves only the area under it undefined.
                let test_acc =
                    read_test_curve(&dir, manifest.epochs_completed as u32).unwrap_or_default();
                // An unreadable setting leaves the run in the default condition rather than
                // losing an outcome.
                let intervention =
                    intervention_setting(&dir).unwrap_or_else(|_| NO_INTERVENTION.into());
                run.diverged = Some(Box::new(DivergedRecord {
                    manifest,
                    intervention,
                    test_acc,
                }));
                diverged.push(run);
                continue;
            }
            RunStatus::Failed => {
                let error = manifest.error.as_deref().unwrap_or("no error message");
                skipped.push(exclude(format!("failed: {error}")));
                continue;
            }
            RunStatus::Running if manifest.epochs_completed == 0 => {
                skipped.push(exclude("running, no completed epoch".into()));
                continue;
            }
            RunStatus::Running => {
                skipped.push(exclude(format!(
                    "incomplete (running, {} of {} epochs), skipped",
                    manifest.epochs_completed, manifest.config.epochs
                )));
                continue;
            }
        }
        if manifest.epochs_completed == 0 {
            skipped.push(exclude("complete but no training epoch recorded".into()));
            continue;
        }
        let intervention = match intervention_setting(&dir) {
            Ok(setting) => setting,
            Err(e) => {
                skipped.push(exclude(format!("{e:#}")));
                continue;
            }
        };
        let index = runs.len() as u32;
        match read_run_records_guarded(&dir, index, manifest.epochs_completed as u32) {
            Ok((epochs, neurons)) => {
                epoch_frames.push(epochs);
                neuron_frames.push(neurons);
            }
            Err(e) => {
                skipped.push(exclude(format!("{e:#}")));
                continue;
            }
        }
        runs.push(Run {
            index,
            run_id: manifest.run_id.clone(),
            sweep: manifest.sweep.clone(),
            dir,
            dataset: manifest.config.dataset.kind.name().to_string(),
            activation: manifest.config.activation.clone(),
            seed: manifest.config.seed,
            lr: manifest.config.lr,
            setting: String::new(),
            status: manifest.status,
            epochs_completed: manifest.epochs_completed as u32,
            manifest,
            intervention,
        });
    }

    let epochs = if epoch_frames.is_empty() {
        empty_frame(&epoch_columns())
    } else {
        let mut all = epoch_frames.swap_remove(0);
        for df in epoch_frames {
            all.vstack_mut_owned(df)?;
        }
        all.rechunk_mut();
        all
    };
    let factors = label_settings(&mut runs, &mut diverged);
    Ok(RunSet {
        runs,
        diverged,
        skipped,
        factors,
        epochs,
        neuron_scans: neuron_frames,
    })
}

/// Finds the settings that vary among the complete and diverged runs (from their manifests),
/// names each run's setting from them, and returns them. A changed data folder content (another
/// checksum) is a factor too.
fn label_settings(runs: &mut [Run], diverged: &mut [ExcludedRun]) -> Vec<String> {
    let (labels, factors) = settings_and_factors(runs, diverged);
    let (for_runs, for_diverged) = labels.split_at(runs.len());
    for (run, label) in runs.iter_mut().zip(for_runs) {
        run.setting = label.clone();
    }
    for (run, label) in diverged.iter_mut().zip(for_diverged) {
        run.setting = Some(label.clone());
    }
    factors
}

/// The setting label of every run (complete runs, then diverged ones) and the factors.
fn settings_and_factors(runs: &[Run], diverged: &[ExcludedRun]) -> (Vec<String>, Vec<String>) {
    let with_setting: Vec<(&Manifest, &str)> = runs
        .iter()
        .map(|r| (&r.manifest, r.intervention.as_str()))
        .chain(diverged.iter().filter_map(|d| {
            let d = d.diverged.as_ref()?;
            Some((&d.manifest, d.intervention.as_str()))
        }))
        .collect();
    let manifests: Vec<&Manifest> = with_setting.iter().map(|(m, _)| *m).collect();
    let values: Vec<std::collections::BTreeMap<&'static str, String>> = with_setting
        .iter()
        .map(|(m, intervention)| run_settings(m, intervention))
        .collect();
    let mut factors: Vec<String> = varying_factors(values.iter().cloned())
        .into_iter()
        .map(|(key, _)| key.to_string())
        .filter(|key| key != "seed")
        .collect();
    // The records crate's list of factors predates the intervention setting (issue #14).
    let interventions: BTreeSet<&str> = values
        .iter()
        .filter_map(|v| v.get(INTERVENTION).map(String::as_str))
        .collect();
    if interventions.len() > 1 && !factors.iter().any(|f| f == INTERVENTION) {
        factors.push(INTERVENTION.into());
    }
    let checksums: BTreeSet<(&str, &str)> = manifests
        .iter()
        .map(|m| (m.config.dataset.kind.name(), m.data_checksum.as_str()))
        .collect();
    let data_varies = checksums.len()
        > checksums
            .iter()
            .map(|(d, _)| *d)
            .collect::<BTreeSet<_>>()
            .len();
    let labels: Vec<String> = manifests
        .iter()
        .zip(&values)
        .map(|(manifest, values)| {
            let mut parts = vec![format!("lr {}", manifest.config.lr)];
            for key in &factors {
                if matches!(key.as_str(), "dataset" | "activation" | "lr") {
                    continue;
                }
                if let Some(value) = values.get(key.as_str()) {
                    parts.push(format!("{key} {value}"));
                }
            }
            if data_varies {
                let short: String = manifest.data_checksum.chars().take(8).collect();
                parts.push(format!("data {short}"));
            }
            parts.join(", ")
        })
        .collect();
    if data_varies {
        factors.push("data".into());
    }
    (labels, factors)
}

/// The scans one after another; no scan gives an empty frame with the neuron columns.
fn concat_scans(scans: Vec<LazyFrame>) -> LazyFrame {
    if scans.is_empty() {
        return empty_frame(&neuron_columns()).lazy();
    }
    concat(scans, UnionArgs::default()).expect("scans of one schema concatenate")
}

/// Run directories at `path`, one level below it (a sweep) and two levels below (sweeps).
fn find_run_dirs(path: &Path) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        bail!("{}: not a folder", path.display());
    }
    if path.join("manifest.json").is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut found = Vec::new();
    for entry in sorted_subdirs(path)? {
        if entry.join("manifest.json").is_file() {
            found.push(entry);
        } else {
            for run in sorted_subdirs(&entry)? {
                if run.join("manifest.json").is_file() {
                    found.push(run);
                }
            }
        }
    }
    Ok(found)
}

fn sorted_subdirs(path: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("listing {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    Ok(dirs)
}

fn empty_frame(columns: &[(&str, DataType)]) -> DataFrame {
    let mut cols = vec![Column::new_empty("run".into(), &DataType::UInt32)];
    cols.extend(
        columns
            .iter()
            .map(|(name, dtype)| Column::new_empty((*name).into(), dtype)),
    );
    DataFrame::new_infer_height(cols).expect("empty columns")
}

/// [`read_run_records`] with a panic of the parquet reader on a damaged file turned into an
/// error naming the run directory.
fn read_run_records_guarded(
    dir: &Path,
    index: u32,
    last_epoch: u32,
) -> Result<(DataFrame, LazyFrame)> {
    without_reader_panics(dir, || read_run_records(dir, index, last_epoch))?
}

/// Reads `epochs.parquet` eagerly (it is small) and prepares a lazy scan of `neurons.parquet`,
/// both cut to `epoch <= last_epoch` and tagged with the run index. The neuron file is decoded
/// once now, so a missing, truncated, foreign or corrupt file skips the run here rather than
/// failing the whole analysis later.
fn read_run_records(dir: &Path, index: u32, last_epoch: u32) -> Result<(DataFrame, LazyFrame)> {
    let epochs_path = dir.join("epochs.parquet");
    let epochs = scan_checked(&epochs_path, &epoch_columns())?
        .filter(col("epoch").lt_eq(lit(last_epoch)))
        .sort(["epoch"], Default::default())
        .with_column(lit(index).cast(DataType::UInt32).alias("run"))
        .collect()
        .map_err(anyhow::Error::from)
        .with_context(|| format!("reading {}", epochs_path.display()))?;
    let epochs_seen = epochs.height();
    if epochs_seen != last_epoch as usize + 1 {
        bail!(
            "{}: {epochs_seen} rows for epochs 0..={last_epoch}, expected {}",
            epochs_path.display(),
            last_epoch + 1
        );
    }
    let epochs = epochs.select(std::iter::once("run").chain(EPOCH_COLUMNS.iter().copied()))?;

    let neurons_path = dir.join("neurons.parquet");
    let neurons = scan_checked(&neurons_path, &neuron_columns())?
        .filter(col("epoch").lt_eq(lit(last_epoch)))
        .with_column(lit(index).cast(DataType::UInt32).alias("run"))
        .select(
            std::iter::once(col("run"))
                .chain(NEURON_COLUMNS.iter().map(|n| col(*n)))
                .collect::<Vec<_>>(),
        );
    // One run's rows decoded once and dropped: a file that cannot be decoded skips its run now,
    // so the measures' scans later only meet files that decode. Memory stays one run's worth.
    neurons
        .clone()
        .collect()
        .map_err(anyhow::Error::from)
        .with_context(|| format!("reading {}", neurons_path.display()))?;
    Ok((epochs, neurons))
}

/// The test accuracy of epochs 0..=`last_epoch` of a run, from its `epochs.parquet`.
fn read_test_curve(dir: &Path, last_epoch: u32) -> Result<Vec<(u32, f64)>> {
    let epochs = without_reader_panics(dir, || -> Result<DataFrame> {
        Ok(scan_checked(&dir.join("epochs.parquet"), &epoch_columns())?
            .filter(col("epoch").lt_eq(lit(last_epoch)))
            .sort(["epoch"], Default::default())
            .collect()?)
    })??;
    let epoch = epochs.column(ec::EPOCH)?.u32()?;
    let acc = epochs.column(ec::TEST_ACC)?.f64()?;
    Ok(epoch
        .iter()
        .zip(acc.iter())
        .filter_map(|(e, a)| Some((e?, a?)))
        .collect())
}

/// A lazy scan of one parquet file holding `columns` (cast to the documented types), or an error
/// naming the file and what is wrong with it.
pub(crate) fn scan_checked(path: &Path, columns: &[(&str, DataType)]) -> Result<LazyFrame> {
    if !path.is_file() {
        bail!("{}: missing", path.display());
    }
    let source = PlRefPath::try_from_path(path)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("{}: unusable path", path.display()))?;
    let mut lf = LazyFrame::scan_parquet(source, ScanArgsParquet::default())
        .map_err(anyhow::Error::from)
        .with_context(|| format!("{}: not a readable parquet file", path.display()))?;
    let schema = lf
        .collect_schema()
        .map_err(anyhow::Error::from)
        .with_context(|| format!("{}: not a readable parquet file", path.display()))?;
    let missing: Vec<&str> = columns
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| schema.get(n).is_none())
        .collect();
    if !missing.is_empty() {
        bail!("{}: missing columns {}", path.display(), missing.join(", "));
    }
    Ok(lf.select(
        columns
            .iter()
            .map(|(n, t)| col(*n).strict_cast(t.clone()))
            .collect::<Vec<_>>(),
    ))
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
