//! The error type of share: each variant names the operation and the offending values.

use nn::NnError;
use tensor_core::TensorError;

/// Errors raised by clustering, sharing, packing and the lookup kernels.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    /// A model or layer operation failed.
    #[error(transparent)]
    Nn(#[from] NnError),
    /// A dense kernel (GEMM) failed.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// Bit packing or a relative index (tensor-core's sparse storage) failed.
    #[error(transparent)]
    Sparse(#[from] tensor_core::sparse::SparseError),
    /// A kernel tier requested explicitly that this CPU cannot run.
    #[error("{op}: kernel tier {tier} is not supported by this CPU")]
    UnsupportedTier {
        /// The operation.
        op: &'static str,
        /// The tier's name.
        tier: &'static str,
    },
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
    /// A code width outside the range the operation supports.
    #[error("{op}: bits = {bits}, expected {min}..={max}")]
    InvalidBits {
        /// The operation.
        op: &'static str,
        /// The width given.
        bits: u32,
        /// Smallest width supported.
        min: u32,
        /// Largest width supported.
        max: u32,
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
    /// A code with no centroid (or that does not fit its field).
    #[error("{op}: code {code} at position {index} is past the codebook of {len} centroids")]
    CodeOutOfRange {
        /// The operation.
        op: &'static str,
        /// Position of the code.
        index: usize,
        /// The code.
        code: u32,
        /// Codebook length (or `2^bits` when the code does not fit its field).
        len: usize,
    },
    /// Two lengths that must agree do not.
    #[error("{op}: {what} has length {got}, expected {expected}")]
    LengthMismatch {
        /// The operation.
        op: &'static str,
        /// What was measured.
        what: &'static str,
        /// The length found.
        got: usize,
        /// The length required.
        expected: usize,
    },
    /// A size whose product or bit count overflows, or exceeds a stated bound.
    #[error("{op}: {what} = {value} is too large (at most {max})")]
    TooLarge {
        /// The operation.
        op: &'static str,
        /// What was measured.
        what: &'static str,
        /// The value found (saturated at `u128::MAX`).
        value: u128,
        /// The largest value accepted.
        max: u128,
    },
    /// Packed codes whose unused bits in the last byte are not zero.
    #[error("{op}: padding bits of the last byte are {padding:#04x}, expected 0")]
    NonzeroPadding {
        /// The operation.
        op: &'static str,
        /// The padding bits found (shifted down to bit 0).
        padding: u8,
    },
    /// A sparse row-compressed matrix that does not describe a valid matrix.
    #[error("{op}: {field}: {reason}")]
    CorruptSparse {
        /// The operation.
        op: &'static str,
        /// The field at fault (`row_starts`, `col_indices`, `gaps`).
        field: &'static str,
        /// What is wrong, with the values.
        reason: String,
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

/// `Err(LengthMismatch)` unless `got == expected`.
pub(crate) fn check_len(
    op: &'static str,
    what: &'static str,
    got: usize,
    expected: usize,
) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(ShareError::LengthMismatch {
            op,
            what,
            got,
            expected,
        })
    }
}

/// `a * b`, or `Err(TooLarge)` naming `what` when it overflows `usize`.
pub(crate) fn checked_mul(
    op: &'static str,
    what: &'static str,
    a: usize,
    b: usize,
) -> Result<usize> {
    a.checked_mul(b).ok_or(ShareError::TooLarge {
        op,
        what,
        value: a as u128 * b as u128,
        max: usize::MAX as u128,
    })
}

/// `Err(NonFinite)` at the first value that is NaN or infinite.
pub(crate) fn check_finite(op: &'static str, values: &[f32]) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(index) => Err(ShareError::NonFinite {
            op,
            index,
            value: values[index],
        }),
    }
}
