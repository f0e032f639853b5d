//! Test support: a figure context over run records written by hand, so that a figure's data can
//! be checked against values known by construction.

use std::path::Path;

use crate::aggregate::Aggregate;
use crate::figures::{FigureContext, Palette};
use crate::load::{load_runs, RunSet};
use crate::measures::{compute_measures, MeasureOptions, Measures};

/// Runs written into a temporary folder's sweep `s`, loaded and measured.
pub(super) struct Fixture {
    pub(super) tmp: tempfile::TempDir,
    pub(super) runs: RunSet,
    pub(super) measures: Measures,
    pub(super) options: MeasureOptions,
    pub(super) aggregate: Aggregate,
}

impl Fixture {
    /// `write(root)` writes the runs (sweep `s` under `root`).
    pub(super) fn new(options: MeasureOptions, write: impl FnOnce(&Path)) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path());
        let runs = load_runs(&[tmp.path().join("s")]).unwrap();
        let measures = compute_measures(&runs, &options).unwrap();
        Fixture {
            tmp,
            runs,
            measures,
            options,
            aggregate: Aggregate::default(),
        }
    }

    pub(super) fn context(&self) -> FigureContext<'_> {
        FigureContext {
            runs: &self.runs,
            measures: &self.measures,
            aggregate: &self.aggregate,
            options: &self.options,
            palette: Palette::new(["relu"]),
            out_dir: self.tmp.path().join("figures"),
        }
    }
}
