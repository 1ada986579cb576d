//! How a layer's rank is chosen: given, by kept energy, or by a MAC budget.

use serde::Serialize;

use crate::error::{DecomposeError, Result};
use crate::svd::kept_fraction;

/// The rule that picks one layer's rank.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum RankRule {
    /// This rank (capped at the matrix's largest).
    Given(usize),
    /// The smallest rank keeping at least this fraction of `sum_i s_i^2` (in `(0, 1]`).
    Energy(f64),
    /// The largest rank whose factored layer needs at most this fraction of the layer's
    /// multiply-accumulates (in `(0, 1]`).
    Macs(f64),
}

impl RankRule {
    /// Checks the rule's value.
    pub fn validate(&self) -> Result<()> {
        let frac = |what, value: f64| {
            if value > 0.0 && value <= 1.0 {
                Ok(())
            } else {
                Err(DecomposeError::InvalidFraction {
                    op: "rank rule",
                    what,
                    value,
                    range: "(0, 1]",
                })
            }
        };
        match *self {
            RankRule::Given(0) => Err(DecomposeError::InvalidRank {
                op: "rank rule",
                rank: 0,
                max: usize::MAX,
            }),
            RankRule::Given(_) => Ok(()),
            RankRule::Energy(e) => frac("energy", e),
            RankRule::Macs(m) => frac("mac fraction", m),
        }
    }

    /// The rank for a matrix with singular values `s` (non-increasing) in a layer whose
    /// factored form at rank `r` needs `macs_at(r)` against `macs_before` for the original:
    /// at least 1 and at most `s.len()`.
    pub fn rank(&self, s: &[f64], macs_before: u64, macs_at: &dyn Fn(usize) -> u64) -> usize {
        let max = s.len().max(1);
        match *self {
            RankRule::Given(r) => r.clamp(1, max),
            RankRule::Energy(e) => rank_by_energy(s, e),
            RankRule::Macs(f) => largest_rank_within(max, (f * macs_before as f64) as u64, macs_at),
        }
    }
}

/// The smallest `r >= 1` with `kept_fraction(s, r) >= energy` (`s.len()` at most).
pub fn rank_by_energy(s: &[f64], energy: f64) -> usize {
    let max = s.len().max(1);
    // A tiny slack so that energy 1.0 is met by full rank despite rounding.
    (1..=max)
        .find(|&r| kept_fraction(s, r) >= energy - 1e-12)
        .unwrap_or(max)
}

/// The largest `r` in `1..=max` with `macs_at(r) <= budget`, or 1 when even rank 1 exceeds
/// it. `macs_at` must not decrease with `r` (binary search).
pub fn largest_rank_within(max: usize, budget: u64, macs_at: &dyn Fn(usize) -> u64) -> usize {
    let (mut lo, mut hi) = (1usize, max.max(1));
    if macs_at(lo) > budget {
        return 1;
    }
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if macs_at(mid) <= budget {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}
