//! Generates the `synthetic` dataset: any number of images of 10 classes, grey or with up to
//! 4 channels, for speed and scale tests, identical on every machine and run.
//!
//! Each class has a fixed prototype per channel: a 4×4 grid of random intensities in `[0, 1]`,
//! bilinearly stretched over the image, so a smooth blotchy pattern (with several channels,
//! a blotchy pattern of colours). A sample of class `k` is class `k`'s prototype, shifted
//! (with wrap-around) by up to `side / 10` pixels in each direction, scaled by a random
//! contrast in `[0.5, 1]`, lifted by a random brightness in `[0, 0.2]` (shift, contrast and
//! brightness shared by all channels of the sample), plus independent uniform noise in
//! `[-0.3, 0.3]` on every pixel of every channel, clamped to `[0, 1]`. Shifts and noise keep
//! the task from being solvable by a pixel lookup, while the prototypes stay far enough apart
//! for a small CNN to learn it.
//!
//! Randomness: `ChaCha8Rng` with seed 0. Every piece draws from its own stream of that seed
//! (stream `c`: the prototypes of channel `c`, all classes in order; training sample `i`:
//! stream `2^48 + i`; test sample `i`: stream `2^49 + i`), so the samples can be generated in
//! parallel, the result does not depend on the thread count, and the first `n` training
//! samples are the same whatever the total. A sample's stream gives its class, shifts,
//! contrast and brightness, then the noise of channel 0 pixel by pixel in row order, then
//! that of channel 1, and so on; so channel 0 of a many-channel image draws exactly what the
//! grey image draws, and the grey (1-channel) dataset is bit for bit what it was before
//! channels existed.

use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use necrosis_records::config::MAX_SYNTHETIC_CHANNELS;

use super::{ScaledDataset, Split};

/// Channels when the spec gives none (grey).
pub(crate) const DEFAULT_CHANNELS: usize = 1;
/// Training samples when the spec gives no count.
pub(crate) const DEFAULT_TRAIN_SAMPLES: usize = 4096;
/// Image side when the spec gives none (MNIST-sized).
pub(crate) const DEFAULT_IMAGE_SIZE: usize = 28;
/// Number of classes.
const CLASSES: usize = 10;
/// Side of the coarse random grid each prototype is stretched from.
const PROTOTYPE_GRID: usize = 4;
/// The one seed of the generator.
const SEED: u64 = 0;
/// Stream offsets separating the training samples' streams from the test samples'.
const TRAIN_STREAMS: u64 = 1 << 48;
const TEST_STREAMS: u64 = 1 << 49;
/// Largest side accepted; beyond it the images are no longer "small and fast".
const MAX_SIDE: usize = 4096;

/// Generates `train_samples` training and `ceil(train_samples / 4)` test samples of
/// `channels × side × side` values in `[0, 1]`.
pub(crate) fn generate(
    train_samples: usize,
    side: usize,
    channels: usize,
) -> Result<ScaledDataset> {
    if train_samples == 0 {
        bail!("synthetic dataset: the number of training samples must be at least 1, got 0");
    }
    if !(PROTOTYPE_GRID..=MAX_SIDE).contains(&side) {
        bail!("synthetic dataset: image size must be between {PROTOTYPE_GRID} and {MAX_SIDE}, got {side}");
    }
    if !(1..=MAX_SYNTHETIC_CHANNELS).contains(&channels) {
        bail!("synthetic dataset: synthetic_channels must be between 1 and {MAX_SYNTHETIC_CHANNELS}, got {channels}");
    }
    let test_samples = train_samples.div_ceil(4);
    // Checked so that a huge request is a clear error, not an overflowing allocation size.
    if train_samples
        .checked_mul(channels * side * side)
        .and_then(|n| n.checked_mul(std::mem::size_of::<f32>()))
        .is_none()
    {
        bail!("synthetic dataset: {train_samples} samples of {channels}x{side}x{side} values do not fit in memory");
    }
    let prototypes = prototypes(side, channels);
    let train = generate_split(&prototypes, side, channels, train_samples, TRAIN_STREAMS);
    let test = generate_split(&prototypes, side, channels, test_samples, TEST_STREAMS);
    Ok(ScaledDataset {
        classes: CLASSES,
        channels,
        height: side,
        width: side,
        train,
        test,
    })
}

/// One `channels × side × side` prototype per class (planes one after another); the planes
/// of channel `c` are drawn from stream `c`, class by class.
fn prototypes(side: usize, channels: usize) -> Vec<Vec<f32>> {
    let mut prototypes: Vec<Vec<f32>> = (0..CLASSES)
        .map(|_| Vec::with_capacity(channels * side * side))
        .collect();
    for channel in 0..channels {
        let mut rng = ChaCha8Rng::seed_from_u64(SEED);
        rng.set_stream(channel as u64);
        for prototype in &mut prototypes {
            let grid: Vec<f32> = (0..PROTOTYPE_GRID * PROTOTYPE_GRID)
                .map(|_| rng.gen::<f32>())
                .collect();
            prototype.extend(stretch(&grid, side));
        }
    }
    prototypes
}

/// Bilinear interpolation of a `PROTOTYPE_GRID²` grid over `side × side` pixels, the grid's
/// corner values landing on the image's corners.
fn stretch(grid: &[f32], side: usize) -> Vec<f32> {
    let last = (PROTOTYPE_GRID - 1) as f32;
    let scale = last / (side - 1).max(1) as f32;
    let mut image = Vec::with_capacity(side * side);
    for y in 0..side {
        let gy = y as f32 * scale;
        let y0 = (gy.floor() as usize).min(PROTOTYPE_GRID - 2);
        let ty = gy - y0 as f32;
        for x in 0..side {
            let gx = x as f32 * scale;
            let x0 = (gx.floor() as usize).min(PROTOTYPE_GRID - 2);
            let tx = gx - x0 as f32;
            let at = |yy: usize, xx: usize| grid[yy * PROTOTYPE_GRID + xx];
            let top = at(y0, x0) * (1.0 - tx) + at(y0, x0 + 1) * tx;
            let bottom = at(y0 + 1, x0) * (1.0 - tx) + at(y0 + 1, x0 + 1) * tx;
            image.push(top * (1.0 - ty) + bottom * ty);
        }
    }
    image
}

/// `count` samples, sample `i` drawn from stream `first_stream + i`.
fn generate_split(
    prototypes: &[Vec<f32>],
    side: usize,
    channels: usize,
    count: usize,
    first_stream: u64,
) -> Split {
    let plane = side * side;
    let sample_len = channels * plane;
    let mut images = vec![0.0f32; count * sample_len];
    let mut labels = vec![0u32; count];
    // The shift range scales with the image so that the task is equally hard at any size.
    let max_shift = (side / 10) as i64;
    images
        .par_chunks_mut(sample_len)
        .zip(labels.par_iter_mut())
        .enumerate()
        .for_each(|(i, (pixels, label))| {
            let mut rng = ChaCha8Rng::seed_from_u64(SEED);
            rng.set_stream(first_stream + i as u64);
            let class = rng.gen_range(0..CLASSES);
            let prototype = &prototypes[class];
            let dy = rng.gen_range(-max_shift..=max_shift);
            let dx = rng.gen_range(-max_shift..=max_shift);
            let contrast = rng.gen_range(0.5f32..=1.0);
            let brightness = rng.gen_range(0.0f32..=0.2);
            let n = side as i64;
            for (channel_pixels, channel_prototype) in
                pixels.chunks_mut(plane).zip(prototype.chunks(plane))
            {
                for y in 0..side {
                    let source_y = (y as i64 - dy).rem_euclid(n) as usize;
                    for x in 0..side {
                        let source_x = (x as i64 - dx).rem_euclid(n) as usize;
                        let noise = rng.gen_range(-0.3f32..=0.3);
                        let value = contrast * channel_prototype[source_y * side + source_x]
                            + brightness
                            + noise;
                        channel_pixels[y * side + x] = value.clamp(0.0, 1.0);
                    }
                }
            }
            *label = class as u32;
        });
    Split { images, labels }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{load, DatasetKind, DatasetSpec};

    #[test]
    fn default_shape_sizes_and_determinism() {
        let spec = DatasetSpec::new(DatasetKind::Synthetic);
        let a = load(&spec).unwrap();
        assert_eq!(a.name, "synthetic");
        assert_eq!(a.input_shape(), [1, 28, 28]);
        assert_eq!(a.classes, 10);
        assert_eq!((a.train.len(), a.test.len()), (4096, 1024));
        assert_eq!(a.train.images.len(), 4096 * 784);
        assert!(a.train.images.iter().all(|v| v.is_finite()));
        let b = load(&spec).unwrap();
        assert_eq!(a.train.images, b.train.images);
        assert_eq!(a.test.labels, b.test.labels);
        // Every class appears in both splits, roughly evenly.
        for split in [&a.train, &a.test] {
            let mut counts = [0usize; 10];
            split.labels.iter().for_each(|&l| counts[l as usize] += 1);
            let expected = split.len() / 10;
            assert!(
                counts.iter().all(|&c| c > expected / 2 && c < expected * 2),
                "{counts:?}"
            );
        }
    }

    #[test]
    fn training_prefix_does_not_depend_on_total() {
        let small = generate(100, 12, 1).unwrap();
        let large = generate(300, 12, 1).unwrap();
        assert_eq!(small.train.labels[..], large.train.labels[..100]);
        assert_eq!(small.train.images[..], large.train.images[..100 * 144]);
        assert_eq!(small.test.len(), 25);
        assert_eq!(generate(5, 12, 1).unwrap().test.len(), 2);
        assert!(generate(0, 12, 1).is_err());
        assert!(generate(10, 2, 1).is_err());
        assert!(generate(usize::MAX, 28, 1).is_err());
    }

    /// SHA-256 of the little-endian bytes of every training then every test value.
    fn digest(data: &ScaledDataset) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        for v in data.train.images.iter().chain(&data.test.images) {
            hasher.update(v.to_le_bytes());
        }
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The grey dataset is bit for bit what the generator gave before it had channels: these
    /// values were printed by the 1-channel-only code (commit 05fdf29) and pasted here.
    #[test]
    fn grey_output_is_unchanged() {
        let small = generate(8, 6, 1).unwrap();
        assert_eq!(small.channels, 1);
        assert_eq!(small.train.labels, [8, 9, 1, 0, 1, 8, 0, 9]);
        assert_eq!(small.test.labels, [6, 9]);
        for (i, bits) in [
            (0, 0x3f04543d_u32),
            (1, 0x3d9586d4),
            (7, 0x3ea4b29c),
            (35, 0x3e8d7632),
            (100, 0x3e7ded89),
            (287, 0x3f0ab720),
        ] {
            assert_eq!(small.train.images[i].to_bits(), bits, "train value {i}");
        }
        for (i, bits) in [(0, 0x3ef48284_u32), (5, 0x3f0cdd0b), (71, 0x3e8bff8e)] {
            assert_eq!(small.test.images[i].to_bits(), bits, "test value {i}");
        }
        assert_eq!(
            digest(&small),
            "d97a3c7dc282b9b4cf87ffb13baeb6081c446b24adae5d60ac9fdcac5c972d00"
        );
        let default_side = generate(16, 28, 1).unwrap();
        assert_eq!(
            default_side.train.labels,
            [8, 9, 1, 0, 1, 8, 0, 9, 4, 3, 1, 9, 8, 9, 3, 8]
        );
        assert_eq!(
            digest(&default_side),
            "c3842d3668830425c80e1048b1dc942f681064a94e212e44079142b0f9af27a9"
        );
        // A spec without synthetic_channels is the grey dataset.
        let mut spec = DatasetSpec::new(DatasetKind::Synthetic);
        spec.synthetic_samples = Some(8);
        spec.image_size = Some(6);
        assert_eq!(load(&spec).unwrap().input_shape(), [1, 6, 6]);
    }

    #[test]
    fn colour_images_have_distinct_channels() {
        let (side, plane) = (6, 36);
        let grey = generate(8, side, 1).unwrap();
        let colour = generate(8, side, 3).unwrap();
        assert_eq!(colour.channels, 3);
        assert_eq!(colour.train.images.len(), 8 * 3 * plane);
        assert_eq!(colour.test.images.len(), 2 * 3 * plane);
        // Class, shift, contrast, brightness and channel 0's noise come first from each
        // sample's stream, and channel 0's prototypes from stream 0, as for grey images:
        // channel 0 of every colour sample is the grey sample.
        assert_eq!(colour.train.labels, grey.train.labels);
        assert_eq!(colour.test.labels, grey.test.labels);
        for i in 0..8 {
            assert_eq!(
                colour.train.images[i * 3 * plane..i * 3 * plane + plane],
                grey.train.images[i * plane..(i + 1) * plane],
                "sample {i}"
            );
        }
        // The channels differ from one another (their prototypes come from other streams).
        let sample = &colour.train.images[..3 * plane];
        assert_ne!(sample[..plane], sample[plane..2 * plane]);
        assert_ne!(sample[plane..2 * plane], sample[2 * plane..]);
        // Channel 1's prototypes do not depend on how many channels follow it.
        let two = generate(8, side, 2).unwrap();
        assert_eq!(
            two.train.images[plane..2 * plane],
            colour.train.images[plane..2 * plane]
        );
        assert!(colour.train.images.iter().all(|v| (0.0..=1.0).contains(v)));
        // Through `load`, normalised per channel.
        let mut spec = DatasetSpec::new(DatasetKind::Synthetic);
        spec.synthetic_channels = Some(4);
        spec.synthetic_samples = Some(40);
        spec.image_size = Some(8);
        let loaded = load(&spec).unwrap();
        assert_eq!(loaded.input_shape(), [4, 8, 8]);
        assert_eq!(loaded.normalization.mean.len(), 4);
    }

    #[test]
    fn channel_count_is_checked() {
        for bad in [0, 5] {
            let message = generate(8, 6, bad).err().unwrap().to_string();
            assert!(message.contains("synthetic_channels"), "{message}");
            let mut spec = DatasetSpec::new(DatasetKind::Synthetic);
            spec.synthetic_channels = Some(bad);
            let message = load(&spec).unwrap_err().to_string();
            assert!(message.contains("synthetic_channels"), "{message}");
        }
        let mut spec = DatasetSpec::new(DatasetKind::Digits);
        spec.synthetic_channels = Some(3);
        let message = load(&spec).unwrap_err().to_string();
        assert!(message.contains("synthetic_channels"), "{message}");
    }

    /// Learnable but not trivial: class means separate the classes well above chance, yet no
    /// two samples of a class are alike.
    #[test]
    fn classes_are_learnable_but_noisy() {
        let data = generate(2000, 28, 1).unwrap();
        let plane = 28 * 28;
        let mut means = vec![vec![0.0f32; plane]; CLASSES];
        let mut counts = vec![0usize; CLASSES];
        for (i, &label) in data.train.labels.iter().enumerate() {
            let sample = &data.train.images[i * plane..(i + 1) * plane];
            means[label as usize]
                .iter_mut()
                .zip(sample)
                .for_each(|(m, &v)| *m += v);
            counts[label as usize] += 1;
        }
        for (mean, &count) in means.iter_mut().zip(&counts) {
            mean.iter_mut().for_each(|m| *m /= count as f32);
        }
        let nearest = |sample: &[f32]| -> u32 {
            let distance = |mean: &Vec<f32>| -> f32 {
                mean.iter()
                    .zip(sample)
                    .map(|(m, v)| (m - v) * (m - v))
                    .sum()
            };
            (0..CLASSES)
                .min_by(|&a, &b| distance(&means[a]).total_cmp(&distance(&means[b])))
                .unwrap() as u32
        };
        let correct = (0..data.test.len())
            .filter(|&i| {
                nearest(&data.test.images[i * plane..(i + 1) * plane]) == data.test.labels[i]
            })
            .count();
        let accuracy = correct as f32 / data.test.len() as f32;
        assert!(accuracy > 0.5, "nearest-class-mean accuracy {accuracy}");
        let first_two_of_class_0: Vec<usize> = (0..data.train.len())
            .filter(|&i| data.train.labels[i] == 0)
            .take(2)
            .collect();
        let (i, j) = (first_two_of_class_0[0], first_two_of_class_0[1]);
        assert_ne!(
            data.train.images[i * plane..(i + 1) * plane],
            data.train.images[j * plane..(j + 1) * plane]
        );
    }
}
