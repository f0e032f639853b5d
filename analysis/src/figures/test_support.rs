//! Test support: a figure context over run records written by hand, so that a figure's data can
//! be checked against values known by construction.

use std::path::Path;

use crate::aggregate::Aggregate;
use crate::figures::{FigureContext, Palette};
use crate::load::{load_runs, RunSet};
use crate::measures::{compute_measures, MeasureOptions, Measures};
use crate::synthetic::{write_run, EpochRecord, NeuronRecord, RunSpec};

/// Writes one complete relu run of one layer (`fc1`) of two neurons over epochs 0..2, every
/// neuron alive until `edit` changes its records (laid out epoch by epoch, neuron by neuron).
pub(super) fn two_neuron_run(root: &Path, edit: impl FnOnce(&mut [NeuronRecord])) {
    let epochs: Vec<EpochRecord> = (0..3)
        .map(|e| EpochRecord::new(e, 0.5, (e > 0).then_some(1.0)))
        .collect();
    let mut neurons: Vec<NeuronRecord> = (0..3)
        .flat_map(|e| (0..2).map(move |n| NeuronRecord::alive(e, 0, n)))
        .collect();
    edit(&mut neurons);
    let spec = RunSpec::new("s", "digits", "relu", 0, 0.05, 2, vec![("fc1".into(), 2)]);
    write_run(root, &spec, &epochs, &neurons).unwrap();
}

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
            representation: None,
            palette: Palette::new(["relu"]),
            out_dir: self.tmp.path().join("figures"),
        }
    }
}
