//! L1-norm filter pruning (Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017):
//! remove the output filters with the smallest `sum |W[o, :, :, :]|` (rows of a `linear`:
//! channel pruning of a fully connected layer), physically, with the matching channels of the
//! layers that read them ([`super::flow`]), so the result is a smaller dense model.
//!
//! Layers are pruned in the order given, each ranked by the L1 norms of its weights at that
//! moment: the input channels already removed from it no longer count, which is Li et al.'s
//! *greedy* strategy (section 3.3), not their *independent* one.

use nn::{Layer, LayerPath, LayerRegistry, Model};

use super::error::{StructuredError, StructuredResult};
use super::flow;

const OP: &str = "prune filters";

/// `sum |W[o, ...]|` of every output filter `o` of the `conv2d` or `linear` layer at `path`
/// (Li et al., 2017, section 3.1), accumulated in f64.
pub fn filter_l1_norms(model: &Model, path: &LayerPath) -> StructuredResult<Vec<f64>> {
    let out = flow::filter_count(model, path)?;
    let layer = model.layer(path).ok_or_else(|| StructuredError::NoLayer {
        op: OP,
        path: path.clone(),
    })?;
    let params = layer.params();
    let w = params
        .iter()
        .find(|p| p.name == "weight")
        .ok_or_else(|| StructuredError::NoLayer {
            op: OP,
            path: path.clone(),
        })?;
    let per = w.value.numel() / out.max(1);
    Ok(w.value
        .data()
        .chunks_exact(per.max(1))
        .map(|f| f.iter().map(|v| v.abs() as f64).sum())
        .collect())
}

/// The `keep` filters with the largest norms, in increasing index order (on equal norms the
/// lower index stays). NaN norms rank lowest.
pub fn filters_to_keep(norms: &[f64], keep: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..norms.len()).collect();
    let key = |i: usize| {
        if norms[i].is_nan() {
            f64::NEG_INFINITY
        } else {
            norms[i]
        }
    };
    order.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
    let mut kept: Vec<usize> = order.into_iter().take(keep).collect();
    kept.sort_unstable();
    kept
}

/// Keeps only the output filters `keep` (increasing) of the layer at `path` and removes the
/// matching channels of every layer that reads them (BatchNorm, the next convolution, the
/// columns of a linear layer after Flatten, through Parallel branches). On error the model is
/// unchanged.
pub fn remove_filters(model: &mut Model, path: &LayerPath, keep: &[usize]) -> StructuredResult<()> {
    let edits = flow::plan(model, path, keep)?;
    flow::apply(model, edits)
}

/// What [`prune_filters`] did to one layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterChange {
    /// The layer.
    pub path: LayerPath,
    /// Filters (or units) before.
    pub before: usize,
    /// Filters kept.
    pub after: usize,
}

/// What [`prune_filters`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterReport {
    /// Each pruned layer, in the order pruned.
    pub layers: Vec<FilterChange>,
    /// Multiply-accumulates per sample before.
    pub macs_before: u64,
    /// Multiply-accumulates per sample after.
    pub macs_after: u64,
    /// Parameters before.
    pub params_before: usize,
    /// Parameters after.
    pub params_after: usize,
}

/// The filters a layer of `out` keeps when `fraction` of them go: `out - round(fraction *
/// out)`, at least one.
pub fn kept_count(out: usize, fraction: f64) -> usize {
    let removed = (fraction * out as f64).round() as usize;
    out.saturating_sub(removed).max(1)
}

/// Removes from each layer of `fractions` (path, fraction of its filters in `[0, 1]`) the
/// filters with the smallest L1 norms ([`kept_count`] stay), in the order given, with the
/// matching channels downstream ([`remove_filters`]).
///
/// Every layer is checked first (the topology does not change while pruning), so on error
/// the model is unchanged. Errors: a fraction outside `[0, 1]`, a path listed twice, or any
/// error of [`remove_filters`] (which names the layer the channels could not cross).
pub fn prune_filters(
    model: &mut Model,
    fractions: &[(LayerPath, f64)],
) -> StructuredResult<FilterReport> {
    for (i, (path, f)) in fractions.iter().enumerate() {
        if !(0.0..=1.0).contains(f) {
            return Err(StructuredError::InvalidKeep {
                op: OP,
                path: path.clone(),
                what: format!("fraction of filters to remove {f} is not in [0, 1]"),
            });
        }
        if fractions[..i].iter().any(|(p, _)| p == path) {
            return Err(StructuredError::InvalidKeep {
                op: OP,
                path: path.clone(),
                what: "listed twice".into(),
            });
        }
        let all: Vec<usize> = (0..flow::filter_count(model, path)?).collect();
        flow::plan(model, path, &all)?;
    }
    let macs_before = model.macs_per_sample()?;
    let params_before = model.param_count();
    let mut layers = Vec::with_capacity(fractions.len());
    for (path, f) in fractions {
        let norms = filter_l1_norms(model, path)?;
        let keep = filters_to_keep(&norms, kept_count(norms.len(), *f));
        remove_filters(model, path, &keep)?;
        layers.push(FilterChange {
            path: path.clone(),
            before: norms.len(),
            after: keep.len(),
        });
    }
    Ok(FilterReport {
        layers,
        macs_before,
        macs_after: model.macs_per_sample()?,
        params_before,
        params_after: model.param_count(),
    })
}

/// The layers filter pruning can shrink, and the others with the reason.
#[derive(Debug, Default)]
pub struct FilterCandidates {
    /// `conv2d` (one group) and `linear` layers whose channels end in layers that absorb them,
    /// in the order of the model walk.
    pub prunable: Vec<LayerPath>,
    /// `conv2d` and `linear` layers that cannot be filter-pruned (the last layer, whose outputs
    /// are the model's; a layer feeding a residual sum; ...), with the error saying why.
    pub skipped: Vec<(LayerPath, StructuredError)>,
}

/// Sorts every `conv2d` and `linear` layer of `model` into [`FilterCandidates`], by a dry run
/// of [`remove_filters`] keeping every filter.
pub fn filter_candidates(model: &Model) -> FilterCandidates {
    let mut paths = Vec::new();
    model.visit(&mut |p, l| {
        if matches!(l.kind(), "conv2d" | "linear") {
            paths.push(p.clone());
        }
    });
    let mut out = FilterCandidates::default();
    for p in paths {
        let check = flow::filter_count(model, &p)
            .and_then(|n| flow::plan(model, &p, &(0..n).collect::<Vec<_>>()).map(|_| ()));
        match check {
            Ok(()) => out.prunable.push(p),
            Err(e) => out.skipped.push((p, e)),
        }
    }
    out
}

/// The same `fraction` for every layer of `paths`.
pub fn uniform_plan(paths: &[LayerPath], fraction: f64) -> Vec<(LayerPath, f64)> {
    paths.iter().map(|p| (p.clone(), fraction)).collect()
}

/// The smallest fraction `f`, removed uniformly from every layer of `paths`, for which
/// [`prune_filters`] leaves at most `1/mac_ratio` of `model`'s multiply-accumulates per
/// sample (uniform, not greedy per layer: each layer loses the same share of filters, so
/// the convolutions between two pruned layers lose about `1 - (1 - f)^2` of their MACs).
/// Found by bisection on copies of the model (MACs only fall as `f` grows).
///
/// Errors: `mac_ratio` below 1 or not finite; a target that keeping one filter per layer
/// still misses ([`StructuredError::MacTargetUnreachable`]); any error of [`prune_filters`].
pub fn uniform_fraction_for_macs(
    model: &Model,
    paths: &[LayerPath],
    mac_ratio: f64,
) -> StructuredResult<f64> {
    const OP_MACS: &str = "uniform_fraction_for_macs";
    if !(mac_ratio.is_finite() && mac_ratio >= 1.0) {
        return Err(StructuredError::InvalidMacRatio {
            op: OP_MACS,
            ratio: mac_ratio,
        });
    }
    let before = model.macs_per_sample()? as f64;
    let target = before / mac_ratio;
    let macs_at = |f: f64| -> StructuredResult<f64> {
        let mut copy = clone_model(model)?;
        Ok(prune_filters(&mut copy, &uniform_plan(paths, f))?.macs_after as f64)
    };
    if before <= target {
        return Ok(0.0);
    }
    let most = macs_at(1.0)?;
    if most > target {
        return Err(StructuredError::MacTargetUnreachable {
            op: OP_MACS,
            ratio: mac_ratio,
            best: before / most.max(1.0),
        });
    }
    // Invariant: macs_at(lo) > target >= macs_at(hi).
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..30 {
        let mid = 0.5 * (lo + hi);
        if macs_at(mid)? <= target {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

/// A copy of `model` through its records (nn's kinds and prune's sparse ones).
fn clone_model(model: &Model) -> StructuredResult<Model> {
    let mut registry = LayerRegistry::nn();
    crate::layers::register(&mut registry)?;
    let layers = model
        .layers
        .iter()
        .map(|l| registry.build(&l.record()?))
        .collect::<nn::Result<Vec<Box<dyn Layer>>>>()?;
    Ok(Model::new(model.name.clone(), &model.input_shape, layers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_norms_stay_in_index_order() {
        assert_eq!(filters_to_keep(&[3.0, 1.0, 2.0, 5.0], 2), vec![0, 3]);
        assert_eq!(filters_to_keep(&[1.0, 1.0, 1.0], 2), vec![0, 1]);
        assert_eq!(filters_to_keep(&[f64::NAN, 0.0], 1), vec![1]);
        assert_eq!(kept_count(10, 0.26), 7);
        assert_eq!(kept_count(10, 1.0), 1);
        assert_eq!(kept_count(3, 0.0), 3);
    }
}
