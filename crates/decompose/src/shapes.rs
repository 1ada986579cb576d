//! The input shape (one sample) of every layer of a model, branches included: what a
//! layer's multiply-accumulates and a convolution's factored geometry depend on.

use std::collections::BTreeMap;

use nn::{Layer, LayerPath, Model};
use tensor_core::Shape;

use crate::error::Result;

/// Every layer's path with the shape of its input for a batch of one, in the order of
/// [`Model::visit`]. A container's branches each start from the container's input.
pub fn input_shapes(model: &Model) -> Result<Vec<(LayerPath, Shape)>> {
    fn walk(
        seq: &[Box<dyn Layer>],
        parent: Option<(&LayerPath, usize)>,
        mut shape: Shape,
        out: &mut Vec<(LayerPath, Shape)>,
    ) -> Result<()> {
        for (i, layer) in seq.iter().enumerate() {
            let path = match parent {
                Some((p, b)) => p.child(b, i),
                None => LayerPath::top(i),
            };
            out.push((path.clone(), shape.clone()));
            for (b, branch) in layer.branches().iter().enumerate() {
                walk(branch, Some((&path, b)), shape.clone(), out)?;
            }
            shape = layer.output_shape(&shape)?;
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(&model.layers, None, model.batch_shape(1)?, &mut out)?;
    Ok(out)
}

/// Multiply-accumulates per sample summed by layer kind, over the layers that compute
/// (containers count through their branches).
pub fn macs_by_kind(model: &Model) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for (path, shape) in input_shapes(model)? {
        if let Some(layer) = model.layer(&path)
            && layer.branches().is_empty()
        {
            *out.entry(layer.kind().to_string()).or_insert(0) += layer.macs(&shape)?;
        }
    }
    Ok(out)
}
