//! Shape computations on constants: `Shape`, `Gather`, `Concat`, `Expand` and `Slice`
//! (a concatenation of computed values becomes a [`Merge::Concat`] join).

use super::super::fold::{Ct, Dim, axis};
use super::super::import::{Attrs, Importer, Rt, Value, ints_of, sizes, unsupported};
use super::super::proto::NodeProto;
use crate::error::Result;
use crate::layers::onnx_ops::Merge;

impl Importer {
    /// The node's input shape as an integer constant (`start..end`), the batch symbolic.
    pub(super) fn shape(&self, node: &NodeProto, a: &Attrs<'_>) -> Result<Value> {
        let dims: Vec<Dim> = match self.req(node, 0)? {
            Value::Rt(r) => std::iter::once(Dim::Batch)
                .chain(r.dims[1..].iter().map(|&d| Dim::K(d as i64)))
                .collect(),
            Value::F(c) => c.dims.iter().map(|&d| Dim::K(d as i64)).collect(),
            Value::I(c) => c.dims.iter().map(|&d| Dim::K(d as i64)).collect(),
        };
        let r = dims.len() as i64;
        let clampi = |x: i64| (if x < 0 { x + r } else { x }).clamp(0, r) as usize;
        let s = clampi(a.i("start", 0)?);
        let e = clampi(a.i("end", r)?).max(s);
        let d = dims[s..e].to_vec();
        Ok(Value::I(Ct::new(vec![d.len()], d)?))
    }

    /// Elements of a constant picked along `axis` by constant integer indices.
    pub(super) fn gather(&self, node: &NodeProto, a: &Attrs<'_>) -> Result<Value> {
        let idx_v = self.req(node, 1)?;
        let (idims, idx) = match &idx_v {
            Value::I(c) => (c.dims.clone(), ints_of(c)?),
            _ => return Err(unsupported("indices must be an integer constant")),
        };
        Ok(match self.req(node, 0)? {
            Value::I(c) => {
                let ax = axis(a.i("axis", 0)?, c.dims.len(), "Gather")?;
                Value::I(c.gather(ax, &idims, &idx)?)
            }
            Value::F(c) => {
                let ax = axis(a.i("axis", 0)?, c.dims.len(), "Gather")?;
                Value::F(c.gather(ax, &idims, &idx)?)
            }
            Value::Rt(_) => {
                return Err(unsupported("gathering from a computed tensor"));
            }
        })
    }

    pub(super) fn concat(&mut self, node: &NodeProto, ax: i64) -> Result<Value> {
        let vals = match self.variadic(node)? {
            Ok(rts) => return self.concat_computed(node, ax, rts),
            Err(vals) => vals,
        };
        if vals.iter().any(|v| matches!(v, Value::Rt(_))) {
            return Err(unsupported(
                "concatenating a computed value with a constant",
            ));
        }
        if vals.iter().all(|v| matches!(v, Value::F(_))) {
            let parts: Vec<&Ct<f32>> = vals
                .iter()
                .filter_map(|v| if let Value::F(c) = v { Some(c) } else { None })
                .collect();
            let a = axis(ax, parts[0].dims.len(), "Concat")?;
            return Ok(Value::F(Ct::concat(&parts, a)?));
        }
        let parts: Vec<Ct<Dim>> = vals
            .into_iter()
            .map(|v| match v {
                Value::I(c) => Ok(c),
                _ => Err(unsupported("concatenating integers with floats")),
            })
            .collect::<Result<_>>()?;
        let refs: Vec<&Ct<Dim>> = parts.iter().collect();
        let a = axis(ax, refs[0].dims.len(), "Concat")?;
        Ok(Value::I(Ct::concat(&refs, a)?))
    }

    /// `Concat` of computed values: a Concat-merged block (the identity for one input).
    fn concat_computed(&mut self, node: &NodeProto, ax: i64, rts: Vec<Rt>) -> Result<Value> {
        let a = axis(ax, rts[0].dims.len(), "Concat")?;
        if a == 0 {
            return Err(unsupported("attribute axis=0 concatenates along the batch"));
        }
        if rts.len() == 1 {
            return self.alias(node);
        }
        let names: Vec<String> = node.input.clone();
        let mut rts = self.concat_prefix(&names, a, rts)?;
        if let Some(out) = node.output.first() {
            self.concats.insert((names, a), out.clone());
        }
        if let [only] = rts.as_mut_slice() {
            // The whole list was concatenated before.
            only.fresh = false;
            return Ok(Value::Rt(only.clone()));
        }
        let extra = rts.iter().map(|_| None).collect();
        Ok(Value::Rt(self.join(
            rts,
            Merge::Concat { axis: a },
            extra,
        )?))
    }

    /// Concatenation is associative: when the first `k >= 2` inputs of this `Concat` were
    /// already concatenated (on the same axis) by an earlier node, that node's value replaces
    /// them. DenseNet's blocks concatenate `[x0]`, `[x0, y1]`, `[x0, y1, y2]`, ... where each
    /// `y_k` is computed from the previous concatenation; rewritten so, every join closes a
    /// fork at the previous concatenation (`concat(c_{k-1}, f_k(c_{k-1}))`), a nest of
    /// fork/joins.
    fn concat_prefix(&self, names: &[String], ax: usize, rts: Vec<Rt>) -> Result<Vec<Rt>> {
        for k in (2..=names.len()).rev() {
            let key = (names[..k].to_vec(), ax);
            if let Some(prev) = self.concats.get(&key)
                && let Some(Value::Rt(r)) = self.values.get(prev)
            {
                let mut out = vec![Rt {
                    fresh: false,
                    ..r.clone()
                }];
                out.extend(rts.into_iter().skip(k));
                return Ok(out);
            }
        }
        Ok(rts)
    }

    /// A constant broadcast to the shape in input 1; a computed value only if unchanged.
    pub(super) fn expand(&mut self, node: &NodeProto) -> Result<Value> {
        let shape = sizes(&self.const_i(node, 1)?, "shape input", 0)?;
        Ok(match self.req(node, 0)? {
            Value::F(c) => Value::F(c.expand(&shape)?),
            Value::I(c) => Value::I(c.expand(&shape)?),
            Value::Rt(r) => {
                let out = crate::layers::onnx_ops::broadcast_dims("Expand", &r.dims, &shape)?;
                if out != r.dims {
                    return Err(unsupported(format!(
                        "expanding a computed value of shape {:?} to {out:?}",
                        r.dims
                    )));
                }
                self.alias(node)?
            }
        })
    }

    pub(super) fn slice(&mut self, node: &NodeProto, a: &Attrs<'_>) -> Result<Value> {
        let (starts, ends, axes, steps) = if self.opset < 10 {
            (
                a.ints("starts")?
                    .ok_or_else(|| unsupported("attribute starts is required"))?,
                a.ints("ends")?
                    .ok_or_else(|| unsupported("attribute ends is required"))?,
                a.ints("axes")?,
                None,
            )
        } else {
            (
                self.const_i(node, 1)?,
                self.const_i(node, 2)?,
                self.value(node, 3)?
                    .map(|_| self.const_i(node, 3))
                    .transpose()?,
                self.value(node, 4)?
                    .map(|_| self.const_i(node, 4))
                    .transpose()?,
            )
        };
        let v = self.req(node, 0)?;
        let rank = match &v {
            Value::F(c) => c.dims.len(),
            Value::I(c) => c.dims.len(),
            Value::Rt(_) => return Err(unsupported("slicing a computed value")),
        };
        let axes: Vec<usize> = match axes {
            Some(ax) => ax
                .iter()
                .map(|&x| axis(x, rank, "Slice"))
                .collect::<Result<_>>()?,
            None => (0..starts.len()).collect(),
        };
        if starts.len() != axes.len() || ends.len() != axes.len() || axes.iter().any(|&x| x >= rank)
        {
            return Err(unsupported(format!(
                "starts {starts:?}, ends {ends:?} and axes {axes:?} disagree"
            )));
        }
        let steps = steps.unwrap_or_else(|| vec![1; axes.len()]);
        if steps.len() != axes.len() {
            return Err(unsupported(format!("steps {steps:?} for axes {axes:?}")));
        }
        Ok(match v {
            Value::F(c) => Value::F(c.slice(&starts, &ends, &axes, &steps)?),
            Value::I(c) => Value::I(c.slice(&starts, &ends, &axes, &steps)?),
            Value::Rt(_) => unreachable!("rejected above"),
        })
    }
}
