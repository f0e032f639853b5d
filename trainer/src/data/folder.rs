//! Reads an image-folder dataset: one sub-folder of PNG/JPEG images per class (the layout of
//! Caltech-256 and PI100), or a flat folder of images whose names end in their label; every
//! image resized to a square of a chosen side.
//!
//! # Layout
//!
//! The data folder holds one of
//! - `train/` and `test/`, each with the same set of class sub-folders;
//! - the class sub-folders themselves. Then the split is fixed and deterministic: within each
//!   class, files sorted by name, every 5th file (positions 4, 9, 14, … counting from 0) goes
//!   to the test split and the rest to training. A class with fewer than 5 images therefore
//!   has none in the test split;
//! - image files only, no folders, each named `<anything>_<label>.<ext>`: the label is the
//!   whole number after the last `_` of the name without its extension (`cifar100_07_14.png`
//!   is label 14). As for the `idx` kind, the number of classes is the largest label + 1, so a
//!   label that no file has is still a class. The split: all files sorted by name, every 5th
//!   (positions 4, 9, 14, …) goes to the test split, the rest to training. A name without a
//!   `_<number>` ending is an error naming the file and the expected pattern. One folder is
//!   one dataset: every image in it is read, so files of different datasets (the
//!   `cifar10_*` and `cifar100_*` samples) must sit in different folders. A label above 65535
//!   is an error (a naming mistake, not a class count).
//!
//! A folder that holds both files and folders is an error.
//!
//! With class folders, classes are the class folders' names in sorted (byte) order; class `k`
//! is label `k`. Samples are stored class by class, and within a class in file-name order.
//! With labelled files, samples are stored in file-name order.
//!
//! # What counts as an image
//!
//! Files and folders whose names start with `.` (`.DS_Store`, `.git`) are skipped everywhere.
//! Inside a class folder, a file ending in `.png`, `.jpg` or `.jpeg` (any letter case) must
//! decode, or loading fails naming it; any other file is an error too ("not an image"), so a
//! stray file is never silently ignored. Folders nested inside a class folder are not read.
//! An empty class folder is an error. A file at the class level (beside the class folders) is
//! an error. In the flat layout, the same holds for the files of the data folder.
//!
//! Images are decoded by content (a PNG named `.jpg` still loads), converted to RGB (or to
//! one grey channel with `grayscale`), and resized with `image::imageops::resize` and the
//! Triangle (bilinear) filter; an image already at the target size is copied unchanged.
//! Decoding runs in parallel with rayon; the result does not depend on the thread count.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use image::imageops::{self, FilterType};
use rayon::prelude::*;

use super::{file_error, ScaledDataset, Split};

/// Side of the square images when the spec gives none.
pub(crate) const DEFAULT_IMAGE_SIZE: usize = 32;

/// The largest label a file name may give: far more classes than any image set has, so a
/// larger number is a naming mistake rather than a class (it would make an output layer of
/// billions of units).
const MAX_FILE_LABEL: u32 = 65_535;

/// File extensions read as images, compared without regard to letter case.
const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Loads the image folder `dir`, resizing every image to `image_size × image_size`, with one
/// grey channel if `grayscale`, else three RGB channels.
pub(crate) fn load(dir: &Path, image_size: usize, grayscale: bool) -> Result<ScaledDataset> {
    let side = u32::try_from(image_size)
        .ok()
        .filter(|&side| side > 0 && side <= 1 << 14)
        .ok_or_else(|| {
            anyhow::anyhow!("image size must be between 1 and 16384 pixels, got {image_size}")
        })?;
    let (train_files, test_files, classes) = list_samples(dir)?;
    let channels = if grayscale { 1 } else { 3 };
    let train = decode_all(&train_files, side, grayscale)?;
    let test = decode_all(&test_files, side, grayscale)?;
    Ok(ScaledDataset {
        classes,
        channels,
        height: image_size,
        width: image_size,
        train,
        test,
    })
}

/// An image file and the label of its class.
type LabelledFile = (PathBuf, u32);

/// Lists the training and test files with their labels, and the number of classes, for
/// either layout.
fn list_samples(dir: &Path) -> Result<(Vec<LabelledFile>, Vec<LabelledFile>, usize)> {
    let train_dir = dir.join("train");
    let test_dir = dir.join("test");
    match (train_dir.is_dir(), test_dir.is_dir()) {
        (true, true) => {
            let train_classes = class_folders(&train_dir)?;
            let test_classes = class_folders(&test_dir)?;
            let names = |classes: &[(OsString, PathBuf)]| -> Vec<OsString> {
                classes.iter().map(|(name, _)| name.clone()).collect()
            };
            if names(&train_classes) != names(&test_classes) {
                let describe = |only: Vec<&OsString>| -> String {
                    let list: Vec<String> = only
                        .iter()
                        .map(|n| n.to_string_lossy().into_owned())
                        .collect();
                    format!("[{}]", list.join(", "))
                };
                let train_names = names(&train_classes);
                let test_names = names(&test_classes);
                bail!(
                    "class folders of {} and {} differ: only in train: {}; only in test: {}",
                    train_dir.display(),
                    test_dir.display(),
                    describe(
                        train_names
                            .iter()
                            .filter(|n| !test_names.contains(n))
                            .collect()
                    ),
                    describe(
                        test_names
                            .iter()
                            .filter(|n| !train_names.contains(n))
                            .collect()
                    ),
                );
            }
            let mut train = Vec::new();
            let mut test = Vec::new();
            for (label, ((_, train_class), (_, test_class))) in
                train_classes.iter().zip(&test_classes).enumerate()
            {
                let label = label as u32;
                train.extend(image_files(train_class)?.into_iter().map(|p| (p, label)));
                test.extend(image_files(test_class)?.into_iter().map(|p| (p, label)));
            }
            Ok((train, test, train_classes.len()))
        }
        (true, false) | (false, true) => {
            let (present, missing) = if train_dir.is_dir() {
                (&train_dir, &test_dir)
            } else {
                (&test_dir, &train_dir)
            };
            bail!(
                "{} exists but {} does not: give both train/ and test/, or only class folders",
                present.display(),
                missing.display()
            )
        }
        (false, false) => {
            let entries = sorted_entries(dir)?;
            let is_folder = |(_, path): &&(OsString, PathBuf)| path.is_dir();
            match (
                entries.iter().find(is_folder),
                entries.iter().find(|e| !is_folder(e)),
            ) {
                (None, Some(_)) => return labelled_files(dir),
                (Some((_, folder)), Some((_, file))) => bail!(
                    "{} is not a class folder: {} holds both folders ({}) and files; give one \
                     folder per class, or only image files named <name>_<label>.<ext>",
                    file.display(),
                    dir.display(),
                    folder.display()
                ),
                _ => {}
            }
            let classes = class_folders(dir)?;
            let mut train = Vec::new();
            let mut test = Vec::new();
            for (label, (_, class_dir)) in classes.iter().enumerate() {
                let label = label as u32;
                for (position, path) in image_files(class_dir)?.into_iter().enumerate() {
                    // The fixed split: every 5th file of the class, in name order, is a test file.
                    if position % 5 == 4 {
                        test.push((path, label));
                    } else {
                        train.push((path, label));
                    }
                }
            }
            Ok((train, test, classes.len()))
        }
    }
}

/// The flat layout: every file of `dir` an image whose name ends in `_<label>`; the
/// classes are the largest label + 1, and every 5th file by name is a test file.
fn labelled_files(dir: &Path) -> Result<(Vec<LabelledFile>, Vec<LabelledFile>, usize)> {
    let mut train = Vec::new();
    let mut test = Vec::new();
    let mut classes = 0usize;
    for (position, path) in image_files(dir)?.into_iter().enumerate() {
        let label = file_label(&path)?;
        classes = classes.max(label as usize + 1);
        // The fixed split: every 5th file, in name order, is a test file.
        if position % 5 == 4 {
            test.push((path, label));
        } else {
            train.push((path, label));
        }
    }
    Ok((train, test, classes))
}

/// The label a file name ends in: the whole number after the last `_` of its stem.
fn file_label(path: &Path) -> Result<u32> {
    let stem = path
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or_default();
    let label = stem.rsplit_once('_').map_or("", |(_, label)| label);
    if label.is_empty() || !label.bytes().all(|b| b.is_ascii_digit()) {
        bail!(
            "{}: the name does not end in its label; in a folder of images without class \
             folders, every file must be named <name>_<label>.<ext> with a whole-number label, \
             e.g. cifar100_07_14.png (label 14)",
            path.display()
        );
    }
    match label.parse::<u32>() {
        Ok(label) if label <= MAX_FILE_LABEL => Ok(label),
        _ => Err(file_error(
            path,
            format!("label {label} is above {MAX_FILE_LABEL}, the largest a file name may give"),
        )),
    }
}

/// Whether a file name is hidden (starts with a dot), and so skipped.
fn is_hidden(name: &OsString) -> bool {
    name.to_string_lossy().starts_with('.')
}

/// The non-hidden entries of `dir` with their names, sorted by name.
fn sorted_entries(dir: &Path) -> Result<Vec<(OsString, PathBuf)>> {
    let entries = std::fs::read_dir(dir).map_err(|e| file_error(dir, e))?;
    let mut listed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| file_error(dir, e))?;
        let name = entry.file_name();
        if !is_hidden(&name) {
            listed.push((name, entry.path()));
        }
    }
    listed.sort();
    Ok(listed)
}

/// The class folders of `dir`, sorted by name; anything else (but hidden entries) is an error.
fn class_folders(dir: &Path) -> Result<Vec<(OsString, PathBuf)>> {
    let entries = sorted_entries(dir)?;
    if let Some((_, stray)) = entries.iter().find(|(_, path)| !path.is_dir()) {
        bail!(
            "{} is not a class folder: {} should hold only one folder per class",
            stray.display(),
            dir.display()
        );
    }
    if entries.is_empty() {
        return Err(file_error(
            dir,
            "no class folders (nor labelled images) found",
        ));
    }
    Ok(entries)
}

/// The image files of one class folder, sorted by name. Errors on an empty folder and on a
/// file that is not an image by its extension.
fn image_files(class_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut images = Vec::new();
    for (_, path) in sorted_entries(class_dir)? {
        if path.is_dir() {
            continue;
        }
        let is_image = path
            .extension()
            .and_then(|ext| ext.to_str())
            .is_some_and(|ext| {
                IMAGE_EXTENSIONS
                    .iter()
                    .any(|known| ext.eq_ignore_ascii_case(known))
            });
        if !is_image {
            bail!(
                "not an image: {} (only .png, .jpg and .jpeg files may sit in a class folder or \
                 a folder of labelled images)",
                path.display()
            );
        }
        images.push(path);
    }
    if images.is_empty() {
        return Err(file_error(
            class_dir,
            "empty class folder: no PNG or JPEG images",
        ));
    }
    Ok(images)
}

/// Decodes `files` in parallel into one split. On failure the error is that of the first
/// failing file in list order, so the message does not depend on thread scheduling.
fn decode_all(files: &[LabelledFile], side: u32, grayscale: bool) -> Result<Split> {
    let decoded: Vec<Result<Vec<u8>>> = files
        .par_iter()
        .map(|(path, _)| decode(path, side, grayscale))
        .collect();
    let sample_len = (side as usize) * (side as usize) * if grayscale { 1 } else { 3 };
    let mut images = Vec::with_capacity(files.len() * sample_len);
    for pixels in decoded {
        images.extend(pixels?.into_iter().map(|p| p as f32 / 255.0));
    }
    Ok(Split {
        images,
        labels: files.iter().map(|&(_, label)| label).collect(),
    })
}

/// Decodes one image and resizes it to `side × side`; returns its pixels in CHW order.
fn decode(path: &Path, side: u32, grayscale: bool) -> Result<Vec<u8>> {
    let image = image::ImageReader::open(path)
        .map_err(|e| file_error(path, e))?
        .with_guessed_format()
        .map_err(|e| file_error(path, e))?
        .decode()
        .map_err(|e| file_error(path, format!("cannot decode image: {e}")))?;
    if grayscale {
        let grey = imageops::resize(&image.to_luma8(), side, side, FilterType::Triangle);
        Ok(grey.into_raw())
    } else {
        let rgb = imageops::resize(&image.to_rgb8(), side, side, FilterType::Triangle);
        // `image` stores pixels interleaved (HWC); the dataset wants one plane per channel.
        let interleaved = rgb.into_raw();
        let plane = interleaved.len() / 3;
        let mut planar = vec![0u8; interleaved.len()];
        for (i, pixel) in interleaved.chunks_exact(3).enumerate() {
            for (c, &value) in pixel.iter().enumerate() {
                planar[c * plane + i] = value;
            }
        }
        Ok(planar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{load as load_dataset, Dataset, DatasetKind, DatasetSpec};

    use crate::data::test_data::fixture;

    /// The CIFAR-10 sample PNGs (committed fixture), sorted by name, with the label their name ends in.
    fn cifar10_samples() -> Vec<(PathBuf, u32)> {
        let mut samples: Vec<(PathBuf, u32)> = std::fs::read_dir(fixture("cifar-samples"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_str().unwrap();
                name.starts_with("cifar10_") && name.ends_with(".png")
            })
            .map(|p| {
                let stem = p.file_stem().unwrap().to_str().unwrap().to_string();
                let label = stem.rsplit('_').next().unwrap().parse().unwrap();
                (p, label)
            })
            .collect();
        samples.sort();
        assert_eq!(samples.len(), 20);
        samples
    }

    /// Copies the CIFAR-10 PNGs into `root/class_<label>/`, returning the distinct labels.
    fn build_class_folders(root: &Path) -> Vec<u32> {
        let mut labels = Vec::new();
        for (path, label) in cifar10_samples() {
            let class_dir = root.join(format!("class_{label}"));
            std::fs::create_dir_all(&class_dir).unwrap();
            std::fs::copy(&path, class_dir.join(path.file_name().unwrap())).unwrap();
            labels.push(label);
        }
        labels.sort();
        labels.dedup();
        labels
    }

    fn load_folder(dir: &Path, image_size: Option<usize>, grayscale: bool) -> Result<Dataset> {
        let mut spec = DatasetSpec::new(DatasetKind::Folder);
        spec.data_dir = Some(dir.to_path_buf());
        spec.image_size = image_size;
        spec.grayscale = grayscale;
        load_dataset(&spec)
    }

    /// Value `v` of a loaded sample in channel `c` mapped back to `[0, 1]`.
    fn unnormalize(dataset: &Dataset, c: usize, v: f32) -> f32 {
        v * dataset.normalization.std[c] + dataset.normalization.mean[c]
    }

    #[test]
    fn class_folders_load_with_fixed_split_and_exact_pixels() {
        let root = tempfile::tempdir().unwrap();
        let labels = build_class_folders(root.path());
        // A hidden file is skipped, not an error.
        std::fs::write(root.path().join("class_0/.DS_Store"), b"junk").unwrap();
        let dataset = load_folder(root.path(), None, false).unwrap();
        assert_eq!(dataset.name, "folder");
        assert_eq!(dataset.input_shape(), [3, 32, 32]);
        assert_eq!(dataset.classes, labels.len());
        assert_eq!(dataset.train.len() + dataset.test.len(), 20);
        assert_eq!(
            dataset.train.images.len(),
            dataset.train.len() * 3 * 32 * 32
        );

        // Rebuild the expected order: class by class, files by name, every 5th to test.
        let mut expected_train = Vec::new();
        let mut expected_test = Vec::new();
        for (class, label) in labels.iter().enumerate() {
            let mut files: Vec<PathBuf> = cifar10_samples()
                .into_iter()
                .filter(|(_, l)| l == label)
                .map(|(p, _)| p)
                .collect();
            files.sort_by_key(|p| p.file_name().unwrap().to_owned());
            for (position, file) in files.into_iter().enumerate() {
                let target = if position % 5 == 4 {
                    &mut expected_test
                } else {
                    &mut expected_train
                };
                target.push((file, class as u32));
            }
        }
        let expected_labels: Vec<u32> = expected_train.iter().map(|(_, l)| *l).collect();
        assert_eq!(dataset.train.labels, expected_labels);
        assert_eq!(dataset.test.len(), expected_test.len());

        // Every pixel of every training image equals the PNG decoded directly.
        for (i, (file, _)) in expected_train.iter().enumerate() {
            let png = image::open(file).unwrap().to_rgb8();
            let sample = dataset.train.sample(i, dataset.sample_len());
            for (x, y, pixel) in png.enumerate_pixels() {
                for c in 0..3 {
                    let loaded = unnormalize(&dataset, c, sample[c * 1024 + (y * 32 + x) as usize]);
                    let direct = pixel.0[c] as f32 / 255.0;
                    assert!((loaded - direct).abs() < 1e-5, "{file:?} ({x},{y}) c{c}");
                }
            }
        }
        // The normalisation is the training split's per-channel mean and population std,
        // computed here straight from the PNG bytes.
        for c in 0..3 {
            let values: Vec<f64> = expected_train
                .iter()
                .flat_map(|(file, _)| {
                    let png = image::open(file).unwrap().to_rgb8();
                    png.pixels()
                        .map(|p| p.0[c] as f64 / 255.0)
                        .collect::<Vec<_>>()
                })
                .collect();
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
            let (got_mean, got_std) = (dataset.normalization.mean[c], dataset.normalization.std[c]);
            assert!(
                (got_mean as f64 - mean).abs() < 1e-6,
                "c{c} mean {got_mean} vs {mean}"
            );
            assert!(
                (got_std as f64 - var.sqrt()).abs() < 1e-6,
                "c{c} std {got_std}"
            );
        }
    }

    #[test]
    fn grayscale_and_resize() {
        let root = tempfile::tempdir().unwrap();
        build_class_folders(root.path());
        let dataset = load_folder(root.path(), Some(16), true).unwrap();
        assert_eq!(dataset.input_shape(), [1, 16, 16]);
        assert_eq!(dataset.train.images.len(), dataset.train.len() * 256);

        // A solid colour stays solid through any resize, and its grey level is the Rec. 709
        // luma: 0.2126·200 + 0.7152·100 + 0.0722·50 = 117.65 (Rec. 601 would give 124.2).
        let solid = tempfile::tempdir().unwrap();
        let class_dir = solid.path().join("only");
        std::fs::create_dir(&class_dir).unwrap();
        let mut colours = image::RgbImage::from_pixel(20, 12, image::Rgb([200, 100, 50]));
        colours.save(class_dir.join("a.png")).unwrap();
        colours.put_pixel(0, 0, image::Rgb([0, 0, 0])); // a second image, for a non-zero std
        colours.save(class_dir.join("b.png")).unwrap();
        let dataset = load_folder(solid.path(), Some(8), true).unwrap();
        assert_eq!(dataset.input_shape(), [1, 8, 8]);
        let sample = dataset.train.sample(0, 64);
        for &v in sample {
            let grey = unnormalize(&dataset, 0, v) * 255.0;
            assert!((grey - 117.65).abs() <= 1.0, "grey level {grey}");
        }
    }

    #[test]
    fn train_and_test_folders() {
        let root = tempfile::tempdir().unwrap();
        build_class_folders(&root.path().join("train"));
        build_class_folders(&root.path().join("test"));
        let dataset = load_folder(root.path(), None, false).unwrap();
        assert_eq!((dataset.train.len(), dataset.test.len()), (20, 20));
        assert_eq!(dataset.train.labels, dataset.test.labels);
        assert_eq!(dataset.train.images, dataset.test.images);

        // Different class sets are an error listing the difference.
        std::fs::remove_dir_all(root.path().join("test/class_9")).unwrap();
        let message = format!("{:#}", load_folder(root.path(), None, false).unwrap_err());
        assert!(message.contains("only in train: [class_9]"), "{message}");
        // Only one of the two is an error too.
        std::fs::remove_dir_all(root.path().join("test")).unwrap();
        let message = format!("{:#}", load_folder(root.path(), None, false).unwrap_err());
        assert!(message.contains("does not"), "{message}");
    }

    #[test]
    fn empty_class_folder_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        build_class_folders(root.path());
        let empty = root.path().join("class_4");
        std::fs::create_dir(&empty).unwrap();
        std::fs::write(empty.join(".hidden.png"), b"skipped").unwrap();
        let message = format!("{:#}", load_folder(root.path(), None, false).unwrap_err());
        assert!(message.contains(&empty.display().to_string()), "{message}");
        assert!(message.contains("empty class folder"), "{message}");
    }

    #[test]
    fn non_image_file_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        build_class_folders(root.path());
        let stray = root.path().join("class_3/notes.txt");
        std::fs::write(&stray, b"not a picture").unwrap();
        let message = format!("{:#}", load_folder(root.path(), None, false).unwrap_err());
        assert!(
            message.contains(&format!("not an image: {}", stray.display())),
            "{message}"
        );
        // A file beside the class folders is an error as well.
        std::fs::remove_file(&stray).unwrap();
        let readme = root.path().join("README");
        std::fs::write(&readme, b"about").unwrap();
        let message = format!("{:#}", load_folder(root.path(), None, false).unwrap_err());
        assert!(message.contains(&readme.display().to_string()), "{message}");
        assert!(message.contains("not a class folder"), "{message}");
    }

    #[test]
    fn corrupt_png_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        build_class_folders(root.path());
        // A PNG cut in half, with an upper-case extension to check case-insensitivity.
        let (source, _) = &cifar10_samples()[0];
        let bytes = std::fs::read(source).unwrap();
        let broken = root.path().join("class_1/broken.PNG");
        std::fs::write(&broken, &bytes[..bytes.len() / 2]).unwrap();
        let message = format!("{:#}", load_folder(root.path(), None, false).unwrap_err());
        assert!(message.contains(&broken.display().to_string()), "{message}");
        assert!(message.contains("cannot decode image"), "{message}");
        // Bytes that are no known format at all.
        std::fs::write(&broken, b"garbage garbage garbage").unwrap();
        let message = format!("{:#}", load_folder(root.path(), None, false).unwrap_err());
        assert!(message.contains(&broken.display().to_string()), "{message}");
    }

    /// The CIFAR-100 sample PNGs copied flat into a new temporary folder.
    fn cifar100_flat() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(fixture("cifar-samples")).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap();
            if name.starts_with("cifar100_") {
                std::fs::copy(&path, root.path().join(name)).unwrap();
            }
        }
        root
    }

    #[test]
    fn labelled_files_take_their_label_from_the_name() {
        let root = cifar100_flat();
        std::fs::write(root.path().join(".DS_Store"), b"skipped").unwrap();
        let dataset = load_folder(root.path(), None, false).unwrap();
        assert_eq!(dataset.input_shape(), [3, 32, 32]);
        // The fixture names, cifar100_<index>_<label>.png for index 00..19, in name order:
        // labels 49 33 72 51 71 | 92 15 14 23 0 | 71 75 81 69 40 | 43 92 97 70 53.
        // Largest label 97, so 98 classes.
        assert_eq!(dataset.classes, 98);
        // Positions 4, 9, 14, 19 (files 04, 09, 14, 19) are the test split.
        assert_eq!(dataset.test.labels, [71, 0, 40, 53]);
        assert_eq!(
            dataset.train.labels,
            [49, 33, 72, 51, 92, 15, 14, 23, 71, 75, 81, 69, 43, 92, 97, 70]
        );
        // Samples in name order: the first training image is file 00, the second test image
        // file 09; pixels as the PNG decodes.
        for (split, i, name) in [
            (&dataset.train, 0, "cifar100_00_49.png"),
            (&dataset.train, 4, "cifar100_05_92.png"),
            (&dataset.test, 1, "cifar100_09_0.png"),
        ] {
            let png = image::open(root.path().join(name)).unwrap().to_rgb8();
            let sample = split.sample(i, dataset.sample_len());
            for (x, y, pixel) in png.enumerate_pixels() {
                for c in 0..3 {
                    let loaded = unnormalize(&dataset, c, sample[c * 1024 + (y * 32 + x) as usize]);
                    let direct = pixel.0[c] as f32 / 255.0;
                    assert!((loaded - direct).abs() < 1e-5, "{name} ({x},{y}) c{c}");
                }
            }
        }
    }

    #[test]
    fn labelled_files_with_few_labels() {
        // Labels 2 and 0 only: still 3 classes (largest + 1); 4 files, so none is 5th.
        let root = tempfile::tempdir().unwrap();
        let grey = image::GrayImage::from_pixel(4, 4, image::Luma([10]));
        for name in ["b_0.png", "a_2.png", "c_x_2.PNG", "d_0.jpg"] {
            grey.save_with_format(root.path().join(name), image::ImageFormat::Png)
                .unwrap();
        }
        let dataset = load_folder(root.path(), Some(4), true).unwrap();
        assert_eq!(dataset.classes, 3);
        // Name order a_2, b_0, c_x_2, d_0.
        assert_eq!(dataset.train.labels, [2, 0, 2, 0]);
        assert!(dataset.test.is_empty());
    }

    #[test]
    fn a_file_name_without_a_label_is_an_error() {
        for bad in [
            "cat.png",
            "cat_.png",
            "cat_x.png",
            "cat_-3.png",
            "cat_+3.png",
            "cat_99999.png",
        ] {
            let root = cifar100_flat();
            let path = root.path().join(bad);
            std::fs::copy(root.path().join("cifar100_00_49.png"), &path).unwrap();
            let message = format!("{:#}", load_folder(root.path(), None, false).unwrap_err());
            assert!(message.contains(&path.display().to_string()), "{message}");
            if bad == "cat_99999.png" {
                assert!(message.contains("above 65535"), "{message}");
            } else {
                assert!(message.contains("<name>_<label>.<ext>"), "{message}");
            }
        }
        // A file that is not an image is an error, as in a class folder.
        let root = cifar100_flat();
        let notes = root.path().join("notes_1.txt");
        std::fs::write(&notes, b"text").unwrap();
        let message = format!("{:#}", load_folder(root.path(), None, false).unwrap_err());
        assert!(
            message.contains(&format!("not an image: {}", notes.display())),
            "{message}"
        );
    }

    #[test]
    fn files_beside_folders_are_an_error() {
        let root = cifar100_flat();
        let folder = root.path().join("class_a");
        std::fs::create_dir(&folder).unwrap();
        let message = format!("{:#}", load_folder(root.path(), None, false).unwrap_err());
        assert!(message.contains("holds both folders"), "{message}");
        assert!(message.contains("not a class folder"), "{message}");
        assert!(message.contains(&folder.display().to_string()), "{message}");
        // An empty data folder is neither layout.
        let empty = tempfile::tempdir().unwrap();
        let message = format!("{:#}", load_folder(empty.path(), None, false).unwrap_err());
        assert!(message.contains("no class folders"), "{message}");
    }

    #[test]
    fn jpeg_loads() {
        let root = tempfile::tempdir().unwrap();
        let class_dir = root.path().join("only");
        std::fs::create_dir(&class_dir).unwrap();
        let (source, _) = &cifar10_samples()[0];
        let rgb = image::open(source).unwrap().to_rgb8();
        rgb.save(class_dir.join("a.JPEG")).unwrap();
        let dataset = load_folder(root.path(), Some(8), false).unwrap();
        assert_eq!(dataset.input_shape(), [3, 8, 8]);
        assert_eq!(
            (dataset.classes, dataset.train.len(), dataset.test.len()),
            (1, 1, 0)
        );
    }
}
