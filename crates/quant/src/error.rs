//! The error type of quant: each variant names the operation and the offending values.

use nn::NnError;
use tensor_core::TensorError;

/// Errors raised by quantization parameters, kernels and quantized layers.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    /// A bit width outside `2..=8`.
    #[error("{op}: {bits} bits, expected 2..=8")]
    InvalidBits {
        /// The operation.
        op: &'static str,
        /// The width given.
        bits: u32,
    },
    /// A scale that is not finite and > 0.
    #[error("{op}: scale {scale} (channel {channel}) must be finite and > 0")]
    InvalidScale {
        /// The operation.
        op: &'static str,
        /// The channel (0 for per-tensor parameters).
        channel: usize,
        /// The scale given.
        scale: f32,
    },
    /// A zero point outside the type's range `[qmin, qmax]`.
    #[error("{op}: zero point {zero_point} (channel {channel}) outside [{qmin}, {qmax}]")]
    InvalidZeroPoint {
        /// The operation.
        op: &'static str,
        /// The channel (0 for per-tensor parameters).
        channel: usize,
        /// The zero point given.
        zero_point: i32,
        /// Smallest code of the type.
        qmin: i32,
        /// Largest code of the type.
        qmax: i32,
    },
    /// A range whose bounds are not finite or not ordered.
    #[error("{op}: range [{min}, {max}] (channel {channel}) must be finite with min <= max")]
    InvalidRange {
        /// The operation.
        op: &'static str,
        /// The channel.
        channel: usize,
        /// Lower bound.
        min: f32,
        /// Upper bound.
        max: f32,
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
    /// A per-channel axis outside the tensor's dimensions.
    #[error("{op}: axis {axis} out of range for a tensor of dims {dims:?}")]
    InvalidAxis {
        /// The operation.
        op: &'static str,
        /// The axis given.
        axis: usize,
        /// The tensor's dimensions.
        dims: Vec<usize>,
    },
    /// Codes of one type asked for as another storage type (`i8` codes from an unsigned type).
    #[error("{op}: {qtype} codes do not fit in {storage}")]
    StorageType {
        /// The operation.
        op: &'static str,
        /// The quantized type (`"u7"`, `"i4"`, ...).
        qtype: String,
        /// The storage asked for.
        storage: &'static str,
    },
    /// A parameter outside its allowed values (a percentile outside (0, 100], zero samples, ...).
    #[error("{op}: {reason}")]
    InvalidArgument {
        /// The operation.
        op: &'static str,
        /// What is wrong, with the values.
        reason: String,
    },
    /// A model or layer operation failed.
    #[error(transparent)]
    Nn(#[from] NnError),
    /// A tensor kernel failed.
    #[error(transparent)]
    Tensor(#[from] TensorError),
}

impl From<QuantError> for NnError {
    fn from(e: QuantError) -> Self {
        match e {
            QuantError::Nn(inner) => inner,
            other => NnError::external(other),
        }
    }
}

/// Result with [`QuantError`].
pub type Result<T> = std::result::Result<T, QuantError>;
