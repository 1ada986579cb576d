//! Max pooling layer (NCHW): the largest element of each window; padding counts as -inf.

use std::any::Any;

use tensor_core::pool::{Pool2dParams, max_pool2d_backward, max_pool2d_forward};
use tensor_core::{Shape, Tensor};

use super::{check_grad, no_cache, pool_output_shape, pool_params_from_record, pool_record};
use crate::error::Result;
use crate::layer::{Layer, Mode};
use crate::record::LayerRecord;

/// 2-D max pooling. Training-mode forward keeps the argmax of each window; backward routes
/// each output gradient to it.
#[derive(Clone, Debug)]
pub struct MaxPool2d {
    params: Pool2dParams,
    /// Input shape and argmax indices of the last training-mode forward pass.
    cache: Option<(Shape, Vec<u32>)>,
}

impl MaxPool2d {
    /// A max pool with the given geometry (checked).
    pub fn new(params: Pool2dParams) -> Result<Self> {
        params.validate()?;
        Ok(Self {
            params,
            cache: None,
        })
    }

    /// PyTorch's `MaxPool2d(k)`: a `k x k` window with stride `k`, no padding.
    pub fn square(k: usize) -> Result<Self> {
        Self::new(Pool2dParams::new((k, k)))
    }

    /// Rebuilds the layer from its record (attributes `kernel`, `stride`, `pads`,
    /// `dilation`, `ceil_mode`; no tensors).
    pub fn from_record(rec: &LayerRecord) -> Result<Self> {
        rec.expect_kind("maxpool2d")?;
        rec.expect_tensor_names(&[])?;
        Self::new(pool_params_from_record(rec)?)
    }

    /// The geometry.
    pub fn params(&self) -> &Pool2dParams {
        &self.params
    }

    /// Inference: what [`Layer::forward`] computes in [`Mode::Eval`], through a shared
    /// reference (the model's chunks of a batch run it from several threads at once). The
    /// pooling kernel may fork over planes on the current rayon pool.
    pub fn infer(&self, input: &Tensor) -> Result<Tensor> {
        self.output_shape(input.shape())?;
        Ok(max_pool2d_forward(input, &self.params)?.0)
    }
}

impl Layer for MaxPool2d {
    fn kind(&self) -> &'static str {
        "maxpool2d"
    }

    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        pool_output_shape("maxpool2d", &self.params, input)
    }

    fn forward(&mut self, input: &Tensor, mode: Mode) -> Result<Tensor> {
        if mode == Mode::Eval {
            return self.infer(input);
        }
        self.output_shape(input.shape())?;
        let (y, idx) = max_pool2d_forward(input, &self.params)?;
        self.cache = Some((input.shape().clone(), idx));
        Ok(y)
    }

    fn backward(&mut self, grad_output: &Tensor) -> Result<Tensor> {
        let (shape, idx) = self.cache.as_ref().ok_or_else(|| no_cache("maxpool2d"))?;
        check_grad("maxpool2d", grad_output, &self.params.output_dims(shape)?)?;
        Ok(max_pool2d_backward(grad_output, idx, shape, &self.params)?)
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
        Ok(pool_record("maxpool2d", &self.params))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
