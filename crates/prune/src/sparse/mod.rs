//! Sparse formats and kernels for pruned layers: CSR, Deep Compression's relative index with
//! bit-packed gaps, and the products a sparse linear or conv layer executes from.
//!
//! ```
//! use prune::sparse::{Csr, FC_INDEX_BITS, SellCs, SparseParams, spmm, spmv_sell};
//!
//! // A pruned 3 x 4 fully connected weight [out, in], row-major.
//! let w = [0.0, 2.0, 0.0, 0.0, 1.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0];
//! let csr = Csr::from_dense(3, 4, &w)?;
//! assert_eq!(csr.nnz(), 3);
//! // Stored form: 5-bit gaps over the flattened matrix, packed, plus the values.
//! let ri = csr.to_relative_index(FC_INDEX_BITS)?;
//! assert_eq!(Csr::from_relative_index(3, 4, &ri)?, csr);
//! // A batch of two inputs [2, 4] -> outputs [2, 3], Y = X W^T + b.
//! let x = [1.0, 2.0, 3.0, 4.0, 0.5, 0.5, 0.5, 0.5];
//! let mut y = [0.0; 6];
//! spmm(&csr, &x, 2, Some(&[0.0, 0.0, 1.0]), &mut y, &SparseParams::default())?;
//! assert_eq!(y, [4.0, -3.0, 1.0, 1.0, 0.0, 1.0]);
//! // Batch 1 from the SELL-C-sigma layout, built once per layer.
//! let mut y1 = [0.0; 3];
//! spmv_sell(&SellCs::from_csr(&csr), &x[..4], None, &mut y1, &SparseParams::default())?;
//! assert_eq!(y1, [4.0, -3.0, 0.0]);
//! # Ok::<(), prune::PruneError>(())
//! ```
//!
//! Han et al., "Deep Compression" (ICLR 2016), section 2, stores a pruned layer in CSR with
//! relative indices of `b` bits; section 6 runs the pruned fc layers as sparse
//! matrix-vector products (3x faster than dense on CPU at batch 1). This module provides:
//! - [`Csr`]: the executable and exchange form (nonzeros only, 16-bit column indices when
//!   the width allows), built from a dense matrix or validated from untrusted arrays
//!   ([`Csr::from_parts`]), with [`Csr::stored_bytes`] the exact bytes of its arrays;
//! - [`Csr::to_relative_index`] / [`Csr::from_relative_index`]: the stored form, gaps over
//!   the row-major flattening, [`FC_INDEX_BITS`] = 5 for fc and [`CONV_INDEX_BITS`] = 8 for
//!   conv layers, packed by [`pack_bits`] / [`unpack_bits`]
//!   ([`RelativeIndexed::stored_bytes`](crate::RelativeIndexed::stored_bytes));
//! - [`SellCs`]: a SELL-C-σ execution layout of a CSR matrix for batch 1; [`SellPerm`]:
//!   column-block SELL, eight rows times one 8-column block of `x` per step by an in-register
//!   permute; [`Batch1Layout`]: the one of the two a cost model predicts faster for a layer;
//! - kernels, each with a naive reference twin it is tested against: [`spmv`],
//!   [`spmv_sell`] and [`spmv_sell_perm`] (`y = W x + b`, batch 1), [`spmm`] (`Y = X W^T + b`, `X [batch, in]` and
//!   `Y [batch, out]` as nn's Linear lays them out) and [`sparse_conv2d`] (sparse
//!   `W [O, C/groups * kh * kw]` applied to NCHW images).
//!
//! Kernels use both cores when the work pays for a fork/join, splitting rows so that each
//! thread gets about the same number of nonzeros ([`SparseParams::threads`]), and pick a
//! SIMD tier at run time ([`SparseParams::tier`], default [`tensor_core::dispatch::selected`]).
//! The kernels read only stored entries: a NaN or infinity in the input at a pruned position
//! does not propagate as it would through a dense product (`0 * NaN`).
//!
//! What it is not for: layers (`nn::Layer` impls call these kernels), training through sparse
//! weights, or choosing which weights to prune ([`crate::criteria`]).

mod batch1;
mod bitpack;
mod conv;
mod csr;
mod dense_rhs;
mod partition;
mod relative;
mod scratch;
mod sell;
mod sell_perm;
mod spmm;
mod spmv;
mod spmv_sell;
mod spmv_sell_perm;
mod transpose;

pub use batch1::{AVX512_STEP_COSTS, Batch1Layout, PERM_STEP_COST, SELL_STEP_COST};
pub use bitpack::{pack_bits, packed_len, unpack_bits};
pub use conv::sparse_conv2d;
pub use csr::{ColIndices, Csr, MAX_SPARSE_DIM};
pub use partition::{PAR_MIN_MACS, PAR_MIN_NNZ};
pub use relative::{CONV_INDEX_BITS, FC_INDEX_BITS};
pub use sell::{SELL_C, SELL_SIGMA, SellCs};
pub use sell_perm::{PERM_BLOCK, PERM_C, PERM_UNROLL, SellPerm};
pub use spmm::{spmm, spmm_reference};
pub use spmv::{spmv, spmv_reference};
pub use spmv_sell::spmv_sell;
pub use spmv_sell_perm::spmv_sell_perm;

use tensor_core::dispatch::F32Path;

use crate::error::{PruneError, Result};

/// Options of a sparse kernel call (`Default`: rayon's pool size, the dispatched tier).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SparseParams {
    /// Threads: 0 = the current rayon pool's size, 1 = sequential, `n` = up to `n` rayon
    /// workers (the calling thread runs one piece). Work below [`Self::par_threshold`]
    /// runs on the calling thread.
    pub threads: usize,
    /// SIMD path of the f32 family. `Portable` is plain Rust; `Avx2Fma` uses AVX2 and FMA; `Avx512F`
    /// runs [`spmv_sell`]'s AVX-512 kernel and the AVX2 code of the other kernels. A tier the CPU lacks is an
    /// error ([`PruneError::UnsupportedTier`]).
    pub tier: F32Path,
    /// Work from which a call forks: `None` = the measured defaults ([`PAR_MIN_NNZ`]
    /// nonzeros for spmv, [`PAR_MIN_MACS`] multiply-accumulates for spmm and conv);
    /// `Some(t)` = fork once the work reaches `t` (tests use `Some(0)` to run the parallel
    /// split on small inputs).
    pub par_threshold: Option<usize>,
}

impl Default for SparseParams {
    fn default() -> Self {
        Self {
            threads: 0,
            tier: F32Path::selected(),
            par_threshold: None,
        }
    }
}

impl SparseParams {
    /// Same options with `threads` replaced.
    pub fn threads(self, threads: usize) -> Self {
        Self { threads, ..self }
    }

    /// Same options with `par_threshold` replaced.
    pub fn par_threshold(self, par_threshold: Option<usize>) -> Self {
        Self {
            par_threshold,
            ..self
        }
    }

    /// Same options with `tier` replaced.
    pub fn tier(self, tier: F32Path) -> Self {
        Self { tier, ..self }
    }
}

/// The code path a tier runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Simd {
    /// Plain Rust.
    Portable,
    /// AVX2 + FMA (verified present).
    Avx2,
}

/// The code path for `tier`, or [`PruneError::UnsupportedTier`] when this CPU lacks it.
pub(crate) fn simd_for(op: &'static str, tier: F32Path) -> Result<Simd> {
    if !tier.is_supported() {
        return Err(PruneError::UnsupportedTier { op, tier });
    }
    Ok(match tier {
        F32Path::Portable => Simd::Portable,
        F32Path::Avx2Fma | F32Path::Avx512F => Simd::Avx2,
    })
}

/// Threads to use for `work` given the options and the kernel's default threshold.
pub(crate) fn threads_for(p: &SparseParams, work: usize, default_min: usize) -> usize {
    let n = if p.threads == 0 {
        rayon::current_num_threads()
    } else {
        p.threads
    };
    if work < p.par_threshold.unwrap_or(default_min) {
        1
    } else {
        n.max(1)
    }
}
