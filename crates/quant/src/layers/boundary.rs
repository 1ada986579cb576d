//! The edges of a quantized region: `quantize` turns real values into codes (ONNX
//! QuantizeLinear), `dequantize` turns codes back (ONNX DequantizeLinear).

use std::any::Any;

use nn::{Layer, LayerRecord, Mode, NnError};
use tensor_core::{Shape, Tensor};

use crate::affine::{dequantize_value, quantize_value};
use crate::params::QuantParams;
use crate::qtype::QuantType;

/// Per-tensor parameters from a record's `scale`, `zero_point`, `bits`, `signed`.
fn read_params(rec: &LayerRecord) -> nn::Result<QuantParams> {
    let bits = rec.usize_in("bits", 2, 8)? as u32;
    let signed = rec.usize_in("signed", 0, 1)? == 1;
    let t = QuantType::new(bits, signed).map_err(|e| rec.corrupt("bits", e.to_string()))?;
    let zp = rec.int("zero_point")?;
    let zp = i32::try_from(zp).map_err(|_| rec.corrupt("zero_point", format!("{zp}")))?;
    QuantParams::new(t, vec![rec.float("scale")?], vec![zp], None)
        .map_err(|e| rec.corrupt("quantization", e.to_string()))
}

fn write_params(kind: &str, p: &QuantParams) -> LayerRecord {
    LayerRecord::new(kind)
        .with_float("scale", p.scales()[0])
        .with_int("zero_point", i64::from(p.zero_points()[0]))
        .with_int("bits", i64::from(p.qtype().bits()))
        .with_int("signed", i64::from(p.qtype().signed()))
}

macro_rules! boundary_layer {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $f:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name {
            params: QuantParams,
        }

        impl $name {
            /// The layer for per-tensor `params`.
            pub fn new(params: QuantParams) -> crate::Result<Self> {
                if params.axis().is_some() {
                    return Err(crate::QuantError::InvalidArgument {
                        op: concat!($kind, "::new"),
                        reason: "per-tensor parameters only".into(),
                    });
                }
                Ok(Self { params })
            }

            /// The parameters.
            pub fn params(&self) -> &QuantParams {
                &self.params
            }

            /// Rebuilds the layer from its record.
            pub fn from_record(rec: &LayerRecord) -> nn::Result<Self> {
                rec.expect_kind($kind)?;
                Ok(Self { params: read_params(rec)? })
            }
        }

        impl Layer for $name {
            fn kind(&self) -> &'static str {
                $kind
            }

            fn output_shape(&self, input: &Shape) -> nn::Result<Shape> {
                Ok(input.clone())
            }

            fn forward(&mut self, input: &Tensor, _mode: Mode) -> nn::Result<Tensor> {
                let (s, z, t) = (
                    self.params.scales()[0],
                    self.params.zero_points()[0],
                    self.params.qtype(),
                );
                let f = $f;
                let y = input.data().iter().map(|&x| f(x, s, z, t)).collect();
                Ok(Tensor::new(input.dims(), y)?)
            }

            fn backward(&mut self, _grad_output: &Tensor) -> nn::Result<Tensor> {
                Err(NnError::Unsupported(concat!($kind, " backward: inference only").into()))
            }

            fn param_count(&self) -> usize {
                0
            }

            fn stored_bytes(&self) -> usize {
                8
            }

            fn macs(&self, _input: &Shape) -> nn::Result<u64> {
                Ok(0)
            }

            fn record(&self) -> nn::Result<LayerRecord> {
                Ok(write_params($kind, &self.params))
            }

            fn forward_eval_chain(
                &mut self,
                next: &mut [Box<dyn Layer>],
                input: &Tensor,
            ) -> nn::Result<Option<(Tensor, usize)>> {
                super::chain::forward_eval_chain(self, next, input)
            }

            fn as_any(&self) -> &dyn Any {
                self
            }

            fn as_any_mut(&mut self) -> &mut dyn Any {
                self
            }
        }
    };
}

boundary_layer!(
    /// Real values to codes (ONNX QuantizeLinear); the output tensor holds integers.
    Quantize,
    "quantize",
    |x: f32, s: f32, z: i32, t: QuantType| quantize_value(x, s, z, t) as f32
);

boundary_layer!(
    /// Codes back to real values (ONNX DequantizeLinear).
    Dequantize,
    "dequantize",
    |x: f32, s: f32, z: i32, _t: QuantType| dequantize_value(x as i32, s, z)
);
