//! Records written by the trainer are read by the analysis: the two sides share one format crate,
//! and this checks that what one writes the other reads with the same values.

use necrosis::records::tables::{epoch_columns, neuron_columns, EpochRow, NeuronRow};
use necrosis::records::Manifest;

use crate::common;

#[test]
fn the_analysis_reads_what_the_trainer_wrote() {
    let (_tmp, run) = common::tiny_complete_run();
    let manifest = Manifest::read(&run).unwrap();
    let epochs = EpochRow::read_all(&run).unwrap();
    let neurons = NeuronRow::read_all(&run).unwrap();

    let set = necrosis_analysis::load_runs(std::slice::from_ref(&run)).unwrap();
    assert_eq!(
        (set.runs.len(), set.skipped.len()),
        (1, 0),
        "{:?}",
        set.skipped
    );
    let loaded = &set.runs[0];
    assert_eq!(loaded.run_id, manifest.run_id);
    assert_eq!(
        (loaded.dataset.as_str(), loaded.activation.as_str()),
        ("digits", "relu")
    );
    assert_eq!(loaded.epochs_completed, 2);
    // The analysis counts the network's neurons from the manifest: LeNet on 8×8 digits has
    // 32 + 64 + 128 = 224 recorded neurons.
    assert_eq!(loaded.neuron_count(), Some(224));

    let acc: Vec<f64> = set
        .epochs
        .column(epoch_columns::TEST_ACC)
        .unwrap()
        .f64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(acc, epochs.iter().map(|e| e.test_acc).collect::<Vec<_>>());

    let frame = set
        .neurons_of(0)
        .sort(
            [
                neuron_columns::EPOCH,
                neuron_columns::LAYER,
                neuron_columns::NEURON,
            ],
            Default::default(),
        )
        .collect()
        .unwrap();
    assert_eq!(frame.height(), 224 * 3);
    assert_eq!(neurons.len(), 224 * 3);
    let mut by_key: Vec<&NeuronRow> = neurons.iter().collect();
    by_key.sort_by_key(|r| (r.epoch, r.layer, r.neuron));
    let max_pre: Vec<f64> = frame
        .column(neuron_columns::MAX_PRE)
        .unwrap()
        .f64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(
        max_pre,
        by_key.iter().map(|r| r.max_pre).collect::<Vec<_>>()
    );

    let summary = necrosis_analysis::inspect_run(&run).unwrap();
    assert!(
        summary.contains("status    complete (2 of 2 epochs completed)"),
        "{summary}"
    );
    assert!(
        summary.contains("sites     0:conv1(32) 1:conv2(64) 2:fc1(128)"),
        "{summary}"
    );
}
