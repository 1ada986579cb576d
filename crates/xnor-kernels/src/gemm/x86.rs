//! The x86 tiles of the binary GEMM: AVX2 (nibble-table popcount) and AVX-512 VPOPCNTDQ.
//!
//! Both compute the popcounts of `a_i ^ b_j` for a register block of `MR` rows of `A` and
//! `NR` rows of `B`, loading each vector of `A` once per block column and each vector of `B`
//! once per block row, and reduce to scalars once per tile, not once per dot product.

use std::arch::x86_64::*;

/// Vectors summed in byte lanes before a `vpsadbw` flush: a byte gains at most 8 per vector
/// (4 from each nibble), and `31 * 8 = 248 <= 255`.
const BYTE_ACC_VECTORS: usize = 31;

/// The scalar tail (words past the last full vector) with the `popcnt` instruction.
#[inline(always)]
fn tail<const MR: usize, const NR: usize>(
    a: &[u64],
    b: &[u64],
    w: usize,
    from: usize,
    out: &mut [[u32; NR]; MR],
) {
    for k in from..w {
        for j in 0..NR {
            let bv = b[j * w + k];
            for i in 0..MR {
                out[i][j] += (a[i * w + k] ^ bv).count_ones();
            }
        }
    }
}

/// AVX2: the popcount of each byte of `a ^ b` from two 16-entry table lookups
/// (`vpshufb` on the low and the high nibble; Muła, Kurz and Lemire, 2018), accumulated in
/// byte lanes per (row, column) pair, summed into u64 lanes with `vpsadbw` every
/// [`BYTE_ACC_VECTORS`] vectors.
///
/// Callers check that the CPU has AVX2 and POPCNT; `a` holds `MR` rows and `b` `NR` rows of
/// `w` words each.
#[target_feature(enable = "avx2,popcnt")]
pub(super) fn tile_avx2<const MR: usize, const NR: usize>(
    a: &[u64],
    b: &[u64],
    w: usize,
    out: &mut [[u32; NR]; MR],
) {
    assert!(a.len() >= MR * w && b.len() >= NR * w);
    #[rustfmt::skip]
    let table = _mm256_setr_epi8(
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
    );
    let nibble = _mm256_set1_epi8(0x0f);
    let zero = _mm256_setzero_si256();
    let vectors = w / 4;
    let mut total = [[zero; NR]; MR];
    let mut v = 0;
    while v < vectors {
        let end = (v + BYTE_ACC_VECTORS).min(vectors);
        let mut bytes = [[zero; NR]; MR];
        #[allow(clippy::needless_range_loop)] // indices keep the tile in registers
        for s in v..end {
            // SAFETY: row i's words s*4..s*4+4 lie within a[..MR*w] (s < w/4), checked above;
            // loadu has no alignment requirement.
            let av: [__m256i; MR] = std::array::from_fn(|i| unsafe {
                _mm256_loadu_si256(a.as_ptr().add(i * w + 4 * s).cast())
            });
            for j in 0..NR {
                // SAFETY: as above, for b.
                let bv = unsafe { _mm256_loadu_si256(b.as_ptr().add(j * w + 4 * s).cast()) };
                for i in 0..MR {
                    let x = _mm256_xor_si256(av[i], bv);
                    let lo = _mm256_and_si256(x, nibble);
                    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(x), nibble);
                    let c = _mm256_add_epi8(
                        _mm256_shuffle_epi8(table, lo),
                        _mm256_shuffle_epi8(table, hi),
                    );
                    bytes[i][j] = _mm256_add_epi8(bytes[i][j], c);
                }
            }
        }
        for i in 0..MR {
            for j in 0..NR {
                total[i][j] = _mm256_add_epi64(total[i][j], _mm256_sad_epu8(bytes[i][j], zero));
            }
        }
        v = end;
    }
    for i in 0..MR {
        if NR == 4 {
            // Four columns' lanes reduced together: a 4 x 4 transpose-and-add of u64 lanes
            // (9 instructions where four horizontal sums take 28; it matters at small K).
            let t = &total[i];
            let s01 = _mm256_add_epi64(
                _mm256_unpacklo_epi64(t[0], t[1]),
                _mm256_unpackhi_epi64(t[0], t[1]),
            );
            let s23 = _mm256_add_epi64(
                _mm256_unpacklo_epi64(t[2], t[3]),
                _mm256_unpackhi_epi64(t[2], t[3]),
            );
            let s = _mm256_add_epi64(
                _mm256_permute2x128_si256::<0x20>(s01, s23),
                _mm256_permute2x128_si256::<0x31>(s01, s23),
            );
            let mut lanes = [0u64; 4];
            // SAFETY: `lanes` is 32 writable bytes; storeu has no alignment requirement.
            unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), s) };
            for (o, l) in out[i].iter_mut().zip(lanes) {
                // The depth bound (MAX_DEPTH) keeps every count within u32.
                *o = l as u32;
            }
        } else {
            for j in 0..NR {
                let t = total[i][j];
                let s = _mm256_extract_epi64::<0>(t)
                    + _mm256_extract_epi64::<1>(t)
                    + _mm256_extract_epi64::<2>(t)
                    + _mm256_extract_epi64::<3>(t);
                // The depth bound (MAX_DEPTH) keeps every count within u32.
                out[i][j] = s as u32;
            }
        }
    }
    tail(a, b, w, vectors * 4, out);
}

/// AVX-512 VPOPCNTDQ: `vpopcntq` on eight words of `a ^ b` at a time, accumulated in u64
/// lanes per (row, column) pair.
///
/// Callers check that the CPU has AVX-512 F, VPOPCNTDQ and POPCNT; `a` holds `MR` rows and
/// `b` `NR` rows of `w` words each.
#[target_feature(enable = "avx512f,avx512vpopcntdq,popcnt")]
pub(super) fn tile_avx512<const MR: usize, const NR: usize>(
    a: &[u64],
    b: &[u64],
    w: usize,
    out: &mut [[u32; NR]; MR],
) {
    assert!(a.len() >= MR * w && b.len() >= NR * w);
    let vectors = w / 8;
    let mut acc = [[_mm512_setzero_si512(); NR]; MR];
    #[allow(clippy::needless_range_loop)] // indices keep the tile in registers
    for s in 0..vectors {
        // SAFETY: row i's words s*8..s*8+8 lie within a[..MR*w] (s < w/8), checked above.
        let av: [__m512i; MR] = std::array::from_fn(|i| unsafe {
            _mm512_loadu_si512(a.as_ptr().add(i * w + 8 * s).cast())
        });
        for j in 0..NR {
            // SAFETY: as above, for b.
            let bv = unsafe { _mm512_loadu_si512(b.as_ptr().add(j * w + 8 * s).cast()) };
            for i in 0..MR {
                let x = _mm512_xor_si512(av[i], bv);
                acc[i][j] = _mm512_add_epi64(acc[i][j], _mm512_popcnt_epi64(x));
            }
        }
    }
    for i in 0..MR {
        for j in 0..NR {
            // The depth bound (MAX_DEPTH) keeps every count within u32.
            out[i][j] = _mm512_reduce_add_epi64(acc[i][j]) as u32;
        }
    }
    tail(a, b, w, vectors * 8, out);
}
