//! NumPy `.npz` archives: a zip file of `.npy` members, stored or deflated.
//!
//! Member sets recognised, in order: `x_train`/`y_train`/`x_test`/`y_test` (the layout of
//! Keras' `mnist.npz`; both splits), then `x`/`y`, then `images`/`labels` (one set, no split).
//!
//! Design: the archive is untrusted. A member is read only after its declared size has been
//! checked: a stored member cannot be larger than the archive, a deflated one no larger than
//! [`MAX_DEFLATE_RATIO`] times its compressed size (deflate's own bound) nor than
//! [`MAX_MEMBER_BYTES`]; reading goes through `take(declared + 1)` and the bytes actually
//! produced must equal the declared size (a lying header is an error, not an allocation), and
//! the zip reader checks each member's CRC-32.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Cursor, Read, Seek};
use std::path::Path;

use nn::Dataset;
use zip::{CompressionMethod, ZipArchive};

use crate::arrays::{ArrayPair, dataset};
use crate::error::{InteropError, Result};

/// Largest member read (16 GiB): more than any dataset one machine here holds in memory.
pub const MAX_MEMBER_BYTES: u64 = 1 << 34;

/// Deflate cannot expand data by more than about 1032:1 (RFC 1951 block limits); a member
/// declaring more is refused before it is read.
pub const MAX_DEFLATE_RATIO: u64 = 1032;

/// The member names of a split: images and labels.
const SETS: [[&str; 2]; 2] = [["x", "y"], ["images", "labels"]];

/// What an `.npz` file holds: either both splits, or one unsplit set.
#[derive(Debug)]
pub enum NpzData {
    /// `x_train`/`y_train` and `x_test`/`y_test`.
    Split {
        /// The training split.
        train: Dataset,
        /// The test split.
        test: Dataset,
    },
    /// `x`/`y` or `images`/`labels`.
    Whole(Dataset),
}

/// An open `.npz` archive (a file, or bytes in memory) with the names of its members
/// (without `.npy`).
pub struct Npz<R = File> {
    path: std::path::PathBuf,
    len: u64,
    zip: ZipArchive<R>,
    names: BTreeSet<String>,
}

impl Npz<File> {
    /// Opens `path` and reads its central directory.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| InteropError::io(path, e))?;
        let len = file
            .metadata()
            .map_err(|e| InteropError::io(path, e))?
            .len();
        Self::from_reader(file, len, path)
    }
}

impl Npz<Cursor<Vec<u8>>> {
    /// An archive held in memory; `path` names it in errors.
    pub fn from_bytes(bytes: Vec<u8>, path: &Path) -> Result<Self> {
        let len = bytes.len() as u64;
        Self::from_reader(Cursor::new(bytes), len, path)
    }
}

impl<R: Read + Seek> Npz<R> {
    /// An archive read from `reader` of `len` bytes; `path` names it in errors.
    pub fn from_reader(reader: R, len: u64, path: &Path) -> Result<Self> {
        let zip = ZipArchive::new(reader).map_err(|e| {
            InteropError::corrupt(path, "zip directory", format!("not a readable .npz: {e}"))
        })?;
        let names = zip
            .file_names()
            .map(|n| {
                let n = n.map_err(|e| {
                    InteropError::corrupt(path, "zip directory", format!("member name: {e}"))
                })?;
                Ok(n.strip_suffix(".npy").unwrap_or(&n).to_string())
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            path: path.to_path_buf(),
            len,
            zip,
            names,
        })
    }

    /// Member names, without the `.npy` suffix, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// Whether the archive holds member `name` (without `.npy`).
    pub fn has(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// The bytes of member `name` (without `.npy`), size-checked (see the module docs).
    pub fn member(&mut self, name: &str) -> Result<Vec<u8>> {
        let entry = format!("{name}.npy");
        let path = self.path.clone();
        let bad = |reason: String| InteropError::corrupt(&path, &entry, reason);
        let index = self
            .zip
            .index_for_name(&entry)
            .or_else(|| self.zip.index_for_name(name))
            .ok_or_else(|| bad("no such member".into()))?;
        let mut member = self
            .zip
            .by_index(index)
            .map_err(|e| bad(format!("cannot read: {e}")))?;
        let declared = member.size();
        let compressed = member.compressed_size();
        let cap = match member.compression() {
            CompressionMethod::Stored => self.len,
            CompressionMethod::Deflated => compressed
                .saturating_mul(MAX_DEFLATE_RATIO)
                .saturating_add(1024),
            m => {
                return Err(bad(format!(
                    "compression method {m:?} (want stored or deflate)"
                )));
            }
        }
        .min(MAX_MEMBER_BYTES);
        if declared > cap {
            return Err(bad(format!(
                "declares {declared} bytes from {compressed} compressed (at most {cap} possible)"
            )));
        }
        let mut bytes = Vec::new();
        (&mut member)
            .take(declared + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| bad(format!("cannot decompress: {e}")))?;
        if bytes.len() as u64 != declared {
            return Err(bad(format!(
                "holds {} bytes, its header declares {declared}",
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    /// A dataset from images member `x` and labels member `y`.
    fn pair(&mut self, x: &str, y: &str, classes: Option<usize>) -> Result<Dataset> {
        let images = self.member(x)?;
        let labels = self.member(y)?;
        let (xn, yn) = (format!("{x}.npy"), format!("{y}.npy"));
        dataset(
            &ArrayPair {
                file: &self.path,
                images_name: &xn,
                images: &images,
                labels_name: &yn,
                labels: &labels,
            },
            classes,
        )
    }

    /// The unsplit member pair, if any: `x`/`y` or `images`/`labels`.
    fn whole_names(&self) -> Option<[&'static str; 2]> {
        SETS.into_iter().find(|[x, y]| self.has(x) && self.has(y))
    }

    fn has_split(&self) -> bool {
        ["x_train", "y_train", "x_test", "y_test"]
            .iter()
            .all(|n| self.has(n))
    }

    fn missing(&self) -> InteropError {
        let names: Vec<&str> = self.names().collect();
        InteropError::corrupt(
            &self.path,
            "members",
            format!(
                "holds {names:?}: want x_train, y_train, x_test, y_test, or x and y, or \
                 images and labels"
            ),
        )
    }

    /// Everything the archive holds (both splits, or one set).
    pub fn read_all(&mut self) -> Result<NpzData> {
        if self.has_split() {
            let train = self.pair("x_train", "y_train", None)?;
            let test = self.pair("x_test", "y_test", None)?;
            let classes = train.classes.max(test.classes);
            return Ok(NpzData::Split {
                train: Dataset::new(train.images, train.labels, classes)?,
                test: Dataset::new(test.images, test.labels, classes)?,
            });
        }
        let [x, y] = self.whole_names().ok_or_else(|| self.missing())?;
        Ok(NpzData::Whole(self.pair(x, y, None)?))
    }

    /// The test split only (`x_test`/`y_test`), or the one set; `classes` as the caller
    /// knows it (`None`: one more than the largest label).
    pub fn read_test(&mut self, classes: Option<usize>) -> Result<Dataset> {
        if self.has_split() {
            return self.pair("x_test", "y_test", classes);
        }
        let [x, y] = self.whole_names().ok_or_else(|| self.missing())?;
        self.pair(x, y, classes)
    }
}

/// Reads a `.npz` file: both splits or one set.
pub fn read_npz(path: &Path) -> Result<NpzData> {
    Npz::open(path)?.read_all()
}
