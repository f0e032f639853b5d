//! Reads IDX image sets (MNIST, Fashion-MNIST and anything laid out like them): four files
//! `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
//! `t10k-labels-idx1-ubyte`, each raw or gzip-compressed (`.gz` appended).
//!
//! The IDX format (LeCun's MNIST page): a big-endian `u32` magic number whose low byte is the
//! number of dimensions and whose third byte is the element type (`0x08` = unsigned byte),
//! then one big-endian `u32` per dimension, then the elements. Images are magic 2051
//! (`0x00000803`: bytes, 3 dimensions: count, rows, columns); labels are magic 2049
//! (`0x00000801`: bytes, 1 dimension: count). The header is checked strictly and the data
//! must be exactly as long as the header says: a short file and trailing bytes are both
//! errors, and nothing is allocated from a header's count before the bytes are there.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use flate2::read::GzDecoder;

use super::{file_error, ScaledDataset, Split};

/// Magic number of an IDX file of unsigned bytes with three dimensions (images).
const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with one dimension (labels).
const LABELS_MAGIC: u32 = 0x0000_0801;

/// Loads the four IDX files from `dir`. `classes` fixes the number of classes (10 for MNIST
/// and Fashion-MNIST); `None` takes the largest label in either split plus one.
pub(crate) fn load(dir: &Path, classes: Option<usize>) -> Result<ScaledDataset> {
    let train = read_split(dir, "train")?;
    let test = read_split(dir, "t10k")?;
    if (train.rows, train.cols) != (test.rows, test.cols) {
        return Err(file_error(
            &test.images_path,
            format!(
                "images are {}x{} but the training images are {}x{}",
                test.rows, test.cols, train.rows, train.cols
            ),
        ));
    }
    let classes = match classes {
        Some(classes) => classes,
        None => {
            let largest = train.labels.iter().chain(&test.labels).max();
            // Both splits hold at least one label (zero counts are rejected), so the max exists.
            largest.map_or(1, |&label| label as usize + 1)
        }
    };
    for split in [&train, &test] {
        if let Some((index, &label)) = split
            .labels
            .iter()
            .enumerate()
            .find(|(_, &label)| label as usize >= classes)
        {
            return Err(file_error(
                &split.labels_path,
                format!("label {label} at index {index} is out of range for {classes} classes"),
            ));
        }
    }
    let (rows, cols) = (train.rows, train.cols);
    Ok(ScaledDataset {
        classes,
        channels: 1,
        height: rows,
        width: cols,
        train: train.into_split(),
        test: test.into_split(),
    })
}

/// One split as read from its two files, before scaling.
struct RawSplit {
    images_path: PathBuf,
    labels_path: PathBuf,
    rows: usize,
    cols: usize,
    pixels: Vec<u8>,
    labels: Vec<u8>,
}

impl RawSplit {
    fn into_split(self) -> Split {
        Split {
            images: self.pixels.iter().map(|&p| p as f32 / 255.0).collect(),
            labels: self.labels.iter().map(|&l| l as u32).collect(),
        }
    }
}

/// Reads `<prefix>-images-idx3-ubyte[.gz]` and `<prefix>-labels-idx1-ubyte[.gz]` and checks
/// that they describe the same number of samples.
fn read_split(dir: &Path, prefix: &str) -> Result<RawSplit> {
    let images_path = find_file(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = find_file(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let images = read_idx(&images_path, IMAGES_MAGIC)?;
    let labels = read_idx(&labels_path, LABELS_MAGIC)?;
    let (count, rows, cols) = (images.dims[0], images.dims[1], images.dims[2]);
    if rows == 0 || cols == 0 {
        return Err(file_error(
            &images_path,
            format!("images have zero size ({rows}x{cols})"),
        ));
    }
    if labels.dims[0] != count {
        return Err(file_error(
            &images_path,
            format!(
                "holds {count} images but {} holds {} labels",
                labels_path.display(),
                labels.dims[0]
            ),
        ));
    }
    Ok(RawSplit {
        images_path,
        labels_path,
        rows,
        cols,
        pixels: images.data,
        labels: labels.data,
    })
}

/// The path of `name` in `dir`, raw if present, else with `.gz`.
fn find_file(dir: &Path, name: &str) -> Result<PathBuf> {
    let raw = dir.join(name);
    if raw.is_file() {
        return Ok(raw);
    }
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    bail!(
        "missing file: neither {} nor {} exists",
        raw.display(),
        gz.display()
    )
}

/// The dimensions and elements of one IDX file.
struct IdxContents {
    dims: Vec<usize>,
    data: Vec<u8>,
}

/// Reads and checks one IDX file of unsigned bytes whose magic must be `magic`; gzip when the
/// name ends in `.gz`. Every error names the file.
fn read_idx(path: &Path, magic: u32) -> Result<IdxContents> {
    let file = File::open(path).map_err(|e| file_error(path, e))?;
    let file_len = file.metadata().map_err(|e| file_error(path, e))?.len();
    let gzipped = path.extension().is_some_and(|ext| ext == "gz");
    parse_idx(path, BufReader::new(file), file_len, gzipped, magic)
}

/// Parses one IDX file held in memory, raw or (`gzipped`) gzip-compressed: images (magic 2051)
/// if `images`, else labels (magic 2049). Returns the dimensions and the elements; errors are
/// those of the loader, naming `<bytes>` as the file. For fuzzing and for callers with their
/// own I/O.
pub fn parse_idx_bytes(bytes: &[u8], gzipped: bool, images: bool) -> Result<(Vec<usize>, Vec<u8>)> {
    let magic = if images { IMAGES_MAGIC } else { LABELS_MAGIC };
    let contents = parse_idx(
        Path::new("<bytes>"),
        bytes,
        bytes.len() as u64,
        gzipped,
        magic,
    )?;
    Ok((contents.dims, contents.data))
}

/// [`read_idx`] on an open source of `file_len` bytes.
fn parse_idx<'a>(
    path: &Path,
    source: impl Read + 'a,
    file_len: u64,
    gzipped: bool,
    magic: u32,
) -> Result<IdxContents> {
    let mut reader: Box<dyn Read + 'a> = if gzipped {
        Box::new(GzDecoder::new(source))
    } else {
        Box::new(source)
    };
    // Any read error from the decoder means the compressed stream is bad; say so, since the
    // bare I/O message ("invalid gzip header", "corrupt deflate stream") does not.
    let read_failed = |e: io::Error| {
        if gzipped {
            file_error(path, format!("gzip decompression failed: {e}"))
        } else {
            file_error(path, e)
        }
    };

    let dimensions = (magic & 0xff) as usize;
    let header_len = 4 + 4 * dimensions;
    let mut header = vec![0u8; header_len];
    let got = read_up_to(&mut reader, &mut header).map_err(read_failed)?;
    if got < 4 {
        return Err(file_error(
            path,
            format!("truncated header: expected {header_len} header bytes, found {got}"),
        ));
    }
    let found_magic = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    if found_magic != magic {
        return Err(file_error(
            path,
            format!("expected magic {magic}, found {found_magic}"),
        ));
    }
    if got < header_len {
        return Err(file_error(
            path,
            format!("truncated header: expected {header_len} header bytes, found {got}"),
        ));
    }
    let dims: Vec<usize> = header[4..]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    if dims[0] == 0 {
        return Err(file_error(path, "holds zero samples (count is 0)"));
    }
    // Checked: a hostile header can ask for 2^32 × 2^32 × 2^32 bytes.
    let data_len = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            file_error(
                path,
                format!("dimensions {dims:?} describe more bytes than can be addressed"),
            )
        })?;

    // A raw file's length is known up front: reject a short or long file before allocating.
    if !gzipped {
        let expected_len = (header_len as u64).checked_add(data_len as u64);
        if expected_len != Some(file_len) {
            let found = file_len.saturating_sub(header_len as u64);
            return Err(length_error(path, &dims, data_len, found));
        }
    }
    // Reading through `take` bounds the buffer by the bytes actually present (plus one to
    // detect trailing bytes), never by the header's claim; the capacity hint is capped by the
    // file's size (times a generous compression ratio for gzip) for the same reason.
    let limit = (data_len as u64).saturating_add(1);
    let size_hint = if gzipped {
        file_len.saturating_mul(8)
    } else {
        file_len
    };
    let mut data =
        Vec::with_capacity(data_len.min(usize::try_from(size_hint).unwrap_or(usize::MAX)));
    reader
        .take(limit)
        .read_to_end(&mut data)
        .map_err(read_failed)?;
    if data.len() != data_len {
        return Err(length_error(path, &dims, data_len, data.len() as u64));
    }
    Ok(IdxContents { dims, data })
}

/// The error for data that is shorter or longer than the header promises. `found` is the
/// number of data bytes after the header (for gzip files, at most one more than expected).
fn length_error(path: &Path, dims: &[usize], expected: usize, found: u64) -> anyhow::Error {
    if found < expected as u64 {
        file_error(
            path,
            format!(
                "truncated data: dimensions {dims:?} need {expected} bytes after the header, found {found}"
            ),
        )
    } else {
        file_error(
            path,
            format!(
                "trailing bytes: dimensions {dims:?} need {expected} bytes after the header, but the file holds more"
            ),
        )
    }
}

/// Fills `buf` as far as the reader allows; returns how many bytes were read. Unlike
/// `read_exact`, a short stream is not an error, so "too short" and "unreadable" stay apart.
fn read_up_to(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{load as load_dataset, DatasetKind, DatasetSpec};
    use flate2::{write::GzEncoder, Compression};
    use sha2::{Digest, Sha256};
    use std::io::Write;

    use crate::data::test_data::{fixture, full_data};

    /// The SHA-256 of every file listed in `dir/SHA256SUMS` must match; returns how many were.
    fn verify_checksums(dir: &Path) -> usize {
        let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
        let mut checked = 0;
        for line in sums.lines().filter(|l| !l.trim().is_empty()) {
            let (expected, name) = line.split_once(char::is_whitespace).unwrap();
            let name = name.trim().trim_start_matches('*');
            let bytes = std::fs::read(dir.join(name)).unwrap();
            let actual: String = Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(actual, expected, "SHA-256 of {name}");
            checked += 1;
        }
        checked
    }

    fn load_mnist(dir: PathBuf) -> crate::data::Dataset {
        let mut spec = DatasetSpec::new(DatasetKind::Mnist);
        spec.data_dir = Some(dir);
        load_dataset(&spec).unwrap()
    }

    /// Sample `i` of `split` mapped back to 8-bit pixel values.
    fn raw_pixels(dataset: &crate::data::Dataset, split: &crate::data::Split, i: usize) -> Vec<u8> {
        let (mean, std) = (dataset.normalization.mean[0], dataset.normalization.std[0]);
        split
            .sample(i, dataset.sample_len())
            .iter()
            .map(|&v| ((v * std + mean) * 255.0).round() as u8)
            .collect()
    }

    /// The first ten labels of MNIST's training and test files, as published (and as every
    /// MNIST tutorial prints them).
    const FIRST_TRAIN_LABELS: [u32; 10] = [5, 0, 4, 1, 9, 2, 1, 3, 1, 4];
    const FIRST_TEST_LABELS: [u32; 10] = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9];

    #[test]
    fn loads_mnist_fixture() {
        // The committed head of MNIST: the first 256 training and 64 test records.
        let dir = fixture("mnist-head");
        assert_eq!(verify_checksums(&dir), 4);
        let mnist = load_mnist(dir);
        assert_eq!((mnist.train.len(), mnist.test.len()), (256, 64));
        assert_eq!(mnist.input_shape(), [1, 28, 28]);
        assert_eq!(mnist.classes, 10);
        assert_eq!(mnist.train.labels[..10], FIRST_TRAIN_LABELS);
        assert_eq!(mnist.test.labels[..10], FIRST_TEST_LABELS);
        // Reference values from scripts/make_fixtures.py, computed in plain Python from the
        // IDX bytes: pixel mean and population std of the 256 training images (over /255),
        // and the 8-bit pixel sums of the first image of each split.
        let (mean, std) = (mnist.normalization.mean[0], mnist.normalization.std[0]);
        assert!((mean - 0.128_269_14).abs() < 1e-6, "mean {mean}");
        assert!((std - 0.305_229_86).abs() < 1e-6, "std {std}");
        let sum = |pixels: Vec<u8>| pixels.iter().map(|&p| p as u64).sum::<u64>();
        assert_eq!(sum(raw_pixels(&mnist, &mnist.train, 0)), 27_525);
        assert_eq!(sum(raw_pixels(&mnist, &mnist.test, 0)), 18_454);
        // The top-left pixel of every MNIST digit is background (0), so normalised it is -mean/std.
        assert!((mnist.train.images[0] - (-mean / std)).abs() < 1e-6);
    }

    #[test]
    fn loads_official_mnist() {
        let Some(dir) = full_data("idx::loads_official_mnist", "mnist") else {
            return;
        };
        // The shared files must be the official ones before their statistics mean anything.
        assert_eq!(
            verify_checksums(&dir),
            4,
            "SHA256SUMS should list the four files"
        );
        let mnist = load_mnist(dir);
        assert_eq!(mnist.name, "mnist");
        assert_eq!((mnist.train.len(), mnist.test.len()), (60_000, 10_000));
        assert_eq!(mnist.input_shape(), [1, 28, 28]);
        assert_eq!(mnist.classes, 10);
        assert_eq!(mnist.train.images.len(), 60_000 * 784);
        assert_eq!(mnist.test.images.len(), 10_000 * 784);
        assert_eq!(mnist.train.labels[..10], FIRST_TRAIN_LABELS);
        assert_eq!(mnist.test.labels[..10], FIRST_TEST_LABELS);
        // The widely quoted MNIST statistics are 0.1307 and 0.3081 (four decimals), so they
        // must agree to within rounding of the fourth decimal: tolerance 1e-4.
        let (mean, std) = (mnist.normalization.mean[0], mnist.normalization.std[0]);
        assert!((mean - 0.1307).abs() < 1e-4, "mean {mean}");
        assert!((std - 0.3081).abs() < 1e-4, "std {std}");
        // After normalisation the training split has mean 0 and std 1.
        let n = mnist.train.images.len() as f64;
        let m: f64 = mnist.train.images.iter().map(|&x| x as f64).sum::<f64>() / n;
        let v: f64 = mnist
            .train
            .images
            .iter()
            .map(|&x| (x as f64 - m).powi(2))
            .sum::<f64>()
            / n;
        assert!(m.abs() < 1e-4 && (v.sqrt() - 1.0).abs() < 1e-4, "{m} {v}");
        // The committed fixture is the head of these files, pixel for pixel.
        let head = load_mnist(fixture("mnist-head"));
        for i in [0, 1, 100, 255] {
            assert_eq!(
                raw_pixels(&head, &head.train, i),
                raw_pixels(&mnist, &mnist.train, i)
            );
        }
        assert_eq!(head.train.labels, mnist.train.labels[..256]);
        assert_eq!(head.test.labels, mnist.test.labels[..64]);
    }

    // ---- bad input, built in a temporary folder ----

    fn images_file(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut bytes = magic.to_be_bytes().to_vec();
        for d in dims {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        bytes.extend_from_slice(data);
        bytes
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// A valid, tiny IDX set: `n` 2×3 images per split with labels 0..n.
    fn write_valid_set(dir: &Path, n: u32) {
        for prefix in ["train", "t10k"] {
            let pixels: Vec<u8> = (0..n * 6).map(|i| (i * 7 % 256) as u8).collect();
            let labels: Vec<u8> = (0..n).map(|i| i as u8).collect();
            std::fs::write(
                dir.join(format!("{prefix}-images-idx3-ubyte")),
                images_file(IMAGES_MAGIC, &[n, 2, 3], &pixels),
            )
            .unwrap();
            std::fs::write(
                dir.join(format!("{prefix}-labels-idx1-ubyte.gz")),
                gzip(&images_file(LABELS_MAGIC, &[n], &labels)),
            )
            .unwrap();
        }
    }

    fn load_idx(dir: &Path) -> Result<crate::data::Dataset> {
        let mut spec = DatasetSpec::new(DatasetKind::Idx);
        spec.data_dir = Some(dir.to_path_buf());
        load_dataset(&spec)
    }

    /// Loads `dir` and returns the error message, which must name `file`.
    fn error_naming(dir: &Path, file: &str) -> String {
        let message = format!("{:#}", load_idx(dir).expect_err("load should fail"));
        assert!(
            message.contains(&dir.join(file).display().to_string()),
            "message should name {file}: {message}"
        );
        message
    }

    #[test]
    fn valid_tiny_set_loads_with_raw_and_gzip_files() {
        let dir = tempfile::tempdir().unwrap();
        write_valid_set(dir.path(), 4);
        let dataset = load_idx(dir.path()).unwrap();
        assert_eq!(dataset.input_shape(), [1, 2, 3]);
        assert_eq!(dataset.classes, 4);
        assert_eq!(dataset.train.labels, vec![0, 1, 2, 3]);
        let mut spec = DatasetSpec::new(DatasetKind::Mnist);
        spec.data_dir = Some(dir.path().to_path_buf());
        assert_eq!(load_dataset(&spec).unwrap().classes, 10);
    }

    #[test]
    fn wrong_magic() {
        let dir = tempfile::tempdir().unwrap();
        write_valid_set(dir.path(), 4);
        let path = dir.path().join("train-images-idx3-ubyte");
        std::fs::write(&path, images_file(LABELS_MAGIC, &[4, 2, 3], &[0; 24])).unwrap();
        let message = error_naming(dir.path(), "train-images-idx3-ubyte");
        assert!(
            message.contains("expected magic 2051, found 2049"),
            "{message}"
        );
    }

    #[test]
    fn wrong_magic_in_gzip_file() {
        let dir = tempfile::tempdir().unwrap();
        write_valid_set(dir.path(), 4);
        std::fs::remove_file(dir.path().join("train-images-idx3-ubyte")).unwrap();
        std::fs::write(
            dir.path().join("train-images-idx3-ubyte.gz"),
            gzip(&images_file(LABELS_MAGIC, &[4, 2, 3], &[0; 24])),
        )
        .unwrap();
        let message = error_naming(dir.path(), "train-images-idx3-ubyte.gz");
        assert!(
            message.contains("expected magic 2051, found 2049"),
            "{message}"
        );
    }

    #[test]
    fn truncated_header() {
        let dir = tempfile::tempdir().unwrap();
        write_valid_set(dir.path(), 4);
        let path = dir.path().join("t10k-images-idx3-ubyte");
        std::fs::write(&path, &images_file(IMAGES_MAGIC, &[4, 2, 3], &[])[..9]).unwrap();
        let message = error_naming(dir.path(), "t10k-images-idx3-ubyte");
        assert!(message.contains("truncated header"), "{message}");
        // A file too short even for the magic number is a truncated header too.
        std::fs::write(&path, [0u8, 0]).unwrap();
        let message = error_naming(dir.path(), "t10k-images-idx3-ubyte");
        assert!(message.contains("truncated header"), "{message}");
    }

    #[test]
    fn truncated_data_and_trailing_bytes() {
        let dir = tempfile::tempdir().unwrap();
        write_valid_set(dir.path(), 4);
        let path = dir.path().join("train-images-idx3-ubyte");
        std::fs::write(&path, images_file(IMAGES_MAGIC, &[4, 2, 3], &[0; 23])).unwrap();
        let message = error_naming(dir.path(), "train-images-idx3-ubyte");
        assert!(message.contains("truncated data"), "{message}");
        std::fs::write(&path, images_file(IMAGES_MAGIC, &[4, 2, 3], &[0; 25])).unwrap();
        let message = error_naming(dir.path(), "train-images-idx3-ubyte");
        assert!(message.contains("trailing bytes"), "{message}");
        // The same checks through gzip, where the length is only known by reading.
        let label_path = "train-labels-idx1-ubyte.gz";
        std::fs::write(
            dir.path().join(label_path),
            gzip(&images_file(LABELS_MAGIC, &[4], &[0; 3])),
        )
        .unwrap();
        std::fs::write(&path, images_file(IMAGES_MAGIC, &[4, 2, 3], &[0; 24])).unwrap();
        let message = error_naming(dir.path(), label_path);
        assert!(message.contains("truncated data"), "{message}");
        std::fs::write(
            dir.path().join(label_path),
            gzip(&images_file(LABELS_MAGIC, &[4], &[0; 5])),
        )
        .unwrap();
        let message = error_naming(dir.path(), label_path);
        assert!(message.contains("trailing bytes"), "{message}");
    }

    #[test]
    fn huge_dimensions_do_not_overflow_or_allocate() {
        let dir = tempfile::tempdir().unwrap();
        write_valid_set(dir.path(), 4);
        let path = dir.path().join("train-images-idx3-ubyte");
        std::fs::write(&path, images_file(IMAGES_MAGIC, &[u32::MAX; 3], &[0; 24])).unwrap();
        let message = error_naming(dir.path(), "train-images-idx3-ubyte");
        assert!(
            message.contains("more bytes than can be addressed")
                || message.contains("truncated data"),
            "{message}"
        );
        // Through gzip, a count that fits in memory arithmetic but not in the stream.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(
            dir.path().join("train-images-idx3-ubyte.gz"),
            gzip(&images_file(
                IMAGES_MAGIC,
                &[1 << 30, 1 << 15, 1 << 15],
                &[0; 24],
            )),
        )
        .unwrap();
        let message = error_naming(dir.path(), "train-images-idx3-ubyte.gz");
        assert!(
            message.contains("more bytes than can be addressed")
                || message.contains("truncated data"),
            "{message}"
        );
    }

    #[test]
    fn count_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        write_valid_set(dir.path(), 4);
        std::fs::write(
            dir.path().join("t10k-labels-idx1-ubyte.gz"),
            gzip(&images_file(LABELS_MAGIC, &[3], &[0, 1, 2])),
        )
        .unwrap();
        let message = error_naming(dir.path(), "t10k-images-idx3-ubyte");
        assert!(message.contains("holds 4 images"), "{message}");
        assert!(
            message.contains("t10k-labels-idx1-ubyte.gz holds 3 labels"),
            "{message}"
        );
    }

    #[test]
    fn corrupt_gzip() {
        let dir = tempfile::tempdir().unwrap();
        write_valid_set(dir.path(), 4);
        let path = dir.path().join("train-labels-idx1-ubyte.gz");
        // Not gzip at all.
        std::fs::write(&path, b"this is not gzip data").unwrap();
        let message = error_naming(dir.path(), "train-labels-idx1-ubyte.gz");
        assert!(message.contains("gzip"), "{message}");
        // A real gzip stream with its deflate body damaged.
        let mut bytes = gzip(&images_file(LABELS_MAGIC, &[4], &[0, 1, 2, 3]));
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        bytes[middle + 1] ^= 0x55;
        std::fs::write(&path, &bytes).unwrap();
        let message = error_naming(dir.path(), "train-labels-idx1-ubyte.gz");
        assert!(
            message.contains("gzip") || message.contains("truncated"),
            "{message}"
        );
        // A gzip stream cut short.
        let bytes = gzip(&images_file(LABELS_MAGIC, &[4], &[0, 1, 2, 3]));
        std::fs::write(&path, &bytes[..bytes.len() - 12]).unwrap();
        let message = error_naming(dir.path(), "train-labels-idx1-ubyte.gz");
        assert!(
            message.contains("gzip") || message.contains("truncated"),
            "{message}"
        );
    }

    #[test]
    fn zero_images() {
        let dir = tempfile::tempdir().unwrap();
        write_valid_set(dir.path(), 4);
        std::fs::write(
            dir.path().join("train-images-idx3-ubyte"),
            images_file(IMAGES_MAGIC, &[0, 2, 3], &[]),
        )
        .unwrap();
        let message = error_naming(dir.path(), "train-images-idx3-ubyte");
        assert!(message.contains("zero samples"), "{message}");
    }

    #[test]
    fn label_out_of_range() {
        let dir = tempfile::tempdir().unwrap();
        write_valid_set(dir.path(), 4);
        std::fs::write(
            dir.path().join("t10k-labels-idx1-ubyte.gz"),
            gzip(&images_file(LABELS_MAGIC, &[4], &[0, 1, 12, 3])),
        )
        .unwrap();
        let mut spec = DatasetSpec::new(DatasetKind::FashionMnist);
        spec.data_dir = Some(dir.path().to_path_buf());
        let message = format!("{:#}", load_dataset(&spec).unwrap_err());
        assert!(message.contains("t10k-labels-idx1-ubyte.gz"), "{message}");
        assert!(
            message.contains("label 12 at index 2 is out of range for 10 classes"),
            "{message}"
        );
    }

    #[test]
    fn missing_file() {
        let dir = tempfile::tempdir().unwrap();
        write_valid_set(dir.path(), 4);
        std::fs::remove_file(dir.path().join("t10k-images-idx3-ubyte")).unwrap();
        let message = format!("{:#}", load_idx(dir.path()).unwrap_err());
        assert!(message.contains("missing file"), "{message}");
        assert!(message.contains("t10k-images-idx3-ubyte.gz"), "{message}");
    }

    #[test]
    fn adversarial_bytes_never_panic() {
        // Random prefixes of a valid header with random tails; only Ok or Err is allowed.
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let dir = tempfile::tempdir().unwrap();
        write_valid_set(dir.path(), 4);
        let path = dir.path().join("train-images-idx3-ubyte");
        for _ in 0..300 {
            let len = rng.gen_range(0..40);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if rng.gen_bool(0.7) && bytes.len() >= 4 {
                bytes[..4].copy_from_slice(&IMAGES_MAGIC.to_be_bytes());
            }
            std::fs::write(&path, &bytes).unwrap();
            let _ = load_idx(dir.path());
        }
    }
}
