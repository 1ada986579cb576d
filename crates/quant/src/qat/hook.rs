//! The Trainer hook of quantization-aware training: quantized weights in the forward and
//! backward passes, updates to the latent float weights.

use std::collections::BTreeMap;

use nn::trainer::StepContext;
use nn::{LayerPath, Model, TrainHook};
use tensor_core::Tensor;

use crate::error::{QuantError, Result};
use crate::weights::WeightScheme;

/// Weight fake quantization by the straight-through estimator, as a Trainer hook (the
/// pattern of BinaryConnect, Courbariaux et al. 2015, with b-bit codes instead of signs):
///
/// - `before_forward` / `before_eval`: keeps each latent weight and puts its fake-quantized
///   value ([`WeightScheme::quantize`], dequantized) in its place, so forward and backward see the weights
///   the integer model will hold;
/// - `after_backward`: zeroes the gradient of weights outside the clipping range (none with
///   min-max ranges, where every weight is inside) and restores the latent weights, which
///   the optimizer then updates with the gradient computed at the quantized point;
/// - `after_eval`: restores the latent weights.
#[derive(Clone, Debug)]
pub struct QatHook {
    paths: Vec<LayerPath>,
    scheme: WeightScheme,
    /// The latent weights and pass masks while the fake-quantized ones are swapped in.
    latent: BTreeMap<LayerPath, (Tensor, Vec<bool>)>,
}

impl QatHook {
    /// A hook fake-quantizing the `weight` of each layer at `paths` by `scheme`.
    pub fn new(paths: Vec<LayerPath>, scheme: WeightScheme) -> Self {
        Self {
            paths,
            scheme,
            latent: BTreeMap::new(),
        }
    }

    /// The paths of the layers whose weights are fake-quantized.
    pub fn paths(&self) -> &[LayerPath] {
        &self.paths
    }

    /// Applies `f(path, weight, grad)` to the `weight` parameter of every layer.
    fn each_weight(
        &self,
        model: &mut Model,
        mut f: impl FnMut(&LayerPath, &mut Tensor, &mut Tensor) -> Result<()>,
    ) -> Result<()> {
        for path in &self.paths {
            let bad = |reason: &str| QuantError::InvalidArgument {
                op: "QatHook",
                reason: format!("layer {path}: {reason}"),
            };
            let layer = model.layer_mut(path).ok_or_else(|| bad("no layer there"))?;
            let mut params = layer.params_mut();
            let p = params
                .iter_mut()
                .find(|p| p.name == "weight")
                .ok_or_else(|| bad("no `weight` parameter"))?;
            f(path, p.value, p.grad)?;
        }
        Ok(())
    }

    /// Keeps the latent weights and swaps in their fake-quantized values (no-op if done).
    pub fn swap_in(&mut self, model: &mut Model) -> Result<()> {
        if !self.latent.is_empty() {
            return Ok(());
        }
        let scheme = self.scheme;
        let mut latent = BTreeMap::new();
        self.each_weight(model, |path, w, _| {
            let out = w.dims().first().copied().unwrap_or(1);
            let fq = scheme.quantize(w.data(), out)?;
            let kept = w.clone();
            w.data_mut().copy_from_slice(&fq.values());
            latent.insert(path.clone(), (kept, fq.pass));
            Ok(())
        })?;
        self.latent = latent;
        Ok(())
    }

    /// Puts the latent weights back (no-op if they are in place).
    pub fn restore(&mut self, model: &mut Model) -> Result<()> {
        let mut latent = std::mem::take(&mut self.latent);
        self.each_weight(model, |path, w, _| {
            if let Some((l, _)) = latent.remove(path) {
                *w = l;
            }
            Ok(())
        })
    }
}

impl TrainHook for QatHook {
    fn before_forward(&mut self, model: &mut Model, _ctx: &StepContext<'_>) -> nn::Result<()> {
        Ok(self.swap_in(model)?)
    }

    fn after_backward(&mut self, model: &mut Model, _ctx: &StepContext<'_>) -> nn::Result<()> {
        let latent = &self.latent;
        self.each_weight(model, |path, _, g| {
            if let Some((_, pass)) = latent.get(path) {
                g.data_mut()
                    .iter_mut()
                    .zip(pass)
                    .for_each(|(g, &p)| *g = if p { *g } else { 0.0 });
            }
            Ok(())
        })?;
        Ok(self.restore(model)?)
    }

    fn before_eval(&mut self, model: &mut Model) -> nn::Result<()> {
        Ok(self.swap_in(model)?)
    }

    fn after_eval(&mut self, model: &mut Model) -> nn::Result<()> {
        Ok(self.restore(model)?)
    }
}
