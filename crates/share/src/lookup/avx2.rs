//! AVX2 + FMA lookup kernels: codes select their centroids from registers, then FMAs.
//!
//! - `k <= 8`: eight codes widened to i32 lanes index one register of centroids (`vpermd`).
//! - `9 <= k <= 32`, 32 codes at a time: the codebook is split into its four byte planes
//!   (byte `p` of every centroid), 16 centroids per `vpshufb` table; each plane of 32
//!   weights is one `vpshufb` (two and a `vpblendvb` on code bit 4 when `k > 16`), and
//!   byte unpacks reassemble the 32 f32 weights, interleaved by 128-bit lane; the GEMV
//!   reorders its input once to match ([`interleave_x`]), the decode for the GEMM swaps
//!   lanes back. Measured against looking up eight codes with `vpermd` from four registers
//!   selected by `vblendvps` on code bits 3 and 4, and against `vgatherdps` (AMD EPYC
//!   Zen 3, lenet300.fc1 and 4096x4096, k = 32, one thread): 49-73 us against 167 and
//!   224 us, 5.4 ms against 13.6 and 13.4 ms (lookup/mod.rs has the table). The
//!   eight-code `vpermd` form still serves row tails shorter than 32.
//! - `k > 32`: one `vgatherdps` from the 256-entry table (always in bounds: a byte indexes
//!   it).

use std::arch::x86_64::*;

use super::MAX_CENTROIDS;

/// How eight weights are looked up, by codebook size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Select {
    /// `k <= 8`: one permute.
    Perm8,
    /// `k <= 16`: byte planes, one shuffle per plane (two permutes, one blend per eight).
    Shuffle16,
    /// `k <= 32`: byte planes, two shuffles and a blend per plane (four permutes, three
    /// blends per eight).
    Shuffle32,
    /// `k > 32`: a gather from the table.
    Gather,
}

impl Select {
    /// The cheapest lookup for `k` centroids.
    pub(super) fn for_k(k: usize) -> Self {
        match k {
            0..=8 => Select::Perm8,
            9..=16 => Select::Shuffle16,
            17..=32 => Select::Shuffle32,
            _ => Select::Gather,
        }
    }
}

/// The registers a lookup needs, built once per kernel call.
#[derive(Clone, Copy)]
pub(crate) struct Tables {
    select: Select,
    regs: [__m256; 4],
    planes: Planes,
}

impl Tables {
    /// The registers of `table` for `select`.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn new(select: Select, table: &[f32; MAX_CENTROIDS]) -> Self {
        Self {
            select,
            regs: registers(table),
            planes: planes(table),
        }
    }
}

/// `sum_i table[codes[i]] * x[i]` over `min(codes.len(), x.len())` terms, where `x` is
/// [`interleave_x`] of the input when that is `Some`.
///
/// # Safety
/// The CPU must support AVX2 and FMA; `t` was built from `table`; every code is `< k`.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dot(t: &Tables, table: &[f32; MAX_CENTROIDS], codes: &[u8], x: &[f32]) -> f32 {
    match t.select {
        Select::Perm8 => dot_k::<8>(t, table, codes, x),
        Select::Shuffle16 => dot_k::<16>(t, table, codes, x),
        Select::Shuffle32 => dot_k::<32>(t, table, codes, x),
        Select::Gather => dot_k::<256>(t, table, codes, x),
    }
}

/// `w[i] = table[codes[i]]` over `min(codes.len(), w.len())` entries.
///
/// # Safety
/// As [`dot`].
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn decode(t: &Tables, table: &[f32; MAX_CENTROIDS], codes: &[u8], w: &mut [f32]) {
    match t.select {
        Select::Perm8 => decode_k::<8>(t, table, codes, w),
        Select::Shuffle16 => decode_k::<16>(t, table, codes, w),
        Select::Shuffle32 => decode_k::<32>(t, table, codes, w),
        Select::Gather => decode_k::<256>(t, table, codes, w),
    }
}

/// The first 32 centroids in four registers.
#[target_feature(enable = "avx2,fma")]
fn registers(table: &[f32; MAX_CENTROIDS]) -> [__m256; 4] {
    // SAFETY: each load reads 8 floats at offsets 0, 8, 16, 24 of a 256-float array.
    unsafe {
        let p = table.as_ptr();
        [
            _mm256_loadu_ps(p),
            _mm256_loadu_ps(p.add(8)),
            _mm256_loadu_ps(p.add(16)),
            _mm256_loadu_ps(p.add(24)),
        ]
    }
}

/// The four byte planes of the first 32 centroids as `vpshufb` tables: `lo[p]` holds byte
/// `p` of centroids 0..16, `hi[p]` of centroids 16..32, each in both 128-bit lanes.
#[derive(Clone, Copy)]
struct Planes {
    lo: [__m256i; 4],
    hi: [__m256i; 4],
}

#[target_feature(enable = "avx2,fma")]
fn planes(table: &[f32; MAX_CENTROIDS]) -> Planes {
    let plane = |first: usize, p: usize| {
        let mut b = [0u8; 32];
        for c in 0..16 {
            let byte = table[first + c].to_le_bytes()[p];
            b[c] = byte;
            b[16 + c] = byte;
        }
        // SAFETY: reads the 32 bytes of a local array.
        unsafe { _mm256_loadu_si256(b.as_ptr() as *const __m256i) }
    };
    Planes {
        lo: [plane(0, 0), plane(0, 1), plane(0, 2), plane(0, 3)],
        hi: [plane(16, 0), plane(16, 1), plane(16, 2), plane(16, 3)],
    }
}

/// The centroids of the 32 codes at `codes` for `k <= 32` (module docs), in the order the
/// byte unpacks leave them: register `q` holds weights `4q..4q+4` in its low 128-bit lane
/// and `16+4q..16+4q+4` in its high lane ([`interleave_x`] puts inputs in that order).
///
/// # Safety
/// `codes` must be valid for reading 32 bytes, each `< 32`; AVX2 must be available.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn lookup32_interleaved<const K: usize>(pl: &Planes, codes: *const u8) -> [__m256i; 4] {
    // SAFETY: the caller guarantees 32 readable bytes.
    let c = unsafe { _mm256_loadu_si256(codes as *const __m256i) };
    // Code bit 4 moved to bit 7 of its byte, where vpblendvb looks.
    let bit4 = _mm256_slli_epi16::<3>(c);
    let plane = |p: usize| {
        let lo = _mm256_shuffle_epi8(pl.lo[p], c);
        if K <= 16 {
            lo
        } else {
            _mm256_blendv_epi8(lo, _mm256_shuffle_epi8(pl.hi[p], c), bit4)
        }
    };
    let (b0, b1, b2, b3) = (plane(0), plane(1), plane(2), plane(3));
    // Per 128-bit lane: weights 0..8 (lane 1: 16..24) and 8..16 (24..32) as byte pairs,
    let (l01, h01) = (_mm256_unpacklo_epi8(b0, b1), _mm256_unpackhi_epi8(b0, b1));
    let (l23, h23) = (_mm256_unpacklo_epi8(b2, b3), _mm256_unpackhi_epi8(b2, b3));
    // then whole f32: [0..4 | 16..20], [4..8 | 20..24], [8..12 | 24..28], [12..16 | 28..32].
    [
        _mm256_unpacklo_epi16(l01, l23),
        _mm256_unpackhi_epi16(l01, l23),
        _mm256_unpacklo_epi16(h01, h23),
        _mm256_unpackhi_epi16(h01, h23),
    ]
}

/// The centroids of the 32 codes at `codes`, in order, for `k <= 32`.
///
/// # Safety
/// As [`lookup32_interleaved`].
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn lookup32<const K: usize>(pl: &Planes, codes: *const u8) -> [__m256; 4] {
    // SAFETY: forwarded from the caller.
    let [f0, f1, f2, f3] = unsafe { lookup32_interleaved::<K>(pl, codes) };
    [
        _mm256_castsi256_ps(_mm256_permute2x128_si256::<0x20>(f0, f1)),
        _mm256_castsi256_ps(_mm256_permute2x128_si256::<0x20>(f2, f3)),
        _mm256_castsi256_ps(_mm256_permute2x128_si256::<0x31>(f0, f1)),
        _mm256_castsi256_ps(_mm256_permute2x128_si256::<0x31>(f2, f3)),
    ]
}

/// The input of [`dot`] for this lookup class: for the byte-plane classes, every whole
/// block of 32 inputs reordered as [`lookup32_interleaved`] leaves the weights (the tail
/// unchanged), so the dot product needs no lane swaps; `None` for the other classes (the
/// input is used as it is). Built once per GEMV and shared by every row.
pub(crate) fn interleave_x(t: &Tables, x: &[f32]) -> Option<Vec<f32>> {
    if !matches!(t.select, Select::Shuffle16 | Select::Shuffle32) {
        return None;
    }
    let mut xi = x.to_vec();
    for (dst, src) in xi.chunks_exact_mut(32).zip(x.chunks_exact(32)) {
        for q in 0..4 {
            for l in 0..4 {
                dst[8 * q + l] = src[4 * q + l];
                dst[8 * q + 4 + l] = src[16 + 4 * q + l];
            }
        }
    }
    Some(xi)
}

/// The centroids of the eight codes at `codes` (a class `K` lookup).
///
/// # Safety
/// `codes` must be valid for reading 8 bytes; AVX2 must be available.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn lookup<const K: usize>(
    regs: &[__m256; 4],
    table: *const f32,
    codes: *const u8,
) -> __m256 {
    // SAFETY: the caller guarantees 8 readable bytes; the gather reads table[0..256) only
    // (a byte code is < 256 and the table has 256 entries).
    unsafe {
        let idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64(codes as *const __m128i));
        if K <= 8 {
            return _mm256_permutevar8x32_ps(regs[0], idx);
        }
        if K > 32 {
            return _mm256_i32gather_ps::<4>(table, idx);
        }
        let bit3 = _mm256_castsi256_ps(_mm256_slli_epi32::<28>(idx));
        let lo = _mm256_blendv_ps(
            _mm256_permutevar8x32_ps(regs[0], idx),
            _mm256_permutevar8x32_ps(regs[1], idx),
            bit3,
        );
        if K <= 16 {
            return lo;
        }
        let hi = _mm256_blendv_ps(
            _mm256_permutevar8x32_ps(regs[2], idx),
            _mm256_permutevar8x32_ps(regs[3], idx),
            bit3,
        );
        let bit4 = _mm256_castsi256_ps(_mm256_slli_epi32::<27>(idx));
        _mm256_blendv_ps(lo, hi, bit4)
    }
}

#[target_feature(enable = "avx2,fma")]
fn dot_k<const K: usize>(t: &Tables, table: &[f32; MAX_CENTROIDS], codes: &[u8], x: &[f32]) -> f32 {
    let n = codes.len().min(x.len());
    let (regs, pl) = (&t.regs, &t.planes);
    let (cp, xp, tp) = (codes.as_ptr(), x.as_ptr(), table.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY: every access reads codes[i..i + 8] and x[i..i + 8] with i + 8 <= n (32 with
    // i + 32 <= n); codes are < k, so < 32 on the byte-plane path.
    unsafe {
        while i + 32 <= n {
            let w = if K > 8 && K <= 32 {
                lookup32_interleaved::<K>(pl, cp.add(i)).map(|f| _mm256_castsi256_ps(f))
            } else {
                [0, 1, 2, 3].map(|u| lookup::<K>(regs, tp, cp.add(i + 8 * u)))
            };
            for (u, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(w[u], _mm256_loadu_ps(xp.add(i + 8 * u)), *a);
            }
            i += 32;
        }
        while i + 8 <= n {
            let w = lookup::<K>(regs, tp, cp.add(i));
            acc[0] = _mm256_fmadd_ps(w, _mm256_loadu_ps(xp.add(i)), acc[0]);
            i += 8;
        }
    }
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut s = hsum(v);
    for j in i..n {
        s += table[codes[j] as usize] * x[j];
    }
    s
}

#[target_feature(enable = "avx2,fma")]
fn decode_k<const K: usize>(t: &Tables, table: &[f32; MAX_CENTROIDS], codes: &[u8], w: &mut [f32]) {
    let n = codes.len().min(w.len());
    let (regs, pl) = (&t.regs, &t.planes);
    let mut i = 0;
    // SAFETY: reads codes[i..i + 8] and writes w[i..i + 8] with i + 8 <= n (32 with
    // i + 32 <= n); codes are < k, so < 32 on the byte-plane path.
    unsafe {
        if K > 8 && K <= 32 {
            while i + 32 <= n {
                let v = lookup32::<K>(pl, codes.as_ptr().add(i));
                for (u, v) in v.iter().enumerate() {
                    _mm256_storeu_ps(w.as_mut_ptr().add(i + 8 * u), *v);
                }
                i += 32;
            }
        }
        while i + 8 <= n {
            let v = lookup::<K>(regs, table.as_ptr(), codes.as_ptr().add(i));
            _mm256_storeu_ps(w.as_mut_ptr().add(i), v);
            i += 8;
        }
    }
    for j in i..n {
        w[j] = table[codes[j] as usize];
    }
}

/// Sum of the eight lanes.
#[target_feature(enable = "avx2,fma")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s)))
}
