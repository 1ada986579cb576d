//! The sign activation of binary networks, with the straight-through estimator as its
//! backward (Hubara, Courbariaux et al., "Binarized Neural Networks", 2016, section 1.1).

use std::any::Any;

use tensor_core::{Shape, Tensor};

use super::straight_through::{PassMask, ste_backward};
use crate::error::Result;
use crate::layer::{Layer, Mode};
use crate::record::LayerRecord;

/// `y = sign(x)`, with `sign(0) = +1` (so every output is `±1`, as the bit convention of
/// xnor-kernels needs: bit 1 = negative). Backward is the straight-through estimator with
/// saturation: `dL/dx = dL/dy · 1{|x| <= 1}` (BNN, equation 4), so an ordinary layer carries
/// binary training through the Trainer, and a model holding it evaluates as binarized.
#[derive(Clone, Debug, Default)]
pub struct Sign {
    cache: PassMask,
}

impl Sign {
    /// The sign layer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds the layer from its record (no attributes, no tensors).
    pub fn from_record(rec: &LayerRecord) -> Result<Self> {
        rec.expect_kind("sign")?;
        rec.expect_tensor_names(&[])?;
        Ok(Self::new())
    }
}

impl Layer for Sign {
    fn kind(&self) -> &'static str {
        "sign"
    }

    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        Ok(input.clone())
    }

    fn forward(&mut self, input: &Tensor, mode: Mode) -> Result<Tensor> {
        let mut y = input.clone();
        y.data_mut()
            .iter_mut()
            .for_each(|v| *v = if *v < 0.0 { -1.0 } else { 1.0 });
        if mode == Mode::Train {
            self.cache.record(input, |x| x.abs() <= 1.0);
        }
        Ok(y)
    }

    fn backward(&mut self, grad_output: &Tensor) -> Result<Tensor> {
        ste_backward("sign", &self.cache, grad_output)
    }

    fn param_count(&self) -> usize {
        0
    }

    fn macs(&self, _input: &Shape) -> Result<u64> {
        Ok(0)
    }

    fn clear_cache(&mut self) {
        self.cache.clear();
    }

    fn record(&self) -> Result<LayerRecord> {
        Ok(LayerRecord::new("sign"))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
