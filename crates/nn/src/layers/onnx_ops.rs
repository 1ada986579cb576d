//! Layers that imported ONNX graphs need beyond the dense zoo layers: (log-)softmax on an
//! axis, elementwise arithmetic with a constant, reshape, transpose, and [`Parallel`], the
//! fork/join block through which a DAG such as a residual block `Add(f(x), x)` fits in the
//! sequential [`crate::Model`].
//!
//! Axis conventions: `axis` fields count from the outermost (batch) dimension of the batched
//! tensor, as ONNX does; negative values count from the end. Shapes carried by layers
//! (`Reshape::target`) exclude the batch dimension, as [`crate::Model::input_shape`] does.

use std::any::Any;

use tensor_core::{Shape, Tensor, TensorError};

use crate::error::{NnError, Result};
use crate::layer::{Layer, Mode, ParamMut, ParamRef};
use crate::record::{AttrValue, LayerRecord};

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

fn shape_of(dims: &[usize]) -> Result<Shape> {
    Ok(Shape::new(dims)?)
}

fn to_i64(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&x| x as i64).collect()
}

/// Largest dimension, axis or pad a record may hold.
const MAX_RECORD_SIZE: usize = 1 << 32;

/// Rebuilds a layer of this module from its record; `None` when the kind is not one of
/// them. `build` rebuilds nested layers (the crate's `layer_from_record`).
pub fn from_record(
    rec: &LayerRecord,
    build: &dyn Fn(&LayerRecord) -> Result<Box<dyn Layer>>,
) -> Result<Option<Box<dyn Layer>>> {
    let sizes = |name: &str| -> Result<Vec<usize>> {
        let v = rec.ints(name)?;
        if v.len() > 64 {
            return Err(rec.corrupt(format!("attribute `{name}`"), format!("{} values", v.len())));
        }
        v.iter()
            .map(|&x| {
                usize::try_from(x)
                    .ok()
                    .filter(|&u| u <= MAX_RECORD_SIZE)
                    .ok_or_else(|| rec.corrupt(format!("attribute `{name}`"), format!("value {x}")))
            })
            .collect()
    };
    Ok(Some(match rec.kind.as_str() {
        "softmax" | "log_softmax" => {
            rec.expect_tensor_names(&[])?;
            let axis = rec.int("axis")?;
            if axis.unsigned_abs() > 64 {
                return Err(rec.corrupt("attribute `axis`", format!("value {axis}")));
            }
            Box::new(Softmax::new(
                axis as isize,
                rec.int_or("coerce_2d", 0)? != 0,
                rec.kind == "log_softmax",
            ))
        }
        "add_const" | "mul_const" => {
            rec.expect_tensor_names(&["constant"])?;
            let op = if rec.kind == "add_const" {
                ArithOp::Add
            } else {
                ArithOp::Mul
            };
            Box::new(ConstElementwise::new(op, rec.tensor("constant")?.clone()))
        }
        "reshape" => {
            rec.expect_tensor_names(&[])?;
            let shape = sizes("shape")?;
            Shape::new(&shape).map_err(|e| rec.corrupt("attribute `shape`", e.to_string()))?;
            Box::new(Reshape::new(shape))
        }
        "transpose" => {
            rec.expect_tensor_names(&[])?;
            Box::new(
                Transpose::new(sizes("perm")?)
                    .map_err(|e| rec.corrupt("attribute `perm`", e.to_string()))?,
            )
        }
        "pad" => {
            rec.expect_tensor_names(&[])?;
            Box::new(
                Pad::new(sizes("begin")?, sizes("end")?, rec.float("value")?)
                    .map_err(|e| rec.corrupt("attribute `begin`", e.to_string()))?,
            )
        }
        "parallel" => {
            let merge = match rec.str("merge")? {
                "add" => Merge::Add,
                "mul" => Merge::Mul,
                "concat" => Merge::Concat {
                    axis: rec.usize_in("axis", 1, 64)?,
                },
                other => return Err(rec.corrupt("attribute `merge`", format!("`{other}`"))),
            };
            let lens = sizes("branches")?;
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
                    b.push(build(&sub)?);
                }
                branches.push(b);
            }
            Box::new(
                Parallel::new(branches, merge)
                    .map_err(|e| rec.corrupt("branches", e.to_string()))?,
            )
        }
        _ => return Ok(None),
    }))
}

// ---------------------------------------------------------------------------------------
// Broadcasting (NumPy rules, as ONNX's multidirectional broadcasting).
// ---------------------------------------------------------------------------------------

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
fn broadcast_binary(
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
fn reduce_to(g: &Tensor, dims: &[usize]) -> Result<Tensor> {
    if g.dims() == dims {
        return Ok(g.clone());
    }
    let mut out = Tensor::zeros(shape_of(dims)?);
    let od = out.data_mut();
    let gd = g.data();
    for_each_broadcast(dims, &[], g.dims(), |o, i, _| od[i] += gd[o]);
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Softmax and LogSoftmax.
// ---------------------------------------------------------------------------------------

/// Softmax or log-softmax of a batch along one axis.
///
/// ONNX changed the meaning at opset 13: before it, `Softmax(axis)` flattens the input to
/// 2-D `[prod(d[..axis]), prod(d[axis..])]` and normalizes each row (`coerce_2d = true`,
/// default axis 1); from opset 13 on it normalizes along the one axis (default -1).
/// `softmax(x)_i = exp(x_i - m) / sum_j exp(x_j - m)`, `m = max_j x_j` (stable form).
#[derive(Debug, Clone)]
pub struct Softmax {
    /// The axis (batch axis = 0), negative counts from the end.
    pub axis: isize,
    /// Opset < 13 semantics: normalize over all dimensions from `axis` on.
    pub coerce_2d: bool,
    /// Log-softmax instead of softmax.
    pub log: bool,
    cache: Option<Tensor>,
}

impl Softmax {
    /// A softmax (`log = false`) or log-softmax (`log = true`) layer.
    pub fn new(axis: isize, coerce_2d: bool, log: bool) -> Self {
        Self {
            axis,
            coerce_2d,
            log,
            cache: None,
        }
    }

    /// `(outer, n, inner)`: the normalized groups are `n` elements `inner` apart.
    fn layout(&self, dims: &[usize]) -> Result<(usize, usize, usize)> {
        let a = resolve_axis(self.kind(), self.axis, dims.len())?;
        let outer: usize = dims[..a].iter().product();
        if self.coerce_2d {
            Ok((outer, dims[a..].iter().product(), 1))
        } else {
            Ok((outer, dims[a], dims[a + 1..].iter().product()))
        }
    }
}

impl Layer for Softmax {
    fn kind(&self) -> &'static str {
        if self.log { "log_softmax" } else { "softmax" }
    }

    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        self.layout(input.dims())?;
        Ok(input.clone())
    }

    fn forward(&mut self, input: &Tensor, mode: Mode) -> Result<Tensor> {
        let (outer, n, inner) = self.layout(input.dims())?;
        let mut y = input.clone();
        let d = y.data_mut();
        let mut buf = vec![0.0f32; n];
        for o in 0..outer {
            for i in 0..inner {
                let base = o * n * inner + i;
                for (k, b) in buf.iter_mut().enumerate() {
                    *b = d[base + k * inner];
                }
                if self.log {
                    tensor_core::activation::log_softmax_rows(&mut buf, n);
                } else {
                    tensor_core::activation::softmax_rows(&mut buf, n);
                }
                for (k, b) in buf.iter().enumerate() {
                    d[base + k * inner] = *b;
                }
            }
        }
        if mode == Mode::Train {
            self.cache = Some(y.clone());
        }
        Ok(y)
    }

    fn backward(&mut self, grad_output: &Tensor) -> Result<Tensor> {
        let y = self.cache.as_ref().ok_or_else(|| NnError::NoForwardCache {
            layer: self.kind().into(),
        })?;
        if y.shape() != grad_output.shape() {
            return Err(TensorError::ShapeMismatch {
                op: "softmax backward",
                lhs: y.shape().clone(),
                rhs: grad_output.shape().clone(),
            }
            .into());
        }
        let (outer, n, inner) = self.layout(y.dims())?;
        let mut gx = grad_output.clone();
        let (yd, gd) = (y.data(), grad_output.data());
        let gxd = gx.data_mut();
        for o in 0..outer {
            for i in 0..inner {
                let base = o * n * inner + i;
                let at = |k: usize| base + k * inner;
                if self.log {
                    // y = log softmax: dx = g - softmax * sum(g).
                    let s: f32 = (0..n).map(|k| gd[at(k)]).sum();
                    for k in 0..n {
                        gxd[at(k)] = gd[at(k)] - yd[at(k)].exp() * s;
                    }
                } else {
                    // y = softmax: dx = y * (g - sum(g * y)).
                    let s: f32 = (0..n).map(|k| gd[at(k)] * yd[at(k)]).sum();
                    for k in 0..n {
                        gxd[at(k)] = yd[at(k)] * (gd[at(k)] - s);
                    }
                }
            }
        }
        Ok(gx)
    }

    fn param_count(&self) -> usize {
        0
    }

    fn macs(&self, _input: &Shape) -> Result<u64> {
        Ok(0)
    }

    fn clear_cache(&mut self) {
        self.cache = None;
    }

    fn record(&self) -> Result<LayerRecord> {
        Ok(LayerRecord::new(self.kind())
            .with_int("axis", self.axis as i64)
            .with_int("coerce_2d", self.coerce_2d as i64))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

// ---------------------------------------------------------------------------------------
// Elementwise arithmetic with a constant.
// ---------------------------------------------------------------------------------------

/// The arithmetic of [`ConstElementwise`] and of [`Parallel`]'s Add and Mul merges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOp {
    /// `x + c` (ONNX `Add`; `Sub` by a constant is stored as `Add` of its negation).
    Add,
    /// `x * c` (ONNX `Mul`; `Div` by a constant is stored as `Mul` by its reciprocal).
    Mul,
}

/// `x + c` or `x * c` with a constant `c` broadcast against the batch (NumPy rules; the
/// output keeps the input's shape).
#[derive(Debug, Clone)]
pub struct ConstElementwise {
    /// Add or Mul.
    pub op: ArithOp,
    /// The constant, at most the input's rank, broadcastable to it.
    pub constant: Tensor,
}

impl ConstElementwise {
    /// A layer computing `x op constant`.
    pub fn new(op: ArithOp, constant: Tensor) -> Self {
        Self { op, constant }
    }
}

impl Layer for ConstElementwise {
    fn kind(&self) -> &'static str {
        match self.op {
            ArithOp::Add => "add_const",
            ArithOp::Mul => "mul_const",
        }
    }

    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        let out = broadcast_dims(self.kind(), input.dims(), self.constant.dims())?;
        if out != input.dims() {
            return Err(NnError::BadInput {
                layer: self.kind().into(),
                input: input.clone(),
                reason: format!(
                    "the constant {} would broadcast the output to {out:?}",
                    self.constant.shape()
                ),
            });
        }
        Ok(input.clone())
    }

    fn forward(&mut self, input: &Tensor, _mode: Mode) -> Result<Tensor> {
        self.output_shape(input.shape())?;
        match self.op {
            ArithOp::Add => broadcast_binary("add_const", input, &self.constant, |a, b| a + b),
            ArithOp::Mul => broadcast_binary("mul_const", input, &self.constant, |a, b| a * b),
        }
    }

    fn backward(&mut self, grad_output: &Tensor) -> Result<Tensor> {
        match self.op {
            ArithOp::Add => Ok(grad_output.clone()),
            ArithOp::Mul => {
                broadcast_binary("mul_const backward", grad_output, &self.constant, |g, c| {
                    g * c
                })
            }
        }
    }

    fn params(&self) -> Vec<ParamRef<'_>> {
        vec![ParamRef {
            name: "constant",
            value: &self.constant,
        }]
    }

    fn param_count(&self) -> usize {
        self.constant.numel()
    }

    fn macs(&self, input: &Shape) -> Result<u64> {
        Ok(match self.op {
            ArithOp::Add => 0,
            ArithOp::Mul => input.numel() as u64,
        })
    }

    fn record(&self) -> Result<LayerRecord> {
        Ok(LayerRecord::new(self.kind()).with_tensor("constant", self.constant.clone()))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

// ---------------------------------------------------------------------------------------
// Reshape and Transpose.
// ---------------------------------------------------------------------------------------

/// Reshapes each sample to `target` (batch dimension kept); no data moves.
#[derive(Debug, Clone)]
pub struct Reshape {
    /// The per-sample output dimensions.
    pub target: Vec<usize>,
    input_dims: Option<Vec<usize>>,
}

impl Reshape {
    /// A reshape of each sample to `target`.
    pub fn new(target: Vec<usize>) -> Self {
        Self {
            target,
            input_dims: None,
        }
    }
}

impl Layer for Reshape {
    fn kind(&self) -> &'static str {
        "reshape"
    }

    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        let n = input.dim("reshape", 0)?;
        let per: usize = input.dims()[1..].iter().product();
        let want: usize = self.target.iter().product();
        if per != want {
            return Err(NnError::BadInput {
                layer: "reshape".into(),
                input: input.clone(),
                reason: format!(
                    "a sample has {per} elements, target {:?} has {want}",
                    self.target
                ),
            });
        }
        let mut dims = vec![n];
        dims.extend_from_slice(&self.target);
        shape_of(&dims)
    }

    fn forward(&mut self, input: &Tensor, mode: Mode) -> Result<Tensor> {
        let out = self.output_shape(input.shape())?;
        if mode == Mode::Train {
            self.input_dims = Some(input.dims().to_vec());
        }
        Ok(input.clone().reshape(out.dims())?)
    }

    fn backward(&mut self, grad_output: &Tensor) -> Result<Tensor> {
        let dims = self
            .input_dims
            .as_ref()
            .ok_or_else(|| NnError::NoForwardCache {
                layer: "reshape".into(),
            })?;
        Ok(grad_output.clone().reshape(dims)?)
    }

    fn param_count(&self) -> usize {
        0
    }

    fn macs(&self, _input: &Shape) -> Result<u64> {
        Ok(0)
    }

    fn clear_cache(&mut self) {
        self.input_dims = None;
    }

    fn record(&self) -> Result<LayerRecord> {
        Ok(LayerRecord::new("reshape").with_ints("shape", &to_i64(&self.target)))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Permutes the dimensions of the batched tensor: output dimension `i` is input dimension
/// `perm[i]` (ONNX `Transpose`); `perm[0]` must be 0 so the batch stays outermost.
#[derive(Debug, Clone)]
pub struct Transpose {
    /// The permutation, batch axis included.
    pub perm: Vec<usize>,
}

impl Transpose {
    /// A transpose by `perm`, checked to be a permutation that keeps the batch axis first.
    pub fn new(perm: Vec<usize>) -> Result<Self> {
        let mut seen = vec![false; perm.len()];
        for &p in &perm {
            if p >= perm.len() || seen[p] {
                return Err(NnError::Config(format!(
                    "transpose: {perm:?} is not a permutation"
                )));
            }
            seen[p] = true;
        }
        if perm.first().is_some_and(|&p| p != 0) {
            return Err(NnError::Unsupported(format!(
                "transpose {perm:?} moves the batch axis"
            )));
        }
        Ok(Self { perm })
    }

    fn permute(dims: &[usize], data: &[f32], perm: &[usize]) -> Result<Tensor> {
        let out_dims: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
        let in_strides = shape_of(dims)?.strides();
        let strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
        let n = data.len();
        let mut out = Vec::with_capacity(n);
        let rank = out_dims.len();
        let mut idx = vec![0usize; rank];
        let mut off = 0usize;
        for _ in 0..n {
            out.push(data[off]);
            for ax in (0..rank).rev() {
                idx[ax] += 1;
                off += strides[ax];
                if idx[ax] < out_dims[ax] {
                    break;
                }
                off -= strides[ax] * out_dims[ax];
                idx[ax] = 0;
            }
        }
        Ok(Tensor::new(&out_dims, out)?)
    }
}

impl Layer for Transpose {
    fn kind(&self) -> &'static str {
        "transpose"
    }

    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        if input.rank() != self.perm.len() {
            return Err(NnError::BadInput {
                layer: "transpose".into(),
                input: input.clone(),
                reason: format!("permutation {:?} needs rank {}", self.perm, self.perm.len()),
            });
        }
        let dims: Vec<usize> = self.perm.iter().map(|&p| input.dims()[p]).collect();
        shape_of(&dims)
    }

    fn forward(&mut self, input: &Tensor, _mode: Mode) -> Result<Tensor> {
        self.output_shape(input.shape())?;
        Self::permute(input.dims(), input.data(), &self.perm)
    }

    fn backward(&mut self, grad_output: &Tensor) -> Result<Tensor> {
        let mut inv = vec![0; self.perm.len()];
        for (i, &p) in self.perm.iter().enumerate() {
            inv[p] = i;
        }
        if grad_output.dims().len() != inv.len() {
            return Err(NnError::BadInput {
                layer: "transpose backward".into(),
                input: grad_output.shape().clone(),
                reason: format!("permutation {:?}", self.perm),
            });
        }
        Self::permute(grad_output.dims(), grad_output.data(), &inv)
    }

    fn param_count(&self) -> usize {
        0
    }

    fn macs(&self, _input: &Shape) -> Result<u64> {
        Ok(0)
    }

    fn record(&self) -> Result<LayerRecord> {
        Ok(LayerRecord::new("transpose").with_ints("perm", &to_i64(&self.perm)))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

// ---------------------------------------------------------------------------------------
// Pad.
// ---------------------------------------------------------------------------------------

/// Constant padding of every sample (ONNX `Pad`, mode `constant`): `begin[i]` and `end[i]`
/// elements of `value` around dimension `i` of the batched tensor; the batch dimension is
/// never padded.
#[derive(Debug, Clone)]
pub struct Pad {
    /// Elements added before each dimension (batch included, `begin[0] == 0`).
    pub begin: Vec<usize>,
    /// Elements added after each dimension (`end[0] == 0`).
    pub end: Vec<usize>,
    /// The fill value.
    pub value: f32,
    input_dims: Option<Vec<usize>>,
}

impl Pad {
    /// A constant pad; the batch dimension must not be padded.
    pub fn new(begin: Vec<usize>, end: Vec<usize>, value: f32) -> Result<Self> {
        if begin.len() != end.len() {
            return Err(NnError::Config(format!(
                "pad: begin {begin:?} and end {end:?} differ in rank"
            )));
        }
        if begin.first().is_some_and(|&b| b != 0) || end.first().is_some_and(|&e| e != 0) {
            return Err(NnError::Unsupported(
                "pad: padding the batch dimension".into(),
            ));
        }
        Ok(Self {
            begin,
            end,
            value,
            input_dims: None,
        })
    }

    /// Calls `f(input_offset, output_offset, run)` for each contiguous innermost run.
    fn runs(&self, dims: &[usize], out: &[usize], mut f: impl FnMut(usize, usize, usize)) {
        let rank = dims.len();
        if rank == 0 {
            f(0, 0, 1);
            return;
        }
        let in_strides = Shape::new(dims).map(|s| s.strides()).unwrap_or_default();
        let out_strides = Shape::new(out).map(|s| s.strides()).unwrap_or_default();
        let rows: usize = dims[..rank - 1].iter().product();
        let mut idx = vec![0usize; rank - 1];
        for _ in 0..rows {
            let mut i_off = 0;
            let mut o_off = self.begin[rank - 1];
            for a in 0..rank - 1 {
                i_off += idx[a] * in_strides[a];
                o_off += (idx[a] + self.begin[a]) * out_strides[a];
            }
            f(i_off, o_off, dims[rank - 1]);
            for a in (0..rank - 1).rev() {
                idx[a] += 1;
                if idx[a] < dims[a] {
                    break;
                }
                idx[a] = 0;
            }
        }
    }
}

impl Layer for Pad {
    fn kind(&self) -> &'static str {
        "pad"
    }

    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        if input.rank() != self.begin.len() {
            return Err(NnError::BadInput {
                layer: "pad".into(),
                input: input.clone(),
                reason: format!("pads are for rank {}", self.begin.len()),
            });
        }
        let mut dims = Vec::with_capacity(input.rank());
        for ((&d, &b), &e) in input.dims().iter().zip(&self.begin).zip(&self.end) {
            let n = d
                .checked_add(b)
                .and_then(|x| x.checked_add(e))
                .ok_or_else(|| NnError::Config(format!("pad: {d} + {b} + {e} overflows")))?;
            dims.push(n);
        }
        shape_of(&dims)
    }

    fn forward(&mut self, input: &Tensor, mode: Mode) -> Result<Tensor> {
        let out = self.output_shape(input.shape())?;
        let mut y = Tensor::full(out.clone(), self.value);
        let yd = y.data_mut();
        let xd = input.data();
        self.runs(input.dims(), out.dims(), |i, o, n| {
            yd[o..o + n].copy_from_slice(&xd[i..i + n]);
        });
        if mode == Mode::Train {
            self.input_dims = Some(input.dims().to_vec());
        }
        Ok(y)
    }

    fn backward(&mut self, grad_output: &Tensor) -> Result<Tensor> {
        let dims = self
            .input_dims
            .clone()
            .ok_or_else(|| NnError::NoForwardCache {
                layer: "pad".into(),
            })?;
        let mut g = Tensor::zeros(shape_of(&dims)?);
        let gd = g.data_mut();
        let od = grad_output.data();
        self.runs(&dims, grad_output.dims(), |i, o, n| {
            gd[i..i + n].copy_from_slice(&od[o..o + n]);
        });
        Ok(g)
    }

    fn param_count(&self) -> usize {
        0
    }

    fn macs(&self, _input: &Shape) -> Result<u64> {
        Ok(0)
    }

    fn clear_cache(&mut self) {
        self.input_dims = None;
    }

    fn record(&self) -> Result<LayerRecord> {
        Ok(LayerRecord::new("pad")
            .with_ints("begin", &to_i64(&self.begin))
            .with_ints("end", &to_i64(&self.end))
            .with_float("value", self.value))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

// ---------------------------------------------------------------------------------------
// Parallel: fork/join blocks.
// ---------------------------------------------------------------------------------------

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
            return Err(NnError::NoForwardCache {
                layer: "parallel".into(),
            });
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

    fn params(&self) -> Vec<ParamRef<'_>> {
        self.branches
            .iter()
            .flat_map(|b| b.iter().flat_map(|l| l.params()))
            .collect()
    }

    fn params_mut(&mut self) -> Vec<ParamMut<'_>> {
        self.branches
            .iter_mut()
            .flat_map(|b| b.iter_mut().flat_map(|l| l.params_mut()))
            .collect()
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
    /// attribute `i.j/kind` and its attributes and tensors under the prefix `i.j/`;
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

#[cfg(test)]
mod tests {
    use super::*;
    use tensor_core::rng::Rng;

    fn rand_tensor(rng: &mut Rng, dims: &[usize]) -> Tensor {
        let n = dims.iter().product();
        Tensor::new(dims, (0..n).map(|_| rng.normal()).collect()).unwrap()
    }

    /// Checks `backward` against central finite differences of `sum(w * forward(x))`.
    fn grad_check(layer: &mut dyn Layer, x: &Tensor, seed: u64) {
        let mut rng = Rng::seed_from_u64(seed);
        let y = layer.forward(x, Mode::Train).unwrap();
        let w = rand_tensor(&mut rng, y.dims());
        let gx = layer.backward(&w).unwrap();
        let f = |layer: &mut dyn Layer, x: &Tensor| -> f64 {
            let y = layer.forward(x, Mode::Eval).unwrap();
            y.data()
                .iter()
                .zip(w.data())
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum()
        };
        let eps = 1e-2f32;
        for i in 0..x.numel() {
            let mut xp = x.clone();
            xp.data_mut()[i] += eps;
            let mut xm = x.clone();
            xm.data_mut()[i] -= eps;
            let num = (f(layer, &xp) - f(layer, &xm)) / (2.0 * eps as f64);
            let ana = gx.data()[i] as f64;
            assert!(
                (num - ana).abs() <= 2e-2 * (1.0 + num.abs()),
                "seed {seed} {}: element {i}: numeric {num} analytic {ana}",
                layer.kind()
            );
        }
    }

    #[test]
    fn softmax_axis_semantics() {
        let x = Tensor::new(&[1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        // Opset 13: along the last axis.
        let y = Softmax::new(-1, false, false)
            .forward(&x, Mode::Eval)
            .unwrap();
        let e = 1.0 / (1.0 + (1.0f32).exp());
        tensor_core::testing::assert_close(y.data(), &[e, 1.0 - e, e, 1.0 - e], 1e-6, 1e-7);
        // Opset < 13, axis 1: one softmax over all 4 elements.
        let y = Softmax::new(1, true, false)
            .forward(&x, Mode::Eval)
            .unwrap();
        let s: f32 = (1..=4).map(|v| (v as f32).exp()).sum();
        let want: Vec<f32> = (1..=4).map(|v| (v as f32).exp() / s).collect();
        tensor_core::testing::assert_close(y.data(), &want, 1e-6, 1e-7);
        // Along axis 1 (columns of each sample).
        let y = Softmax::new(1, false, true)
            .forward(&x, Mode::Eval)
            .unwrap();
        let l = -(1.0 + (2.0f32).exp()).ln() + 0.0;
        let lo = (1.0f32 + (-2.0f32).exp()).ln();
        tensor_core::testing::assert_close(y.data(), &[l, l, -lo, -lo], 1e-5, 1e-6);
        assert!(
            Softmax::new(3, false, false)
                .output_shape(x.shape())
                .is_err()
        );
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mut rng = Rng::seed_from_u64(7);
        let x = rand_tensor(&mut rng, &[2, 3, 4]);
        grad_check(&mut Softmax::new(-1, false, false), &x, 1);
        grad_check(&mut Softmax::new(1, true, true), &x, 2);
        grad_check(&mut Softmax::new(1, false, false), &x, 3);
        let c = rand_tensor(&mut rng, &[3, 1]);
        grad_check(&mut ConstElementwise::new(ArithOp::Mul, c.clone()), &x, 4);
        grad_check(&mut ConstElementwise::new(ArithOp::Add, c), &x, 5);
        grad_check(&mut Transpose::new(vec![0, 2, 1]).unwrap(), &x, 6);
        grad_check(&mut Reshape::new(vec![12]), &x, 7);
        grad_check(
            &mut Pad::new(vec![0, 1, 0], vec![0, 2, 1], 0.5).unwrap(),
            &x,
            11,
        );
        let gate = Parallel::new(
            vec![
                vec![],
                vec![Box::new(Softmax::new(-1, false, false)) as Box<dyn Layer>],
                vec![
                    Box::new(Transpose::new(vec![0, 2, 1]).unwrap()) as Box<dyn Layer>,
                    Box::new(Transpose::new(vec![0, 2, 1]).unwrap()),
                ],
            ],
            Merge::Mul,
        )
        .unwrap();
        grad_check(&mut { gate }, &x, 8);
        let cat = Parallel::new(
            vec![
                vec![],
                vec![Box::new(Softmax::new(-1, false, true)) as Box<dyn Layer>],
            ],
            Merge::Concat { axis: 2 },
        )
        .unwrap();
        grad_check(&mut { cat }, &x, 9);
        let res = Parallel::new(
            vec![
                vec![Box::new(ConstElementwise::new(
                    ArithOp::Mul,
                    rand_tensor(&mut rng, &[4]),
                )) as Box<dyn Layer>],
                vec![],
            ],
            Merge::Add,
        )
        .unwrap();
        grad_check(&mut { res }, &x, 10);
    }

    #[test]
    fn broadcasting_and_concat_values() {
        let x = Tensor::new(&[1, 2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let c = Tensor::new(&[2, 1], vec![10.0, 100.0]).unwrap();
        let y = ConstElementwise::new(ArithOp::Add, c)
            .forward(&x, Mode::Eval)
            .unwrap();
        assert_eq!(y.data(), &[11.0, 12.0, 13.0, 104.0, 105.0, 106.0]);
        let big = Tensor::new(&[2, 2, 3], vec![0.0; 12]).unwrap();
        assert!(
            ConstElementwise::new(ArithOp::Add, big)
                .output_shape(x.shape())
                .is_err()
        );
        let mut cat = Parallel::new(vec![vec![], vec![]], Merge::Concat { axis: 1 }).unwrap();
        let y = cat.forward(&x, Mode::Eval).unwrap();
        assert_eq!(y.dims(), &[1, 4, 3]);
        assert_eq!(&y.data()[6..], x.data());
        let t = Transpose::new(vec![0, 2, 1])
            .unwrap()
            .forward(&x, Mode::Eval)
            .unwrap();
        assert_eq!(t.data(), &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert!(Transpose::new(vec![1, 0]).is_err());
        assert!(Transpose::new(vec![0, 0]).is_err());
        assert!(Parallel::new(vec![vec![]], Merge::Concat { axis: 0 }).is_err());
        let p = Pad::new(vec![0, 0, 1], vec![0, 1, 0], -1.0)
            .unwrap()
            .forward(&x, Mode::Eval)
            .unwrap();
        assert_eq!(p.dims(), &[1, 3, 4]);
        assert_eq!(
            p.data(),
            &[
                -1.0, 1.0, 2.0, 3.0, -1.0, 4.0, 5.0, 6.0, -1.0, -1.0, -1.0, -1.0
            ]
        );
        assert!(Pad::new(vec![1, 0], vec![0, 0], 0.0).is_err());
    }
}
