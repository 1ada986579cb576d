//! The canonical code: validated code lengths, canonical codewords, and the compact table format.

use crate::params::{DecodeLimits, MAX_ALPHABET, MAX_CODE_LEN};
use crate::{HuffError, lengths};

/// Longest zero run a table nibble sequence may encode: 6 base-8 digits cover 65,536.
const MAX_RUN_DIGITS: usize = 6;

/// A complete canonical prefix code, described by its code lengths alone.
///
/// Invariants, checked by every constructor: the alphabet has 2..=65,536 entries, every length is
/// at most 15, and the lengths of the used symbols (length > 0) satisfy the Kraft equality
/// `sum 2^-len == 1` exactly. A complete code is what makes table-driven decoding total: every
/// bit pattern of `max_len` bits starts with exactly one codeword.
///
/// Codewords are canonical (as in DEFLATE, RFC 1951 section 3.2.2): shorter codes come first,
/// and codes of equal length are consecutive integers in symbol order. The lengths therefore
/// determine the codewords, and only the lengths are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalCode {
    lengths: Vec<u8>,
    max_len: u8,
    min_len: u8,
}

impl CanonicalCode {
    /// Build a length-limited Huffman code for symbol counts `freqs` (`freqs[s]` is the count of
    /// symbol `s`; the alphabet size is `freqs.len()`), with no code longer than `max_code_len`.
    ///
    /// At least one count must be non-zero and at most `2^max_code_len` may be. A single used
    /// symbol gets a one-bit code (paired with an unused neighbour so that the code is complete).
    pub fn from_frequencies(freqs: &[u64], max_code_len: u8) -> Result<Self, HuffError> {
        let lengths = lengths::limited_lengths(freqs, max_code_len)?;
        Self::from_lengths(lengths, max_code_len)
    }

    /// Adopt explicit code lengths (0 = symbol unused) after checking that every length is at
    /// most `cap` (itself at most 15) and that the Kraft sum is exactly one.
    pub fn from_lengths(lengths: Vec<u8>, cap: u8) -> Result<Self, HuffError> {
        if lengths.len() > MAX_ALPHABET {
            return Err(HuffError::AlphabetTooLarge {
                op: "code from lengths",
                size: lengths.len(),
                max: MAX_ALPHABET,
            });
        }
        if cap == 0 || cap > MAX_CODE_LEN {
            return Err(HuffError::InvalidMaxCodeLen {
                op: "code from lengths",
                max_len: cap,
            });
        }
        let mut numerator = 0u64;
        let (mut max_len, mut min_len) = (0u8, u8::MAX);
        for (symbol, &length) in lengths.iter().enumerate() {
            if length == 0 {
                continue;
            }
            if length > cap {
                return Err(HuffError::LengthAboveCap {
                    symbol,
                    length,
                    cap,
                });
            }
            numerator += 1u64 << (cap - length);
            max_len = max_len.max(length);
            min_len = min_len.min(length);
        }
        if numerator != 1u64 << cap {
            return Err(HuffError::KraftSumNotExact { numerator, cap });
        }
        Ok(Self {
            lengths,
            max_len,
            min_len,
        })
    }

    /// Code length of every symbol (0 = unused). Its length is the alphabet size.
    pub fn lengths(&self) -> &[u8] {
        &self.lengths
    }

    /// Number of symbols the code describes (used or not).
    pub fn alphabet_size(&self) -> usize {
        self.lengths.len()
    }

    /// Longest code length.
    pub fn max_len(&self) -> u8 {
        self.max_len
    }

    /// Shortest code length of a used symbol.
    pub fn min_len(&self) -> u8 {
        self.min_len
    }

    /// Bits needed to code symbols with counts `freqs`: `sum freqs[s] * len[s]`.
    /// Counts of symbols outside the alphabet are ignored.
    pub fn cost_bits(&self, freqs: &[u64]) -> u64 {
        freqs
            .iter()
            .zip(&self.lengths)
            .map(|(&f, &l)| f * l as u64)
            .sum()
    }

    /// Canonical codewords, most significant bit first (bit `len-1` is sent first), one per
    /// symbol; unused symbols get 0.
    pub(crate) fn codewords(&self) -> Vec<u16> {
        let mut count = [0u32; MAX_CODE_LEN as usize + 1];
        for &l in &self.lengths {
            count[l as usize] += 1;
        }
        count[0] = 0;
        let mut next = [0u32; MAX_CODE_LEN as usize + 1];
        let mut code = 0u32;
        for len in 1..=MAX_CODE_LEN as usize {
            code = (code + count[len - 1]) << 1;
            next[len] = code;
        }
        self.lengths
            .iter()
            .map(|&l| {
                if l == 0 {
                    0
                } else {
                    let c = next[l as usize];
                    next[l as usize] += 1;
                    c as u16
                }
            })
            .collect()
    }

    /// Append the compact table: `u16` LE `alphabet_size - 1`, `u8` `max_len`, then the lengths
    /// as 4-bit nibbles (see the crate docs, "Code-length table").
    pub fn write_table(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&((self.lengths.len() - 1) as u16).to_le_bytes());
        out.push(self.max_len);
        let mut nibbles: Vec<u8> = Vec::new();
        let mut i = 0;
        while i < self.lengths.len() {
            let l = self.lengths[i];
            if l != 0 {
                nibbles.push(l);
                i += 1;
                continue;
            }
            let run = self.lengths[i..].iter().take_while(|&&x| x == 0).count();
            nibbles.push(0);
            let mut rest = run - 1;
            loop {
                let digit = (rest & 7) as u8;
                rest >>= 3;
                if rest == 0 {
                    nibbles.push(digit);
                    break;
                }
                nibbles.push(digit | 8);
            }
            i += run;
        }
        for pair in nibbles.chunks(2) {
            out.push(pair[0] | pair.get(1).map_or(0, |&hi| hi << 4));
        }
    }

    /// Read a table written by [`CanonicalCode::write_table`] from the start of `input`.
    /// Returns the code and the number of bytes the table occupies.
    ///
    /// Checks, in order: the declared alphabet against `limits.max_alphabet`, the declared
    /// maximum length against `1..=15`, every length against `min(max_len, limits.max_code_len)`,
    /// the nibble syntax, and the Kraft sum.
    pub fn read_table(input: &[u8], limits: &DecodeLimits) -> Result<(Self, usize), HuffError> {
        let Some(head) = input.first_chunk::<3>() else {
            return Err(HuffError::Truncated {
                what: "code table header",
                needed: 3,
                available: input.len() as u64,
            });
        };
        let alphabet = u16::from_le_bytes([head[0], head[1]]) as usize + 1;
        let max_alphabet = limits.max_alphabet.min(MAX_ALPHABET);
        if alphabet > max_alphabet {
            return Err(HuffError::AlphabetTooLarge {
                op: "read table",
                size: alphabet,
                max: max_alphabet,
            });
        }
        let max_len = head[2];
        if max_len == 0 || max_len > MAX_CODE_LEN {
            return Err(HuffError::InvalidMaxCodeLen {
                op: "read table",
                max_len,
            });
        }
        let cap = max_len.min(limits.max_code_len);
        let body = &input[3..];
        let nibble = |k: usize| -> Result<u8, HuffError> {
            match body.get(k / 2) {
                Some(&b) => Ok((b >> (4 * (k % 2))) & 15),
                None => Err(HuffError::Truncated {
                    what: "code table",
                    needed: (k / 2 + 1) as u64,
                    available: body.len() as u64,
                }),
            }
        };
        let mut lengths = Vec::with_capacity(alphabet);
        let mut k = 0usize;
        while lengths.len() < alphabet {
            let v = nibble(k)?;
            k += 1;
            if v != 0 {
                if v > cap {
                    return Err(HuffError::LengthAboveCap {
                        symbol: lengths.len(),
                        length: v,
                        cap,
                    });
                }
                lengths.push(v);
                continue;
            }
            let mut run = 0usize;
            let mut digits = 0;
            loop {
                if digits == MAX_RUN_DIGITS {
                    return Err(HuffError::CorruptTable {
                        offset: 3 + k / 2,
                        reason: "zero run longer than 6 digits",
                    });
                }
                let d = nibble(k)?;
                k += 1;
                run |= ((d & 7) as usize) << (3 * digits);
                digits += 1;
                if d & 8 == 0 {
                    break;
                }
            }
            let run = run + 1;
            if run > alphabet - lengths.len() {
                return Err(HuffError::CorruptTable {
                    offset: 3 + (k - 1) / 2,
                    reason: "zero run goes past the declared alphabet",
                });
            }
            lengths.resize(lengths.len() + run, 0);
        }
        if k % 2 == 1 && nibble(k)? != 0 {
            return Err(HuffError::CorruptTable {
                offset: 3 + k / 2,
                reason: "padding nibble is not zero",
            });
        }
        let code = Self::from_lengths(lengths, cap)?;
        Ok((code, 3 + k.div_ceil(2)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_codewords_match_rfc1951_example() {
        // RFC 1951 3.2.2: lengths (3, 3, 3, 3, 3, 2, 4, 4) give
        // 010 011 100 101 110 00 1110 1111.
        let code = CanonicalCode::from_lengths(vec![3, 3, 3, 3, 3, 2, 4, 4], 4).unwrap();
        assert_eq!(
            code.codewords(),
            vec![0b010, 0b011, 0b100, 0b101, 0b110, 0b00, 0b1110, 0b1111]
        );
    }

    #[test]
    fn table_round_trip_with_runs() {
        let mut lengths = vec![0u8; 70_000.min(MAX_ALPHABET)];
        lengths[3] = 1;
        lengths[9] = 2;
        lengths[40_000] = 3;
        lengths[MAX_ALPHABET - 1] = 3;
        let code = CanonicalCode::from_lengths(lengths, 15).unwrap();
        let mut buf = vec![];
        code.write_table(&mut buf);
        buf.push(0xAA); // bytes after the table are not the table's business
        let (back, used) = CanonicalCode::read_table(&buf, &DecodeLimits::default()).unwrap();
        assert_eq!(back, code);
        assert_eq!(used, buf.len() - 1);
    }

    #[test]
    fn table_is_compact() {
        // 32 used symbols: 3 header bytes + 16 nibble bytes.
        let code = CanonicalCode::from_lengths(vec![5; 32], 11).unwrap();
        let mut buf = vec![];
        code.write_table(&mut buf);
        assert_eq!(buf.len(), 3 + 16);
    }
}
