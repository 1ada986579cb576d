//! Layers that imported ONNX graphs need beyond the dense zoo layers: (log-)softmax on an
//! axis, elementwise arithmetic with a constant, reshape, transpose, and [`Parallel`], the
//! fork/join block through which a DAG such as a residual block `Add(f(x), x)` fits in the
//! sequential [`crate::Model`].
//!
//! Axis conventions: `axis` fields count from the outermost (batch) dimension of the batched
//! tensor, as ONNX does; negative values count from the end. Shapes carried by layers
//! (`Reshape::target`) exclude the batch dimension, as [`crate::Model::input_shape`] does.
//!
//! Each operator lives in its own file of [`crate::layers`]; this module gathers them under
//! one path and rebuilds any of them from its record.

pub use super::broadcast::{broadcast_dims, resolve_axis};
pub use super::const_elementwise::{ArithOp, ConstElementwise};
pub use super::pad::Pad;
pub use super::parallel::{Merge, Parallel};
pub use super::reshape::Reshape;
pub use super::softmax::Softmax;
pub use super::transpose::Transpose;

use crate::error::Result;
use crate::layer::Layer;
use crate::record::LayerRecord;

/// Rebuilds a layer of this module from its record; `None` when the kind is not one of
/// them. `build` rebuilds nested layers (the crate's `layer_from_record`).
pub fn from_record(
    rec: &LayerRecord,
    build: &dyn Fn(&LayerRecord) -> Result<Box<dyn Layer>>,
) -> Result<Option<Box<dyn Layer>>> {
    Ok(Some(match rec.kind.as_str() {
        "softmax" | "log_softmax" => Box::new(Softmax::from_record(rec)?),
        "add_const" | "mul_const" => Box::new(ConstElementwise::from_record(rec)?),
        "reshape" => Box::new(Reshape::from_record(rec)?),
        "transpose" => Box::new(Transpose::from_record(rec)?),
        "pad" => Box::new(Pad::from_record(rec)?),
        "parallel" => Box::new(Parallel::from_record(rec, build)?),
        _ => return Ok(None),
    }))
}

#[cfg(test)]
mod tests;
