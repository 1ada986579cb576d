//! Fixed-width bit packing of small unsigned fields (relative-index gaps, codebook indices).
//!
//! Deep Compression (Han et al., 2016, section 2) stores each relative index in `b` bits (5
//! for fully connected layers, 8 for conv layers), so a 5-bit gap costs 5 bits on disk, not
//! a byte. Convention: fields are packed LSB-first into bytes, field `i` occupying stream bits
//! `i*b .. (i+1)*b` (bit `k` of the stream is bit `k % 8` of byte `k / 8`, and the low bit of a
//! field comes first); the last byte's unused high bits are zero. A stream of `count` fields
//! is exactly `ceil(count * b / 8)` bytes.

use super::SparseError;
use super::relative::check_index_bits;

/// Bytes of `count` fields of `bits` bits, or `None` on overflow.
pub fn packed_len(count: usize, bits: u32) -> Option<usize> {
    Some(count.checked_mul(bits as usize)?.div_ceil(8))
}

/// Packs `values` into `bits`-bit fields, LSB-first (see the module docs).
///
/// Errors: `bits` outside `1..=16` ([`SparseError::InvalidIndexBits`]); a value of `bits` or
/// more significant bits ([`SparseError::ValueTooWide`]), so no value is silently truncated.
pub fn pack_bits(values: &[u16], bits: u32) -> Result<Vec<u8>, SparseError> {
    const OP: &str = "pack_bits";
    let max = check_index_bits(OP, bits)?;
    let len = packed_len(values.len(), bits).ok_or(SparseError::PackedLength {
        op: OP,
        count: values.len(),
        bits,
        got: 0,
        expected: usize::MAX,
    })?;
    let mut out = Vec::with_capacity(len);
    let mut acc = 0u64; // pending bits, LSB first
    let mut filled = 0u32;
    for (index, &value) in values.iter().enumerate() {
        if value as u32 > max {
            return Err(SparseError::ValueTooWide {
                op: OP,
                index,
                value,
                bits,
            });
        }
        acc |= (value as u64) << filled;
        filled += bits;
        while filled >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            filled -= 8;
        }
    }
    if filled > 0 {
        out.push(acc as u8);
    }
    debug_assert_eq!(out.len(), len);
    Ok(out)
}

/// Unpacks `count` fields of `bits` bits from `bytes` (the inverse of [`pack_bits`]).
///
/// Errors, all checked before the output is allocated: `bits` outside `1..=16`;
/// `bytes.len()` other than `ceil(count * bits / 8)` ([`SparseError::PackedLength`], so
/// `count` cannot request more than the stream holds); nonzero padding bits
/// ([`SparseError::NonzeroPadding`], so every stream has one canonical form).
pub fn unpack_bits(bytes: &[u8], bits: u32, count: usize) -> Result<Vec<u16>, SparseError> {
    const OP: &str = "unpack_bits";
    check_index_bits(OP, bits)?;
    let expected = packed_len(count, bits);
    if expected != Some(bytes.len()) {
        return Err(SparseError::PackedLength {
            op: OP,
            count,
            bits,
            got: bytes.len(),
            expected: expected.unwrap_or(usize::MAX),
        });
    }
    let used = (count * bits as usize) % 8; // no overflow: packed_len succeeded
    if used != 0 {
        // Non-empty: used != 0 implies count > 0, so bytes has ceil(..) >= 1 bytes.
        let padding = bytes[bytes.len() - 1] >> used;
        if padding != 0 {
            return Err(SparseError::NonzeroPadding {
                op: OP,
                count,
                padding,
            });
        }
    }
    let mask = (1u64 << bits) - 1;
    let mut out = Vec::with_capacity(count);
    let mut acc = 0u64;
    let mut filled = 0u32;
    let mut src = bytes.iter();
    for _ in 0..count {
        while filled < bits {
            // The length check above guarantees enough bytes for `count` fields.
            let Some(&b) = src.next() else { break };
            acc |= (b as u64) << filled;
            filled += 8;
        }
        out.push((acc & mask) as u16);
        acc >>= bits;
        filled -= bits;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_bit_layout_is_lsb_first() {
        // 0b00011, 0b10101 -> stream bits 11000 10101 -> byte 0 = 0b101_00011, byte 1 = 0b10.
        let bytes = pack_bits(&[3, 21], 5).unwrap();
        assert_eq!(bytes, vec![0b1010_0011, 0b0000_0010]);
        assert_eq!(unpack_bits(&bytes, 5, 2).unwrap(), vec![3, 21]);
        assert_eq!(pack_bits(&[], 5).unwrap(), Vec::<u8>::new());
        assert_eq!(unpack_bits(&[], 5, 0).unwrap(), Vec::<u16>::new());
        assert_eq!(pack_bits(&[0xBEEF], 16).unwrap(), vec![0xEF, 0xBE]);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            pack_bits(&[32], 5),
            Err(SparseError::ValueTooWide {
                index: 0,
                value: 32,
                bits: 5,
                ..
            })
        ));
        assert!(pack_bits(&[1], 0).is_err());
        assert!(unpack_bits(&[0], 17, 0).is_err());
        assert!(matches!(
            unpack_bits(&[0, 0], 5, 1),
            Err(SparseError::PackedLength {
                got: 2,
                expected: 1,
                ..
            })
        ));
        assert!(matches!(
            unpack_bits(&[0b0010_0000], 5, 1),
            Err(SparseError::NonzeroPadding { padding: 1, .. })
        ));
        assert!(unpack_bits(&[], 16, usize::MAX).is_err());
    }
}
