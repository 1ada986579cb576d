//! ONNX graph -> sequential [`Model`]: validation, constant folding, pattern folding and the
//! fork/join analysis that turns a DAG into [`Parallel`](crate::layers::onnx_ops::Parallel)
//! blocks.
//!
//! The walk visits nodes in file order (the spec requires topological order; a node using a
//! value defined later is an error). Every value is a folded constant, or a *runtime* value:
//! a path of future layers from the graph input, held as a persistent linked list so that a
//! fork costs nothing. A node whose inputs are two runtime values (Add, Mul, Sub, Concat)
//! closes a fork: the deepest layer both paths share is the fork point, the two path
//! segments below it become the branches of one `Parallel` layer, and the join continues
//! from the fork point. A layer claimed by two joins, or by a join and the output path,
//! means the graph is not a nest of fork/joins, which is reported naming the node.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use prost::Message;
use prost::bytes::Bytes;
use tensor_core::{Shape, Tensor};

use super::fold::{Ct, Dim};
use super::proto::{
    AttributeProto, DimensionValue, GraphProto, ModelProto, NodeProto, TensorProto, attribute_type,
    data_type,
};
use super::spec::Op;
use super::tensor::{Const, Data, decode_with_raw};
use super::wire::split_field;
use crate::error::{NnError, Result};
use crate::layers::onnx_ops::Merge;
use crate::model::Model;

/// Oldest and newest default-domain opsets accepted.
pub const OPSETS: std::ops::RangeInclusive<i64> = 1..=23;

/// A node of a runtime value's path: one future layer.
#[derive(Debug)]
pub(super) struct PathNode {
    /// Index into the arena of ops.
    pub(super) idx: usize,
    /// Number of layers from the graph input.
    pub(super) depth: usize,
    /// The previous layer (None: the graph input).
    pub(super) parent: Option<Rc<PathNode>>,
    /// Output dimensions (batch = 1).
    pub(super) dims: Vec<usize>,
}

/// A value computed from the graph input.
#[derive(Clone, Debug)]
pub(super) struct Rt {
    pub(super) path: Option<Rc<PathNode>>,
    /// Dimensions with batch = 1.
    pub(super) dims: Vec<usize>,
    /// Produced directly by the layer at the tip of `path` (not through an alias), so that
    /// layer may absorb a following op when this value has a single consumer.
    pub(super) fresh: bool,
}

/// A value of the graph during import.
#[derive(Clone, Debug)]
pub(super) enum Value {
    /// A float constant.
    F(Ct<f32>),
    /// An integer constant, possibly holding the symbolic batch size.
    I(Ct<Dim>),
    /// A runtime value.
    Rt(Rt),
}

pub(super) fn unsupported(msg: impl Into<String>) -> NnError {
    NnError::Unsupported(msg.into())
}

/// Attribute access for one node, with type checks.
pub(super) struct Attrs<'a> {
    pub(super) node: &'a NodeProto,
}

impl<'a> Attrs<'a> {
    pub(super) fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    /// Rejects any attribute not in `known`, naming it.
    pub(super) fn only(&self, known: &[&str]) -> Result<()> {
        for a in &self.node.attribute {
            if !known.contains(&a.name.as_str()) {
                return Err(unsupported(format!(
                    "attribute '{}' is not supported (supported: {known:?})",
                    a.name
                )));
            }
            if !a.ref_attr_name.is_empty() {
                return Err(unsupported(format!(
                    "attribute '{}' refers to a function attribute",
                    a.name
                )));
            }
        }
        Ok(())
    }

    pub(super) fn check_type(a: &AttributeProto, want: i32) -> Result<()> {
        // IR version 1 files leave `type` unset (0).
        if a.r#type != want && a.r#type != 0 {
            return Err(unsupported(format!(
                "attribute '{}' has type {} where {} is expected",
                a.name, a.r#type, want
            )));
        }
        Ok(())
    }

    pub(super) fn i(&self, name: &str, default: i64) -> Result<i64> {
        match self.get(name) {
            None => Ok(default),
            Some(a) => {
                Self::check_type(a, attribute_type::INT)?;
                Ok(a.i)
            }
        }
    }

    pub(super) fn f(&self, name: &str, default: f32) -> Result<f32> {
        match self.get(name) {
            None => Ok(default),
            Some(a) => {
                Self::check_type(a, attribute_type::FLOAT)?;
                Ok(a.f)
            }
        }
    }

    pub(super) fn ints(&self, name: &str) -> Result<Option<Vec<i64>>> {
        match self.get(name) {
            None => Ok(None),
            Some(a) => {
                Self::check_type(a, attribute_type::INTS)?;
                Ok(Some(a.ints.clone()))
            }
        }
    }

    pub(super) fn s(&self, name: &str) -> Result<Option<String>> {
        match self.get(name) {
            None => Ok(None),
            Some(a) => {
                Self::check_type(a, attribute_type::STRING)?;
                Ok(Some(String::from_utf8_lossy(&a.s).into_owned()))
            }
        }
    }

    pub(super) fn t(&self, name: &str) -> Result<Option<&'a TensorProto>> {
        match self.get(name) {
            None => Ok(None),
            Some(a) => {
                Self::check_type(a, attribute_type::TENSOR)?;
                Ok(a.t.as_ref())
            }
        }
    }
}

/// Converts non-negative attribute values to sizes, naming the attribute.
pub(super) fn sizes(v: &[i64], what: &str, min: usize) -> Result<Vec<usize>> {
    v.iter()
        .map(|&x| {
            usize::try_from(x)
                .ok()
                .filter(|&u| u >= min && u <= 1 << 20)
                .ok_or_else(|| {
                    unsupported(format!("attribute {what}={v:?}: value {x} out of range"))
                })
        })
        .collect()
}

/// A 2-D window attribute pair ([h, w]) with a default.
pub(super) fn pair(v: Option<Vec<i64>>, what: &str, default: usize) -> Result<[usize; 2]> {
    match v {
        None => Ok([default, default]),
        Some(v) => {
            let s = sizes(&v, what, 1)?;
            if s.len() != 2 {
                return Err(unsupported(format!(
                    "attribute {what}={v:?}: only 2-D windows are supported"
                )));
            }
            Ok([s[0], s[1]])
        }
    }
}

pub(super) fn const_to_value(c: Const) -> Result<Value> {
    Ok(match c.data {
        Data::F32(v) => Value::F(Ct::new(c.dims, v)?),
        Data::I64(v) => Value::I(Ct::new(c.dims, v.into_iter().map(Dim::K).collect())?),
    })
}

/// The constant as a tensor, without copying its values.
pub(super) fn into_tensor(c: Ct<f32>) -> Result<Tensor> {
    Ok(Tensor::new(&c.dims, c.v)?)
}

/// The importer's state.
pub(super) struct Importer {
    pub(super) source: String,
    pub(super) opset: i64,
    pub(super) values: HashMap<String, Value>,
    pub(super) arena: Vec<Option<Op>>,
    pub(super) uses: HashMap<String, usize>,
    /// The graph input's batch dimension when the file fixes it (`Some(1)` for models
    /// exported without dynamic axes), so that a literal batch in a reshape target is
    /// recognized.
    pub(super) fixed_batch: Option<usize>,
    /// The graph input's dimensions with batch = 1.
    pub(super) input_dims: Vec<usize>,
    /// Runtime concatenations seen so far: (input names, axis) -> output name.
    pub(super) concats: HashMap<(Vec<String>, usize), String>,
    /// The graph input's name.
    pub(super) input_name: String,
    /// The graph input's whole shape when every dimension is fixed (batch included).
    pub(super) input_full_dims: Option<Vec<usize>>,
    /// The graph input has no batch dimension: slimnet added it (see `ops/nobatch.rs`).
    pub(super) nobatch: bool,
    /// Values the graph computes without the batch axis (when `nobatch`).
    pub(super) unbatched: HashSet<String>,
}

impl Importer {
    pub(super) fn value(&self, node: &NodeProto, i: usize) -> Result<Option<&Value>> {
        match node.input.get(i) {
            None => Ok(None),
            Some(n) if n.is_empty() => Ok(None),
            Some(n) => self.values.get(n).map(Some).ok_or_else(|| {
                NnError::corrupt(
                    &self.source,
                    "graph",
                    format!(
                        "input '{n}' is defined by no earlier node, initializer or graph input \
                         (nodes must be in topological order)"
                    ),
                )
            }),
        }
    }

    pub(super) fn req(&self, node: &NodeProto, i: usize) -> Result<Value> {
        self.value(node, i)?
            .cloned()
            .ok_or_else(|| unsupported(format!("missing input {i}")))
    }

    pub(super) fn rt(&self, node: &NodeProto, i: usize) -> Result<Rt> {
        match self.req(node, i)? {
            Value::Rt(r) => Ok(r),
            _ => Err(unsupported(format!(
                "input {i} ('{}') must be computed from the graph input, found a constant",
                node.input[i]
            ))),
        }
    }

    pub(super) fn const_f(&self, node: &NodeProto, i: usize) -> Result<Ct<f32>> {
        match self.req(node, i)? {
            Value::F(c) => Ok(c),
            Value::I(c) => Ok(Ct::new(
                c.dims.clone(),
                ints_of(&c)?.iter().map(|&x| x as f32).collect(),
            )?),
            Value::Rt(_) => Err(unsupported(format!(
                "input {i} ('{}') must be a constant (initializer), found a computed value",
                node.input[i]
            ))),
        }
    }

    /// Input `i` as an f32 constant like [`Self::const_f`], but moved out of the graph's
    /// values when this node is its only consumer (a layer's weight), so that importing a
    /// weight does not copy it.
    pub(super) fn take_f(&mut self, node: &NodeProto, i: usize) -> Result<Ct<f32>> {
        if let Some(name) = node.input.get(i)
            && self.uses(name) == 1
            && matches!(self.values.get(name), Some(Value::F(_)))
            && let Some(Value::F(c)) = self.values.remove(name)
        {
            return Ok(c);
        }
        self.const_f(node, i)
    }

    pub(super) fn const_i(&self, node: &NodeProto, i: usize) -> Result<Vec<i64>> {
        match self.req(node, i)? {
            Value::I(c) => ints_of(&c),
            Value::F(c) => {
                c.v.iter()
                    .map(|&x| {
                        if x.fract() == 0.0 && x.abs() < 9e15 {
                            Ok(x as i64)
                        } else {
                            Err(unsupported(format!(
                                "input {i}: expected integers, found {x}"
                            )))
                        }
                    })
                    .collect()
            }
            Value::Rt(_) => Err(unsupported(format!(
                "input {i} ('{}') must be a constant, found a computed value",
                node.input[i]
            ))),
        }
    }

    /// The inputs of a variadic node (`Sum`, `Concat`; at least one): `Ok` with the runtime
    /// values when every input is computed, else `Err` with all the values.
    pub(super) fn variadic(
        &self,
        node: &NodeProto,
    ) -> Result<std::result::Result<Vec<Rt>, Vec<Value>>> {
        let vals: Vec<Value> = (0..node.input.len())
            .map(|i| self.req(node, i))
            .collect::<Result<_>>()?;
        if vals.is_empty() {
            return Err(unsupported("no inputs"));
        }
        if !vals.iter().all(|v| matches!(v, Value::Rt(_))) {
            return Ok(Err(vals));
        }
        Ok(Ok(vals
            .into_iter()
            .filter_map(|v| if let Value::Rt(r) = v { Some(r) } else { None })
            .collect()))
    }

    pub(super) fn uses(&self, name: &str) -> usize {
        self.uses.get(name).copied().unwrap_or(0)
    }

    /// Appends `op` after `rt`.
    pub(super) fn push(&mut self, rt: &Rt, op: Op) -> Result<Rt> {
        let dims = op.out_dims(&rt.dims)?;
        Shape::new(&dims)?;
        let idx = self.arena.len();
        self.arena.push(Some(op));
        let depth = rt.path.as_ref().map_or(0, |p| p.depth) + 1;
        Ok(Rt {
            path: Some(Rc::new(PathNode {
                idx,
                depth,
                parent: rt.path.clone(),
                dims: dims.clone(),
            })),
            dims,
            fresh: true,
        })
    }

    /// The layer producing `rt`, if it may absorb the consumer of input `name` (the value is
    /// produced directly by it and has no other consumer).
    pub(super) fn tip(&mut self, rt: &Rt, name: &str) -> Option<&mut Op> {
        if !rt.fresh || self.uses(name) != 1 {
            return None;
        }
        let idx = rt.path.as_ref()?.idx;
        self.arena.get_mut(idx)?.as_mut()
    }

    /// Joins runtime values at their deepest common layer into one `Parallel` layer.
    pub(super) fn join(
        &mut self,
        vals: Vec<Rt>,
        merge: Merge,
        extra: Vec<Option<Op>>,
    ) -> Result<Rt> {
        // Deepest common ancestor of all paths.
        let depth = |p: &Option<Rc<PathNode>>| p.as_ref().map_or(0, |n| n.depth);
        let mut lca = vals[0].path.clone();
        for v in &vals[1..] {
            let mut a = lca.clone();
            let mut b = v.path.clone();
            while depth(&a) > depth(&b) {
                a = a.and_then(|n| n.parent.clone());
            }
            while depth(&b) > depth(&a) {
                b = b.and_then(|n| n.parent.clone());
            }
            while a.as_ref().map(|n| n.idx) != b.as_ref().map(|n| n.idx) {
                a = a.and_then(|n| n.parent.clone());
                b = b.and_then(|n| n.parent.clone());
            }
            lca = a;
        }
        let base_depth = depth(&lca);
        let mut branches = Vec::with_capacity(vals.len());
        for (v, x) in vals.iter().zip(extra) {
            let mut idxs = Vec::new();
            let mut p = v.path.clone();
            while depth(&p) > base_depth {
                // depth > base_depth >= 0, so p is Some.
                let Some(n) = p else { break };
                idxs.push(n.idx);
                p = n.parent.clone();
            }
            idxs.reverse();
            let mut ops = Vec::with_capacity(idxs.len() + 1);
            for i in idxs {
                let op = self.arena[i].take().ok_or_else(|| {
                    unsupported(
                        "a layer of this branch already belongs to another fork/join block: \
                         the graph is not a nest of simple fork/joins (a sequential model \
                         with Parallel blocks cannot hold it)",
                    )
                })?;
                ops.push(op);
            }
            ops.extend(x);
            branches.push(ops);
        }
        let base = Rt {
            dims: lca
                .as_ref()
                .map_or_else(|| self.input_dims.clone(), |n| n.dims.clone()),
            path: lca,
            fresh: false,
        };
        self.push(&base, Op::Parallel { branches, merge })
    }
}

pub(super) fn ints_of(c: &Ct<Dim>) -> Result<Vec<i64>> {
    c.v.iter()
        .map(|d| match d {
            Dim::K(k) => Ok(*k),
            Dim::Batch => Err(unsupported(
                "the batch size is used where a constant is needed",
            )),
        })
        .collect()
}

/// Display name of a node for error messages.
fn node_label(i: usize, node: &NodeProto) -> String {
    if node.name.is_empty() {
        format!(
            "#{i} (output '{}')",
            node.output.first().map_or("", |s| s.as_str())
        )
    } else {
        format!("'{}'", node.name)
    }
}

/// Prefixes an error with the node and op it came from.
fn annotate(i: usize, node: &NodeProto, e: NnError) -> NnError {
    let at = format!("node {} (op {})", node_label(i, node), node.op_type);
    match e {
        NnError::Unsupported(m) => NnError::Unsupported(format!("{at}: {m}")),
        NnError::Config(m) => NnError::Unsupported(format!("{at}: {m}")),
        NnError::Tensor(t) => NnError::Unsupported(format!("{at}: {t}")),
        NnError::Corrupt { path, what, reason } => NnError::Corrupt {
            path,
            what: format!("{at} {what}"),
            reason,
        },
        other => other,
    }
}

/// Parses and converts an ONNX model held in `bytes`; `source` names it in errors and
/// becomes the model's name. The bytes are copied once into a shared buffer; a caller that
/// owns them passes them to [`import_shared`] instead.
pub fn import_bytes(bytes: &[u8], source: &str) -> Result<Model> {
    import_shared(Bytes::copy_from_slice(bytes), source)
}

/// [`import_bytes`] over a buffer the importer may keep views into: the initializers'
/// `raw_data` are read in place (see [`super::wire`]) and the buffer is released as soon as
/// the last initializer is decoded, before the layers are built. At most one copy of the
/// weights exists beside the file: their f32 values.
pub fn import_shared(file: Bytes, source: &str) -> Result<Model> {
    let proto_err =
        |e: prost::DecodeError| NnError::corrupt(source, "ONNX protobuf", e.to_string());
    let top = split_field(&file, 7, source, "ModelProto")?;
    drop(file);
    let model = ModelProto::decode(top.rest.as_slice()).map_err(proto_err)?;
    if top.taken.is_empty() {
        return Err(NnError::corrupt(source, "ModelProto", "no graph"));
    }
    let graph_bytes = top.merged();
    drop(top);
    let parts = split_field(&graph_bytes, 5, source, "GraphProto")?;
    drop(graph_bytes);
    let mut graph = GraphProto::decode(parts.rest.as_slice()).map_err(proto_err)?;
    let mut initializers = Vec::with_capacity(parts.taken.len());
    // Each initializer's header is decoded without its raw_data, which is read from the
    // file's buffer; the view is dropped as soon as its values are taken.
    for bytes in parts.taken {
        let t = split_field(&bytes, 9, source, "TensorProto")?;
        let head = TensorProto::decode(t.rest.as_slice()).map_err(proto_err)?;
        let raw = t.taken.last().cloned().unwrap_or_default();
        initializers.push((head, raw));
    }
    graph.initializer.clear();
    let opset = model
        .opset_import
        .iter()
        .filter(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .max()
        .ok_or_else(|| NnError::corrupt(source, "ModelProto", "no default-domain opset_import"))?;
    if !OPSETS.contains(&opset) {
        return Err(NnError::Unsupported(format!(
            "{source}: opset {opset} (supported: {} to {})",
            OPSETS.start(),
            OPSETS.end()
        )));
    }
    if !graph.sparse_initializer.is_empty() {
        return Err(NnError::Unsupported(format!(
            "{source}: sparse initializers"
        )));
    }
    let mut values = HashMap::new();
    for (t, raw) in initializers {
        let c = decode_with_raw(&t, &raw, source, &format!("initializer '{}'", t.name))?;
        // The last view of the file is dropped with the last initializer's raw bytes.
        drop(raw);
        values.insert(t.name, const_to_value(c)?);
    }
    // The one runtime input: graph inputs that are not initializers (IR < 4 lists both).
    let inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|i| !values.contains_key(&i.name))
        .collect();
    if inputs.len() != 1 {
        return Err(NnError::Unsupported(format!(
            "{source}: the graph has {} runtime inputs {:?}; slimnet models take one",
            inputs.len(),
            inputs.iter().map(|i| &i.name).collect::<Vec<_>>()
        )));
    }
    let input = inputs[0];
    let tt = input
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .ok_or_else(|| {
            NnError::Unsupported(format!("{source}: input '{}' is not a tensor", input.name))
        })?;
    if tt.elem_type != data_type::FLOAT {
        return Err(NnError::Unsupported(format!(
            "{source}: input '{}' has element type {} (want FLOAT)",
            input.name,
            data_type::name(tt.elem_type)
        )));
    }
    let shape = tt.shape.as_ref().ok_or_else(|| {
        NnError::Unsupported(format!(
            "{source}: input '{}' has no declared shape",
            input.name
        ))
    })?;
    if shape.dim.is_empty() || shape.dim.len() > 8 {
        return Err(NnError::Unsupported(format!(
            "{source}: input '{}' has rank {} (want a batch dimension and 1 to 7 more, or \
             1 to 7 dimensions of one unbatched sample)",
            input.name,
            shape.dim.len()
        )));
    }
    let fixed_batch = match &shape.dim[0].value {
        Some(DimensionValue::DimValue(v)) if *v > 0 && *v <= 1 << 24 => Some(*v as usize),
        _ => None,
    };
    // A rank-1 input is one unbatched sample (an MLP exported on `[784]`): its only
    // dimension is per sample.
    let rank1 = shape.dim.len() == 1;
    let mut input_dims = vec![1usize];
    for (k, d) in shape.dim.iter().enumerate().skip(usize::from(!rank1)) {
        match &d.value {
            Some(DimensionValue::DimValue(v)) if *v > 0 && *v <= 1 << 24 => {
                input_dims.push(*v as usize)
            }
            other => {
                let what = match other {
                    Some(DimensionValue::DimValue(v)) if *v > 0 => {
                        format!("{v}, above the limit of {}", 1 << 24)
                    }
                    Some(DimensionValue::DimValue(v)) => format!("{v}, not positive"),
                    Some(DimensionValue::DimParam(p)) => format!("the symbol {p:?}"),
                    None => "not given".to_string(),
                };
                return Err(NnError::Unsupported(format!(
                    "{source}: input '{}' dimension {k} is {what}; slimnet models need a fixed \
                     per-sample shape",
                    input.name
                )));
            }
        }
    }
    Shape::new(&input_dims)
        .map_err(|e| NnError::corrupt(source, "graph input shape", e.to_string()))?;
    values.insert(
        input.name.clone(),
        Value::Rt(Rt {
            path: None,
            dims: input_dims.clone(),
            fresh: false,
        }),
    );
    let mut uses: HashMap<String, usize> = HashMap::new();
    for n in &graph.node {
        for i in n.input.iter().filter(|s| !s.is_empty()) {
            *uses.entry(i.clone()).or_default() += 1;
        }
    }
    for o in &graph.output {
        *uses.entry(o.name.clone()).or_default() += 1;
    }
    let mut imp = Importer {
        source: source.to_string(),
        opset,
        values,
        arena: Vec::new(),
        uses,
        fixed_batch,
        input_dims: input_dims.clone(),
        concats: HashMap::new(),
        input_name: input.name.clone(),
        input_full_dims: fixed_batch.filter(|_| !rank1).map(|b| {
            let mut d = input_dims.clone();
            d[0] = b;
            d
        }),
        nobatch: false,
        unbatched: HashSet::new(),
    };
    if rank1 {
        imp.adopt_unbatched_input(&input_dims[1..])?;
    }
    for (i, node) in graph.node.iter().enumerate() {
        imp.node(node).map_err(|e| annotate(i, node, e))?;
    }
    if graph.output.len() != 1 {
        return Err(NnError::Unsupported(format!(
            "{source}: the graph has {} outputs; slimnet models have one",
            graph.output.len()
        )));
    }
    let out_name = &graph.output[0].name;
    let out = match imp.values.get(out_name) {
        Some(Value::Rt(r)) => r.clone(),
        Some(_) => {
            return Err(NnError::Unsupported(format!(
                "{source}: output '{out_name}' does not depend on the input"
            )));
        }
        None => {
            return Err(NnError::corrupt(
                source,
                "graph",
                format!("output '{out_name}' is never computed"),
            ));
        }
    };
    let mut idxs = Vec::new();
    let mut p = out.path.clone();
    while let Some(n) = p {
        idxs.push(n.idx);
        p = n.parent.clone();
    }
    idxs.reverse();
    let mut ops = Vec::with_capacity(idxs.len());
    for i in idxs {
        ops.push(imp.arena[i].take().ok_or_else(|| {
            NnError::Unsupported(format!(
                "{source}: the path to output '{out_name}' shares a layer with a fork/join block: \
                 the graph is not a nest of simple fork/joins"
            ))
        })?);
    }
    let layers = ops
        .into_iter()
        .map(super::build::layer)
        .collect::<Result<Vec<_>>>()?;
    let name = std::path::Path::new(source)
        .file_stem()
        .map_or_else(|| source.to_string(), |s| s.to_string_lossy().into_owned());
    let model = Model::new(name, &imp.input_dims[1..], layers);
    // The built layers must agree with the importer's shape inference.
    let mut shape = model.batch_shape(1)?;
    for l in &model.layers {
        shape = l.output_shape(&shape)?;
    }
    if shape.dims() != out.dims.as_slice() {
        return Err(NnError::Unsupported(format!(
            "{source}: the built model outputs {shape} where the graph gives {:?}",
            out.dims
        )));
    }
    Ok(model)
}
