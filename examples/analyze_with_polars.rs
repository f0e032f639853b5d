//! Reading run records directly with polars, without the analysis crate: train two short runs on
//! the embedded digits, then compute the share of dead neurons (max_pre ≤ 0 on the probe set)
//! per activation, layer and epoch from neurons.parquet.
//!
//! Run: `cargo run --release --example analyze_with_polars`

use necrosis::data::{self, DatasetKind, DatasetSpec};
use necrosis::records::config::RunConfig;
use necrosis::train::{self, RunOptions};
use polars::prelude::*;

fn main() -> anyhow::Result<()> {
    let spec = DatasetSpec::new(DatasetKind::Digits);
    let dataset = data::load(&spec)?;
    let sweep = tempfile::tempdir()?;
    let mut frames = Vec::new();
    for activation in ["relu", "relu-softsign"] {
        let config = RunConfig {
            lr: 0.1,
            epochs: 3,
            ..RunConfig::new(spec.clone(), activation)
        };
        let run_dir = sweep.path().join(activation);
        train::run(&dataset, &config, &run_dir, RunOptions::default())?;
        let path = run_dir.join("neurons.parquet");
        let frame = LazyFrame::scan_parquet(PlRefPath::try_from_path(&path)?, Default::default())?
            .with_column(lit(activation).alias("activation"));
        frames.push(frame);
    }
    let dead = concat(frames, UnionArgs::default())?
        .group_by([col("activation"), col("layer_name"), col("epoch")])
        .agg([col("max_pre")
            .lt_eq(lit(0.0))
            .cast(DataType::Float64)
            .mean()
            .alias("dead_frac")])
        .sort(["activation", "layer_name", "epoch"], Default::default())
        .collect()?;
    println!("{dead}");
    Ok(())
}
