//! The u8 x i8 -> i32 dot product: the inner loop of int8 GEMM and convolution.
//!
//! Quantized inference (Jacob et al., "Quantization and Training of Neural Networks for
//! Efficient Integer-Arithmetic-Only Inference", 2018) multiplies u8 activations (with a zero
//! point) by i8 weights and accumulates in i32; x86's VNNI instruction `vpdpbusd` computes
//! exactly that product, four bytes per i32 lane. Signed i8 activations go through it after a
//! `+128` offset and a per-row correction `128 * sum(w)` (the caller's business).
//!
//! [`dot_u8i8`] runs the [`Int8Path`] selected for this CPU; [`dot_u8i8_with`] runs a given one
//! (tests loop over [`Int8Path::supported`]). Every path returns the same, exact i32: no path
//! saturates (the AVX2 one widens to i16 and uses `vpmaddwd` instead of the saturating
//! `vpmaddubsw`), and the length is bounded so that no sum can overflow.

use crate::dispatch::{Int8Path, KernelPath};
use crate::error::TensorError;

/// The longest operands whose dot product fits `i32` whatever their values: every product
/// lies in `[-255*128, 255*127]`, and `65_793 * 32_640 <= i32::MAX`.
pub const MAX_DOT_U8I8_LEN: usize = (i32::MAX / (255 * 128)) as usize;

/// `sum_i a[i] * b[i]` on the selected path, exact in i32.
///
/// Errors when the lengths differ or exceed [`MAX_DOT_U8I8_LEN`].
pub fn dot_u8i8(a: &[u8], b: &[i8]) -> Result<i32, TensorError> {
    dot_u8i8_with(Int8Path::selected(), a, b)
}

/// `sum_i a[i] * b[i]` on `path`; an error if this CPU cannot run it, if the lengths differ,
/// or if they exceed [`MAX_DOT_U8I8_LEN`].
pub fn dot_u8i8_with(path: Int8Path, a: &[u8], b: &[i8]) -> Result<i32, TensorError> {
    const OP: &str = "dot_u8i8";
    if a.len() != b.len() {
        return Err(TensorError::LengthMismatch {
            op: OP,
            lhs: a.len(),
            rhs: b.len(),
        });
    }
    if a.len() > MAX_DOT_U8I8_LEN {
        return Err(TensorError::InvalidArgument {
            op: OP,
            reason: format!(
                "length {} exceeds {MAX_DOT_U8I8_LEN}, the longest whose sum always fits in i32",
                a.len()
            ),
        });
    }
    path.require(OP)?;
    Ok(match path {
        Int8Path::Portable => portable(a, b),
        // SAFETY (all three arms): `require` checked that this CPU has the path's features.
        #[cfg(target_arch = "x86_64")]
        Int8Path::Avx2 => unsafe { x86::avx2(a, b) },
        #[cfg(target_arch = "x86_64")]
        Int8Path::AvxVnni => unsafe { x86::avx_vnni(a, b) },
        #[cfg(target_arch = "x86_64")]
        Int8Path::Avx512Vnni => unsafe { x86::avx512_vnni(a, b) },
        // Off x86_64 `require` accepts only the portable path.
        #[cfg(not(target_arch = "x86_64"))]
        _ => portable(a, b),
    })
}

/// The reference: one i32 multiply-add per element.
fn portable(a: &[u8], b: &[i8]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// The eight i32 lanes of `v`, summed (no overflow: the caller bounds the length, and
    /// every partial sum is bounded by the sum of absolute products).
    #[target_feature(enable = "avx2")]
    fn sum_lanes(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        _mm_cvtsi128_si32(s)
    }

    /// AVX2: 16 bytes at a time widened to i16 (`vpmovzxbw` for u8, `vpmovsxbw` for i8), then
    /// `vpmaddwd` multiplies and adds pairs into i32 lanes, which cannot overflow
    /// (`|2 * 255 * 128| < 2^31`).
    #[target_feature(enable = "avx2")]
    pub(super) fn avx2(a: &[u8], b: &[i8]) -> i32 {
        let mut acc0 = _mm256_setzero_si256();
        let mut acc1 = _mm256_setzero_si256();
        let (ca, cb) = (a.chunks_exact(32), b.chunks_exact(32));
        let tail = super::portable(ca.remainder(), cb.remainder());
        for (xa, xb) in ca.zip(cb) {
            // SAFETY: each chunk is 32 readable bytes; loadu has no alignment need.
            let (a0, a1, b0, b1) = unsafe {
                (
                    _mm_loadu_si128(xa.as_ptr().cast()),
                    _mm_loadu_si128(xa.as_ptr().add(16).cast()),
                    _mm_loadu_si128(xb.as_ptr().cast()),
                    _mm_loadu_si128(xb.as_ptr().add(16).cast()),
                )
            };
            let p0 = _mm256_madd_epi16(_mm256_cvtepu8_epi16(a0), _mm256_cvtepi8_epi16(b0));
            let p1 = _mm256_madd_epi16(_mm256_cvtepu8_epi16(a1), _mm256_cvtepi8_epi16(b1));
            acc0 = _mm256_add_epi32(acc0, p0);
            acc1 = _mm256_add_epi32(acc1, p1);
        }
        sum_lanes(_mm256_add_epi32(acc0, acc1)) + tail
    }

    /// AVX-VNNI: `vpdpbusd` (VEX, 256-bit) adds four u8 x i8 products into each i32 lane.
    #[target_feature(enable = "avx2,avxvnni")]
    pub(super) fn avx_vnni(a: &[u8], b: &[i8]) -> i32 {
        let mut acc = _mm256_setzero_si256();
        let (ca, cb) = (a.chunks_exact(32), b.chunks_exact(32));
        let tail = super::portable(ca.remainder(), cb.remainder());
        for (xa, xb) in ca.zip(cb) {
            // SAFETY: each chunk is 32 readable bytes; loadu has no alignment need.
            let (va, vb) = unsafe {
                (
                    _mm256_loadu_si256(xa.as_ptr().cast()),
                    _mm256_loadu_si256(xb.as_ptr().cast()),
                )
            };
            acc = _mm256_dpbusd_avx_epi32(acc, va, vb);
        }
        sum_lanes(acc) + tail
    }

    /// AVX-512 VNNI: `vpdpbusd` (EVEX, 512-bit), 64 products per instruction.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) fn avx512_vnni(a: &[u8], b: &[i8]) -> i32 {
        let mut acc = _mm512_setzero_si512();
        let (ca, cb) = (a.chunks_exact(64), b.chunks_exact(64));
        let tail = super::portable(ca.remainder(), cb.remainder());
        for (xa, xb) in ca.zip(cb) {
            // SAFETY: each chunk is 64 readable bytes; loadu has no alignment need.
            let (va, vb) = unsafe {
                (
                    _mm512_loadu_si512(xa.as_ptr().cast()),
                    _mm512_loadu_si512(xb.as_ptr().cast()),
                )
            };
            acc = _mm512_dpbusd_epi32(acc, va, vb);
        }
        _mm512_reduce_add_epi32(acc) + tail
    }
}
