//! Image folders: one subfolder per class holding PNG or JPEG files (decoded by the `image`
//! crate), the layout of torchvision's `ImageFolder`.
//!
//! Either `DIR/train/<class>/*` and `DIR/test/<class>/*` (the two splits; the test classes
//! must be among the training classes), or `DIR/<class>/*` (one set, split into training and
//! test by a seeded fraction when both are needed). Class names are sorted, so label `i` is
//! the `i`-th name; files are read in name order; hidden entries (`.name`) are skipped.
//!
//! The first image fixes the channels (grayscale gives 1, anything in colour 3; alpha is
//! dropped) and, unless a resize is given, the size every other image must have. Pixels are
//! scaled by `1/255`, as the IDX reader does, so a Fashion-MNIST folder of 8-bit grayscale
//! PNGs gives the same tensors as the IDX files. Decoding is bounded by [`MAX_SIDE`] and
//! [`MAX_DECODE_BYTES`]; a file that is not a PNG or JPEG image is an error naming it.

use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageReader, Limits};
use nn::Dataset;
use tensor_core::Tensor;

use crate::error::{InteropError, Result};
use crate::transform::{Resize, resize_bilinear};

/// Largest image side decoded.
pub const MAX_SIDE: u32 = 16_384;
/// Largest decoding buffer of one image (256 MiB).
pub const MAX_DECODE_BYTES: u64 = 256 << 20;
/// Most classes: as many as a [`nn::data::Label`] numbers.
pub const MAX_CLASSES: usize = nn::data::MAX_CLASSES;

/// How to read a folder.
#[derive(Clone, Copy, Debug, Default)]
pub struct FolderOptions {
    /// Resize every image to this size as it is read (images may then differ in size).
    pub resize: Option<Resize>,
    /// Called as reading a set of class folders advances: once before the first image, at
    /// every tenth of the images and after the last (see [`FolderProgress`]).
    pub progress: Option<fn(&FolderProgress<'_>)>,
}

/// How far the reading of one set of class folders has got (a progress line's content).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FolderProgress<'a> {
    /// The folder of class folders being read.
    pub folder: &'a Path,
    /// Images decoded so far.
    pub done: usize,
    /// Images in the set.
    pub total: usize,
}

/// A labelled set read from class folders, with the class names by label.
#[derive(Debug)]
pub struct Folder {
    /// The images and labels.
    pub data: Dataset,
    /// Class names, by label.
    pub classes: Vec<String>,
}

/// The visible entries of `dir` that are directories (`dirs`) or files, sorted by name.
fn entries(dir: &Path, dirs: bool) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| InteropError::io(dir, e))? {
        let e = e.map_err(|e| InteropError::io(dir, e))?;
        let p = e.path();
        let hidden = e.file_name().to_string_lossy().starts_with('.');
        if !hidden && p.is_dir() == dirs {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

fn name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Whether `dir` has `train/` and `test/` subfolders.
pub fn has_splits(dir: &Path) -> bool {
    dir.join("train").is_dir() && dir.join("test").is_dir()
}

/// Whether `dir` looks like an image folder (it has subfolders).
pub fn is_image_folder(dir: &Path) -> bool {
    entries(dir, true).is_ok_and(|d| !d.is_empty())
}

/// The sorted class names of a folder of class folders.
pub fn class_names(dir: &Path) -> Result<Vec<String>> {
    let names: Vec<String> = entries(dir, true)?.iter().map(|p| name(p)).collect();
    if names.is_empty() {
        return Err(InteropError::Config(format!(
            "{}: no class subfolders (want one folder of images per class)",
            dir.display()
        )));
    }
    if names.len() > MAX_CLASSES {
        return Err(InteropError::Config(format!(
            "{}: {} classes, at most {MAX_CLASSES}",
            dir.display(),
            names.len()
        )));
    }
    Ok(names)
}

/// Decodes one image file, bounded.
pub fn decode(path: &Path) -> Result<DynamicImage> {
    let reader = ImageReader::open(path)
        .map_err(|e| InteropError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| InteropError::io(path, e))?;
    decode_with(reader, path)
}

/// Decodes one image held in memory (named `path` in errors), bounded.
pub fn decode_bytes(bytes: &[u8], path: &Path) -> Result<DynamicImage> {
    let reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| InteropError::io(path, e))?;
    decode_with(reader, path)
}

fn decode_with<R: std::io::BufRead + std::io::Seek>(
    mut reader: ImageReader<R>,
    path: &Path,
) -> Result<DynamicImage> {
    let bad = |reason: String| InteropError::corrupt(path, "image", reason);
    if reader.format().is_none() {
        return Err(bad("not a PNG or JPEG image".into()));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    reader.decode().map_err(|e| bad(e.to_string()))
}

/// Pixels `[C, H, W]` of an image, scaled by `1/255`, with `channels` 1 (luma) or 3 (RGB).
fn pixels(img: &DynamicImage, channels: usize) -> Vec<f32> {
    let scale = |p: &u8| f32::from(*p) / 255.0;
    if channels == 1 {
        return img.to_luma8().as_raw().iter().map(scale).collect();
    }
    let rgb = img.to_rgb8();
    let plane = rgb.as_raw().len() / 3;
    let mut out = vec![0.0; plane * 3];
    for (i, px) in rgb.as_raw().chunks_exact(3).enumerate() {
        for (c, p) in px.iter().enumerate() {
            out[c * plane + i] = scale(p);
        }
    }
    out
}

/// Reads class folders `class_dirs` (label = position in `classes`) under `root`.
fn read_classes(root: &Path, classes: &[String], opts: FolderOptions) -> Result<Dataset> {
    let mut data: Vec<f32> = Vec::new();
    let mut labels: Vec<nn::data::Label> = Vec::new();
    // Channels and size fixed by the first image: (channels, height, width, its file).
    let mut first: Option<(usize, usize, usize, PathBuf)> = None;
    // The files by class, listed before any decoding so that progress knows the total.
    let mut files = Vec::new();
    for class_dir in entries(root, true)? {
        let class = name(&class_dir);
        let label = classes.iter().position(|c| *c == class).ok_or_else(|| {
            InteropError::Config(format!(
                "{}: class {class:?} is not among the training classes {classes:?}",
                class_dir.display()
            ))
        })?;
        files.push((label, entries(&class_dir, false)?));
    }
    let total = files.iter().map(|(_, f)| f.len()).sum();
    let report = |done: usize| {
        if let Some(progress) = opts.progress {
            progress(&FolderProgress {
                folder: root,
                done,
                total,
            });
        }
    };
    report(0);
    for (label, class_files) in files {
        for file in class_files {
            let img = decode(&file)?;
            let (c, h, w) = match &first {
                Some((c, h, w, _)) => (*c, *h, *w),
                None => {
                    let c = if img.color().has_color() { 3 } else { 1 };
                    let (h, w) = match opts.resize {
                        Some(r) => (r.height, r.width),
                        None => (img.height() as usize, img.width() as usize),
                    };
                    first = Some((c, h, w, file.clone()));
                    (c, h, w)
                }
            };
            let (ih, iw) = (img.height() as usize, img.width() as usize);
            let px = pixels(&img, c);
            let px = match opts.resize {
                Some(r) if (ih, iw) != (h, w) => {
                    resize_bilinear(&Tensor::new(&[1, c, ih, iw], px)?, r)?.into_vec()
                }
                _ if (ih, iw) != (h, w) => {
                    let first_file = first.as_ref().map(|f| f.3.display().to_string());
                    return Err(InteropError::Shape {
                        file: file.display().to_string(),
                        reason: format!(
                            "image of {ih}x{iw} pixels, but {} is {h}x{w} (give --resize HxW \
                             to resize them all)",
                            first_file.unwrap_or_default()
                        ),
                    });
                }
                _ => px,
            };
            data.extend_from_slice(&px);
            labels.push(label as nn::data::Label);
            let done = labels.len();
            if done * 10 / total != (done - 1) * 10 / total {
                report(done);
            }
        }
    }
    let Some((c, h, w, _)) = first else {
        return Err(InteropError::Config(format!(
            "{}: no images in its class folders",
            root.display()
        )));
    };
    let images = Tensor::new(&[labels.len(), c, h, w], data)?;
    Ok(Dataset::new(images, labels, classes.len())?)
}

/// A folder of class folders, read whole.
pub fn read_set(dir: &Path, opts: FolderOptions) -> Result<Folder> {
    let classes = class_names(dir)?;
    let data = read_classes(dir, &classes, opts)?;
    Ok(Folder { data, classes })
}

/// `(train, test, class names)` of a folder with `train/` and `test/` splits.
pub fn read_splits(dir: &Path, opts: FolderOptions) -> Result<(Dataset, Dataset, Vec<String>)> {
    let classes = class_names(&dir.join("train"))?;
    let train = read_classes(&dir.join("train"), &classes, opts)?;
    let test = read_classes(&dir.join("test"), &classes, opts)?;
    if train.sample_shape() != test.sample_shape() {
        return Err(InteropError::Shape {
            file: dir.display().to_string(),
            reason: format!(
                "training images are {:?}, test images {:?}",
                train.sample_shape(),
                test.sample_shape()
            ),
        });
    }
    Ok((train, test, classes))
}

/// The test split of a folder with `train/` and `test/` (labels by the training classes).
pub fn read_test_split(dir: &Path, opts: FolderOptions) -> Result<Folder> {
    let classes = class_names(&dir.join("train"))?;
    let data = read_classes(&dir.join("test"), &classes, opts)?;
    Ok(Folder { data, classes })
}
