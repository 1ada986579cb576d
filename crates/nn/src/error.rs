//! The error type of nn: each variant names the operation or file and the offending values.

use tensor_core::{Shape, TensorError};

/// Errors raised by layers, models, training, datasets and model I/O.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// A tensor kernel failed (shape mismatch, invalid argument, ...).
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// A layer received an input it cannot take.
    #[error("{layer}: input shape {input} does not fit ({reason})")]
    BadInput {
        /// The layer (kind and index or name).
        layer: String,
        /// The input shape received.
        input: Shape,
        /// What was expected.
        reason: String,
    },
    /// `backward` called without a preceding training-mode `forward`.
    #[error(
        "{layer}: backward called without a cached forward pass (forward in Mode::Train first)"
    )]
    NoForwardCache {
        /// The layer.
        layer: String,
    },
    /// An I/O failure, with the path involved.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file whose content is malformed: names the file, where, and what.
    #[error("{path}: corrupt {what}: {reason}")]
    Corrupt {
        /// The file (or a description of the source).
        path: String,
        /// What was being read (IDX header, model record, ONNX initializer, ...).
        what: String,
        /// What is wrong, with the values.
        reason: String,
    },
    /// A model construct slimnet does not support (an ONNX op, an attribute, an architecture).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// An invalid configuration value (learning rate, batch size, name of a zoo model, ...).
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl NnError {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        NnError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// A corrupt-content error on `path`.
    pub fn corrupt(
        path: impl AsRef<std::path::Path>,
        what: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        NnError::Corrupt {
            path: path.as_ref().display().to_string(),
            what: what.into(),
            reason: reason.into(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = NnError> = std::result::Result<T, E>;
