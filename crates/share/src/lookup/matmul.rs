//! The lookup GEMM of a shared matrix times a dense right-hand side, `out += W B`, the
//! product a shared convolution runs on its im2col patches: each code is looked up once
//! per row of `W` and scales a contiguous row of `B`, so the f32 weight is never built.
//!
//! `B` is `[cols, n]` row-major (im2col's layout: a row per patch tap, a column per output
//! position). For each row `o` of `W`, blocks of [`BLOCK`] columns of `out[o, :]`
//! accumulate `c[code(o, i)] * B[i, block]` over `i` in a local array the compiler keeps
//! in registers. The loop is written once and compiled twice, plain and with AVX2 + FMA
//! enabled (the loops over the block vectorise; no FMA contraction, so both tiers give the
//! same bits). Each output sums its `cols` terms in column order, as the dense direct loop.

use std::ops::Range;

use rayon::prelude::*;
use tensor_core::dispatch::F32Path;

use super::{MAX_CENTROIDS, SharedMatrix};
use crate::error::{Result, ShareError, check_len, checked_mul};
use crate::sparse::check_row_range;

/// Output columns per register block (four AVX2 registers).
const BLOCK: usize = 32;

/// Multiply-accumulates from which the rows run in parallel.
const PAR_MIN_MACS: usize = 1 << 20;

impl SharedMatrix {
    /// `out += W[rows, :] B` for `B` `[cols, n]` and `out` `[rows.len(), n]` row-major
    /// (module docs), on an explicit tier; rows run on both cores when the work is large.
    ///
    /// Errors: a tier this CPU lacks; `rows` past the matrix; `b` or `out` of the wrong
    /// length.
    pub fn matmul_rows_with(
        &self,
        tier: F32Path,
        rows: Range<usize>,
        n: usize,
        b: &[f32],
        out: &mut [f32],
    ) -> Result<()> {
        const OP: &str = "SharedMatrix::matmul_rows";
        if !tier.is_supported() {
            return Err(ShareError::UnsupportedTier {
                op: OP,
                tier: tier.name(),
            });
        }
        let avx2 = tier != F32Path::Portable && F32Path::Avx2Fma.is_supported();
        check_row_range(OP, &rows, self.rows)?;
        check_len(OP, "b", b.len(), checked_mul(OP, "cols * n", self.cols, n)?)?;
        check_len(
            OP,
            "out",
            out.len(),
            checked_mul(OP, "rows * n", rows.len(), n)?,
        )?;
        if n == 0 || rows.is_empty() {
            return Ok(());
        }
        let (cols, first) = (self.cols, rows.start);
        let row = |(i, acc): (usize, &mut [f32])| {
            let codes = &self.codes[(first + i) * cols..][..cols];
            #[cfg(target_arch = "x86_64")]
            if avx2 {
                // SAFETY: AVX2 and FMA were detected above.
                unsafe { axpy_avx2(&self.table, codes, b, acc) };
                return;
            }
            let _ = avx2;
            axpy_body(&self.table, codes, b, acc);
        };
        let macs = rows.len().saturating_mul(cols).saturating_mul(n);
        if macs >= PAR_MIN_MACS && rayon::current_num_threads() > 1 {
            out.par_chunks_mut(n).enumerate().for_each(row);
        } else {
            out.chunks_mut(n).enumerate().for_each(row);
        }
        Ok(())
    }

    /// [`SharedMatrix::matmul_rows_with`] on the tier [`F32Path::selected`] picks.
    ///
    /// Errors: as there.
    pub fn matmul_rows(
        &self,
        rows: Range<usize>,
        n: usize,
        b: &[f32],
        out: &mut [f32],
    ) -> Result<()> {
        self.matmul_rows_with(F32Path::selected(), rows, n, b, out)
    }
}

/// `acc[s] += sum_i table[codes[i]] * b[i * n + s]` with `n = acc.len()` (module docs).
/// Codes are `< 256`, so every lookup is in bounds.
#[inline(always)]
fn axpy_body(table: &[f32; MAX_CENTROIDS], codes: &[u8], b: &[f32], acc: &mut [f32]) {
    let n = acc.len();
    let mut s0 = 0;
    while s0 + BLOCK <= n {
        let mut a = [0.0f32; BLOCK];
        for (i, &k) in codes.iter().enumerate() {
            let w = table[k as usize];
            let bi = &b[i * n + s0..][..BLOCK];
            for l in 0..BLOCK {
                a[l] += w * bi[l];
            }
        }
        for (dst, &v) in acc[s0..s0 + BLOCK].iter_mut().zip(&a) {
            *dst += v;
        }
        s0 += BLOCK;
    }
    let rest = n - s0;
    if rest == 0 {
        return;
    }
    let mut a = [0.0f32; BLOCK];
    for (i, &k) in codes.iter().enumerate() {
        let w = table[k as usize];
        let bi = &b[i * n + s0..][..rest];
        for (al, &v) in a.iter_mut().zip(bi) {
            *al += w * v;
        }
    }
    for (dst, &v) in acc[s0..].iter_mut().zip(&a) {
        *dst += v;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn axpy_avx2(table: &[f32; MAX_CENTROIDS], codes: &[u8], b: &[f32], acc: &mut [f32]) {
    axpy_body(table, codes, b, acc)
}
