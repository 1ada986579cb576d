//! Sparse storage helpers that the pruning and weight-sharing crates both use: narrow column
//! indices ([`ColIndices`]), fixed-width bit packing ([`pack_bits`], [`unpack_bits`]) and
//! Deep Compression's relative index over a row-major flattening ([`GapWriter`],
//! [`check_gaps`], [`positions`]).
//!
//! Han, Mao, Dally, "Deep Compression" (ICLR 2016), section 2 and figure 2: a pruned layer
//! stores its nonzeros in row-major order, each with the distance to the previous one in a
//! field of `index_bits` bits (5 for fc, 8 for conv layers), with *filler* entries where a
//! distance overflows the field. Section 3 adds a codebook index to every entry. Both the
//! `prune` crate (f32 values) and the `share` crate (codebook indices) store that form, so
//! the gap arithmetic and its validation live here once.
//!
//! ```
//! use tensor_core::sparse::{GapWriter, check_gaps, pack_bits, positions, unpack_bits};
//!
//! // Nonzeros at flat positions 1, 4 and 15 with 3-bit gaps (max 7 zeros skipped): the
//! // jump from 4 to 15 needs one filler, at 12 (figure 2 of the paper).
//! let mut gaps = Vec::new();
//! let mut w = GapWriter::new("example", 3)?;
//! let fillers = [1u64, 4, 15]
//!     .iter()
//!     .map(|&p| w.push(p, &mut gaps))
//!     .collect::<Result<Vec<usize>, _>>()?;
//! assert_eq!((gaps.as_slice(), fillers), (&[1u16, 2, 7, 2][..], vec![0, 0, 1]));
//! let packed = pack_bits(&gaps, 3)?; // 4 fields of 3 bits: 2 bytes
//! let back = unpack_bits(&packed, 3, gaps.len())?;
//! check_gaps("example", &back, 3, 16)?;
//! assert_eq!(positions(&back).collect::<Vec<_>>(), [1, 4, 12, 15]);
//! # Ok::<(), tensor_core::sparse::SparseError>(())
//! ```
//!
//! What it is not for: CSR matrices or sparse kernels (each technique crate executes its own
//! form), nor the values stored next to the gaps.

mod bitpack;
mod col_indices;
mod relative;

pub use bitpack::{pack_bits, packed_len, unpack_bits};
pub use col_indices::{ColIndex, ColIndices};
pub use relative::{GapWriter, Positions, check_gaps, check_index_bits, positions};

/// Errors of bit packing and relative-index validation; each names the operation (the
/// caller's, for the relative index) and the offending values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SparseError {
    /// A field width outside `1..=16` bits.
    #[error("{op}: index_bits = {bits}, expected 1..=16")]
    InvalidIndexBits {
        /// The operation.
        op: &'static str,
        /// The width given.
        bits: u32,
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
    /// Positions given to a [`GapWriter`] that do not strictly increase.
    #[error("{op}: position {pos} does not follow the previous entry (next free position {next})")]
    NotIncreasing {
        /// The operation.
        op: &'static str,
        /// The position given.
        pos: u64,
        /// The first position after the previous entry.
        next: u64,
    },
}
