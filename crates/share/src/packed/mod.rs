//! Packed `b`-bit codes: the stored form of a shared layer's cluster indices.
//!
//! Deep Compression, section 3: a layer of `n` weights shared through `k = 2^b` centroids
//! stores `n` indices of `b` bits each. [`PackedCodes`] holds them in exactly
//! `ceil(n * b / 8)` bytes.
//!
//! # Layout (docs/FORMAT.md)
//! The bytes form one little-endian bit stream: stream bit `s` is bit `s mod 8` (value
//! `2^(s mod 8)`) of byte `s / 8`. Code `i` occupies stream bits `i*b .. i*b + b`, least
//! significant bit first: bit `t` of the code (value `2^t`) is stream bit `i*b + t`. A code
//! may straddle two bytes (three when `b > 9`). The stream is `ceil(n*b/8)` bytes long and
//! the unused high bits of the last byte are zero. With `b = 8` the bytes are the codes;
//! with `b = 16`, little-endian `u16`s.
//!
//! ```
//! use share::PackedCodes;
//! // bits = 5, codes [1, 2, 31]: stream 00001 | 00010 << 5 | 11111 << 10.
//! let p = PackedCodes::pack(&[1u8, 2, 31], 5).unwrap();
//! assert_eq!(p.as_bytes(), &[0b0100_0001, 0b0111_1100]);
//! assert_eq!(p.get(2), Some(31));
//! // Reading untrusted bytes checks the length, the padding and every code against k.
//! let q = PackedCodes::from_parts(5, 3, p.as_bytes().to_vec(), 32).unwrap();
//! assert_eq!(q.unpack(), vec![1, 2, 31]);
//! assert!(PackedCodes::from_parts(5, 3, p.as_bytes().to_vec(), 31).is_err()); // 31 >= k
//! ```

use tensor_core::dispatch::F32Path;
use tensor_core::sparse::{SparseError, pack_bits};

use crate::error::{Result, ShareError, checked_mul};

mod unpack;

/// `len` codes of `bits` bits each, packed LSB-first (module docs: the layout).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedCodes {
    bits: u32,
    len: usize,
    bytes: Vec<u8>,
}

/// Widths [`PackedCodes`] accepts.
const BITS: std::ops::RangeInclusive<u32> = 1..=16;

fn check_bits(op: &'static str, bits: u32) -> Result<()> {
    if BITS.contains(&bits) {
        Ok(())
    } else {
        Err(ShareError::InvalidBits {
            op,
            bits,
            min: *BITS.start(),
            max: *BITS.end(),
        })
    }
}

impl PackedCodes {
    /// Bytes that `len` codes of `bits` bits take: `ceil(len * bits / 8)`.
    ///
    /// Errors: `bits` outside `1..=16`; a bit count that overflows `usize`.
    pub fn byte_len(bits: u32, len: usize) -> Result<usize> {
        const OP: &str = "PackedCodes::byte_len";
        check_bits(OP, bits)?;
        Ok(checked_mul(OP, "len * bits", len, bits as usize)?.div_ceil(8))
    }

    /// Packs `codes`, each of which must fit in `bits` bits.
    ///
    /// Errors: `bits` outside `1..=16`; a code `>= 2^bits` (reported with `len = 2^bits`).
    pub fn pack<C: Copy + Into<u16>>(codes: &[C], bits: u32) -> Result<Self> {
        const OP: &str = "PackedCodes::pack";
        check_bits(OP, bits)?;
        let wide: Vec<u16> = codes.iter().map(|&c| c.into()).collect();
        // The layout is tensor-core's fixed-width packing (shared with prune's gaps).
        let bytes = pack_bits(&wide, bits).map_err(|e| match e {
            SparseError::ValueTooWide { index, value, .. } => ShareError::CodeOutOfRange {
                op: OP,
                index,
                code: value as u32,
                len: 1usize << bits,
            },
            other => ShareError::Sparse(other),
        })?;
        Ok(Self {
            bits,
            len: codes.len(),
            bytes,
        })
    }

    /// Packed codes from stored parts, validated before use: `bits` in `1..=16`,
    /// `bytes.len() == ceil(len * bits / 8)`, zero padding bits, and every code `< k`
    /// (the codebook length).
    ///
    /// Errors: [`ShareError::InvalidBits`], [`ShareError::LengthMismatch`] (field
    /// `bytes`), [`ShareError::NonzeroPadding`], [`ShareError::CodeOutOfRange`] (the first
    /// code `>= k`).
    pub fn from_parts(bits: u32, len: usize, bytes: Vec<u8>, k: usize) -> Result<Self> {
        const OP: &str = "PackedCodes::from_parts";
        check_bits(OP, bits)?;
        let total_bits = checked_mul(OP, "len * bits", len, bits as usize)?;
        let expected = total_bits.div_ceil(8);
        if bytes.len() != expected {
            return Err(ShareError::LengthMismatch {
                op: OP,
                what: "bytes",
                got: bytes.len(),
                expected,
            });
        }
        let used = (total_bits % 8) as u32;
        if used > 0 {
            // Invariant: used > 0 implies at least one byte.
            let last = bytes[bytes.len() - 1];
            if last >> used != 0 {
                return Err(ShareError::NonzeroPadding {
                    op: OP,
                    padding: last >> used,
                });
            }
        }
        let packed = Self { bits, len, bytes };
        if k < (1usize << bits) {
            for index in 0..len {
                let code = packed.code_at(index);
                if code as usize >= k {
                    return Err(ShareError::CodeOutOfRange {
                        op: OP,
                        index,
                        code: code as u32,
                        len: k,
                    });
                }
            }
        }
        Ok(packed)
    }

    /// Code width in bits.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Number of codes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no codes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The packed bytes (module docs: the layout).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The packed bytes, consumed.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Code `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<u16> {
        (i < self.len).then(|| self.code_at(i))
    }

    /// Every code, widened to `u16`.
    pub fn unpack(&self) -> Vec<u16> {
        (0..self.len).map(|i| self.code_at(i)).collect()
    }

    /// Every code as a byte, for the lookup kernels (`len` bytes: `8 / bits` times the
    /// packed size).
    ///
    /// Errors: codes wider than 8 bits.
    pub fn unpack_u8(&self) -> Result<Vec<u8>> {
        let mut out = vec![0u8; self.len];
        self.unpack_u8_into(0, &mut out)?;
        Ok(out)
    }

    /// Codes `start .. start + out.len()` as bytes, into `out` (the decode step of a kernel
    /// that reads the packed form directly), on the tier [`F32Path::selected`] picks.
    ///
    /// Errors: codes wider than 8 bits; a range past the end.
    pub fn unpack_u8_into(&self, start: usize, out: &mut [u8]) -> Result<()> {
        self.unpack_u8_into_with(F32Path::selected(), start, out)
    }

    /// [`PackedCodes::unpack_u8_into`] on an explicit tier (tests run every tier the CPU
    /// has).
    ///
    /// Errors: a tier this CPU lacks; as [`PackedCodes::unpack_u8_into`].
    pub fn unpack_u8_into_with(&self, tier: F32Path, start: usize, out: &mut [u8]) -> Result<()> {
        const OP: &str = "PackedCodes::unpack_u8_into";
        if !tier.is_supported() {
            return Err(ShareError::UnsupportedTier {
                op: OP,
                tier: tier.name(),
            });
        }
        if self.bits > 8 {
            return Err(ShareError::InvalidBits {
                op: OP,
                bits: self.bits,
                min: 1,
                max: 8,
            });
        }
        if start > self.len || out.len() > self.len - start {
            return Err(ShareError::LengthMismatch {
                op: OP,
                what: "start + out",
                got: start.saturating_add(out.len()),
                expected: self.len,
            });
        }
        unpack::unpack(tier, &self.bytes, self.bits, start, out);
        Ok(())
    }

    /// Code `i < len` (three bytes cover any code of at most 16 bits at any bit offset).
    fn code_at(&self, i: usize) -> u16 {
        let bit = i * self.bits as usize;
        let byte = bit / 8;
        let mut window = 0u32;
        for (j, &b) in self.bytes[byte..].iter().take(3).enumerate() {
            window |= (b as u32) << (8 * j);
        }
        ((window >> (bit % 8)) & ((1u32 << self.bits) - 1)) as u16
    }
}
