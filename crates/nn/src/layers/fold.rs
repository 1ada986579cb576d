//! Folding BatchNorm into the preceding convolution, for inference.
//!
//! In evaluation mode BatchNorm is the per-channel affine map `y = s[o] z + t[o]` with
//! `s = gamma / sqrt(running_var + eps)` and `t = beta - running_mean * s`; applied to a
//! convolution's output `z = W * x + b` it gives the convolution with `W'[o] = s[o] W[o]` and
//! `b'[o] = s[o] b[o] + t[o]` (Jacob et al., 2018, section 3.2). The folded network computes
//! the same function with one layer fewer.

use tensor_core::Tensor;

use super::{BatchNorm2d, Conv2d};
use crate::error::{NnError, Result};
use crate::model::{LayerPath, Model};

/// The convolution equivalent to `conv` followed by `bn` in evaluation mode.
pub fn fold_batchnorm(conv: &Conv2d, bn: &BatchNorm2d) -> Result<Conv2d> {
    let p = *conv.params();
    if bn.num_features() != p.out_channels {
        return Err(NnError::Config(format!(
            "fold_batchnorm: batchnorm2d has {} channels, the convolution {} outputs",
            bn.num_features(),
            p.out_channels
        )));
    }
    let (scale, shift) = bn.eval_affine();
    let per_out = p.patch_len();
    let mut w = conv.weight().clone();
    for (o, filt) in w.data_mut().chunks_exact_mut(per_out.max(1)).enumerate() {
        filt.iter_mut().for_each(|v| *v *= scale[o]);
    }
    let bias: Vec<f32> = (0..p.out_channels)
        .map(|o| {
            let b = conv.bias().map_or(0.0, |b| b.data()[o]);
            (scale[o] as f64 * b as f64 + shift[o] as f64) as f32
        })
        .collect();
    Conv2d::from_parts(p, w, Some(Tensor::new(&[p.out_channels], bias)?))
}

/// Replaces every `conv2d` immediately followed by a `batchnorm2d` in `model`, at top level
/// and inside every branch, with their folded convolution; returns how many pairs were
/// folded. On error the model is unchanged.
pub fn fold_batchnorms(model: &mut Model) -> Result<usize> {
    // All folds are computed before the model is touched. In the walk's pre-order a conv2d
    // (which has no nested layers) is directly followed by its next sibling.
    let mut folds: Vec<(LayerPath, Conv2d)> = Vec::new();
    let paths = model.paths();
    for pair in paths.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.parent() != b.parent() || a.index() + 1 != b.index() {
            continue;
        }
        let conv = model
            .layer(a)
            .and_then(|l| l.as_any().downcast_ref::<Conv2d>());
        let bn = model
            .layer(b)
            .and_then(|l| l.as_any().downcast_ref::<BatchNorm2d>());
        if let (Some(conv), Some(bn)) = (conv, bn) {
            folds.push((a.clone(), fold_batchnorm(conv, bn)?));
        }
    }
    let n = folds.len();
    // Last path first: removing a BatchNorm shifts only the layers after it in its sequence,
    // which come later in path order and are already done.
    folds.sort_by(|a, b| b.0.cmp(&a.0));
    for (path, conv) in folds {
        let bn = LayerPath::at_index(&path, path.index() + 1);
        model.replace(&bn, Vec::new())?;
        model.replace(&path, vec![Box::new(conv)])?;
    }
    Ok(n)
}
