//! Fork/join blocks: branches of layers reading one input, merged by sum, product or
//! concatenation (residual blocks, gates, inception-style concatenations).

use std::any::Any;

use tensor_core::{Shape, Tensor, TensorError};

use super::broadcast::{broadcast_binary, broadcast_dims, reduce_to};
use super::{no_cache, record_sizes, shape_of};
use crate::error::{NnError, Result};
use crate::layer::{Layer, Mode};
use crate::record::{AttrValue, LayerRecord};
use crate::registry::LayerRegistry;

/// How [`Parallel`] merges its branch outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// Elementwise sum (NumPy broadcasting), as a residual connection `f(x) + x`.
    Add,
    /// Elementwise product (NumPy broadcasting), as a gate `x * sigmoid(g(x))`.
    Mul,
    /// Concatenation along `axis` of the batched tensor (axis 0, the batch, is not allowed).
    Concat {
        /// The axis, batch axis = 0.
        axis: usize,
    },
}

/// Branches of layers that all read the same input, their outputs merged by [`Merge`].
///
/// Design: slimnet's [`crate::Model`] is sequential. A DAG whose every join closes a fork
/// (residual blocks, inception-style concatenations, gates) is still a sequence once each
/// fork/join is one layer: `Parallel { branches: [[conv, relu, conv], []], merge: Add }` is
/// `conv(relu(conv(x))) + x`. An empty branch is the identity (the skip connection).
/// Branches may themselves contain `Parallel` layers (nested blocks).
#[derive(Debug)]
pub struct Parallel {
    /// The branches, each a sequence of layers; an empty branch passes its input through.
    pub branches: Vec<Vec<Box<dyn Layer>>>,
    /// How the branch outputs combine.
    pub merge: Merge,
    /// Branch outputs of the last training forward (for Mul's and Concat's backward).
    cache: Vec<Tensor>,
}

impl Parallel {
    /// A fork/join block; at least one branch.
    pub fn new(branches: Vec<Vec<Box<dyn Layer>>>, merge: Merge) -> Result<Self> {
        if branches.is_empty() {
            return Err(NnError::Config("parallel: no branch".into()));
        }
        if let Merge::Concat { axis: 0 } = merge {
            return Err(NnError::Unsupported(
                "parallel: concatenation along the batch axis".into(),
            ));
        }
        Ok(Self {
            branches,
            merge,
            cache: Vec::new(),
        })
    }

    /// Rebuilds a `parallel` layer from its record (the layout [`Layer::record`] writes);
    /// the nested layers are rebuilt through `registry`, so a branch may hold any kind the
    /// caller registered (compressed layers included).
    pub fn from_record(rec: &LayerRecord, registry: &LayerRegistry) -> Result<Self> {
        let merge = match rec.str("merge")? {
            "add" => Merge::Add,
            "mul" => Merge::Mul,
            "concat" => Merge::Concat {
                axis: rec.usize_in("axis", 1, 64)?,
            },
            other => return Err(rec.corrupt("attribute `merge`", format!("`{other}`"))),
        };
        let lens = record_sizes(rec, "branches")?;
        let total: usize = lens.iter().sum();
        if lens.is_empty() || total > rec.attrs.len() {
            return Err(rec.corrupt("attribute `branches`", format!("{lens:?}")));
        }
        let mut branches = Vec::with_capacity(lens.len());
        for (i, &n) in lens.iter().enumerate() {
            let mut b = Vec::with_capacity(n);
            for j in 0..n {
                let p = format!("{i}.{j}/");
                let kind = rec.str(&format!("{p}kind"))?;
                let mut sub = LayerRecord::new(kind);
                for (k, v) in rec.attrs.range(p.clone()..) {
                    let Some(name) = k.strip_prefix(&p) else {
                        break;
                    };
                    if name != "kind" {
                        sub.attrs.insert(name.to_string(), v.clone());
                    }
                }
                for (k, t) in &rec.tensors {
                    if let Some(name) = k.strip_prefix(&p) {
                        sub.tensors.push((name.to_string(), t.clone()));
                    }
                }
                for (k, t) in &rec.payloads {
                    if let Some(name) = k.strip_prefix(&p) {
                        sub.payloads.push((name.to_string(), t.clone()));
                    }
                }
                b.push(registry.build(&sub)?);
            }
            branches.push(b);
        }
        Self::new(branches, merge).map_err(|e| rec.corrupt("branches", e.to_string()))
    }

    fn branch_shape(branch: &[Box<dyn Layer>], input: &Shape) -> Result<Shape> {
        let mut s = input.clone();
        for l in branch {
            s = l.output_shape(&s)?;
        }
        Ok(s)
    }

    fn merged_shape(&self, shapes: &[Shape]) -> Result<Shape> {
        let mut out = shapes[0].dims().to_vec();
        for s in &shapes[1..] {
            match self.merge {
                Merge::Add | Merge::Mul => {
                    out = broadcast_dims("parallel merge", &out, s.dims())?;
                }
                Merge::Concat { axis } => {
                    let d = s.dims();
                    let ok = d.len() == out.len()
                        && axis < d.len()
                        && d.iter()
                            .zip(&out)
                            .enumerate()
                            .all(|(i, (a, b))| i == axis || a == b);
                    if !ok {
                        return Err(TensorError::ShapeMismatch {
                            op: "parallel concat",
                            lhs: shape_of(&out)?,
                            rhs: s.clone(),
                        }
                        .into());
                    }
                    out[axis] += d[axis];
                }
            }
        }
        shape_of(&out)
    }

    fn merge_outputs(&self, outs: &[Tensor]) -> Result<Tensor> {
        match self.merge {
            Merge::Add | Merge::Mul => {
                let mut acc = outs[0].clone();
                for o in &outs[1..] {
                    acc = if self.merge == Merge::Add {
                        broadcast_binary("parallel add", &acc, o, |a, b| a + b)?
                    } else {
                        broadcast_binary("parallel mul", &acc, o, |a, b| a * b)?
                    };
                }
                Ok(acc)
            }
            Merge::Concat { axis } => {
                let shapes: Vec<Shape> = outs.iter().map(|t| t.shape().clone()).collect();
                let out_shape = self.merged_shape(&shapes)?;
                let outer: usize = out_shape.dims()[..axis].iter().product();
                let mut data = Vec::with_capacity(out_shape.numel());
                for o in 0..outer {
                    for t in outs {
                        let chunk: usize = t.dims()[axis..].iter().product();
                        data.extend_from_slice(&t.data()[o * chunk..(o + 1) * chunk]);
                    }
                }
                Ok(Tensor::from_vec(out_shape, data)?)
            }
        }
    }
}

impl Layer for Parallel {
    fn kind(&self) -> &'static str {
        "parallel"
    }

    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        let shapes = self
            .branches
            .iter()
            .map(|b| Self::branch_shape(b, input))
            .collect::<Result<Vec<_>>>()?;
        self.merged_shape(&shapes)
    }

    fn forward(&mut self, input: &Tensor, mode: Mode) -> Result<Tensor> {
        let mut outs = Vec::with_capacity(self.branches.len());
        for branch in self.branches.iter_mut() {
            let mut x = input.clone();
            for l in branch.iter_mut() {
                x = l.forward(&x, mode)?;
            }
            outs.push(x);
        }
        let y = self.merge_outputs(&outs)?;
        if mode == Mode::Train {
            self.cache = outs;
        }
        Ok(y)
    }

    fn backward(&mut self, grad_output: &Tensor) -> Result<Tensor> {
        if self.cache.len() != self.branches.len() {
            return Err(no_cache("parallel"));
        }
        // Gradient with respect to each branch output.
        let mut grads = Vec::with_capacity(self.branches.len());
        match self.merge {
            Merge::Add => {
                for o in &self.cache {
                    grads.push(reduce_to(grad_output, o.dims())?);
                }
            }
            Merge::Mul => {
                for (i, o) in self.cache.iter().enumerate() {
                    let mut g = grad_output.clone();
                    for (j, other) in self.cache.iter().enumerate() {
                        if i != j {
                            g = broadcast_binary("parallel mul backward", &g, other, |a, b| a * b)?;
                        }
                    }
                    grads.push(reduce_to(&g, o.dims())?);
                }
            }
            Merge::Concat { axis } => {
                let outer: usize = grad_output.dims()[..axis].iter().product();
                let total: usize = grad_output.dims()[axis..].iter().product();
                let mut start = 0;
                for o in &self.cache {
                    let chunk: usize = o.dims()[axis..].iter().product();
                    let mut data = Vec::with_capacity(o.numel());
                    for r in 0..outer {
                        let base = r * total + start;
                        data.extend_from_slice(&grad_output.data()[base..base + chunk]);
                    }
                    grads.push(Tensor::new(o.dims(), data)?);
                    start += chunk;
                }
            }
        }
        let mut total: Option<Tensor> = None;
        for (branch, g) in self.branches.iter_mut().zip(grads) {
            let mut g = g;
            for l in branch.iter_mut().rev() {
                g = l.backward(&g)?;
            }
            match total.as_mut() {
                None => total = Some(g),
                Some(t) => t.add_scaled(1.0, &g)?,
            }
        }
        // At least one branch exists (checked in `new`).
        total.ok_or_else(|| NnError::Config("parallel: no branch".into()))
    }

    /// The branches: the model walk ([`crate::Model::visit`]) reaches their layers, and
    /// through it optimizers, masks and codebooks; `params`/`params_mut` of a `Parallel` are
    /// empty (it owns no parameter itself).
    fn branches(&self) -> &[Vec<Box<dyn Layer>>] {
        &self.branches
    }

    fn branches_mut(&mut self) -> &mut [Vec<Box<dyn Layer>>] {
        &mut self.branches
    }

    fn param_count(&self) -> usize {
        self.branches
            .iter()
            .flat_map(|b| b.iter().map(|l| l.param_count()))
            .sum()
    }

    fn stored_bytes(&self) -> usize {
        self.branches
            .iter()
            .flat_map(|b| b.iter().map(|l| l.stored_bytes()))
            .sum()
    }

    fn macs(&self, input: &Shape) -> Result<u64> {
        let mut total = 0u64;
        for b in &self.branches {
            let mut s = input.clone();
            for l in b {
                total += l.macs(&s)?;
                s = l.output_shape(&s)?;
            }
        }
        Ok(total)
    }

    fn zero_grad(&mut self) {
        self.branches
            .iter_mut()
            .for_each(|b| b.iter_mut().for_each(|l| l.zero_grad()));
    }

    fn clear_cache(&mut self) {
        self.cache.clear();
        self.branches
            .iter_mut()
            .for_each(|b| b.iter_mut().for_each(|l| l.clear_cache()));
    }

    /// Nested layers are flattened into one record: sub-layer `j` of branch `i` contributes
    /// attribute `i.j/kind` and its attributes, tensors and payloads under the prefix `i.j/`;
    /// `branches` lists the branch lengths, `merge` is `add`, `mul` or `concat` (with `axis`).
    fn record(&self) -> Result<LayerRecord> {
        let (merge, axis) = match self.merge {
            Merge::Add => ("add", 0),
            Merge::Mul => ("mul", 0),
            Merge::Concat { axis } => ("concat", axis as i64),
        };
        let lens: Vec<i64> = self.branches.iter().map(|b| b.len() as i64).collect();
        let mut rec = LayerRecord::new("parallel")
            .with_attr("merge", AttrValue::Str(merge.into()))
            .with_int("axis", axis)
            .with_ints("branches", &lens);
        for (i, b) in self.branches.iter().enumerate() {
            for (j, l) in b.iter().enumerate() {
                let sub = l.record()?;
                let p = format!("{i}.{j}/");
                rec.attrs
                    .insert(format!("{p}kind"), AttrValue::Str(sub.kind));
                for (k, v) in sub.attrs {
                    rec.attrs.insert(format!("{p}{k}"), v);
                }
                for (k, t) in sub.tensors {
                    rec.tensors.push((format!("{p}{k}"), t));
                }
                for (k, t) in sub.payloads {
                    rec.payloads.push((format!("{p}{k}"), t));
                }
            }
        }
        Ok(rec)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
