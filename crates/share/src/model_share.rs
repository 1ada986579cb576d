//! Weight sharing of a whole model: every `linear` and `conv2d` weight (branches included)
//! clustered into its own codebook ([`share_model`]), the centroids fine-tuned through the
//! Trainer by [`ShareHook`] (Deep Compression, section 3.2), and the layers converted to
//! their shared twins, dense or sparse + shared ([`to_shared_layers`]).

use std::collections::BTreeMap;

use nn::layers::{Conv2d, Linear};
use nn::trainer::StepContext;
use nn::{Layer, LayerPath, Model, TrainHook};

use crate::error::{Result, ShareError};
use crate::finetune::{centroid_grads, members_from_codebook};
use crate::kmeans::KMeansParams;
use crate::layers::{SharedConv2d, SharedLinear, SparseSharedConv2d, SparseSharedLinear};
use crate::lookup::SharedMatrix;
use crate::shared::{SharedWeights, share_layer};
use crate::sparse::SparseShared;

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

    /// The centroids of every codebook (layer path and values), for a training checkpoint;
    /// the codes never change during fine-tuning and are not part of it.
    fn state(&self) -> nn::Result<Option<Vec<u8>>> {
        let books: Vec<(String, &[f32])> = (self.share.layers.iter())
            .map(|(path, s)| (path.to_string(), s.codebook.centroids.as_slice()))
            .collect();
        nn::io::native::encode_value(&books, "sharing codebooks").map(Some)
    }

    /// Restores [`TrainHook::state`]'s centroids onto this hook's codebooks: the same layers,
    /// each codebook of the same size.
    fn restore_state(&mut self, bytes: &[u8]) -> nn::Result<()> {
        let books: Vec<(String, Vec<f32>)> =
            nn::io::native::decode_value(bytes, "checkpoint", "sharing codebooks")?;
        let bad = |reason: String| {
            nn::NnError::Config(format!("ShareHook: resume: sharing codebooks: {reason}"))
        };
        if books.len() != self.share.layers.len() {
            return Err(bad(format!(
                "{} saved, {} shared layers here",
                books.len(),
                self.share.layers.len()
            )));
        }
        for (path, centroids) in books {
            let shared = (self.share.layers)
                .get_mut(&LayerPath::parse(&path)?)
                .ok_or_else(|| bad(format!("layer {path} is not shared here")))?;
            if centroids.len() != shared.codebook.centroids.len() {
                return Err(bad(format!(
                    "layer {path}: {} centroids saved, its codebook has {}",
                    centroids.len(),
                    shared.codebook.centroids.len()
                )));
            }
            shared.codebook.centroids = centroids;
        }
        Ok(())
    }
}

/// How [`to_shared_layers_with`] writes each shared layer (`Default`: the dense form above
/// density 0.5, Deep Compression's 5-bit fc and 8-bit conv relative indices below it).
///
/// Design: the sparse form stores each entry's gap and code, `index_bits + bits` bits, the
/// dense form `bits` per weight, so with `index_bits` near `bits` the sparse form is the
/// smaller one below about half density; it also runs only the stored entries.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SharedForms {
    /// Layers whose fraction of nonzero codes is below this become sparse + shared.
    pub sparse_below_density: f64,
    /// Relative-index width of fully connected layers.
    pub index_bits_fc: u32,
    /// Relative-index width of convolutions.
    pub index_bits_conv: u32,
}

impl Default for SharedForms {
    fn default() -> Self {
        Self {
            sparse_below_density: 0.5,
            index_bits_fc: 5,
            index_bits_conv: 8,
        }
    }
}

/// [`to_shared_layers_with`] with the default [`SharedForms`].
pub fn to_shared_layers(model: &mut Model, share: &ModelShare) -> Result<usize> {
    to_shared_layers_with(model, share, &SharedForms::default())
}

/// Replaces every shared `linear` and `conv2d` layer of `model` by its twin running from
/// the codebook and codes (codes of at most 8 bits): [`SharedLinear`] / [`SharedConv2d`],
/// or [`SparseSharedLinear`] / [`SparseSharedConv2d`] when the layer's density is below
/// `forms.sparse_below_density`; returns how many were replaced.
///
/// Errors: codes wider than 8 bits; a layer whose shape disagrees with its codes.
pub fn to_shared_layers_with(
    model: &mut Model,
    share: &ModelShare,
    forms: &SharedForms,
) -> Result<usize> {
    Ok(model.rewrite(&mut |path, layer| {
        let Some(shared) = share.layers.get(path) else {
            return Ok(None);
        };
        let any = layer.as_any();
        let nonzero = shared.codes.iter().filter(|&&c| c != 0).count();
        let sparse = (nonzero as f64) < forms.sparse_below_density * shared.codes.len() as f64;
        let new: Box<dyn Layer> = if let Some(l) = any.downcast_ref::<Linear>() {
            let (rows, cols) = (l.out_features(), l.in_features());
            let bias = l.bias().cloned();
            if sparse {
                let m = SparseShared::from_shared(rows, cols, shared)?;
                Box::new(SparseSharedLinear::new(
                    m,
                    shared.bits,
                    forms.index_bits_fc,
                    bias,
                )?)
            } else {
                let m = SharedMatrix::from_shared(rows, cols, shared)?;
                Box::new(SharedLinear::new(m, shared.bits, bias)?)
            }
        } else if let Some(c) = any.downcast_ref::<Conv2d>() {
            let p = *c.params();
            let (rows, cols) = (p.out_channels, p.patch_len());
            let bias = c.bias().cloned();
            if sparse {
                let m = SparseShared::from_shared(rows, cols, shared)?;
                Box::new(SparseSharedConv2d::new(
                    p,
                    m,
                    shared.bits,
                    forms.index_bits_conv,
                    bias,
                )?)
            } else {
                let m = SharedMatrix::from_shared(rows, cols, shared)?;
                Box::new(SharedConv2d::new(p, m, shared.bits, bias)?)
            }
        } else {
            return Ok(None);
        };
        Ok(Some(new))
    })?)
}
