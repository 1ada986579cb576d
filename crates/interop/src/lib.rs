//! Foreign data formats for slimnet: NumPy `.npy`/`.npz` arrays, CIFAR-10 binary batches and
//! image folders (PNG/JPEG), input resizing and per-channel normalization, and the one loader
//! behind every command's `--data`, which picks the format from the path.
//!
//! nn stays the layers-and-training engine (with the Fashion-MNIST IDX reader, the default
//! data); this crate sits between nn and pipeline and owns the formats of data that comes
//! from elsewhere. Every reader treats its input as untrusted: sizes are checked against the
//! bytes present before anything is allocated, and a defect is an [`InteropError`] naming the
//! file and the entry, never a panic.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use interop::data::{DataOptions, Format, load_test};
//! use interop::transform::Transform;
//!
//! // A .npy pair: 3 images of 2x2 uint8 pixels and their labels, written beside each other.
//! let dir = std::env::temp_dir().join(format!("interop-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let x = tensor_core::Tensor::new(&[3, 1, 2, 2], (0..12).map(|v| v as f32).collect())?;
//! nn::io::npy::write_npy(dir.join("x.npy"), &x)?;
//! std::fs::write(dir.join("y.npy"), nn::io::npy::npy_bytes_i64(&[3], &[0, 2, 1]))?;
//!
//! let opts = DataOptions {
//!     transform: Transform { resize: Some("4x4".parse()?), normalize: None },
//!     ..DataOptions::default()
//! };
//! let (source, test) = load_test(Some(&dir), &opts)?;
//! assert_eq!(source.format, Format::NpyPair);
//! assert_eq!(test.images.dims(), &[3, 1, 4, 4]);
//! assert_eq!((test.labels.as_slice(), test.classes), (&[0, 2, 1][..], 3));
//! std::fs::remove_dir_all(&dir)?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod arrays;
pub mod cifar;
pub mod data;
pub mod error;
pub mod image_folder;
pub mod npy_pair;
pub mod npz;
pub mod transform;

pub use data::{DataOptions, Format, Source, load, load_test};
pub use error::{InteropError, Result};

/// `.npy` arrays: nn's reader and writer (nn's tests and `slimnet run` use them too).
pub use nn::io::npy;
