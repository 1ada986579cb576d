//! CIFAR-10's binary distribution (Krizhevsky, 2009): `data_batch_1.bin` .. `data_batch_5.bin`
//! (training) and `test_batch.bin`, each a sequence of 3073-byte records: one label byte
//! (0-9), then 1024 red, 1024 green and 1024 blue bytes of a 32x32 image in row-major order.
//! An optional `batches.meta.txt` names the classes, one a line.
//!
//! Every file is checked before it is read: its length must be a positive multiple of
//! [`RECORD_BYTES`] and at most [`MAX_BATCH_BYTES`]; each label must be below 10. Pixels are
//! scaled by `1/255` as the IDX reader does.

use std::path::{Path, PathBuf};

use nn::Dataset;
use tensor_core::Tensor;

use crate::error::{InteropError, Result};

/// Image side.
pub const SIDE: usize = 32;
/// Bytes of one record: the label and 3 x 32 x 32 pixels.
pub const RECORD_BYTES: usize = 1 + 3 * SIDE * SIDE;
/// Number of classes.
pub const CLASSES: usize = 10;
/// Largest batch file read (the real ones are 30,730,000 bytes).
pub const MAX_BATCH_BYTES: u64 = 1 << 32;
/// Class names when `batches.meta.txt` is absent.
pub const CIFAR10_LABELS: [&str; CLASSES] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Name of the test batch.
pub const TEST_BATCH: &str = "test_batch.bin";

/// The training batch files present in `dir`, in numeric order (`data_batch_1.bin`, ...).
pub fn train_batches(dir: &Path) -> Vec<PathBuf> {
    (1..=5)
        .map(|i| dir.join(format!("data_batch_{i}.bin")))
        .filter(|p| p.is_file())
        .collect()
}

/// Whether `dir` looks like CIFAR-10's binary distribution.
pub fn is_cifar_dir(dir: &Path) -> bool {
    dir.join(TEST_BATCH).is_file() || !train_batches(dir).is_empty()
}

/// Appends the records of one batch file to `pixels` (scaled) and `labels`.
fn read_batch(path: &Path, pixels: &mut Vec<f32>, labels: &mut Vec<u8>) -> Result<()> {
    let len = std::fs::metadata(path)
        .map_err(|e| InteropError::io(path, e))?
        .len();
    if len == 0 || !len.is_multiple_of(RECORD_BYTES as u64) || len > MAX_BATCH_BYTES {
        return Err(InteropError::corrupt(
            path,
            "batch",
            format!(
                "{len} bytes is not a positive multiple of the {RECORD_BYTES}-byte record (at \
                 most {MAX_BATCH_BYTES} bytes)"
            ),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| InteropError::io(path, e))?;
    parse_batch(&bytes, path, pixels, labels)
}

/// Appends the records of batch bytes `bytes` (named `path` in errors) to `pixels` (scaled)
/// and `labels`.
pub fn parse_batch(
    bytes: &[u8],
    path: &Path,
    pixels: &mut Vec<f32>,
    labels: &mut Vec<u8>,
) -> Result<()> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD_BYTES) {
        return Err(InteropError::corrupt(
            path,
            "batch",
            format!(
                "{} bytes is not a positive multiple of the {RECORD_BYTES}-byte record",
                bytes.len()
            ),
        ));
    }
    pixels.reserve(bytes.len() / RECORD_BYTES * (RECORD_BYTES - 1));
    for (i, record) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        if record[0] as usize >= CLASSES {
            return Err(InteropError::corrupt(
                path,
                format!("record {i}"),
                format!("label {} is not below {CLASSES}", record[0]),
            ));
        }
        labels.push(record[0]);
        pixels.extend(record[1..].iter().map(|&p| f32::from(p) / 255.0));
    }
    Ok(())
}

/// The dataset of the given batch files, in order.
pub fn read_batches(files: &[PathBuf]) -> Result<Dataset> {
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for f in files {
        read_batch(f, &mut pixels, &mut labels)?;
    }
    let images = Tensor::new(&[labels.len(), 3, SIDE, SIDE], pixels)?;
    Ok(Dataset::new(images, labels, CLASSES)?)
}

fn require_test(dir: &Path) -> Result<PathBuf> {
    let test = dir.join(TEST_BATCH);
    if !test.is_file() {
        return Err(InteropError::Config(format!(
            "{}: CIFAR-10 directory without {TEST_BATCH}",
            dir.display()
        )));
    }
    Ok(test)
}

/// `(train, test)` of a CIFAR-10 directory: every `data_batch_*.bin` present, and
/// `test_batch.bin`.
pub fn read_dir(dir: &Path) -> Result<(Dataset, Dataset)> {
    let test = require_test(dir)?;
    let train = train_batches(dir);
    if train.is_empty() {
        return Err(InteropError::Config(format!(
            "{}: CIFAR-10 directory without data_batch_1.bin .. data_batch_5.bin",
            dir.display()
        )));
    }
    Ok((read_batches(&train)?, read_batches(&[test])?))
}

/// The test split of a CIFAR-10 directory.
pub fn read_dir_test(dir: &Path) -> Result<Dataset> {
    read_batches(&[require_test(dir)?])
}

/// The class names: the lines of `batches.meta.txt` if it holds ten, else CIFAR-10's.
pub fn class_names(dir: &Path) -> Vec<String> {
    let meta = dir.join("batches.meta.txt");
    let small = std::fs::metadata(&meta).is_ok_and(|m| m.len() <= 4096);
    let from_file = small
        .then(|| std::fs::read_to_string(&meta).ok())
        .flatten()
        .map(|t| {
            t.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .filter(|names| names.len() == CLASSES);
    from_file.unwrap_or_else(|| CIFAR10_LABELS.iter().map(|s| s.to_string()).collect())
}
