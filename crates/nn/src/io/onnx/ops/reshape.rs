//! Layout operators: `Squeeze`/`Unsqueeze`, `Reshape`, `Flatten` and `Transpose`, folded on
//! constants and turned into per-sample reshape, flatten or transpose layers on computed
//! values (the batch dimension must stay first).

use super::super::fold::{Dim, axis};
use super::super::import::{Attrs, Importer, Rt, Value, sizes, unsupported};
use super::super::proto::NodeProto;
use super::super::spec::Op;
use crate::error::Result;

impl Importer {
    pub(super) fn squeeze(
        &mut self,
        node: &NodeProto,
        unsqueeze: bool,
        axes: Option<Vec<i64>>,
    ) -> Result<Value> {
        let v = self.req(node, 0)?;
        let is_rt = matches!(v, Value::Rt(_));
        let dims = match &v {
            Value::F(c) => c.dims.clone(),
            Value::I(c) => c.dims.clone(),
            Value::Rt(r) => r.dims.clone(),
        };
        let (new_dims, ax): (Vec<usize>, Vec<usize>) = if unsqueeze {
            let axes = axes.ok_or_else(|| unsupported("Unsqueeze without axes"))?;
            let out_rank = dims.len() + axes.len();
            let mut ax: Vec<usize> = axes
                .iter()
                .map(|&x| axis(x, out_rank, "Unsqueeze"))
                .collect::<Result<_>>()?;
            ax.sort_unstable();
            ax.dedup();
            if ax.len() != axes.len() {
                return Err(unsupported(format!("repeated axes {axes:?}")));
            }
            let mut src = dims.iter();
            let nd = (0..out_rank)
                .map(|i| {
                    if ax.contains(&i) {
                        1
                    } else {
                        src.next().copied().unwrap_or(1)
                    }
                })
                .collect();
            (nd, ax)
        } else {
            let ax: Vec<usize> = match axes {
                Some(axes) => axes
                    .iter()
                    .map(|&x| axis(x, dims.len(), "Squeeze"))
                    .collect::<Result<_>>()?,
                // Without axes every unit dimension goes (the batch of a computed value stays).
                None => (0..dims.len())
                    .filter(|&i| dims[i] == 1 && !(is_rt && i == 0))
                    .collect(),
            };
            if let Some(&i) = ax.iter().find(|&&i| dims[i] != 1) {
                return Err(unsupported(format!(
                    "squeezing axis {i} of size {}",
                    dims[i]
                )));
            }
            let nd = dims
                .iter()
                .enumerate()
                .filter(|(i, _)| !ax.contains(i))
                .map(|(_, &d)| d)
                .collect();
            (nd, ax)
        };
        Ok(match v {
            Value::F(c) => Value::F(c.reshaped(new_dims)?),
            Value::I(c) => Value::I(c.reshaped(new_dims)?),
            Value::Rt(r) => {
                if unsqueeze && ax.contains(&0) {
                    // PyTorch writes Unsqueeze(0) ... Squeeze(0) around a convolution when a
                    // module is exported on one unbatched sample.
                    return Err(unsupported(format!(
                        "a new axis 0 is inserted before a value computed from the input (shape \
                         {:?} with batch 1): the graph's input has no batch dimension; slimnet \
                         models take a batch, so export the model on a batched example input \
                         (e.g. x.unsqueeze(0)) with a dynamic batch axis",
                        r.dims
                    )));
                }
                if ax.contains(&0) {
                    return Err(unsupported("the batch axis would move"));
                }
                self.per_sample_reshape(&r, new_dims[1..].to_vec())?
            }
        })
    }

    /// A runtime value reshaped per sample (no layer when nothing changes).
    pub(super) fn per_sample_reshape(&mut self, r: &Rt, target: Vec<usize>) -> Result<Value> {
        if target == r.dims[1..] {
            let mut r = r.clone();
            r.fresh = false;
            return Ok(Value::Rt(r));
        }
        let op = if target.len() == 1 && r.dims.len() > 2 {
            Op::Flatten
        } else {
            Op::Reshape(target)
        };
        Ok(Value::Rt(self.push(r, op)?))
    }

    /// The target shape of a `Reshape` node: attribute `shape` before opset 5, input 1 after.
    pub(super) fn reshape_target(&self, node: &NodeProto, a: &Attrs<'_>) -> Result<Vec<Dim>> {
        Ok(if self.opset < 5 {
            a.ints("shape")?
                .ok_or_else(|| unsupported("attribute shape is required"))?
                .into_iter()
                .map(Dim::K)
                .collect()
        } else {
            match self.req(node, 1)? {
                Value::I(c) => c.v,
                Value::F(_) => return Err(unsupported("shape input must be integers")),
                Value::Rt(_) => {
                    return Err(unsupported("shape input computed at run time"));
                }
            }
        })
    }

    pub(super) fn reshape(
        &mut self,
        node: &NodeProto,
        target: Vec<Dim>,
        allowzero: bool,
    ) -> Result<Value> {
        let v = self.req(node, 0)?;
        if let Value::Rt(r) = &v {
            // Position 0 must be the batch.
            let first_is_batch = match target.first() {
                Some(Dim::Batch) => true,
                Some(Dim::K(0)) if !allowzero => true,
                Some(Dim::K(k)) if *k > 0 && self.fixed_batch == Some(*k as usize) => true,
                Some(Dim::K(-1)) => false,
                _ => {
                    return Err(unsupported(format!(
                        "reshape target {target:?} does not keep the batch dimension first"
                    )));
                }
            };
            let dims =
                per_sample_target(&target, &target[1..], &r.dims, allowzero, first_is_batch)?;
            let r = r.clone();
            return self.per_sample_reshape(&r, dims);
        }
        // Constant data.
        let (in_dims, n) = match &v {
            Value::F(c) => (c.dims.clone(), c.v.len()),
            Value::I(c) => (c.dims.clone(), c.v.len()),
            Value::Rt(_) => unreachable!("handled above"),
        };
        let mut dims = Vec::with_capacity(target.len());
        let mut infer = None;
        for (i, t) in target.iter().enumerate() {
            match *t {
                Dim::K(0) if !allowzero => dims.push(*in_dims.get(i).ok_or_else(|| {
                    unsupported(format!(
                        "reshape target {target:?}: 0 copies a missing dimension"
                    ))
                })?),
                Dim::K(-1) if infer.is_none() => {
                    infer = Some(i);
                    dims.push(1);
                }
                Dim::K(k) if k >= 0 => {
                    dims.push(usize::try_from(k).map_err(|_| unsupported("reshape size"))?)
                }
                _ => return Err(unsupported(format!("reshape of a constant to {target:?}"))),
            }
        }
        let known = dims
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| unsupported(format!("reshape target {target:?} overflows")))?;
        if let Some(i) = infer {
            if known == 0 || !n.is_multiple_of(known) {
                return Err(unsupported(format!("reshape of {in_dims:?} to {target:?}")));
            }
            dims[i] = n / known;
        }
        Ok(match v {
            Value::F(c) => Value::F(c.reshaped(dims)?),
            Value::I(c) => Value::I(c.reshaped(dims)?),
            Value::Rt(_) => unreachable!("handled above"),
        })
    }

    pub(super) fn flatten(&mut self, node: &NodeProto, ax: i64) -> Result<Value> {
        let v = self.req(node, 0)?;
        let dims = match &v {
            Value::F(c) => c.dims.clone(),
            Value::I(c) => c.dims.clone(),
            Value::Rt(r) => r.dims.clone(),
        };
        let r = dims.len() as i64;
        let a = if ax < 0 { ax + r } else { ax };
        if a < 0 || a > r {
            return Err(unsupported(format!("attribute axis={ax} for rank {r}")));
        }
        let a = a as usize;
        let outer: usize = dims[..a].iter().product();
        let inner: usize = dims[a..].iter().product();
        Ok(match v {
            Value::F(c) => Value::F(c.reshaped(vec![outer, inner])?),
            Value::I(c) => Value::I(c.reshaped(vec![outer, inner])?),
            Value::Rt(rt) => {
                if a == 0 || dims[1..a].iter().product::<usize>() != 1 {
                    return Err(unsupported(format!(
                        "attribute axis={ax} merges the batch with features of {dims:?}"
                    )));
                }
                if a == 1 && rt.dims.len() > 2 {
                    Value::Rt(self.push(&rt, Op::Flatten)?)
                } else {
                    self.per_sample_reshape(&rt, vec![inner])?
                }
            }
        })
    }

    /// A permutation of dimensions (default: reversed); on a computed value the batch axis
    /// must stay first.
    pub(super) fn transpose(&mut self, node: &NodeProto, a: &Attrs<'_>) -> Result<Value> {
        let v = self.req(node, 0)?;
        let rank = match &v {
            Value::F(c) => c.dims.len(),
            Value::I(c) => c.dims.len(),
            Value::Rt(r) => r.dims.len(),
        };
        let perm = match a.ints("perm")? {
            Some(p) => sizes(&p, "perm", 0)?,
            None => (0..rank).rev().collect(),
        };
        Ok(match v {
            Value::F(c) => Value::F(c.transpose(&perm)?),
            Value::I(c) => Value::I(c.transpose(&perm)?),
            Value::Rt(r) => {
                if perm.len() != rank || perm.first() != Some(&0) {
                    return Err(unsupported(format!(
                        "attribute perm={perm:?} moves the batch axis"
                    )));
                }
                if perm.iter().enumerate().all(|(i, &p)| i == p) {
                    self.alias(node)?
                } else {
                    let t = crate::layers::onnx_ops::Transpose::new(perm.clone())?;
                    Value::Rt(self.push(&r, Op::Transpose(t.perm))?)
                }
            }
        })
    }
}

/// Resolves the per-sample part `rest` of a reshape target (`0` copies the input's dimension
/// at the same position when `allowzero` is off, one `-1` is inferred when `infer_ok`)
/// against `dims`, a runtime value's dimensions with batch 1; `target` is the whole target,
/// for messages.
pub(super) fn per_sample_target(
    target: &[Dim],
    rest: &[Dim],
    dims_in: &[usize],
    allowzero: bool,
    infer_ok: bool,
) -> Result<Vec<usize>> {
    let per: usize = dims_in[1..].iter().product();
    let mut dims = Vec::with_capacity(rest.len());
    let mut infer = None;
    for (i, t) in rest.iter().enumerate() {
        match *t {
            Dim::Batch => {
                return Err(unsupported(format!(
                    "reshape target {target:?} moves the batch size to position {}",
                    i + 1
                )));
            }
            Dim::K(0) if !allowzero => {
                dims.push(*dims_in.get(i + 1).ok_or_else(|| {
                    unsupported(format!(
                        "reshape target {target:?}: 0 copies a missing dimension"
                    ))
                })?);
            }
            Dim::K(-1) if infer.is_none() && infer_ok => {
                infer = Some(i);
                dims.push(1);
            }
            Dim::K(k) if k >= 0 => dims.push(k as usize),
            _ => {
                return Err(unsupported(format!("reshape target {target:?}")));
            }
        }
    }
    let known: usize = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| unsupported(format!("reshape target {target:?} overflows")))?;
    if let Some(i) = infer {
        if known == 0 || !per.is_multiple_of(known) {
            return Err(unsupported(format!(
                "reshape of {dims_in:?} to {target:?}: -1 cannot be inferred"
            )));
        }
        dims[i] = per / known;
    } else if known != per {
        return Err(unsupported(format!(
            "reshape of {dims_in:?} to {target:?}: a sample has {per} elements"
        )));
    }
    Ok(dims)
}
