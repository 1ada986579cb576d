//! Layers that imported ONNX graphs need beyond the dense zoo layers: (log-)softmax on an
//! axis, elementwise arithmetic with a constant, reshape, transpose, the piecewise-linear
//! activations of the mobile networks ([`HardActivation`]: clip/ReLU6, hard sigmoid, hard
//! swish), and [`Parallel`], the
//! fork/join block through which a DAG such as a residual block `Add(f(x), x)` fits in the
//! sequential [`crate::Model`].
//!
//! Axis conventions: `axis` fields count from the outermost (batch) dimension of the batched
//! tensor, as ONNX does; negative values count from the end. Shapes carried by layers
//! (`Reshape::target`) exclude the batch dimension, as [`crate::Model::input_shape`] does.
//!
//! Each operator lives in its own file of [`crate::layers`]; this module gathers them under
//! one path and registers their kinds.

pub use super::broadcast::{broadcast_dims, resolve_axis};
pub use super::const_elementwise::{ArithOp, ConstElementwise};
pub use super::hard_activation::{HardActivation, HardKind};
pub use super::pad::Pad;
pub use super::parallel::{Merge, Parallel};
pub use super::reshape::Reshape;
pub use super::softmax::Softmax;
pub use super::transpose::Transpose;

use crate::error::Result;
use crate::registry::LayerRegistry;

/// Registers the kinds of this module; `parallel` rebuilds its branches through the registry
/// it is given.
pub fn register(registry: &mut LayerRegistry) -> Result<()> {
    crate::register_kinds! { registry;
        "softmax" => Softmax,
        "log_softmax" => Softmax,
        "add_const" => ConstElementwise,
        "mul_const" => ConstElementwise,
        "reshape" => Reshape,
        "transpose" => Transpose,
        "pad" => Pad,
        "clip" => HardActivation,
        "hard_sigmoid" => HardActivation,
        "hard_swish" => HardActivation,
    }
    registry.register("parallel", |rec, reg| {
        Ok(Box::new(Parallel::from_record(rec, reg)?))
    })
}

#[cfg(test)]
mod tests;
