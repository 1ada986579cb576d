//! Encoder: symbols to LSB-first bit streams over a 64-bit accumulator, one or four streams.

use crate::{CanonicalCode, HuffError};

/// Symbols `[start, end)` of segment `i` (0..4) when `n` symbols are split into four streams:
/// the first three segments hold `ceil(n/4)` symbols each (fewer if `n` runs out), the last one
/// the rest.
pub fn segment_bounds(n: usize, i: usize) -> (usize, usize) {
    let seg = n.div_ceil(4);
    ((i * seg).min(n), ((i + 1) * seg).min(n))
}

/// Signature of the one-stream encoders, [`Encoder::encode_stream`] and
/// [`Encoder::encode_stream_u8`].
pub(crate) type EncodeOne<T> = fn(&Encoder, &[T], &mut Vec<u8>) -> Result<usize, HuffError>;

/// Encodes symbols with a given [`CanonicalCode`].
///
/// The encoder keeps one `u32` per symbol: the codeword bit-reversed (so that its first bit is
/// the least significant) in the low 16 bits and the length above. Encoding adds codewords to a
/// 64-bit accumulator and stores 8 bytes at a time, `56 / max_len` codewords per store.
#[derive(Debug, Clone)]
pub struct Encoder {
    entries: Vec<u32>,
    entries_u8: Box<[u32; 256]>,
    max_len: u8,
}

impl Encoder {
    /// Precompute the codewords of `code`.
    pub fn new(code: &CanonicalCode) -> Self {
        let entries: Vec<u32> = code
            .codewords()
            .iter()
            .zip(code.lengths())
            .map(|(&c, &l)| {
                if l == 0 {
                    0
                } else {
                    (c.reverse_bits() >> (16 - l)) as u32 | (l as u32) << 16
                }
            })
            .collect();
        let mut entries_u8 = Box::new([0u32; 256]);
        for (dst, &src) in entries_u8.iter_mut().zip(&entries) {
            *dst = src;
        }
        Self {
            entries,
            entries_u8,
            max_len: code.max_len(),
        }
    }

    /// Append one stream coding `symbols` to `out`; returns the number of bytes appended.
    ///
    /// Fails with [`HuffError::SymbolNotInCode`] (leaving `out` as it was) if a symbol is outside
    /// the alphabet or has length 0.
    pub fn encode_stream(&self, symbols: &[u16], out: &mut Vec<u8>) -> Result<usize, HuffError> {
        let lookup = |s: u16| self.entries.get(s as usize).copied().unwrap_or(0);
        self.dispatch(symbols, lookup, out)
    }

    /// [`Encoder::encode_stream`] for 8-bit symbols.
    pub fn encode_stream_u8(&self, symbols: &[u8], out: &mut Vec<u8>) -> Result<usize, HuffError> {
        let lookup = |s: u8| self.entries_u8[s as usize];
        self.dispatch(symbols, lookup, out)
    }

    /// Append four streams, coding the four segments of `symbols` given by [`segment_bounds`],
    /// back to back; returns their sizes in bytes.
    pub fn encode_four(&self, symbols: &[u16], out: &mut Vec<u8>) -> Result<[usize; 4], HuffError> {
        self.four(symbols, out, Self::encode_stream)
    }

    /// [`Encoder::encode_four`] for 8-bit symbols.
    pub fn encode_four_u8(
        &self,
        symbols: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<[usize; 4], HuffError> {
        self.four(symbols, out, Self::encode_stream_u8)
    }

    fn four<T>(
        &self,
        symbols: &[T],
        out: &mut Vec<u8>,
        one: EncodeOne<T>,
    ) -> Result<[usize; 4], HuffError> {
        let start = out.len();
        let mut sizes = [0usize; 4];
        for (i, size) in sizes.iter_mut().enumerate() {
            let (a, b) = segment_bounds(symbols.len(), i);
            match one(self, &symbols[a..b], out) {
                Ok(s) => *size = s,
                Err(e) => {
                    out.truncate(start);
                    return Err(e);
                }
            }
        }
        Ok(sizes)
    }

    fn dispatch<T: Copy + Into<u32>>(
        &self,
        symbols: &[T],
        lookup: impl Fn(T) -> u32,
        out: &mut Vec<u8>,
    ) -> Result<usize, HuffError> {
        // After a store at most 7 bits stay in the accumulator; N codewords of max_len bits
        // must fit in the remaining 57: N * max_len <= 56.
        let alphabet_size = self.entries.len();
        match self.max_len {
            0..=11 => encode_stream::<T, 5>(symbols, lookup, self.max_len, alphabet_size, out),
            12..=14 => encode_stream::<T, 4>(symbols, lookup, self.max_len, alphabet_size, out),
            _ => encode_stream::<T, 3>(symbols, lookup, self.max_len, alphabet_size, out),
        }
    }
}

/// Store the accumulator's whole bytes at `buf[*pos..]` and keep the remaining 0..=7 bits.
#[inline(always)]
fn flush(buf: &mut [u8], pos: &mut usize, acc: &mut u64, nbits: &mut u32) {
    buf[*pos..*pos + 8].copy_from_slice(&acc.to_le_bytes());
    let bytes = *nbits >> 3;
    *pos += bytes as usize;
    // bytes <= 7 because nbits <= 63, so the shift is below 64.
    *acc >>= bytes * 8;
    *nbits &= 7;
}

fn encode_stream<T: Copy + Into<u32>, const N: usize>(
    symbols: &[T],
    lookup: impl Fn(T) -> u32,
    max_len: u8,
    alphabet_size: usize,
    out: &mut Vec<u8>,
) -> Result<usize, HuffError> {
    let start = out.len();
    // Upper bound of the stream plus 8 bytes of slack for the last 8-byte store.
    let bound = (symbols.len() * max_len as usize).div_ceil(8) + 8;
    out.resize(start + bound, 0);
    let buf = &mut out[start..];
    let (mut pos, mut acc, mut nbits) = (0usize, 0u64, 0u32);
    let mut bad: Option<T> = None;
    let mut chunks = symbols.chunks_exact(N);
    for chunk in &mut chunks {
        for &s in chunk {
            let e = lookup(s);
            let len = e >> 16;
            if len == 0 {
                bad = Some(s);
            }
            acc |= ((e & 0xFFFF) as u64) << nbits;
            nbits += len;
        }
        if bad.is_some() {
            break;
        }
        flush(buf, &mut pos, &mut acc, &mut nbits);
    }
    if bad.is_none() {
        for &s in chunks.remainder() {
            let e = lookup(s);
            if e >> 16 == 0 {
                bad = Some(s);
                break;
            }
            acc |= ((e & 0xFFFF) as u64) << nbits;
            nbits += e >> 16;
        }
    }
    if let Some(s) = bad {
        out.truncate(start);
        return Err(HuffError::SymbolNotInCode {
            op: "encode",
            symbol: s.into(),
            alphabet_size,
        });
    }
    flush(buf, &mut pos, &mut acc, &mut nbits);
    if nbits > 0 {
        // The store above already wrote these bits; count their byte.
        pos += 1;
    }
    out.truncate(start + pos);
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cover_input() {
        for n in 0..40 {
            let mut next = 0;
            for i in 0..4 {
                let (a, b) = segment_bounds(n, i);
                assert_eq!(a, next);
                assert!(b >= a);
                next = b;
            }
            assert_eq!(next, n);
        }
    }

    #[test]
    fn bits_are_lsb_first() {
        // Lengths 1, 2, 2: codes 0, 10, 11 (MSB first). Symbols 1, 2, 0 send bits 1,0 1,1 0
        // which, LSB first, is the byte 0b000_01101.
        let code = CanonicalCode::from_lengths(vec![1, 2, 2], 11).unwrap();
        let mut out = vec![];
        let n = Encoder::new(&code)
            .encode_stream(&[1, 2, 0], &mut out)
            .unwrap();
        assert_eq!((n, out), (1, vec![0b0000_1101]));
    }

    #[test]
    fn unknown_symbol_is_an_error_and_leaves_out_alone() {
        let code = CanonicalCode::from_lengths(vec![1, 1, 0], 11).unwrap();
        let enc = Encoder::new(&code);
        let mut out = vec![7];
        for bad in [2u16, 3, 999] {
            let symbols: Vec<u16> = (0..100)
                .map(|i| if i == 50 { bad } else { i % 2 })
                .collect();
            let err = enc.encode_stream(&symbols, &mut out).unwrap_err();
            assert_eq!(
                err,
                HuffError::SymbolNotInCode {
                    op: "encode",
                    symbol: bad as u32,
                    alphabet_size: 3
                }
            );
            assert_eq!(out, vec![7]);
        }
        assert!(enc.encode_stream_u8(&[0, 1, 200], &mut out).is_err());
        assert!(enc.encode_four_u8(&[0, 1, 1, 1, 1, 2], &mut out).is_err());
        assert_eq!(out, vec![7]);
    }
}
