//! Tests of the image-folder loader: its three layouts, exact pixels, resizing, and the errors of
//! malformed folders and files.

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
