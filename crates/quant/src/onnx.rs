//! Export of a quantized model to ONNX in QDQ form (opset 13): every tensor between layers is
//! a real value, and each point where slimnet holds codes is a `QuantizeLinear` ->
//! `DequantizeLinear` pair with the same scale and zero point, so onnxruntime (which fuses QDQ
//! around `Conv`/`Gemm` into its integer kernels) computes what the integer layers compute.
//!
//! - `quantize` -> `Clip` to the 7-bit code range, `QuantizeLinear` (uint8), `DequantizeLinear`;
//! - `quant_conv2d` / `quant_linear` -> `DequantizeLinear` of the int8 weight codes (per output
//!   channel, axis 0), `Conv` / `Gemm(transB=1)` with the dequantized i32 bias
//!   (`b * s_in * s_w`, exact as ONNX QLinearConv's bias), `Relu` and 2x2 `MaxPool` when fused,
//!   then the next layer's `Clip`/`QuantizeLinear`/`DequantizeLinear` when it emits codes;
//! - `maxpool2d`, `flatten`, `relu` as themselves; `dropout` and `dequantize` vanish (the
//!   values are real already).
//!
//! The `Clip` keeps uint8 codes inside `[0, 127]`: ONNX saturates uint8 at 255, the integer
//! kernel's activations at 127.

use nn::io::onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, data_type,
};
use nn::io::onnx::tensor::encode_f32;
use nn::io::onnx::{attr_int, value_info};
use nn::layers::MaxPool2d;
use nn::{Layer, Model};
use prost::Message;
use tensor_core::Shape;
use tensor_core::conv::Padding;
use tensor_core::pool::Pool2dParams;

use crate::error::{QuantError, Result};
use crate::layers::{Dequantize, IntegerCore, QuantConv2d, QuantLinear, QuantOutput, Quantize};
use crate::params::QuantParams;

const OPSET: i64 = 13;

fn attr_ints(name: &str, v: &[usize]) -> AttributeProto {
    let v: Vec<i64> = v.iter().map(|&x| x as i64).collect();
    nn::io::onnx::attr_ints(name, &v)
}

fn raw(name: &str, dims: &[usize], dtype: i32, bytes: Vec<u8>) -> TensorProto {
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: dtype,
        name: name.into(),
        raw_data: bytes,
        ..Default::default()
    }
}

struct Graph {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
}

impl Graph {
    fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: Vec<String>,
        attrs: Vec<AttributeProto>,
    ) -> String {
        let out = format!("{name}_out");
        self.nodes.push(NodeProto {
            input: inputs,
            output: vec![out.clone()],
            name: name.into(),
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        });
        out
    }

    fn f32(&mut self, name: &str, dims: &[usize], v: &[f32]) -> String {
        self.inits.push(encode_f32(name, dims, v));
        name.into()
    }

    /// `Clip` to the codes' range, `QuantizeLinear`, `DequantizeLinear` (per-tensor `p`).
    fn qdq(&mut self, x: String, p: &QuantParams, at: &str) -> String {
        let (s, z, t) = (p.scales()[0], p.zero_points()[0], p.qtype());
        let lo = self.f32(&format!("{at}.lo"), &[], &[(t.qmin() - z) as f32 * s]);
        let hi = self.f32(&format!("{at}.hi"), &[], &[(t.qmax() - z) as f32 * s]);
        let c = self.node("Clip", &format!("{at}_clip"), vec![x, lo, hi], vec![]);
        let scale = self.f32(&format!("{at}.scale"), &[], &[s]);
        let zp = format!("{at}.zero_point");
        // Activations are unsigned codes of at most 7 bits (checked by the layers).
        self.inits
            .push(raw(&zp, &[], data_type::UINT8, vec![z.clamp(0, 255) as u8]));
        let q = self.node(
            "QuantizeLinear",
            &format!("{at}_q"),
            vec![c, scale.clone(), zp.clone()],
            vec![],
        );
        self.node(
            "DequantizeLinear",
            &format!("{at}_dq"),
            vec![q, scale, zp],
            vec![],
        )
    }

    /// The dequantized weight `[out, rest...]` and bias of `core`.
    fn weight(&mut self, core: &IntegerCore, dims: &[usize], at: &str) -> (String, String) {
        let codes: Vec<u8> = core.packed().unpack().iter().map(|&c| c as u8).collect();
        let out = dims[0];
        let w = format!("{at}.weight_codes");
        self.inits.push(raw(&w, dims, data_type::INT8, codes));
        let scale = self.f32(&format!("{at}.weight_scale"), &[out], core.weight_scales());
        let zp = format!("{at}.weight_zero_point");
        self.inits
            .push(raw(&zp, &[out], data_type::INT8, vec![0u8; out]));
        let wd = self.node(
            "DequantizeLinear",
            &format!("{at}_wdq"),
            vec![w, scale, zp],
            vec![attr_int("axis", 0)],
        );
        let b = self.f32(&format!("{at}.bias"), &[out], &core.dequantized_bias());
        (wd, b)
    }

    /// ReLU, pooling and output quantization after a quantized layer's product.
    fn finish(&mut self, mut y: String, core: &IntegerCore, pool: usize, at: &str) -> String {
        if core.relu() {
            y = self.node("Relu", &format!("{at}_relu"), vec![y], vec![]);
        }
        if pool == 2 {
            y = self.node(
                "MaxPool",
                &format!("{at}_pool"),
                vec![y],
                vec![
                    attr_ints("kernel_shape", &[2, 2]),
                    attr_ints("strides", &[2, 2]),
                ],
            );
        }
        match core.output() {
            QuantOutput::Codes(p) => self.qdq(y, p, &format!("{at}_out")),
            QuantOutput::Float => y,
        }
    }

    fn layer(&mut self, l: &dyn Layer, x: String, at: &str) -> Result<String> {
        let a = l.as_any();
        if let Some(q) = a.downcast_ref::<Quantize>() {
            return Ok(self.qdq(x, q.params(), at));
        }
        if a.is::<Dequantize>() || l.kind() == "dropout" {
            return Ok(x);
        }
        if let Some(c) = a.downcast_ref::<QuantConv2d>() {
            let p = c.params();
            let dims = [
                p.out_channels,
                p.in_channels / p.groups,
                p.kernel.0,
                p.kernel.1,
            ];
            let (w, b) = self.weight(c.core(), &dims, at);
            let Padding {
                top,
                bottom,
                left,
                right,
            } = p.padding;
            let y = self.node(
                "Conv",
                &format!("{at}_conv"),
                vec![x, w, b],
                vec![
                    attr_ints("kernel_shape", &[p.kernel.0, p.kernel.1]),
                    attr_ints("strides", &[p.stride.0, p.stride.1]),
                    attr_ints("dilations", &[p.dilation.0, p.dilation.1]),
                    attr_ints("pads", &[top, left, bottom, right]),
                    attr_int("group", p.groups as i64),
                ],
            );
            return Ok(self.finish(y, c.core(), c.pool(), at));
        }
        if let Some(q) = a.downcast_ref::<QuantLinear>() {
            let (n, k) = (q.core().packed().n(), q.core().packed().k());
            let (w, b) = self.weight(q.core(), &[n, k], at);
            let y = self.node(
                "Gemm",
                &format!("{at}_gemm"),
                vec![x, w, b],
                vec![attr_int("transB", 1)],
            );
            return Ok(self.finish(y, q.core(), 1, at));
        }
        if let Some(m) = a.downcast_ref::<MaxPool2d>() {
            let Pool2dParams {
                kernel,
                stride,
                padding,
                dilation,
                ceil_mode,
            } = *m.params();
            let mut attrs = vec![
                attr_ints("kernel_shape", &[kernel.0, kernel.1]),
                attr_ints("strides", &[stride.0, stride.1]),
                attr_ints(
                    "pads",
                    &[padding.top, padding.left, padding.bottom, padding.right],
                ),
                attr_int("ceil_mode", i64::from(ceil_mode)),
            ];
            if dilation != (1, 1) {
                attrs.push(attr_ints("dilations", &[dilation.0, dilation.1]));
            }
            return Ok(self.node("MaxPool", at, vec![x], attrs));
        }
        match l.kind() {
            "flatten" => Ok(self.node("Flatten", at, vec![x], vec![attr_int("axis", 1)])),
            "relu" => Ok(self.node("Relu", at, vec![x], vec![])),
            other => Err(QuantError::InvalidArgument {
                op: "export_qdq",
                reason: format!("layer {at} is `{other}`, which the QDQ export does not take"),
            }),
        }
    }
}

/// The QDQ ONNX model of a quantized (or partly quantized) `model` (module docs).
///
/// Errors: a layer kind other than the quantized ones, max pooling, flatten, ReLU, dropout.
pub fn export_qdq(model: &Model) -> Result<ModelProto> {
    let mut g = Graph {
        nodes: Vec::new(),
        inits: Vec::new(),
    };
    let mut shape: Shape = model.batch_shape(1)?;
    let input_dims = shape.dims().to_vec();
    let mut x = "input".to_string();
    for (i, l) in model.layers.iter().enumerate() {
        x = g.layer(l.as_ref(), x, &format!("l{i}"))?;
        shape = l.output_shape(&shape)?;
    }
    g.nodes.push(NodeProto {
        input: vec![x],
        output: vec!["logits".into()],
        name: "output".into(),
        op_type: "Identity".into(),
        ..Default::default()
    });
    Ok(ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "slimnet".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: format!("slimnet quantized model {} (QDQ)", model.name),
        graph: Some(GraphProto {
            node: g.nodes,
            name: model.name.clone(),
            initializer: g.inits,
            input: vec![value_info("input", &input_dims)],
            output: vec![value_info("logits", shape.dims())],
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// [`export_qdq`] encoded as ONNX protobuf bytes.
pub fn export_qdq_bytes(model: &Model) -> Result<Vec<u8>> {
    Ok(export_qdq(model)?.encode_to_vec())
}
