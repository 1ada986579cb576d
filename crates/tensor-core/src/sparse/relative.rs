//! Deep Compression's relative index over a row-major flattening: positions to gaps (with
//! fillers) and back, validated.
//!
//! Convention (the `prune` crate's `RelativeIndexed`): `gaps[j]` is the number of zeros
//! skipped between stored entry `j - 1` and entry `j` (for `j = 0`: zeros before it), so entry
//! `j` sits at position `p_j = p_{j-1} + 1 + gaps[j]` with `p_{-1} = -1`. The paper's figure
//! counts the difference `p_j - p_{j-1}`; storing difference - 1 lets a `b`-bit field span
//! every difference `1..=2^b`. With `max = 2^b - 1`, an entry more than `max` zeros after the
//! previous one is preceded by *fillers*, each with gap `max` (a filler occupies the
//! position right after those `max` zeros), until the rest fits. Gaps run across row ends;
//! zeros after the last entry are not stored (the dense length restores them).

use super::SparseError;

/// The widest gap of an `index_bits` field, `2^index_bits - 1`.
///
/// Errors: `index_bits` outside `1..=16` ([`SparseError::InvalidIndexBits`], naming `op`).
pub fn check_index_bits(op: &'static str, index_bits: u32) -> Result<u32, SparseError> {
    if (1..=16).contains(&index_bits) {
        Ok((1u32 << index_bits) - 1)
    } else {
        Err(SparseError::InvalidIndexBits {
            op,
            bits: index_bits,
        })
    }
}

/// Appends the gaps of strictly increasing positions, fillers included (module docs).
#[derive(Clone, Debug)]
pub struct GapWriter {
    op: &'static str,
    max: u64,
    next: u64,
}

impl GapWriter {
    /// A writer of `index_bits`-bit gaps; `op` names the caller in errors.
    ///
    /// Errors: `index_bits` outside `1..=16`.
    pub fn new(op: &'static str, index_bits: u32) -> Result<Self, SparseError> {
        Ok(Self {
            op,
            max: check_index_bits(op, index_bits)? as u64,
            next: 0,
        })
    }

    /// Appends to `gaps` the fillers needed to reach `pos`, then the gap of the entry at
    /// `pos`; returns the number of fillers (the caller stores a zero value for each, then
    /// the entry's value). Time `O(1 + fillers)`.
    ///
    /// Errors: `pos` not after the previous entry ([`SparseError::NotIncreasing`]).
    pub fn push(&mut self, pos: u64, gaps: &mut Vec<u16>) -> Result<usize, SparseError> {
        let Some(mut skip) = pos.checked_sub(self.next) else {
            return Err(SparseError::NotIncreasing {
                op: self.op,
                pos,
                next: self.next,
            });
        };
        let fillers = (skip / (self.max + 1)) as usize;
        gaps.reserve(fillers + 1);
        while skip > self.max {
            gaps.push(self.max as u16); // max <= 2^16 - 1
            skip -= self.max + 1;
        }
        gaps.push(skip as u16); // skip <= max
        self.next = pos + 1;
        Ok(fillers)
    }

    /// The first position after the last entry written (the dense length the gaps cover).
    pub fn next_position(&self) -> u64 {
        self.next
    }
}

/// Checks gaps read from an untrusted source, without allocating: every gap within its
/// `index_bits` field ([`SparseError::GapTooWide`]) and the last entry before `len`
/// ([`SparseError::PastEnd`]); `op` names the caller in errors. After it passes,
/// [`positions`] yields positions `< len`.
///
/// Errors: also `index_bits` outside `1..=16`.
pub fn check_gaps(
    op: &'static str,
    gaps: &[u16],
    index_bits: u32,
    len: usize,
) -> Result<(), SparseError> {
    let max = check_index_bits(op, index_bits)?;
    let mut end = 0u64; // one past the last stored position
    for (entry, &gap) in gaps.iter().enumerate() {
        if gap as u32 > max {
            return Err(SparseError::GapTooWide {
                op,
                entry,
                gap,
                index_bits,
                max,
            });
        }
        end += gap as u64 + 1;
    }
    if end > len as u64 {
        return Err(SparseError::PastEnd {
            op,
            entries: gaps.len(),
            last: end - 1,
            len,
        });
    }
    Ok(())
}

/// The positions of the entries `gaps` describe, fillers included (module docs). Positions
/// accumulate in `u64`; run [`check_gaps`] first to bound them by the dense length.
pub fn positions(gaps: &[u16]) -> Positions<'_> {
    Positions {
        gaps: gaps.iter(),
        next: 0,
    }
}

/// Iterator of [`positions`].
#[derive(Clone, Debug)]
pub struct Positions<'a> {
    gaps: std::slice::Iter<'a, u16>,
    next: u64,
}

impl Iterator for Positions<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        let p = self.next + *self.gaps.next()? as u64;
        self.next = p + 1;
        Some(p)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.gaps.size_hint()
    }
}

impl ExactSizeIterator for Positions<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fillers_at_the_field_boundary() {
        // 3-bit field, max 7: exactly 7 zeros skipped needs no filler, 8 needs one (gap 0).
        let mut g = Vec::new();
        let mut w = GapWriter::new("t", 3).unwrap();
        assert_eq!(w.push(7, &mut g).unwrap(), 0);
        assert_eq!(w.push(16, &mut g).unwrap(), 1);
        assert_eq!(g, [7, 7, 0]);
        assert_eq!(positions(&g).collect::<Vec<_>>(), [7, 15, 16]);
        check_gaps("t", &g, 3, 17).unwrap();
        assert_eq!(w.next_position(), 17);
        // 16-bit fields.
        let mut g = Vec::new();
        let mut w = GapWriter::new("t", 16).unwrap();
        assert_eq!(w.push(200_000, &mut g).unwrap(), 3);
        assert_eq!(positions(&g).last(), Some(200_000));
    }

    #[test]
    fn rejects_bad_input() {
        let mut g = Vec::new();
        let mut w = GapWriter::new("t", 5).unwrap();
        w.push(3, &mut g).unwrap();
        assert_eq!(
            w.push(3, &mut g),
            Err(SparseError::NotIncreasing {
                op: "t",
                pos: 3,
                next: 4
            })
        );
        assert!(GapWriter::new("t", 0).is_err());
        assert!(GapWriter::new("t", 17).is_err());
        let e = check_gaps("t", &[8], 3, 20).unwrap_err();
        assert_eq!(e.to_string(), "t: gap 0 is 8, above 2^3 - 1 = 7");
        let e = check_gaps("t", &[2, 2], 3, 5).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t: 2 entries reach position 5, past the length 5"
        );
        check_gaps("t", &[2, 1], 3, 5).unwrap();
        check_gaps("t", &[], 3, 0).unwrap();
    }
}
