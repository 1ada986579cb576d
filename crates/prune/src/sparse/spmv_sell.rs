//! Batch-1 product from the SELL-C-σ layout, `y = W x + b`: eight rows per SIMD step (two
//! steps per 512-bit gather on AVX-512).

use super::csr::{ColIndex, ColIndices};
use super::partition::{PAR_MIN_NNZ, run_pieces, split_by_cost};
use super::scratch::with_scratch;
use super::sell::{SELL_C, SELL_SIGMA, SellCs};
use super::spmv::check_operands;
use super::{Simd, SparseParams, simd_for, threads_for};
use crate::error::Result;
use tensor_core::dispatch::F32Path;

/// Slices per sorting window (rows are permuted only within a window).
const WINDOW_SLICES: usize = SELL_SIGMA / SELL_C;

/// `y[r] = sum_k W[r, k] x[k] + bias[r]` from the SELL-C-σ layout `w` (see [`SellCs`]).
///
/// Each row is accumulated in f32 (one SIMD lane per row): in column order with AVX2 (one
/// FMA per entry) and portably (multiply then add); with AVX-512 F ([`F32Path::Avx512F`])
/// in four interleaved partial sums, two steps of a slice per 512-bit gather and FMA (see
/// `slice_avx512`). Results match [`super::spmv_reference`] within the rounding of an
/// `nnz(r)`-term sum (bit for bit when every partial sum is exact). Padding entries multiply 0 by a zero
/// appended to `x`, so they add exactly +0. Sorting windows are split among threads by
/// entries when `w.nnz() >= PAR_MIN_NNZ` and `p.threads != 1`.
///
/// Errors: slice lengths that do not match `w`; an unsupported tier.
pub fn spmv_sell(
    w: &SellCs,
    x: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    p: &SparseParams,
) -> Result<()> {
    const OP: &str = "spmv_sell";
    check_operands(OP, (w.rows(), w.cols()), 1, x, bias, y)?;
    let simd = simd_for(OP, p.tier)?;
    let wide = p.tier == F32Path::Avx512F;
    let parts = threads_for(p, w.nnz(), PAR_MIN_NNZ);
    with_scratch(w.cols() + 1, |xz| {
        xz[..w.cols()].copy_from_slice(x);
        xz[w.cols()] = 0.0; // what padding entries read
        let xz = &*xz;
        match w.col_idx() {
            ColIndices::U16(ci) => run(w, ci, xz, bias, y, (simd, wide), parts),
            ColIndices::U32(ci) => run(w, ci, xz, bias, y, (simd, wide), parts),
        }
    });
    Ok(())
}

/// All windows, split into `parts` pieces by entries; each piece writes its own rows.
/// `wide`: the AVX-512 kernel runs where `simd` is [`Simd::Avx2`].
fn run<I: ColIndex>(
    w: &SellCs,
    ci: &[I],
    xz: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    (simd, wide): (Simd, bool),
    parts: usize,
) {
    let slices = w.slices();
    let windows = slices.len().div_ceil(WINDOW_SLICES);
    let start_of = |win: usize| {
        slices
            .get(win * WINDOW_SLICES)
            .map_or(w.padded_len(), |&(s, _)| s) as u64
    };
    let bounds = if parts > 1 {
        split_by_cost(0..windows, parts, start_of)
    } else {
        vec![0, windows]
    };
    let mut pieces = Vec::with_capacity(bounds.len());
    let mut rest = y;
    for b in bounds.windows(2) {
        let rows = (b[0] * SELL_SIGMA).min(w.rows())..(b[1] * SELL_SIGMA).min(w.rows());
        let (head, tail) = rest.split_at_mut(rows.len());
        pieces.push((b[0]..b[1], head));
        rest = tail;
    }
    let piece = |wins: std::ops::Range<usize>, out: &mut [f32]| {
        let row0 = wins.start * SELL_SIGMA;
        let first = wins.start * WINDOW_SLICES;
        let last = (wins.end * WINDOW_SLICES).min(slices.len());
        for (s, &(start, steps)) in slices.iter().enumerate().take(last).skip(first) {
            let len = steps * SELL_C;
            let (vals, idx) = (&w.values()[start..start + len], &ci[start..start + len]);
            let acc = match simd {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `wide` is only set for the AVX-512 F tier, which simd_for checked
                // this CPU runs.
                Simd::Avx2 if wide => unsafe { slice_avx512(vals, idx, xz) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: Simd::Avx2 is only produced by simd_for after checking the CPU.
                Simd::Avx2 => unsafe { slice_avx2(vals, idx, xz) },
                _ => slice_portable(vals, idx, xz),
            };
            for (l, &a) in acc.iter().enumerate() {
                let r = w.lane_row()[s * SELL_C + l] as usize;
                if r < w.rows() {
                    // Lanes of window slices hold rows of that window: row0 <= r < row0 +
                    // out.len().
                    out[r - row0] = a + bias.map_or(0.0, |b| b[r]);
                }
            }
        }
    };
    if pieces.len() <= 1 {
        if let Some((wins, out)) = pieces.pop() {
            piece(wins, out);
        }
    } else {
        run_pieces(pieces, piece);
    }
}

/// The 8 lane sums of one slice: `acc[l] = sum_j vals[8j + l] * xz[idx[8j + l]]`.
///
/// Every index is `<= cols < xz.len()` (CSR columns or the sentinel `cols`), and
/// `vals.len() == idx.len()` is a multiple of 8 (the layout's construction).
#[inline(always)]
fn slice_portable<I: ColIndex>(vals: &[f32], idx: &[I], xz: &[f32]) -> [f32; SELL_C] {
    let mut acc = [0.0f32; SELL_C];
    for (v8, i8) in vals.chunks_exact(SELL_C).zip(idx.chunks_exact(SELL_C)) {
        for l in 0..SELL_C {
            // SAFETY: i8[l] <= cols < xz.len() (see the function docs).
            acc[l] += v8[l] * unsafe { *xz.get_unchecked(i8[l].idx()) };
        }
    }
    acc
}

/// [`slice_portable`] with AVX2: per step, eight `xz` values loaded by scalar loads into one
/// vector and one FMA (the gather form measured in [`super::spmv`]).
///
/// # Safety
/// The CPU must support AVX2 and FMA; the preconditions of [`slice_portable`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn slice_avx2<I: ColIndex>(vals: &[f32], idx: &[I], xz: &[f32]) -> [f32; SELL_C] {
    use std::arch::x86_64::*;
    let xp = xz.as_ptr();
    let mut acc = _mm256_setzero_ps();
    for (k, v8) in vals.chunks_exact(SELL_C).enumerate() {
        let i = super::spmv::idx8(idx, k * SELL_C);
        // SAFETY: every i[l] <= cols < xz.len(); v8 holds 8 floats.
        unsafe {
            let l = |j: usize| *xp.add(i[j]);
            let xv = _mm256_set_ps(l(7), l(6), l(5), l(4), l(3), l(2), l(1), l(0));
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(v8.as_ptr()), xv, acc);
        }
    }
    let mut out = [0.0f32; SELL_C];
    // SAFETY: out holds 8 floats.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), acc) };
    out
}

/// [`slice_portable`] with AVX-512 F: two steps (16 entries: the slice's 8 rows twice) per
/// 512-bit `vgatherdps` of `xz` by column index and one FMA, into two accumulators taken in
/// turn (FMA latency); the two halves of each are added at the end, and an odd last step
/// runs at 256 bits from scalar loads (as [`slice_avx2`]). Lane `l` thus sums its row's entries `j` in four partial sums by
/// `j mod 4`, added as `(p0 + p2) + (p1 + p3)` then the last step.
///
/// # Safety
/// The CPU must support AVX-512 F (which implies AVX2 and FMA on every CPU that has it;
/// both are enabled here as well); the preconditions of [`slice_portable`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn slice_avx512<I: ColIndex>(vals: &[f32], idx: &[I], xz: &[f32]) -> [f32; SELL_C] {
    use std::arch::x86_64::*;
    let (vp, xp, n) = (vals.as_ptr(), xz.as_ptr(), vals.len());
    let mut out = [0.0f32; SELL_C];
    // SAFETY: every index is <= cols < xz.len() and below 2^24 (MAX_SPARSE_DIM), so the
    // signed 32-bit gather offsets are in range; loads at k..k + 16 (k + 16 <= n) and
    // k..k + 8 (k + 8 <= n) stay within vals and idx, whose lengths are n.
    unsafe {
        let step2 = |k: usize, a: __m512| {
            let xv = _mm512_i32gather_ps::<4>(cols16(idx, k), xp.cast());
            _mm512_fmadd_ps(_mm512_loadu_ps(vp.add(k)), xv, a)
        };
        let (mut a0, mut a1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let mut k = 0;
        while k + 4 * SELL_C <= n {
            a0 = step2(k, a0);
            a1 = step2(k + 2 * SELL_C, a1);
            k += 4 * SELL_C;
        }
        if k + 2 * SELL_C <= n {
            a0 = step2(k, a0);
            k += 2 * SELL_C;
        }
        let sum = _mm512_add_ps(a0, a1);
        let lo = _mm512_castps512_ps256(sum);
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(sum)));
        let mut s = _mm256_add_ps(lo, hi);
        if k < n {
            let i = super::spmv::idx8(idx, k);
            let l = |j: usize| *xp.add(i[j]);
            let xv = _mm256_set_ps(l(7), l(6), l(5), l(4), l(3), l(2), l(1), l(0));
            s = _mm256_fmadd_ps(_mm256_loadu_ps(vp.add(k)), xv, s);
        }
        _mm256_storeu_ps(out.as_mut_ptr(), s);
    }
    out
}

/// Indices `k..k + 16` of `idx`, widened to 32-bit lanes.
///
/// # Safety
/// AVX-512 F; `k + 16 <= idx.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2")]
#[inline]
unsafe fn cols16<I: ColIndex>(idx: &[I], k: usize) -> std::arch::x86_64::__m512i {
    use std::arch::x86_64::*;
    // SAFETY: 16 indices of I::BYTES bytes from k are in idx (the caller's contract).
    unsafe {
        let p = idx.as_ptr().add(k);
        if I::BYTES == 2 {
            _mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast()))
        } else {
            _mm512_loadu_si512(p.cast())
        }
    }
}
