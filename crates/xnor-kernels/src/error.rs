//! The error type of xnor-kernels: each variant names the operation and the offending values.

use nn::NnError;
use tensor_core::TensorError;

/// Errors raised by bit packing, the binary kernels and the binary layers.
#[derive(Debug, thiserror::Error)]
pub enum XnorError {
    /// A tensor operation (shape, dispatch, im2col) failed, or an explicit kernel path this
    /// CPU cannot run was requested.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// A model or layer operation failed.
    #[error(transparent)]
    Nn(#[from] NnError),
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
    /// Two packed operands of different true depth `K`.
    #[error("{op}: depth mismatch: left operand K = {lhs}, right operand K = {rhs}")]
    DepthMismatch {
        /// The operation.
        op: &'static str,
        /// Depth of the left operand.
        lhs: usize,
        /// Depth of the right operand.
        rhs: usize,
    },
    /// Packed words whose padding bits (past the true depth) are not zero: the dot product
    /// `K - 2 popcount(a ^ b)` would count them.
    #[error("{op}: row {row}: padding bits past depth {depth} are {bits:#x}, expected 0")]
    NonzeroPadding {
        /// The operation.
        op: &'static str,
        /// The row.
        row: usize,
        /// The true depth.
        depth: usize,
        /// The padding bits of the row's last word.
        bits: u64,
    },
    /// A size whose product overflows or exceeds a stated bound.
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
    /// An argument outside what the operation accepts.
    #[error("{op}: {reason}")]
    InvalidArgument {
        /// The operation.
        op: &'static str,
        /// What is wrong, with the values.
        reason: String,
    },
}

/// Result alias of this crate.
pub type Result<T, E = XnorError> = std::result::Result<T, E>;

impl From<XnorError> for NnError {
    /// Layers and hooks speak [`NnError`]: this crate's errors travel whole as
    /// [`NnError::External`]; an `Nn` error passes through unchanged.
    fn from(e: XnorError) -> Self {
        match e {
            XnorError::Nn(inner) => inner,
            other => NnError::external(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_operation_and_values() {
        let e = XnorError::DepthMismatch {
            op: "binary_gemm",
            lhs: 63,
            rhs: 64,
        };
        assert_eq!(
            e.to_string(),
            "binary_gemm: depth mismatch: left operand K = 63, right operand K = 64"
        );
        let e = XnorError::NonzeroPadding {
            op: "PackedRows::from_words",
            row: 2,
            depth: 65,
            bits: 0x4,
        };
        assert!(e.to_string().contains("row 2") && e.to_string().contains("0x4"));
        let nn: NnError = XnorError::LengthMismatch {
            op: "pack_rows",
            what: "values",
            got: 3,
            expected: 4,
        }
        .into();
        assert!(nn.to_string().contains("pack_rows"), "{nn}");
    }
}
