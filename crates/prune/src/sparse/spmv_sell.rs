//! Batch-1 product from the SELL-C-σ layout, `y = W x + b`: eight rows per SIMD step.

use super::csr::{ColIndex, ColIndices};
use super::partition::{PAR_MIN_NNZ, run_pieces, split_by_cost};
use super::scratch::with_scratch;
use super::sell::{SELL_C, SELL_SIGMA, SellCs};
use super::spmv::check_operands;
use super::{Simd, SparseParams, simd_for, threads_for};
use crate::error::Result;

/// Slices per sorting window (rows are permuted only within a window).
const WINDOW_SLICES: usize = SELL_SIGMA / SELL_C;

/// `y[r] = sum_k W[r, k] x[k] + bias[r]` from the SELL-C-σ layout `w` (see [`SellCs`]).
///
/// Each row is accumulated in f32 in column order (one SIMD lane per row, one FMA per
/// entry with AVX2, multiply then add portably), so results match [`super::spmv_reference`]
/// within the rounding of an `nnz(r)`-term sum. Padding entries multiply 0 by a zero
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
    let parts = threads_for(p, w.nnz(), PAR_MIN_NNZ);
    with_scratch(w.cols() + 1, |xz| {
        xz[..w.cols()].copy_from_slice(x);
        xz[w.cols()] = 0.0; // what padding entries read
        let xz = &*xz;
        match w.col_idx() {
            ColIndices::U16(ci) => run(w, ci, xz, bias, y, simd, parts),
            ColIndices::U32(ci) => run(w, ci, xz, bias, y, simd, parts),
        }
    });
    Ok(())
}

/// All windows, split into `parts` pieces by entries; each piece writes its own rows.
fn run<I: ColIndex>(
    w: &SellCs,
    ci: &[I],
    xz: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    simd: Simd,
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
