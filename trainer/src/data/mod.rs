//! Dataset loading: turns a [`DatasetSpec`] into a [`Dataset`] of normalised NCHW `f32` images
//! and `u32` labels, split into training and test sets.
//!
//! One file per source format: [`digits`] (the embedded UCI optical digits), [`idx`] (MNIST,
//! Fashion-MNIST and any other IDX files), [`cifar`] (CIFAR-10/100 binary), [`folder`] (one
//! sub-folder of PNG/JPEG images per class, or images whose names end in their label) and
//! [`synthetic`] (generated patterns). Each loader returns pixels scaled to `[0, 1]`; this
//! module then normalises them. [`augment`] transforms training minibatches (random crop and
//! flip) after normalisation.
//!
//! # Normalisation
//!
//! Every loader first scales pixels to `[0, 1]` (8-bit pixels are divided by 255, the digits'
//! 0..16 counts by 16). Then, for each channel `c`, the mean `m_c` and the population standard
//! deviation `s_c` (divided by N, not N - 1) are computed over every pixel of that channel in
//! the whole training split, and both splits are mapped to `(x - m_c) / s_c`. A channel that is
//! constant over the training split would have `s_c = 0`; the standard deviation is floored at
//! `1e-6` so that the division stays finite. The numbers used are kept in
//! [`Dataset::normalization`] so that a run's manifest can state them.
//!
//! Errors from bad input (a missing file, a wrong magic number, a truncated file, counts that
//! disagree, an unreadable image, an empty class folder) are one message that names the file
//! and the problem; no loader panics on malformed bytes.

pub mod augment;
pub mod checksum;
pub mod cifar;
pub mod digits;
pub mod folder;
pub mod idx;
pub mod synthetic;
#[cfg(test)]
pub(crate) mod test_data;

use std::fmt;
use std::path::Path;

use anyhow::{bail, Result};
use rayon::prelude::*;

pub use necrosis_records::config::{DatasetKind, DatasetSpec, Normalization, UnknownDatasetKind};

/// One split (training or test) of a dataset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Split {
    /// All images, one after another, each `channels × height × width` values in NCHW order;
    /// normalised once [`load`] returns (see the module documentation).
    pub images: Vec<f32>,
    /// The class of each image, `0..classes`.
    pub labels: Vec<u32>,
}

impl Split {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split holds no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The `sample_len` values of sample `i` (`sample_len` is [`Dataset::sample_len`]).
    /// Panics if `i` is out of range, like slice indexing.
    pub fn sample(&self, i: usize, sample_len: usize) -> &[f32] {
        &self.images[i * sample_len..(i + 1) * sample_len]
    }
}

/// A loaded dataset: both splits, normalised, with their shape and the normalisation used.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The dataset's name, its [`DatasetKind::name`].
    pub name: String,
    /// Number of classes; every label is below it.
    pub classes: usize,
    /// Channels per image (1 grey, 3 RGB).
    pub channels: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// The training split, in the order its files store it.
    pub train: Split,
    /// The test split, in the order its files store it.
    pub test: Split,
    /// The per-channel normalisation already applied to both splits.
    pub normalization: Normalization,
}

impl Dataset {
    /// Values per sample: `channels × height × width`.
    pub fn sample_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// `[channels, height, width]`.
    pub fn input_shape(&self) -> [usize; 3] {
        [self.channels, self.height, self.width]
    }

    /// Keep the first n training samples in stored order (for --train-limit); error if n == 0.
    ///
    /// A limit at or above the split's size keeps everything. The normalisation is left as it
    /// was computed over the full training split, so that a limited run sees the same input
    /// scaling as a full one.
    pub fn limit_train(&mut self, n: usize) -> Result<()> {
        if n == 0 {
            bail!("the training limit must be at least 1 sample, got 0");
        }
        if n < self.train.len() {
            let sample_len = self.sample_len();
            self.train.images.truncate(n * sample_len);
            self.train.labels.truncate(n);
        }
        Ok(())
    }
}

/// Loads the dataset `spec` names, normalised as described in the module documentation.
pub fn load(spec: &DatasetSpec) -> Result<Dataset> {
    spec.validate()?;
    let data_dir = if spec.kind.needs_data_dir() {
        let Some(dir) = spec.data_dir.as_deref() else {
            bail!(
                "dataset {} needs a data folder (data_dir), but none was given",
                spec.kind
            );
        };
        if !dir.is_dir() {
            bail!(
                "dataset {}: data folder {} does not exist or is not a folder",
                spec.kind,
                dir.display()
            );
        }
        Some(dir)
    } else {
        None
    };
    let dir = || data_dir.expect("checked above for kinds that need a data folder");
    let scaled = match spec.kind {
        DatasetKind::Digits => digits::load()?,
        DatasetKind::Mnist => idx::load(dir(), Some(10))?,
        DatasetKind::FashionMnist => idx::load(dir(), Some(10))?,
        DatasetKind::Idx => idx::load(dir(), None)?,
        DatasetKind::Cifar10 => cifar::load(dir(), cifar::CifarVariant::Cifar10)?,
        DatasetKind::Cifar100 => cifar::load(dir(), cifar::CifarVariant::Cifar100)?,
        DatasetKind::Folder => folder::load(
            dir(),
            spec.image_size.unwrap_or(folder::DEFAULT_IMAGE_SIZE),
            spec.grayscale,
        )?,
        DatasetKind::Synthetic => synthetic::generate(
            spec.synthetic_samples
                .unwrap_or(synthetic::DEFAULT_TRAIN_SAMPLES),
            spec.image_size.unwrap_or(synthetic::DEFAULT_IMAGE_SIZE),
            spec.synthetic_channels
                .unwrap_or(synthetic::DEFAULT_CHANNELS),
        )?,
    };
    Ok(scaled.normalize(spec.kind.name()))
}

/// What every loader returns: both splits with pixels scaled to `[0, 1]` but not yet
/// normalised.
pub(crate) struct ScaledDataset {
    pub classes: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub train: Split,
    pub test: Split,
}

/// Smallest standard deviation used for normalising; keeps a constant channel finite.
const STD_FLOOR: f32 = 1e-6;

impl ScaledDataset {
    /// Computes the per-channel statistics over the training split and applies them to both
    /// splits.
    fn normalize(mut self, name: &str) -> Dataset {
        let plane = self.height * self.width;
        let normalization = channel_statistics(&self.train.images, self.channels, plane);
        for split in [&mut self.train, &mut self.test] {
            apply_normalization(&mut split.images, &normalization, plane);
        }
        Dataset {
            name: name.to_string(),
            classes: self.classes,
            channels: self.channels,
            height: self.height,
            width: self.width,
            train: self.train,
            test: self.test,
            normalization,
        }
    }
}

/// Per-channel mean and population standard deviation of NCHW `images`, accumulated in `f64`
/// (MNIST's training split alone is 47 million values, too many to sum in `f32`).
fn channel_statistics(images: &[f32], channels: usize, plane: usize) -> Normalization {
    let sample_len = channels * plane;
    if images.is_empty() || sample_len == 0 {
        return Normalization {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        };
    }
    let samples = images.len() / sample_len;
    let count = (samples * plane) as f64;
    // Two passes (mean, then squared deviations) rather than sum of squares, which loses
    // precision when the mean is large compared with the spread.
    let sum_per_channel = |f: &(dyn Fn(usize, f32) -> f64 + Sync)| -> Vec<f64> {
        images
            .par_chunks(sample_len)
            .fold(
                || vec![0.0f64; channels],
                |mut acc, sample| {
                    for (c, values) in sample.chunks(plane).enumerate() {
                        acc[c] += values.iter().map(|&x| f(c, x)).sum::<f64>();
                    }
                    acc
                },
            )
            .reduce(
                || vec![0.0f64; channels],
                |mut a, b| {
                    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                    a
                },
            )
    };
    let mean: Vec<f64> = sum_per_channel(&|_, x| x as f64)
        .into_iter()
        .map(|s| s / count)
        .collect();
    let variance: Vec<f64> = sum_per_channel(&|c, x| {
        let d = x as f64 - mean[c];
        d * d
    })
    .into_iter()
    .map(|s| s / count)
    .collect();
    Normalization {
        mean: mean.iter().map(|&m| m as f32).collect(),
        std: variance
            .iter()
            .map(|&v| (v.sqrt() as f32).max(STD_FLOOR))
            .collect(),
    }
}

/// Maps every value of channel `c` to `(x - mean[c]) / std[c]`, in place.
fn apply_normalization(images: &mut [f32], normalization: &Normalization, plane: usize) {
    let sample_len = normalization.mean.len() * plane;
    if sample_len == 0 {
        return;
    }
    images.par_chunks_mut(sample_len).for_each(|sample| {
        for (c, values) in sample.chunks_mut(plane).enumerate() {
            let (mean, std) = (normalization.mean[c], normalization.std[c]);
            values.iter_mut().for_each(|x| *x = (*x - mean) / std);
        }
    });
}

/// An error that names the file and says what is wrong with it, in the one-line form
/// "reading PATH: PROBLEM" that every loader uses.
pub(crate) fn file_error(path: &Path, problem: impl fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("reading {}: {}", path.display(), problem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_uses_training_statistics_per_channel() {
        // Two samples, two channels of two pixels each.
        let train = Split {
            images: vec![0.0, 1.0, 0.5, 0.5, 1.0, 0.0, 0.5, 0.5],
            labels: vec![0, 1],
        };
        let test = Split {
            images: vec![0.5, 0.5, 1.0, 0.5],
            labels: vec![1],
        };
        let scaled = ScaledDataset {
            classes: 2,
            channels: 2,
            height: 1,
            width: 2,
            train,
            test,
        };
        let dataset = scaled.normalize("toy");
        assert_eq!(dataset.normalization.mean, vec![0.5, 0.5]);
        assert_eq!(dataset.normalization.std, vec![0.5, STD_FLOOR]);
        assert_eq!(dataset.train.images[..4], [-1.0, 1.0, 0.0, 0.0]);
        assert_eq!(dataset.test.images[0], 0.0);
        assert!((dataset.test.images[2] - 0.5 / STD_FLOOR).abs() < 1.0);
        assert_eq!(dataset.sample_len(), 4);
        assert_eq!(dataset.input_shape(), [2, 1, 2]);
        assert_eq!(dataset.train.sample(1, 4), &[1.0, -1.0, 0.0, 0.0]);
    }

    #[test]
    fn limit_train_keeps_prefix_and_rejects_zero() {
        let mut dataset = load(&DatasetSpec::new(DatasetKind::Digits)).unwrap();
        let first_labels = dataset.train.labels[..10].to_vec();
        let first_sample = dataset.train.sample(0, dataset.sample_len()).to_vec();
        assert!(dataset.limit_train(0).is_err());
        dataset.limit_train(10).unwrap();
        assert_eq!(dataset.train.len(), 10);
        assert_eq!(dataset.train.images.len(), 10 * dataset.sample_len());
        assert_eq!(dataset.train.labels, first_labels);
        assert_eq!(dataset.train.sample(0, dataset.sample_len()), first_sample);
        dataset.limit_train(1000).unwrap();
        assert_eq!(dataset.train.len(), 10);
    }

    #[test]
    fn missing_data_dir_is_an_error() {
        let err = load(&DatasetSpec::new(DatasetKind::Mnist)).unwrap_err();
        assert!(err.to_string().contains("data folder"), "{err}");
        let mut spec = DatasetSpec::new(DatasetKind::Cifar10);
        spec.data_dir = Some("/no/such/folder".into());
        let err = load(&spec).unwrap_err().to_string();
        assert!(err.contains("/no/such/folder"), "{err}");
    }
}
