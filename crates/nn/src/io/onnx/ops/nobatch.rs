//! Graphs whose input has no batch dimension: a module exported on one unbatched sample
//! (`torch.onnx.export(m, torch.rand(3, 224, 224))`, or an MLP on `[784]`).
//!
//! slimnet models always take a batch, so the batch dimension is added at import: the model's
//! per-sample input shape is the graph input's whole shape, and a batch of N samples runs the
//! graph once per sample in effect. The importer keeps its usual representation (a runtime
//! value's dimensions with batch 1 first) and remembers which values the graph computes
//! without the batch axis (`Importer::unbatched`). On those, the forms PyTorch writes are
//! translated: `Unsqueeze(0)` (adding the axis a convolution needs) becomes the batch,
//! `Squeeze(0)` of a batched value drops it again, `Shape` gives the per-sample shape,
//! `Reshape` is per sample, and elementwise ops, activations and `MatMul` by a constant
//! (a linear layer on a 1-D value) work as they are. Any other op on an unbatched value is
//! an error naming it.
//!
//! The graph input is unbatched when it has rank 1, or when its shape is fixed and its only
//! consumer is an `Unsqueeze` inserting axis 0.

use super::super::fold::{Ct, Dim};
use super::super::import::{Attrs, Importer, Value, unsupported};
use super::super::proto::NodeProto;
use super::reshape::per_sample_target;
use crate::error::Result;

/// Ops that act on an unbatched value exactly as on a batched one: elementwise, activations,
/// and a 1-D value times a constant matrix.
const PASS_THROUGH: &[&str] = &[
    "Identity",
    "Dropout",
    "Relu",
    "Sigmoid",
    "Tanh",
    "Clip",
    "HardSigmoid",
    "HardSwish",
    "LeakyRelu",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Sum",
    "MatMul",
];

impl Importer {
    /// The `axes` of a `Squeeze`/`Unsqueeze` node (attribute before opset 13, input after).
    pub(super) fn squeeze_axes(&self, node: &NodeProto, a: &Attrs<'_>) -> Result<Option<Vec<i64>>> {
        if self.opset < 13 {
            a.ints("axes")
        } else {
            match self.value(node, 1)? {
                None => Ok(None),
                Some(_) => Ok(Some(self.const_i(node, 1)?)),
            }
        }
    }

    /// Whether input 0 of `node` is the graph input read for the first and only time by an
    /// `Unsqueeze` of axis 0, with a fixed shape: the graph input then has no batch axis.
    fn unsqueezes_the_input(&self, node: &NodeProto, a: &Attrs<'_>) -> Result<bool> {
        let Some(name) = node.input.first() else {
            return Ok(false);
        };
        Ok(node.op_type == "Unsqueeze"
            && self.input_full_dims.is_some()
            && *name == self.input_name
            && self.uses(name) == 1
            && self.squeeze_axes(node, a)?.as_deref() == Some(&[0]))
    }

    /// Handles `node` when the graph input has no batch axis and the node reads or produces an
    /// unbatched value. `Ok(None)`: the node is processed as usual.
    pub(super) fn nobatch_node(
        &mut self,
        node: &NodeProto,
        a: &Attrs<'_>,
    ) -> Result<Option<Vec<Value>>> {
        if !self.nobatch && self.unsqueezes_the_input(node, a)? {
            // Reinterpret the input: all its dimensions are per sample; the new axis 0 is
            // the batch.
            let full = self.input_full_dims.clone().unwrap_or_default();
            self.adopt_unbatched_input(&full)?;
            let mut r = self.rt(node, 0)?;
            r.fresh = false;
            self.unbatched.remove(&self.input_name.clone());
            return Ok(Some(vec![Value::Rt(r)]));
        }
        if !self.nobatch {
            return Ok(None);
        }
        let op = node.op_type.as_str();
        let reads_unbatched = node.input.iter().any(|i| self.unbatched.contains(i));
        if !reads_unbatched {
            // Squeeze(0) of a batched value: the graph drops the axis the input never had.
            if op == "Squeeze"
                && let Some(Value::Rt(r)) = self.value(node, 0)?
                && self.squeeze_axes(node, a)?.as_deref() == Some(&[0])
            {
                let mut r = r.clone();
                r.fresh = false;
                self.mark_unbatched(node);
                return Ok(Some(vec![Value::Rt(r)]));
            }
            return Ok(None);
        }
        let r = match self.value(node, 0)? {
            Some(Value::Rt(r)) => Some(r.clone()),
            _ => None,
        };
        match (op, r) {
            ("Unsqueeze", Some(mut r)) if self.squeeze_axes(node, a)?.as_deref() == Some(&[0]) => {
                r.fresh = false;
                Ok(Some(vec![Value::Rt(r)]))
            }
            ("Shape", Some(r)) => {
                a.only(&["start", "end"])?;
                let dims: Vec<Dim> = r.dims[1..].iter().map(|&d| Dim::K(d as i64)).collect();
                let n = dims.len() as i64;
                let clampi = |x: i64| (if x < 0 { x + n } else { x }).clamp(0, n) as usize;
                let s = clampi(a.i("start", 0)?);
                let e = clampi(a.i("end", n)?).max(s);
                let d = dims[s..e].to_vec();
                Ok(Some(vec![Value::I(Ct::new(vec![d.len()], d)?)]))
            }
            ("Reshape", Some(r)) => {
                a.only(&["shape", "allowzero"])?;
                let target = self.reshape_target(node, a)?;
                let allowzero = a.i("allowzero", 0)? != 0;
                let dims = per_sample_target(&target, &target, &r.dims, allowzero, true)?;
                let v = self.per_sample_reshape(&r, dims)?;
                self.mark_unbatched(node);
                Ok(Some(vec![v]))
            }
            _ if PASS_THROUGH.contains(&op) => {
                // Processed as usual; the outputs stay unbatched.
                self.mark_unbatched(node);
                Ok(None)
            }
            _ => Err(unsupported(format!(
                "{op} of a value without a batch dimension (the graph input '{}' has none): \
                 slimnet adds the batch dimension at import and supports Unsqueeze(0), \
                 Squeeze(0), Shape, Reshape, elementwise ops, activations and MatMul on such \
                 values; export the model on a batched example input (x.unsqueeze(0)) with a \
                 dynamic batch axis",
                self.input_name
            ))),
        }
    }

    /// Treats the graph input as one unbatched sample of shape `full`.
    pub(crate) fn adopt_unbatched_input(&mut self, full: &[usize]) -> Result<()> {
        let mut dims = vec![1];
        dims.extend_from_slice(full);
        tensor_core::Shape::new(&dims)?;
        self.input_dims = dims.clone();
        self.nobatch = true;
        self.fixed_batch = None;
        let name = self.input_name.clone();
        if let Some(Value::Rt(r)) = self.values.get_mut(&name) {
            r.dims = dims;
        }
        self.unbatched.insert(name);
        Ok(())
    }

    fn mark_unbatched(&mut self, node: &NodeProto) {
        for o in node.output.iter().filter(|o| !o.is_empty()) {
            self.unbatched.insert(o.clone());
        }
    }
}
