//! Relative-index sparse storage: Deep Compression's format for the nonzeros of a layer.
//!
//! Han, Mao, Dally, "Deep Compression" (ICLR 2016), section 2 and figure 2: a pruned layer
//! stores its nonzero weights in order (weights flattened row-major, as [`nn`]'s tensors are),
//! each with the distance to the previous stored entry in a small fixed field, `index_bits`
//! wide (the paper uses 8 bits for conv layers and 5 for fully connected ones). When the
//! distance does not fit, a *filler zero* entry is stored in between: an entry whose value
//! is zero, placed as far as the field reaches.
//!
//! # Convention
//!
//! `gaps[j]` is the number of zeros skipped between stored entry `j - 1` and entry `j` (for
//! `j = 0`: zeros before it), that is, the paper's index difference minus one. The paper's
//! figure counts the difference itself; storing difference - 1 lets a `b`-bit field span every
//! difference `1..=2^b`, where storing the difference would waste code 0 (two entries never
//! share a position). So with `max = 2^b - 1`:
//! - an entry at `max` zeros after the previous one is stored directly with gap `max`;
//! - an entry `max + 1` or more zeros later first gets a filler with gap `max` (the filler
//!   occupies the position right after those `max` zeros), and so on until the rest fits.
//!
//! Zeros after the last nonzero are not stored: `len` restores them.
//!
//! Values are generic: `f32` weights, or `u16` code indices of a shared layer (where the
//! "zero" of a filler is code 0, which the `share` crate reserves for the value 0.0). A
//! value is *zero* when it equals `T::default()`.

use tensor_core::sparse::{GapWriter, SparseError, check_gaps, check_index_bits, positions};

use crate::error::{PruneError, Result};

/// The relative-index form of one dense vector (see the module docs for the convention).
#[derive(Clone, Debug, PartialEq)]
pub struct RelativeIndexed<T> {
    /// Zeros skipped before each stored entry, each `<= 2^index_bits - 1`.
    pub gaps: Vec<u16>,
    /// The stored values, one per gap; fillers hold `T::default()`.
    pub values: Vec<T>,
    /// Width of the gap field, `1..=16` bits.
    pub index_bits: u32,
    /// Length of the dense vector.
    pub len: usize,
}

impl From<SparseError> for PruneError {
    /// tensor-core's packing and gap errors as the prune variants of the same name.
    fn from(e: SparseError) -> Self {
        match e {
            SparseError::InvalidIndexBits { op, bits } => PruneError::InvalidIndexBits { op, bits },
            SparseError::ValueTooWide {
                op,
                index,
                value,
                bits,
            } => PruneError::ValueTooWide {
                op,
                index,
                value,
                bits,
            },
            SparseError::PackedLength {
                op,
                count,
                bits,
                got,
                expected,
            } => PruneError::PackedLength {
                op,
                count,
                bits,
                got,
                expected,
            },
            SparseError::NonzeroPadding { op, count, padding } => {
                PruneError::NonzeroPadding { op, count, padding }
            }
            SparseError::GapTooWide {
                op,
                entry,
                gap,
                index_bits,
                max,
            } => PruneError::GapTooWide {
                op,
                entry,
                gap,
                index_bits,
                max,
            },
            SparseError::PastEnd {
                op,
                entries,
                last,
                len,
            } => PruneError::PastEnd {
                op,
                entries,
                last,
                len,
            },
            other @ SparseError::NotIncreasing { op, .. } => PruneError::Corrupt {
                op,
                reason: other.to_string(),
            },
        }
    }
}

impl<T: Copy + Default + PartialEq> RelativeIndexed<T> {
    /// Encodes `dense`: every value other than `T::default()` is stored, with filler zeros
    /// where a run of zeros exceeds `2^index_bits - 1`.
    ///
    /// Errors: `index_bits` outside `1..=16`.
    pub fn encode(dense: &[T], index_bits: u32) -> Result<Self> {
        let mut writer = GapWriter::new("RelativeIndexed::encode", index_bits)?;
        let zero = T::default();
        let mut gaps = Vec::new();
        let mut values = Vec::new();
        for (i, &v) in dense.iter().enumerate() {
            if v == zero {
                continue;
            }
            // Positions increase with i, so push cannot fail.
            let fillers = writer.push(i as u64, &mut gaps)?;
            values.extend(std::iter::repeat_n(zero, fillers));
            values.push(v);
        }
        Ok(Self {
            gaps,
            values,
            index_bits,
            len: dense.len(),
        })
    }

    /// Decodes back to the dense vector of length `len`.
    ///
    /// Errors (all checked before the output is allocated): `index_bits` outside `1..=16`;
    /// `gaps` and `values` of different lengths; a gap above `2^index_bits - 1`; entries that
    /// reach past `len`.
    pub fn decode(&self) -> Result<Vec<T>> {
        self.validate("RelativeIndexed::decode")?;
        let mut dense = vec![T::default(); self.len];
        for (p, &v) in positions(&self.gaps).zip(&self.values) {
            // Validated: every position is < len.
            dense[p as usize] = v;
        }
        Ok(dense)
    }

    /// Checks everything [`Self::decode`] relies on, without allocating: `index_bits` in
    /// `1..=16`, as many values as gaps, every gap within its field, and the last entry
    /// before `len`. `op` names the caller in the error.
    pub fn validate(&self, op: &'static str) -> Result<()> {
        check_index_bits(op, self.index_bits)?;
        if self.gaps.len() != self.values.len() {
            return Err(PruneError::LengthMismatch {
                op,
                what: "values".into(),
                got: self.values.len(),
                expected: self.gaps.len(),
            });
        }
        Ok(check_gaps(op, &self.gaps, self.index_bits, self.len)?)
    }

    /// Stored entries, fillers included.
    pub fn entries(&self) -> usize {
        self.gaps.len()
    }

    /// Filler entries (stored values equal to `T::default()`).
    pub fn fillers(&self) -> usize {
        let zero = T::default();
        self.values.iter().filter(|&&v| v == zero).count()
    }

    /// Bits of the stored form with `value_bits` per value: `entries * (index_bits +
    /// value_bits)` (the fixed-width size, before any entropy coding).
    pub fn stored_bits(&self, value_bits: u32) -> u64 {
        self.entries() as u64 * (self.index_bits + value_bits) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_figure_two_layout() {
        // Nonzeros at 1, 4 and 15 with a 3-bit field (max 7 zeros per gap): 4 -> 15 skips 10
        // zeros, so a filler goes at 4 + 8 = 12, then 2 zeros to 15.
        let mut dense = [0.0f32; 16];
        dense[1] = 3.4;
        dense[4] = 0.9;
        dense[15] = 1.7;
        let r = RelativeIndexed::encode(&dense, 3).unwrap();
        assert_eq!(r.gaps, vec![1, 2, 7, 2]);
        assert_eq!(r.values, vec![3.4, 0.9, 0.0, 1.7]);
        assert_eq!((r.entries(), r.fillers()), (4, 1));
        assert_eq!(r.stored_bits(5), 4 * 8);
        assert_eq!(r.decode().unwrap(), dense);
    }

    #[test]
    fn boundaries() {
        // Exactly max zeros: no filler. max + 1 zeros: one filler, then gap 0.
        let max = 7usize;
        let mut d = vec![0u16; max + 1];
        d[max] = 5;
        let r = RelativeIndexed::encode(&d, 3).unwrap();
        assert_eq!((r.gaps.clone(), r.values.clone()), (vec![7], vec![5]));
        let mut d = vec![0u16; max + 2];
        d[max + 1] = 5;
        let r = RelativeIndexed::encode(&d, 3).unwrap();
        assert_eq!((r.gaps.clone(), r.values.clone()), (vec![7, 0], vec![0, 5]));
        assert_eq!(r.decode().unwrap(), d);
        // Empty and all-zero vectors store nothing; 16-bit fields work.
        let r = RelativeIndexed::<f32>::encode(&[], 5).unwrap();
        assert_eq!((r.entries(), r.decode().unwrap()), (0, vec![]));
        let r = RelativeIndexed::encode(&[0.0f32; 9], 16).unwrap();
        assert_eq!((r.entries(), r.decode().unwrap()), (0, vec![0.0; 9]));
    }

    #[test]
    fn rejects_bad_fields() {
        assert!(RelativeIndexed::encode(&[1.0f32], 0).is_err());
        assert!(RelativeIndexed::encode(&[1.0f32], 17).is_err());
        let bad = |gaps: Vec<u16>, values: Vec<f32>, len| RelativeIndexed {
            gaps,
            values,
            index_bits: 3,
            len,
        };
        let e = bad(vec![8], vec![1.0], 20).decode().unwrap_err();
        assert!(
            e.to_string().contains("gap 0 is 8, above 2^3 - 1 = 7"),
            "{e}"
        );
        let e = bad(vec![2, 2], vec![1.0, 1.0], 5).decode().unwrap_err();
        assert!(
            e.to_string()
                .contains("reach position 5, past the length 5"),
            "{e}"
        );
        assert!(bad(vec![0], vec![], 5).decode().is_err());
        assert_eq!(
            bad(vec![2, 1], vec![1.0, 2.0], 5).decode().unwrap(),
            [0.0, 0.0, 1.0, 0.0, 2.0]
        );
    }
}
