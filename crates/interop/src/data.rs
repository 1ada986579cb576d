//! The one `--data` loader: picks the format from the path, loads the splits, applies the
//! preprocessing.
//!
//! | path | format |
//! |---|---|
//! | none | Fashion-MNIST IDX by nn's lookup order (`SLIMNET_DATA`, Debian package, fixtures) |
//! | missing | nn's lookup, which names the path that does not exist |
//! | directory of IDX files | Fashion-MNIST / MNIST IDX ([`nn::data::idx`]) |
//! | `*.npz` | NumPy archive ([`crate::npz`]) |
//! | `*.npy`, or a directory of `.npy` files | `.npy` pair ([`crate::npy_pair`]) |
//! | directory with `data_batch_*.bin` / `test_batch.bin` | CIFAR-10 binary ([`crate::cifar`]) |
//! | directory of class folders (or `train/`, `test/`) | image folder ([`crate::image_folder`]) |
//!
//! A format holding one unsplit set gives its test split from [`DataOptions::test_split`]
//! (a seeded fraction); evaluation alone uses the whole set when no fraction is given.

use std::fmt;
use std::path::Path;

use nn::Dataset;
use nn::data::idx::FASHION_MNIST_LABELS;

use crate::error::{InteropError, Result};
use crate::image_folder::{self, FolderOptions};
use crate::npz::{Npz, NpzData};
use crate::transform::Transform;
use crate::{cifar, npy_pair};

/// How to load and preprocess data.
#[derive(Clone, Debug, Default)]
pub struct DataOptions {
    /// Resizing and normalization applied to every sample.
    pub transform: Transform,
    /// For a format holding one set: the fraction held out as the test split.
    pub test_split: Option<f64>,
    /// Seed of that split's permutation.
    pub seed: u64,
    /// Progress while reading an image folder ([`FolderOptions::progress`]).
    pub progress: Option<fn(&image_folder::FolderProgress<'_>)>,
}

/// The formats [`load`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// IDX files (Fashion-MNIST, MNIST).
    Idx,
    /// A `.npz` archive.
    Npz,
    /// `.npy` files.
    NpyPair,
    /// CIFAR-10 binary batches.
    Cifar10,
    /// Class folders of PNG/JPEG images.
    ImageFolder,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Idx => "IDX",
            Format::Npz => ".npz",
            Format::NpyPair => ".npy pair",
            Format::Cifar10 => "CIFAR-10 binary",
            Format::ImageFolder => "image folder",
        })
    }
}

/// Which data a run used: its `Display` is the line tools print (for the default IDX path,
/// exactly nn's [`nn::data::DataSource`] line).
#[derive(Clone, Debug)]
pub struct Source {
    /// The format read.
    pub format: Format,
    /// What was read, from where, and how it was split.
    pub description: String,
    /// Class names by label, when the format names them.
    pub class_names: Option<Vec<String>>,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

impl Source {
    fn new(format: Format, path: &Path, note: &str) -> Self {
        Self {
            format,
            description: format!("{format} data from {}{note}", path.display()),
            class_names: None,
        }
    }

    /// The class names as `&str`s, if known.
    pub fn class_name_refs(&self) -> Option<Vec<&str>> {
        self.class_names
            .as_ref()
            .map(|v| v.iter().map(String::as_str).collect())
    }
}

/// The format of `path`, or an error listing what interop reads.
pub fn detect(path: &Path) -> Result<Format> {
    let meta = std::fs::metadata(path).map_err(|e| InteropError::io(path, e))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if meta.is_file() {
        return match ext.as_deref() {
            Some("npz") => Ok(Format::Npz),
            Some("npy") => Ok(Format::NpyPair),
            _ => Err(InteropError::Config(format!(
                "--data {}: a file that is not .npz or .npy (give a .npz, a .npy of images \
                 with its labels beside, or a directory of IDX, .npy, CIFAR-10 or class \
                 folders)",
                path.display()
            ))),
        };
    }
    if nn::data::idx::has_fashion_mnist(path) {
        Ok(Format::Idx)
    } else if cifar::is_cifar_dir(path) {
        Ok(Format::Cifar10)
    } else if npy_pair::is_npy_dir(path) {
        Ok(Format::NpyPair)
    } else if image_folder::is_image_folder(path) {
        Ok(Format::ImageFolder)
    } else {
        Err(InteropError::Config(format!(
            "--data {}: holds no data interop reads (IDX files, x/y .npy files, CIFAR-10 \
             batches or one folder of images per class)",
            path.display()
        )))
    }
}

// A path that does not exist goes to nn's lookup, whose error says so in its words.

/// A set loaded whole or by splits, before the test split is chosen.
enum Sets {
    Split(Dataset, Dataset),
    Whole(Dataset),
}

impl From<NpzData> for Sets {
    fn from(d: NpzData) -> Self {
        match d {
            NpzData::Split { train, test } => Sets::Split(train, test),
            NpzData::Whole(d) => Sets::Whole(d),
        }
    }
}

/// The test split of a whole set: `(train, test)` by the seeded fraction.
fn split(whole: Dataset, opts: &DataOptions, path: &Path) -> Result<(Dataset, Dataset)> {
    let f = opts.test_split.ok_or_else(|| {
        InteropError::Config(format!(
            "--data {}: holds one set without a train/test split; give --test-split F to hold \
             out a fraction F as the test set",
            path.display()
        ))
    })?;
    Ok(whole.split_validation(f, opts.seed)?)
}

fn split_note(opts: &DataOptions) -> String {
    opts.test_split
        .map(|f| format!(" (test split {f} seeded {})", opts.seed))
        .unwrap_or_default()
}

/// Loads `(source, train, test)` from `path` (`None`: Fashion-MNIST by nn's lookup order),
/// preprocessed by `opts.transform`.
pub fn load(path: Option<&Path>, opts: &DataOptions) -> Result<(Source, Dataset, Dataset)> {
    let (source, train, test) = load_raw(path, opts)?;
    let t = &opts.transform;
    Ok((source, t.apply_dataset(train)?, t.apply_dataset(test)?))
}

/// Loads only the test split (what evaluation needs), preprocessed by `opts.transform`. A
/// set without a split is all test data unless `opts.test_split` is given.
pub fn load_test(path: Option<&Path>, opts: &DataOptions) -> Result<(Source, Dataset)> {
    let (source, test) = load_test_raw(path, opts)?;
    Ok((source, opts.transform.apply_dataset(test)?))
}

fn idx_source(s: &nn::data::DataSource) -> Source {
    Source {
        format: Format::Idx,
        description: s.to_string(),
        class_names: Some(FASHION_MNIST_LABELS.iter().map(|s| s.to_string()).collect()),
    }
}

fn folder_options(opts: &DataOptions) -> FolderOptions {
    FolderOptions {
        resize: opts.transform.resize,
        progress: opts.progress,
    }
}

fn load_raw(path: Option<&Path>, opts: &DataOptions) -> Result<(Source, Dataset, Dataset)> {
    let format = path.filter(|p| p.exists()).map(detect).transpose()?;
    let (Some(path), Some(format)) = (path, format.filter(|&f| f != Format::Idx)) else {
        let (s, train, test) = nn::data::source::load(path)?;
        return Ok((idx_source(&s), train, test));
    };
    let mut source = Source::new(format, path, "");
    let sets = match format {
        Format::Idx => unreachable!("read by nn above"),
        Format::Npz => Sets::from(Npz::open(path)?.read_all()?),
        Format::NpyPair if path.is_dir() => Sets::from(npy_pair::read_dir(path)?),
        Format::NpyPair => Sets::Whole(npy_pair::read_file(path)?),
        Format::Cifar10 => {
            source.class_names = Some(cifar::class_names(path));
            let (train, test) = cifar::read_dir(path)?;
            Sets::Split(train, test)
        }
        Format::ImageFolder if image_folder::has_splits(path) => {
            let (train, test, names) = image_folder::read_splits(path, folder_options(opts))?;
            source.class_names = Some(names);
            Sets::Split(train, test)
        }
        Format::ImageFolder => {
            let f = image_folder::read_set(path, folder_options(opts))?;
            source.class_names = Some(f.classes);
            Sets::Whole(f.data)
        }
    };
    let (train, test) = match sets {
        Sets::Split(train, test) => (train, test),
        Sets::Whole(d) => {
            source.description.push_str(&split_note(opts));
            split(d, opts, path)?
        }
    };
    Ok((source, train, test))
}

fn load_test_raw(path: Option<&Path>, opts: &DataOptions) -> Result<(Source, Dataset)> {
    let format = path.filter(|p| p.exists()).map(detect).transpose()?;
    let (Some(path), Some(format)) = (path, format.filter(|&f| f != Format::Idx)) else {
        let (s, test) = nn::data::source::load_test(path)?;
        return Ok((idx_source(&s), test));
    };
    let mut source = Source::new(format, path, "");
    // The test split, or the one set the format holds (`whole`).
    let (test, whole) = match format {
        Format::Idx => unreachable!("read by nn above"),
        Format::Npz => {
            let mut npz = Npz::open(path)?;
            let split = npz.has("x_test");
            (npz.read_test(None)?, !split)
        }
        Format::NpyPair if path.is_dir() => {
            let split = path.join("x_test.npy").is_file();
            (npy_pair::read_dir_test(path)?, !split)
        }
        Format::NpyPair => (npy_pair::read_file(path)?, true),
        Format::Cifar10 => {
            source.class_names = Some(cifar::class_names(path));
            (cifar::read_dir_test(path)?, false)
        }
        Format::ImageFolder => {
            let split = image_folder::has_splits(path);
            let f = if split {
                image_folder::read_test_split(path, folder_options(opts))?
            } else {
                image_folder::read_set(path, folder_options(opts))?
            };
            source.class_names = Some(f.classes);
            (f.data, !split)
        }
    };
    let test = if whole && opts.test_split.is_some() {
        source.description.push_str(&split_note(opts));
        split(test, opts, path)?.1
    } else {
        test
    };
    Ok((source, test))
}
