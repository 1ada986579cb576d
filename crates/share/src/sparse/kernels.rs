//! Kernels of the sparse + shared form: one row's dot product (GEMV) and one row's update of
//! a batch (`acc += c[code] * X^T[col]`).
//!
//! The GEMV is the portable loop on every tier: an AVX2 version that gathered eight inputs
//! by column (`vgatherdps`) and looked their centroids up in registers was slower (AMD EPYC
//! Zen 3, one thread, 10% density, 5-bit: 50 us against 32 us on lenet300.fc1, 3.9 ms
//! against 3.1 ms on 4096x4096); the gather costs more than eight scalar loads. The batch
//! update is one loop compiled twice, plain and with AVX2 enabled (batch 64, one thread:
//! 23 ms against 32 ms on 4096x4096, 0.30 ms against 0.36 ms on lenet300.fc1).

use std::ops::Range;

use tensor_core::dispatch::F32Path;

use tensor_core::sparse::ColIndex as Col;

use super::ColIndices;
use crate::error::{Result, ShareError};
use crate::lookup::MAX_CENTROIDS;

/// The kernels of one tier.
#[derive(Clone, Copy)]
pub(super) enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Kernel {
    /// The kernels of `tier` (AVX-512 runs the AVX2 ones).
    pub(super) fn for_tier(op: &'static str, tier: F32Path) -> Result<Self> {
        if !tier.is_supported() {
            return Err(ShareError::UnsupportedTier {
                op,
                tier: tier.name(),
            });
        }
        match tier {
            F32Path::Portable => Ok(Kernel::Portable),
            #[cfg(target_arch = "x86_64")]
            _ if F32Path::Avx2Fma.is_supported() => Ok(Kernel::Avx2),
            _ => Ok(Kernel::Portable),
        }
    }

    /// `sum_{j in range} table[codes[j]] * x[cols[j]]` (the portable loop on every tier,
    /// module docs). Columns are `< x.len()`.
    pub(super) fn row_dot(
        &self,
        table: &[f32; MAX_CENTROIDS],
        cols: &ColIndices,
        codes: &[u8],
        range: Range<usize>,
        x: &[f32],
    ) -> f32 {
        let codes = &codes[range.clone()];
        match cols {
            ColIndices::U16(c) => dot_portable(table, &c[range], codes, x),
            ColIndices::U32(c) => dot_portable(table, &c[range], codes, x),
        }
    }

    /// `acc[s] += table[codes[j]] * xt[cols[j] * batch + s]` for `j` in `range`, where
    /// `batch = acc.len()` and `xt` is `X^T` (`[cols, batch]`).
    pub(super) fn row_axpy(
        &self,
        table: &[f32; MAX_CENTROIDS],
        cols: &ColIndices,
        codes: &[u8],
        range: Range<usize>,
        xt: &[f32],
        acc: &mut [f32],
    ) {
        let codes = &codes[range.clone()];
        match (self, cols) {
            (Kernel::Portable, ColIndices::U16(c)) => axpy_body(table, &c[range], codes, xt, acc),
            (Kernel::Portable, ColIndices::U32(c)) => axpy_body(table, &c[range], codes, xt, acc),
            // SAFETY (both): built only when AVX2 and FMA are detected.
            #[cfg(target_arch = "x86_64")]
            (Kernel::Avx2, ColIndices::U16(c)) => unsafe {
                axpy_avx2(table, &c[range], codes, xt, acc)
            },
            #[cfg(target_arch = "x86_64")]
            (Kernel::Avx2, ColIndices::U32(c)) => unsafe {
                axpy_avx2(table, &c[range], codes, xt, acc)
            },
        }
    }
}

fn dot_portable<C: Col>(table: &[f32; MAX_CENTROIDS], cols: &[C], codes: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 4];
    let (cq, kq) = (cols.chunks_exact(4), codes.chunks_exact(4));
    let (c_rest, k_rest) = (cq.remainder(), kq.remainder());
    for (c, k) in cq.zip(kq) {
        for l in 0..4 {
            acc[l] += table[k[l] as usize] * x[c[l].idx()];
        }
    }
    for (&c, &k) in c_rest.iter().zip(k_rest) {
        acc[0] += table[k as usize] * x[c.idx()];
    }
    (acc[0] + acc[2]) + (acc[1] + acc[3])
}

/// Batch columns per register block of the batch update (four AVX2 registers).
const BATCH_BLOCK: usize = 32;

/// The batch update, written once: compiled plain for the portable tier and with AVX2
/// enabled for the AVX2 tier (the loops over the batch vectorise; no FMA contraction, so
/// both tiers give the same bits). Blocks of [`BATCH_BLOCK`] samples accumulate in a local
/// array the compiler keeps in registers, instead of loading and storing `acc` per entry.
#[inline(always)]
fn axpy_body<C: Col>(
    table: &[f32; MAX_CENTROIDS],
    cols: &[C],
    codes: &[u8],
    xt: &[f32],
    acc: &mut [f32],
) {
    let batch = acc.len();
    let mut s0 = 0;
    while s0 + BATCH_BLOCK <= batch {
        let mut a = [0.0f32; BATCH_BLOCK];
        for (&c, &k) in cols.iter().zip(codes) {
            let w = table[k as usize];
            let xc = &xt[c.idx() * batch + s0..][..BATCH_BLOCK];
            for l in 0..BATCH_BLOCK {
                a[l] += w * xc[l];
            }
        }
        for (dst, &v) in acc[s0..s0 + BATCH_BLOCK].iter_mut().zip(&a) {
            *dst += v;
        }
        s0 += BATCH_BLOCK;
    }
    let rest = &mut acc[s0..];
    for (&c, &k) in cols.iter().zip(codes) {
        let w = table[k as usize];
        let xc = &xt[c.idx() * batch + s0..][..rest.len()];
        for (a, &v) in rest.iter_mut().zip(xc) {
            *a += w * v;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn axpy_avx2<C: Col>(
    table: &[f32; MAX_CENTROIDS],
    cols: &[C],
    codes: &[u8],
    xt: &[f32],
    acc: &mut [f32],
) {
    axpy_body(table, cols, codes, xt, acc)
}
