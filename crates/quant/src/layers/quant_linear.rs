//! QuantLinear: a fully connected layer computed in integers from 7-bit input codes.

use nn::layers::Linear;
use nn::{Layer, LayerRecord, NnError};
use tensor_core::dispatch::Int8Path;
use tensor_core::{Shape, Tensor};

use super::core::{IntegerCore, QuantOutput};
use crate::gemm::{gemm_u7i8_with, padded_depth};
use crate::params::QuantParams;
use crate::weights::WeightScheme;

/// `y = W x + b` on codes: input `[B, in]` holds u7 codes of [`IntegerCore::input`], the
/// product runs on the int8 GEMM, the output holds the next layer's codes or real values
/// ([`QuantOutput`]), ReLU fused when asked.
///
/// Stored (record kind `quant_linear`): `in_features`, `out_features`, the [`IntegerCore`]
/// fields (payload `weight` i8 `[out, in]`, payload `bias` i32 `[out]`, tensor
/// `weight_scales` `[out]`, the input and output scales and zero points). Inference only.
#[derive(Clone, Debug)]
pub struct QuantLinear {
    core: IntegerCore,
    in_features: usize,
    out_features: usize,
}

impl QuantLinear {
    /// A quantized twin of `linear`.
    pub fn from_linear(
        linear: &Linear,
        weights: WeightScheme,
        input: QuantParams,
        output: QuantOutput,
        relu: bool,
    ) -> crate::Result<Self> {
        let (out, k) = (linear.out_features(), linear.in_features());
        let core = IntegerCore::from_float(
            linear.weight().data(),
            out,
            k,
            linear.bias().map(|b| b.data()),
            weights,
            input,
            output,
            relu,
        )?;
        Ok(Self::from_core(core))
    }

    /// The layer of a core (`[out, in]` from its packed weights).
    pub fn from_core(core: IntegerCore) -> Self {
        let (out_features, in_features) = (core.packed().n(), core.packed().k());
        Self {
            core,
            in_features,
            out_features,
        }
    }

    /// The integer part.
    pub fn core(&self) -> &IntegerCore {
        &self.core
    }

    /// Rebuilds the layer from its record, every field checked.
    pub fn from_record(rec: &LayerRecord) -> nn::Result<Self> {
        rec.expect_kind("quant_linear")?;
        let in_features = rec.usize_in("in_features", 1, 1 << 24)?;
        let out_features = rec.usize_in("out_features", 1, 1 << 24)?;
        let core = IntegerCore::read_record(rec, out_features, in_features)?;
        Ok(Self::from_core(core))
    }

    /// The forward pass on a given kernel path.
    pub fn forward_with(&self, path: Int8Path, input: &Tensor) -> nn::Result<Tensor> {
        let shape = self.output_shape(input.shape())?;
        let (b, k, n) = (input.dims()[0], self.in_features, self.out_features);
        let kp = padded_depth(k);
        let mut a = vec![0u8; b * kp];
        for (row, x) in a.chunks_exact_mut(kp).zip(input.data().chunks_exact(k)) {
            self.core.codes_to_u8("quant_linear", x, &mut row[..k])?;
        }
        let mut c = vec![0i32; b * n];
        gemm_u7i8_with(path, &a, kp, b, self.core.packed(), &mut c)?;
        let mut y = vec![0f32; b * n];
        for (out, raw) in y.chunks_exact_mut(n).zip(c.chunks_exact(n)) {
            self.core.finish_row(raw, out);
        }
        Ok(Tensor::new(shape.dims(), y)?)
    }
}

impl Layer for QuantLinear {
    fn kind(&self) -> &'static str {
        "quant_linear"
    }

    fn output_shape(&self, input: &Shape) -> nn::Result<Shape> {
        let d = input.dims();
        if d.len() != 2 || d[1] != self.in_features {
            return Err(NnError::BadInput {
                layer: "quant_linear".into(),
                input: input.clone(),
                reason: format!("expected [batch, {}]", self.in_features),
            });
        }
        Ok(Shape::new(&[d[0], self.out_features])?)
    }

    integer_layer_common!("quant_linear");

    fn macs(&self, input: &Shape) -> nn::Result<u64> {
        let d = self.output_shape(input)?;
        Ok((d.dims()[0] * self.in_features * self.out_features) as u64)
    }

    fn record(&self) -> nn::Result<LayerRecord> {
        let rec = LayerRecord::new("quant_linear")
            .with_int("in_features", self.in_features as i64)
            .with_int("out_features", self.out_features as i64);
        self.core.write_record(rec)
    }
}
