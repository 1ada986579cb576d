//! `.npy` pairs: an images array and a labels array side by side.
//!
//! Either a directory holding `x_train.npy`, `y_train.npy`, `x_test.npy`, `y_test.npy` (both
//! splits), or `x.npy` and `y.npy`, or `images.npy` and `labels.npy` (one set); or the images
//! file itself, its labels found beside it by the same names (`x_test.npy` → `y_test.npy`,
//! `images.npy` → `labels.npy`, `foo_x.npy` → `foo_y.npy`).
//!
//! Each file is read whole after checking its size against [`MAX_NPY_BYTES`]; the `.npy`
//! parser then checks the header's element count against the bytes present.

use std::path::{Path, PathBuf};

use nn::Dataset;

use crate::arrays::{ArrayPair, dataset};
use crate::error::{InteropError, Result};
use crate::npz::NpzData;

/// Largest `.npy` file read (16 GiB).
pub const MAX_NPY_BYTES: u64 = crate::npz::MAX_MEMBER_BYTES;

/// The image/label file-name stems a directory may hold: split pairs first.
const SPLIT: [[&str; 2]; 2] = [["x_train", "y_train"], ["x_test", "y_test"]];
const WHOLE: [[&str; 2]; 2] = [["x", "y"], ["images", "labels"]];

/// Whether `dir` holds `.npy` pairs this module reads.
pub fn is_npy_dir(dir: &Path) -> bool {
    SPLIT
        .iter()
        .chain(&WHOLE)
        .any(|[x, _]| dir.join(format!("{x}.npy")).is_file())
}

/// The labels file beside images file `images`, by the naming rules of the module docs.
pub fn labels_beside(images: &Path) -> Result<PathBuf> {
    let stem = images
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    let labels = match stem {
        "images" => "labels".to_string(),
        "x" => "y".to_string(),
        s if s.starts_with("x_") => format!("y_{}", &s[2..]),
        s if s.ends_with("_x") => format!("{}_y", &s[..s.len() - 2]),
        s if s.ends_with("_images") => format!("{}_labels", &s[..s.len() - 7]),
        _ => {
            return Err(InteropError::Config(format!(
                "{}: cannot tell where its labels are (name the images x.npy, images.npy, \
                 x_*.npy or *_x.npy, with y.npy, labels.npy, y_*.npy or *_y.npy beside)",
                images.display()
            )));
        }
    };
    Ok(images.with_file_name(format!("{labels}.npy")))
}

fn read_capped(path: &Path) -> Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .map_err(|e| InteropError::io(path, e))?
        .len();
    if len > MAX_NPY_BYTES {
        return Err(InteropError::corrupt(
            path,
            "file",
            format!("{len} bytes exceed the {MAX_NPY_BYTES}-byte limit"),
        ));
    }
    std::fs::read(path).map_err(|e| InteropError::io(path, e))
}

/// A dataset from images file `x` and labels file `y`.
pub fn read_pair(x: &Path, y: &Path, classes: Option<usize>) -> Result<Dataset> {
    let images = read_capped(x)?;
    let labels = read_capped(y)?;
    let name = |p: &Path| p.display().to_string();
    dataset(
        &ArrayPair {
            file: x.parent().unwrap_or(Path::new(".")),
            images_name: &name(x),
            images: &images,
            labels_name: &name(y),
            labels: &labels,
        },
        classes,
    )
}

/// Everything a directory of `.npy` pairs holds (both splits, or one set).
pub fn read_dir(dir: &Path) -> Result<NpzData> {
    let file = |stem: &str| dir.join(format!("{stem}.npy"));
    if SPLIT.iter().flatten().all(|s| file(s).is_file()) {
        let train = read_pair(&file("x_train"), &file("y_train"), None)?;
        let test = read_pair(&file("x_test"), &file("y_test"), None)?;
        let classes = train.classes.max(test.classes);
        return Ok(NpzData::Split {
            train: Dataset::new(train.images, train.labels, classes)?,
            test: Dataset::new(test.images, test.labels, classes)?,
        });
    }
    for [x, y] in WHOLE {
        if file(x).is_file() {
            return Ok(NpzData::Whole(read_pair(&file(x), &file(y), None)?));
        }
    }
    Err(InteropError::Config(format!(
        "{}: holds no .npy pair (want x_train/y_train/x_test/y_test.npy, x/y.npy or \
         images/labels.npy)",
        dir.display()
    )))
}

/// The test split of a directory of `.npy` pairs (`x_test`/`y_test`), or its one set.
pub fn read_dir_test(dir: &Path) -> Result<Dataset> {
    let file = |stem: &str| dir.join(format!("{stem}.npy"));
    if file("x_test").is_file() {
        return read_pair(&file("x_test"), &file("y_test"), None);
    }
    match read_dir(dir)? {
        NpzData::Whole(d) => Ok(d),
        NpzData::Split { test, .. } => Ok(test),
    }
}

/// A dataset from an images `.npy` file and the labels file beside it.
pub fn read_file(images: &Path) -> Result<Dataset> {
    read_pair(images, &labels_beside(images)?, None)
}
