//! Bit packing of ±1 rows into `u64` words: the operand format of every binary kernel.
//!
//! Convention (DESIGN.md "Bits", the same as [`tensor_core::bits`]): a row of `K` values
//! (`K` is the *true depth*) packs LSB-first into `ceil(K / 64)` words (the *padded depth* is
//! `64 * words_per_row`): value `k` is bit `k % 64` of word `k / 64`, **bit 1 = -1** (a
//! negative value), bit 0 = +1, and the padding bits past `K` are 0. Signs follow
//! [`nn::layers::Sign`]: `sign(x) = -1` for `x < 0`, else `+1` (so `0`, `-0.0` and NaN pack as
//! +1). Two rows then agree wherever their bits agree, and their dot product over the true
//! depth is `K - 2 * popcount(a ^ b)`; padding contributes nothing because `0 ^ 0 = 0`.
//!
//! Kernels read the raw words ([`PackedRows::row`]); [bitvec] is the view
//! ([`PackedRows::row_bits`], exactly the `K` bits of a row) and a builder
//! ([`PackedRows::from_bitslice`], rows laid end to end without padding).

use bitvec::prelude::{BitSlice, Lsb0};

use crate::error::{Result, XnorError};

/// Bits per packed word.
pub const WORD_BITS: usize = 64;

/// The largest true depth `K` accepted: the dot product `K - 2p` must fit an `i32`.
pub const MAX_DEPTH: usize = i32::MAX as usize;

/// Words a row of true depth `depth` occupies: `ceil(depth / 64)`.
pub fn words_for(depth: usize) -> usize {
    depth.div_ceil(WORD_BITS)
}

/// The mask of the bits a row of depth `depth` uses in its last word (all ones when the
/// depth is a multiple of 64).
fn last_word_mask(depth: usize) -> u64 {
    match depth % WORD_BITS {
        0 => u64::MAX,
        r => (1u64 << r) - 1,
    }
}

/// `rows` rows of true depth `depth`, each packed into `words_per_row` words (module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedRows {
    rows: usize,
    depth: usize,
    words_per_row: usize,
    words: Vec<u64>,
}

impl PackedRows {
    /// Checks `rows x depth` and returns the word count per row and in total.
    fn layout(op: &'static str, rows: usize, depth: usize) -> Result<(usize, usize)> {
        if depth > MAX_DEPTH {
            return Err(XnorError::TooLarge {
                op,
                what: "depth",
                value: depth as u128,
                max: MAX_DEPTH as u128,
            });
        }
        let wpr = words_for(depth);
        let total = rows.checked_mul(wpr).ok_or(XnorError::TooLarge {
            op,
            what: "rows * words_per_row",
            value: rows as u128 * wpr as u128,
            max: usize::MAX as u128,
        })?;
        Ok((wpr, total))
    }

    /// Rows of `rows x depth` values given `len` long (checked: `rows * depth`), each row's
    /// words written by `fill(row, words)` onto zeros.
    fn build(
        op: &'static str,
        (rows, depth): (usize, usize),
        (what, len): (&'static str, usize),
        mut fill: impl FnMut(usize, &mut [u64]),
    ) -> Result<Self> {
        let (wpr, total) = Self::layout(op, rows, depth)?;
        let want = rows.saturating_mul(depth);
        if len != want {
            return Err(XnorError::LengthMismatch {
                op,
                what,
                got: len,
                expected: want,
            });
        }
        let mut words = vec![0u64; total];
        if wpr > 0 {
            for (r, out) in words.chunks_exact_mut(wpr).enumerate() {
                fill(r, out);
            }
        }
        Ok(Self {
            rows,
            depth,
            words_per_row: wpr,
            words,
        })
    }

    /// Packs the signs of a row-major `[rows, depth]` matrix of `values`.
    ///
    /// Errors: `values.len() != rows * depth`, or `depth` past [`MAX_DEPTH`].
    pub fn pack(values: &[f32], rows: usize, depth: usize) -> Result<Self> {
        let shape = (rows, depth);
        Self::build(
            "PackedRows::pack",
            shape,
            ("values", values.len()),
            |r, out| pack_signs(&values[r * depth..(r + 1) * depth], out),
        )
    }

    /// Rows from their packed words (`rows * ceil(depth / 64)` of them, row after row), as a
    /// file stores them. Untrusted input: the length and the zero padding of every row are
    /// checked (nonzero padding would be counted by the dot product).
    pub fn from_words(rows: usize, depth: usize, words: Vec<u64>) -> Result<Self> {
        const OP: &str = "PackedRows::from_words";
        let (wpr, total) = Self::layout(OP, rows, depth)?;
        if words.len() != total {
            return Err(XnorError::LengthMismatch {
                op: OP,
                what: "words",
                got: words.len(),
                expected: total,
            });
        }
        if wpr > 0 {
            let mask = last_word_mask(depth);
            for (row, w) in words.chunks_exact(wpr).enumerate() {
                let bits = w[wpr - 1] & !mask;
                if bits != 0 {
                    return Err(XnorError::NonzeroPadding {
                        op: OP,
                        row,
                        depth,
                        bits,
                    });
                }
            }
        }
        Ok(Self {
            rows,
            depth,
            words_per_row: wpr,
            words,
        })
    }

    /// Rows from a bitvec slice holding `rows * depth` bits, row after row without padding
    /// (bit 1 = -1): the builder for callers that assemble signs with bitvec.
    pub fn from_bitslice(rows: usize, depth: usize, bits: &BitSlice<u64, Lsb0>) -> Result<Self> {
        let shape = (rows, depth);
        Self::build(
            "PackedRows::from_bitslice",
            shape,
            ("bits", bits.len()),
            |r, out| {
                BitSlice::<u64, Lsb0>::from_slice_mut(out)[..depth]
                    .copy_from_bitslice(&bits[r * depth..(r + 1) * depth])
            },
        )
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The true depth `K` of every row.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Words per row, `ceil(K / 64)` (the padded depth is 64 times this).
    pub fn words_per_row(&self) -> usize {
        self.words_per_row
    }

    /// All words, row after row.
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// The words, consumed (for a payload).
    pub fn into_words(self) -> Vec<u64> {
        self.words
    }

    /// The packed words of row `r` (padding included). Panics if `r >= rows`.
    pub fn row(&self, r: usize) -> &[u64] {
        &self.words[r * self.words_per_row..(r + 1) * self.words_per_row]
    }

    /// The `K` bits of row `r` as a bitvec view (padding excluded). Panics if `r >= rows`.
    pub fn row_bits(&self, r: usize) -> &BitSlice<u64, Lsb0> {
        &BitSlice::from_slice(self.row(r))[..self.depth]
    }

    /// The ±1 values, row-major `[rows, depth]` (for tests and densifying).
    pub fn unpack(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.rows * self.depth);
        for r in 0..self.rows {
            out.extend(
                self.row_bits(r)
                    .iter()
                    .map(|b| if *b { -1.0f32 } else { 1.0 }),
            );
        }
        out
    }

    /// Bytes of the packed words (8 per word).
    pub fn byte_len(&self) -> usize {
        8 * self.words.len()
    }
}

/// Packs the signs of `row` into `out` (`ceil(row.len() / 64)` words), bit 1 where the value
/// is negative; the padding bits of the last word stay 0.
pub fn pack_signs(row: &[f32], out: &mut [u64]) {
    debug_assert_eq!(out.len(), words_for(row.len()));
    for (chunk, w) in row.chunks(WORD_BITS).zip(out.iter_mut()) {
        let mut word = 0u64;
        for (i, &v) in chunk.iter().enumerate() {
            word |= ((v < 0.0) as u64) << i;
        }
        *w = word;
    }
}

#[cfg(test)]
mod tests {
    use bitvec::vec::BitVec;

    use super::*;

    fn signs(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = tensor_core::rng::Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.normal()).collect()
    }

    #[test]
    fn layout_is_lsb_first_bit1_negative_padding_zero() {
        let mut v = vec![1.0f32; 65];
        v[0] = -1.0;
        v[63] = -0.5;
        v[64] = -2.0;
        let p = PackedRows::pack(&v, 1, 65).unwrap();
        assert_eq!(p.words(), &[1 | (1 << 63), 1]);
        assert_eq!((p.depth(), p.words_per_row()), (65, 2));
        // Zero, negative zero and NaN are +1, as nn's Sign.
        let p = PackedRows::pack(&[0.0, -0.0, f32::NAN, -1e-30], 1, 4).unwrap();
        assert_eq!(p.words(), &[0b1000]);
    }

    #[test]
    fn pack_matches_a_bitvec_builder_and_round_trips() {
        for (i, depth) in [0usize, 1, 63, 64, 65, 127, 128, 129, 200]
            .into_iter()
            .enumerate()
        {
            let rows = 3;
            let v = signs(rows * depth, i as u64);
            let p = PackedRows::pack(&v, rows, depth).unwrap();
            let bits: BitVec<u64, Lsb0> = v.iter().map(|&x| x < 0.0).collect();
            assert_eq!(PackedRows::from_bitslice(rows, depth, &bits).unwrap(), p);
            let pm: Vec<f32> = v
                .iter()
                .map(|&x| if x < 0.0 { -1.0 } else { 1.0 })
                .collect();
            assert_eq!(p.unpack(), pm, "depth {depth}");
            for r in 0..rows {
                assert_eq!(p.row_bits(r), &bits[r * depth..(r + 1) * depth]);
            }
            let q = PackedRows::from_words(rows, depth, p.words().to_vec()).unwrap();
            assert_eq!(q, p);
        }
    }

    #[test]
    fn from_words_refuses_bad_lengths_and_padding() {
        let e = PackedRows::from_words(2, 65, vec![0; 3]).unwrap_err();
        assert!(
            e.to_string().contains("words has length 3, expected 4"),
            "{e}"
        );
        let e = PackedRows::from_words(2, 65, vec![0, 0, 0, 0b10]).unwrap_err();
        assert!(
            matches!(
                e,
                XnorError::NonzeroPadding {
                    row: 1,
                    bits: 0b10,
                    ..
                }
            ),
            "{e}"
        );
        // A depth that is a multiple of 64 has no padding to check.
        assert!(PackedRows::from_words(1, 64, vec![u64::MAX]).is_ok());
        assert!(PackedRows::from_words(usize::MAX, 64, vec![]).is_err());
        assert!(PackedRows::from_words(1, MAX_DEPTH + 1, vec![]).is_err());
        assert!(PackedRows::pack(&[1.0; 3], 2, 2).is_err());
    }
}
