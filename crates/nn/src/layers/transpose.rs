//! Permutation of the dimensions of the batched tensor (ONNX `Transpose`).

use std::any::Any;

use tensor_core::{Shape, Tensor};

use super::{bad_input, record_sizes, shape_of, to_i64};
use crate::error::{NnError, Result};
use crate::layer::{Layer, Mode};
use crate::record::LayerRecord;

/// Permutes the dimensions of the batched tensor: output dimension `i` is input dimension
/// `perm[i]` (ONNX `Transpose`); `perm[0]` must be 0 so the batch stays outermost.
#[derive(Debug, Clone)]
pub struct Transpose {
    /// The permutation, batch axis included.
    pub perm: Vec<usize>,
}

impl Transpose {
    /// A transpose by `perm`, checked to be a permutation that keeps the batch axis first.
    pub fn new(perm: Vec<usize>) -> Result<Self> {
        let mut seen = vec![false; perm.len()];
        for &p in &perm {
            if p >= perm.len() || seen[p] {
                return Err(NnError::Config(format!(
                    "transpose: {perm:?} is not a permutation"
                )));
            }
            seen[p] = true;
        }
        if perm.first().is_some_and(|&p| p != 0) {
            return Err(NnError::Unsupported(format!(
                "transpose {perm:?} moves the batch axis"
            )));
        }
        Ok(Self { perm })
    }

    /// Rebuilds a `transpose` layer from its record.
    pub fn from_record(rec: &LayerRecord) -> Result<Self> {
        rec.expect_tensor_names(&[])?;
        Self::new(record_sizes(rec, "perm")?)
            .map_err(|e| rec.corrupt("attribute `perm`", e.to_string()))
    }

    fn permute(dims: &[usize], data: &[f32], perm: &[usize]) -> Result<Tensor> {
        let out_dims: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
        let in_strides = shape_of(dims)?.strides();
        let strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
        let n = data.len();
        let mut out = Vec::with_capacity(n);
        let rank = out_dims.len();
        let mut idx = vec![0usize; rank];
        let mut off = 0usize;
        for _ in 0..n {
            out.push(data[off]);
            for ax in (0..rank).rev() {
                idx[ax] += 1;
                off += strides[ax];
                if idx[ax] < out_dims[ax] {
                    break;
                }
                off -= strides[ax] * out_dims[ax];
                idx[ax] = 0;
            }
        }
        Ok(Tensor::new(&out_dims, out)?)
    }
}

impl Layer for Transpose {
    fn kind(&self) -> &'static str {
        "transpose"
    }

    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        if input.rank() != self.perm.len() {
            return Err(bad_input(
                "transpose",
                input,
                format!("permutation {:?} needs rank {}", self.perm, self.perm.len()),
            ));
        }
        let dims: Vec<usize> = self.perm.iter().map(|&p| input.dims()[p]).collect();
        shape_of(&dims)
    }

    fn forward(&mut self, input: &Tensor, _mode: Mode) -> Result<Tensor> {
        self.output_shape(input.shape())?;
        Self::permute(input.dims(), input.data(), &self.perm)
    }

    fn backward(&mut self, grad_output: &Tensor) -> Result<Tensor> {
        let mut inv = vec![0; self.perm.len()];
        for (i, &p) in self.perm.iter().enumerate() {
            inv[p] = i;
        }
        if grad_output.dims().len() != inv.len() {
            return Err(bad_input(
                "transpose backward",
                grad_output.shape(),
                format!("permutation {:?}", self.perm),
            ));
        }
        Self::permute(grad_output.dims(), grad_output.data(), &inv)
    }

    fn param_count(&self) -> usize {
        0
    }

    fn macs(&self, _input: &Shape) -> Result<u64> {
        Ok(0)
    }

    fn record(&self) -> Result<LayerRecord> {
        Ok(LayerRecord::new("transpose").with_ints("perm", &to_i64(&self.perm)))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
