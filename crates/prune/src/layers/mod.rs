//! The compressed layers of pruning: [`SparseLinear`] and [`SparseConv2d`] execute from the
//! sparse form (CSR kernels of [`crate::sparse`]) and store Deep Compression's relative index
//! (packed `b`-bit gaps, typed payload, plus the stored values); [`register`] adds their kinds
//! to a layer registry; [`sparsify`] replaces every pruned dense layer of a model by its
//! sparse twin.

mod sparse_conv2d;
mod sparse_linear;
mod stored;

pub use sparse_conv2d::SparseConv2d;
pub use sparse_linear::SparseLinear;

use nn::layers::{Conv2d, Linear};
use nn::{LayerRegistry, Model};

use crate::error::Result;
use crate::sparse::{CONV_INDEX_BITS, FC_INDEX_BITS};

/// Registers `sparse_linear` and `sparse_conv2d`.
pub fn register(registry: &mut LayerRegistry) -> nn::Result<()> {
    nn::register_kinds! { registry;
        "sparse_linear" => SparseLinear,
        "sparse_conv2d" => SparseConv2d,
    }
    Ok(())
}

/// Replaces every `linear` and `conv2d` layer of `model` (branches included) whose weight
/// density is at most `max_density` by its sparse twin, with Deep Compression's gap widths
/// ([`FC_INDEX_BITS`] for fc, [`CONV_INDEX_BITS`] for conv). Returns how many layers were
/// replaced. The replaced model computes the same function (same weights, other kernels).
pub fn sparsify(model: &mut Model, max_density: f64) -> Result<usize> {
    let keep = |density: f64, layer: Box<dyn nn::Layer>| (density <= max_density).then_some(layer);
    Ok(model.rewrite(&mut |_, layer| {
        Ok(if let Some(l) = layer.as_any().downcast_ref::<Linear>() {
            let s = SparseLinear::from_linear(l, FC_INDEX_BITS)?;
            keep(s.density(), Box::new(s))
        } else if let Some(c) = layer.as_any().downcast_ref::<Conv2d>() {
            let s = SparseConv2d::from_conv2d(c, CONV_INDEX_BITS)?;
            keep(s.density(), Box::new(s))
        } else {
            None
        })
    })?)
}
