//! necrosis-records: the run directory of `docs/records.md`, the one contract between the trainer
//! (which writes it) and the analysis (which reads it).
//!
//! This crate owns every part of that contract, so that a writer and a reader that disagree fail
//! to compile rather than at run time:
//! - [`augment`]: the training-time augmentation setting and its text form (`crop:4+flip`);
//! - [`config`]: a run's configuration (`manifest.json`'s `"config"`), with its run-id;
//! - [`architecture`]: the layers and activation sites a manifest lists;
//! - [`init`]: the weight-initialisation scheme and bias rule of a run's conv and fc layers;
//! - [`intervention`]: the intervention a run applies during training (`redo:0.1:1`);
//! - [`grid`]: a sweep's grid, in which every setting may be a list, and its expansion;
//! - [`manifest`]: `manifest.json`, its status and format version;
//! - [`tables`]: `epochs.parquet`, `neurons.parquet` and `interventions.parquet`, declared once as row types and columns;
//! - [`checkpoint`]: `model.safetensors` and `checkpoint/state.safetensors`, with tensor names;
//! - [`files`]: atomic writes, temporaries of killed writers, `probe_indices.json`, and reads
//!   that turn a parquet reader's panic on a damaged file into an error.
//!
//! It knows nothing of training or statistics. Every failure is a [`RecordError`] that names the
//! file and what is wrong with it.

pub mod architecture;
pub mod augment;
pub mod checkpoint;
pub mod config;
pub mod files;
pub mod grid;
pub mod init;
pub mod intervention;
pub mod manifest;
pub mod tables;

mod error;
mod text_serde;

pub use error::{Problem, RecordError};
pub use manifest::{Manifest, RunStatus, FORMAT_VERSION};

/// Results of this crate.
pub type Result<T, E = RecordError> = std::result::Result<T, E>;
