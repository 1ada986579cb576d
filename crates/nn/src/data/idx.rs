//! IDX files (LeCun's MNIST format, used by Fashion-MNIST): a checked reader, a writer, and
//! the Fashion-MNIST loader.
//!
//! An IDX file is a 4-byte magic `00 00 TT DD` (`TT` the element type, `08` = unsigned byte;
//! `DD` the number of dimensions), then `DD` big-endian u32 dimensions, then the elements in
//! row-major order. Fashion-MNIST uses `0x00000803` for images (`[N, 28, 28]`) and
//! `0x00000801` for labels (`[N]`), usually gzipped.
//!
//! Design: every file is untrusted. The reader never allocates from a header field: the
//! payload size is the checked product of the dimensions, capped by a byte limit
//! ([`MAX_IDX_BYTES`] unless the caller sets another) and compared with the bytes actually
//! present (after decompression, itself read through `take(limit + 1)`); only then is the
//! `f32` buffer allocated, of a size the data has already proven. Every defect (bad magic,
//! wrong type code, wrong rank, truncated or trailing data, image/label count mismatch, a
//! label out of range) is an [`NnError::Corrupt`] naming the file and the values.

use std::borrow::Cow;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use tensor_core::Tensor;

use super::Dataset;
use crate::error::{NnError, Result};

/// Default cap on the size of one IDX file, compressed or decompressed (1 GiB; the largest
/// Fashion-MNIST file is 47 MB decompressed).
pub const MAX_IDX_BYTES: usize = 1 << 30;

/// Magic of an unsigned-byte IDX file with 3 dimensions (images `[N, H, W]`).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;

/// Magic of an unsigned-byte IDX file with 1 dimension (labels `[N]`).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// IDX type code of unsigned bytes, the only element type slimnet reads.
const TYPE_U8: u8 = 0x08;

/// The two bytes every gzip stream starts with (RFC 1952, ID1 ID2).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Number of Fashion-MNIST classes.
pub const FASHION_MNIST_CLASSES: usize = 10;

/// Fashion-MNIST class names, by label (Xiao, Rasul and Vollgraf, 2017).
pub const FASHION_MNIST_LABELS: [&str; FASHION_MNIST_CLASSES] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// One of the two Fashion-MNIST splits, with the file-name prefix the distribution uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// 60,000 training images (`train-*`).
    Train,
    /// 10,000 test images (`t10k-*`).
    Test,
}

impl Split {
    /// The file-name prefix: `train` or `t10k`.
    pub fn prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }

    /// Image file names, preferred first: the gzipped name of the Debian package, then the
    /// un-gzipped one.
    pub fn image_names(self) -> [String; 2] {
        let base = format!("{}-images-idx3-ubyte", self.prefix());
        [format!("{base}.gz"), base]
    }

    /// Label file names, preferred first (gzipped, then raw).
    pub fn label_names(self) -> [String; 2] {
        let base = format!("{}-labels-idx1-ubyte", self.prefix());
        [format!("{base}.gz"), base]
    }
}

/// Whether `bytes` start with the gzip magic `1f 8b`.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

/// The decompressed content of `bytes` if they are gzip (one or more members), else `bytes`
/// unchanged. Errors if the input or its decompression exceeds `limit` bytes, or if the gzip
/// stream is corrupt. `name` labels errors (a path or a description).
pub fn decompress_limited<'a>(bytes: &'a [u8], name: &str, limit: usize) -> Result<Cow<'a, [u8]>> {
    if bytes.len() > limit {
        return Err(NnError::corrupt(
            name,
            "IDX file",
            format!("{} bytes exceed the limit of {limit}", bytes.len()),
        ));
    }
    if !is_gzip(bytes) {
        return Ok(Cow::Borrowed(bytes));
    }
    // Memory follows what the IDX header inside the stream declares, not the (unchecked)
    // gzip trailer: the header is decompressed first, its payload size computed (checked
    // product, capped by `limit`), and the rest is read through `take(declared + 1)`, so a
    // gzip bomb that claims 47 MB and expands to gigabytes stops after 47 MB.
    let mut dec = MultiGzDecoder::new(bytes);
    let corrupt_gzip = |e: std::io::Error| NnError::corrupt(name, "gzip stream", e.to_string());
    let mut out = Vec::new();
    (&mut dec)
        .take(4)
        .read_to_end(&mut out)
        .map_err(corrupt_gzip)?;
    let rank = out.get(3).map_or(0, |&r| usize::from(r));
    (&mut dec)
        .take(4 * rank as u64)
        .read_to_end(&mut out)
        .map_err(corrupt_gzip)?;
    let dims: Vec<usize> = out
        .get(4..)
        .unwrap_or_default()
        .chunks_exact(4)
        .map(|d| u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize)
        .collect();
    let declared = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .and_then(|payload| payload.checked_add(out.len()));
    // A header that claims more than the limit is refused before the payload is inflated.
    let declared = match declared {
        Some(n) if n <= limit => n,
        _ if dims.len() == rank && rank > 0 => {
            return Err(NnError::corrupt(
                name,
                "IDX header",
                format!("dimensions {dims:?} claim more than the limit of {limit} bytes"),
            ));
        }
        _ => limit,
    };
    // Grows as data arrives; the first reservation is bounded by what was declared and by a
    // fixed 64 MiB, never by a header field alone.
    out.reserve(declared.saturating_sub(out.len()).min(1 << 26));
    let budget = (declared.saturating_sub(out.len()) as u64).saturating_add(1);
    dec.take(budget)
        .read_to_end(&mut out)
        .map_err(corrupt_gzip)?;
    if out.len() > declared {
        return Err(NnError::corrupt(
            name,
            "gzip stream",
            if declared < limit {
                format!(
                    "trailing data: decompresses to more than the {declared} bytes its IDX \
                     header declares"
                )
            } else {
                format!("decompresses to more than the limit of {limit} bytes")
            },
        ));
    }
    Ok(Cow::Owned(out))
}

/// Parses an uncompressed unsigned-byte IDX buffer whose rank must be `ndim`: returns the
/// dimensions and the payload (borrowed). Checks the magic, the type code, the rank, that
/// the payload size (checked product of the dimensions) is at most `limit`, and that the
/// payload is exactly that long.
pub fn parse_idx_u8<'a>(
    raw: &'a [u8],
    name: &str,
    ndim: usize,
    limit: usize,
) -> Result<(Vec<usize>, &'a [u8])> {
    let corrupt = |reason: String| NnError::corrupt(name, "IDX header", reason);
    let Some(&[z0, z1, type_code, rank]) = raw.first_chunk::<4>() else {
        return Err(corrupt(format!(
            "truncated: {} bytes, the magic alone needs 4",
            raw.len()
        )));
    };
    if z0 != 0 || z1 != 0 {
        return Err(corrupt(format!(
            "bad magic 0x{:08x}: an IDX file starts with two zero bytes (0x0000TTDD)",
            u32::from_be_bytes([z0, z1, type_code, rank])
        )));
    }
    if type_code != TYPE_U8 {
        return Err(corrupt(format!(
            "type code 0x{type_code:02x} ({}), want 0x08 (unsigned byte)",
            type_name(type_code)
        )));
    }
    if rank as usize != ndim {
        return Err(corrupt(format!(
            "{rank} dimensions (magic 0x{:08x}), want {ndim} (magic 0x{:08x})",
            u32::from_be_bytes([0, 0, type_code, rank]),
            0x0800 | ndim
        )));
    }
    let header_len = 4 + 4 * ndim;
    let Some(dim_bytes) = raw.get(4..header_len) else {
        return Err(corrupt(format!(
            "truncated: {} bytes, the header of {ndim} dimensions needs {header_len}",
            raw.len()
        )));
    };
    let dims: Vec<usize> = dim_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= limit)
        .ok_or_else(|| {
            corrupt(format!(
                "dimensions {dims:?} claim more than the limit of {limit} bytes"
            ))
        })?;
    let payload = &raw[header_len..];
    if payload.len() < expected {
        return Err(NnError::corrupt(
            name,
            "IDX data",
            format!(
                "truncated: dimensions {dims:?} need {expected} bytes after the header, found {}",
                payload.len()
            ),
        ));
    }
    if payload.len() > expected {
        return Err(NnError::corrupt(
            name,
            "IDX data",
            format!(
                "{} bytes of trailing data after the {expected} bytes dimensions {dims:?} need",
                payload.len() - expected
            ),
        ));
    }
    Ok((dims, payload))
}

/// Name of an IDX element type code, for error messages.
fn type_name(code: u8) -> &'static str {
    match code {
        0x08 => "unsigned byte",
        0x09 => "signed byte",
        0x0B => "i16",
        0x0C => "i32",
        0x0D => "f32",
        0x0E => "f64",
        _ => "not an IDX type",
    }
}

/// Images `[N, 1, H, W]` with pixels `x / 255` from the bytes of an image IDX file (gzip or
/// raw), with the default limit [`MAX_IDX_BYTES`].
pub fn images_from_bytes(bytes: &[u8], name: &str) -> Result<Tensor> {
    images_from_bytes_limited(bytes, name, MAX_IDX_BYTES)
}

/// [`images_from_bytes`] with an explicit byte limit.
pub fn images_from_bytes_limited(bytes: &[u8], name: &str, limit: usize) -> Result<Tensor> {
    let raw = decompress_limited(bytes, name, limit)?;
    let (dims, payload) = parse_idx_u8(&raw, name, 3, limit)?;
    let (n, h, w) = (dims[0], dims[1], dims[2]);
    if h == 0 || w == 0 {
        return Err(NnError::corrupt(
            name,
            "IDX header",
            format!("images of {h} x {w} pixels (dimensions {dims:?})"),
        ));
    }
    // The payload length is proven equal to n * h * w, so this allocation is backed by data.
    let data: Vec<f32> = payload.iter().map(|&p| f32::from(p) / 255.0).collect();
    Ok(Tensor::new(&[n, 1, h, w], data)?)
}

/// Labels from the bytes of a label IDX file (gzip or raw), each checked to be below
/// `classes`, with the default limit [`MAX_IDX_BYTES`].
pub fn labels_from_bytes(bytes: &[u8], name: &str, classes: usize) -> Result<Vec<u8>> {
    labels_from_bytes_limited(bytes, name, classes, MAX_IDX_BYTES)
}

/// [`labels_from_bytes`] with an explicit byte limit.
pub fn labels_from_bytes_limited(
    bytes: &[u8],
    name: &str,
    classes: usize,
    limit: usize,
) -> Result<Vec<u8>> {
    let raw = decompress_limited(bytes, name, limit)?;
    let (_, payload) = parse_idx_u8(&raw, name, 1, limit)?;
    if let Some((i, &l)) = payload
        .iter()
        .enumerate()
        .find(|&(_, &l)| l as usize >= classes)
    {
        return Err(NnError::corrupt(
            name,
            "IDX labels",
            format!("label {l} at index {i} is not below {classes} classes"),
        ));
    }
    Ok(payload.to_vec())
}

/// A dataset from the bytes of an image file and a label file (each gzip or raw); checks
/// that both hold the same number of samples.
pub fn dataset_from_bytes(
    images: &[u8],
    images_name: &str,
    labels: &[u8],
    labels_name: &str,
    classes: usize,
) -> Result<Dataset> {
    let images_t = images_from_bytes(images, images_name)?;
    let labels_v = labels_from_bytes(labels, labels_name, classes)?;
    pair(images_t, images_name, labels_v, labels_name, classes)
}

/// Joins images and labels read from two files, checking their counts agree.
fn pair(
    images: Tensor,
    images_name: &str,
    labels: Vec<u8>,
    labels_name: &str,
    classes: usize,
) -> Result<Dataset> {
    let n = images.dims()[0];
    if n != labels.len() {
        return Err(NnError::corrupt(
            images_name,
            "IDX image/label pair",
            format!("{n} images but {} labels in {labels_name}", labels.len()),
        ));
    }
    Dataset::new(images, labels, classes)
}

/// Reads a whole file, refusing files over `limit` bytes before reading them.
fn read_file_limited(path: &Path, limit: usize) -> Result<Vec<u8>> {
    let f = File::open(path).map_err(|e| NnError::io(path, e))?;
    let len = f.metadata().map_err(|e| NnError::io(path, e))?.len();
    if len > limit as u64 {
        return Err(NnError::corrupt(
            path,
            "IDX file",
            format!("{len} bytes exceed the limit of {limit}"),
        ));
    }
    // `len` is at most `limit` (checked above); the file may still grow while we read, so
    // the read goes through `take` as well.
    let mut buf = Vec::with_capacity(len as usize);
    f.take(limit as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| NnError::io(path, e))?;
    Ok(buf)
}

/// Reads an image IDX file (gzip or raw) as `[N, 1, H, W]` in [0, 1].
pub fn read_images(path: &Path) -> Result<Tensor> {
    let bytes = read_file_limited(path, MAX_IDX_BYTES)?;
    images_from_bytes(&bytes, &path.display().to_string())
}

/// Reads a label IDX file (gzip or raw), each label checked to be below `classes`.
pub fn read_labels(path: &Path, classes: usize) -> Result<Vec<u8>> {
    let bytes = read_file_limited(path, MAX_IDX_BYTES)?;
    labels_from_bytes(&bytes, &path.display().to_string(), classes)
}

/// The first existing file among `names` in `dir`.
fn first_existing(dir: &Path, names: &[String]) -> Option<PathBuf> {
    names.iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

/// The image and label files of `split` in `dir` (gzipped names preferred, raw accepted);
/// an error naming the missing files if either is absent.
pub fn split_files(dir: &Path, split: Split) -> Result<(PathBuf, PathBuf)> {
    let images = first_existing(dir, &split.image_names());
    let labels = first_existing(dir, &split.label_names());
    match (images, labels) {
        (Some(i), Some(l)) => Ok((i, l)),
        (i, l) => {
            let mut missing = Vec::new();
            if i.is_none() {
                missing.push(split.image_names().join(" or "));
            }
            if l.is_none() {
                missing.push(split.label_names().join(" or "));
            }
            Err(NnError::io(
                dir,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no Fashion-MNIST {}", missing.join(", no ")),
                ),
            ))
        }
    }
}

/// Whether `dir` holds the image and label files of both splits.
pub fn has_fashion_mnist(dir: &Path) -> bool {
    split_files(dir, Split::Train).is_ok() && split_files(dir, Split::Test).is_ok()
}

/// Loads one split of Fashion-MNIST from `dir`.
pub fn load_split(dir: &Path, split: Split) -> Result<Dataset> {
    let (images_path, labels_path) = split_files(dir, split)?;
    let images = read_images(&images_path)?;
    let labels = read_labels(&labels_path, FASHION_MNIST_CLASSES)?;
    pair(
        images,
        &images_path.display().to_string(),
        labels,
        &labels_path.display().to_string(),
        FASHION_MNIST_CLASSES,
    )
}

/// Loads Fashion-MNIST from `dir`: `(train, test)`, images `[N, 1, 28, 28]` with pixels
/// scaled to [0, 1] (`x / 255`, no other normalization), 10 classes. File names as in the
/// Debian package `dataset-fashion-mnist` (`train-images-idx3-ubyte.gz`, ...); the
/// un-gzipped names are accepted too.
pub fn load_fashion_mnist(dir: &Path) -> Result<(Dataset, Dataset)> {
    Ok((
        load_split(dir, Split::Train)?,
        load_split(dir, Split::Test)?,
    ))
}

/// An unsigned-byte IDX file (uncompressed) with the given dimensions and payload.
pub fn encode_idx_u8(dims: &[usize], data: &[u8]) -> Result<Vec<u8>> {
    let rank = u8::try_from(dims.len())
        .map_err(|_| NnError::Config(format!("IDX writer: {} dimensions (max 255)", dims.len())))?;
    let n = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n == data.len())
        .ok_or_else(|| {
            NnError::Config(format!(
                "IDX writer: dimensions {dims:?} do not match {} data bytes",
                data.len()
            ))
        })?;
    let mut out = Vec::with_capacity(4 + 4 * dims.len() + n);
    out.extend_from_slice(&[0, 0, TYPE_U8, rank]);
    for &d in dims {
        let d = u32::try_from(d)
            .map_err(|_| NnError::Config(format!("IDX writer: dimension {d} exceeds u32")))?;
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    Ok(out)
}

/// Gzip of `raw` at level 9 with mtime 0 and no file name, so equal input gives equal bytes.
pub fn gzip(raw: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::with_capacity(raw.len() / 2), Compression::best());
    // Writing to a Vec cannot fail.
    enc.write_all(raw).expect("gzip into a Vec");
    enc.finish().expect("gzip into a Vec")
}

/// An image IDX file (uncompressed) from `[N, 1, H, W]` (or `[N, H, W]`) pixels in [0, 1],
/// stored as `round(x * 255)`. Errors on other shapes and on values outside [0, 1] or NaN.
pub fn encode_images(images: &Tensor) -> Result<Vec<u8>> {
    let dims = match *images.dims() {
        [n, 1, h, w] | [n, h, w] => [n, h, w],
        _ => {
            return Err(NnError::BadInput {
                layer: "IDX writer".into(),
                input: images.shape().clone(),
                reason: "want [N, 1, H, W] or [N, H, W]".into(),
            });
        }
    };
    let mut bytes = Vec::with_capacity(images.numel());
    for (i, &x) in images.data().iter().enumerate() {
        if !(0.0..=1.0).contains(&x) {
            return Err(NnError::Config(format!(
                "IDX writer: pixel {x} at index {i} is outside [0, 1]"
            )));
        }
        bytes.push((x * 255.0).round() as u8);
    }
    encode_idx_u8(&dims, &bytes)
}

/// A label IDX file (uncompressed).
pub fn encode_labels(labels: &[u8]) -> Result<Vec<u8>> {
    encode_idx_u8(&[labels.len()], labels)
}

/// Writes `bytes` to `path`, gzipped (level 9, mtime 0) if `compress`.
fn write_bytes(path: &Path, bytes: &[u8], compress: bool) -> Result<()> {
    let out = if compress {
        Cow::Owned(gzip(bytes))
    } else {
        Cow::Borrowed(bytes)
    };
    crate::io::atomic::write_atomic(path, &out)
}

/// Writes images `[N, 1, H, W]` in [0, 1] as an image IDX file (see [`encode_images`]).
pub fn write_idx_images(path: &Path, images: &Tensor, compress: bool) -> Result<()> {
    write_bytes(path, &encode_images(images)?, compress)
}

/// Writes labels as a label IDX file.
pub fn write_idx_labels(path: &Path, labels: &[u8], compress: bool) -> Result<()> {
    write_bytes(path, &encode_labels(labels)?, compress)
}

/// Writes `dataset` into `dir` under the Fashion-MNIST names of `split`, gzipped.
pub fn write_split(dir: &Path, split: Split, dataset: &Dataset) -> Result<()> {
    let [images, _] = split.image_names();
    let [labels, _] = split.label_names();
    let bytes = dataset
        .labels
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            u8::try_from(l).map_err(|_| {
                NnError::Config(format!(
                    "IDX labels are bytes: label {l} at index {i} does not fit in {labels}"
                ))
            })
        })
        .collect::<Result<Vec<u8>>>()?;
    write_idx_images(&dir.join(images), &dataset.images, true)?;
    write_idx_labels(&dir.join(labels), &bytes, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gzip stream whose IDX header claims more than the limit is refused at the header,
    /// before the payload is inflated (the error is the header's, not the stream's).
    #[test]
    fn an_oversized_header_is_refused_before_inflating() {
        use std::io::Write;
        let mut head = vec![0, 0, 8, 3];
        for d in [u32::MAX, 28, 28] {
            head.extend_from_slice(&d.to_be_bytes());
        }
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(&head).unwrap();
        enc.write_all(&vec![0u8; 1 << 21]).unwrap();
        let gz = enc.finish().unwrap();
        let e = decompress_limited(&gz, "bomb.gz", 1 << 20).unwrap_err();
        match e {
            NnError::Corrupt { what, reason, .. } => {
                assert_eq!(what, "IDX header", "{reason}");
                assert!(reason.contains("4294967295"), "{reason}");
            }
            other => panic!("{other}"),
        }
    }

    fn tiny_images() -> Vec<u8> {
        encode_idx_u8(&[2, 2, 3], &[0, 51, 255, 1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap()
    }

    #[test]
    fn parses_raw_and_gzip_alike() {
        let raw = tiny_images();
        let a = images_from_bytes(&raw, "raw").unwrap();
        let b = images_from_bytes(&gzip(&raw), "gz").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.dims(), &[2, 1, 2, 3]);
        assert_eq!(&a.data()[..3], &[0.0, 0.2, 1.0]);
    }

    #[test]
    fn encode_decode_round_trip() {
        let raw = tiny_images();
        let t = images_from_bytes(&raw, "raw").unwrap();
        assert_eq!(encode_images(&t).unwrap(), raw);
        let labels = encode_labels(&[3, 1, 4]).unwrap();
        assert_eq!(labels_from_bytes(&labels, "l", 10).unwrap(), vec![3, 1, 4]);
    }

    #[test]
    fn gzip_is_deterministic() {
        let raw = tiny_images();
        assert_eq!(gzip(&raw), gzip(&raw));
        // mtime (bytes 4..8) is zero.
        assert_eq!(&gzip(&raw)[4..8], &[0, 0, 0, 0]);
    }

    #[test]
    fn header_over_limit_is_rejected_before_reading() {
        let mut raw = vec![0, 0, 8, 3];
        for d in [0x8000_0000u32, 28, 28] {
            raw.extend_from_slice(&d.to_be_bytes());
        }
        raw.extend_from_slice(&[0; 10]);
        let e = images_from_bytes(&raw, "big").unwrap_err().to_string();
        assert!(e.contains("limit"), "{e}");
    }

    #[test]
    fn gzip_bomb_is_capped() {
        let raw = encode_idx_u8(&[4096], &[0; 4096]).unwrap();
        let e = labels_from_bytes_limited(&gzip(&raw), "bomb", 10, 1024)
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than the limit"), "{e}");
    }

    #[test]
    fn gzip_stream_longer_than_its_header_declares_stops_there() {
        // The header declares 100 images of 28 x 28 (78,400 bytes); the stream holds 8 MiB.
        let mut raw = Vec::new();
        raw.extend_from_slice(&IDX_IMAGES_MAGIC.to_be_bytes());
        for d in [100u32, 28, 28] {
            raw.extend_from_slice(&d.to_be_bytes());
        }
        raw.resize(raw.len() + (8 << 20), 0);
        let e = images_from_bytes(&gzip(&raw), "bomb")
            .unwrap_err()
            .to_string();
        assert!(e.contains("78416 bytes its IDX header declares"), "{e}");
        // Exactly the declared length decodes.
        raw.truncate(16 + 100 * 28 * 28);
        assert_eq!(
            images_from_bytes(&gzip(&raw), "ok").unwrap().dims(),
            &[100, 1, 28, 28]
        );
    }
}
