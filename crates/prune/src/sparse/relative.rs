//! Conversions between CSR and Deep Compression's relative index, and the relative index's
//! bit-packed, written form.
//!
//! Han et al., "Deep Compression" (2016), section 2: the nonzeros of a pruned layer are
//! stored with the distance to the previous one in `b` bits (`b` = [`FC_INDEX_BITS`] for
//! fully connected layers, [`CONV_INDEX_BITS`] for conv layers), with filler zeros where a
//! distance overflows the field. Here the gaps run over the row-major flattened matrix
//! (position `r * cols + c`), as [`RelativeIndexed`] defines them, so a gap may cross row
//! boundaries and a fully pruned layer stores only fillers. The written form is the gaps
//! packed LSB-first in `b` bits each ([`super::pack_bits`]) followed by the values.

use tensor_core::sparse::{GapWriter, positions};

use super::bitpack::{pack_bits, packed_len, unpack_bits};
use super::csr::{ColIndices, Csr, check_dims};
use crate::error::{PruneError, Result};
use crate::relative_index::RelativeIndexed;

/// Deep Compression's relative-index width for fully connected layers (5 bits).
pub const FC_INDEX_BITS: u32 = 5;

/// Deep Compression's relative-index width for conv layers (8 bits).
pub const CONV_INDEX_BITS: u32 = 8;

impl Csr {
    /// The relative-index form of this matrix over its row-major flattening, with
    /// `index_bits`-bit gaps (fillers where a run of zeros overflows the field). Walks the
    /// nonzeros directly: time `O(nnz + fillers)`, no dense copy.
    ///
    /// Errors: `index_bits` outside `1..=16`.
    pub fn to_relative_index(&self, index_bits: u32) -> Result<RelativeIndexed<f32>> {
        let mut writer = GapWriter::new("Csr::to_relative_index", index_bits)?;
        let mut gaps = Vec::with_capacity(self.nnz());
        let mut values = Vec::with_capacity(self.nnz());
        for r in 0..self.rows() {
            let (start, end) = self.row_range(r);
            for k in start..end {
                // Invariant of Csr: k < nnz; columns increase, so positions do.
                let c = self.col_idx().get(k).unwrap_or(0) as u64;
                let fillers = writer.push(r as u64 * self.cols() as u64 + c, &mut gaps)?;
                values.extend(std::iter::repeat_n(0.0, fillers));
                values.push(self.values()[k]);
            }
        }
        Ok(RelativeIndexed {
            gaps,
            values,
            index_bits,
            len: self.rows() * self.cols(),
        })
    }

    /// The `rows x cols` CSR matrix a relative index describes (fillers and any other
    /// stored zero dropped), validating the untrusted arrays first: the field width, as many
    /// values as gaps, every gap within `2^index_bits - 1` ([`PruneError::GapTooWide`]), the
    /// decoded positions within `len` ([`PruneError::PastEnd`]), and `len == rows * cols`.
    /// Never densifies; allocates at most `gaps.len()` entries.
    pub fn from_relative_index(
        rows: usize,
        cols: usize,
        ri: &RelativeIndexed<f32>,
    ) -> Result<Self> {
        const OP: &str = "Csr::from_relative_index";
        check_dims(OP, rows, cols)?;
        if ri.len != rows * cols {
            return Err(PruneError::LengthMismatch {
                op: OP,
                what: format!("relative index of a {rows} x {cols} matrix"),
                got: ri.len,
                expected: rows * cols,
            });
        }
        ri.validate(OP)?;
        let nnz = ri.values.iter().filter(|&&v| v != 0.0).count();
        if nnz > u32::MAX as usize {
            return Err(PruneError::TooManyNonzeros {
                op: OP,
                nnz,
                max: u32::MAX as usize,
            });
        }
        let mut row_ptr = vec![0u32; rows + 1];
        let mut cols_of = Vec::with_capacity(nnz);
        let mut values = Vec::with_capacity(nnz);
        for (pos, &v) in positions(&ri.gaps).zip(&ri.values) {
            if v != 0.0 {
                // Validated: pos < len = rows * cols, so cols > 0 and r < rows.
                let pos = pos as usize;
                let r = pos / cols;
                row_ptr[r + 1] += 1;
                cols_of.push((pos % cols) as u32);
                values.push(v);
            }
        }
        for r in 0..rows {
            row_ptr[r + 1] += row_ptr[r];
        }
        let col_idx = ColIndices::narrowest(cols, cols_of);
        // Positions increase strictly, so columns increase within each row: the arrays
        // satisfy every invariant, and from_parts re-checks them in O(nnz).
        Csr::from_parts(rows, cols, row_ptr, col_idx, values)
    }
}

impl<T: Copy + Default + PartialEq> RelativeIndexed<T> {
    /// The gaps packed LSB-first in `index_bits` bits each (the bytes written; see
    /// [`super::pack_bits`]).
    ///
    /// Errors: `index_bits` outside `1..=16`; a gap wider than the field.
    pub fn pack_gaps(&self) -> Result<Vec<u8>> {
        pack_bits(&self.gaps, self.index_bits)
    }

    /// A relative index from its written form: `entries` gaps packed in `index_bits` bits,
    /// one value per gap, dense length `len`; validated as [`Self::validate`] does (the
    /// packed stream's length and padding are checked before anything is allocated).
    pub fn from_packed(
        packed_gaps: &[u8],
        index_bits: u32,
        values: Vec<T>,
        len: usize,
    ) -> Result<Self> {
        let gaps = unpack_bits(packed_gaps, index_bits, values.len())?;
        let ri = Self {
            gaps,
            values,
            index_bits,
            len,
        };
        ri.validate("RelativeIndexed::from_packed")?;
        Ok(ri)
    }

    /// Bytes of the packed gaps: `ceil(entries * index_bits / 8)`.
    pub fn packed_gap_bytes(&self) -> usize {
        // entries * 16 bits cannot overflow for a Vec of u16 gaps.
        packed_len(self.entries(), self.index_bits).unwrap_or(usize::MAX)
    }

    /// Bytes written: packed gaps plus `size_of::<T>()` per stored value (fillers
    /// included). The header (`len`, `index_bits`, entry count) belongs to the container.
    pub fn stored_bytes(&self) -> usize {
        self.packed_gap_bytes() + self.entries() * std::mem::size_of::<T>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_cross_rows_and_fillers_drop() {
        // 2 x 4 with nonzeros at flat positions 1 and 7; 2-bit gaps (max 3): 1 -> 7 skips 5
        // zeros, so one filler at position 5, then gap 1.
        let dense = [0.0, 1.5, 0.0, 0.0, 0.0, 0.0, 0.0, -2.0];
        let m = Csr::from_dense(2, 4, &dense).unwrap();
        let ri = m.to_relative_index(2).unwrap();
        assert_eq!(ri, RelativeIndexed::encode(&dense, 2).unwrap());
        assert_eq!(ri.gaps, vec![1, 3, 1]);
        assert_eq!(ri.values, vec![1.5, 0.0, -2.0]);
        assert_eq!(ri.stored_bytes(), 1 + 3 * 4);
        assert_eq!(Csr::from_relative_index(2, 4, &ri).unwrap(), m);
        let packed = ri.pack_gaps().unwrap();
        let back = RelativeIndexed::from_packed(&packed, 2, ri.values.clone(), 8).unwrap();
        assert_eq!(back, ri);
    }

    #[test]
    fn rejects_wrong_length() {
        let ri = RelativeIndexed::encode(&[1.0f32, 0.0, 2.0], 5).unwrap();
        assert!(matches!(
            Csr::from_relative_index(2, 2, &ri),
            Err(PruneError::LengthMismatch {
                got: 3,
                expected: 4,
                ..
            })
        ));
    }
}
