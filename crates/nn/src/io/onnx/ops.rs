//! The per-operator half of the ONNX importer: one method of [`Importer`] per supported op,
//! each validating its attributes (an unknown attribute is an error naming it) and producing
//! the node's output values (folded constants or layers appended to a runtime path).

use tensor_core::Tensor;

use super::fold::{Ct, Dim, axis};
use super::import::{
    Attrs, Importer, Rt, Value, const_to_value, f32_tensor, ints_of, pair, sizes, unsupported,
};
use super::proto::{NodeProto, attribute_type, data_type};
use super::spec::{Op, Window};
use super::tensor::decode;
use crate::error::{NnError, Result};
use crate::layers::onnx_ops::{ArithOp, Merge};

/// Resolves ONNX `auto_pad` into explicit `[t, l, b, r]` pads for input `[h, w]`.
fn auto_pads(
    mode: &str,
    pads: Option<Vec<i64>>,
    hw: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
) -> Result<[usize; 4]> {
    match mode {
        "" | "NOTSET" => match pads {
            None => Ok([0; 4]),
            Some(p) => {
                let s = sizes(&p, "pads", 0)?;
                if s.len() != 4 {
                    return Err(unsupported(format!(
                        "attribute pads={p:?}: only 2-D windows are supported"
                    )));
                }
                Ok([s[0], s[1], s[2], s[3]])
            }
        },
        "VALID" => Ok([0; 4]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut out = [0; 4];
            for i in 0..2 {
                let o = hw[i].div_ceil(stride[i]);
                let span = (kernel[i] - 1) * dilation[i] + 1;
                let total = ((o.max(1) - 1) * stride[i] + span).saturating_sub(hw[i]);
                let small = total / 2;
                let (b, e) = if mode == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                out[i] = b;
                out[i + 2] = e;
            }
            Ok(out)
        }
        other => Err(unsupported(format!(
            "attribute auto_pad='{other}' is not supported"
        ))),
    }
}

impl Importer {
    /// Records the outputs of a node.
    pub(super) fn set(&mut self, node: &NodeProto, outs: Vec<Value>) -> Result<()> {
        for (name, v) in node.output.iter().zip(outs) {
            if name.is_empty() {
                continue;
            }
            if self.values.contains_key(name) {
                return Err(NnError::corrupt(
                    &self.source,
                    "graph",
                    format!("value '{name}' is defined twice"),
                ));
            }
            self.values.insert(name.clone(), v);
        }
        Ok(())
    }

    /// Errors if any output after the first `n` is consumed.
    pub(super) fn only_outputs(&self, node: &NodeProto, n: usize, what: &str) -> Result<()> {
        for name in node.output.iter().skip(n) {
            if !name.is_empty() && self.uses(name) > 0 {
                return Err(unsupported(format!(
                    "output '{name}' ({what}) is used; only inference outputs are supported"
                )));
            }
        }
        Ok(())
    }

    pub(super) fn node(&mut self, node: &NodeProto) -> Result<()> {
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return Err(unsupported(format!(
                "operator domain '{}' is not supported",
                node.domain
            )));
        }
        let a = Attrs { node };
        let op = node.op_type.as_str();
        let v = match op {
            "Identity" => {
                a.only(&[])?;
                vec![self.alias(node)?]
            }
            "Dropout" => {
                a.only(&["ratio", "is_test", "seed"])?;
                if let Some(Value::Rt(_)) = self.value(node, 2)? {
                    return Err(unsupported("training_mode computed at run time"));
                }
                if let Some(Value::I(t)) = self.value(node, 2)?
                    && ints_of(t)?.iter().any(|&x| x != 0)
                {
                    return Err(unsupported("training_mode=true (dropout active)"));
                }
                self.only_outputs(node, 1, "the dropout mask")?;
                vec![self.alias(node)?]
            }
            "Constant" => {
                a.only(&[
                    "value",
                    "value_float",
                    "value_floats",
                    "value_int",
                    "value_ints",
                ])?;
                vec![self.constant(&a)?]
            }
            "ConstantOfShape" => {
                a.only(&["value"])?;
                let shape = sizes(&self.const_i(node, 0)?, "shape input", 0)?;
                let fill = match a.t("value")? {
                    None => Value::F(Ct::full(vec![], 0.0)?),
                    Some(t) => const_to_value(decode(t, &self.source, "ConstantOfShape value")?)?,
                };
                vec![match fill {
                    Value::F(c) if c.v.len() == 1 => Value::F(Ct::full(shape, c.v[0])?),
                    Value::I(c) if c.v.len() == 1 => Value::I(Ct::full(shape, c.v[0])?),
                    _ => return Err(unsupported("attribute value must hold one element")),
                }]
            }
            "Shape" => {
                a.only(&["start", "end"])?;
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
                vec![Value::I(Ct::new(vec![d.len()], d)?)]
            }
            "Gather" => {
                a.only(&["axis"])?;
                let idx_v = self.req(node, 1)?;
                let (idims, idx) = match &idx_v {
                    Value::I(c) => (c.dims.clone(), ints_of(c)?),
                    _ => return Err(unsupported("indices must be an integer constant")),
                };
                vec![match self.req(node, 0)? {
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
                }]
            }
            "Unsqueeze" | "Squeeze" => {
                a.only(&["axes"])?;
                let axes = if self.opset < 13 {
                    a.ints("axes")?
                } else {
                    match self.value(node, 1)? {
                        None => None,
                        Some(_) => Some(self.const_i(node, 1)?),
                    }
                };
                vec![self.squeeze(node, op == "Unsqueeze", axes)?]
            }
            "Concat" => {
                a.only(&["axis"])?;
                let ax = a
                    .get("axis")
                    .map(|_| a.i("axis", 0))
                    .transpose()?
                    .ok_or_else(|| unsupported("attribute axis is required"))?;
                vec![self.concat(node, ax)?]
            }
            "Reshape" => {
                a.only(&["shape", "allowzero"])?;
                let target = if self.opset < 5 {
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
                };
                let allowzero = a.i("allowzero", 0)? != 0;
                vec![self.reshape(node, target, allowzero)?]
            }
            "Cast" => {
                a.only(&["to", "saturate", "round_mode"])?;
                let to = a.i("to", 0)? as i32;
                vec![self.cast(node, to)?]
            }
            "CastLike" => {
                a.only(&["saturate", "round_mode"])?;
                let to = match self.req(node, 1)? {
                    Value::I(_) => data_type::INT64,
                    _ => data_type::FLOAT,
                };
                vec![self.cast(node, to)?]
            }
            "Expand" => {
                a.only(&[])?;
                let shape = sizes(&self.const_i(node, 1)?, "shape input", 0)?;
                vec![match self.req(node, 0)? {
                    Value::F(c) => Value::F(c.expand(&shape)?),
                    Value::I(c) => Value::I(c.expand(&shape)?),
                    Value::Rt(r) => {
                        let out =
                            crate::layers::onnx_ops::broadcast_dims("Expand", &r.dims, &shape)?;
                        if out != r.dims {
                            return Err(unsupported(format!(
                                "expanding a computed value of shape {:?} to {out:?}",
                                r.dims
                            )));
                        }
                        self.alias(node)?
                    }
                }]
            }
            "Slice" => {
                a.only(&["starts", "ends", "axes"])?;
                vec![self.slice(node, &a)?]
            }
            "Transpose" => {
                a.only(&["perm"])?;
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
                vec![match v {
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
                }]
            }
            "Add" | "Sub" | "Mul" | "Div" => {
                a.only(&["broadcast", "axis", "consumed_inputs"])?;
                if a.i("broadcast", 0)? != 0 && a.get("axis").is_some() {
                    return Err(unsupported(
                        "attribute axis (legacy broadcast along an axis)",
                    ));
                }
                vec![self.binary(node, op)?]
            }
            "Gemm" => {
                a.only(&["alpha", "beta", "transA", "transB", "broadcast"])?;
                vec![self.gemm(node, &a)?]
            }
            "MatMul" => {
                a.only(&[])?;
                let x = self.rt(node, 0)?;
                let w = self.const_f(node, 1)?;
                if x.dims.len() != 2 || w.dims.len() != 2 {
                    return Err(unsupported(format!(
                        "MatMul of {:?} by {:?}: only [N, in] x [in, out] is supported",
                        x.dims, w.dims
                    )));
                }
                let wt = w.transpose(&[1, 0])?;
                let out = wt.dims[0];
                vec![Value::Rt(self.push(
                    &x,
                    Op::Linear {
                        weight: f32_tensor(&wt)?,
                        bias: vec![0.0; out],
                    },
                )?)]
            }
            "Conv" => {
                a.only(&[
                    "auto_pad",
                    "dilations",
                    "group",
                    "kernel_shape",
                    "pads",
                    "strides",
                ])?;
                vec![self.conv(node, &a)?]
            }
            "BatchNormalization" => {
                a.only(&[
                    "epsilon",
                    "momentum",
                    "spatial",
                    "is_test",
                    "training_mode",
                    "consumed_inputs",
                ])?;
                if a.i("spatial", 1)? != 1 {
                    return Err(unsupported(
                        "attribute spatial=0 (per-activation statistics)",
                    ));
                }
                if a.i("training_mode", 0)? != 0 {
                    return Err(unsupported("attribute training_mode=1 (batch statistics)"));
                }
                self.only_outputs(node, 1, "running statistics")?;
                vec![self.batchnorm(node, a.f("epsilon", 1e-5)?)?]
            }
            "MaxPool" | "AveragePool" => {
                if op == "MaxPool" {
                    a.only(&[
                        "auto_pad",
                        "ceil_mode",
                        "dilations",
                        "kernel_shape",
                        "pads",
                        "storage_order",
                        "strides",
                    ])?;
                    self.only_outputs(node, 1, "pooling indices")?;
                } else {
                    a.only(&[
                        "auto_pad",
                        "ceil_mode",
                        "count_include_pad",
                        "dilations",
                        "kernel_shape",
                        "pads",
                        "strides",
                    ])?;
                }
                vec![self.pool(node, &a, op == "MaxPool")?]
            }
            "GlobalAveragePool" => {
                a.only(&[])?;
                let x = self.rt(node, 0)?;
                vec![Value::Rt(self.push(&x, Op::GlobalAvgPool)?)]
            }
            "ReduceMean" => {
                a.only(&["axes", "keepdims", "noop_with_empty_axes"])?;
                vec![self.reduce_mean(node, &a)?]
            }
            "Relu" | "Sigmoid" | "Tanh" => {
                a.only(&["consumed_inputs"])?;
                let x = self.rt(node, 0)?;
                let o = match op {
                    "Relu" => Op::Relu,
                    "Sigmoid" => Op::Sigmoid,
                    _ => Op::Tanh,
                };
                vec![Value::Rt(self.push(&x, o)?)]
            }
            "Flatten" => {
                a.only(&["axis"])?;
                vec![self.flatten(node, a.i("axis", 1)?)?]
            }
            "Softmax" | "LogSoftmax" => {
                a.only(&["axis"])?;
                let coerce = self.opset < 13;
                let ax = a.i("axis", if coerce { 1 } else { -1 })?;
                let x = self.rt(node, 0)?;
                let resolved = axis(ax, x.dims.len(), op)?;
                if resolved == 0 {
                    return Err(unsupported(format!(
                        "attribute axis={ax} normalizes across the batch"
                    )));
                }
                vec![Value::Rt(self.push(
                    &x,
                    Op::Softmax {
                        axis: resolved as isize,
                        coerce,
                        log: op == "LogSoftmax",
                    },
                )?)]
            }
            "Pad" => {
                a.only(&["mode", "pads", "value"])?;
                vec![self.pad(node, &a)?]
            }
            _ => {
                let names: Vec<&str> = node.attribute.iter().map(|a| a.name.as_str()).collect();
                return Err(unsupported(format!(
                    "op {op} is not supported (attributes: {names:?})"
                )));
            }
        };
        self.set(node, v)
    }

    /// The node's first input, passed through (Identity, inference-mode Dropout).
    pub(super) fn alias(&self, node: &NodeProto) -> Result<Value> {
        Ok(match self.req(node, 0)? {
            Value::Rt(mut r) => {
                r.fresh = false;
                Value::Rt(r)
            }
            v => v,
        })
    }

    pub(super) fn constant(&self, a: &Attrs<'_>) -> Result<Value> {
        if let Some(t) = a.t("value")? {
            return const_to_value(decode(t, &self.source, "Constant value")?);
        }
        if let Some(at) = a.get("value_float") {
            Attrs::check_type(at, attribute_type::FLOAT)?;
            return Ok(Value::F(Ct::new(vec![], vec![at.f])?));
        }
        if let Some(at) = a.get("value_floats") {
            Attrs::check_type(at, attribute_type::FLOATS)?;
            return Ok(Value::F(Ct::new(vec![at.floats.len()], at.floats.clone())?));
        }
        if let Some(at) = a.get("value_int") {
            Attrs::check_type(at, attribute_type::INT)?;
            return Ok(Value::I(Ct::new(vec![], vec![Dim::K(at.i)])?));
        }
        if let Some(v) = a.ints("value_ints")? {
            return Ok(Value::I(Ct::new(
                vec![v.len()],
                v.into_iter().map(Dim::K).collect(),
            )?));
        }
        Err(unsupported("no value attribute"))
    }

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

    pub(super) fn concat(&mut self, node: &NodeProto, ax: i64) -> Result<Value> {
        let n = node.input.len();
        let vals: Vec<Value> = (0..n).map(|i| self.req(node, i)).collect::<Result<_>>()?;
        if vals.is_empty() {
            return Err(unsupported("no inputs"));
        }
        if vals.iter().all(|v| matches!(v, Value::Rt(_))) {
            let rts: Vec<Rt> = vals
                .into_iter()
                .filter_map(|v| if let Value::Rt(r) = v { Some(r) } else { None })
                .collect();
            let a = axis(ax, rts[0].dims.len(), "Concat")?;
            if a == 0 {
                return Err(unsupported("attribute axis=0 concatenates along the batch"));
            }
            let extra = rts.iter().map(|_| None).collect();
            return Ok(Value::Rt(self.join(
                rts,
                Merge::Concat { axis: a },
                extra,
            )?));
        }
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

    pub(super) fn reshape(
        &mut self,
        node: &NodeProto,
        target: Vec<Dim>,
        allowzero: bool,
    ) -> Result<Value> {
        let v = self.req(node, 0)?;
        if let Value::Rt(r) = &v {
            let per: usize = r.dims[1..].iter().product();
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
            let rest = &target[1..];
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
                        dims.push(*r.dims.get(i + 1).ok_or_else(|| {
                            unsupported(format!(
                                "reshape target {target:?}: 0 copies a missing dimension"
                            ))
                        })?);
                    }
                    Dim::K(-1) if infer.is_none() && first_is_batch => {
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
                        "reshape of {:?} to {target:?}: -1 cannot be inferred",
                        r.dims
                    )));
                }
                dims[i] = per / known;
            } else if known != per {
                return Err(unsupported(format!(
                    "reshape of {:?} to {target:?}: a sample has {per} elements",
                    r.dims
                )));
            }
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

    pub(super) fn cast(&mut self, node: &NodeProto, to: i32) -> Result<Value> {
        let float = matches!(
            to,
            data_type::FLOAT | data_type::DOUBLE | data_type::FLOAT16 | data_type::BFLOAT16
        );
        let int = matches!(
            to,
            data_type::INT64
                | data_type::INT32
                | data_type::INT8
                | data_type::UINT8
                | 4
                | 5
                | 12
                | 13
        );
        if !float && !int && to != data_type::BOOL {
            return Err(unsupported(format!(
                "attribute to={} ({}) is not supported",
                to,
                data_type::name(to)
            )));
        }
        Ok(match self.req(node, 0)? {
            Value::Rt(r) => {
                if to != data_type::FLOAT {
                    return Err(unsupported(format!(
                        "casting a computed value to {}",
                        data_type::name(to)
                    )));
                }
                let mut r = r;
                r.fresh = false;
                Value::Rt(r)
            }
            Value::F(c) if float => Value::F(c),
            Value::F(c) => {
                let v =
                    c.v.iter()
                        .map(|&x| {
                            if !x.is_finite() {
                                return Err(unsupported(format!("casting {x} to an integer")));
                            }
                            Ok(Dim::K(if to == data_type::BOOL {
                                (x != 0.0) as i64
                            } else {
                                x.trunc() as i64
                            }))
                        })
                        .collect::<Result<_>>()?;
                Value::I(Ct::new(c.dims, v)?)
            }
            Value::I(c) if float => Value::F(Ct::new(
                c.dims.clone(),
                ints_of(&c)?.iter().map(|&x| x as f32).collect(),
            )?),
            Value::I(c) if to == data_type::BOOL => {
                let v = ints_of(&c)?
                    .iter()
                    .map(|&x| Dim::K((x != 0) as i64))
                    .collect();
                Value::I(Ct::new(c.dims, v)?)
            }
            Value::I(c) => Value::I(c),
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

    pub(super) fn binary(&mut self, node: &NodeProto, op: &str) -> Result<Value> {
        let x = self.req(node, 0)?;
        let y = self.req(node, 1)?;
        match (x, y) {
            (Value::F(a), Value::F(b)) => {
                let f: fn(f32, f32) -> f32 = match op {
                    "Add" => |a, b| a + b,
                    "Sub" => |a, b| a - b,
                    "Mul" => |a, b| a * b,
                    _ => |a, b| a / b,
                };
                Ok(Value::F(a.zip_with(&b, |p, q| Ok(f(*p, *q)))?))
            }
            (Value::I(a), Value::I(b)) => {
                let out = a.zip_with(&b, |p, q| match (p, q) {
                    (Dim::K(p), Dim::K(q)) => {
                        let r = match op {
                            "Add" => p.checked_add(*q),
                            "Sub" => p.checked_sub(*q),
                            "Mul" => p.checked_mul(*q),
                            _ => p.checked_div(*q),
                        };
                        r.map(Dim::K)
                            .ok_or_else(|| unsupported(format!("integer {op} of {p} and {q}")))
                    }
                    _ => Err(unsupported(format!("{op} involving the batch size"))),
                })?;
                Ok(Value::I(out))
            }
            (Value::Rt(a), Value::Rt(b)) => {
                let (merge, extra) = match op {
                    "Add" => (Merge::Add, vec![None, None]),
                    "Mul" => (Merge::Mul, vec![None, None]),
                    "Sub" => (
                        Merge::Add,
                        vec![
                            None,
                            Some(Op::Arith(ArithOp::Mul, Tensor::new(&[], vec![-1.0])?)),
                        ],
                    ),
                    _ => return Err(unsupported("division of two computed values")),
                };
                Ok(Value::Rt(self.join(vec![a, b], merge, extra)?))
            }
            (Value::Rt(r), c) => {
                let c = self.const_f(node, 1).or_else(|_| match c {
                    Value::F(c) => Ok(c),
                    _ => Err(unsupported("constant operand")),
                })?;
                let name = node.input[0].clone();
                match op {
                    "Add" => self.add_const(r, &name, c),
                    "Sub" => {
                        let neg = Ct::new(c.dims.clone(), c.v.iter().map(|x| -x).collect())?;
                        self.add_const(r, &name, neg)
                    }
                    "Mul" => Ok(Value::Rt(self.arith(&r, ArithOp::Mul, c)?)),
                    _ => {
                        let inv = Ct::new(c.dims.clone(), c.v.iter().map(|x| 1.0 / x).collect())?;
                        Ok(Value::Rt(self.arith(&r, ArithOp::Mul, inv)?))
                    }
                }
            }
            (_, Value::Rt(r)) => {
                let c = self.const_f(node, 0)?;
                let name = node.input[1].clone();
                match op {
                    "Add" => self.add_const(r, &name, c),
                    "Mul" => Ok(Value::Rt(self.arith(&r, ArithOp::Mul, c)?)),
                    "Sub" => {
                        let neg = self.arith(&r, ArithOp::Mul, Ct::new(vec![], vec![-1.0])?)?;
                        Ok(Value::Rt(self.arith(&neg, ArithOp::Add, c)?))
                    }
                    _ => Err(unsupported("dividing a constant by a computed value")),
                }
            }
            _ => Err(unsupported(format!(
                "{op} of an integer and a float constant"
            ))),
        }
    }

    /// `x op c` as a layer; the constant's leading unit dimensions beyond the value's rank
    /// are dropped.
    pub(super) fn arith(&mut self, r: &Rt, op: ArithOp, c: Ct<f32>) -> Result<Rt> {
        let mut dims = c.dims.clone();
        while dims.len() > r.dims.len() && dims.first() == Some(&1) {
            dims.remove(0);
        }
        let t = Tensor::new(&dims, c.v)?;
        self.push(r, Op::Arith(op, t))
    }

    /// `x + c`, folded into the bias of a preceding linear or convolution layer when the
    /// constant is per output feature.
    pub(super) fn add_const(&mut self, r: Rt, name: &str, c: Ct<f32>) -> Result<Value> {
        let rank = r.dims.len();
        let channels = r.dims.get(1).copied().unwrap_or(0);
        // Per-channel vector of the constant, if it is one.
        let per_channel = |c: &Ct<f32>| -> Option<Vec<f32>> {
            let mut d = c.dims.clone();
            while d.first() == Some(&1) && d.len() > 1 {
                d.remove(0);
            }
            let n = c.v.len();
            if n == 1 {
                return Some(vec![c.v[0]; channels]);
            }
            let ok = if rank == 2 {
                d == [channels]
            } else {
                d.len() == rank - 1 && d[0] == channels && d[1..].iter().all(|&x| x == 1)
            };
            ok.then(|| c.v.clone())
        };
        if c.dims.len() <= rank
            && let Some(bias_add) = per_channel(&c)
            && let Some(tip) = self.tip(&r, name)
        {
            match tip {
                Op::Linear { bias, .. } if rank == 2 => {
                    bias.iter_mut().zip(&bias_add).for_each(|(b, a)| *b += a);
                    return Ok(Value::Rt(r));
                }
                Op::Conv { bias, .. } => {
                    bias.iter_mut().zip(&bias_add).for_each(|(b, a)| *b += a);
                    return Ok(Value::Rt(r));
                }
                _ => {}
            }
        }
        Ok(Value::Rt(self.arith(&r, ArithOp::Add, c)?))
    }

    pub(super) fn gemm(&mut self, node: &NodeProto, a: &Attrs<'_>) -> Result<Value> {
        let alpha = a.f("alpha", 1.0)?;
        let beta = a.f("beta", 1.0)?;
        let trans_a = a.i("transA", 0)?;
        let trans_b = a.i("transB", 0)?;
        if trans_a != 0 {
            return Err(unsupported(format!(
                "attribute transA={trans_a} transposes the batch into the features"
            )));
        }
        let x = self.rt(node, 0)?;
        let b = self.const_f(node, 1)?;
        if x.dims.len() != 2 || b.dims.len() != 2 {
            return Err(unsupported(format!(
                "Gemm of {:?} by {:?}: both must be 2-D",
                x.dims, b.dims
            )));
        }
        let mut w = if trans_b != 0 {
            b
        } else {
            b.transpose(&[1, 0])?
        };
        if alpha != 1.0 {
            w.v.iter_mut().for_each(|v| *v *= alpha);
        }
        let out = w.dims[0];
        let bias = match self.value(node, 2)? {
            None => vec![0.0; out],
            Some(_) => {
                let c = self.const_f(node, 2)?;
                let ok = c.v.len() == 1
                    || (c.v.len() == out && c.dims.last() == Some(&out) && c.dims.len() <= 2);
                if !ok {
                    return Err(unsupported(format!(
                        "bias C of shape {:?} is not per output feature ({out})",
                        c.dims
                    )));
                }
                if c.v.len() == 1 {
                    vec![beta * c.v[0]; out]
                } else {
                    c.v.iter().map(|v| beta * v).collect()
                }
            }
        };
        Ok(Value::Rt(self.push(
            &x,
            Op::Linear {
                weight: f32_tensor(&w)?,
                bias,
            },
        )?))
    }

    pub(super) fn conv(&mut self, node: &NodeProto, a: &Attrs<'_>) -> Result<Value> {
        let x = self.rt(node, 0)?;
        let w = self.const_f(node, 1)?;
        if x.dims.len() != 4 || w.dims.len() != 4 {
            return Err(unsupported(format!(
                "convolution of {:?} by kernel {:?}: only 2-D convolutions (NCHW) are supported",
                x.dims, w.dims
            )));
        }
        let kernel = [w.dims[2], w.dims[3]];
        if let Some(k) = a.ints("kernel_shape")?
            && sizes(&k, "kernel_shape", 1)? != kernel
        {
            return Err(unsupported(format!(
                "attribute kernel_shape={k:?} disagrees with the weight {:?}",
                w.dims
            )));
        }
        let stride = pair(a.ints("strides")?, "strides", 1)?;
        let dilation = pair(a.ints("dilations")?, "dilations", 1)?;
        let groups = a.i("group", 1)?;
        let groups = usize::try_from(groups)
            .ok()
            .filter(|&g| g >= 1)
            .ok_or_else(|| unsupported(format!("attribute group={groups}")))?;
        let mode = a.s("auto_pad")?.unwrap_or_default();
        let pads = auto_pads(
            &mode,
            a.ints("pads")?,
            [x.dims[2], x.dims[3]],
            kernel,
            stride,
            dilation,
        )?;
        let out = w.dims[0];
        let bias = match self.value(node, 2)? {
            None => vec![0.0; out],
            Some(_) => {
                let b = self.const_f(node, 2)?;
                if b.v.len() != out {
                    return Err(unsupported(format!(
                        "bias of shape {:?} for {out} output channels",
                        b.dims
                    )));
                }
                b.v
            }
        };
        let mut window = Window {
            kernel,
            stride,
            pads,
            dilation,
            ceil: false,
        };
        // Fold a preceding zero Pad of the spatial dimensions into the convolution.
        let mut base = x.clone();
        let name = node.input[0].clone();
        if let Some(Op::Pad { begin, end, value }) = self.tip(&x, &name)
            && *value == 0.0
            && begin.len() == 4
            && begin[..2] == [0, 0]
            && end[..2] == [0, 0]
        {
            let (b, e) = (begin.clone(), end.clone());
            window.pads = [
                pads[0] + b[2],
                pads[1] + b[3],
                pads[2] + e[2],
                pads[3] + e[3],
            ];
            // The Pad layer is absorbed: continue from its input.
            let Some(n) = x.path.as_ref() else {
                unreachable!("tip() returned a layer, so the path is not empty")
            };
            self.arena[n.idx] = None;
            base = Rt {
                path: n.parent.clone(),
                dims: n
                    .parent
                    .as_ref()
                    .map_or_else(|| self.input_dims.clone(), |p| p.dims.clone()),
                fresh: false,
            };
        }
        Ok(Value::Rt(self.push(
            &base,
            Op::Conv {
                weight: f32_tensor(&w)?,
                bias,
                window,
                groups,
            },
        )?))
    }

    pub(super) fn batchnorm(&mut self, node: &NodeProto, eps: f32) -> Result<Value> {
        let x = self.rt(node, 0)?;
        let p: Vec<Ct<f32>> = (1..5)
            .map(|i| self.const_f(node, i))
            .collect::<Result<_>>()?;
        let c = *x
            .dims
            .get(1)
            .ok_or_else(|| unsupported("BatchNormalization of a 1-D value"))?;
        if p.iter().any(|t| t.v.len() != c) {
            return Err(unsupported(format!(
                "scale/bias/mean/var of sizes {:?} for {c} channels",
                p.iter().map(|t| t.v.len()).collect::<Vec<_>>()
            )));
        }
        // y = (x - mean) / sqrt(var + eps) * scale + bias = x * s + t.
        let s: Vec<f32> = (0..c)
            .map(|i| (p[0].v[i] as f64 / (p[3].v[i] as f64 + eps as f64).sqrt()) as f32)
            .collect();
        let t: Vec<f32> = (0..c)
            .map(|i| (p[1].v[i] as f64 - p[2].v[i] as f64 * s[i] as f64) as f32)
            .collect();
        let name = node.input[0].clone();
        let rank = x.dims.len();
        if let Some(tip) = self.tip(&x, &name) {
            match tip {
                Op::Conv { weight, bias, .. } => {
                    let per = weight.numel() / c.max(1);
                    for (o, chunk) in weight.data_mut().chunks_exact_mut(per.max(1)).enumerate() {
                        chunk.iter_mut().for_each(|w| *w *= s[o]);
                    }
                    for o in 0..c {
                        bias[o] = bias[o] * s[o] + t[o];
                    }
                    return Ok(Value::Rt(x));
                }
                Op::Linear { weight, bias } if rank == 2 => {
                    let per = weight.numel() / c.max(1);
                    for (o, chunk) in weight.data_mut().chunks_exact_mut(per.max(1)).enumerate() {
                        chunk.iter_mut().for_each(|w| *w *= s[o]);
                    }
                    for o in 0..c {
                        bias[o] = bias[o] * s[o] + t[o];
                    }
                    return Ok(Value::Rt(x));
                }
                _ => {}
            }
        }
        let mut dims = vec![c];
        dims.resize(rank - 1, 1);
        let m = self.arith(&x, ArithOp::Mul, Ct::new(dims.clone(), s)?)?;
        Ok(Value::Rt(self.arith(
            &m,
            ArithOp::Add,
            Ct::new(dims, t)?,
        )?))
    }

    pub(super) fn pool(&mut self, node: &NodeProto, a: &Attrs<'_>, max: bool) -> Result<Value> {
        let x = self.rt(node, 0)?;
        if x.dims.len() != 4 {
            return Err(unsupported(format!(
                "pooling of {:?}: only 2-D pooling (NCHW) is supported",
                x.dims
            )));
        }
        let kernel = pair(
            Some(
                a.ints("kernel_shape")?
                    .ok_or_else(|| unsupported("attribute kernel_shape is required"))?,
            ),
            "kernel_shape",
            1,
        )?;
        let stride = pair(a.ints("strides")?, "strides", 1)?;
        let dilation = pair(a.ints("dilations")?, "dilations", 1)?;
        let mode = a.s("auto_pad")?.unwrap_or_default();
        let pads = auto_pads(
            &mode,
            a.ints("pads")?,
            [x.dims[2], x.dims[3]],
            kernel,
            stride,
            dilation,
        )?;
        let window = Window {
            kernel,
            stride,
            pads,
            dilation,
            ceil: a.i("ceil_mode", 0)? != 0,
        };
        let op = if max {
            Op::MaxPool(window)
        } else {
            if dilation != [1, 1] {
                return Err(unsupported(format!(
                    "attribute dilations={dilation:?} for average pooling"
                )));
            }
            Op::AvgPool {
                window,
                count_include_pad: a.i("count_include_pad", 0)? != 0,
            }
        };
        Ok(Value::Rt(self.push(&x, op)?))
    }

    pub(super) fn reduce_mean(&mut self, node: &NodeProto, a: &Attrs<'_>) -> Result<Value> {
        let x = self.rt(node, 0)?;
        let axes = if self.opset < 18 {
            a.ints("axes")?
        } else {
            self.value(node, 1)?
                .map(|_| self.const_i(node, 1))
                .transpose()?
        };
        let rank = x.dims.len();
        let mut ax: Vec<usize> = axes
            .ok_or_else(|| unsupported("ReduceMean over all axes (including the batch)"))?
            .iter()
            .map(|&v| axis(v, rank, "ReduceMean"))
            .collect::<Result<_>>()?;
        ax.sort_unstable();
        ax.dedup();
        let spatial: Vec<usize> = (2..rank).collect();
        if rank < 3 || ax != spatial {
            return Err(unsupported(format!(
                "ReduceMean over axes {ax:?} of shape {:?}: only the mean over all spatial axes \
                 (global average pooling) is supported",
                x.dims
            )));
        }
        let g = self.push(&x, Op::GlobalAvgPool)?;
        if a.i("keepdims", 1)? == 0 {
            return self.per_sample_reshape(&g, vec![x.dims[1]]);
        }
        Ok(Value::Rt(g))
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

    pub(super) fn pad(&mut self, node: &NodeProto, a: &Attrs<'_>) -> Result<Value> {
        let mode = a.s("mode")?.unwrap_or_else(|| "constant".into());
        if mode != "constant" {
            return Err(unsupported(format!(
                "attribute mode='{mode}' (only constant padding)"
            )));
        }
        let x = self.rt(node, 0)?;
        let rank = x.dims.len();
        let (pads, value, axes) = if self.opset < 11 {
            (
                a.ints("pads")?
                    .ok_or_else(|| unsupported("attribute pads is required"))?,
                a.f("value", 0.0)?,
                None,
            )
        } else {
            let value = match self.value(node, 2)? {
                None => 0.0,
                Some(_) => {
                    let c = self.const_f(node, 2)?;
                    *c.v.first()
                        .ok_or_else(|| unsupported("empty constant_value"))?
                }
            };
            let axes = self
                .value(node, 3)?
                .map(|_| self.const_i(node, 3))
                .transpose()?;
            (self.const_i(node, 1)?, value, axes)
        };
        let axes: Vec<usize> = match axes {
            Some(ax) => ax
                .iter()
                .map(|&v| axis(v, rank, "Pad"))
                .collect::<Result<_>>()?,
            None => (0..rank).collect(),
        };
        if pads.len() != 2 * axes.len() {
            return Err(unsupported(format!("pads {pads:?} for axes {axes:?}")));
        }
        let p = sizes(&pads, "pads", 0)
            .map_err(|_| unsupported(format!("negative pads {pads:?} (cropping)")))?;
        let mut begin = vec![0; rank];
        let mut end = vec![0; rank];
        for (k, &ax) in axes.iter().enumerate() {
            begin[ax] = p[k];
            end[ax] = p[k + axes.len()];
        }
        if begin[0] != 0 || end[0] != 0 {
            return Err(unsupported(format!("pads {pads:?} pad the batch")));
        }
        if begin.iter().chain(&end).all(|&v| v == 0) {
            return self.alias(node);
        }
        Ok(Value::Rt(self.push(&x, Op::Pad { begin, end, value })?))
    }
}
