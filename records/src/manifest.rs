//! `manifest.json`: what a run is (its configuration and network) and how far it got.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::architecture::{LayerSpec, Site};
use crate::config::{Normalization, RunConfig};
use crate::files::write_atomic;
use crate::{Problem, RecordError, Result};

/// The manifest format this crate writes. It reads this one and format 1 (before runs were
/// identified by their whole configuration: no `config_hash`, no `data_checksum`).
pub const FORMAT_VERSION: u32 = 2;

/// The manifest's file name in a run directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Being trained, or killed while it was: `resume` continues it.
    Running,
    Complete,
    /// Stopped by an error, recorded in [`Manifest::error`].
    Failed,
    /// The loss became NaN or infinite.
    Diverged,
}

impl RunStatus {
    /// The name manifest.json uses: `running`, `complete`, `failed`, `diverged`.
    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Complete => "complete",
            RunStatus::Failed => "failed",
            RunStatus::Diverged => "diverged",
        }
    }

    /// Whether the run is over for good (skipped by `run` and `resume`).
    pub fn is_finished(self) -> bool {
        matches!(self, RunStatus::Complete | RunStatus::Diverged)
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What identifies a run beyond its folder: the hash of its whole configuration with the data's
/// checksum ([`RunConfig::identity`]), and that checksum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunIdentity {
    pub config_hash: String,
    pub data_checksum: String,
}

/// manifest.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub crate_version: String,
    /// The run directory's name (docs/records.md: readable settings, then `config_hash`).
    pub run_id: String,
    pub sweep: String,
    /// The run's identity: [`RunConfig::identity`] of `config` with `data_checksum`. Empty in
    /// format 1.
    #[serde(default)]
    pub config_hash: String,
    /// SHA-256 of the dataset's files (docs/records.md says which). Empty in format 1.
    #[serde(default)]
    pub data_checksum: String,
    pub status: RunStatus,
    /// Training epochs whose records are complete; rows of later epochs are ignored.
    pub epochs_completed: usize,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub error: Option<String>,
    pub config: RunConfig,
    /// The activation's SPEC §1 name.
    pub activation: String,
    /// `[channels, height, width]` of an input sample.
    pub input: [usize; 3],
    pub classes: usize,
    pub train_samples: usize,
    pub test_samples: usize,
    pub normalization: Normalization,
    pub architecture: Vec<LayerSpec>,
    pub sites: Vec<Site>,
}

impl Manifest {
    /// Reads `<run_dir>/manifest.json`.
    pub fn read(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| RecordError::reading(&path, e))?;
        Self::parse(&text, &path)
    }

    /// Parses the text of a manifest.json; `path` only names the file in errors. The format
    /// version is checked before the fields, so a manifest of another version says so.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| RecordError::reading(path, Problem::NotJson(e)))?;
        match value.get("format_version").and_then(|v| v.as_u64()) {
            Some(v) if v == 1 || v == FORMAT_VERSION as u64 => {}
            Some(found) => {
                return Err(RecordError::reading(
                    path,
                    Problem::UnsupportedVersion {
                        found,
                        reads: FORMAT_VERSION,
                    },
                ))
            }
            None => return Err(RecordError::reading(path, Problem::NoFormatVersion)),
        }
        serde_json::from_value(value)
            .map_err(|e| RecordError::reading(path, Problem::NotAManifest(e)))
    }

    /// Writes `<run_dir>/manifest.json` atomically.
    pub fn write(&self, run_dir: &Path) -> Result<()> {
        let path = run_dir.join(MANIFEST_FILE);
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| RecordError::writing(&path, Problem::Invalid(e.to_string())))?;
        write_atomic(&path, &json)
    }
}
