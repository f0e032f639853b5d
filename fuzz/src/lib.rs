//! The IDX and CIFAR parsers of `necrosis::data`, compiled from their own source files with
//! the few items of `data/mod.rs` they use, so that their fuzz targets build in seconds instead
//! of instrumenting polars and dfdx. The code under test is exactly `trainer/src/data/idx.rs` and
//! `trainer/src/data/cifar.rs` (their `#[cfg(test)]` modules aside).

#![allow(dead_code)]

use std::fmt;
use std::path::Path;

#[path = "../../trainer/src/data/idx.rs"]
pub mod idx;

#[path = "../../trainer/src/data/cifar.rs"]
pub mod cifar;

/// As `necrosis::data::Split`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Split {
    pub images: Vec<f32>,
    pub labels: Vec<u32>,
}

/// As `necrosis::data::ScaledDataset`.
pub(crate) struct ScaledDataset {
    pub classes: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub train: Split,
    pub test: Split,
}

/// As `necrosis::data::file_error`.
pub(crate) fn file_error(path: &Path, problem: impl fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("reading {}: {}", path.display(), problem)
}
