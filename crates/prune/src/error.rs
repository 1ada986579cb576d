//! The error type of prune: each variant names the operation and the offending values.

use nn::NnError;
use tensor_core::TensorError;
use tensor_core::dispatch::F32Path;

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
    /// A tensor kernel (dense convolution geometry, shapes) failed.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// A relative-index gap wider than its `index_bits` field allows.
    #[error("{op}: gap {entry} is {gap}, above 2^{index_bits} - 1 = {max}")]
    GapTooWide {
        /// The operation.
        op: &'static str,
        /// Index of the stored entry.
        entry: usize,
        /// The gap found.
        gap: u16,
        /// The field width.
        index_bits: u32,
        /// The widest gap the field holds.
        max: u32,
    },
    /// Relative-index entries that reach past the end of the dense vector.
    #[error("{op}: {entries} entries reach position {last}, past the length {len}")]
    PastEnd {
        /// The operation.
        op: &'static str,
        /// Stored entries, fillers included.
        entries: usize,
        /// Position of the last entry.
        last: u64,
        /// Length of the dense vector.
        len: usize,
    },
    /// A sparse matrix dimension above [`crate::sparse::MAX_SPARSE_DIM`], or whose
    /// `rows * cols` exceeds the tensor element limit.
    #[error("{op}: a {rows} x {cols} matrix is too large (each side at most {max_dim})")]
    MatrixTooLarge {
        /// The operation.
        op: &'static str,
        /// Rows requested.
        rows: usize,
        /// Columns requested.
        cols: usize,
        /// The per-side bound.
        max_dim: usize,
    },
    /// More nonzeros than CSR's `u32` row pointers can count.
    #[error("{op}: {nnz} nonzeros exceed the u32 row-pointer range ({max})")]
    TooManyNonzeros {
        /// The operation.
        op: &'static str,
        /// The nonzero count.
        nnz: usize,
        /// The largest count `u32` row pointers address.
        max: usize,
    },
    /// A CSR row-pointer array that does not start at 0.
    #[error("{op}: row_ptr[0] is {first}, expected 0")]
    RowPtrStart {
        /// The operation.
        op: &'static str,
        /// The first row pointer.
        first: u32,
    },
    /// A CSR row whose end pointer is below its start.
    #[error("{op}: row {row} ends at {end}, before its start {start} (row_ptr must not decrease)")]
    RowPtrDecreasing {
        /// The operation.
        op: &'static str,
        /// The row.
        row: usize,
        /// `row_ptr[row]`.
        start: u32,
        /// `row_ptr[row + 1]`.
        end: u32,
    },
    /// A CSR row-pointer array whose last entry is not the number of stored values.
    #[error("{op}: row_ptr ends at {end}, but {nnz} values are stored")]
    RowPtrEnd {
        /// The operation.
        op: &'static str,
        /// The last row pointer.
        end: u32,
        /// Stored values.
        nnz: usize,
    },
    /// A CSR column index at or past the column count.
    #[error("{op}: row {row}, entry {entry}: column {col} is out of range for {cols} columns")]
    ColumnOutOfRange {
        /// The operation.
        op: &'static str,
        /// The row.
        row: usize,
        /// Index of the entry in `col_idx`.
        entry: usize,
        /// The column found.
        col: u32,
        /// The column count.
        cols: usize,
    },
    /// CSR column indices of one row that are not strictly increasing.
    #[error(
        "{op}: row {row}, entry {entry}: column {col} follows column {prev} (columns must strictly increase within a row)"
    )]
    ColumnsNotIncreasing {
        /// The operation.
        op: &'static str,
        /// The row.
        row: usize,
        /// Index of the entry in `col_idx`.
        entry: usize,
        /// The previous column of the row.
        prev: u32,
        /// The column found.
        col: u32,
    },
    /// A CSR stored value equal to zero (CSR stores nonzeros only, so its size is canonical
    /// and its relative-index form, where a zero value marks a filler, round-trips).
    #[error(
        "{op}: row {row}, entry {entry} stores the value {value}, but CSR stores nonzeros only"
    )]
    StoredZero {
        /// The operation.
        op: &'static str,
        /// The row.
        row: usize,
        /// Index of the entry in `values`.
        entry: usize,
        /// The value (0.0 or -0.0).
        value: f32,
    },
    /// A value too wide for a bit-packed field.
    #[error("{op}: value {index} is {value}, wider than {bits} bits")]
    ValueTooWide {
        /// The operation.
        op: &'static str,
        /// Index of the value.
        index: usize,
        /// The value.
        value: u16,
        /// The field width.
        bits: u32,
    },
    /// A bit-packed stream whose byte length does not match `count` fields of `bits` bits.
    #[error("{op}: {count} fields of {bits} bits need {expected} bytes, got {got}")]
    PackedLength {
        /// The operation.
        op: &'static str,
        /// Fields requested.
        count: usize,
        /// The field width.
        bits: u32,
        /// Bytes supplied.
        got: usize,
        /// Bytes required (`ceil(count * bits / 8)`), saturated on overflow.
        expected: usize,
    },
    /// A bit-packed stream whose padding bits (after the last field) are not zero.
    #[error("{op}: padding bits after field {count} are {padding:#x}, expected 0")]
    NonzeroPadding {
        /// The operation.
        op: &'static str,
        /// Fields in the stream.
        count: usize,
        /// The padding bits found (right-aligned).
        padding: u8,
    },
    /// A kernel tier this CPU cannot run.
    #[error("{op}: kernel tier {} is not supported by this CPU", tier.name())]
    UnsupportedTier {
        /// The operation.
        op: &'static str,
        /// The tier requested.
        tier: F32Path,
    },
    /// A sparse conv2d weight whose matrix shape is not `[O, C/groups * kh * kw]`.
    #[error(
        "{op}: weight matrix is {rows} x {cols}, the convolution needs {expected_rows} x {expected_cols}"
    )]
    ConvWeightShape {
        /// The operation.
        op: &'static str,
        /// Rows of the sparse weight.
        rows: usize,
        /// Columns of the sparse weight.
        cols: usize,
        /// Output channels `O`.
        expected_rows: usize,
        /// Patch length `C/groups * kh * kw`.
        expected_cols: usize,
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
