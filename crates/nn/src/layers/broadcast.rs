//! NumPy broadcasting (ONNX's multidirectional broadcasting) and ONNX axis resolution,
//! shared by the graph operators ([`super::ConstElementwise`], [`super::Parallel`]) and the
//! ONNX importer's shape inference and constant folding.

use tensor_core::{Shape, Tensor, TensorError};

use super::shape_of;
use crate::error::Result;

/// Resolves a possibly negative ONNX axis against `rank`.
pub fn resolve_axis(op: &'static str, axis: isize, rank: usize) -> Result<usize> {
    let r = rank as isize;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r.max(1) {
        return Err(TensorError::InvalidArgument {
            op,
            reason: format!("axis {axis} out of range for rank {rank}"),
        }
        .into());
    }
    Ok(a as usize)
}

/// The NumPy broadcast of two shapes, or an error naming `op` and both shapes.
pub fn broadcast_dims(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(TensorError::ShapeMismatch {
                    op,
                    lhs: shape_of(a)?,
                    rhs: shape_of(b)?,
                }
                .into());
            }
        };
    }
    Ok(out)
}

/// Strides of `dims` (right-aligned into `out_rank` dimensions) with 0 on broadcast axes.
fn broadcast_strides(dims: &[usize], out: &[usize]) -> Vec<usize> {
    let rank = out.len();
    let own = Shape::new(dims).map(|s| s.strides()).unwrap_or_default();
    let mut s = vec![0; rank];
    for (i, st) in s.iter_mut().enumerate() {
        if i + dims.len() >= rank {
            let j = i + dims.len() - rank;
            if dims[j] != 1 {
                *st = own[j];
            }
        }
    }
    s
}

/// Calls `f(out_index, a_index, b_index)` for every element of the broadcast output.
fn for_each_broadcast(
    a: &[usize],
    b: &[usize],
    out: &[usize],
    mut f: impl FnMut(usize, usize, usize),
) {
    let n: usize = out.iter().product();
    let sa = broadcast_strides(a, out);
    let sb = broadcast_strides(b, out);
    let rank = out.len();
    let mut idx = vec![0usize; rank];
    let (mut ia, mut ib) = (0usize, 0usize);
    for o in 0..n {
        f(o, ia, ib);
        for ax in (0..rank).rev() {
            idx[ax] += 1;
            ia += sa[ax];
            ib += sb[ax];
            if idx[ax] < out[ax] {
                break;
            }
            ia -= sa[ax] * out[ax];
            ib -= sb[ax] * out[ax];
            idx[ax] = 0;
        }
    }
}

/// `op` applied elementwise with broadcasting.
pub(crate) fn broadcast_binary(
    name: &'static str,
    a: &Tensor,
    b: &Tensor,
    op: impl Fn(f32, f32) -> f32,
) -> Result<Tensor> {
    let out_dims = broadcast_dims(name, a.dims(), b.dims())?;
    if out_dims == a.dims() && a.dims() == b.dims() {
        let data = a
            .data()
            .iter()
            .zip(b.data())
            .map(|(&x, &y)| op(x, y))
            .collect();
        return Ok(Tensor::new(&out_dims, data)?);
    }
    let shape = shape_of(&out_dims)?;
    let mut data = vec![0.0; shape.numel()];
    let (ad, bd) = (a.data(), b.data());
    for_each_broadcast(a.dims(), b.dims(), &out_dims, |o, i, j| {
        data[o] = op(ad[i], bd[j]);
    });
    Ok(Tensor::from_vec(shape, data)?)
}

/// Sums `g` (of a broadcast output shape) down to `dims` (the inverse of broadcasting).
pub(crate) fn reduce_to(g: &Tensor, dims: &[usize]) -> Result<Tensor> {
    if g.dims() == dims {
        return Ok(g.clone());
    }
    let mut out = Tensor::zeros(shape_of(dims)?);
    let od = out.data_mut();
    let gd = g.data();
    for_each_broadcast(dims, &[], g.dims(), |o, i, _| od[i] += gd[o]);
    Ok(out)
}
