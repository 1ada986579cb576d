//! Weight sharing of a whole model: every `linear` and `conv2d` weight (branches included)
//! clustered into its own codebook ([`share_model`]), the centroids fine-tuned through the
//! Trainer by [`ShareHook`] (Deep Compression, section 3.2), and the fully connected layers
//! converted to [`SharedLinear`] ([`to_shared_layers`]).

use std::collections::BTreeMap;

use nn::layers::Linear;
use nn::trainer::StepContext;
use nn::{Layer, LayerPath, Model, TrainHook};

use crate::error::{Result, ShareError};
use crate::finetune::{centroid_grads, members_from_codebook};
use crate::kmeans::KMeansParams;
use crate::layers::SharedLinear;
use crate::lookup::SharedMatrix;
use crate::shared::{SharedWeights, share_layer};

/// The shared weights of every clustered layer, by path.
#[derive(Clone, Debug, Default)]
pub struct ModelShare {
    /// Codes and codebook of each shared layer.
    pub layers: BTreeMap<LayerPath, SharedWeights>,
}

/// Shares every `linear` weight in `bits_fc` bits and every `conv2d` weight in `bits_conv`
/// bits ([`share_layer`]: code 0 the exact zero of pruned weights, k-means on the rest), and
/// writes the shared values back so the model runs as shared.
pub fn share_model(
    model: &mut Model,
    bits_fc: u32,
    bits_conv: u32,
    params: &KMeansParams,
) -> Result<ModelShare> {
    let mut targets = Vec::new();
    model.visit(&mut |path, layer| match layer.kind() {
        "linear" => targets.push((path.clone(), bits_fc)),
        "conv2d" => targets.push((path.clone(), bits_conv)),
        _ => {}
    });
    let mut layers = BTreeMap::new();
    for (path, bits) in targets {
        let shared = share_layer(model, &path, bits, params)?;
        layers.insert(path, shared);
    }
    Ok(ModelShare { layers })
}

/// Centroid fine-tuning as a Trainer hook (Deep Compression, equation 3).
///
/// `after_backward` replaces the gradient of every member of a centroid by the centroid's
/// gradient (the sum of its members' gradients; zero for code 0, the pruned zero), so the
/// optimizer moves all members of a centroid by the same amount: with the same values and
/// the same gradients every step, their optimizer state (momentum, Adam moments) stays equal
/// too, which is the centroid update of the paper. `after_step` then rewrites each member
/// from its centroid's new value (the first member's), so members always equal their
/// centroid, exactly.
#[derive(Clone, Debug)]
pub struct ShareHook {
    /// The codebooks being trained (updated after every step).
    pub share: ModelShare,
}

impl ShareHook {
    /// A hook fine-tuning the centroids of `share`.
    pub fn new(share: ModelShare) -> Self {
        Self { share }
    }

    fn each_weight(
        &mut self,
        model: &mut Model,
        mut f: impl FnMut(&mut SharedWeights, &mut [f32], &mut [f32]) -> Result<()>,
    ) -> Result<()> {
        for (path, shared) in self.share.layers.iter_mut() {
            let layer = model.layer_mut(path).ok_or_else(|| ShareError::BadLayer {
                op: "ShareHook",
                index: path.to_string(),
                reason: "no layer there".into(),
            })?;
            let mut params = layer.params_mut();
            let p = params
                .iter_mut()
                .find(|p| p.name == "weight")
                .ok_or_else(|| ShareError::BadLayer {
                    op: "ShareHook",
                    index: path.to_string(),
                    reason: "no `weight` parameter".into(),
                })?;
            f(shared, p.value.data_mut(), p.grad.data_mut())?;
        }
        Ok(())
    }
}

impl TrainHook for ShareHook {
    fn after_backward(&mut self, model: &mut Model, _ctx: &StepContext<'_>) -> nn::Result<()> {
        Ok(self.each_weight(model, |s, _w, g| {
            let cg = centroid_grads(&s.codes, g, s.codebook.len())?;
            members_from_codebook(&s.codes, &cg, g)
        })?)
    }

    fn after_step(&mut self, model: &mut Model, _ctx: &StepContext<'_>) -> nn::Result<()> {
        Ok(self.each_weight(model, |s, w, _g| {
            let mut seen = vec![false; s.codebook.len()];
            for (&c, &v) in s.codes.iter().zip(w.iter()) {
                let c = c as usize;
                if c > 0 && !seen[c] {
                    seen[c] = true;
                    s.codebook.centroids[c] = v;
                }
            }
            members_from_codebook(&s.codes, &s.codebook.centroids, w)
        })?)
    }
}

/// Replaces every shared `linear` layer of `model` by a [`SharedLinear`] running from its
/// codebook and codes (codes of at most 8 bits); returns how many were replaced. Shared
/// convolutions stay dense layers holding the shared values until SharedConv2d exists.
pub fn to_shared_layers(model: &mut Model, share: &ModelShare) -> Result<usize> {
    Ok(model.rewrite(&mut |path, layer| {
        let (Some(shared), Some(linear)) = (
            share.layers.get(path),
            layer.as_any().downcast_ref::<Linear>(),
        ) else {
            return Ok(None);
        };
        let m = SharedMatrix::from_shared(linear.out_features(), linear.in_features(), shared)?;
        let sl = SharedLinear::new(m, shared.bits, linear.bias().cloned())?;
        Ok(Some(Box::new(sl) as Box<dyn Layer>))
    })?)
}
