//! An activation the crate does not ship — Mish, x·tanh(softplus(x)) — trained and recorded like a
//! built-in, without touching the crate: implement `ActivationFunction` and pass it in
//! `RunOptions::activation`.
//!
//! Run: `cargo run --release --example custom_activation`

use std::sync::Arc;

use necrosis::activation::ActivationFunction;
use necrosis::data::{self, DatasetKind, DatasetSpec};
use necrosis::records::config::RunConfig;
use necrosis::records::tables::NeuronRow;
use necrosis::train::{self, RunOptions};

#[derive(Debug)]
struct Mish;

fn softplus(x: f32) -> f32 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

impl ActivationFunction for Mish {
    fn name(&self) -> &str {
        "mish"
    }
    fn value(&self, x: f32) -> f32 {
        x * softplus(x).tanh()
    }
    /// d/dx x·tanh(sp(x)) = tanh(sp) + x·(1 − tanh²(sp))·sigmoid(x).
    fn derivative(&self, x: f32) -> f32 {
        let t = softplus(x).tanh();
        let sigmoid = 1.0 / (1.0 + (-x).exp());
        t + x * (1.0 - t * t) * sigmoid
    }
}

fn main() -> anyhow::Result<()> {
    // The analytic derivative agrees with a central difference before we train with it.
    for x in [-3.0f32, -0.5, 0.3, 2.0] {
        let numeric = (Mish.value(x + 1e-3) - Mish.value(x - 1e-3)) / 2e-3;
        assert!((numeric - Mish.derivative(x)).abs() < 1e-3, "mish'({x})");
    }
    let spec = DatasetSpec::new(DatasetKind::Digits);
    let dataset = data::load(&spec)?;
    let config = RunConfig {
        lr: 0.05,
        epochs: 3,
        ..RunConfig::new(spec, "mish")
    };
    let dir = tempfile::tempdir()?;
    let options = RunOptions {
        activation: Some(Arc::new(Mish)),
        ..Default::default()
    };
    let outcome = train::run(&dataset, &config, dir.path(), options)?;
    let neurons = NeuronRow::read_all(dir.path())?;
    let last = neurons.iter().map(|r| r.epoch).max().unwrap_or(0);
    let at_end: Vec<_> = neurons.iter().filter(|r| r.epoch == last).collect();
    let dead = at_end.iter().filter(|r| r.max_pre <= 0.0).count();
    println!("mish on digits: {outcome:?}; {dead} of {} neurons dead (max z ≤ 0 on the probe set) at epoch {last}", at_end.len());
    Ok(())
}
