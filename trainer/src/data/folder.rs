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
#[path = "folder_tests.rs"]
mod tests;
