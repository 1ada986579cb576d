//! Fixed-width bit packing of small unsigned fields (relative-index gaps): tensor-core's
//! [`tensor_core::sparse`] packing, shared with the `share` crate's codebook indices, under
//! prune's names and error type.
//!
//! Deep Compression (Han et al., 2016, section 2) stores each relative index in `b` bits (5
//! for fully connected layers, 8 for conv layers). Convention: fields are packed LSB-first
//! into bytes, field `i` occupying stream bits `i*b .. (i+1)*b`; the last byte's unused high
//! bits are zero; `count` fields take exactly `ceil(count * b / 8)` bytes.

use crate::error::Result;

pub use tensor_core::sparse::packed_len;

/// Packs `values` into `bits`-bit fields, LSB-first ([`tensor_core::sparse::pack_bits`]).
///
/// Errors: `bits` outside `1..=16` ([`crate::PruneError::InvalidIndexBits`]); a value of
/// `bits` or more significant bits ([`crate::PruneError::ValueTooWide`]).
pub fn pack_bits(values: &[u16], bits: u32) -> Result<Vec<u8>> {
    Ok(tensor_core::sparse::pack_bits(values, bits)?)
}

/// Unpacks `count` fields of `bits` bits from `bytes` (the inverse of [`pack_bits`]).
///
/// Errors, all checked before the output is allocated: `bits` outside `1..=16`;
/// `bytes.len()` other than `ceil(count * bits / 8)` ([`crate::PruneError::PackedLength`]);
/// nonzero padding bits ([`crate::PruneError::NonzeroPadding`]).
pub fn unpack_bits(bytes: &[u8], bits: u32, count: usize) -> Result<Vec<u16>> {
    Ok(tensor_core::sparse::unpack_bits(bytes, bits, count)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PruneError;

    #[test]
    fn errors_keep_prune_variants() {
        assert_eq!(pack_bits(&[3, 21], 5).unwrap(), vec![0b1010_0011, 0b10]);
        assert!(matches!(
            pack_bits(&[32], 5),
            Err(PruneError::ValueTooWide {
                index: 0,
                value: 32,
                bits: 5,
                ..
            })
        ));
        assert!(matches!(
            unpack_bits(&[0b0010_0000], 5, 1),
            Err(PruneError::NonzeroPadding { padding: 1, .. })
        ));
    }
}
