//! Export of dense models to ONNX (opset 13), from the layers' records.
//!
//! Each layer becomes one node (two or three for the few that opset 13 lacks a direct form
//! of): `linear` -> `Gemm(transB=1)`, `conv2d` -> `Conv`, `maxpool2d` -> `MaxPool`,
//! `avgpool2d` -> `AveragePool`, `globalavgpool` -> `GlobalAveragePool`, `relu`/`sigmoid`/
//! `tanh`, `flatten` -> `Flatten(axis=1)`, `batchnorm2d` -> `BatchNormalization`, `dropout`
//! -> nothing (inference), and the ONNX-import layers back to their ops (`parallel` -> its
//! branches and an `Add`/`Mul`/`Concat`). The graph input is `input` `[batch, ...]` with a
//! symbolic batch, the output `logits`. Integer (quantized) models are exported as QDQ by
//! `quant::onnx`, which reuses [`attr_int`], [`attr_ints`] and [`value_info`].

use tensor_core::Shape;

use super::proto::{
    AttributeProto, Dimension, DimensionValue, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, TypeProtoTensor, ValueInfoProto,
    attribute_type, data_type,
};
use super::tensor::{encode_f32, encode_i64};
use crate::error::{NnError, Result};
use crate::layer::Layer;
use crate::layers::onnx_ops::{Merge, Parallel};
use crate::model::Model;
use crate::record::LayerRecord;

/// The opset exported models declare.
pub const EXPORT_OPSET: i64 = 13;

/// An INT attribute.
pub fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INT,
        i: v,
        ..Default::default()
    }
}

/// An INTS attribute.
pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INTS,
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::FLOAT,
        f: v,
        ..Default::default()
    }
}

/// A float tensor value `[batch, dims[1..]...]` (symbolic batch).
pub fn value_info(name: &str, dims: &[usize]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .enumerate()
        .map(|(i, &d)| Dimension {
            value: Some(if i == 0 {
                DimensionValue::DimParam("batch".into())
            } else {
                DimensionValue::DimValue(d as i64)
            }),
            denotation: String::new(),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
        doc_string: String::new(),
    }
}

/// Graph under construction.
struct Builder {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    counter: usize,
}

impl Builder {
    fn fresh(&mut self, base: &str) -> String {
        self.counter += 1;
        format!("{base}_{}", self.counter)
    }

    fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: Vec<String>,
        attrs: Vec<AttributeProto>,
    ) -> String {
        let out = self.fresh(name);
        self.nodes.push(NodeProto {
            input: inputs,
            output: vec![out.clone()],
            name: out.clone(),
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        });
        out
    }

    fn init(&mut self, name: &str, t: &tensor_core::Tensor) -> String {
        let n = self.fresh(name);
        self.inits.push(encode_f32(&n, t.dims(), t.data()));
        n
    }

    fn init_i64(&mut self, name: &str, v: &[i64]) -> String {
        let n = self.fresh(name);
        self.inits.push(encode_i64(&n, &[v.len()], v));
        n
    }

    /// Emits the nodes of `layer` reading `x` of dimensions `dims`; returns the output name.
    fn layer(&mut self, layer: &dyn Layer, x: String, dims: &Shape, at: &str) -> Result<String> {
        if let Some(p) = layer.as_any().downcast_ref::<Parallel>() {
            return self.parallel(p, x, dims, at);
        }
        let rec = layer.record()?;
        if let Some((payload, _)) = rec.payloads.first() {
            return Err(NnError::Unsupported(format!(
                "ONNX export: layer {at} ({}) stores its weights as typed payloads (`{payload}`, \
                 a compressed form) that plain ONNX cannot carry; keep the native format for \
                 it, or write its dense weights (`slimnet export --densify`)",
                rec.kind
            )));
        }
        let ints = |name: &str| -> Result<Vec<i64>> { Ok(rec.ints(name)?.to_vec()) };
        let name = format!("{at}_{}", rec.kind);
        Ok(match rec.kind.as_str() {
            "linear" => {
                let mut inputs = vec![x, self.init(&format!("{at}.weight"), rec.tensor("weight")?)];
                if let Ok(b) = rec.tensor("bias") {
                    inputs.push(self.init(&format!("{at}.bias"), b));
                }
                self.node("Gemm", &name, inputs, vec![attr_int("transB", 1)])
            }
            "conv2d" => {
                let mut inputs = vec![x, self.init(&format!("{at}.weight"), rec.tensor("weight")?)];
                if let Ok(b) = rec.tensor("bias") {
                    inputs.push(self.init(&format!("{at}.bias"), b));
                }
                let attrs = vec![
                    attr_ints("kernel_shape", &ints("kernel")?),
                    attr_ints("strides", &ints("stride")?),
                    attr_ints("pads", &ints("pads")?),
                    attr_ints("dilations", &ints("dilation")?),
                    attr_int("group", rec.int("groups")?),
                ];
                self.node("Conv", &name, inputs, attrs)
            }
            "maxpool2d" | "avgpool2d" => {
                let mut attrs = vec![
                    attr_ints("kernel_shape", &ints("kernel")?),
                    attr_ints("strides", &ints("stride")?),
                    attr_ints("pads", &ints("pads")?),
                    attr_int("ceil_mode", rec.int_or("ceil_mode", 0)?),
                ];
                let dil = ints("dilation").unwrap_or_else(|_| vec![1, 1]);
                let op = if rec.kind == "maxpool2d" {
                    attrs.push(attr_ints("dilations", &dil));
                    "MaxPool"
                } else {
                    if dil.iter().any(|&d| d != 1) {
                        return Err(NnError::Unsupported(format!(
                            "ONNX export: {at}: average pooling with dilation {dil:?} needs opset 19"
                        )));
                    }
                    attrs.push(attr_int(
                        "count_include_pad",
                        rec.int_or("count_include_pad", 0)?,
                    ));
                    "AveragePool"
                };
                self.node(op, &name, vec![x], attrs)
            }
            "globalavgpool" => self.node("GlobalAveragePool", &name, vec![x], vec![]),
            "relu" => self.node("Relu", &name, vec![x], vec![]),
            "sigmoid" => self.node("Sigmoid", &name, vec![x], vec![]),
            "tanh" => self.node("Tanh", &name, vec![x], vec![]),
            "flatten" => self.node("Flatten", &name, vec![x], vec![attr_int("axis", 1)]),
            "clip" => {
                let scalar = |v: f32| tensor_core::Tensor::new(&[], vec![v]);
                let lo = self.init(&format!("{at}.min"), &scalar(rec.float("min")?)?);
                let hi = self.init(&format!("{at}.max"), &scalar(rec.float("max")?)?);
                self.node("Clip", &name, vec![x, lo, hi], vec![])
            }
            "hard_sigmoid" => {
                let attrs = vec![
                    attr_float("alpha", rec.float("alpha")?),
                    attr_float("beta", rec.float("beta")?),
                ];
                self.node("HardSigmoid", &name, vec![x], attrs)
            }
            "hard_swish" => {
                // HardSwish is opset 14; at opset 13 it is x * HardSigmoid(x; 1/6, 1/2).
                let attrs = vec![attr_float("alpha", 1.0 / 6.0), attr_float("beta", 0.5)];
                let g = self.node(
                    "HardSigmoid",
                    &format!("{name}_gate"),
                    vec![x.clone()],
                    attrs,
                );
                self.node("Mul", &name, vec![x, g], vec![])
            }
            "dropout" => x,
            "batchnorm2d" => {
                let mut inputs = vec![x];
                for t in ["weight", "bias", "running_mean", "running_var"] {
                    inputs.push(self.init(&format!("{at}.{t}"), rec.tensor(t)?));
                }
                let eps = rec.float_or("eps", 1e-5)?;
                self.node(
                    "BatchNormalization",
                    &name,
                    inputs,
                    vec![attr_float("epsilon", eps)],
                )
            }
            "softmax" | "log_softmax" => self.softmax(&rec, x, dims, &name)?,
            "add_const" | "mul_const" => {
                let c = self.init(&format!("{at}.constant"), rec.tensor("constant")?);
                let op = if rec.kind == "add_const" {
                    "Add"
                } else {
                    "Mul"
                };
                self.node(op, &name, vec![x, c], vec![])
            }
            "reshape" => {
                let target = ints("shape")?;
                if target.contains(&0) {
                    return Err(NnError::Unsupported(format!(
                        "ONNX export: {at}: reshape to a zero-size dimension {target:?}"
                    )));
                }
                let mut shape = vec![0i64];
                shape.extend_from_slice(&target);
                let s = self.init_i64(&format!("{at}.shape"), &shape);
                self.node("Reshape", &name, vec![x, s], vec![])
            }
            "transpose" => self.node(
                "Transpose",
                &name,
                vec![x],
                vec![attr_ints("perm", &ints("perm")?)],
            ),
            "pad" => {
                let mut pads = ints("begin")?;
                pads.extend(ints("end")?);
                let p = self.init_i64(&format!("{at}.pads"), &pads);
                let v = self.init(
                    &format!("{at}.value"),
                    &tensor_core::Tensor::new(&[], vec![rec.float("value")?])?,
                );
                self.node("Pad", &name, vec![x, p, v], vec![])
            }
            other => {
                return Err(NnError::Unsupported(format!(
                    "ONNX export: layer {at} of kind `{other}` has no ONNX form (dense layers only; \
                     compressed layers need the quant/QDQ export)"
                )));
            }
        })
    }

    fn softmax(
        &mut self,
        rec: &LayerRecord,
        x: String,
        dims: &Shape,
        name: &str,
    ) -> Result<String> {
        let rank = dims.rank() as i64;
        let axis = rec.int("axis")?;
        let a = if axis < 0 { axis + rank } else { axis };
        let coerce = rec.int_or("coerce_2d", 0)? != 0;
        let op = if rec.kind == "softmax" {
            "Softmax"
        } else {
            "LogSoftmax"
        };
        if !coerce || a == rank - 1 {
            return Ok(self.node(op, name, vec![x], vec![attr_int("axis", a)]));
        }
        // Opset < 13 semantics at opset 13: flatten to 2-D at `axis`, normalize rows, restore.
        let f = self.node(
            "Flatten",
            &format!("{name}_flat"),
            vec![x],
            vec![attr_int("axis", a)],
        );
        let s = self.node(op, name, vec![f], vec![attr_int("axis", 1)]);
        let mut shape = vec![-1i64];
        shape.extend(dims.dims()[1..].iter().map(|&d| d as i64));
        let sh = self.init_i64(&format!("{name}.shape"), &shape);
        Ok(self.node("Reshape", &format!("{name}_restore"), vec![s, sh], vec![]))
    }

    fn parallel(&mut self, p: &Parallel, x: String, dims: &Shape, at: &str) -> Result<String> {
        let mut outs = Vec::with_capacity(p.branches.len());
        for (i, b) in p.branches.iter().enumerate() {
            let mut v = x.clone();
            let mut s = dims.clone();
            for (j, l) in b.iter().enumerate() {
                v = self.layer(l.as_ref(), v, &s, &format!("{at}.b{i}.{j}"))?;
                s = l.output_shape(&s)?;
            }
            outs.push(v);
        }
        let name = format!("{at}_merge");
        Ok(match p.merge {
            Merge::Concat { axis } => {
                self.node("Concat", &name, outs, vec![attr_int("axis", axis as i64)])
            }
            Merge::Add | Merge::Mul => {
                let op = if p.merge == Merge::Add { "Add" } else { "Mul" };
                let mut acc = outs[0].clone();
                for o in &outs[1..] {
                    acc = self.node(op, &name, vec![acc, o.clone()], vec![]);
                }
                acc
            }
        })
    }
}

/// The ONNX `ModelProto` of a dense model.
pub fn export_model(model: &Model) -> Result<ModelProto> {
    let mut b = Builder {
        nodes: Vec::new(),
        inits: Vec::new(),
        counter: 0,
    };
    let mut shape = model.batch_shape(1)?;
    let mut x = "input".to_string();
    for (i, l) in model.layers.iter().enumerate() {
        x = b.layer(l.as_ref(), x, &shape, &format!("l{i}"))?;
        shape = l.output_shape(&shape)?;
    }
    // The output must be a node output named `logits`.
    let out = "logits".to_string();
    b.nodes.push(NodeProto {
        input: vec![x],
        output: vec![out.clone()],
        name: "output".into(),
        op_type: "Identity".into(),
        ..Default::default()
    });
    let input_dims = model.batch_shape(1)?;
    Ok(ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: EXPORT_OPSET,
        }],
        producer_name: "slimnet".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: format!("slimnet model {}", model.name),
        graph: Some(GraphProto {
            node: b.nodes,
            name: model.name.clone(),
            initializer: b.inits,
            input: vec![value_info("input", input_dims.dims())],
            output: vec![value_info(&out, shape.dims())],
            ..Default::default()
        }),
        ..Default::default()
    })
}
