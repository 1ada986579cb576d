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
    let mut replacements: Vec<(nn::LayerPath, Box<dyn nn::Layer>)> = Vec::new();
    let mut err = None;
    model.visit(&mut |path, layer| {
        if err.is_some() {
            return;
        }
        let built: Result<Option<Box<dyn nn::Layer>>> = if let Some(l) =
            layer.as_any().downcast_ref::<Linear>()
        {
            SparseLinear::from_linear(l, FC_INDEX_BITS)
                .map(|s| (s.density() <= max_density).then(|| Box::new(s) as Box<dyn nn::Layer>))
        } else if let Some(c) = layer.as_any().downcast_ref::<Conv2d>() {
            SparseConv2d::from_conv2d(c, CONV_INDEX_BITS)
                .map(|s| (s.density() <= max_density).then(|| Box::new(s) as Box<dyn nn::Layer>))
        } else {
            Ok(None)
        };
        match built {
            Ok(Some(l)) => replacements.push((path.clone(), l)),
            Ok(None) => {}
            Err(e) => err = Some(e),
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    let n = replacements.len();
    for (path, layer) in replacements {
        model.replace(&path, vec![layer])?;
    }
    Ok(n)
}
