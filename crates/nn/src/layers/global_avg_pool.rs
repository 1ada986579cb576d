//! Global average pooling layer: `[N, C, H, W] -> [N, C, 1, 1]`, the mean of each plane.

use std::any::Any;

use tensor_core::pool::{global_avg_pool_backward, global_avg_pool_forward};
use tensor_core::{Shape, Tensor};

use super::{bad_input, check_grad, no_cache};
use crate::error::Result;
use crate::layer::{Layer, Mode};
use crate::record::LayerRecord;

/// Global average pooling (ONNX `GlobalAveragePool`).
#[derive(Clone, Debug, Default)]
pub struct GlobalAvgPool {
    /// Input shape of the last training-mode forward pass.
    cache: Option<Shape>,
}

impl GlobalAvgPool {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds the layer from its record (no attributes, no tensors).
    pub fn from_record(rec: &LayerRecord) -> Result<Self> {
        rec.expect_kind("globalavgpool")?;
        rec.expect_tensor_names(&[])?;
        Ok(Self::new())
    }
}

impl Layer for GlobalAvgPool {
    fn kind(&self) -> &'static str {
        "globalavgpool"
    }

    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        if input.rank() != 4 {
            return Err(bad_input("globalavgpool", input, "expected [N, C, H, W]"));
        }
        Ok(Shape::new(&[input.dims()[0], input.dims()[1], 1, 1])?)
    }

    fn forward(&mut self, input: &Tensor, mode: Mode) -> Result<Tensor> {
        self.output_shape(input.shape())?;
        let y = global_avg_pool_forward(input)?;
        if mode == Mode::Train {
            self.cache = Some(input.shape().clone());
        }
        Ok(y)
    }

    fn backward(&mut self, grad_output: &Tensor) -> Result<Tensor> {
        let shape = self
            .cache
            .as_ref()
            .ok_or_else(|| no_cache("globalavgpool"))?;
        let d = shape.dims();
        check_grad("globalavgpool", grad_output, &[d[0], d[1], 1, 1])?;
        Ok(global_avg_pool_backward(grad_output, shape)?)
    }

    fn param_count(&self) -> usize {
        0
    }

    fn macs(&self, input: &Shape) -> Result<u64> {
        self.output_shape(input)?;
        Ok(0)
    }

    fn clear_cache(&mut self) {
        self.cache = None;
    }

    fn record(&self) -> Result<LayerRecord> {
        Ok(LayerRecord::new("globalavgpool"))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
