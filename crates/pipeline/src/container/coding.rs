//! Entropy coding of one payload inside the container: the payload's little-endian bytes,
//! read as a bit string and cut into `w`-bit symbols (`w` in 1..=16, chosen by the writer as
//! the width that codes smallest), stored as one huffman-codec block. Deep Compression's last
//! stage (section 4): the codebook indices and relative-index gaps of a pruned, shared layer
//! are far from uniform, and Huffman coding them saves 20-30%.
//!
//! The transform is exact for any payload: decoding yields `ceil(8 L / w)` symbols which,
//! packed back LSB-first, give the `L` original bytes (the bits past `8 L` must be zero).

use huffman_codec::{DecodeLimits, EncodeParams};
use nn::{NnError, Payload, Result};
use serde::{Deserialize, Serialize};

/// Payloads shorter than this stay raw (a code table alone costs tens of bytes).
const MIN_CODED_BYTES: usize = 64;

/// Widest symbol tried (huffman-codec's alphabet is at most 2^16).
pub const MAX_SYMBOL_BITS: u8 = 16;

/// The decoded size a coded payload may claim: at most this many times its coded bytes (or
/// [`DECODED_FLOOR`], whichever is larger), so a tiny hostile block cannot make the reader
/// allocate gigabytes. The writer keeps a payload raw when coding would exceed it.
pub const MAX_EXPANSION: u64 = 64;

/// See [`MAX_EXPANSION`].
pub const DECODED_FLOOR: u64 = 1 << 20;

/// How a payload's bytes are stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Coding {
    /// The little-endian element bytes as they are.
    Raw(Vec<u8>),
    /// A huffman-codec block of the bytes cut into `symbol_bits`-bit symbols.
    Huffman {
        /// Symbol width, 1..=16.
        symbol_bits: u8,
        /// The block (huffman-codec's self-describing format).
        block: Vec<u8>,
    },
}

/// A payload as the container stores it: element type code, dimensions, coded bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPayload {
    /// Element type code (docs/FORMAT.md, payload table).
    pub elem: u8,
    /// Dimensions.
    pub dims: Vec<u64>,
    /// The bytes, raw or coded.
    pub coding: Coding,
}

impl StoredPayload {
    /// Bytes the coded form occupies (block or raw bytes).
    pub fn stored_len(&self) -> usize {
        match &self.coding {
            Coding::Raw(b) => b.len(),
            Coding::Huffman { block, .. } => block.len(),
        }
    }
}

/// Cuts `bytes` (a little-endian bit string) into `w`-bit symbols, the last zero-extended.
pub fn split_bits(bytes: &[u8], w: u8) -> Vec<u16> {
    let w = w as usize;
    let n = (bytes.len() * 8).div_ceil(w);
    let mut out = Vec::with_capacity(n);
    let (mut acc, mut have, mut next) = (0u32, 0usize, 0usize);
    for _ in 0..n {
        while have < w && next < bytes.len() {
            acc |= (bytes[next] as u32) << have;
            have += 8;
            next += 1;
        }
        out.push((acc & ((1u32 << w) - 1)) as u16);
        acc >>= w;
        have = have.saturating_sub(w);
    }
    out
}

/// Packs `w`-bit symbols LSB-first into exactly `len` bytes. Errors (as `None`) when a
/// symbol does not fit `w` bits or a bit past `8 len` is set.
pub fn join_bits(symbols: &[u16], w: u8, len: usize) -> Option<Vec<u8>> {
    let w = w as usize;
    let mut out = Vec::with_capacity(len);
    let (mut acc, mut have) = (0u64, 0usize);
    for &s in symbols {
        if (s as u32) >> w != 0 {
            return None;
        }
        acc |= (s as u64) << have;
        have += w;
        while have >= 8 {
            if out.len() == len {
                // Whole bytes past the end must be zero.
                if acc & 0xff != 0 {
                    return None;
                }
            } else {
                out.push(acc as u8);
            }
            acc >>= 8;
            have -= 8;
        }
    }
    if have > 0 {
        if out.len() < len {
            out.push(acc as u8);
        } else if acc != 0 {
            return None;
        }
    }
    (out.len() == len).then_some(out)
}

/// The stored form of `payload`: the smallest of its raw bytes and a Huffman block at each
/// symbol width 1..=16 (when `huffman` is set and the payload is not tiny).
pub fn encode(payload: &Payload, huffman: bool) -> StoredPayload {
    let (elem, dims, bytes) = payload.to_le_parts();
    let mut best = Coding::Raw(Vec::new());
    let mut best_len = bytes.len();
    if huffman && bytes.len() >= MIN_CODED_BYTES {
        let params = EncodeParams {
            max_code_len: huffman_codec::MAX_CODE_LEN,
            ..EncodeParams::default()
        };
        for w in 1..=MAX_SYMBOL_BITS {
            let symbols = split_bits(&bytes, w);
            let Ok(block) = huffman_codec::compress(&symbols, &params) else {
                continue;
            };
            let bound = (block.len() as u64 * MAX_EXPANSION).max(DECODED_FLOOR);
            if block.len() < best_len && bytes.len() as u64 <= bound {
                best_len = block.len();
                best = Coding::Huffman {
                    symbol_bits: w,
                    block,
                };
            }
        }
    }
    if let Coding::Raw(ref mut b) = best {
        *b = bytes;
    }
    StoredPayload {
        elem,
        dims,
        coding: best,
    }
}

/// The payload back from its stored form. `source` and `what` name the file and the payload
/// in errors. Nothing is allocated from the dimensions before they are checked against the
/// element limits and, for a coded payload, against [`MAX_EXPANSION`] times its block.
pub fn decode(stored: StoredPayload, source: &str, what: &str) -> Result<Payload> {
    let corrupt = |reason: String| NnError::corrupt(source, what, reason);
    let expected = Payload::expected_byte_len(stored.elem, &stored.dims).ok_or_else(|| {
        corrupt(format!(
            "element type {} with dimensions {:?} is not a valid payload",
            stored.elem, stored.dims
        ))
    })?;
    let bytes = match stored.coding {
        Coding::Raw(b) => b,
        Coding::Huffman { symbol_bits, block } => {
            if !(1..=MAX_SYMBOL_BITS).contains(&symbol_bits) {
                return Err(corrupt(format!(
                    "symbol width {symbol_bits} bits is not 1..={MAX_SYMBOL_BITS}"
                )));
            }
            let bound = (block.len() as u64 * MAX_EXPANSION).max(DECODED_FLOOR);
            if expected > bound {
                return Err(corrupt(format!(
                    "{expected} decoded bytes claimed from a {}-byte block (at most {bound})",
                    block.len()
                )));
            }
            let n = (expected * 8).div_ceil(symbol_bits as u64);
            let limits = DecodeLimits {
                max_symbols: n,
                max_alphabet: 1 << symbol_bits,
                ..DecodeLimits::default()
            };
            let symbols = huffman_codec::decompress(&block, &limits)
                .map_err(|e| corrupt(format!("Huffman block: {e}")))?;
            if symbols.len() as u64 != n {
                return Err(corrupt(format!(
                    "Huffman block holds {} symbols, {n} expected",
                    symbols.len()
                )));
            }
            join_bits(&symbols, symbol_bits, expected as usize).ok_or_else(|| {
                corrupt(format!(
                    "decoded {symbol_bits}-bit symbols overflow their width or set bits past \
                     the payload's {expected} bytes"
                ))
            })?
        }
    };
    Payload::from_le_parts(stored.elem, stored.dims, bytes).map_err(|e| corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn bits_split_and_join_exactly(bytes in proptest::collection::vec(any::<u8>(), 0..200), w in 1u8..=16) {
            let s = split_bits(&bytes, w);
            prop_assert_eq!(s.len(), (bytes.len() * 8).div_ceil(w as usize));
            prop_assert_eq!(join_bits(&s, w, bytes.len()), Some(bytes));
        }

        #[test]
        fn payloads_round_trip_coded_or_not(codes in proptest::collection::vec(0u16..20, 0..3000), huffman in any::<bool>()) {
            let p = Payload::u16(&[codes.len()], codes).unwrap();
            let stored = encode(&p, huffman);
            prop_assert!(stored.stored_len() <= p.byte_len());
            prop_assert_eq!(decode(stored, "t", "p").unwrap(), p);
        }
    }

    #[test]
    fn skewed_packed_codes_are_coded_smaller_at_their_width() {
        // 5-bit codes, most of them one value: packed, then coded.
        let mut rng = tensor_core::rng::Rng::seed_from_u64(1);
        let codes: Vec<u16> = (0..4000)
            .map(|_| {
                let u = rng.next_u64() % 100;
                if u < 70 { 3 } else { (u % 32) as u16 }
            })
            .collect();
        let packed = join_bits(&codes, 5, (codes.len() * 5).div_ceil(8)).unwrap();
        let p = Payload::bytes(packed.clone());
        let stored = encode(&p, true);
        match &stored.coding {
            Coding::Huffman { symbol_bits, block } => {
                assert_eq!(*symbol_bits, 5);
                assert!(
                    block.len() * 10 < packed.len() * 7,
                    "{} of {}",
                    block.len(),
                    packed.len()
                );
            }
            other => panic!("not coded: {other:?}"),
        }
        assert_eq!(decode(stored, "t", "p").unwrap(), p);
    }

    #[test]
    fn hostile_stored_payloads_give_errors() {
        let p = Payload::bytes(vec![7; 500]);
        let good = encode(&p, true);
        let Coding::Huffman { block, .. } = good.coding.clone() else {
            panic!("a constant run codes");
        };
        let cases = [
            (
                StoredPayload {
                    elem: 9,
                    ..good.clone()
                },
                "not a valid payload",
            ),
            (
                StoredPayload {
                    dims: vec![1 << 40],
                    ..good.clone()
                },
                "not a valid payload",
            ),
            (
                StoredPayload {
                    dims: vec![1 << 30],
                    ..good.clone()
                },
                "decoded bytes claimed",
            ),
            (
                StoredPayload {
                    coding: Coding::Huffman {
                        symbol_bits: 17,
                        block: block.clone(),
                    },
                    ..good.clone()
                },
                "symbol width",
            ),
            (
                StoredPayload {
                    dims: vec![400],
                    ..good.clone()
                },
                "symbols",
            ),
            (
                StoredPayload {
                    coding: Coding::Raw(vec![1, 2]),
                    ..good.clone()
                },
                "needs 500 bytes",
            ),
            (
                StoredPayload {
                    coding: Coding::Huffman {
                        symbol_bits: 8,
                        block: block[..block.len() / 2].to_vec(),
                    },
                    ..good.clone()
                },
                "Huffman block",
            ),
        ];
        for (stored, want) in cases {
            let e = decode(stored, "f.slim", "layer 1 payload `codes`")
                .unwrap_err()
                .to_string();
            assert!(e.contains(want) && e.contains("f.slim"), "{e}");
        }
    }
}
