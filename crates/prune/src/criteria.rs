//! Magnitude criteria for one layer: which weights to keep.
//!
//! Both criteria rank weights by `|w|`, the saliency Han et al. (2015) use: small weights
//! contribute little to the output, so they go first.
//! - [`mask_by_quality`]: keep `|w| > quality_param * std(W)`, the per-layer threshold of
//!   Han et al., "Learning both Weights and Connections for Efficient Neural Networks"
//!   (NeurIPS 2015, section 3.3 and the Caffe code that followed it), where `std(W)` is the
//!   population standard deviation of the layer's weights (zeros included).
//! - [`mask_by_density`]: keep the `round(density * n)` weights of largest `|w|`, ties broken
//!   towards the lower index, so the density is met exactly whatever the threshold would be.
//!   This is how a paper's reported per-layer densities are reproduced.

use crate::error::{PruneError, Result};
use crate::mask::Mask;

/// Population standard deviation of `weights`, `sqrt(mean((w - mean(w))^2))`, in f64 (0 for
/// an empty slice).
pub fn std_dev(weights: &[f32]) -> f64 {
    if weights.is_empty() {
        return 0.0;
    }
    let n = weights.len() as f64;
    let mean = weights.iter().map(|&w| w as f64).sum::<f64>() / n;
    let var = weights
        .iter()
        .map(|&w| (w as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    var.sqrt()
}

/// The threshold `quality_param * std(W)` (Han et al., 2015).
///
/// Errors: `quality_param` negative or not finite; a weight that is not finite.
pub fn quality_threshold(weights: &[f32], quality_param: f64) -> Result<f64> {
    if !(quality_param.is_finite() && quality_param >= 0.0) {
        return Err(PruneError::InvalidQuality {
            op: "quality_threshold",
            quality_param,
        });
    }
    check_finite("quality_threshold", weights)?;
    Ok(quality_param * std_dev(weights))
}

/// Keeps the weights with `|w| > threshold` (strictly: a zero threshold keeps the nonzeros).
pub fn mask_by_threshold(weights: &[f32], threshold: f64) -> Mask {
    Mask::from_keep(
        weights
            .iter()
            .map(|&w| (w.abs() as f64) > threshold)
            .collect(),
    )
}

/// Keeps `|w| > quality_param * std(W)` (Han et al., 2015, section 3.3).
///
/// Errors: as [`quality_threshold`].
pub fn mask_by_quality(weights: &[f32], quality_param: f64) -> Result<Mask> {
    let t = quality_threshold(weights, quality_param)?;
    Ok(mask_by_threshold(weights, t))
}

/// Keeps exactly `round(density * n)` weights: those of largest `|w|`, ties broken towards
/// the lower index (deterministic). Selection is `O(n)` (`select_nth_unstable_by`).
///
/// Errors: `density` outside `[0, 1]`; a weight that is not finite.
pub fn mask_by_density(weights: &[f32], density: f64) -> Result<Mask> {
    if !(0.0..=1.0).contains(&density) {
        return Err(PruneError::InvalidDensity {
            op: "mask_by_density",
            density,
        });
    }
    check_finite("mask_by_density", weights)?;
    let n = weights.len();
    let keep = ((density * n as f64).round() as usize).min(n);
    let mut keep_bits = vec![false; n];
    if keep == n {
        return Ok(Mask::all(n));
    }
    if keep > 0 {
        // Order: larger |w| first, then lower index. Everything before position `keep` after
        // the selection is kept.
        let mut order: Vec<usize> = (0..n).collect();
        let by_saliency = |&a: &usize, &b: &usize| {
            weights[b]
                .abs()
                .total_cmp(&weights[a].abs())
                .then(a.cmp(&b))
        };
        order.select_nth_unstable_by(keep - 1, by_saliency);
        for &i in &order[..keep] {
            keep_bits[i] = true;
        }
    }
    Ok(Mask::from_keep(keep_bits))
}

fn check_finite(op: &'static str, weights: &[f32]) -> Result<()> {
    match weights.iter().position(|w| !w.is_finite()) {
        Some(index) => Err(PruneError::NonFinite {
            op,
            index,
            value: weights[index],
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tensor_core::rng::Rng;

    #[test]
    fn std_dev_matches_hand_value() {
        // mean 2.5, squared deviations 2.25, 0.25, 0.25, 2.25 -> variance 1.25.
        assert!((std_dev(&[1.0, 2.0, 3.0, 4.0]) - 1.25f64.sqrt()).abs() < 1e-12);
        assert_eq!(std_dev(&[]), 0.0);
    }

    #[test]
    fn quality_keeps_above_threshold() {
        let w = [0.1, -2.0, 0.5, 3.0, -0.2, 0.0];
        let t = quality_threshold(&w, 0.5).unwrap();
        let m = mask_by_quality(&w, 0.5).unwrap();
        for (i, &x) in w.iter().enumerate() {
            assert_eq!(m.keeps(i), (x.abs() as f64) > t, "weight {i}");
        }
        assert!(mask_by_quality(&w, -1.0).is_err());
        assert!(mask_by_quality(&w, f64::NAN).is_err());
        assert_eq!(mask_by_quality(&w, 0.0).unwrap().kept(), 5);
    }

    #[test]
    fn density_keeps_exactly_the_largest() {
        let mut rng = Rng::seed_from_u64(7);
        let w: Vec<f32> = (0..1000).map(|_| rng.normal()).collect();
        for density in [0.0, 0.001, 0.08, 0.5, 0.66, 1.0] {
            let m = mask_by_density(&w, density).unwrap();
            let keep = (density * 1000.0).round() as usize;
            assert_eq!(m.kept(), keep, "density {density}");
            // Every kept |w| >= every pruned |w| (naive check).
            let min_kept = (0..1000)
                .filter(|&i| m.keeps(i))
                .map(|i| w[i].abs())
                .fold(f32::INFINITY, f32::min);
            let max_pruned = (0..1000)
                .filter(|&i| !m.keeps(i))
                .map(|i| w[i].abs())
                .fold(0.0, f32::max);
            assert!(keep == 0 || keep == 1000 || min_kept >= max_pruned);
        }
    }

    #[test]
    fn density_ties_go_to_lower_index() {
        let m = mask_by_density(&[1.0, -1.0, 1.0, 0.5], 0.5).unwrap();
        assert_eq!(m.as_slice(), &[true, true, false, false]);
    }

    #[test]
    fn density_rejects_bad_input() {
        assert!(matches!(
            mask_by_density(&[1.0], 1.5),
            Err(PruneError::InvalidDensity { .. })
        ));
        assert!(mask_by_density(&[1.0], f64::NAN).is_err());
        let err = mask_by_density(&[1.0, f32::NAN], 0.5).unwrap_err();
        assert!(err.to_string().contains("weight 1 is NaN"), "{err}");
        assert_eq!(mask_by_density(&[], 0.3).unwrap().len(), 0);
    }
}
