//! Sparse matrix times a batch, `Y [batch, out] = X [batch, in] W^T + b` (nn's Linear
//! convention, weight `[out, in]`), with its reference twin.

use super::csr::{ColIndices, Csr};
use super::dense_rhs::{CsrRef, csr_times_dense};
use super::partition::{PAR_MIN_MACS, run_split};
use super::scratch::with_scratch;
use super::spmv::{check_operands, spmv};
use super::transpose::transpose;
use super::{Simd, SparseParams, simd_for, threads_for};
use crate::error::Result;

/// `y[b, r] = sum_k W[r, k] x[b, k] + bias[r]`: `x` is `[batch, cols]`, `y` is `[batch,
/// rows]`, both row-major.
///
/// Batch 1 is [`spmv`]. Larger batches transpose `x` to `[cols, batch]`, compute `W X^T`
/// (`[rows, batch]`) with each nonzero scaling a contiguous row of `X^T` (so the inner loop
/// vectorizes over the batch), rows split among threads by nonzeros when
/// `nnz * batch >= PAR_MIN_MACS`, then transpose into `y` and add the bias. Each output sums
/// its row's terms in column order in f32, so it matches [`spmm_reference`] (f64) within
/// the rounding of an `nnz(r)`-term sum.
///
/// Errors: slice lengths that do not match `w` and `batch`; an unsupported tier.
pub fn spmm(
    w: &Csr,
    x: &[f32],
    batch: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
    p: &SparseParams,
) -> Result<()> {
    const OP: &str = "spmm";
    check_operands(OP, (w.rows(), w.cols()), batch, x, bias, y)?;
    let simd = simd_for(OP, p.tier)?;
    if batch == 1 {
        return spmv(w, x, bias, y, p);
    }
    let (rows, cols) = (w.rows(), w.cols());
    if batch == 0 || rows == 0 {
        return Ok(());
    }
    let parts = threads_for(p, w.nnz().saturating_mul(batch), PAR_MIN_MACS);
    with_scratch(cols * batch + rows * batch, |buf| {
        let (xt, ct) = buf.split_at_mut(cols * batch);
        transpose(x, batch, cols, xt, simd);
        match w.col_idx() {
            ColIndices::U16(ci) => product(w, ci, xt, batch, ct, simd, parts),
            ColIndices::U32(ci) => product(w, ci, xt, batch, ct, simd, parts),
        }
        transpose(ct, rows, batch, y, simd);
    });
    if let Some(b) = bias {
        for row in y.chunks_exact_mut(rows) {
            row.iter_mut().zip(b).for_each(|(v, &bv)| *v += bv);
        }
    }
    Ok(())
}

/// `ct [rows, batch] = W xt`, rows split into `parts`.
fn product<I: super::csr::ColIndex>(
    w: &Csr,
    ci: &[I],
    xt: &[f32],
    batch: usize,
    ct: &mut [f32],
    simd: Simd,
    parts: usize,
) {
    let wr = CsrRef {
        row_ptr: w.row_ptr(),
        col_idx: ci,
        values: w.values(),
    };
    run_split(w.row_ptr(), 0..w.rows(), parts, ct, batch, |rows, out| {
        csr_times_dense(wr, rows, xt, batch, out, simd)
    });
}

/// The reference twin of [`spmm`]: every output summed in f64 in column order, then the
/// bias added, rounded once. Same contract and errors.
#[doc(hidden)]
pub fn spmm_reference(
    w: &Csr,
    x: &[f32],
    batch: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
) -> Result<()> {
    check_operands("spmm_reference", (w.rows(), w.cols()), batch, x, bias, y)?;
    let (rows, cols) = (w.rows(), w.cols());
    for b in 0..batch {
        for r in 0..rows {
            let (s, e) = w.row_range(r);
            let mut acc = 0.0f64;
            for k in s..e {
                let c = w.col_idx().get(k).unwrap_or(0) as usize; // k < nnz (invariant)
                acc += w.values()[k] as f64 * x[b * cols + c] as f64;
            }
            y[b * rows + r] = (acc + bias.map_or(0.0, |bv| bv[r] as f64)) as f32;
        }
    }
    Ok(())
}
