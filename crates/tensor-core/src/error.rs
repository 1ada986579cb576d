//! The error type of tensor-core: each variant names the operation and the offending values.

use crate::shape::Shape;

/// Errors raised by tensor construction and kernels.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TensorError {
    /// A shape whose element count overflows or exceeds [`crate::shape::MAX_ELEMENTS`].
    #[error("shape {dims:?} is too large (element count overflows or exceeds the limit)")]
    ShapeTooLarge {
        /// The requested dimensions.
        dims: Vec<usize>,
    },
    /// Data length disagrees with the shape's element count.
    #[error("{op}: data has {len} elements but shape {shape} needs {expected}")]
    DataLength {
        /// The operation.
        op: &'static str,
        /// Elements supplied.
        len: usize,
        /// Elements the shape needs.
        expected: usize,
        /// The shape.
        shape: Shape,
    },
    /// Two operands whose shapes do not fit together.
    #[error("{op}: shape mismatch between {lhs} and {rhs}")]
    ShapeMismatch {
        /// The operation.
        op: &'static str,
        /// Left operand's shape.
        lhs: Shape,
        /// Right operand's shape.
        rhs: Shape,
    },
    /// An operand of the wrong rank.
    #[error("{op}: expected rank {expected}, got shape {shape}")]
    RankMismatch {
        /// The operation.
        op: &'static str,
        /// The rank needed.
        expected: usize,
        /// The shape supplied.
        shape: Shape,
    },
    /// Two operands that must have the same length do not.
    #[error("{op}: operand lengths differ ({lhs} vs {rhs})")]
    LengthMismatch {
        /// The operation.
        op: &'static str,
        /// Length of the first operand.
        lhs: usize,
        /// Length of the second operand.
        rhs: usize,
    },
    /// An explicit kernel path that this CPU cannot run (see [`crate::dispatch`]).
    #[error("{op}: the {family} path {path} needs {needs}, which this CPU lacks")]
    UnsupportedPath {
        /// The operation.
        op: &'static str,
        /// The kernel family.
        family: &'static str,
        /// The path asked for.
        path: &'static str,
        /// The CPU features it needs.
        needs: &'static str,
    },
    /// A parameter outside its valid range (zero stride, kernel larger than padded input, ...).
    #[error("{op}: invalid argument: {reason}")]
    InvalidArgument {
        /// The operation.
        op: &'static str,
        /// What is wrong, with the values.
        reason: String,
    },
}
