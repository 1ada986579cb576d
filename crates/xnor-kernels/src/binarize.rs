//! Binary training and conversion of a whole model: which layers are binarized
//! ([`binarize_model`], with XNOR-Net's block order), the straight-through training hook
//! ([`BinarizeHook`]) and the conversion to packed layers ([`to_binary_layers`]).
//!
//! Training keeps latent f32 weights in the ordinary `linear` / `conv2d` layers (BinaryConnect,
//! Courbariaux et al., 2015, algorithm 1): before each forward the hook swaps every
//! binarized weight for `alpha_o sign(W_o)` (XNOR-Net's scaled binary filter; `alpha = 1` for
//! BNN), so forward and backward see binary weights; after backward it passes the gradient
//! straight through to the latent weights where `|W| <= 1` (BNN, equation 4) and restores
//! them; after the optimizer step it clips them to `[-1, 1]`. Evaluations through the Trainer
//! are wrapped the same way, so the accuracy reported during training is the binary model's.
//! Binary activations are nn's `sign` layer (straight-through, gradient where `|x| <= 1`).

use std::collections::BTreeMap;

use nn::layers::{Conv2d, Linear, Sign};
use nn::trainer::StepContext;
use nn::{Layer, LayerPath, Model, TrainHook};
use tensor_core::Tensor;

use crate::error::{Result, XnorError};
use crate::layers::{BinaryConv2d, BinaryLinear, BinaryMode, InputScaled};

/// Kinds that may sit between two parametric layers and are walked over when placing a
/// binary activation (ReLUs among them are removed in XNOR and BNN modes).
const BETWEEN: [&str; 6] = [
    "relu",
    "maxpool2d",
    "avgpool2d",
    "flatten",
    "dropout",
    "batchnorm2d",
];

fn is_parametric(layer: &dyn Layer) -> bool {
    matches!(layer.kind(), "linear" | "conv2d" | "xnor_input_scaled")
}

/// The top-level `linear` / `conv2d` layers to binarize: all of them, or all but the first
/// and the last when `keep_first_last` (XNOR-Net and BNN keep those in full precision).
pub fn binary_targets(model: &Model, keep_first_last: bool) -> Vec<LayerPath> {
    let idx: Vec<usize> = (0..model.layers.len())
        .filter(|&i| is_parametric(model.layers[i].as_ref()))
        .collect();
    let keep = |pos: usize| !keep_first_last || (pos > 0 && pos + 1 < idx.len());
    idx.iter()
        .enumerate()
        .filter(|(pos, _)| keep(*pos))
        .map(|(_, &i)| LayerPath::top(i))
        .collect()
}

/// Prepares `model` for binary training in `mode` and returns the paths of the layers to
/// binarize ([`binary_targets`]).
///
/// In XNOR and BNN modes, each binarized layer gets a `sign` layer right before it, and the
/// ReLUs between it and the previous parametric layer are removed (the sign of a ReLU output
/// is always +1). On cnn-teacher this gives XNOR-Net's block order: `conv -> BatchNorm ->
/// [max pool] -> sign -> binary conv` (BatchNorm and max pool commute for a positive BN
/// scale). BWN mode changes no layer. Only top-level layers are binarized (branches of a
/// `parallel` are left dense).
pub fn binarize_model(
    model: &mut Model,
    mode: BinaryMode,
    keep_first_last: bool,
) -> Result<Vec<LayerPath>> {
    binarize_model_with(model, mode, keep_first_last, false)
}

/// [`binarize_model`], with XNOR-Net's input scale `K` when `input_scale` (XNOR mode only):
/// each binarized layer is then wrapped in an [`InputScaled`] (which binarizes its real input
/// itself and scales by `K`) instead of being preceded by a `sign` layer; the ReLUs before it
/// are removed all the same.
pub fn binarize_model_with(
    model: &mut Model,
    mode: BinaryMode,
    keep_first_last: bool,
    input_scale: bool,
) -> Result<Vec<LayerPath>> {
    if input_scale && mode != BinaryMode::Xnor {
        return Err(XnorError::InvalidArgument {
            op: "binarize_model",
            reason: format!(
                "the input scale K belongs to XNOR-Net (mode xnor), not mode {}",
                mode.name()
            ),
        });
    }
    let targets = binary_targets(model, keep_first_last);
    if mode.binary_inputs() {
        for path in targets.iter().rev() {
            let mut j = path.index();
            while j > 0 && BETWEEN.contains(&model.layers[j - 1].kind()) {
                j -= 1;
                if model.layers[j].kind() == "relu" {
                    model.layers.remove(j);
                }
            }
            // The layer itself moved down by the ReLUs removed: the first parametric layer
            // from `j` on.
            let target = (j..model.layers.len())
                .find(|&k| is_parametric(model.layers[k].as_ref()))
                .ok_or_else(|| XnorError::InvalidArgument {
                    op: "binarize_model",
                    reason: format!("layer {path} vanished"),
                })?;
            if input_scale {
                let wrapped = wrap_input_scaled(model.layers[target].as_ref())?;
                model.layers[target] = wrapped;
            } else {
                model.layers.insert(target, Box::new(Sign::new()));
            }
        }
    }
    Ok(binary_targets(model, keep_first_last))
}

/// The [`InputScaled`] training form of a `linear` or `conv2d`.
fn wrap_input_scaled(layer: &dyn Layer) -> Result<Box<dyn Layer>> {
    let any = layer.as_any();
    if let Some(c) = any.downcast_ref::<Conv2d>() {
        Ok(Box::new(InputScaled::from_conv2d(c)?))
    } else if let Some(l) = any.downcast_ref::<Linear>() {
        Ok(Box::new(InputScaled::from_linear(l)?))
    } else {
        Err(XnorError::InvalidArgument {
            op: "binarize_model",
            reason: format!("cannot scale the input of `{}`", layer.kind()),
        })
    }
}

/// Binary training by the straight-through estimator, as a Trainer hook (module docs).
#[derive(Clone, Debug)]
pub struct BinarizeHook {
    mode: BinaryMode,
    paths: Vec<LayerPath>,
    /// The latent weights while the binary ones are swapped in.
    latent: BTreeMap<LayerPath, Tensor>,
}

impl BinarizeHook {
    /// A hook binarizing the `weight` of each layer at `paths` in `mode`.
    pub fn new(mode: BinaryMode, paths: Vec<LayerPath>) -> Self {
        Self {
            mode,
            paths,
            latent: BTreeMap::new(),
        }
    }

    /// The binarized layers' paths.
    pub fn paths(&self) -> &[LayerPath] {
        &self.paths
    }

    /// Applies `f(path, weight, grad)` to the `weight` parameter of every binarized layer.
    fn each_weight(
        &self,
        model: &mut Model,
        mut f: impl FnMut(&LayerPath, &mut Tensor, &mut Tensor) -> Result<()>,
    ) -> Result<()> {
        for path in &self.paths {
            let bad = |reason: &str| XnorError::InvalidArgument {
                op: "BinarizeHook",
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

    /// Keeps the latent weights and puts `alpha_o sign(W_o)` in their place (no-op if
    /// already swapped).
    fn swap_in(&mut self, model: &mut Model) -> Result<()> {
        if !self.latent.is_empty() {
            return Ok(());
        }
        let (mode, mut latent) = (self.mode, BTreeMap::new());
        self.each_weight(model, |path, w, _| {
            latent.insert(path.clone(), w.clone());
            let rows = w.dims()[0];
            let depth = w.numel() / rows.max(1);
            let alpha = mode.alpha(w.data(), rows, depth);
            for (row, a) in w.data_mut().chunks_exact_mut(depth.max(1)).zip(alpha) {
                row.iter_mut()
                    .for_each(|v| *v = if *v < 0.0 { -a } else { a });
            }
            Ok(())
        })?;
        self.latent = latent;
        Ok(())
    }

    /// Puts the latent weights back.
    fn restore(&mut self, model: &mut Model) -> Result<()> {
        let mut latent = std::mem::take(&mut self.latent);
        if latent.is_empty() {
            return Ok(());
        }
        self.each_weight(model, |path, w, _| {
            if let Some(l) = latent.remove(path) {
                *w = l;
            }
            Ok(())
        })
    }
}

impl TrainHook for BinarizeHook {
    fn before_forward(&mut self, model: &mut Model, _ctx: &StepContext<'_>) -> nn::Result<()> {
        Ok(self.swap_in(model)?)
    }

    fn after_backward(&mut self, model: &mut Model, _ctx: &StepContext<'_>) -> nn::Result<()> {
        // Straight through where the latent weight is within [-1, 1], zero elsewhere.
        let latent = &self.latent;
        self.each_weight(model, |path, _, g| {
            if let Some(l) = latent.get(path) {
                g.data_mut()
                    .iter_mut()
                    .zip(l.data())
                    .for_each(|(g, w)| *g = if w.abs() <= 1.0 { *g } else { 0.0 });
            }
            Ok(())
        })?;
        Ok(self.restore(model)?)
    }

    fn after_step(&mut self, model: &mut Model, _ctx: &StepContext<'_>) -> nn::Result<()> {
        Ok(self.each_weight(model, |_, w, _| {
            w.data_mut()
                .iter_mut()
                .for_each(|v| *v = v.clamp(-1.0, 1.0));
            Ok(())
        })?)
    }

    fn before_eval(&mut self, model: &mut Model) -> nn::Result<()> {
        Ok(self.swap_in(model)?)
    }

    fn after_eval(&mut self, model: &mut Model) -> nn::Result<()> {
        Ok(self.restore(model)?)
    }
}

/// Replaces each `linear` / `conv2d` at `paths` by its packed twin ([`BinaryLinear`],
/// [`BinaryConv2d`]) in `mode`, computing `alpha` and the signs from its (latent) weights;
/// an [`InputScaled`] becomes the packed twin with the input scale `K` on. Returns how many
/// were replaced. Errors: a path that holds another kind.
pub fn to_binary_layers(model: &mut Model, mode: BinaryMode, paths: &[LayerPath]) -> Result<usize> {
    Ok(model.rewrite(&mut |path, layer| {
        if !paths.contains(path) {
            return Ok(None);
        }
        let scaled = layer.as_any().downcast_ref::<InputScaled>();
        let dense = scaled.map(InputScaled::to_dense).transpose()?;
        let k = scaled.is_some();
        let any = dense.as_deref().unwrap_or(layer).as_any();
        let new: Box<dyn Layer> = if let Some(l) = any.downcast_ref::<Linear>() {
            Box::new(BinaryLinear::from_linear(l, mode)?.with_input_scale(k)?)
        } else if let Some(c) = any.downcast_ref::<Conv2d>() {
            Box::new(BinaryConv2d::from_conv2d(c, mode)?.with_input_scale(k)?)
        } else {
            return Err(XnorError::InvalidArgument {
                op: "to_binary_layers",
                reason: format!("layer {path} is `{}`, not linear or conv2d", layer.kind()),
            }
            .into());
        };
        Ok(Some(new))
    })?)
}
