//! The x86 tiles of the binary GEMM: AVX2 (nibble-table popcount) and AVX-512 VPOPCNTDQ.
//!
//! Each computes the popcounts of `a_i ^ b_j` for a register block of `MR` rows of `A` and
//! `NR` rows of `B`, loading each vector of `A` once per block column and each vector of `B`
//! once per block row, and reduces to scalars once per tile, not once per dot product. The
//! AVX2 tiles (nibble table on packed words, nibble planes) share their byte-lane
//! accumulation and reduction ([`counts`]).

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
/// byte lanes per (row, column) pair and summed by [`counts`].
///
/// Callers check that the CPU has AVX2 and POPCNT; `a` holds `MR` rows and `b` `NR` rows of
/// `w` words each.
#[target_feature(enable = "avx2,popcnt")]
#[inline]
#[allow(clippy::needless_range_loop)] // indices keep the tile in registers
pub(super) fn tile_avx2<const MR: usize, const NR: usize>(
    a: &[u64],
    b: &[u64],
    w: usize,
    out: &mut [[u32; NR]; MR],
) {
    assert!(a.len() >= MR * w && b.len() >= NR * w);
    let table = nibble_popcounts();
    let nibble = _mm256_set1_epi8(0x0f);
    let vectors = w / 4;
    counts::<MR, NR>(vectors, out, |s, bytes| {
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
    });
    tail(a, b, w, vectors * 4, out);
}

/// AVX2 on rows stored as nibble planes ([`super::planes`]): per (row, column) pair and
/// vector, `T[alo ^ blo] + T[ahi ^ bhi]` (two `vpxor`, two `vpshufb`, two `vpaddb`; the
/// masks and the shift of [`tile_avx2`] were done once per row when the planes were split).
/// `a_lo ^ b_lo` is the low nibbles of `a ^ b`, as masking commutes with XOR, so the counts
/// are those of [`tile_avx2`].
///
/// Callers check that the CPU has AVX2 and POPCNT; `a` holds `MR` rows and `b` `NR` rows of
/// `stride` words each, laid out as [`super::planes::split`] writes them.
#[target_feature(enable = "avx2,popcnt")]
#[inline]
#[allow(clippy::needless_range_loop)] // indices keep the tile in registers
pub(super) fn tile_avx2_planes<const MR: usize, const NR: usize>(
    a: &[u64],
    b: &[u64],
    stride: usize,
    out: &mut [[u32; NR]; MR],
) {
    assert!(a.len() >= MR * stride && b.len() >= NR * stride);
    let table = nibble_popcounts();
    // Each vector is 8 words (a low and a high plane); the tail is shorter than 4 words.
    let vectors = stride / 8;
    counts::<MR, NR>(vectors, out, |s, bytes| {
        // SAFETY: row i's words 8s..8s+8 lie within a[..MR*stride] (s < stride/8),
        // checked above; loadu has no alignment requirement.
        let load = |p: &[u64], at: usize| unsafe { _mm256_loadu_si256(p.as_ptr().add(at).cast()) };
        let lo: [__m256i; MR] = std::array::from_fn(|i| load(a, i * stride + 8 * s));
        let hi: [__m256i; MR] = std::array::from_fn(|i| load(a, i * stride + 8 * s + 4));
        for j in 0..NR {
            let (blo, bhi) = (load(b, j * stride + 8 * s), load(b, j * stride + 8 * s + 4));
            for i in 0..MR {
                let c = _mm256_add_epi8(
                    _mm256_shuffle_epi8(table, _mm256_xor_si256(lo[i], blo)),
                    _mm256_shuffle_epi8(table, _mm256_xor_si256(hi[i], bhi)),
                );
                bytes[i][j] = _mm256_add_epi8(bytes[i][j], c);
            }
        }
    });
    tail(a, b, stride, vectors * 8, out);
}

/// The popcounts of the 16 nibbles, in both 128-bit lanes (the `vpshufb` table).
#[target_feature(enable = "avx2")]
#[inline]
fn nibble_popcounts() -> __m256i {
    #[rustfmt::skip]
    let table = _mm256_setr_epi8(
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
    );
    table
}

/// Byte-lane counts of `vectors` vectors per (row, column) pair (tiles of other than four
/// columns): `step(s, bytes)` adds
/// vector `s`'s per-byte counts (at most 8 a byte) into `bytes`, which are summed into u64
/// lanes with `vpsadbw` every [`BYTE_ACC_VECTORS`] vectors. Returns the u64 lanes.
#[target_feature(enable = "avx2")]
#[inline]
fn accumulate<const MR: usize, const NR: usize>(
    vectors: usize,
    mut step: impl FnMut(usize, &mut [[__m256i; NR]; MR]),
) -> [[__m256i; NR]; MR] {
    let zero = _mm256_setzero_si256();
    let mut total = [[zero; NR]; MR];
    let mut v = 0;
    while v < vectors {
        let end = (v + BYTE_ACC_VECTORS).min(vectors);
        let mut bytes = [[zero; NR]; MR];
        for s in v..end {
            step(s, &mut bytes);
        }
        for i in 0..MR {
            for j in 0..NR {
                total[i][j] = _mm256_add_epi64(total[i][j], _mm256_sad_epu8(bytes[i][j], zero));
            }
        }
        v = end;
    }
    total
}

/// Vectors summed in byte lanes before [`counts`] merges a row's four columns: a merged byte
/// adds four bytes of at most 8 per vector, and `4 * 8 * 7 = 224 <= 255`.
const MERGED_ACC_VECTORS: usize = 7;

/// The popcounts of `vectors` vectors per (row, column) pair into `out`: `step(s, bytes)`
/// adds vector `s`'s per-byte counts (at most 8 a byte) into `bytes`.
///
/// With four columns (the full tiles) the byte counts of a row's four pairs are merged before
/// `vpsadbw`: `unpack{lo,hi}` + add and `vperm2i128` + add fold each pair's four 64-bit
/// quarters into one, so one `vpsadbw` yields the row's four counts in its four u64 lanes
/// (12 instructions per four pairs with the store, where a `vpsadbw` per pair and a 4 x 4
/// transpose of the lanes took 19: the reduction is most of a pair's cost at small K).
#[target_feature(enable = "avx2")]
#[inline]
fn counts<const MR: usize, const NR: usize>(
    vectors: usize,
    out: &mut [[u32; NR]; MR],
    mut step: impl FnMut(usize, &mut [[__m256i; NR]; MR]),
) {
    let zero = _mm256_setzero_si256();
    if NR != 4 {
        let total = accumulate(vectors, step);
        for i in 0..MR {
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
        return;
    }
    let mut total = [zero; MR];
    let mut v = 0;
    while v < vectors {
        let end = (v + MERGED_ACC_VECTORS).min(vectors);
        let mut bytes = [[zero; NR]; MR];
        for s in v..end {
            step(s, &mut bytes);
        }
        for (t, b) in total.iter_mut().zip(&bytes) {
            // Quarters q of columns 0 and 1: [c0 q0+q1, c1 q0+q1 | c0 q2+q3, c1 q2+q3].
            let x01 = _mm256_add_epi8(
                _mm256_unpacklo_epi64(b[0], b[1]),
                _mm256_unpackhi_epi64(b[0], b[1]),
            );
            let x23 = _mm256_add_epi8(
                _mm256_unpacklo_epi64(b[2], b[3]),
                _mm256_unpackhi_epi64(b[2], b[3]),
            );
            // One 64-bit lane per column, each the sum of the column's four quarters.
            let y = _mm256_add_epi8(
                _mm256_permute2x128_si256::<0x20>(x01, x23),
                _mm256_permute2x128_si256::<0x31>(x01, x23),
            );
            *t = _mm256_add_epi64(*t, _mm256_sad_epu8(y, zero));
        }
        v = end;
    }
    let low = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
    for (t, o) in total.iter().zip(out.iter_mut()) {
        // The low halves of the four u64 lanes (the depth bound, MAX_DEPTH, keeps every
        // count within u32), stored as the row's four counts at once.
        let c = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(*t, low));
        // SAFETY: `o` is [u32; 4] here (NR == 4), 16 writable bytes; storeu has no
        // alignment requirement.
        unsafe { _mm_storeu_si128(o.as_mut_ptr().cast(), c) };
    }
}

/// AVX-512 VPOPCNTDQ: `vpopcntq` on eight words of `a ^ b` at a time, accumulated in u64
/// lanes per (row, column) pair. The words past the last full vector (`w % 8`) run as one
/// more vector with a zero-masked load (masked-off words read as 0 on both sides, and
/// `0 ^ 0` counts nothing), so K = 256 (4 words) is one half-used vector, not four scalar
/// `popcnt`s per pair. The tile's lane sums come from [`lane_sums`], eight pairs at a time.
///
/// Callers check that the CPU has AVX-512 F, VPOPCNTDQ and POPCNT; `a` holds `MR` rows and
/// `b` `NR` rows of `w` words each.
#[target_feature(enable = "avx512f,avx512vpopcntdq,popcnt")]
#[inline]
#[allow(clippy::needless_range_loop)] // indices keep the tile in registers
pub(super) fn tile_avx512<const MR: usize, const NR: usize>(
    a: &[u64],
    b: &[u64],
    w: usize,
    out: &mut [[u32; NR]; MR],
) {
    assert!(a.len() >= MR * w && b.len() >= NR * w);
    let vectors = w / 8;
    let mut acc = [[_mm512_setzero_si512(); NR]; MR];
    // One vector step at word `$at` of every row, each row's vector loaded by `$load`.
    macro_rules! step {
        ($at:expr, $load:expr) => {
            let at = $at;
            let av: [__m512i; MR] = std::array::from_fn(|i| $load(a, i * w + at));
            for j in 0..NR {
                let bv = $load(b, j * w + at);
                for i in 0..MR {
                    let x = _mm512_xor_si512(av[i], bv);
                    acc[i][j] = _mm512_add_epi64(acc[i][j], _mm512_popcnt_epi64(x));
                }
            }
        };
    }
    // SAFETY: words at..at+8 of a row lie within it (s < w/8), and the rows within
    // a[..MR*w] and b[..NR*w] (checked above); loadu has no alignment requirement.
    let full = |p: &[u64], at: usize| unsafe { _mm512_loadu_si512(p.as_ptr().add(at).cast()) };
    for s in 0..vectors {
        step!(8 * s, full);
    }
    let rest = w % 8;
    if rest != 0 {
        let mask: __mmask8 = (1u8 << rest) - 1;
        // SAFETY: the mask enables the row's last `rest` words, within the slice (as
        // above); masked-off words are not read, so nothing past the slice is touched.
        let part = |p: &[u64], at: usize| unsafe {
            _mm512_maskz_loadu_epi64(mask, p.as_ptr().add(at).cast())
        };
        step!(8 * vectors, part);
    }
    let flat = out.as_flattened_mut();
    for g in (0..MR * NR).step_by(8) {
        let v: [__m512i; 8] = std::array::from_fn(|l| {
            let p = g + l;
            if p < MR * NR {
                acc[p / NR][p % NR]
            } else {
                _mm512_setzero_si512()
            }
        });
        // The depth bound (MAX_DEPTH) keeps every count within u32.
        let mut sums = [0u32; 8];
        // SAFETY: `sums` is 8 writable u32; storeu has no alignment requirement.
        unsafe {
            _mm256_storeu_si256(
                sums.as_mut_ptr().cast(),
                _mm512_cvtepi64_epi32(lane_sums(v)),
            )
        };
        let n = (MR * NR - g).min(8);
        flat[g..g + n].copy_from_slice(&sums[..n]);
    }
}

/// The sums of eight vectors' u64 lanes: lane `l` of the result is the sum of the eight lanes
/// of `v[l]` (21 shuffle and add instructions for eight sums, where a
/// `_mm512_reduce_add_epi64` per vector takes 7 each).
#[target_feature(enable = "avx512f")]
#[inline]
fn lane_sums(v: [__m512i; 8]) -> __m512i {
    // Per 128-bit chunk c of x and y: [x_2c + x_2c+1, y_2c + y_2c+1].
    let pair = |x, y| _mm512_add_epi64(_mm512_unpacklo_epi64(x, y), _mm512_unpackhi_epi64(x, y));
    // Chunks of x and y: [x_0 + x_1, x_2 + x_3, y_0 + y_1, y_2 + y_3].
    let halve = |x, y| {
        _mm512_add_epi64(
            _mm512_shuffle_i64x2::<0b10_00_10_00>(x, y),
            _mm512_shuffle_i64x2::<0b11_01_11_01>(x, y),
        )
    };
    let (t01, t23, t45, t67) = (
        pair(v[0], v[1]),
        pair(v[2], v[3]),
        pair(v[4], v[5]),
        pair(v[6], v[7]),
    );
    // Chunk c of halve(halve(t01, t23), halve(t45, t67)) is t_{2c,2c+1} summed over its four
    // chunks: lanes 2c and 2c + 1 hold the totals of v[2c] and v[2c + 1].
    halve(halve(t01, t23), halve(t45, t67))
}
