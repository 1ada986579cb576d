//! Fake quantization of activations for quantization-aware training: quantize then dequantize
//! in the forward pass, straight-through estimator in the backward pass (Jacob et al.,
//! "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only
//! Inference", 2018, section 3; PyTorch's `FakeQuantize`).

use std::any::Any;

use tensor_core::{Shape, Tensor};

use super::straight_through::{PassMask, ste_backward};
use crate::error::{NnError, Result};
use crate::layer::{Layer, Mode};
use crate::record::LayerRecord;

/// Widest integer range a fake quantizer accepts (16-bit signed or unsigned codes).
const MAX_CODE: i64 = 1 << 16;

/// Per-tensor affine fake quantization:
/// `q = clamp(round_half_even(x / scale) + zero_point, qmin, qmax)`, `y = (q - zero_point) · scale`
/// (ONNX QuantizeLinear followed by DequantizeLinear). Backward: `dL/dx = dL/dy` where
/// `qmin <= round(x / scale) + zero_point <= qmax`, else 0 (the clipped straight-through
/// estimator), so training sees the quantization error and learns around it.
#[derive(Clone, Debug)]
pub struct FakeQuantize {
    scale: f32,
    zero_point: i64,
    qmin: i64,
    qmax: i64,
    cache: PassMask,
}

impl FakeQuantize {
    /// A fake quantizer; `scale` finite and > 0, `qmin < qmax` within `±2^16`,
    /// `zero_point` in `[qmin, qmax]`.
    pub fn new(scale: f32, zero_point: i64, qmin: i64, qmax: i64) -> Result<Self> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(NnError::Config(format!(
                "fake_quantize: scale {scale} must be finite and > 0"
            )));
        }
        if !(-MAX_CODE <= qmin && qmin < qmax && qmax <= MAX_CODE) {
            return Err(NnError::Config(format!(
                "fake_quantize: range [{qmin}, {qmax}] must satisfy -{MAX_CODE} <= qmin < qmax <= {MAX_CODE}"
            )));
        }
        if !(qmin..=qmax).contains(&zero_point) {
            return Err(NnError::Config(format!(
                "fake_quantize: zero point {zero_point} outside [{qmin}, {qmax}]"
            )));
        }
        Ok(Self {
            scale,
            zero_point,
            qmin,
            qmax,
            cache: PassMask::default(),
        })
    }

    /// Rebuilds the layer from its record (attributes `scale`, `zero_point`, `qmin`, `qmax`).
    pub fn from_record(rec: &LayerRecord) -> Result<Self> {
        rec.expect_kind("fake_quantize")?;
        rec.expect_tensor_names(&[])?;
        Self::new(
            rec.float("scale")?,
            rec.int("zero_point")?,
            rec.int("qmin")?,
            rec.int("qmax")?,
        )
        .map_err(|e| rec.corrupt("attributes", e.to_string()))
    }

    /// `(scale, zero_point, qmin, qmax)`.
    pub fn params(&self) -> (f32, i64, i64, i64) {
        (self.scale, self.zero_point, self.qmin, self.qmax)
    }

    /// The unclamped code of `x`, `round_half_even(x / scale) + zero_point`.
    fn code(&self, x: f32) -> f32 {
        (x / self.scale).round_ties_even() + self.zero_point as f32
    }
}

impl Layer for FakeQuantize {
    fn kind(&self) -> &'static str {
        "fake_quantize"
    }

    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        Ok(input.clone())
    }

    fn forward(&mut self, input: &Tensor, mode: Mode) -> Result<Tensor> {
        let (lo, hi, zp) = (self.qmin as f32, self.qmax as f32, self.zero_point as f32);
        let mut y = input.clone();
        y.data_mut()
            .iter_mut()
            .for_each(|v| *v = (self.code(*v).clamp(lo, hi) - zp) * self.scale);
        if mode == Mode::Train {
            let (scale, zero_point) = (self.scale, zp);
            self.cache.record(input, |x| {
                let q = (x / scale).round_ties_even() + zero_point;
                lo <= q && q <= hi
            });
        }
        Ok(y)
    }

    fn backward(&mut self, grad_output: &Tensor) -> Result<Tensor> {
        ste_backward("fake_quantize", &self.cache, grad_output)
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
        Ok(LayerRecord::new("fake_quantize")
            .with_float("scale", self.scale)
            .with_int("zero_point", self.zero_point)
            .with_int("qmin", self.qmin)
            .with_int("qmax", self.qmax))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
