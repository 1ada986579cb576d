//! The error type of interop: every variant names the file (and the entry or record) and the
//! offending values.

use std::path::Path;

/// Errors raised by the foreign data readers and the `--data` loader.
#[derive(Debug, thiserror::Error)]
pub enum InteropError {
    /// An I/O failure on a file or directory. (The OS error is part of the message.)
    #[error("{path}: {error}")]
    Io {
        /// The file or directory.
        path: String,
        /// The underlying error.
        error: std::io::Error,
    },
    /// Malformed content: names the file, the entry (archive member, array, record, image)
    /// and what is wrong.
    #[error("{file}: {entry}: {reason}")]
    Corrupt {
        /// The file.
        file: String,
        /// Where in the file (an archive member, an array, a record index).
        entry: String,
        /// What is wrong, with the values.
        reason: String,
    },
    /// Data whose shape the model (or the format) cannot take: names the file and both shapes.
    #[error("{file}: {reason}")]
    Shape {
        /// The data file or directory.
        file: String,
        /// The shapes and what would fix it.
        reason: String,
    },
    /// An invalid option or a path that holds no format interop knows.
    #[error("{0}")]
    Config(String),
    /// A tensor could not be built (a shape beyond the element limit).
    #[error(transparent)]
    Tensor(#[from] tensor_core::TensorError),
    /// An error of the layers-and-training engine (IDX reader, dataset checks).
    #[error(transparent)]
    Nn(#[from] nn::NnError),
}

/// Result alias of interop.
pub type Result<T, E = InteropError> = std::result::Result<T, E>;

impl InteropError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, error: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            error,
        }
    }

    /// Malformed content of `file` at `entry`.
    pub fn corrupt(file: &Path, entry: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Corrupt {
            file: file.display().to_string(),
            entry: entry.into(),
            reason: reason.into(),
        }
    }
}
