//! Average pooling layer (NCHW): the mean of each window, padding counted or not.

use std::any::Any;

use tensor_core::pool::{Pool2dParams, avg_pool2d_backward, avg_pool2d_forward};
use tensor_core::{Shape, Tensor};

use super::{check_grad, no_cache, pool_output_shape, pool_params_from_record, pool_record};
use crate::error::Result;
use crate::layer::{Layer, Mode};
use crate::record::LayerRecord;

/// 2-D average pooling. The divisor is the number of in-bounds taps, or with
/// `count_include_pad` the taps inside the padded extent (PyTorch and ONNX semantics).
#[derive(Clone, Debug)]
pub struct AvgPool2d {
    params: Pool2dParams,
    count_include_pad: bool,
    /// Input shape of the last training-mode forward pass.
    cache: Option<Shape>,
}

impl AvgPool2d {
    /// An average pool with the given geometry (checked).
    pub fn new(params: Pool2dParams, count_include_pad: bool) -> Result<Self> {
        params.validate()?;
        Ok(Self {
            params,
            count_include_pad,
            cache: None,
        })
    }

    /// Rebuilds the layer from its record (attributes `kernel`, `stride`, `pads`,
    /// `dilation`, `ceil_mode`, `count_include_pad`; no tensors).
    pub fn from_record(rec: &LayerRecord) -> Result<Self> {
        rec.expect_kind("avgpool2d")?;
        rec.expect_tensor_names(&[])?;
        let cip = rec.usize_in("count_include_pad", 0, 1)? == 1;
        Self::new(pool_params_from_record(rec)?, cip)
    }

    /// The geometry.
    pub fn params(&self) -> &Pool2dParams {
        &self.params
    }

    /// Whether padded taps count in the divisor.
    pub fn count_include_pad(&self) -> bool {
        self.count_include_pad
    }
}

impl Layer for AvgPool2d {
    fn kind(&self) -> &'static str {
        "avgpool2d"
    }

    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        pool_output_shape("avgpool2d", &self.params, input)
    }

    fn forward(&mut self, input: &Tensor, mode: Mode) -> Result<Tensor> {
        self.output_shape(input.shape())?;
        let y = avg_pool2d_forward(input, &self.params, self.count_include_pad)?;
        if mode == Mode::Train {
            self.cache = Some(input.shape().clone());
        }
        Ok(y)
    }

    fn backward(&mut self, grad_output: &Tensor) -> Result<Tensor> {
        let shape = self.cache.as_ref().ok_or_else(|| no_cache("avgpool2d"))?;
        check_grad("avgpool2d", grad_output, &self.params.output_dims(shape)?)?;
        Ok(avg_pool2d_backward(
            grad_output,
            shape,
            &self.params,
            self.count_include_pad,
        )?)
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
        Ok(pool_record("avgpool2d", &self.params)
            .with_int("count_include_pad", self.count_include_pad as i64))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
