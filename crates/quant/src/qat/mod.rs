//! Quantization-aware training (Jacob et al., "Quantization and Training of Neural Networks
//! for Efficient Integer-Arithmetic-Only Inference", CVPR 2018, section 3): the float model
//! is trained with fake quantization in its forward pass, so it learns around the rounding
//! the integer model will do, then converted to the integer layers post-training
//! quantization writes.
//!
//! - Weights: [`QatHook`], a Trainer hook, swaps each quantized layer's latent weight for its
//!   fake-quantized value (symmetric, `b` bits, per output channel or per tensor, the range
//!   taken from the latent weights at every step) around each forward/backward and each
//!   evaluation; the straight-through estimator carries the gradient to the latent weights.
//! - Activations: an [`EmaFakeQuantize`] layer at the input of every quantized layer (where
//!   the integer model quantizes), its range started from calibration and moved by an
//!   exponential moving average of each training batch's min and max.
//! - [`convert_qat`] removes the activation quantizers and converts the model with their
//!   ranges and the latent weights ([`crate::convert_with_ranges`]): the integer layers hold
//!   exactly the weight codes the fake quantizer used.
//!
//! ```text
//! let hook = prepare_qat(&mut model, &calib, &config)?;   // fold BN, calibrate, insert
//! Trainer::new(train_config).with_hook(Box::new(hook)).fit(&mut model, ...)?;
//! let (int_model, reports) = convert_qat(model, &config)?;
//! ```

mod ema;
mod hook;

pub use ema::{EMA_AVERAGING, EmaFakeQuantize};
pub use hook::QatHook;

use nn::layers::fold_batchnorms;
use nn::{LayerPath, Model};
use tensor_core::Tensor;

use crate::convert::{
    LayerReport, QuantConfig, calibrate_ranges, convert_with_ranges, quantized_layers,
};
use crate::error::{QuantError, Result};
use crate::qtype::QuantType;

/// Prepares `model` for quantization-aware training: folds BatchNorm, calibrates the input
/// range of every layer [`crate::quantize_model`] would quantize on `calib` (by
/// `config.calibration`), inserts an [`EmaFakeQuantize`] starting from that range before each
/// of them, and returns the weight hook for those layers.
pub fn prepare_qat(model: &mut Model, calib: &Tensor, config: &QuantConfig) -> Result<QatHook> {
    QuantType::new(config.weights().bits(), true)?;
    let act = QuantType::new(config.activation_bits.min(7), false)?;
    fold_batchnorms(model)?;
    let ranges = calibrate_ranges(model, calib, config)?;
    let targets = quantized_layers(model);
    for &i in targets.iter().rev() {
        let range = ranges[i].ok_or_else(|| QuantError::InvalidArgument {
            op: "prepare_qat",
            reason: format!("layer {i} was not calibrated"),
        })?;
        let fq = EmaFakeQuantize::new(act, config.activation_symmetry(), range, EMA_AVERAGING)?;
        model.layers.insert(i, Box::new(fq));
    }
    // Each target moved down by the quantizers inserted before it and its own.
    let paths = targets
        .iter()
        .enumerate()
        .map(|(k, &i)| LayerPath::top(i + k + 1))
        .collect();
    Ok(QatHook::new(paths, config.weights()))
}

/// Converts a model trained after [`prepare_qat`] (latent weights in place, as the hook leaves
/// them after every step and evaluation) to integer layers: each [`EmaFakeQuantize`] is
/// removed and its range becomes the input range of the layer after it.
pub fn convert_qat(mut model: Model, config: &QuantConfig) -> Result<(Model, Vec<LayerReport>)> {
    let mut ranges = Vec::with_capacity(model.layers.len());
    let mut pending = None;
    let layers = std::mem::take(&mut model.layers);
    for layer in layers {
        if let Some(fq) = layer.as_any().downcast_ref::<EmaFakeQuantize>() {
            pending = Some(fq.range());
            continue;
        }
        ranges.push(pending.take());
        model.layers.push(layer);
    }
    model.clear_cache();
    convert_with_ranges(model, &ranges, config)
}
