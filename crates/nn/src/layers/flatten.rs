//! Flatten layer: `[N, d1, d2, ...] -> [N, d1*d2*...]`, keeping the batch dimension.

use std::any::Any;

use tensor_core::{Shape, Tensor};

use super::{bad_input, check_grad, no_cache};
use crate::error::Result;
use crate::layer::{Layer, Mode};
use crate::record::LayerRecord;

/// Flattens every dimension after the batch one (PyTorch's `nn.Flatten()`, ONNX `Flatten`
/// with axis 1). No copy: the buffer is moved into the new shape.
#[derive(Clone, Debug, Default)]
pub struct Flatten {
    /// Input shape of the last training-mode forward pass.
    cache: Option<Shape>,
}

impl Flatten {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds the layer from its record (no attributes, no tensors).
    pub fn from_record(rec: &LayerRecord) -> Result<Self> {
        rec.expect_kind("flatten")?;
        rec.expect_tensor_names(&[])?;
        Ok(Self::new())
    }
}

impl Layer for Flatten {
    fn kind(&self) -> &'static str {
        "flatten"
    }

    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        let d = input.dims();
        if d.is_empty() {
            return Err(bad_input("flatten", input, "needs a batch dimension"));
        }
        Ok(Shape::new(&[d[0], d[1..].iter().product()])?)
    }

    fn forward(&mut self, input: &Tensor, mode: Mode) -> Result<Tensor> {
        self.forward_owned(input.clone(), mode)
    }

    fn forward_owned(&mut self, input: Tensor, mode: Mode) -> Result<Tensor> {
        let out = self.output_shape(input.shape())?;
        if mode == Mode::Train {
            self.cache = Some(input.shape().clone());
        }
        Ok(input.reshape(out.dims())?)
    }

    fn backward(&mut self, grad_output: &Tensor) -> Result<Tensor> {
        self.backward_owned(grad_output.clone())
    }

    fn backward_owned(&mut self, grad_output: Tensor) -> Result<Tensor> {
        let shape = self.cache.as_ref().ok_or_else(|| no_cache("flatten"))?;
        check_grad("flatten", &grad_output, self.output_shape(shape)?.dims())?;
        Ok(grad_output.reshape(shape.dims())?)
    }

    fn param_count(&self) -> usize {
        0
    }

    fn macs(&self, _input: &Shape) -> Result<u64> {
        Ok(0)
    }

    fn clear_cache(&mut self) {
        self.cache = None;
    }

    fn record(&self) -> Result<LayerRecord> {
        Ok(LayerRecord::new("flatten"))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
