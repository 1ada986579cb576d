//! Softmax and log-softmax along one axis (ONNX `Softmax` / `LogSoftmax`, both opset
//! semantics).

use std::any::Any;

use tensor_core::{Shape, Tensor, TensorError};

use super::broadcast::resolve_axis;
use super::no_cache;
use crate::error::Result;
use crate::layer::{Layer, Mode};
use crate::record::LayerRecord;

/// Softmax or log-softmax of a batch along one axis.
///
/// ONNX changed the meaning at opset 13: before it, `Softmax(axis)` flattens the input to
/// 2-D `[prod(d[..axis]), prod(d[axis..])]` and normalizes each row (`coerce_2d = true`,
/// default axis 1); from opset 13 on it normalizes along the one axis (default -1).
/// `softmax(x)_i = exp(x_i - m) / sum_j exp(x_j - m)`, `m = max_j x_j` (stable form).
#[derive(Debug, Clone)]
pub struct Softmax {
    /// The axis (batch axis = 0), negative counts from the end.
    pub axis: isize,
    /// Opset < 13 semantics: normalize over all dimensions from `axis` on.
    pub coerce_2d: bool,
    /// Log-softmax instead of softmax.
    pub log: bool,
    cache: Option<Tensor>,
}

impl Softmax {
    /// A softmax (`log = false`) or log-softmax (`log = true`) layer.
    pub fn new(axis: isize, coerce_2d: bool, log: bool) -> Self {
        Self {
            axis,
            coerce_2d,
            log,
            cache: None,
        }
    }

    /// `(outer, n, inner)`: the normalized groups are `n` elements `inner` apart.
    fn layout(&self, dims: &[usize]) -> Result<(usize, usize, usize)> {
        let a = resolve_axis(self.kind(), self.axis, dims.len())?;
        let outer: usize = dims[..a].iter().product();
        if self.coerce_2d {
            Ok((outer, dims[a..].iter().product(), 1))
        } else {
            Ok((outer, dims[a], dims[a + 1..].iter().product()))
        }
    }

    /// Rebuilds a `softmax` or `log_softmax` layer from its record.
    pub fn from_record(rec: &LayerRecord) -> Result<Self> {
        rec.expect_tensor_names(&[])?;
        let axis = rec.int("axis")?;
        if axis.unsigned_abs() > 64 {
            return Err(rec.corrupt("attribute `axis`", format!("value {axis}")));
        }
        Ok(Self::new(
            axis as isize,
            rec.int_or("coerce_2d", 0)? != 0,
            rec.kind == "log_softmax",
        ))
    }
}

impl Layer for Softmax {
    fn kind(&self) -> &'static str {
        if self.log { "log_softmax" } else { "softmax" }
    }

    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        self.layout(input.dims())?;
        Ok(input.clone())
    }

    fn forward(&mut self, input: &Tensor, mode: Mode) -> Result<Tensor> {
        let (outer, n, inner) = self.layout(input.dims())?;
        let mut y = input.clone();
        let d = y.data_mut();
        let mut buf = vec![0.0f32; n];
        for o in 0..outer {
            for i in 0..inner {
                let base = o * n * inner + i;
                for (k, b) in buf.iter_mut().enumerate() {
                    *b = d[base + k * inner];
                }
                if self.log {
                    tensor_core::activation::log_softmax_rows(&mut buf, n);
                } else {
                    tensor_core::activation::softmax_rows(&mut buf, n);
                }
                for (k, b) in buf.iter().enumerate() {
                    d[base + k * inner] = *b;
                }
            }
        }
        if mode == Mode::Train {
            self.cache = Some(y.clone());
        }
        Ok(y)
    }

    fn backward(&mut self, grad_output: &Tensor) -> Result<Tensor> {
        let y = self.cache.as_ref().ok_or_else(|| no_cache(self.kind()))?;
        if y.shape() != grad_output.shape() {
            return Err(TensorError::ShapeMismatch {
                op: "softmax backward",
                lhs: y.shape().clone(),
                rhs: grad_output.shape().clone(),
            }
            .into());
        }
        let (outer, n, inner) = self.layout(y.dims())?;
        let mut gx = grad_output.clone();
        let (yd, gd) = (y.data(), grad_output.data());
        let gxd = gx.data_mut();
        for o in 0..outer {
            for i in 0..inner {
                let base = o * n * inner + i;
                let at = |k: usize| base + k * inner;
                if self.log {
                    // y = log softmax: dx = g - softmax * sum(g).
                    let s: f32 = (0..n).map(|k| gd[at(k)]).sum();
                    for k in 0..n {
                        gxd[at(k)] = gd[at(k)] - yd[at(k)].exp() * s;
                    }
                } else {
                    // y = softmax: dx = y * (g - sum(g * y)).
                    let s: f32 = (0..n).map(|k| gd[at(k)] * yd[at(k)]).sum();
                    for k in 0..n {
                        gxd[at(k)] = yd[at(k)] * (gd[at(k)] - s);
                    }
                }
            }
        }
        Ok(gx)
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
        Ok(LayerRecord::new(self.kind())
            .with_int("axis", self.axis as i64)
            .with_int("coerce_2d", self.coerce_2d as i64))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
