//! Reshape of each sample to fixed dimensions (ONNX `Reshape` with a constant shape).

use std::any::Any;

use tensor_core::{Shape, Tensor};

use super::{bad_input, no_cache, record_sizes, shape_of, to_i64};
use crate::error::Result;
use crate::layer::{Layer, Mode};
use crate::record::LayerRecord;

/// Reshapes each sample to `target` (batch dimension kept); no data moves.
#[derive(Debug, Clone)]
pub struct Reshape {
    /// The per-sample output dimensions.
    pub target: Vec<usize>,
    input_dims: Option<Vec<usize>>,
}

impl Reshape {
    /// A reshape of each sample to `target`.
    pub fn new(target: Vec<usize>) -> Self {
        Self {
            target,
            input_dims: None,
        }
    }

    /// Rebuilds a `reshape` layer from its record.
    pub fn from_record(rec: &LayerRecord) -> Result<Self> {
        rec.expect_tensor_names(&[])?;
        let shape = record_sizes(rec, "shape")?;
        Shape::new(&shape).map_err(|e| rec.corrupt("attribute `shape`", e.to_string()))?;
        Ok(Self::new(shape))
    }
}

impl Layer for Reshape {
    fn kind(&self) -> &'static str {
        "reshape"
    }

    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        let n = input.dim("reshape", 0)?;
        let per: usize = input.dims()[1..].iter().product();
        let want: usize = self.target.iter().product();
        if per != want {
            return Err(bad_input(
                "reshape",
                input,
                format!(
                    "a sample has {per} elements, target {:?} has {want}",
                    self.target
                ),
            ));
        }
        let mut dims = vec![n];
        dims.extend_from_slice(&self.target);
        shape_of(&dims)
    }

    fn forward(&mut self, input: &Tensor, mode: Mode) -> Result<Tensor> {
        let out = self.output_shape(input.shape())?;
        if mode == Mode::Train {
            self.input_dims = Some(input.dims().to_vec());
        }
        Ok(input.clone().reshape(out.dims())?)
    }

    fn backward(&mut self, grad_output: &Tensor) -> Result<Tensor> {
        let dims = self
            .input_dims
            .as_ref()
            .ok_or_else(|| no_cache("reshape"))?;
        Ok(grad_output.clone().reshape(dims)?)
    }

    fn param_count(&self) -> usize {
        0
    }

    fn macs(&self, _input: &Shape) -> Result<u64> {
        Ok(0)
    }

    fn clear_cache(&mut self) {
        self.input_dims = None;
    }

    fn record(&self) -> Result<LayerRecord> {
        Ok(LayerRecord::new("reshape").with_ints("shape", &to_i64(&self.target)))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
