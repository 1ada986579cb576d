//! The error type of share: each variant names the operation and the offending values.

use nn::NnError;

/// Errors raised by clustering and sharing.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    /// A model or layer operation failed.
    #[error(transparent)]
    Nn(#[from] NnError),
    /// Clustering of no values.
    #[error("{op}: no values to cluster")]
    Empty {
        /// The operation.
        op: &'static str,
    },
    /// A cluster count of zero.
    #[error("{op}: k = {k}, expected at least 1 cluster")]
    InvalidK {
        /// The operation.
        op: &'static str,
        /// The count given.
        k: usize,
    },
    /// A code width outside `1..=16` bits.
    #[error("{op}: bits = {bits}, expected 1..=16")]
    InvalidBits {
        /// The operation.
        op: &'static str,
        /// The width given.
        bits: u32,
    },
    /// A value that is NaN or infinite.
    #[error("{op}: value {index} is {value}, not finite")]
    NonFinite {
        /// The operation.
        op: &'static str,
        /// Its position.
        index: usize,
        /// The value.
        value: f32,
    },
    /// A code with no centroid.
    #[error("{op}: code {code} at position {index} is past the codebook of {len} centroids")]
    CodeOutOfRange {
        /// The operation.
        op: &'static str,
        /// Position of the code.
        index: usize,
        /// The code.
        code: u16,
        /// Codebook length.
        len: usize,
    },
    /// A model layer that cannot be shared.
    #[error("{op}: layer {index}: {reason}")]
    BadLayer {
        /// The operation.
        op: &'static str,
        /// Path of the layer in the model (`3`, `5/1/2`).
        index: String,
        /// What is wrong.
        reason: String,
    },
}

/// Result alias of this crate.
pub type Result<T, E = ShareError> = std::result::Result<T, E>;

impl From<ShareError> for NnError {
    /// Sharing hooks run inside the Trainer, which speaks [`NnError`]: share's own errors
    /// travel whole as [`NnError::External`]; an `Nn` error passes through unchanged.
    fn from(e: ShareError) -> Self {
        match e {
            ShareError::Nn(inner) => inner,
            other => NnError::external(other),
        }
    }
}
