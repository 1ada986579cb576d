//! The shared core of spmm and sparse conv: rows of a sparse `W` times a dense row-major
//! matrix `B [cols, n]`, `C[r, :] = sum_k W[r, k] B[k, :]`.
//!
//! Layout choice: for each output row and each block of `n` (64, then 8, then 1 columns), the
//! row's nonzeros are streamed once and each scales a contiguous piece of a row of `B` into
//! an accumulator block held in registers (8 AVX2 vectors for a 64-wide block). The inner
//! loop is a broadcast-multiply-add over contiguous memory, so it vectorizes without gathers;
//! spmm transposes its input to `[in, batch]` to get this layout, conv's im2col matrix has it
//! already. The accumulation order within each output is the row's column order, so every
//! tier computes each output as the same sequence of f32 multiply-adds (the AVX2 tier fuses
//! each multiply-add, rounding once instead of twice).

use std::ops::Range;

use super::Simd;
use super::csr::ColIndex;

/// A borrowed CSR matrix with its index width resolved.
#[derive(Clone, Copy)]
pub(crate) struct CsrRef<'a, I> {
    pub(crate) row_ptr: &'a [u32],
    pub(crate) col_idx: &'a [I],
    pub(crate) values: &'a [f32],
}

/// `C = W[rows, :] B` with `B` the row-major `[cols, n]` matrix `b`, `C` the row-major
/// `[rows.len(), n]` matrix `c`.
///
/// Preconditions (checked by the callers, relied on to skip bounds checks): `w` satisfies the
/// [`super::Csr`] invariants with `cols` columns; `rows.end <= w.rows`; `b.len() == cols * n`;
/// `c.len() == rows.len() * n`.
pub(crate) fn csr_times_dense<I: ColIndex>(
    w: CsrRef<'_, I>,
    rows: Range<usize>,
    b: &[f32],
    n: usize,
    c: &mut [f32],
    simd: Simd,
) {
    if n == 0 {
        return;
    }
    match simd {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Simd::Avx2 is only produced by simd_for after checking the CPU.
        Simd::Avx2 => unsafe { rows_avx2(w, rows, b, n, c) },
        _ => rows_generic::<I, false>(w, rows, b, n, c),
    }
}

/// [`rows_generic`] compiled for AVX2 + FMA (the compiler vectorizes the blocks 8 wide and
/// turns `mul_add` into `vfmadd`).
///
/// # Safety
/// The CPU must support AVX2 and FMA; the preconditions of [`csr_times_dense`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_avx2<I: ColIndex>(
    w: CsrRef<'_, I>,
    rows: Range<usize>,
    b: &[f32],
    n: usize,
    c: &mut [f32],
) {
    rows_generic::<I, true>(w, rows, b, n, c)
}

/// The row loop: per row, column blocks of 64, then 8, then 1.
///
/// No blocking over the columns of `W` (rows of `B`): measured on the 2-core EPYC (Zen 3,
/// 512 KiB L2, machine loaded by other jobs), 4096 x 4096 at 10% density and batch 64 (`B`
/// = 1 MiB), taking the columns in panels whose slice of `B` fits 64 / 128 / 256 / 384 KiB
/// gave 73 / 53 / 36 / 34 ms against 36 ms without panels (best of 45, interleaved), and
/// 1024 x 8192 varied by 3x between runs whatever the panel: no consistent gain to keep.
#[inline(always)]
fn rows_generic<I: ColIndex, const FMA: bool>(
    w: CsrRef<'_, I>,
    rows: Range<usize>,
    b: &[f32],
    n: usize,
    c: &mut [f32],
) {
    for (r, crow) in rows.zip(c.chunks_exact_mut(n)) {
        let (s, e) = (w.row_ptr[r] as usize, w.row_ptr[r + 1] as usize);
        let (vals, idx) = (&w.values[s..e], &w.col_idx[s..e]);
        let mut j = 0;
        while j + 64 <= n {
            block::<I, 64, FMA>(vals, idx, b, n, j, &mut crow[j..j + 64]);
            j += 64;
        }
        while j + 8 <= n {
            block::<I, 8, FMA>(vals, idx, b, n, j, &mut crow[j..j + 8]);
            j += 8;
        }
        while j < n {
            block::<I, 1, FMA>(vals, idx, b, n, j, &mut crow[j..j + 1]);
            j += 1;
        }
    }
}

/// `out[t] = sum_k vals[k] * B[idx[k], j0 + t]` for `t < W`, accumulated in registers.
#[inline(always)]
fn block<I: ColIndex, const W: usize, const FMA: bool>(
    vals: &[f32],
    idx: &[I],
    b: &[f32],
    ldb: usize,
    j0: usize,
    out: &mut [f32],
) {
    let mut acc = [0.0f32; W];
    for (&v, &i) in vals.iter().zip(idx) {
        let start = i.idx() * ldb + j0;
        // SAFETY: i < cols and j0 + W <= n = ldb, so start + W <= cols * ldb == b.len()
        // (preconditions of csr_times_dense).
        let brow = unsafe { b.get_unchecked(start..start + W) };
        for t in 0..W {
            acc[t] = if FMA {
                v.mul_add(brow[t], acc[t])
            } else {
                acc[t] + v * brow[t]
            };
        }
    }
    out.copy_from_slice(&acc);
}
