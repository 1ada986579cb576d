//! Constant folding: the small tensors of shape arithmetic that exporters write (PyTorch's
//! TorchScript exporter flattens with `Shape -> Gather -> Unsqueeze -> Concat -> Reshape`,
//! its newer exporter with `Shape -> Squeeze -> Reshape -> Concat -> Reshape`) and constant
//! subgraphs (`Constant`, `ConstantOfShape`, `Expand`, `Cast`, arithmetic on constants).
//!
//! Integer tensors carry [`Dim`] elements: a known integer, or the symbolic batch size `N`,
//! which is what `Shape` of the graph input yields in position 0. A reshape target whose
//! first element is `N` keeps the batch, which is what lets such a chain become a per-sample
//! [`crate::layers::onnx_ops::Reshape`].

use crate::error::{NnError, Result};
use crate::layers::onnx_ops::broadcast_dims;

/// An element of an integer tensor during folding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dim {
    /// A known value.
    K(i64),
    /// The batch size (unknown at import).
    Batch,
}

/// A folded tensor: dimensions and row-major elements.
#[derive(Clone, Debug, PartialEq)]
pub struct Ct<T> {
    /// Dimensions (empty for a scalar).
    pub dims: Vec<usize>,
    /// Elements; length = product of dims.
    pub v: Vec<T>,
}

/// Largest element count a folded tensor may have: a file cannot make the importer allocate
/// more than this (4 M elements, 16 MiB of f32) however its shape arithmetic is written.
/// Tensors whose elements the file holds (initializers, `Constant` values) are bounded by
/// the file instead, so a fully connected layer of 100 M weights loads: see [`Ct::new`].
pub const MAX_FOLDED: usize = 1 << 22;

/// Element count of `dims` for a tensor the importer allocates (bounded by [`MAX_FOLDED`]).
fn numel(dims: &[usize]) -> Result<usize> {
    let n = checked_numel(dims)?;
    if n > MAX_FOLDED {
        return Err(too_big(dims));
    }
    Ok(n)
}

/// Element count of `dims`, overflow checked only.
fn checked_numel(dims: &[usize]) -> Result<usize> {
    let mut n: usize = 1;
    for &d in dims {
        n = n.checked_mul(d).ok_or_else(|| too_big(dims))?;
    }
    Ok(n)
}

fn too_big(dims: &[usize]) -> NnError {
    NnError::Unsupported(format!(
        "constant of shape {dims:?} exceeds the {MAX_FOLDED}-element limit of constant folding"
    ))
}

/// Resolves a possibly negative axis against `rank` (`rank_extra` allows `rank` itself, for
/// Unsqueeze).
pub fn axis(a: i64, rank: usize, what: &str) -> Result<usize> {
    let r = rank as i64;
    let x = if a < 0 { a + r } else { a };
    if x < 0 || x >= r.max(1) {
        return Err(NnError::Unsupported(format!(
            "{what}: axis {a} out of range for rank {rank}"
        )));
    }
    Ok(x as usize)
}

impl<T: Clone> Ct<T> {
    /// A tensor of elements already held, checking the element count (no size limit: `v`
    /// exists, so its size is bounded by the file or by a bounded computation).
    pub fn new(dims: Vec<usize>, v: Vec<T>) -> Result<Self> {
        let n = checked_numel(&dims)?;
        if n != v.len() {
            return Err(NnError::Unsupported(format!(
                "constant of shape {dims:?} has {} elements",
                v.len()
            )));
        }
        Ok(Self { dims, v })
    }

    /// A tensor of `dims` filled with `x`.
    pub fn full(dims: Vec<usize>, x: T) -> Result<Self> {
        let n = numel(&dims)?;
        Ok(Self {
            dims,
            v: vec![x; n],
        })
    }

    /// Same elements, new dimensions.
    pub fn reshaped(&self, dims: Vec<usize>) -> Result<Self> {
        Self::new(dims, self.v.clone())
    }

    /// ONNX `Gather` along `ax` with integer `indices` (negative counts from the end).
    pub fn gather(&self, ax: usize, idx_dims: &[usize], idx: &[i64]) -> Result<Self> {
        let d = self.dims.get(ax).copied().ok_or_else(|| {
            NnError::Unsupported(format!("gather: axis {ax} of shape {:?}", self.dims))
        })?;
        let outer: usize = self.dims[..ax].iter().product();
        let inner: usize = self.dims[ax + 1..].iter().product();
        let mut dims = self.dims[..ax].to_vec();
        dims.extend_from_slice(idx_dims);
        dims.extend_from_slice(&self.dims[ax + 1..]);
        numel(&dims)?;
        let mut v = Vec::new();
        for o in 0..outer {
            for &i in idx {
                let j = if i < 0 { i + d as i64 } else { i };
                if j < 0 || j >= d as i64 {
                    return Err(NnError::Unsupported(format!(
                        "gather: index {i} out of range for dimension {d}"
                    )));
                }
                let base = (o * d + j as usize) * inner;
                v.extend_from_slice(&self.v[base..base + inner]);
            }
        }
        Self::new(dims, v)
    }

    /// ONNX `Concat` of tensors along `ax`.
    pub fn concat(parts: &[&Ct<T>], ax: usize) -> Result<Self> {
        let first = parts
            .first()
            .ok_or_else(|| NnError::Unsupported("concat of nothing".into()))?;
        let mut dims = first.dims.clone();
        if ax >= dims.len() {
            return Err(NnError::Unsupported(format!(
                "concat: axis {ax} of shape {dims:?}"
            )));
        }
        dims[ax] = 0;
        for p in parts {
            let ok = p.dims.len() == dims.len()
                && p.dims
                    .iter()
                    .zip(&dims)
                    .enumerate()
                    .all(|(i, (a, b))| i == ax || a == b);
            if !ok {
                return Err(NnError::Unsupported(format!(
                    "concat: shapes {:?} and {:?} differ off axis {ax}",
                    first.dims, p.dims
                )));
            }
            dims[ax] += p.dims[ax];
        }
        numel(&dims)?;
        let outer: usize = dims[..ax].iter().product();
        let mut v = Vec::new();
        for o in 0..outer {
            for p in parts {
                let chunk: usize = p.dims[ax..].iter().product();
                v.extend_from_slice(&p.v[o * chunk..(o + 1) * chunk]);
            }
        }
        Self::new(dims, v)
    }

    /// ONNX `Slice` (opset >= 10 form; `steps` may be negative).
    pub fn slice(
        &self,
        starts: &[i64],
        ends: &[i64],
        axes: &[usize],
        steps: &[i64],
    ) -> Result<Self> {
        let rank = self.dims.len();
        let mut lo = vec![0i64; rank];
        let mut step = vec![1i64; rank];
        let mut count: Vec<usize> = self.dims.clone();
        for (k, &a) in axes.iter().enumerate() {
            let d = self.dims[a] as i64;
            let s = steps.get(k).copied().unwrap_or(1);
            if s == 0 {
                return Err(NnError::Unsupported("slice: step 0".into()));
            }
            let clampi = |x: i64, lo_: i64, hi_: i64| x.max(lo_).min(hi_);
            let mut st = starts[k];
            let mut en = ends[k];
            if st < 0 {
                st = st.saturating_add(d);
            }
            if en < 0 {
                en = en.saturating_add(d);
            }
            let (st, en) = if s > 0 {
                (clampi(st, 0, d), clampi(en, 0, d))
            } else {
                (clampi(st, 0, d - 1), clampi(en, -1, d - 1))
            };
            let n = if s > 0 {
                if en > st { (en - st + s - 1) / s } else { 0 }
            } else if st > en {
                (st - en + (-s) - 1) / (-s)
            } else {
                0
            };
            lo[a] = st;
            step[a] = s;
            count[a] = n as usize;
        }
        let n = numel(&count)?;
        let strides = {
            let mut s = vec![1usize; rank];
            for i in (0..rank.saturating_sub(1)).rev() {
                s[i] = s[i + 1] * self.dims[i + 1];
            }
            s
        };
        let mut v = Vec::with_capacity(n);
        let mut idx = vec![0usize; rank];
        for _ in 0..n {
            let off: i64 = (0..rank)
                .map(|a| (lo[a] + idx[a] as i64 * step[a]) * strides[a] as i64)
                .sum();
            v.push(self.v[off as usize].clone());
            for a in (0..rank).rev() {
                idx[a] += 1;
                if idx[a] < count[a] {
                    break;
                }
                idx[a] = 0;
            }
        }
        Self::new(count, v)
    }

    /// ONNX `Transpose` by `perm`.
    pub fn transpose(&self, perm: &[usize]) -> Result<Self> {
        let rank = self.dims.len();
        if perm.len() != rank {
            return Err(NnError::Unsupported(format!(
                "transpose: perm {perm:?} for shape {:?}",
                self.dims
            )));
        }
        let mut seen = vec![false; rank];
        for &p in perm {
            if p >= rank || seen[p] {
                return Err(NnError::Unsupported(format!("transpose: perm {perm:?}")));
            }
            seen[p] = true;
        }
        let dims: Vec<usize> = perm.iter().map(|&p| self.dims[p]).collect();
        let mut in_strides = vec![1usize; rank];
        for i in (0..rank.saturating_sub(1)).rev() {
            in_strides[i] = in_strides[i + 1] * self.dims[i + 1];
        }
        let strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
        let n = self.v.len();
        let mut v = Vec::with_capacity(n);
        let mut idx = vec![0usize; rank];
        for _ in 0..n {
            let off: usize = idx.iter().zip(&strides).map(|(i, s)| i * s).sum();
            v.push(self.v[off].clone());
            for a in (0..rank).rev() {
                idx[a] += 1;
                if idx[a] < dims[a] {
                    break;
                }
                idx[a] = 0;
            }
        }
        Self::new(dims, v)
    }

    /// ONNX multidirectional broadcasting of `self` to `dims` (`Expand`: the result has the
    /// broadcast of both shapes).
    pub fn expand(&self, shape: &[usize]) -> Result<Self> {
        let out = broadcast_dims("expand", &self.dims, shape)?;
        let n = numel(&out)?;
        let map = broadcast_index(&self.dims, &out);
        let mut v = Vec::with_capacity(n);
        for i in 0..n {
            v.push(self.v[map(i)].clone());
        }
        Self::new(out, v)
    }

    /// Elementwise binary op with broadcasting.
    pub fn zip_with<U: Clone>(
        &self,
        other: &Ct<T>,
        f: impl Fn(&T, &T) -> Result<U>,
    ) -> Result<Ct<U>> {
        let out = broadcast_dims("constant arithmetic", &self.dims, &other.dims)?;
        let n = numel(&out)?;
        let ma = broadcast_index(&self.dims, &out);
        let mb = broadcast_index(&other.dims, &out);
        let mut v = Vec::with_capacity(n);
        for i in 0..n {
            v.push(f(&self.v[ma(i)], &other.v[mb(i)])?);
        }
        Ct::new(out, v)
    }
}

/// Maps a flat index of `out` to the flat index of a tensor of `dims` broadcast to it.
fn broadcast_index(dims: &[usize], out: &[usize]) -> impl Fn(usize) -> usize + use<> {
    let rank = out.len();
    let mut strides = vec![0usize; rank];
    let mut s = 1usize;
    for i in (0..dims.len()).rev() {
        let o = i + rank - dims.len();
        if dims[i] != 1 {
            strides[o] = s;
        }
        s *= dims[i];
    }
    let out = out.to_vec();
    move |mut flat: usize| {
        let mut off = 0;
        for a in (0..rank).rev() {
            let i = flat % out[a].max(1);
            flat /= out[a].max(1);
            off += i * strides[a];
        }
        off
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_movement() {
        let t = Ct::new(vec![2, 3], (0..6).collect::<Vec<i32>>()).unwrap();
        assert_eq!(t.gather(1, &[], &[-1]).unwrap().v, vec![2, 5]);
        assert_eq!(t.gather(0, &[1], &[1]).unwrap().dims, vec![1, 3]);
        assert!(t.gather(0, &[], &[2]).is_err());
        assert_eq!(t.transpose(&[1, 0]).unwrap().v, vec![0, 3, 1, 4, 2, 5]);
        let c = Ct::concat(&[&t, &t], 1).unwrap();
        assert_eq!(c.v, vec![0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5]);
        let s = t.slice(&[1], &[i64::MAX], &[1], &[1]).unwrap();
        assert_eq!((s.dims.clone(), s.v), (vec![2, 2], vec![1, 2, 4, 5]));
        let s = t.slice(&[-1], &[-4], &[1], &[-1]).unwrap();
        assert_eq!(s.v, vec![2, 1, 0, 5, 4, 3]);
        let e = Ct::new(vec![3, 1], vec![1, 2, 3])
            .unwrap()
            .expand(&[2, 1, 2])
            .unwrap();
        assert_eq!(e.dims, vec![2, 3, 2]);
        assert_eq!(e.v, vec![1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3]);
        assert!(Ct::full(vec![1 << 20, 1 << 20], 0u8).is_err());
    }
}
