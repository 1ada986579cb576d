//! Quantized layers: [`QuantLinear`] and [`QuantConv2d`] compute in integers from 7-bit
//! activation codes ([`IntegerCore`]); [`Quantize`] and [`Dequantize`] mark the edges of a
//! quantized region. Between them, tensors hold integer codes (exact in f32), so max pooling
//! and flattening pass codes through unchanged. At inference, consecutive quantized layers
//! hand their codes over as u8 in the layout the next one reads ([`chain`]).

/// The `Layer` methods a quantized layer with a `core: IntegerCore` field and a
/// `forward_with(path, input)` method shares: forward on the selected path, the chain of
/// quantized layers it starts at inference ([`chain`]), no backward, counts from the core,
/// `as_any`.
macro_rules! integer_layer_common {
    ($kind:literal) => {
        fn forward(&mut self, input: &Tensor, _mode: nn::Mode) -> nn::Result<Tensor> {
            self.forward_with(Int8Path::selected(), input)
        }

        fn backward(&mut self, _grad_output: &Tensor) -> nn::Result<Tensor> {
            Err(NnError::Unsupported(
                concat!(
                    $kind,
                    " backward: train the float model with fake quantization, then convert"
                )
                .into(),
            ))
        }

        fn param_count(&self) -> usize {
            self.core.param_count()
        }

        fn stored_bytes(&self) -> usize {
            self.core.stored_bytes()
        }

        fn forward_eval_chain(
            &mut self,
            next: &mut [Box<dyn nn::Layer>],
            input: &Tensor,
        ) -> nn::Result<Option<(Tensor, usize)>> {
            super::chain::forward_eval_chain(self, next, input)
        }

        fn as_any(&self) -> &dyn std::any::Any {
            self
        }

        fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
            self
        }
    };
}

mod boundary;
pub mod chain;
mod core;
mod quant_conv2d;
mod quant_linear;
mod sink;

pub use boundary::{Dequantize, Quantize};
pub use core::{IntegerCore, QuantOutput};
pub use quant_conv2d::{QuantConv2d, SPLIT_MIN_MACS, set_split_min_macs};
pub use quant_linear::QuantLinear;

use nn::LayerRegistry;

/// Registers `quant_linear`, `quant_conv2d`, `quantize` and `dequantize`.
pub fn register(registry: &mut LayerRegistry) -> nn::Result<()> {
    nn::register_kinds! { registry;
        "quant_linear" => QuantLinear,
        "quant_conv2d" => QuantConv2d,
        "quantize" => Quantize,
        "dequantize" => Dequantize,
    }
    Ok(())
}
