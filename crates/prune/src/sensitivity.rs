//! Sensitivity scans: accuracy against sparsity for each prunable layer pruned alone, and
//! per-layer sparsities chosen from them for a target accuracy drop or compression ratio.
//!
//! Han et al. (2015, section 4, figure 5) prune one layer at a time without retraining to see
//! which layers tolerate pruning, then choose each layer's quality parameter from that curve.
//! [`scan`] measures the curves (every other layer untouched, the pruned layer restored
//! after each point); [`Sensitivity::sparsities_for_drop`] gives each layer the largest
//! sparsity whose drop stays within a budget, and [`Sensitivity::sparsities_for_ratio`]
//! finds the smallest equal budget that reaches a whole-model compression ratio. The
//! curves are read piecewise-linearly between the scanned sparsities and made monotone
//! first (a layer is never credited with a sparsity past one that already broke the budget).

use nn::{LayerPath, Model};

use crate::criteria::{mask_by_density, std_dev};
use crate::error::{PruneError, Result};
use crate::model_mask::{prunable_layers, weight_mut, weight_of};

/// The sparsities Han et al.'s figure 5 sweeps (0 to 90% in steps of 10%), extended to 95
/// and 98% where fully connected layers still hold up.
pub const DEFAULT_SPARSITIES: [f64; 12] =
    [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98];

/// The accuracy curve of one layer pruned alone.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerSensitivity {
    /// Where the layer is.
    pub path: LayerPath,
    /// Its weight count (biases are never pruned).
    pub weights: usize,
    /// Accuracy with this layer pruned to each of [`Sensitivity::sparsities`].
    pub accuracy: Vec<f64>,
}

/// Accuracy against sparsity for every prunable layer, each pruned alone.
#[derive(Clone, Debug, PartialEq)]
pub struct Sensitivity {
    /// The sparsities scanned, increasing, in `[0, 1]`.
    pub sparsities: Vec<f64>,
    /// Accuracy of the unpruned model.
    pub baseline: f64,
    /// One curve per prunable layer, in model-walk order.
    pub layers: Vec<LayerSensitivity>,
}

/// Prunes each prunable layer of `model` alone, by magnitude, to each of `sparsities`, and
/// measures `accuracy` of the model so pruned. The model is left exactly as it came.
///
/// Errors: `sparsities` empty, not increasing, or outside `[0, 1]`; a model without
/// prunable layers; any error of `accuracy` (the model is restored first).
pub fn scan(
    model: &mut Model,
    sparsities: &[f64],
    accuracy: &mut dyn FnMut(&mut Model) -> Result<f64>,
) -> Result<Sensitivity> {
    check_sparsities(sparsities)?;
    let paths = prunable_layers(model);
    if paths.is_empty() {
        return Err(PruneError::Nn(nn::NnError::Unsupported(format!(
            "sensitivity scan: model {} has no prunable (linear or conv2d) layer",
            model.name
        ))));
    }
    let baseline = accuracy(model)?;
    let mut layers = Vec::with_capacity(paths.len());
    for path in paths {
        let original = weight_of(model, &path)?.to_vec();
        let mut curve = Vec::with_capacity(sparsities.len());
        let mut outcome = Ok(());
        for &s in sparsities {
            let mask = mask_by_density(&original, 1.0 - s)?;
            let w = weight_mut(model, &path)?;
            w.copy_from_slice(&original);
            mask.apply(w)?;
            match accuracy(model) {
                Ok(a) => curve.push(a),
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        weight_mut(model, &path)?.copy_from_slice(&original);
        outcome?;
        layers.push(LayerSensitivity {
            path,
            weights: original.len(),
            accuracy: curve,
        });
    }
    Ok(Sensitivity {
        sparsities: sparsities.to_vec(),
        baseline,
        layers,
    })
}

fn check_sparsities(sparsities: &[f64]) -> Result<()> {
    let bad = |s: f64| PruneError::InvalidDensity {
        op: "sensitivity scan",
        density: 1.0 - s,
    };
    if sparsities.is_empty() {
        return Err(PruneError::Nn(nn::NnError::Config(
            "sensitivity scan: no sparsities to scan".into(),
        )));
    }
    for (i, &s) in sparsities.iter().enumerate() {
        if !(0.0..=1.0).contains(&s) {
            return Err(bad(s));
        }
        if i > 0 && s <= sparsities[i - 1] {
            return Err(PruneError::Nn(nn::NnError::Config(format!(
                "sensitivity scan: sparsities must increase ({} then {s})",
                sparsities[i - 1]
            ))));
        }
    }
    Ok(())
}

impl LayerSensitivity {
    /// The largest sparsity whose accuracy drop from `baseline` stays within `max_drop`,
    /// reading the curve linearly between scanned points. The drop curve is first made
    /// non-decreasing (running maximum), so a lucky point past a failing one is ignored.
    fn sparsity_for_drop(&self, sparsities: &[f64], baseline: f64, max_drop: f64) -> f64 {
        let mut best = 0.0;
        let mut prev: Option<(f64, f64)> = None;
        let mut worst = f64::NEG_INFINITY;
        for (&s, &a) in sparsities.iter().zip(&self.accuracy) {
            worst = worst.max(baseline - a);
            let d = worst;
            if d <= max_drop {
                best = s;
            } else {
                if let Some((s0, d0)) = prev {
                    // d0 <= max_drop < d: interpolate where the segment crosses the budget.
                    best = s0 + (s - s0) * (max_drop - d0) / (d - d0);
                }
                break;
            }
            prev = Some((s, d));
        }
        best
    }
}

impl Sensitivity {
    /// Each layer's largest sparsity whose drop (alone) stays within `max_drop` (a fraction:
    /// 0.01 is one point of accuracy).
    pub fn sparsities_for_drop(&self, max_drop: f64) -> Vec<(LayerPath, f64)> {
        self.layers
            .iter()
            .map(|l| {
                (
                    l.path.clone(),
                    l.sparsity_for_drop(&self.sparsities, self.baseline, max_drop),
                )
            })
            .collect()
    }

    /// Per-layer sparsities that remove `1 - 1/ratio` of all the scanned layers' weights,
    /// found by bisection on one drop budget shared by every layer (each layer is pruned as
    /// far as its own curve allows within that budget). Returns the sparsities and the
    /// budget.
    ///
    /// Errors: `ratio < 1`, or a ratio the scanned range cannot reach (every layer at the
    /// largest scanned sparsity still keeps too many weights).
    pub fn sparsities_for_ratio(&self, ratio: f64) -> Result<(Vec<(LayerPath, f64)>, f64)> {
        if !(ratio.is_finite() && ratio >= 1.0) {
            return Err(PruneError::Nn(nn::NnError::Config(format!(
                "sensitivity: compression ratio {ratio} must be >= 1"
            ))));
        }
        let total: f64 = self.layers.iter().map(|l| l.weights as f64).sum();
        let target_kept = total / ratio;
        let kept = |s: &[(LayerPath, f64)]| -> f64 {
            self.layers
                .iter()
                .zip(s)
                .map(|(l, (_, s))| l.weights as f64 * (1.0 - s))
                .sum()
        };
        let max_s = self.sparsities.last().copied().unwrap_or(0.0);
        if total * (1.0 - max_s) > target_kept + 0.5 {
            return Err(PruneError::Nn(nn::NnError::Config(format!(
                "sensitivity: ratio {ratio} needs more than the largest scanned sparsity \
                 {max_s} in every layer; scan higher sparsities"
            ))));
        }
        // The drop budget at which every layer reaches max_s (curves are monotone after
        // the running maximum), then bisection between 0 and it.
        let (mut lo, mut hi) = (0.0f64, 1.0f64 + self.baseline);
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            if kept(&self.sparsities_for_drop(mid)) > target_kept {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let mut chosen = self.sparsities_for_drop(hi);
        // The budget is shared, so the layers at the binding point may overshoot a little:
        // scale the last step back to hit the ratio (never below the scan's sparsities).
        let excess = target_kept - kept(&chosen);
        if excess > 0.0 {
            let removable: f64 = self
                .layers
                .iter()
                .zip(&chosen)
                .map(|(l, (_, s))| l.weights as f64 * s)
                .sum();
            if removable > 0.0 {
                let f = 1.0 - excess / removable;
                for (_, s) in chosen.iter_mut() {
                    *s *= f;
                }
            }
        }
        Ok((chosen, hi))
    }

    /// Han et al.'s quality parameter for each chosen sparsity: the `q` whose threshold
    /// `q * std(W)` removes that fraction of the layer's weights in `model` (the model the
    /// scan was made on).
    ///
    /// Errors: a path with no layer or no weight in `model`.
    pub fn quality_params(
        model: &Model,
        sparsities: &[(LayerPath, f64)],
    ) -> Result<Vec<(LayerPath, f64)>> {
        sparsities
            .iter()
            .map(|(p, s)| {
                let w = weight_of(model, p)?;
                let mut mags: Vec<f32> = w.iter().map(|v| v.abs()).collect();
                let std = std_dev(w);
                let k = ((s * mags.len() as f64).round() as usize).min(mags.len());
                let q = if k == 0 || std == 0.0 {
                    0.0
                } else {
                    let (_, t, _) = mags.select_nth_unstable_by(k - 1, f32::total_cmp);
                    *t as f64 / std
                };
                Ok((p.clone(), q))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tensor_core::rng::Rng;

    fn table(curves: &[(&[f64], usize)]) -> Sensitivity {
        Sensitivity {
            sparsities: vec![0.0, 0.5, 0.9],
            baseline: 0.9,
            layers: curves
                .iter()
                .enumerate()
                .map(|(i, (acc, n))| LayerSensitivity {
                    path: LayerPath::top(i),
                    weights: *n,
                    accuracy: acc.to_vec(),
                })
                .collect(),
        }
    }

    #[test]
    fn scan_restores_the_model_and_pruning_more_of_a_layer_removes_more() {
        let mut model = nn::zoo::build("lenet300", &mut Rng::seed_from_u64(3)).unwrap();
        let before: Vec<f32> = model
            .named_params()
            .iter()
            .flat_map(|(_, p)| p.value.data().to_vec())
            .collect();
        // "Accuracy" = fraction of the first layer's weights still nonzero: exact and
        // monotone, so the scan's bookkeeping is checked without a dataset.
        let first = prunable_layers(&model)[0].clone();
        let mut metric = |m: &mut Model| -> Result<f64> {
            let w = weight_of(m, &first)?;
            Ok(w.iter().filter(|v| **v != 0.0).count() as f64 / w.len() as f64)
        };
        let t = scan(&mut model, &[0.0, 0.5, 0.9], &mut metric).unwrap();
        assert_eq!(t.layers.len(), 3);
        assert_eq!(t.baseline, 1.0);
        let a = &t.layers[0].accuracy;
        assert!(
            (a[1] - 0.5).abs() < 1e-3 && (a[2] - 0.1).abs() < 1e-3,
            "{a:?}"
        );
        // Other layers pruned alone leave the first layer whole.
        assert_eq!(t.layers[1].accuracy, vec![1.0, 1.0, 1.0]);
        let after: Vec<f32> = model
            .named_params()
            .iter()
            .flat_map(|(_, p)| p.value.data().to_vec())
            .collect();
        assert_eq!(before, after);
        assert!(scan(&mut model, &[0.5, 0.2], &mut metric).is_err());
        assert!(scan(&mut model, &[1.5], &mut metric).is_err());
    }

    #[test]
    fn budget_picks_the_largest_sparsity_within_it_and_interpolates() {
        let t = table(&[(&[0.9, 0.9, 0.80], 100), (&[0.9, 0.7, 0.6], 100)]);
        let s = t.sparsities_for_drop(0.05);
        // Layer 0 holds to 0.5, then drops 0.1 by 0.9: 0.05 is crossed half way.
        assert!((s[0].1 - 0.7).abs() < 1e-9, "{s:?}");
        // Layer 1 drops 0.2 by 0.5: a quarter of the way to 0.5.
        assert!((s[1].1 - 0.125).abs() < 1e-9, "{s:?}");
        // A lucky point after a failing one does not count (running maximum of the drop).
        let t = table(&[(&[0.9, 0.7, 0.95], 10)]);
        assert!(t.sparsities_for_drop(0.05)[0].1 < 0.5);
    }

    #[test]
    fn ratio_is_reached_and_the_tolerant_layer_is_pruned_more() {
        let t = table(&[(&[0.9, 0.9, 0.89], 900), (&[0.9, 0.85, 0.5], 100)]);
        let (s, budget) = t.sparsities_for_ratio(5.0).unwrap();
        let kept = 900.0 * (1.0 - s[0].1) + 100.0 * (1.0 - s[1].1);
        assert!((kept - 200.0).abs() < 1.0, "kept {kept}, {s:?}");
        assert!(s[0].1 > s[1].1, "{s:?}");
        assert!(budget > 0.0 && budget < 0.05);
        assert!(t.sparsities_for_ratio(20.0).is_err());
        assert!(t.sparsities_for_ratio(0.5).is_err());
    }

    #[test]
    fn quality_parameter_removes_the_chosen_fraction() {
        let model = nn::zoo::build("lenet300", &mut Rng::seed_from_u64(5)).unwrap();
        let p = prunable_layers(&model)[0].clone();
        let q = Sensitivity::quality_params(&model, &[(p.clone(), 0.8)]).unwrap();
        let m = crate::criteria::mask_by_quality(weight_of(&model, &p).unwrap(), q[0].1).unwrap();
        assert!((m.density() - 0.2).abs() < 1e-3, "{}", m.density());
    }
}
