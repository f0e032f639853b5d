//! `necrosis-report inspect`: a terminal summary of one run directory, whatever its status.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use polars::prelude::*;

use crate::load::Manifest;
use necrosis_records::files::without_reader_panics;
use necrosis_records::tables::{neuron_columns as nc, EpochRow, NeuronRow};

/// A terminal summary of one run directory, whatever its status: configuration, status, the
/// per-epoch accuracy and loss, and the dead percentage per layer per epoch.
pub fn inspect_run(dir: &Path) -> Result<String> {
    let manifest = Manifest::read(dir)?;
    let mut out = String::new();
    let c = &manifest.config;
    let _ = writeln!(out, "run       {}", manifest.run_id);
    let _ = writeln!(out, "sweep     {}", manifest.sweep);
    let _ = writeln!(
        out,
        "status    {} ({} of {} epochs completed)",
        manifest.status, manifest.epochs_completed, c.epochs
    );
    if let Some(e) = &manifest.error {
        let _ = writeln!(out, "error     {e}");
    }
    let _ = writeln!(
        out,
        "dataset   {}   activation {}   seed {}   lr {}",
        c.dataset.kind, c.activation, c.seed, c.lr
    );
    // Every other setting, as sweeps and exclusion rules spell it.
    let shown = ["dataset", "activation", "seed", "lr", "epochs"];
    // The intervention (issue #14) is named only when there is one, so that the summary of
    // a run without stays as it was.
    let intervention = crate::interventions::intervention_setting(dir)
        .unwrap_or_else(|_| crate::interventions::NO_INTERVENTION.into());
    let extras: Vec<String> = crate::interventions::run_settings(&manifest, &intervention)
        .into_iter()
        .filter(|(k, v)| {
            let no_intervention = *k == crate::interventions::INTERVENTION
                && v == crate::interventions::NO_INTERVENTION;
            !shown.contains(k) && !no_intervention
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let _ = writeln!(out, "config    {}", extras.join(" "));
    if !manifest.config_hash.is_empty() {
        let data: String = manifest.data_checksum.chars().take(16).collect();
        let _ = writeln!(out, "identity  {} (data {data})", manifest.config_hash);
    }
    if !manifest.sites.is_empty() {
        let sites: Vec<String> = manifest
            .sites
            .iter()
            .map(|s| format!("{}:{}({})", s.site, s.layer_name, s.neurons))
            .collect();
        let _ = writeln!(out, "sites     {}", sites.join(" "));
    }
    let last = manifest.epochs_completed as u32;

    let mut epochs = EpochRow::read_all(dir)?;
    epochs.retain(|e| e.epoch <= last);
    epochs.sort_by_key(|e| e.epoch);
    let neurons_path = dir.join(NeuronRow::FILE);
    let dead = without_reader_panics(&neurons_path, || -> Result<DataFrame> {
        let source = PlRefPath::try_from_path(&neurons_path)?;
        Ok(LazyFrame::scan_parquet(source, ScanArgsParquet::default())?
            .filter(col(nc::EPOCH).lt_eq(lit(last)))
            .group_by([col(nc::EPOCH), col(nc::LAYER)])
            .agg([
                col(nc::LAYER_NAME).first(),
                (col(nc::MAX_PRE)
                    .lt_eq(lit(0.0))
                    .cast(DataType::Float64)
                    .mean()
                    * lit(100.0))
                .alias("dead_pct"),
            ])
            .sort([nc::LAYER, nc::EPOCH], Default::default())
            .collect()?)
    })?
    .with_context(|| format!("reading {}", neurons_path.display()))?;

    let mut layers: BTreeMap<u32, String> = BTreeMap::new();
    let mut dead_at: BTreeMap<(u32, u32), f64> = BTreeMap::new();
    {
        let epoch = dead.column("epoch")?.cast(&DataType::UInt32)?;
        let layer = dead.column("layer")?.cast(&DataType::UInt32)?;
        let (epoch, layer) = (epoch.u32()?, layer.u32()?);
        let name = dead.column("layer_name")?.str()?;
        let pct = dead.column("dead_pct")?.f64()?;
        for i in 0..dead.height() {
            if let (Some(e), Some(l)) = (epoch.get(i), layer.get(i)) {
                layers.insert(l, name.get(i).unwrap_or_default().to_string());
                dead_at.insert((e, l), pct.get(i).unwrap_or(f64::NAN));
            }
        }
    }
    let _ = writeln!(out);
    let _ = write!(
        out,
        "{:>5} {:>10} {:>10} {:>9} {:>9}",
        "epoch", "train_loss", "test_loss", "test_acc", "seconds"
    );
    for name in layers.values() {
        let _ = write!(out, " {:>12}", format!("dead% {name}"));
    }
    let _ = writeln!(out);
    let cell = |v: Option<f64>, width: usize, digits: usize| match v {
        Some(v) if v.is_finite() => format!("{v:>width$.digits$}"),
        Some(v) => format!("{v:>width$}"),
        None => format!("{:>width$}", "-"),
    };
    for row in &epochs {
        let e = row.epoch;
        let _ = write!(
            out,
            "{:>5} {} {} {} {}",
            e,
            cell(row.train_loss, 10, 4),
            cell(Some(row.test_loss), 10, 4),
            cell(Some(row.test_acc), 9, 4),
            cell(Some(row.seconds), 9, 1)
        );
        for l in layers.keys() {
            let _ = write!(out, " {}", cell(dead_at.get(&(e, *l)).copied(), 12, 1));
        }
        let _ = writeln!(out);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::RunStatus;
    use crate::synthetic::{write_run, EpochRecord, NeuronRecord, RunSpec};

    #[test]
    fn inspect_shows_config_and_dead_percentages() {
        let tmp = tempfile::tempdir().unwrap();
        let mut spec = RunSpec::new("s", "digits", "elu", 3, 0.1, 5, vec![("fc1".into(), 2)]);
        spec.status = RunStatus::Running;
        let epochs: Vec<EpochRecord> = (0..3)
            .map(|e| EpochRecord::new(e, 0.3 * e as f64, (e > 0).then_some(1.0)))
            .collect();
        let mut neurons: Vec<NeuronRecord> = (0..3)
            .flat_map(|e| (0..2).map(move |n| NeuronRecord::alive(e, 0, n)))
            .collect();
        neurons[5].max_pre = -1.0; // neuron 1 dead at epoch 2
        let dir = write_run(tmp.path(), &spec, &epochs, &neurons).unwrap();
        let text = inspect_run(&dir).unwrap();
        assert!(text.contains("digits-elu-lr0.1-s3"), "{text}");
        assert!(text.contains("running (2 of 5 epochs completed)"), "{text}");
        assert!(text.contains("dead% fc1"), "{text}");
        let last = text.lines().last().unwrap();
        assert!(
            last.trim_start().starts_with('2') && last.trim_end().ends_with("50.0"),
            "{text}"
        );
    }
}
