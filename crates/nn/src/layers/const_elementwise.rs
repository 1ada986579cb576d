//! Elementwise arithmetic with a constant (`x + c`, `x * c`), the constant broadcast
//! against the batch.

use std::any::Any;

use tensor_core::{Shape, Tensor};

use super::bad_input;
use super::broadcast::{broadcast_binary, broadcast_dims};
use crate::error::Result;
use crate::layer::{Layer, Mode, ParamRef};
use crate::record::LayerRecord;

/// The arithmetic of [`ConstElementwise`] and of [`super::Parallel`]'s Add and Mul merges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOp {
    /// `x + c` (ONNX `Add`; `Sub` by a constant is stored as `Add` of its negation).
    Add,
    /// `x * c` (ONNX `Mul`; `Div` by a constant is stored as `Mul` by its reciprocal).
    Mul,
}

/// `x + c` or `x * c` with a constant `c` broadcast against the batch (NumPy rules; the
/// output keeps the input's shape).
#[derive(Debug, Clone)]
pub struct ConstElementwise {
    /// Add or Mul.
    pub op: ArithOp,
    /// The constant, at most the input's rank, broadcastable to it.
    pub constant: Tensor,
}

impl ConstElementwise {
    /// A layer computing `x op constant`.
    pub fn new(op: ArithOp, constant: Tensor) -> Self {
        Self { op, constant }
    }

    /// Rebuilds an `add_const` or `mul_const` layer from its record.
    pub fn from_record(rec: &LayerRecord) -> Result<Self> {
        rec.expect_tensor_names(&["constant"])?;
        let op = if rec.kind == "add_const" {
            ArithOp::Add
        } else {
            ArithOp::Mul
        };
        Ok(Self::new(op, rec.tensor("constant")?.clone()))
    }
}

impl Layer for ConstElementwise {
    fn kind(&self) -> &'static str {
        match self.op {
            ArithOp::Add => "add_const",
            ArithOp::Mul => "mul_const",
        }
    }

    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        let out = broadcast_dims(self.kind(), input.dims(), self.constant.dims())?;
        if out != input.dims() {
            return Err(bad_input(
                self.kind(),
                input,
                format!(
                    "the constant {} would broadcast the output to {out:?}",
                    self.constant.shape()
                ),
            ));
        }
        Ok(input.clone())
    }

    fn forward(&mut self, input: &Tensor, _mode: Mode) -> Result<Tensor> {
        self.output_shape(input.shape())?;
        match self.op {
            ArithOp::Add => broadcast_binary("add_const", input, &self.constant, |a, b| a + b),
            ArithOp::Mul => broadcast_binary("mul_const", input, &self.constant, |a, b| a * b),
        }
    }

    fn backward(&mut self, grad_output: &Tensor) -> Result<Tensor> {
        match self.op {
            ArithOp::Add => Ok(grad_output.clone()),
            ArithOp::Mul => {
                broadcast_binary("mul_const backward", grad_output, &self.constant, |g, c| {
                    g * c
                })
            }
        }
    }

    fn params(&self) -> Vec<ParamRef<'_>> {
        vec![ParamRef {
            name: "constant",
            value: &self.constant,
        }]
    }

    fn param_count(&self) -> usize {
        self.constant.numel()
    }

    fn macs(&self, input: &Shape) -> Result<u64> {
        Ok(match self.op {
            ArithOp::Add => 0,
            ArithOp::Mul => input.numel() as u64,
        })
    }

    fn record(&self) -> Result<LayerRecord> {
        Ok(LayerRecord::new(self.kind()).with_tensor("constant", self.constant.clone()))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
