//! The embedded default dataset: the UCI optical recognition of handwritten digits set (the
//! 1797-sample copy scikit-learn ships), compiled into the binary so that a fresh machine
//! needs no download.
//!
//! Each sample is an 8×8 grey image whose pixels count the "on" pixels of a 4×4 block of the
//! original 32×32 bitmap, so values run 0..=16; they are scaled to `[0, 1]` by dividing by 16.
//! 10 classes (the digits 0–9). The embedded `digits.csv.gz` holds one sample per row: the 64
//! pixels row by row, then the label. Licence: CC BY 4.0, see `DIGITS-LICENSE.md`.
//!
//! # Split
//!
//! The set has no official split, so a fixed deterministic one is used: sample `i` (in file
//! order, from 0) goes to the test split when `i % 5 == 4`, i.e. every 5th sample, and to
//! training otherwise. That gives 1438 training and 359 test samples, each in file order.

use std::io::Read;

use anyhow::{bail, Context, Result};
use flate2::read::GzDecoder;

use super::{ScaledDataset, Split};

/// The compressed CSV, 64 pixel values and a label per row.
/// The embedded file, as shipped (its checksum names the data in run identities).
pub const EMBEDDED: &[u8] = include_bytes!("digits.csv.gz");
/// Samples in the set.
const SAMPLES: usize = 1797;
/// Image side in pixels.
const SIDE: usize = 8;
/// Largest pixel value (a count of 16 pixels).
const MAX_PIXEL: f32 = 16.0;
/// Number of classes.
const CLASSES: usize = 10;

/// Decodes the embedded set and splits it as described in the module documentation.
pub(crate) fn load() -> Result<ScaledDataset> {
    let mut csv = String::new();
    GzDecoder::new(EMBEDDED)
        .read_to_string(&mut csv)
        .context("decompressing the embedded digits.csv.gz")?;
    let mut train = Split::default();
    let mut test = Split::default();
    let mut index = 0;
    for (line_number, line) in csv.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row = parse_row(line)
            .with_context(|| format!("embedded digits.csv.gz, line {}", line_number + 1))?;
        let split = if index % 5 == 4 {
            &mut test
        } else {
            &mut train
        };
        split
            .images
            .extend(row.pixels.iter().map(|&p| p as f32 / MAX_PIXEL));
        split.labels.push(row.label);
        index += 1;
    }
    if index != SAMPLES {
        bail!("embedded digits.csv.gz holds {index} samples, expected {SAMPLES}");
    }
    Ok(ScaledDataset {
        classes: CLASSES,
        channels: 1,
        height: SIDE,
        width: SIDE,
        train,
        test,
    })
}

/// One parsed CSV row.
struct Row {
    pixels: Vec<u8>,
    label: u32,
}

/// Parses 64 pixel values in `0..=16` and a label in `0..10`.
fn parse_row(line: &str) -> Result<Row> {
    let values = line
        .split(',')
        .map(|field| field.trim().parse::<u32>())
        .collect::<Result<Vec<u32>, _>>()
        .context("a field is not a whole number")?;
    if values.len() != SIDE * SIDE + 1 {
        bail!(
            "expected {} fields, found {}",
            SIDE * SIDE + 1,
            values.len()
        );
    }
    let (pixels, label) = values.split_at(SIDE * SIDE);
    if let Some(p) = pixels.iter().find(|&&p| p > MAX_PIXEL as u32) {
        bail!("pixel value {p} is above {MAX_PIXEL}");
    }
    if label[0] as usize >= CLASSES {
        bail!("label {} is out of range for {CLASSES} classes", label[0]);
    }
    Ok(Row {
        pixels: pixels.iter().map(|&p| p as u8).collect(),
        label: label[0],
    })
}

#[cfg(test)]
mod tests {
    use crate::data::{load, DatasetKind, DatasetSpec};

    #[test]
    fn embedded_digits_load_with_fixed_split() {
        let digits = load(&DatasetSpec::new(DatasetKind::Digits)).unwrap();
        assert_eq!(digits.name, "digits");
        assert_eq!(digits.input_shape(), [1, 8, 8]);
        assert_eq!(digits.classes, 10);
        assert_eq!(digits.train.len() + digits.test.len(), 1797);
        assert_eq!((digits.train.len(), digits.test.len()), (1438, 359));
        assert_eq!(digits.train.images.len(), 1438 * 64);
        assert_eq!(digits.test.images.len(), 359 * 64);
        // The first sample (a 0) is in training; the 5th (index 4, a 4) is the first test sample.
        assert_eq!(digits.train.labels[0], 0);
        assert_eq!(digits.train.labels[..4], [0, 1, 2, 3]);
        assert_eq!(digits.test.labels[0], 4);

        // The set is close to balanced: every class has between 174 and 183 samples (the
        // counts scikit-learn documents), and each split holds every class.
        let mut counts = [0usize; 10];
        for &label in digits.train.labels.iter().chain(&digits.test.labels) {
            counts[label as usize] += 1;
        }
        assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
        for split in [&digits.train, &digits.test] {
            for class in 0..10u32 {
                assert!(split.labels.contains(&class));
            }
        }

        // First sample's top row is 0,0,5,13,9,1,0,0 (scaled by 1/16, then normalised).
        let (mean, std) = (digits.normalization.mean[0], digits.normalization.std[0]);
        let top_row: Vec<f32> = digits.train.images[..8]
            .iter()
            .map(|&v| ((v * std + mean) * 16.0).round())
            .collect();
        assert_eq!(top_row, [0.0, 0.0, 5.0, 13.0, 9.0, 1.0, 0.0, 0.0]);
    }
}
