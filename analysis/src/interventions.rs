//! Reading what an intervention did to a run (issue #14): the `intervention` setting of its
//! manifest (`config.intervention`, "none" when absent) and the resets of its
//! `interventions.parquet` (absent: no reset).
//!
//! Both are read here rather than through the records crate's `RunConfig`, so that runs written
//! before and after the setting existed analyse alike: an old manifest simply lacks the key.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use necrosis_records::files::without_reader_panics;
use polars::prelude::*;

use crate::load::{scan_checked, Manifest, RunSet};

/// The setting's name, as a factor, in labels and in contrasts.
pub const INTERVENTION: &str = "intervention";

/// The setting of a run without intervention.
pub const NO_INTERVENTION: &str = "none";

/// The file of resets in a run directory.
pub const INTERVENTIONS_FILE: &str = "interventions.parquet";

/// `config.intervention` of `<run_dir>/manifest.json`, e.g. "redo:0.1:1"; "none" when the key is
/// absent or null. Anything else than a string is an error naming the file.
pub fn intervention_setting(run_dir: &Path) -> Result<String> {
    let path = run_dir.join("manifest.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    match value.get("config").and_then(|c| c.get(INTERVENTION)) {
        None | Some(serde_json::Value::Null) => Ok(NO_INTERVENTION.into()),
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(other) => bail!(
            "{}: config.intervention is {other}, expected a text such as \"redo:0.1:1\"",
            path.display()
        ),
    }
}

/// A run's settings as factors: the config's own ([`RunConfig::factor_values`]) and its
/// intervention. Should the records crate come to list the intervention itself, its value stands.
///
/// [`RunConfig::factor_values`]: necrosis_records::config::RunConfig::factor_values
pub fn run_settings(manifest: &Manifest, intervention: &str) -> BTreeMap<&'static str, String> {
    let mut values = manifest.config.factor_values();
    values
        .entry(INTERVENTION)
        .or_insert_with(|| intervention.to_string());
    values
}

/// Columns of `interventions.parquet` with their types.
fn reset_columns() -> Vec<(&'static str, DataType)> {
    vec![
        ("epoch", DataType::UInt32),
        ("step", DataType::UInt64),
        ("at_epoch_end", DataType::Boolean),
        ("kind", DataType::String),
        ("layer", DataType::UInt32),
        ("layer_name", DataType::String),
        ("neuron", DataType::UInt32),
        ("score", DataType::Float64),
    ]
}

/// The resets of every complete run that has `interventions.parquet`, with a `run` column
/// (UInt32 index into [`RunSet::runs`]), a `reset` column (Int64, the row's number over all runs,
/// so that a reset can be counted once whatever it joins with) and `effect_epoch` (Int64): the
/// first epoch whose records show the network after the reset, `epoch + 1` for a reset after the
/// epoch's records and `epoch` for one during the epoch's training. Resets after a run's last
/// completed epoch E are left out, as the neuron records after E are. `None` when no run has the
/// file: the analysis then has no intervention to report.
pub fn read_resets(runs: &RunSet) -> Result<Option<DataFrame>> {
    let mut frames = Vec::new();
    for run in &runs.runs {
        let path = run.dir.join(INTERVENTIONS_FILE);
        if !path.is_file() {
            continue;
        }
        let read = || -> Result<DataFrame> {
            scan_checked(&path, &reset_columns())?
                .filter(col("epoch").lt_eq(lit(run.epochs_completed)))
                .with_column(lit(run.index).cast(DataType::UInt32).alias("run"))
                .collect()
                .map_err(anyhow::Error::from)
        };
        let frame = without_reader_panics(&path, read)?
            .with_context(|| format!("reading {}", path.display()))?;
        frames.push(frame.lazy());
    }
    if frames.is_empty() {
        return Ok(None);
    }
    let all = concat(frames, UnionArgs::default())?
        .with_row_index("reset", None)
        .with_columns([
            col("reset").cast(DataType::Int64),
            (col("epoch").cast(DataType::Int64) + col("at_epoch_end").cast(DataType::Int64))
                .alias("effect_epoch"),
        ])
        .collect()?;
    Ok(Some(all))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_is_read_from_the_manifest_text() {
        let tmp = tempfile::tempdir().unwrap();
        let write = |config: &str| {
            std::fs::write(
                tmp.path().join("manifest.json"),
                format!("{{\"config\": {config}}}"),
            )
            .unwrap()
        };
        write("{\"lr\": 0.1}");
        assert_eq!(intervention_setting(tmp.path()).unwrap(), "none");
        write("{\"intervention\": \"shrink-perturb:0.8:0.01:1\"}");
        assert_eq!(
            intervention_setting(tmp.path()).unwrap(),
            "shrink-perturb:0.8:0.01:1"
        );
        write("{\"intervention\": 3}");
        let err = intervention_setting(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("manifest.json"), "{err}");
    }
}
