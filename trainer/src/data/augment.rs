//! Training-time augmentation of a minibatch: torchvision's CIFAR recipe
//! `RandomCrop(size, padding=P)` then `RandomHorizontalFlip()`, applied to images that are
//! already normalised.
//!
//! # What each sample gets
//!
//! For each sample of the minibatch, in order:
//! 1. if [`Augment::crop_padding`] `P > 0`: two offsets `dy` then `dx`, each uniform in
//!    `0..=2P` (torchvision draws the top offset before the left one); the image is padded by
//!    `P` pixels on every side and the `h × w` window whose top-left corner is `(dy, dx)` of
//!    the padded image is kept. Output pixel `(y, x)` is input pixel `(y + dy − P, x + dx − P)`,
//!    or the padding value where that lies outside the image. `dy = dx = P` is the identity.
//! 2. if [`Augment::flip`]: with probability ½, the (cropped) image is mirrored left-right,
//!    pixel `(y, x)` taking pixel `(y, w − 1 − x)`.
//!
//! The padding value of channel `c` is the normalised value of a black pixel,
//! `(0 − mean_c) / std_c` ([`pad_values`]): torchvision pads the 8-bit image with 0 before
//! `ToTensor` and `Normalize`, and this crate normalises when loading, so padding with 0 here
//! would be padding with the channel's mean grey instead.
//!
//! # Randomness
//!
//! All draws of one minibatch come from `ChaCha8Rng::seed_from_u64(seed)` on stream
//! `2^62 + epoch · 2^32 + batch` ([`stream`]), for `epoch < 2^30` and `batch < 2^32`: one stream
//! per (epoch, minibatch), so the draws of a minibatch depend only on the run's seed, the epoch
//! and the minibatch's index in it. A resumed run therefore augments every minibatch exactly as
//! the uninterrupted run would, whatever was drawn before. The `2^62` tag keeps these streams
//! apart from the other streams the trainer draws from its seed (the model's initialisation on
//! stream 0, epoch `e`'s shuffle on stream `e`, the probe selection on stream `2^64 − 1`).
//! Within a stream the samples draw in order: `dy`, `dx` (only when cropping), then the flip
//! (only when flipping, `gen_bool(0.5)`).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use necrosis_records::augment::Augment;

use super::Normalization;

/// The tag of the augmentation streams, above every epoch number used as a shuffle stream.
const STREAM_TAG: u64 = 1 << 62;

/// The ChaCha8 stream of minibatch `batch` of epoch `epoch`: `2^62 + epoch · 2^32 + batch`.
/// Panics if `epoch ≥ 2^30` or `batch ≥ 2^32` (where streams would no longer be distinct).
pub fn stream(epoch: usize, batch: usize) -> u64 {
    let (epoch, batch) = (epoch as u64, batch as u64);
    assert!(
        epoch < 1 << 30 && batch < 1 << 32,
        "augmentation stream: epoch {epoch} or minibatch {batch} out of range"
    );
    STREAM_TAG | epoch << 32 | batch
}

/// The normalised value of a black pixel in each channel, `(0 − mean_c) / std_c`: what the
/// crop's padding is filled with (computed as the normalisation computes it, so it is
/// bit-identical to a black pixel of the data).
pub fn pad_values(normalization: &Normalization) -> Vec<f32> {
    normalization
        .mean
        .iter()
        .zip(&normalization.std)
        .map(|(&mean, &std)| (0.0 - mean) / std)
        .collect()
}

/// Augments the minibatch `images` in place (see the module documentation): `n` samples of
/// `sample_shape = [c, h, w]`, one after another in CHW order. `pad_values` has one value per
/// channel ([`pad_values`]); `seed`, `epoch` and `batch` choose the random stream. An
/// augmentation that [`Augment::is_none`] returns at once, leaving the batch untouched.
///
/// Panics if `images` is not a whole number of samples, if `pad_values` does not have `c`
/// values, or if (epoch, batch) is out of the range of [`stream`].
pub fn augment_batch(
    images: &mut [f32],
    sample_shape: [usize; 3],
    augment: &Augment,
    pad_values: &[f32],
    seed: u64,
    epoch: usize,
    batch: usize,
) {
    if augment.is_none() {
        return;
    }
    let [channels, height, width] = sample_shape;
    let sample_len = channels * height * width;
    assert!(
        sample_len > 0 && images.len().is_multiple_of(sample_len),
        "augment_batch: {} values are not whole samples of {sample_shape:?}",
        images.len()
    );
    assert_eq!(
        pad_values.len(),
        channels,
        "augment_batch: one padding value per channel"
    );
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream(epoch, batch));
    let padding = augment.crop_padding;
    let mut source = vec![0.0f32; sample_len];
    for sample in images.chunks_exact_mut(sample_len) {
        let (dy, dx) = if padding > 0 {
            let dy = rng.gen_range(0..=2 * padding);
            let dx = rng.gen_range(0..=2 * padding);
            (dy, dx)
        } else {
            (0, 0)
        };
        let flip = augment.flip && rng.gen_bool(0.5);
        if (dy, dx) == (padding, padding) && !flip {
            continue; // the identity
        }
        source.copy_from_slice(sample);
        crop_flip(
            &source,
            sample,
            sample_shape,
            padding,
            dy,
            dx,
            flip,
            pad_values,
        );
    }
}

/// One sample's transform with its draws given: writes to `out` the `h × w` window at
/// `(dy, dx)` of `sample` padded by `padding` pixels of `pad_values[c]` on every side, mirrored
/// left-right if `flip`. `dy` and `dx` are in `0..=2·padding`; `(padding, padding)` without
/// flip copies the sample unchanged.
#[allow(clippy::too_many_arguments)]
pub fn crop_flip(
    sample: &[f32],
    out: &mut [f32],
    sample_shape: [usize; 3],
    padding: usize,
    dy: usize,
    dx: usize,
    flip: bool,
    pad_values: &[f32],
) {
    let [channels, height, width] = sample_shape;
    let plane = height * width;
    assert!(sample.len() == channels * plane && out.len() == sample.len());
    assert!(
        dy <= 2 * padding && dx <= 2 * padding,
        "offset beyond the padding"
    );
    for c in 0..channels {
        let source = &sample[c * plane..(c + 1) * plane];
        let target = &mut out[c * plane..(c + 1) * plane];
        for y in 0..height {
            // Input row of output row y: y + dy − padding, if inside the image.
            let source_y = (y + dy).checked_sub(padding).filter(|&sy| sy < height);
            for x in 0..width {
                let cropped_x = if flip { width - 1 - x } else { x };
                let source_x = (cropped_x + dx)
                    .checked_sub(padding)
                    .filter(|&sx| sx < width);
                target[y * width + x] = match (source_y, source_x) {
                    (Some(sy), Some(sx)) => source[sy * width + sx],
                    _ => pad_values[c],
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{load, DatasetKind, DatasetSpec};

    const P: f32 = -7.0; // a padding value no test image holds

    fn crop(
        sample: &[f32],
        shape: [usize; 3],
        padding: usize,
        dy: usize,
        dx: usize,
        flip: bool,
        pad: &[f32],
    ) -> Vec<f32> {
        let mut out = vec![f32::NAN; sample.len()];
        crop_flip(sample, &mut out, shape, padding, dy, dx, flip, pad);
        out
    }

    #[test]
    fn crops_and_flips_of_a_3x3_image_written_out() {
        // 1 2 3
        // 4 5 6
        // 7 8 9, padded by 1: a 5×5 frame of P around it, offsets 0..=2.
        let image: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let shape = [1, 3, 3];
        let cases: [((usize, usize, bool), [f32; 9]); 7] = [
            ((1, 1, false), [1., 2., 3., 4., 5., 6., 7., 8., 9.]),
            ((1, 1, true), [3., 2., 1., 6., 5., 4., 9., 8., 7.]),
            ((0, 0, false), [P, P, P, P, 1., 2., P, 4., 5.]),
            ((0, 0, true), [P, P, P, 2., 1., P, 5., 4., P]),
            ((2, 2, false), [5., 6., P, 8., 9., P, P, P, P]),
            // dy = 0, dx = 2: shifted up-left by (−1, +1) in source terms.
            ((0, 2, false), [P, P, P, 2., 3., P, 5., 6., P]),
            ((2, 0, true), [5., 4., P, 8., 7., P, P, P, P]),
        ];
        for ((dy, dx, flip), expected) in cases {
            assert_eq!(
                crop(&image, shape, 1, dy, dx, flip, &[P]),
                expected,
                "dy {dy} dx {dx} flip {flip}"
            );
        }
        // No padding: the only offset is (0, 0), and only the flip changes anything.
        assert_eq!(crop(&image, shape, 0, 0, 0, false, &[P]), image);
        assert_eq!(
            crop(&image, shape, 0, 0, 0, true, &[P]),
            [3., 2., 1., 6., 5., 4., 9., 8., 7.]
        );
    }

    #[test]
    fn crops_of_a_two_channel_4x4_image_use_each_channels_padding() {
        // Channel 0 holds 0..16, channel 1 holds 100..116, row-major; padding 2.
        let image: Vec<f32> = (0..16)
            .map(|v| v as f32)
            .chain((100..116).map(|v| v as f32))
            .collect();
        let shape = [2, 4, 4];
        let pad = [-1.0, -2.0];
        // dy = 1, dx = 3: output (y, x) = input (y − 1, x + 1).
        #[rustfmt::skip]
        let expected = [
            -1., -1., -1., -1.,
             1.,  2.,  3., -1.,
             5.,  6.,  7., -1.,
             9., 10., 11., -1.,
            -2., -2., -2., -2.,
            101., 102., 103., -2.,
            105., 106., 107., -2.,
            109., 110., 111., -2.,
        ];
        assert_eq!(crop(&image, shape, 2, 1, 3, false, &pad), expected);
        // The same window mirrored: each row read right to left.
        #[rustfmt::skip]
        let mirrored = [
            -1., -1., -1., -1.,
            -1.,  3.,  2.,  1.,
            -1.,  7.,  6.,  5.,
            -1., 11., 10.,  9.,
            -2., -2., -2., -2.,
            -2., 103., 102., 101.,
            -2., 107., 106., 105.,
            -2., 111., 110., 109.,
        ];
        assert_eq!(crop(&image, shape, 2, 1, 3, true, &pad), mirrored);
        // dy = 4, dx = 0 (the bottom-left corner of the padded 8×8): input (y + 2, x − 2).
        #[rustfmt::skip]
        let corner = [
            -1., -1.,  8.,  9.,
            -1., -1., 12., 13.,
            -1., -1., -1., -1.,
            -1., -1., -1., -1.,
            -2., -2., 108., 109.,
            -2., -2., 112., 113.,
            -2., -2., -2., -2.,
            -2., -2., -2., -2.,
        ];
        assert_eq!(crop(&image, shape, 2, 4, 0, false, &pad), corner);
    }

    /// Recovers (dy, dx, flip) from a 5×5 crop (padding 2) of the image whose pixel (y, x)
    /// holds 10·y + x: the centre pixel 22 is always in view, at (4 − dy, 4 − dx) unflipped
    /// or (4 − dy, dx) flipped, and its row neighbours 21 / 23 tell which.
    fn decode(out: &[f32]) -> (usize, usize, bool) {
        let at = |v: f32| out.iter().position(|&o| o == v).map(|i| (i / 5, i % 5));
        let (row, column) = at(22.0).expect("the centre is always in view");
        let flip = match (at(21.0), at(23.0)) {
            (Some((_, left)), _) => left > column,
            (None, Some((_, right))) => right < column,
            (None, None) => unreachable!("one neighbour of the centre is in view"),
        };
        let dx = if flip { column } else { 4 - column };
        (4 - row, dx, flip)
    }

    fn grid_batch(samples: usize) -> Vec<f32> {
        (0..samples)
            .flat_map(|_| (0..25).map(|i| (10 * (i / 5) + i % 5) as f32))
            .collect()
    }

    #[test]
    fn offsets_are_uniform_and_flips_fair() {
        let augment: Augment = "crop:2+flip".parse().unwrap();
        let (batches, batch_size) = (100, 64);
        let mut cells = [[0usize; 5]; 5];
        let mut flips = 0usize;
        for batch in 0..batches {
            let mut images = grid_batch(batch_size);
            augment_batch(&mut images, [1, 5, 5], &augment, &[P], 3, 1, batch);
            for sample in images.chunks(25) {
                let (dy, dx, flip) = decode(sample);
                cells[dy][dx] += 1;
                flips += flip as usize;
            }
        }
        let n = (batches * batch_size) as f64; // 6400 samples
                                               // Flips: binomial(6400, ½) has standard deviation √(6400/4) = 40; allow 4.5 of them
                                               // (180), a chance of about 7·10⁻⁶ of failing for a fair coin.
        assert!(
            (flips as f64 - n / 2.0).abs() < 180.0,
            "{flips} flips of {n}"
        );
        // Offsets: chi-square of the 25 (dy, dx) cells against 256 each, 24 degrees of
        // freedom; its 0.999 quantile is 51.18.
        let expected = n / 25.0;
        let chi2: f64 = cells
            .iter()
            .flatten()
            .map(|&c| (c as f64 - expected).powi(2) / expected)
            .sum();
        assert!(chi2 < 51.18, "chi-square {chi2}: {cells:?}");
        // And each offset alone against 1280 per value, 4 degrees of freedom, 0.999 quantile 18.47.
        for axis in 0..2 {
            let counts: Vec<f64> = (0..5)
                .map(|v| {
                    (0..5)
                        .map(|w| if axis == 0 { cells[v][w] } else { cells[w][v] } as f64)
                        .sum()
                })
                .collect();
            let chi2: f64 = counts
                .iter()
                .map(|c| (c - n / 5.0).powi(2) / (n / 5.0))
                .sum();
            assert!(chi2 < 18.47, "axis {axis}: {counts:?}");
        }
    }

    #[test]
    fn crop_only_never_flips_and_flip_only_never_shifts() {
        let mut images = grid_batch(200);
        augment_batch(
            &mut images,
            [1, 5, 5],
            &"crop:2".parse().unwrap(),
            &[P],
            0,
            1,
            0,
        );
        assert!(images.chunks(25).all(|s| !decode(s).2));
        let original = grid_batch(1);
        let mirrored: Vec<f32> = (0..25).map(|i| original[i / 5 * 5 + 4 - i % 5]).collect();
        let mut images = grid_batch(200);
        augment_batch(
            &mut images,
            [1, 5, 5],
            &"flip".parse().unwrap(),
            &[P],
            0,
            1,
            0,
        );
        let flipped = images.chunks(25).filter(|s| *s == mirrored).count();
        let kept = images.chunks(25).filter(|s| *s == original).count();
        assert_eq!(flipped + kept, 200);
        assert!(flipped > 0 && kept > 0);
    }

    #[test]
    fn draws_depend_only_on_seed_epoch_and_batch() {
        let augment: Augment = "crop:2+flip".parse().unwrap();
        let run = |seed, epoch, batch| {
            let mut images = grid_batch(32);
            augment_batch(&mut images, [1, 5, 5], &augment, &[P], seed, epoch, batch);
            images
        };
        let reference = run(5, 3, 7);
        // The same key gives the same batch, whatever ran before (as after a resume).
        run(5, 3, 6);
        run(5, 2, 7);
        assert_eq!(run(5, 3, 7), reference);
        // Any other epoch, batch or seed gives other draws.
        assert_ne!(run(5, 4, 7), reference);
        assert_ne!(run(5, 3, 8), reference);
        assert_ne!(run(6, 3, 7), reference);
        // The documented stream.
        assert_eq!(stream(3, 7), (1 << 62) + 3 * (1 << 32) + 7);
        assert_ne!(stream(0, 0), 0);
    }

    #[test]
    fn none_leaves_the_batch_unchanged() {
        let mut images: Vec<f32> = (0..2 * 3 * 4 * 4).map(|v| v as f32 * 0.37 - 5.0).collect();
        let before = images.clone();
        augment_batch(
            &mut images,
            [3, 4, 4],
            &Augment::default(),
            &[P; 3],
            1,
            1,
            0,
        );
        assert_eq!(images, before);
    }

    #[test]
    fn padding_is_a_normalised_black_pixel() {
        let normalization = Normalization {
            mean: vec![0.5, 0.25],
            std: vec![0.25, 0.5],
        };
        // (0 − 0.5) / 0.25 = −2, (0 − 0.25) / 0.5 = −0.5.
        assert_eq!(pad_values(&normalization), [-2.0, -0.5]);
        // The digits hold black pixels (count 0): the smallest normalised value is one,
        // bit for bit.
        let digits = load(&DatasetSpec::new(DatasetKind::Digits)).unwrap();
        let darkest = digits
            .train
            .images
            .iter()
            .copied()
            .fold(f32::INFINITY, f32::min);
        assert_eq!(pad_values(&digits.normalization), [darkest]);
    }
}
