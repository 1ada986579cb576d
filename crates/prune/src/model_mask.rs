//! ModelMask: the masks of every prunable layer of a model, keyed by layer path, built by a
//! criterion and applied.

use std::collections::BTreeMap;

use nn::{Layer, LayerPath, Model, NnError};

use crate::criteria::{mask_by_density, mask_by_quality};
use crate::error::{PruneError, Result};
use crate::mask::Mask;

/// Whether a layer's weight is pruned: `linear` and `conv2d` layers (their `weight`, not their
/// bias: biases are few and Han et al. keep them).
pub fn is_prunable(layer: &dyn Layer) -> bool {
    matches!(layer.kind(), "linear" | "conv2d")
}

/// The paths of the prunable layers, in the order of the model walk (branches of a Parallel
/// included).
pub fn prunable_layers(model: &Model) -> Vec<LayerPath> {
    let mut out = Vec::new();
    model.visit(&mut |path, layer| {
        if is_prunable(layer) {
            out.push(path.clone());
        }
    });
    out
}

/// The weight values of the layer at `path` (flattened row-major).
pub(crate) fn weight_of<'a>(model: &'a Model, path: &LayerPath) -> Result<&'a [f32]> {
    let layer = model.layer(path).ok_or_else(|| {
        PruneError::Nn(NnError::Config(format!("prune: no layer at path {path}")))
    })?;
    layer
        .params()
        .into_iter()
        .find(|p| p.name == "weight")
        .map(|p| p.value.data())
        .ok_or_else(|| {
            PruneError::Nn(NnError::Unsupported(format!(
                "prune: layer {path} ({}) has no `weight` parameter",
                layer.kind()
            )))
        })
}

/// The weight values of the layer at `path`, mutable (flattened row-major).
pub(crate) fn weight_mut<'a>(model: &'a mut Model, path: &LayerPath) -> Result<&'a mut [f32]> {
    let layer = model.layer_mut(path).ok_or_else(|| {
        PruneError::Nn(NnError::Config(format!("prune: no layer at path {path}")))
    })?;
    let kind = layer.kind();
    layer
        .params_mut()
        .into_iter()
        .find(|p| p.name == "weight")
        .map(|p| p.value.data_mut())
        .ok_or_else(|| {
            PruneError::Nn(NnError::Unsupported(format!(
                "prune: layer {path} ({kind}) has no `weight` parameter"
            )))
        })
}

/// The [`Mask`] of each pruned layer of a model, by layer path, each over that layer's
/// `weight`.
///
/// Design: masks are keyed by [`LayerPath`] so that layers inside the branches of a Parallel
/// each have their own; [`ModelMask::apply`] checks every mask's length against its weight,
/// so a mask built for another model fails loudly instead of zeroing wrong weights.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ModelMask {
    /// The mask of each pruned layer.
    pub layers: BTreeMap<LayerPath, Mask>,
}

impl ModelMask {
    /// Prunes each prunable layer (in order, see [`prunable_layers`]) to its own density:
    /// `densities[j]` is for the `j`-th prunable layer
    /// ([`crate::criteria::mask_by_density`]).
    ///
    /// Errors: `densities.len()` differs from the number of prunable layers; a density
    /// outside `[0, 1]`; a non-finite weight.
    pub fn by_density(model: &Model, densities: &[f64]) -> Result<Self> {
        Self::build(model, densities, "ModelMask::by_density", mask_by_density)
    }

    /// Prunes each prunable layer `j` by its threshold `quality_params[j] * std(W_j)`
    /// ([`crate::criteria::mask_by_quality`], Han et al., 2015).
    ///
    /// Errors: as [`ModelMask::by_density`], with quality parameters.
    pub fn by_quality(model: &Model, quality_params: &[f64]) -> Result<Self> {
        Self::build(
            model,
            quality_params,
            "ModelMask::by_quality",
            mask_by_quality,
        )
    }

    /// The masks that keep exactly the nonzero weights the model has now (after pruning by
    /// another tool, or to freeze the current zeros for retraining).
    pub fn from_nonzeros(model: &Model) -> Result<Self> {
        let mut layers = BTreeMap::new();
        for path in prunable_layers(model) {
            let m = Mask::from_nonzeros(weight_of(model, &path)?);
            layers.insert(path, m);
        }
        Ok(Self { layers })
    }

    fn build(
        model: &Model,
        per_layer: &[f64],
        op: &'static str,
        criterion: fn(&[f32], f64) -> Result<Mask>,
    ) -> Result<Self> {
        let prunable = prunable_layers(model);
        if per_layer.len() != prunable.len() {
            return Err(PruneError::LengthMismatch {
                op,
                what: "per-layer settings".into(),
                got: per_layer.len(),
                expected: prunable.len(),
            });
        }
        let mut layers = BTreeMap::new();
        for (path, &x) in prunable.into_iter().zip(per_layer) {
            let m = criterion(weight_of(model, &path)?, x)?;
            layers.insert(path, m);
        }
        Ok(Self { layers })
    }

    /// The kept fraction of each masked layer, as `(layer path, density)`.
    pub fn densities(&self) -> Vec<(LayerPath, f64)> {
        self.layers
            .iter()
            .map(|(p, m)| (p.clone(), m.density()))
            .collect()
    }

    /// Zeroes the pruned weights of every masked layer.
    ///
    /// Errors: a masked path with no layer, without a `weight` parameter, or with a weight of
    /// another size.
    pub fn apply(&self, model: &mut Model) -> Result<()> {
        self.for_each_weight(model, "ModelMask::apply", |mask, value, _grad| {
            mask.apply(value)
        })
    }

    /// Zeroes the gradients of the pruned weights (so the optimizer does not move them).
    ///
    /// Errors: as [`ModelMask::apply`].
    pub fn apply_to_grads(&self, model: &mut Model) -> Result<()> {
        self.for_each_weight(model, "ModelMask::apply_to_grads", |mask, _value, grad| {
            mask.apply(grad)
        })
    }

    fn for_each_weight(
        &self,
        model: &mut Model,
        op: &'static str,
        mut f: impl FnMut(&Mask, &mut [f32], &mut [f32]) -> Result<()>,
    ) -> Result<()> {
        for (path, mask) in &self.layers {
            let layer = model.layer_mut(path).ok_or_else(|| {
                PruneError::Nn(NnError::Config(format!(
                    "{op}: the mask of layer {path} has no layer in the model"
                )))
            })?;
            let kind = layer.kind();
            let mut params = layer.params_mut();
            let p = params
                .iter_mut()
                .find(|p| p.name == "weight")
                .ok_or_else(|| {
                    PruneError::Nn(NnError::Unsupported(format!(
                        "{op}: layer {path} ({kind}) has no `weight` parameter"
                    )))
                })?;
            mask.check_len(op, p.value.numel())?;
            f(mask, p.value.data_mut(), p.grad.data_mut())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tensor_core::rng::Rng;

    fn lenet300() -> Model {
        nn::zoo::build("lenet300", &mut Rng::seed_from_u64(3)).unwrap()
    }

    #[test]
    fn by_density_prunes_weights_not_biases() {
        let mut model = lenet300();
        let top = |i| LayerPath::top(i);
        assert_eq!(prunable_layers(&model), vec![top(1), top(3), top(5)]);
        let masks = ModelMask::by_density(&model, &[0.08, 0.09, 0.26]).unwrap();
        masks.apply(&mut model).unwrap();
        let d = masks.densities();
        assert_eq!(d.len(), 3);
        for ((i, density), want) in d.iter().zip([0.08, 0.09, 0.26]) {
            assert!((density - want).abs() < 1e-3, "layer {i}: {density}");
            let params = model.layer(i).unwrap().params();
            let w = params.iter().find(|p| p.name == "weight").unwrap().value;
            let nonzero = w.data().iter().filter(|&&x| x != 0.0).count();
            assert_eq!(nonzero, (want * w.numel() as f64).round() as usize);
            let b = params.iter().find(|p| p.name == "bias").unwrap().value;
            assert!(b.data().iter().all(|&x| x != 0.0), "bias untouched");
        }
        // Freezing the zeros gives the same masks back.
        assert_eq!(ModelMask::from_nonzeros(&model).unwrap(), masks);
    }

    #[test]
    fn by_quality_matches_layer_criterion() {
        let model = lenet300();
        let masks = ModelMask::by_quality(&model, &[1.0, 1.0, 1.0]).unwrap();
        for (path, m) in &masks.layers {
            let w = weight_of(&model, path).unwrap();
            assert_eq!(m, &mask_by_quality(w, 1.0).unwrap());
        }
    }

    #[test]
    fn errors_name_the_mismatch() {
        let mut model = lenet300();
        let err = ModelMask::by_density(&model, &[0.5]).unwrap_err();
        assert!(err.to_string().contains("length 1, expected 3"), "{err}");
        let other = nn::zoo::build("lenet5", &mut Rng::seed_from_u64(1)).unwrap();
        let masks = ModelMask::by_density(&other, &[0.5; 4]).unwrap();
        assert!(masks.apply(&mut model).is_err());
        let mut wrong = ModelMask::from_nonzeros(&model).unwrap();
        wrong.layers.insert(LayerPath::top(1), Mask::all(3));
        let err = wrong.apply(&mut model).unwrap_err();
        assert!(
            err.to_string().contains("length 235200, expected 3"),
            "{err}"
        );
    }
}
