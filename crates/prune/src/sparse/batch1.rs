//! The batch-1 execution layout of a sparse layer, chosen per layer when it is built by a
//! cost model over the two layouts' step counts.

use super::csr::Csr;
use super::sell::{SELL_C, SellCs};
use super::sell_perm::SellPerm;
use super::{SparseParams, spmv_sell, spmv_sell_perm};
use crate::error::Result;
use tensor_core::dispatch::F32Path;

/// Cost of one column-block SELL step (8 lanes: one permute, one FMA), in units of
/// [`SELL_STEP_COST`]'s scale, on the AVX2 tier.
///
/// Measured with `examples/spmv_min.rs` on the 2-core EPYC (Zen 3, load 13-14, minimum of
/// 3,000 interleaved calls, 300 x 784, random masks): one column-block step cost 0.91-1.04
/// ns and one SELL step (8 entries: eight scalar loads, seven inserts, one FMA) 2.1-2.3 ns
/// (3.0 ns at 3% density, where per-slice overheads weigh more), a ratio of about 2.4.
pub const PERM_STEP_COST: usize = 5;

/// Cost of one SELL-C-σ step (8 entries) on the AVX2 tier, on the scale of
/// [`PERM_STEP_COST`].
pub const SELL_STEP_COST: usize = 12;

/// (column-block step, SELL step) costs on the AVX-512 F tier, where SELL gathers two steps
/// per `vgatherdps` and the column-block kernel runs its AVX2 code.
///
/// Measured with `examples/spmv_min.rs` on the 2-core Xeon (Sapphire Rapids class, load 12,
/// minimum of 3,000 interleaved calls, 300 x 784, random masks, 3% to 50% density): a
/// column-block step 0.84-1.18 ns, a SELL step 1.45-1.91 ns, a ratio of 1.3 (at 50%) to 2.3
/// (at 3%). With 1.3, SELL is chosen at every density measured, as it ran faster at each
/// (50%: 23.2 against 26.3 us).
pub const AVX512_STEP_COSTS: (usize, usize) = (10, 13);

/// A layer's batch-1 layout: SELL-C-σ or column-block SELL, whichever the cost model
/// (per column-block step and per SELL step: [`PERM_STEP_COST`] and [`SELL_STEP_COST`] on
/// the AVX2 and portable tiers, [`AVX512_STEP_COSTS`] on AVX-512 F) predicts faster.
///
/// On the AVX2 tier (Zen 3), with random masks the column-block layout stores about 2.7
/// entries per nonzero at 10% density (the longest of 8 rows in an 8-column block) and 1.5
/// at 50%, against SELL's 1.03, while its steps cost 2.4 times less: SELL wins below about
/// 15% density (lenet300.fc1 at 10%: 7.1 against 7.5 us; magnitude-pruned at 7.5%, nonzeros
/// clustered in the image's centre: 6.1 against 6.8 us) and the column-block layout above
/// (20%: 12.1 against 13.8 us; 50%, a 2:4 layer's density: 20.3 against 31.7 us). On the
/// AVX-512 tier SELL's steps cost only 1.3 to 2.3 times more, and SELL wins throughout.
#[derive(Clone, Debug, PartialEq)]
pub enum Batch1Layout {
    /// SELL-C-σ ([`SellCs`]).
    Sell(SellCs),
    /// Column-block SELL ([`SellPerm`]).
    Perm(SellPerm),
}

impl Batch1Layout {
    /// The layout of `m` the cost model predicts faster on the dispatched tier
    /// ([`F32Path::selected`], what [`SparseParams::default`] runs).
    pub fn for_csr(m: &Csr) -> Self {
        Self::for_csr_on(m, F32Path::selected())
    }

    /// The layout of `m` the cost model predicts faster on `tier` (a choice only: `tier`
    /// need not run on this CPU).
    pub fn for_csr_on(m: &Csr, tier: F32Path) -> Self {
        let (perm_cost, sell_cost) = match tier {
            F32Path::Avx512F => AVX512_STEP_COSTS,
            F32Path::Avx2Fma | F32Path::Portable => (PERM_STEP_COST, SELL_STEP_COST),
        };
        let sell = SellCs::from_csr(m);
        let perm = SellPerm::from_csr(m);
        if perm.steps() * perm_cost < sell.padded_len() / SELL_C * sell_cost {
            Self::Perm(perm)
        } else {
            Self::Sell(sell)
        }
    }

    /// `y = W x + b` from this layout ([`spmv_sell`] or [`spmv_sell_perm`]).
    pub fn spmv(
        &self,
        x: &[f32],
        bias: Option<&[f32]>,
        y: &mut [f32],
        p: &SparseParams,
    ) -> Result<()> {
        match self {
            Self::Sell(w) => spmv_sell(w, x, bias, y, p),
            Self::Perm(w) => spmv_sell_perm(w, x, bias, y, p),
        }
    }

    /// `"sell"` or `"sell_perm"`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sell(_) => "sell",
            Self::Perm(_) => "sell_perm",
        }
    }
}
