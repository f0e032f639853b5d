//! The one error type of the records: the file concerned and what is wrong with it.

use std::fmt;
use std::path::{Path, PathBuf};

/// A record file that could not be read or written: its path and the problem.
#[derive(Debug, thiserror::Error)]
#[error("{action} {}: {problem}", path.display())]
pub struct RecordError {
    /// `reading` or `writing`.
    pub action: Action,
    pub path: PathBuf,
    /// Part of the message, not a separate cause, so that a chain of errors says it once.
    pub problem: Problem,
}

/// Whether the file was being read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Reading,
    Writing,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Reading => "reading",
            Action::Writing => "writing",
        })
    }
}

/// What is wrong with a record file.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("{0}")]
    Io(std::io::Error),
    #[error("not valid JSON ({0})")]
    NotJson(serde_json::Error),
    #[error("format_version {found} is not supported by this version (reads {reads})")]
    UnsupportedVersion { found: u64, reads: u32 },
    #[error("no format_version")]
    NoFormatVersion,
    #[error("not a necrosis manifest ({0})")]
    NotAManifest(serde_json::Error),
    #[error("not a readable parquet file ({0})")]
    NotParquet(String),
    #[error("not a readable parquet file (the parquet reader failed on corrupt data: {0})")]
    ReaderPanicked(String),
    #[error("no column {0}")]
    MissingColumn(&'static str),
    #[error("column {column}: {message}")]
    BadColumn {
        column: &'static str,
        message: String,
    },
    #[error("not a valid safetensors file ({0})")]
    NotSafetensors(String),
    #[error("tensor {0} is not f32")]
    NotF32(String),
    #[error("no tensor {0}")]
    MissingTensor(String),
    #[error("no valid '{0}' in its metadata")]
    MissingMetadata(&'static str),
    #[error("{0}")]
    Invalid(String),
}

impl From<std::io::Error> for Problem {
    fn from(e: std::io::Error) -> Self {
        Problem::Io(e)
    }
}

impl RecordError {
    pub fn reading(path: &Path, problem: impl Into<Problem>) -> Self {
        RecordError {
            action: Action::Reading,
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }

    pub fn writing(path: &Path, problem: impl Into<Problem>) -> Self {
        RecordError {
            action: Action::Writing,
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }
}
