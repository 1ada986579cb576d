//! The per-operator half of the ONNX importer: one method of [`Importer`] per supported op,
//! each validating its attributes (an unknown attribute is an error naming it) and producing
//! the node's output values (folded constants or layers appended to a runtime path).
//!
//! This file holds the dispatcher; the operators live by family in `ops/`: constants and
//! casts, shape computations, layout (reshape, transpose), elementwise arithmetic and
//! activations, linear, convolution and batch normalization, pooling, and pad.

mod constant;
mod conv;
mod elementwise;
mod linear;
mod nobatch;
mod pad;
mod pool;
mod reshape;
mod shape;
mod window;

use super::import::{Attrs, Importer, Value, ints_of, unsupported};
use super::proto::{NodeProto, data_type};
use super::spec::Op;
use crate::error::{NnError, Result};
use crate::layers::onnx_ops::HardKind;

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
        if let Some(v) = self.nobatch_node(node, &a)? {
            return self.set(node, v);
        }
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
                vec![self.constant_of_shape(node, &a)?]
            }
            "Shape" => {
                a.only(&["start", "end"])?;
                vec![self.shape(node, &a)?]
            }
            "Gather" => {
                a.only(&["axis"])?;
                vec![self.gather(node, &a)?]
            }
            "Unsqueeze" | "Squeeze" => {
                a.only(&["axes"])?;
                let axes = self.squeeze_axes(node, &a)?;
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
                let target = self.reshape_target(node, &a)?;
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
                vec![self.expand(node)?]
            }
            "Slice" => {
                a.only(&["starts", "ends", "axes"])?;
                vec![self.slice(node, &a)?]
            }
            "Transpose" => {
                a.only(&["perm"])?;
                vec![self.transpose(node, &a)?]
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
                vec![self.matmul(node)?]
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
                vec![self.activation(node, op)?]
            }
            "Clip" => {
                a.only(&["min", "max"])?;
                vec![self.clip(node, &a)?]
            }
            "HardSigmoid" => {
                a.only(&["alpha", "beta"])?;
                let k = HardKind::HardSigmoid {
                    alpha: a.f("alpha", 0.2)?,
                    beta: a.f("beta", 0.5)?,
                };
                vec![self.hard(node, k)?]
            }
            "HardSwish" => {
                a.only(&[])?;
                vec![self.hard(node, HardKind::HardSwish)?]
            }
            "Sum" => {
                a.only(&["consumed_inputs"])?;
                vec![self.sum(node)?]
            }
            "Flatten" => {
                a.only(&["axis"])?;
                vec![self.flatten(node, a.i("axis", 1)?)?]
            }
            "Softmax" | "LogSoftmax" => {
                a.only(&["axis"])?;
                vec![self.softmax(node, &a, op)?]
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
}
