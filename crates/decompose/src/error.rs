//! The error type of decompose: each variant names the operation and the offending values.

use nn::NnError;
use tensor_core::TensorError;

/// Errors raised by factoring weights, choosing ranks and rewriting models.
#[derive(Debug, thiserror::Error)]
pub enum DecomposeError {
    /// A model or layer operation failed.
    #[error(transparent)]
    Nn(#[from] NnError),
    /// A dense kernel (GEMM, convolution) failed.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// faer's SVD did not converge.
    #[error("{op}: the SVD of a {rows}x{cols} matrix did not converge")]
    SvdFailed {
        /// The operation.
        op: &'static str,
        /// Rows of the matrix.
        rows: usize,
        /// Columns of the matrix.
        cols: usize,
    },
    /// A matrix with a non-finite entry.
    #[error("{op}: entry {index} is {value}, not finite")]
    NonFinite {
        /// The operation.
        op: &'static str,
        /// Its position (row-major).
        index: usize,
        /// The value.
        value: f32,
    },
    /// A rank outside `1..=max`.
    #[error("{op}: rank {rank} is outside 1..={max}")]
    InvalidRank {
        /// The operation.
        op: &'static str,
        /// The rank asked for.
        rank: usize,
        /// The largest rank of the matrix.
        max: usize,
    },
    /// A fraction (kept energy, MAC target) outside its range.
    #[error("{op}: {what} = {value} is outside {range}")]
    InvalidFraction {
        /// The operation.
        op: &'static str,
        /// Which fraction.
        what: &'static str,
        /// The value given.
        value: f64,
        /// The allowed range, as text.
        range: &'static str,
    },
    /// A layer the operation cannot factor (grouped convolution, unknown kind).
    #[error("{op}: cannot factor the {kind} layer at {path}: {reason}")]
    Unsupported {
        /// The operation.
        op: &'static str,
        /// The layer's path.
        path: String,
        /// The layer's kind.
        kind: String,
        /// Why.
        reason: String,
    },
    /// A whole-model MAC target below what the smallest ranks reach.
    #[error(
        "{op}: MAC target {target} per sample is below {reachable}, what rank 1 everywhere \
         reaches (the model has {total})"
    )]
    TargetUnreachable {
        /// The operation.
        op: &'static str,
        /// MACs per sample asked for.
        target: u64,
        /// The fewest MACs the candidate layers can reach.
        reachable: u64,
        /// MACs of the model before.
        total: u64,
    },
    /// The least-squares refit's normal equations are not positive definite.
    #[error("{op}: the {size}x{size} normal equations are singular")]
    Singular {
        /// The operation.
        op: &'static str,
        /// Their size.
        size: usize,
    },
    /// Activations of the wrong shape for a refit.
    #[error("{op}: {what}")]
    BadActivations {
        /// The operation.
        op: &'static str,
        /// What is wrong.
        what: String,
    },
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, DecomposeError>;

impl From<DecomposeError> for NnError {
    /// Keeps the error whole for the Trainer's caller ([`NnError::External`]).
    fn from(e: DecomposeError) -> Self {
        match e {
            DecomposeError::Nn(inner) => inner,
            other => NnError::external(other),
        }
    }
}
