//! Popcount of XOR over packed bit words: the inner loop of binary (XNOR-Net) dot products.
//!
//! Convention (shared by every binary kernel in slimnet): values in {+1, -1} pack LSB-first
//! into `u64` words, bit 1 = -1, padding bits past the true depth `K` are 0 in both operands.
//! Two such vectors agree where their bits agree, so their dot product is
//! `K - 2 * popcount(a ^ b)` (Rastegari et al., "XNOR-Net", 2016, section 3.2), and padding
//! contributes nothing because `0 ^ 0 = 0`. This module computes the popcount; the `K - 2p`
//! step and the packing belong to the binary-network crate.
//!
//! [`xor_popcount`] runs the [`PopcountPath`] selected for this CPU; [`xor_popcount_with`]
//! runs a given one (tests loop over [`PopcountPath::supported`]). Every path returns the same
//! count, bit for bit.

use crate::dispatch::{KernelPath, PopcountPath};
use crate::error::TensorError;

/// The longest operands (in words) whose bit count `64 * len` fits the `u32` result.
pub const MAX_XOR_POPCOUNT_WORDS: usize = (u32::MAX / 64) as usize;

/// `sum_i popcount(a[i] ^ b[i])` on the selected path.
///
/// Errors when the lengths differ or exceed [`MAX_XOR_POPCOUNT_WORDS`].
pub fn xor_popcount(a: &[u64], b: &[u64]) -> Result<u32, TensorError> {
    xor_popcount_with(PopcountPath::selected(), a, b)
}

/// `sum_i popcount(a[i] ^ b[i])` on `path`; an error if this CPU cannot run it, if the
/// lengths differ, or if they exceed [`MAX_XOR_POPCOUNT_WORDS`].
pub fn xor_popcount_with(path: PopcountPath, a: &[u64], b: &[u64]) -> Result<u32, TensorError> {
    const OP: &str = "xor_popcount";
    if a.len() != b.len() {
        return Err(TensorError::LengthMismatch {
            op: OP,
            lhs: a.len(),
            rhs: b.len(),
        });
    }
    if a.len() > MAX_XOR_POPCOUNT_WORDS {
        return Err(TensorError::InvalidArgument {
            op: OP,
            reason: format!(
                "{} words exceed {MAX_XOR_POPCOUNT_WORDS}, the most whose bit count fits in u32",
                a.len()
            ),
        });
    }
    path.require(OP)?;
    Ok(match path {
        PopcountPath::Portable => portable(a, b),
        // SAFETY (both arms): `require` checked that this CPU has the path's features.
        #[cfg(target_arch = "x86_64")]
        PopcountPath::Avx2 => unsafe { x86::avx2(a, b) },
        #[cfg(target_arch = "x86_64")]
        PopcountPath::Avx512Vpopcntdq => unsafe { x86::avx512(a, b) },
        // Off x86_64 `require` accepts only the portable path.
        #[cfg(not(target_arch = "x86_64"))]
        _ => portable(a, b),
    })
}

/// The reference: one `count_ones` per word.
fn portable(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Vectors summed in byte lanes before a `vpsadbw` flush: a byte gains at most 8 per
    /// vector, and `31 * 8 = 248 <= 255`.
    const BYTE_ACC_VECTORS: usize = 31;

    /// AVX2: each byte's popcount from two 16-entry table lookups (low and high nibble) with
    /// `vpshufb`, accumulated in bytes, then summed into four u64 lanes with `vpsadbw`.
    #[target_feature(enable = "avx2")]
    pub(super) fn avx2(a: &[u64], b: &[u64]) -> u32 {
        #[rustfmt::skip]
        let table = _mm256_setr_epi8(
            0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
            0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
        );
        let nibble = _mm256_set1_epi8(0x0f);
        let zero = _mm256_setzero_si256();
        let (mut total, mut bytes) = (zero, zero);
        let mut room = BYTE_ACC_VECTORS;
        let (va, vb) = (a.chunks_exact(4), b.chunks_exact(4));
        let tail = super::portable(va.remainder(), vb.remainder());
        for (wa, wb) in va.zip(vb) {
            // SAFETY: each chunk is 4 u64 = 32 readable bytes; loadu has no alignment need.
            let (x, y) = unsafe {
                (
                    _mm256_loadu_si256(wa.as_ptr().cast()),
                    _mm256_loadu_si256(wb.as_ptr().cast()),
                )
            };
            let v = _mm256_xor_si256(x, y);
            let lo = _mm256_and_si256(v, nibble);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), nibble);
            let count = _mm256_add_epi8(
                _mm256_shuffle_epi8(table, lo),
                _mm256_shuffle_epi8(table, hi),
            );
            bytes = _mm256_add_epi8(bytes, count);
            room -= 1;
            if room == 0 {
                total = _mm256_add_epi64(total, _mm256_sad_epu8(bytes, zero));
                (bytes, room) = (zero, BYTE_ACC_VECTORS);
            }
        }
        total = _mm256_add_epi64(total, _mm256_sad_epu8(bytes, zero));
        let lanes = [
            _mm256_extract_epi64::<0>(total),
            _mm256_extract_epi64::<1>(total),
            _mm256_extract_epi64::<2>(total),
            _mm256_extract_epi64::<3>(total),
        ];
        // The caller bounds the length so the whole count fits in u32.
        lanes.iter().sum::<i64>() as u32 + tail
    }

    /// AVX-512 VPOPCNTDQ: `vpopcntq` on eight words at a time, summed in u64 lanes.
    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    pub(super) fn avx512(a: &[u64], b: &[u64]) -> u32 {
        let mut acc = _mm512_setzero_si512();
        let (va, vb) = (a.chunks_exact(8), b.chunks_exact(8));
        let tail = super::portable(va.remainder(), vb.remainder());
        for (wa, wb) in va.zip(vb) {
            // SAFETY: each chunk is 8 u64 = 64 readable bytes; loadu has no alignment need.
            let (x, y) = unsafe {
                (
                    _mm512_loadu_si512(wa.as_ptr().cast()),
                    _mm512_loadu_si512(wb.as_ptr().cast()),
                )
            };
            acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(x, y)));
        }
        // The caller bounds the length so the whole count fits in u32.
        _mm512_reduce_add_epi64(acc) as u32 + tail
    }
}
