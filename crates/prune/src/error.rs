//! The error type of prune: each variant names the operation and the offending values.

use nn::NnError;

/// Errors raised by masks, criteria and sparse formats.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// A model or layer operation failed.
    #[error(transparent)]
    Nn(#[from] NnError),
    /// A density outside `[0, 1]` (or not finite).
    #[error("{op}: density {density} is not in [0, 1]")]
    InvalidDensity {
        /// The operation.
        op: &'static str,
        /// The density given.
        density: f64,
    },
    /// A quality parameter that is negative or not finite.
    #[error("{op}: quality parameter {quality_param} must be finite and >= 0")]
    InvalidQuality {
        /// The operation.
        op: &'static str,
        /// The value given.
        quality_param: f64,
    },
    /// A weight that is NaN or infinite (magnitude criteria cannot rank it).
    #[error("{op}: weight {index} is {value}, not finite")]
    NonFinite {
        /// The operation.
        op: &'static str,
        /// Index of the weight (flattened, row-major).
        index: usize,
        /// Its value.
        value: f32,
    },
    /// Two lengths that must agree do not.
    #[error("{op}: {what} has length {got}, expected {expected}")]
    LengthMismatch {
        /// The operation.
        op: &'static str,
        /// What was measured.
        what: String,
        /// The length found.
        got: usize,
        /// The length required.
        expected: usize,
    },
    /// An index width outside `1..=16` bits.
    #[error("{op}: index_bits = {bits}, expected 1..=16")]
    InvalidIndexBits {
        /// The operation.
        op: &'static str,
        /// The width given.
        bits: u32,
    },
    /// A relative-index encoding that does not describe a valid dense vector.
    #[error("{op}: {reason}")]
    Corrupt {
        /// The operation.
        op: &'static str,
        /// What is wrong, with the values.
        reason: String,
    },
}

/// Result alias of this crate.
pub type Result<T, E = PruneError> = std::result::Result<T, E>;

impl From<PruneError> for NnError {
    /// Hooks run inside the Trainer, which speaks [`NnError`]: prune's own errors travel
    /// whole as [`NnError::External`] (recovered by `NnError::downcast_external`); an `Nn`
    /// error passes through unchanged.
    fn from(e: PruneError) -> Self {
        match e {
            PruneError::Nn(inner) => inner,
            other => NnError::external(other),
        }
    }
}
