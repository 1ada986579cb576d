//! The inputs that layers at given paths receive when the model runs on a batch: what the
//! data-driven refit (and the output-error measurements) work from.
//!
//! Each layer is wrapped in place, for one inference pass, by a [`Recorder`] that keeps a
//! copy of its input and runs it unchanged; afterwards the wrappers are taken off. Going
//! through the model walk, this reaches layers inside `Parallel` branches too.

use std::any::Any;

use nn::{Layer, LayerPath, LayerRecord, Mode, Model};
use tensor_core::{Shape, Tensor};

use crate::error::{DecomposeError, Result};

/// A layer that records its input and otherwise is the layer it wraps.
#[derive(Debug)]
struct Recorder {
    inner: Box<dyn Layer>,
    seen: Option<Tensor>,
}

impl Layer for Recorder {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn output_shape(&self, input: &Shape) -> nn::Result<Shape> {
        self.inner.output_shape(input)
    }
    fn forward(&mut self, input: &Tensor, mode: Mode) -> nn::Result<Tensor> {
        self.seen = Some(input.clone());
        self.inner.forward(input, mode)
    }
    fn backward(&mut self, grad_output: &Tensor) -> nn::Result<Tensor> {
        self.inner.backward(grad_output)
    }
    fn param_count(&self) -> usize {
        self.inner.param_count()
    }
    fn macs(&self, input: &Shape) -> nn::Result<u64> {
        self.inner.macs(input)
    }
    fn record(&self) -> nn::Result<LayerRecord> {
        self.inner.record()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// The input each layer of `paths` receives when `model` runs `batch` in inference mode,
/// in the order of `paths`. The model is unchanged afterwards (also on error). Errors: a
/// path with no layer, or a failing forward pass.
pub fn capture_inputs(
    model: &mut Model,
    paths: &[LayerPath],
    batch: &Tensor,
) -> Result<Vec<Tensor>> {
    let missing = |p: &LayerPath| DecomposeError::BadActivations {
        op: "capture inputs",
        what: format!("no layer at {p}"),
    };
    let mut wrapped = 0;
    let mut result = Ok(());
    for path in paths {
        let Some(slot) = model.layer_mut(path) else {
            result = Err(missing(path));
            break;
        };
        let inner = std::mem::replace(slot, placeholder());
        *slot = Box::new(Recorder { inner, seen: None });
        wrapped += 1;
    }
    if result.is_ok() {
        result = model
            .forward(batch, Mode::Eval)
            .map(|_| ())
            .map_err(Into::into);
    }
    // Take every recorder off, whatever happened.
    let mut seen = Vec::with_capacity(wrapped);
    for path in &paths[..wrapped] {
        let slot = model.layer_mut(path).ok_or_else(|| missing(path))?;
        let rec = slot
            .as_any_mut()
            .downcast_mut::<Recorder>()
            .ok_or_else(|| missing(path))?;
        let input = rec.seen.take();
        let inner = std::mem::replace(&mut rec.inner, placeholder());
        *slot = inner;
        seen.push(input.ok_or_else(|| DecomposeError::BadActivations {
            op: "capture inputs",
            what: format!("the layer at {path} did not run"),
        }));
    }
    result?;
    seen.into_iter().collect()
}

/// What stands in a slot while its layer moves (never run).
fn placeholder() -> Box<dyn Layer> {
    Box::new(nn::layers::Flatten::new())
}
