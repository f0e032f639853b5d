//! Reads the binary versions of CIFAR-10 and CIFAR-100 (Krizhevsky 2009).
//!
//! Each file is a run of fixed-size records, one per image: the label byte(s), then 3072
//! pixel bytes: the 1024 red values of the 32×32 image row by row, then the 1024 green, then
//! the 1024 blue. That is already channel-major (CHW) order, so pixels are copied as they are.
//!
//! - CIFAR-10: `data_batch_1.bin` … `data_batch_5.bin` (training, in that order) and
//!   `test_batch.bin`; records are 1 label byte + 3072 pixel bytes, labels `0..10`.
//! - CIFAR-100: `train.bin` and `test.bin`; records are a coarse label byte (`0..20`), a fine
//!   label byte (`0..100`) + 3072 pixel bytes. The fine label is the class.
//!
//! The files may sit directly in the data folder or in the `cifar-10-batches-bin` /
//! `cifar-100-binary` sub-folder that the official archives unpack to.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::{file_error, ScaledDataset, Split};

/// CIFAR images are 3 × 32 × 32.
const CHANNELS: usize = 3;
/// Height and width of every CIFAR image.
const SIDE: usize = 32;
/// Pixel bytes per record.
const PIXELS: usize = CHANNELS * SIDE * SIDE;

/// Which of the two CIFAR binary formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CifarVariant {
    /// 10 classes, one label byte per record.
    Cifar10,
    /// 100 fine classes, a coarse then a fine label byte per record.
    Cifar100,
}

impl CifarVariant {
    fn train_files(self) -> Vec<String> {
        match self {
            CifarVariant::Cifar10 => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
            CifarVariant::Cifar100 => vec!["train.bin".to_string()],
        }
    }

    fn test_file(self) -> &'static str {
        match self {
            CifarVariant::Cifar10 => "test_batch.bin",
            CifarVariant::Cifar100 => "test.bin",
        }
    }

    /// The sub-folder the official archive unpacks to.
    fn archive_folder(self) -> &'static str {
        match self {
            CifarVariant::Cifar10 => "cifar-10-batches-bin",
            CifarVariant::Cifar100 => "cifar-100-binary",
        }
    }

    fn label_bytes(self) -> usize {
        match self {
            CifarVariant::Cifar10 => 1,
            CifarVariant::Cifar100 => 2,
        }
    }

    fn record_len(self) -> usize {
        self.label_bytes() + PIXELS
    }

    fn classes(self) -> usize {
        match self {
            CifarVariant::Cifar10 => 10,
            CifarVariant::Cifar100 => 100,
        }
    }
}

/// Number of coarse (super-)classes in CIFAR-100, checked as a sign the file is what it says.
const CIFAR100_COARSE_CLASSES: u8 = 20;

/// Loads CIFAR-10 or CIFAR-100 from `dir` (or its archive sub-folder).
pub(crate) fn load(dir: &Path, variant: CifarVariant) -> Result<ScaledDataset> {
    let dir = locate(dir, variant)?;
    let mut train = Split::default();
    for name in variant.train_files() {
        read_file(&dir.join(name), variant, &mut train)?;
    }
    let mut test = Split::default();
    read_file(&dir.join(variant.test_file()), variant, &mut test)?;
    Ok(ScaledDataset {
        classes: variant.classes(),
        channels: CHANNELS,
        height: SIDE,
        width: SIDE,
        train,
        test,
    })
}

/// The folder holding the files: `dir` itself when it has the test file, else the archive's
/// sub-folder when that has it. Missing files are reported by the caller's read.
fn locate(dir: &Path, variant: CifarVariant) -> Result<PathBuf> {
    let nested = dir.join(variant.archive_folder());
    if dir.join(variant.test_file()).is_file() {
        Ok(dir.to_path_buf())
    } else if nested.join(variant.test_file()).is_file() {
        Ok(nested)
    } else {
        bail!(
            "missing file: {} (also looked in {})",
            dir.join(variant.test_file()).display(),
            nested.display()
        )
    }
}

/// Appends the records of one file to `split`, checking its length and labels.
fn read_file(path: &Path, variant: CifarVariant, split: &mut Split) -> Result<()> {
    if !path.is_file() {
        bail!("missing file: {}", path.display());
    }
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
    parse_records(path, &bytes, variant, split)
}

/// Parses the bytes of one CIFAR-10 (or, if `cifar100`, CIFAR-100) binary file into a split of
/// pixels scaled to `[0, 1]` (not normalised); errors are those of the loader, naming `<bytes>`
/// as the file. For fuzzing and for callers with their own I/O.
pub fn parse_cifar_bytes(bytes: &[u8], cifar100: bool) -> Result<Split> {
    let variant = if cifar100 {
        CifarVariant::Cifar100
    } else {
        CifarVariant::Cifar10
    };
    let mut split = Split::default();
    parse_records(Path::new("<bytes>"), bytes, variant, &mut split)?;
    Ok(split)
}

/// [`read_file`] on the file's bytes.
fn parse_records(
    path: &Path,
    bytes: &[u8],
    variant: CifarVariant,
    split: &mut Split,
) -> Result<()> {
    let record_len = variant.record_len();
    if bytes.is_empty() || !bytes.len().is_multiple_of(record_len) {
        return Err(file_error(
            path,
            format!(
                "length {} bytes is not a positive multiple of the record size {record_len} bytes",
                bytes.len()
            ),
        ));
    }
    let records = bytes.len() / record_len;
    split.labels.reserve(records);
    split.images.reserve(records * PIXELS);
    for (index, record) in bytes.chunks_exact(record_len).enumerate() {
        let (labels, pixels) = record.split_at(variant.label_bytes());
        let label = match variant {
            CifarVariant::Cifar10 => labels[0],
            CifarVariant::Cifar100 => {
                if labels[0] >= CIFAR100_COARSE_CLASSES {
                    return Err(file_error(
                        path,
                        format!(
                            "coarse label {} of record {index} is out of range for {CIFAR100_COARSE_CLASSES} classes",
                            labels[0]
                        ),
                    ));
                }
                labels[1]
            }
        };
        if label as usize >= variant.classes() {
            return Err(file_error(
                path,
                format!(
                    "label {label} of record {index} is out of range for {} classes",
                    variant.classes()
                ),
            ));
        }
        split.labels.push(label as u32);
        split
            .images
            .extend(pixels.iter().map(|&p| p as f32 / 255.0));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{load as load_dataset, DatasetKind, DatasetSpec};

    use crate::data::test_data::{fixture, full_data};

    /// A real CIFAR test image decoded from the committed sample PNGs: its label and RGB pixels.
    struct Sample {
        label: u8,
        rgb: image::RgbImage,
    }

    /// The sample PNGs whose names start with `prefix` (`cifar10_` or `cifar100_`), in name
    /// order; the label is the last number of the name.
    fn samples(prefix: &str) -> Vec<Sample> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(fixture("cifar-samples"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_str().unwrap();
                name.starts_with(prefix) && name.ends_with(".png")
            })
            .collect();
        paths.sort();
        assert_eq!(paths.len(), 20);
        paths
            .iter()
            .map(|p| {
                let stem = p.file_stem().unwrap().to_str().unwrap();
                let label = stem.rsplit('_').next().unwrap().parse().unwrap();
                let rgb = image::open(p).unwrap().to_rgb8();
                assert_eq!(rgb.dimensions(), (32, 32));
                Sample { label, rgb }
            })
            .collect()
    }

    /// One record in the CIFAR layout: label byte(s), then the R, G and B planes.
    fn record(labels: &[u8], rgb: &image::RgbImage) -> Vec<u8> {
        let mut bytes = labels.to_vec();
        for channel in 0..3 {
            bytes.extend(rgb.pixels().map(|p| p.0[channel]));
        }
        bytes
    }

    /// Sample `i` of `split` with the normalisation undone, as 8-bit pixel values (CHW).
    fn unnormalized(dataset: &crate::data::Dataset, split: &Split, i: usize) -> Vec<u8> {
        let plane = 32 * 32;
        split
            .sample(i, dataset.sample_len())
            .iter()
            .enumerate()
            .map(|(k, &v)| {
                let c = k / plane;
                let x = v * dataset.normalization.std[c] + dataset.normalization.mean[c];
                (x * 255.0).round() as u8
            })
            .collect()
    }

    #[test]
    fn committed_samples_are_the_shared_ones() {
        let Some(shared) = full_data(
            "cifar::committed_samples_are_the_shared_ones",
            "cifar-samples",
        ) else {
            return;
        };
        let mut compared = 0;
        for entry in std::fs::read_dir(&shared).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            if name.starts_with("cifar") && name.ends_with(".png") {
                let committed = std::fs::read(fixture("cifar-samples").join(&name)).unwrap();
                assert_eq!(committed, std::fs::read(&path).unwrap(), "{name}");
                compared += 1;
            }
        }
        assert_eq!(compared, 40);
    }

    #[test]
    fn cifar10_round_trips_labels_and_pixels() {
        let samples = samples("cifar10_");
        let dir = tempfile::tempdir().unwrap();
        // Four images per training batch, the last four in the test batch; inside the
        // official archive's folder name to check that it is found.
        let folder = dir.path().join("cifar-10-batches-bin");
        std::fs::create_dir(&folder).unwrap();
        for (batch, chunk) in samples.chunks(4).enumerate() {
            let bytes: Vec<u8> = chunk
                .iter()
                .flat_map(|s| record(&[s.label], &s.rgb))
                .collect();
            let name = if batch < 4 {
                format!("data_batch_{}.bin", batch + 1)
            } else {
                "test_batch.bin".to_string()
            };
            std::fs::write(folder.join(name), bytes).unwrap();
        }
        // Only four batches so far: the fifth is reported missing.
        let mut spec = DatasetSpec::new(DatasetKind::Cifar10);
        spec.data_dir = Some(dir.path().to_path_buf());
        let message = format!("{:#}", load_dataset(&spec).unwrap_err());
        assert!(message.contains("missing file"), "{message}");
        assert!(message.contains("data_batch_5.bin"), "{message}");
        // Move the test images into batch 5 and write the test batch from the first four.
        std::fs::rename(
            folder.join("test_batch.bin"),
            folder.join("data_batch_5.bin"),
        )
        .unwrap();
        let test_bytes: Vec<u8> = samples[..4]
            .iter()
            .flat_map(|s| record(&[s.label], &s.rgb))
            .collect();
        std::fs::write(folder.join("test_batch.bin"), test_bytes).unwrap();

        let dataset = load_dataset(&spec).unwrap();
        assert_eq!(dataset.input_shape(), [3, 32, 32]);
        assert_eq!(dataset.classes, 10);
        assert_eq!((dataset.train.len(), dataset.test.len()), (20, 4));
        let labels: Vec<u32> = samples.iter().map(|s| s.label as u32).collect();
        assert_eq!(dataset.train.labels, labels);
        assert_eq!(dataset.test.labels, labels[..4]);
        for (i, sample) in samples.iter().enumerate() {
            assert_eq!(
                unnormalized(&dataset, &dataset.train, i),
                record(&[], &sample.rgb)
            );
        }
        // Spot-check the layout: channel 1 (green), row 5, column 7 of training image 3.
        let green = samples[3].rgb.get_pixel(7, 5).0[1];
        let stored = unnormalized(&dataset, &dataset.train, 3)[1024 + 5 * 32 + 7];
        assert_eq!(stored, green);
    }

    #[test]
    fn cifar100_uses_fine_labels() {
        let samples = samples("cifar100_");
        let dir = tempfile::tempdir().unwrap();
        let coarse = |fine: u8| fine / 5; // any value below 20 will do
        let bytes: Vec<u8> = samples
            .iter()
            .flat_map(|s| record(&[coarse(s.label), s.label], &s.rgb))
            .collect();
        std::fs::write(dir.path().join("train.bin"), &bytes).unwrap();
        std::fs::write(dir.path().join("test.bin"), &bytes[..2 * 3074]).unwrap();
        let mut spec = DatasetSpec::new(DatasetKind::Cifar100);
        spec.data_dir = Some(dir.path().to_path_buf());
        let dataset = load_dataset(&spec).unwrap();
        assert_eq!(dataset.classes, 100);
        assert_eq!((dataset.train.len(), dataset.test.len()), (20, 2));
        let labels: Vec<u32> = samples.iter().map(|s| s.label as u32).collect();
        assert_eq!(dataset.train.labels, labels);
        for (i, sample) in samples.iter().enumerate() {
            assert_eq!(
                unnormalized(&dataset, &dataset.train, i),
                record(&[], &sample.rgb)
            );
        }
    }

    #[test]
    fn wrong_length_and_bad_labels_are_errors() {
        let samples = samples("cifar100_");
        let dir = tempfile::tempdir().unwrap();
        let good = record(&[1, 7], &samples[0].rgb);
        std::fs::write(dir.path().join("test.bin"), &good).unwrap();
        let train = dir.path().join("train.bin");
        let mut spec = DatasetSpec::new(DatasetKind::Cifar100);
        spec.data_dir = Some(dir.path().to_path_buf());
        let message_for = |bytes: &[u8]| {
            std::fs::write(&train, bytes).unwrap();
            format!("{:#}", load_dataset(&spec).unwrap_err())
        };

        let message = message_for(&good[..3000]);
        assert!(message.contains(&train.display().to_string()), "{message}");
        assert!(message.contains("length 3000"), "{message}");
        assert!(message.contains("record size 3074"), "{message}");
        let message = message_for(&[good.clone(), vec![0; 10]].concat());
        assert!(message.contains("length 3084"), "{message}");
        let message = message_for(&[]);
        assert!(message.contains("length 0"), "{message}");

        let message = message_for(&record(&[1, 100], &samples[0].rgb));
        assert!(message.contains(&train.display().to_string()), "{message}");
        assert!(
            message.contains("label 100 of record 0 is out of range for 100 classes"),
            "{message}"
        );
        let message = message_for(&record(&[20, 3], &samples[0].rgb));
        assert!(message.contains("coarse label 20"), "{message}");

        // CIFAR-10 records read with the one-byte layout.
        let dir10 = tempfile::tempdir().unwrap();
        let mut spec10 = DatasetSpec::new(DatasetKind::Cifar10);
        spec10.data_dir = Some(dir10.path().to_path_buf());
        for name in [
            "data_batch_1.bin",
            "data_batch_2.bin",
            "data_batch_3.bin",
            "data_batch_4.bin",
            "data_batch_5.bin",
            "test_batch.bin",
        ] {
            std::fs::write(dir10.path().join(name), record(&[3], &samples[0].rgb)).unwrap();
        }
        assert!(load_dataset(&spec10).is_ok());
        let bad = dir10.path().join("data_batch_3.bin");
        std::fs::write(&bad, record(&[10], &samples[0].rgb)).unwrap();
        let message = format!("{:#}", load_dataset(&spec10).unwrap_err());
        assert!(message.contains(&bad.display().to_string()), "{message}");
        assert!(
            message.contains("label 10 of record 0 is out of range for 10 classes"),
            "{message}"
        );
        // A CIFAR-100 file (3074-byte records) given as CIFAR-10 (3073) is a length error.
        std::fs::write(&bad, record(&[1, 3], &samples[0].rgb)).unwrap();
        let message = format!("{:#}", load_dataset(&spec10).unwrap_err());
        assert!(message.contains("length 3074"), "{message}");
        assert!(message.contains("record size 3073"), "{message}");
    }
}
