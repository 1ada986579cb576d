//! Unpacking codes of at most 8 bits to bytes: the decode step of a kernel that reads the
//! packed form directly, portable and AVX2.
//!
//! Eight codes of `b` bits fill exactly `b` bytes, so from a byte-aligned code on, groups
//! of eight decode alike: code `j` of a group starts at bit `b j` of it, in bytes
//! `floor(b j / 8)` and the next, shifted right by `b j mod 8`. The portable loop reads a
//! group as one little-endian u64; the AVX2 loop places the two bytes of each code in a
//! 16-bit lane with `vpshufb` (two groups per register, one per 128-bit lane), shifts each
//! lane by its own amount with a multiply (`v << (8 - s)` then `>> 8`: AVX2 has no
//! per-lane 16-bit shift), masks, and packs to bytes: 32 codes in about 16 instructions.
//! Codes before the first byte-aligned one, and the tail, go one at a time.

use tensor_core::dispatch::F32Path;

/// Code `i` of the stream (bits `<= 8`; `i` in range).
fn one(bytes: &[u8], bits: usize, i: usize) -> u8 {
    let bit = i * bits;
    let lo = bytes[bit / 8] as u16;
    let hi = bytes.get(bit / 8 + 1).copied().unwrap_or(0) as u16;
    (((lo | hi << 8) >> (bit % 8)) & ((1u16 << bits) - 1)) as u8
}

/// Codes `start .. start + out.len()` of `bytes` (`bits` in `1..=8`, range checked by the
/// caller) into `out`, on `tier` (a tier the CPU supports).
pub(super) fn unpack(tier: F32Path, bytes: &[u8], bits: u32, start: usize, out: &mut [u8]) {
    let b = bits as usize;
    if b == 8 {
        out.copy_from_slice(&bytes[start..start + out.len()]);
        return;
    }
    // Head: up to the first code that starts on a byte boundary.
    let mut i = 0;
    while i < out.len() && !((start + i) * b).is_multiple_of(8) {
        out[i] = one(bytes, b, start + i);
        i += 1;
    }
    let byte = (start + i) * b / 8;
    let done = match tier {
        #[cfg(target_arch = "x86_64")]
        F32Path::Avx2Fma | F32Path::Avx512F if F32Path::Avx2Fma.is_supported() => {
            // SAFETY: AVX2 was just detected; the function bounds its own reads.
            unsafe { avx2::groups(&bytes[byte..], bits, &mut out[i..]) }
        }
        _ => groups_portable(&bytes[byte..], b, &mut out[i..]),
    };
    i += done;
    while i < out.len() {
        out[i] = one(bytes, b, start + i);
        i += 1;
    }
}

/// Whole groups of eight codes from byte-aligned `bytes` while eight bytes can be read;
/// returns the codes written.
fn groups_portable(bytes: &[u8], b: usize, out: &mut [u8]) -> usize {
    let mask = (1u64 << b) - 1;
    let mut i = 0;
    let mut p = 0;
    while i + 8 <= out.len()
        && let Some(group) = bytes.get(p..p + 8)
    {
        let mut w = [0u8; 8];
        w.copy_from_slice(group);
        let w = u64::from_le_bytes(w);
        for (j, o) in out[i..i + 8].iter_mut().enumerate() {
            *o = ((w >> (b * j)) & mask) as u8;
        }
        i += 8;
        p += b;
    }
    i
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Whole runs of 32 codes (four groups) from byte-aligned `bytes` while each lane's
    /// 16-byte load stays inside `bytes`; returns the codes written. `bits` in `1..=7`.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn groups(bytes: &[u8], bits: u32, out: &mut [u8]) -> usize {
        let b = bits as usize;
        let mut control = [0u8; 32];
        let mut multiplier = [0u16; 16];
        for j in 0..8 {
            let (byte, shift) = ((b * j / 8) as u8, (b * j % 8) as u32);
            for lane in 0..2 {
                control[16 * lane + 2 * j] = byte;
                control[16 * lane + 2 * j + 1] = byte + 1;
                multiplier[8 * lane + j] = 1 << (8 - shift);
            }
        }
        // SAFETY: loads of local arrays of 32 bytes.
        let (control, multiplier) = unsafe {
            (
                _mm256_loadu_si256(control.as_ptr() as *const __m256i),
                _mm256_loadu_si256(multiplier.as_ptr() as *const __m256i),
            )
        };
        let mask = _mm256_set1_epi16((1i16 << b) - 1);
        // Codes of two groups (one per 128-bit lane) at `p` and `p + b`.
        let two = |p: *const u8| {
            // SAFETY: the loop below keeps p + b + 16 <= bytes.len().
            let v = unsafe { _mm256_loadu2_m128i(p.add(b) as *const __m128i, p as *const __m128i) };
            let v = _mm256_shuffle_epi8(v, control);
            _mm256_and_si256(
                _mm256_srli_epi16::<8>(_mm256_mullo_epi16(v, multiplier)),
                mask,
            )
        };
        let mut i = 0;
        let mut p = 0;
        while i + 32 <= out.len() && p + 3 * b + 16 <= bytes.len() {
            let base = bytes.as_ptr();
            // SAFETY: p + 3b + 16 <= len bounds all four lane loads.
            let (lo, hi) = unsafe { (two(base.add(p)), two(base.add(p + 2 * b))) };
            // packus interleaves 64-bit quarters as [0..8, 16..24, 8..16, 24..32].
            let packed = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi16(lo, hi));
            // SAFETY: writes out[i..i + 32], inside `out`.
            unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(i) as *mut __m256i, packed) };
            i += 32;
            p += 4 * b;
        }
        i
    }
}
