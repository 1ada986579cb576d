//! Batch-1 product from the column-block SELL layout, `y = W x + b`: per step, one input
//! block permuted into eight row lanes and one FMA.

use super::partition::{PAR_MIN_NNZ, run_pieces, split_by_cost};
use super::scratch::with_scratch;
use super::sell_perm::{PAD_FLAG, PERM_BLOCK, PERM_C, PERM_UNROLL, SellPerm};
use super::spmv::check_operands;
use super::{Simd, SparseParams, simd_for, threads_for};
use crate::error::Result;

/// `y[r] = sum_k W[r, k] x[k] + bias[r]` from the column-block SELL layout `w` (see
/// [`SellPerm`]).
///
/// Each row is one lane; step `j` of its slice adds `value * x[column]` by a fused
/// multiply-add into accumulator `j % 4`, and the row's sum is `(a0 + a1) + (a2 + a3)`,
/// then the bias. The AVX2 + FMA path and the portable path do exactly this arithmetic
/// (portably with `f32::mul_add`), so they agree bit for bit, and both match
/// [`super::spmv_reference`] within the rounding of an `nnz(r)`-term sum. Padding lanes
/// multiply a value of 0 by an input of their block; when `x` holds a NaN or an infinity,
/// the portable path skipping padding lanes runs instead, so non-finite inputs at pruned
/// positions do not propagate. Slices are split among threads by steps when
/// `w.nnz() >= PAR_MIN_NNZ` and `p.threads != 1`.
///
/// Errors: slice lengths that do not match `w`; an unsupported tier.
pub fn spmv_sell_perm(
    w: &SellPerm,
    x: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    p: &SparseParams,
) -> Result<()> {
    const OP: &str = "spmv_sell_perm";
    check_operands(OP, (w.rows(), w.cols()), 1, x, bias, y)?;
    let mut simd = simd_for(OP, p.tier)?;
    let parts = threads_for(p, w.nnz(), PAR_MIN_NNZ);
    let finite = x.iter().all(|v| v.is_finite());
    if !finite {
        simd = Simd::Portable;
    }
    let padded = w.cols().div_ceil(PERM_BLOCK) * PERM_BLOCK;
    with_scratch(padded, |xz| {
        xz[..w.cols()].copy_from_slice(x);
        xz[w.cols()..].fill(0.0);
        run(w, xz, bias, y, simd, finite, parts);
    });
    Ok(())
}

/// All slices, split into `parts` pieces by steps; each piece writes its own rows.
fn run(
    w: &SellPerm,
    xz: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    simd: Simd,
    finite: bool,
    parts: usize,
) {
    let sp = w.slice_ptr();
    let slices = sp.len() - 1;
    let bounds = if parts > 1 {
        // A slice costs its steps plus about one step of reduction and stores.
        split_by_cost(0..slices, parts, |s| (sp[s] + s) as u64)
    } else {
        vec![0, slices]
    };
    let mut pieces = Vec::with_capacity(bounds.len());
    let mut rest = y;
    for b in bounds.windows(2) {
        let n = (b[1] * PERM_C).min(w.rows()) - b[0] * PERM_C;
        let (head, tail) = rest.split_at_mut(n);
        pieces.push((b[0]..b[1], head));
        rest = tail;
    }
    let piece = |slices: std::ops::Range<usize>, out: &mut [f32]| {
        let row0 = slices.start * PERM_C;
        for s in slices {
            let steps = sp[s]..sp[s + 1];
            let meta = &w.meta()[steps.clone()];
            let vals = &w.values()[steps.start * PERM_C..steps.end * PERM_C];
            let acc = match simd {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: Simd::Avx2 is only produced by simd_for after checking the CPU.
                Simd::Avx2 => unsafe { slice_avx2(meta, vals, xz) },
                _ => slice_portable(meta, vals, xz, !finite),
            };
            let r0 = s * PERM_C;
            let lanes = (w.rows() - r0).min(PERM_C);
            for (l, &a) in acc.iter().enumerate().take(lanes) {
                out[r0 - row0 + l] = a + bias.map_or(0.0, |b| b[r0 + l]);
            }
        }
    };
    if pieces.len() <= 1 {
        if let Some((s, out)) = pieces.pop() {
            piece(s, out);
        }
    } else {
        run_pieces(pieces, piece);
    }
}

/// The 8 lane sums of one slice, `(a0 + a1) + (a2 + a3)` with `a_u` the fused sum of steps
/// `j = u (mod 4)`; padding lanes skipped when `skip_padding`.
///
/// Preconditions (the layout's construction): `meta.len()` is a multiple of 4, `vals`
/// holds 8 values per step, and every block start + 7 is `< xz.len()`.
#[inline(always)]
fn slice_portable(meta: &[u64], vals: &[f32], xz: &[f32], skip_padding: bool) -> [f32; PERM_C] {
    let mut acc = [[0.0f32; PERM_C]; PERM_UNROLL];
    for (j, (&m, v8)) in meta.iter().zip(vals.chunks_exact(PERM_C)).enumerate() {
        let base = (m >> 32) as usize;
        let a = &mut acc[j % PERM_UNROLL];
        for l in 0..PERM_C {
            let nib = (m >> (4 * l)) as u32 & 0xf;
            if skip_padding && nib & PAD_FLAG != 0 {
                continue;
            }
            let xv = xz[base + (nib & 7) as usize];
            a[l] = v8[l].mul_add(xv, a[l]);
        }
    }
    std::array::from_fn(|l| (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]))
}

/// [`slice_portable`] (padding not skipped) with AVX2 + FMA: per step, one load of the
/// input block, `vpbroadcastd` + `vpsrlvd` of the nibbles, `vpermps`, one FMA into one of
/// four rotating accumulators.
///
/// # Safety
/// The CPU must support AVX2 and FMA; the preconditions of [`slice_portable`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn slice_avx2(meta: &[u64], vals: &[f32], xz: &[f32]) -> [f32; PERM_C] {
    use std::arch::x86_64::*;
    let shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    let (xp, vp) = (xz.as_ptr(), vals.as_ptr());
    let (mut a0, mut a1, mut a2, mut a3) = (
        _mm256_setzero_ps(),
        _mm256_setzero_ps(),
        _mm256_setzero_ps(),
        _mm256_setzero_ps(),
    );
    let mp = meta.as_ptr() as *const u32;
    // One step: the block of `x`, permuted by the step's nibbles, times its 8 values. The
    // nibbles (low half of the `u64`, little-endian) are broadcast straight from memory
    // (`vbroadcastss`, a load on Zen 3) and the block start read as a `u32` from the high
    // half: moving them from a general register (`vmovd` + `vpbroadcastd`) measured slower.
    macro_rules! step {
        ($acc:ident, $k:expr) => {
            // SAFETY: step $k < meta.len(), so words 2k and 2k + 1 are in `meta`; block
            // start + 7 < xz.len(); step $k holds 8 values.
            unsafe {
                let k: usize = $k;
                let nib = _mm256_castps_si256(_mm256_broadcast_ss(&*(mp.add(2 * k) as *const f32)));
                let base = *mp.add(2 * k + 1) as usize;
                let xb = _mm256_loadu_ps(xp.add(base));
                let xv = _mm256_permutevar8x32_ps(xb, _mm256_srlv_epi32(nib, shifts));
                let v = _mm256_loadu_ps(vp.add(k * PERM_C));
                $acc = _mm256_fmadd_ps(v, xv, $acc);
            }
        };
    }
    for q in 0..meta.len() / PERM_UNROLL {
        let k = q * PERM_UNROLL;
        step!(a0, k);
        step!(a1, k + 1);
        step!(a2, k + 2);
        step!(a3, k + 3);
    }
    let acc = [a0, a1, a2, a3];
    const _: () = assert!(PERM_UNROLL == 4, "four accumulators");
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut out = [0.0f32; PERM_C];
    // SAFETY: out holds 8 floats.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sum) };
    out
}
