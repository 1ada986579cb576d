//! Model: a sequence of layers with a declared per-sample input shape.

use tensor_core::{Shape, Tensor};

use crate::error::{NnError, Result};
use crate::layer::{Layer, Mode};

/// One row of a model summary (`slimnet inspect`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LayerSummary {
    /// Position in the model.
    pub index: usize,
    /// Layer kind.
    pub kind: String,
    /// Output shape for one sample (batch dimension 1 included).
    pub output_shape: Vec<usize>,
    /// Parameter count.
    pub params: usize,
    /// Bytes the parameters occupy as stored.
    pub bytes: usize,
    /// Multiply-accumulates for one sample.
    pub macs: u64,
}

/// A sequential model: layers applied in order.
///
/// Design: sequential is the one topology the zoo and the Deep Compression experiments need;
/// a graph (DAG) model for residual networks is a separate type when an importer needs one
/// (see docs/ARCHITECTURE.md).
#[derive(Debug)]
pub struct Model {
    /// A name (zoo name, or the file it came from).
    pub name: String,
    /// Shape of one sample without the batch dimension (`[1, 28, 28]` for Fashion-MNIST CNNs,
    /// `[784]` for MLPs).
    pub input_shape: Vec<usize>,
    /// The layers, in order.
    pub layers: Vec<Box<dyn Layer>>,
}

impl Model {
    /// A model from its layers.
    pub fn new(
        name: impl Into<String>,
        input_shape: &[usize],
        layers: Vec<Box<dyn Layer>>,
    ) -> Self {
        Self {
            name: name.into(),
            input_shape: input_shape.to_vec(),
            layers,
        }
    }

    /// The batch input shape for `batch` samples.
    pub fn batch_shape(&self, batch: usize) -> Result<Shape> {
        let mut dims = vec![batch];
        dims.extend_from_slice(&self.input_shape);
        Ok(Shape::new(&dims)?)
    }

    /// Runs every layer in order. In `Mode::Train` layers cache what `backward` needs.
    pub fn forward(&mut self, input: &Tensor, mode: Mode) -> Result<Tensor> {
        let expected = &self.input_shape;
        if input.dims().len() != expected.len() + 1 || &input.dims()[1..] != expected.as_slice() {
            return Err(NnError::BadInput {
                layer: format!("model {}", self.name),
                input: input.shape().clone(),
                reason: format!("expected [batch, {expected:?}]"),
            });
        }
        let mut x: Option<Tensor> = None;
        for layer in self.layers.iter_mut() {
            let y = layer.forward(x.as_ref().unwrap_or(input), mode)?;
            x = Some(y);
        }
        Ok(x.unwrap_or_else(|| input.clone()))
    }

    /// Back-propagates through every layer in reverse; returns the input gradient.
    pub fn backward(&mut self, grad_output: &Tensor) -> Result<Tensor> {
        let mut g: Option<Tensor> = None;
        for layer in self.layers.iter_mut().rev() {
            let next = layer.backward(g.as_ref().unwrap_or(grad_output))?;
            g = Some(next);
        }
        Ok(g.unwrap_or_else(|| grad_output.clone()))
    }

    /// Whether `backward` must produce the gradient with respect to the model's input. When
    /// not (training on data), the layers up to and including the first one with parameters
    /// are told to skip their input gradient (see [`Layer::set_input_grad_needed`]), and the
    /// gradient `backward` returns is zeros.
    pub fn set_input_grad_needed(&mut self, needed: bool) {
        for layer in self.layers.iter_mut() {
            layer.set_input_grad_needed(needed);
            if layer.param_count() > 0 {
                break;
            }
        }
    }

    /// Zeroes every parameter gradient.
    pub fn zero_grad(&mut self) {
        self.layers.iter_mut().for_each(|l| l.zero_grad());
    }

    /// Drops every cached activation.
    pub fn clear_cache(&mut self) {
        self.layers.iter_mut().for_each(|l| l.clear_cache());
    }

    /// Total parameter count.
    pub fn param_count(&self) -> usize {
        self.layers.iter().map(|l| l.param_count()).sum()
    }

    /// Total bytes of parameters as stored.
    pub fn stored_bytes(&self) -> usize {
        self.layers.iter().map(|l| l.stored_bytes()).sum()
    }

    /// Per-layer shapes, parameters, bytes and multiply-accumulates for one sample.
    pub fn summary(&self) -> Result<Vec<LayerSummary>> {
        let mut shape = self.batch_shape(1)?;
        let mut rows = Vec::with_capacity(self.layers.len());
        for (index, layer) in self.layers.iter().enumerate() {
            let macs = layer.macs(&shape)?;
            let out = layer.output_shape(&shape)?;
            rows.push(LayerSummary {
                index,
                kind: layer.kind().to_string(),
                output_shape: out.dims().to_vec(),
                params: layer.param_count(),
                bytes: layer.stored_bytes(),
                macs,
            });
            shape = out;
        }
        Ok(rows)
    }

    /// Multiply-accumulates for one sample.
    pub fn macs_per_sample(&self) -> Result<u64> {
        Ok(self.summary()?.iter().map(|r| r.macs).sum())
    }
}
