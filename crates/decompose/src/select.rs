//! Per-layer ranks for a whole-model MAC target, chosen greedily.
//!
//! Zhang et al. (2016, "Accelerating Very Deep Convolutional Networks for Classification and
//! Detection", §3.3) pick each layer's rank `r_l` to maximise `prod_l E_l(r_l)`, `E_l(r)`
//! the energy (sum of the leading `r` squared singular values) the layer keeps, subject to
//! the model's complexity, greedily: starting from full models, repeatedly lower by one the
//! rank of the layer that loses the least `log E` per multiply-accumulate saved, until the
//! target is met. `log E` makes the measure scale-free, so a layer's sensitivity is its
//! relative energy loss, comparable across layers. A layer starts as the original; its first
//! step goes to the largest rank at which the factored pair is cheaper.

use crate::error::{DecomposeError, Result};
use crate::factor::Factorization;
use crate::svd::kept_fraction;

/// The rank of each candidate (`None`: kept as it is) so that the model, whose
/// multiply-accumulates per sample are `model_macs`, needs at most `target` of them.
/// Errors: a target the candidates cannot reach even at rank 1.
pub fn ranks_for_macs(
    candidates: &[&Factorization],
    model_macs: u64,
    target: u64,
) -> Result<Vec<Option<usize>>> {
    let mut ranks: Vec<Option<usize>> = vec![None; candidates.len()];
    let macs_of = |f: &Factorization, r: Option<usize>| r.map_or(f.macs_before(), |r| f.macs_at(r));
    let reachable: u64 = model_macs.saturating_sub(
        candidates
            .iter()
            .map(|f| f.macs_before().saturating_sub(f.macs_at(1)))
            .sum::<u64>(),
    );
    if reachable > target {
        return Err(DecomposeError::TargetUnreachable {
            op: "ranks for a MAC target",
            target,
            reachable,
            total: model_macs,
        });
    }
    let log_kept = |f: &Factorization, r: Option<usize>| {
        r.map_or(0.0, |r| kept_fraction(f.spectrum(), r).max(1e-300).ln())
    };
    let mut total = model_macs;
    while total > target {
        // The cheapest next step: least log-energy lost per MAC saved.
        let mut best: Option<(f64, usize, usize)> = None;
        for (i, f) in candidates.iter().enumerate() {
            let next = match ranks[i] {
                None => f.break_even_rank(),
                Some(r) => r - 1,
            };
            if next == 0 {
                continue;
            }
            let saved = macs_of(f, ranks[i]) - f.macs_at(next);
            let lost = log_kept(f, ranks[i]) - log_kept(f, Some(next));
            let cost = lost / saved as f64;
            if best.is_none_or(|(c, _, _)| cost < c) {
                best = Some((cost, i, next));
            }
        }
        let Some((_, i, next)) = best else {
            break;
        };
        total =
            total.saturating_sub(macs_of(candidates[i], ranks[i]) - candidates[i].macs_at(next));
        ranks[i] = Some(next);
    }
    Ok(ranks)
}
