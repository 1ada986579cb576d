//! The error type of structured and semi-structured pruning: each variant names the operation,
//! the layer path and the offending values.
//!
//! Design: a second enum beside [`crate::PruneError`] only because `error.rs` was being edited
//! elsewhere when filter pruning landed; it converts into `PruneError` (through
//! [`nn::NnError::External`], recovered by `downcast_external`) so `?` works in either
//! direction, and is meant to fold into `PruneError` as its own variants.

use nn::{LayerPath, NnError};
use tensor_core::TensorError;

use crate::error::PruneError;

/// Errors of filter/channel pruning and of N:M masks.
#[derive(Debug, thiserror::Error)]
pub enum StructuredError {
    /// A mask, norm or schedule operation failed.
    #[error(transparent)]
    Prune(#[from] PruneError),
    /// A model or layer operation failed.
    #[error(transparent)]
    Nn(#[from] NnError),
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// No layer at a path.
    #[error("{op}: no layer at path {path}")]
    NoLayer {
        /// The operation.
        op: &'static str,
        /// The path given.
        path: LayerPath,
    },
    /// A layer whose output filters cannot be removed (only `conv2d` with one group and
    /// `linear` can).
    #[error("{op}: layer {path} ({kind}) has no filters to remove: {reason}")]
    NotPrunable {
        /// The operation.
        op: &'static str,
        /// The layer.
        path: LayerPath,
        /// Its kind.
        kind: String,
        /// Why.
        reason: String,
    },
    /// The removed channels reach a layer they cannot pass through or be absorbed by.
    #[error(
        "{op}: the channels removed from layer {source_path} reach layer {path} ({kind}), which {reason}"
    )]
    UnsupportedLayer {
        /// The operation.
        op: &'static str,
        /// The layer whose filters are removed.
        source_path: LayerPath,
        /// The layer the channels reach.
        path: LayerPath,
        /// Its kind.
        kind: String,
        /// Why they cannot pass.
        reason: String,
    },
    /// The removed channels reach an elementwise merge (residual sum or product) from some
    /// branches but not in the same way from all: the other operand keeps those channels.
    #[error(
        "{op}: the channels removed from layer {source_path} reach the {merge} merge of parallel \
         {parallel} from branch(es) {branches:?} only; a residual {merge} needs the same channels \
         removed from every branch, which filter pruning does not do (prune a layer whose \
         channels are consumed inside its branch instead)"
    )]
    ResidualMerge {
        /// The operation.
        op: &'static str,
        /// The layer whose filters are removed.
        source_path: LayerPath,
        /// The parallel layer.
        parallel: LayerPath,
        /// `add` or `mul`.
        merge: &'static str,
        /// The branches whose output lost channels.
        branches: Vec<usize>,
    },
    /// The removed channels reach the model's output (the last layer's outputs are the
    /// classes: never pruned).
    #[error(
        "{op}: the outputs of layer {source_path} are the model's outputs and cannot be removed"
    )]
    ReachesOutput {
        /// The operation.
        op: &'static str,
        /// The layer whose filters are removed.
        source_path: LayerPath,
    },
    /// A fraction of filters to remove outside `[0, 1)`, or a keep list that is empty,
    /// unsorted, repeated or out of range.
    #[error("{op}: layer {path}: {what}")]
    InvalidKeep {
        /// The operation.
        op: &'static str,
        /// The layer.
        path: LayerPath,
        /// What is wrong, with the values.
        what: String,
    },
    /// A multiply-accumulate reduction ratio that is below 1 or not finite.
    #[error("{op}: MAC ratio {ratio} must be finite and >= 1")]
    InvalidMacRatio {
        /// The operation.
        op: &'static str,
        /// The ratio given.
        ratio: f64,
    },
    /// A MAC target that keeping one filter per prunable layer still misses.
    #[error(
        "{op}: {ratio}x fewer MACs is out of reach: removing all but one filter of every \
         prunable layer gives {best:.2}x"
    )]
    MacTargetUnreachable {
        /// The operation.
        op: &'static str,
        /// The ratio asked for.
        ratio: f64,
        /// The best ratio reachable.
        best: f64,
    },
    /// An N:M pattern with `N = 0`, `M = 0` or `N > M`, or text that is not `N:M`.
    #[error("{op}: N:M pattern {pattern:?} is invalid (expected 1 <= N <= M, such as 2:4)")]
    InvalidNm {
        /// The operation.
        op: &'static str,
        /// The pattern as given.
        pattern: String,
    },
}

/// Result alias of structured pruning.
pub type StructuredResult<T> = std::result::Result<T, StructuredError>;

impl From<StructuredError> for PruneError {
    /// A structured error travels whole inside [`PruneError::Nn`] as
    /// [`NnError::External`]; a wrapped `PruneError` comes back unchanged.
    fn from(e: StructuredError) -> Self {
        match e {
            StructuredError::Prune(inner) => inner,
            StructuredError::Nn(inner) => PruneError::Nn(inner),
            other => PruneError::Nn(NnError::external(other)),
        }
    }
}

impl From<StructuredError> for NnError {
    /// Through [`PruneError`]: an `Nn` error passes unchanged, the rest travel whole as
    /// [`NnError::External`].
    fn from(e: StructuredError) -> Self {
        PruneError::from(e).into()
    }
}
