//! A run's state on disk: a fresh start (model, optimiser, manifest, probe indices), a resume from
//! the last checkpoint (refusing one whose config differs), and the records and checkpoint
//! written after every epoch.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{bail, Context, Result};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::activation::Activation;
use crate::arch;
use crate::data::Dataset;
use crate::hooks::recorder::NeuronRow;
use crate::hooks::representation::LayerRow;
use crate::hooks::{EpochRow, InterventionRow};
use crate::model::{Initialisation, Model, SiteInfo};
use crate::optim::Optimizer;
use necrosis_records::checkpoint::{
    checkpoint_path, first_moment_name, metadata, read_safetensors, second_moment_name,
    write_safetensors, HOOK_STATE_PREFIX, MODEL_FILE,
};
use necrosis_records::config::{InvalidConfig, RunConfig, DEFAULT_PROBE_SIZE};
use necrosis_records::files::{now_rfc3339, write_probe_indices};
use necrosis_records::{Manifest, RunStatus, FORMAT_VERSION};

use super::*;
use crate::arch::LayerSpec;

/// The probe set: `probe_size` training indices drawn without replacement with the run's seed,
/// sorted. Indices refer to the training split as stored, before shuffling or --train-limit
/// (which keeps a prefix, so the indices stay valid).
pub fn probe_indices(config: &RunConfig, dataset: &Dataset) -> Result<Vec<usize>> {
    let n = dataset.train.len();
    let size = match config.probe_size {
        Some(size) if size > n => {
            return Err(InvalidConfig {
                key: "probe_size",
                problem: format!("{size} is larger than the training split ({n} samples)"),
            }
            .into())
        }
        Some(size) => size,
        None => DEFAULT_PROBE_SIZE.min(n),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    rng.set_stream(u64::MAX);
    let mut indices = rand::seq::index::sample(&mut rng, n, size).into_vec();
    indices.sort_unstable();
    Ok(indices)
}

pub(super) fn fresh(
    run_dir: &Path,
    config: &RunConfig,
    dataset: &Dataset,
    activation: Activation,
    options: &RunOptions,
) -> Result<State> {
    let (architecture, model) = build_model(config, dataset, activation)?;
    let optimizer = Optimizer::new(config.optimizer, model.params());
    write_probe_indices(run_dir, &probe_indices(config, dataset)?)?;
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        crate_version: env!("CARGO_PKG_VERSION").to_string(),
        // The folder's name: the sweep names it from the configuration and its identity.
        run_id: run_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        sweep: options.sweep.clone(),
        config_hash: options.identity.config_hash.clone(),
        data_checksum: options.identity.data_checksum.clone(),
        status: RunStatus::Running,
        epochs_completed: 0,
        started_at: now_rfc3339(),
        ended_at: None,
        error: None,
        config: config.clone(),
        activation: config.activation.clone(),
        input: dataset.input_shape(),
        classes: dataset.classes,
        train_samples: dataset.train.len(),
        test_samples: dataset.test.len(),
        normalization: dataset.normalization.clone(),
        architecture,
        sites: model.sites.iter().map(SiteInfo::record).collect(),
    };
    Ok(State {
        model,
        optimizer,
        epochs: Vec::new(),
        neurons: Vec::new(),
        interventions: Vec::new(),
        hook_state: BTreeMap::new(),
        layers: options.instruments.then(Vec::new),
        completed: 0,
        seconds_before: 0.0,
        manifest,
    })
}

/// The run directory holds a run of another configuration: an error of the request, not of
/// the stored run, which stays as it was (not marked failed).
#[derive(Debug, thiserror::Error)]
#[error("{}: the run directory holds a run with another configuration", run_dir.display())]
pub struct ConfigMismatch {
    pub run_dir: std::path::PathBuf,
}

/// Rebuilds the state of the last checkpoint; records of later epochs (written before a kill
/// reached the checkpoint) are dropped and redone.
pub(super) fn restore(
    run_dir: &Path,
    config: &RunConfig,
    dataset: &Dataset,
    activation: Activation,
    instruments: bool,
) -> Result<State> {
    let mut manifest = Manifest::read(run_dir)?;
    if &manifest.config != config {
        return Err(ConfigMismatch {
            run_dir: run_dir.to_path_buf(),
        }
        .into());
    }
    let checkpoint = read_safetensors(&checkpoint_path(run_dir))?;
    let completed = checkpoint.number(metadata::EPOCH)? as usize;
    let (_, mut model) = build_model(config, dataset, activation)?;
    let mut optimizer = Optimizer::new(config.optimizer, model.params());
    optimizer.step = checkpoint.number(metadata::STEP)? as u64;
    let in_checkpoint = || format!("reading {}", checkpoint.path.display());
    // An optimiser moment or a BN running statistic: the stored tensor `name` into `into`, which
    // belongs to the model's `owner`.
    let restore = |into: &mut [f32], name: &str, owner: &str| -> Result<()> {
        let values = checkpoint.tensor(name)?;
        if values.len() != into.len() {
            bail!(
                "{}: tensor {name} has {} values, the model's {owner} has {}",
                in_checkpoint(),
                values.len(),
                into.len()
            );
        }
        into.copy_from_slice(values);
        Ok(())
    };
    for (i, param) in model.params_mut().into_iter().enumerate() {
        param
            .set_values(checkpoint.tensor(&param.name)?)
            .with_context(in_checkpoint)?;
        restore(
            &mut optimizer.first_moment[i],
            &first_moment_name(&param.name),
            &param.name,
        )?;
        if !optimizer.second_moment.is_empty() {
            restore(
                &mut optimizer.second_moment[i],
                &second_moment_name(&param.name),
                &param.name,
            )?;
        }
    }
    for (name, values) in model.buffers_mut() {
        restore(values, &name, &name)?;
    }
    let mut epochs = EpochRow::read_all(run_dir)?;
    epochs.retain(|e| (e.epoch as usize) <= completed);
    let mut neurons = NeuronRow::read_all(run_dir)?;
    neurons.retain(|n| (n.epoch as usize) <= completed);
    // An epoch's end-of-epoch changes precede its checkpoint, so they stay with it.
    let mut interventions = InterventionRow::read_if_present(run_dir)?.unwrap_or_default();
    interventions.retain(|r| (r.epoch as usize) <= completed);
    let hook_state = checkpoint
        .tensors
        .iter()
        .filter_map(|(name, (_, values))| {
            let name = name.strip_prefix(HOOK_STATE_PREFIX)?;
            Some((name.to_string(), values.clone()))
        })
        .collect();
    // A run begun before layers.parquet existed, or with the instruments off, has none: it
    // continues from the resumed epoch.
    let layers = match instruments {
        true => {
            let mut layers = LayerRow::read_if_present(run_dir)?.unwrap_or_default();
            layers.retain(|l| (l.epoch as usize) <= completed);
            Some(layers)
        }
        false => None,
    };
    if epochs.len() != completed + 1 {
        bail!(
            "{}: epochs.parquet has {} of the {} epochs the checkpoint covers",
            run_dir.display(),
            epochs.len(),
            completed + 1
        );
    }
    manifest.status = RunStatus::Running;
    manifest.epochs_completed = completed;
    manifest.ended_at = None;
    manifest.error = None;
    Ok(State {
        model,
        optimizer,
        epochs,
        neurons,
        interventions,
        hook_state,
        layers,
        completed,
        seconds_before: checkpoint.number(metadata::SECONDS)?,
        manifest,
    })
}

/// Writes the epoch's records, then the checkpoint, then the manifest that declares the epoch
/// complete: a kill between two writes leaves the manifest at the previous epoch, and readers
/// ignore rows beyond it.
pub(super) fn save_epoch(
    run_dir: &Path,
    state: &mut State,
    epoch: usize,
    seconds: f64,
    hook_state: &[(String, Vec<f32>)],
) -> Result<()> {
    EpochRow::write_all(run_dir, &state.epochs)?;
    NeuronRow::write_all(run_dir, &state.neurons)?;
    if !state.manifest.config.intervention.is_none() || !state.interventions.is_empty() {
        InterventionRow::write_all(run_dir, &state.interventions)?;
    }
    if let Some(layers) = &state.layers {
        LayerRow::write_all(run_dir, layers)?;
    }
    let params = state.model.params();
    // The BN layers' running statistics are part of the trained network (evaluation uses
    // them) and of its state (a resumed run continues them).
    let buffers = state.model.buffers();
    let mut tensors: Vec<(String, Vec<usize>, &[f32])> = params
        .iter()
        .map(|p| (p.name.clone(), p.shape.clone(), p.value.as_slice()))
        .chain(
            buffers
                .iter()
                .map(|(name, values)| (name.clone(), vec![values.len()], values.as_slice())),
        )
        .collect();
    let model_meta = HashMap::from([
        (
            metadata::ACTIVATION.to_string(),
            state.manifest.activation.clone(),
        ),
        (
            metadata::ARCHITECTURE.to_string(),
            serde_json::to_string(&state.manifest.architecture)?,
        ),
        (metadata::EPOCH.to_string(), epoch.to_string()),
    ]);
    write_safetensors(&run_dir.join(MODEL_FILE), &tensors, model_meta)?;
    for (i, p) in params.iter().enumerate() {
        tensors.push((
            first_moment_name(&p.name),
            p.shape.clone(),
            &state.optimizer.first_moment[i],
        ));
        if !state.optimizer.second_moment.is_empty() {
            tensors.push((
                second_moment_name(&p.name),
                p.shape.clone(),
                &state.optimizer.second_moment[i],
            ));
        }
    }
    for (name, values) in hook_state {
        tensors.push((
            format!("{HOOK_STATE_PREFIX}{name}"),
            vec![values.len()],
            values,
        ));
    }
    let checkpoint_meta = HashMap::from([
        (metadata::EPOCH.to_string(), epoch.to_string()),
        (metadata::STEP.to_string(), state.optimizer.step.to_string()),
        (metadata::SECONDS.to_string(), seconds.to_string()),
    ]);
    write_safetensors(&checkpoint_path(run_dir), &tensors, checkpoint_meta)?;
    state.completed = epoch;
    state.manifest.epochs_completed = epoch;
    Ok(state.manifest.write(run_dir)?)
}

/// The run's resolved layers (what the manifest lists) and its network, initialised from its
/// seed; a resume then loads the checkpoint into it.
pub(super) fn build_model(
    config: &RunConfig,
    dataset: &Dataset,
    activation: Activation,
) -> Result<(Vec<LayerSpec>, Model)> {
    let architecture = arch::resolve(&config.arch, dataset.input_shape(), dataset.classes)?;
    let init = Initialisation {
        scheme: config.init,
        bias: config.bias_init,
        output: config.output_init,
    };
    let model = Model::with_init(
        &architecture,
        dataset.input_shape(),
        dataset.classes,
        activation,
        config.seed,
        &init,
    )?;
    Ok((architecture, model))
}
