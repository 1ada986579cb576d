//! BinaryLinear: a fully connected layer with binary weights `alpha_o sign(W_o)`, run from its
//! packed sign bits (XNOR, BNN) or its unpacked scaled signs (BWN).

use std::any::Any;

use nn::layers::Linear;
use nn::{Layer, LayerRecord, Mode, NnError};
use tensor_core::gemm::{GemmParams, gemm};
use tensor_core::{Shape, Tensor};

use super::{BinaryMode, Stored, add_bias};
use crate::gemm::binary_gemm;
use crate::input_scale::linear_input_scale;
use crate::pack::PackedRows;

/// Most input or output features of a stored layer (nn's dimension bound).
const MAX_FEATURES: usize = 1 << 24;

/// `y = x (alpha sign(W))^T + b` for `x [batch, in]`, `W [out, in]`.
///
/// - [`BinaryMode::Xnor`], [`BinaryMode::Bnn`]: the rows of `sign(x)` are packed and
///   multiplied by the packed filters with [`binary_gemm`]: `y[b][o] = alpha_o (K - 2
///   popcount(x_b ^ w_o)) + b_o`, times `K_b = mean |x_b|` in XNOR mode with the input scale
///   on ([`BinaryLinear::with_input_scale`]).
/// - [`BinaryMode::Bwn`]: real inputs; an f32 GEMM on the unpacked `alpha_o sign(W_o)`
///   (built once when the layer is made; the file holds only the bits).
///
/// Stored as kind `binary_linear`: attributes `in_features`, `out_features`, then the binary
/// layers' stored form ([`super`] module docs). Inference only: `backward` is an error (train
/// the latent weights of the dense layer through [`crate::BinarizeHook`], then convert).
#[derive(Clone, Debug)]
pub struct BinaryLinear {
    stored: Stored,
    /// BWN's `alpha_o sign(W_o)` `[out, in]`, unpacked once.
    scaled: Option<Vec<f32>>,
}

impl BinaryLinear {
    /// The layer of packed filters `rows` (`[out, in]`), scales and bias.
    pub fn new(
        mode: BinaryMode,
        rows: PackedRows,
        alpha: Vec<f32>,
        bias: Option<Tensor>,
    ) -> nn::Result<Self> {
        let stored = Stored::new("binary_linear", mode, rows, alpha, bias)?;
        let scaled = (mode == BinaryMode::Bwn).then(|| stored.scaled_signs());
        Ok(Self { stored, scaled })
    }

    /// Turns XNOR-Net's input scale `K = mean |x|` per sample on or off (XNOR mode only):
    /// `y[b][o] = alpha_o K_b (K - 2 popcount(x_b ^ w_o)) + b_o`.
    pub fn with_input_scale(mut self, on: bool) -> nn::Result<Self> {
        self.stored.set_input_scale("binary_linear", on)?;
        Ok(self)
    }

    /// Whether the outputs are scaled by the input scale `K`.
    pub fn input_scale(&self) -> bool {
        self.stored.input_scale
    }

    /// Binarizes a dense layer: `alpha_o = mean |W_o|` (1 for BNN), signs packed.
    pub fn from_linear(l: &Linear, mode: BinaryMode) -> crate::Result<Self> {
        let (o, k) = (l.out_features(), l.in_features());
        let w = l.weight().data();
        let rows = PackedRows::pack(w, o, k)?;
        Ok(Self::new(
            mode,
            rows,
            mode.alpha(w, o, k),
            l.bias().cloned(),
        )?)
    }

    /// The dense twin holding `alpha_o sign(W_o)`.
    pub fn to_linear(&self) -> nn::Result<Linear> {
        let (o, k) = (self.stored.rows.rows(), self.stored.rows.depth());
        let w = Tensor::new(&[o, k], self.stored.scaled_signs())?;
        Linear::from_parts(w, self.stored.bias.clone())
    }

    /// Rebuilds the layer from its record (type docs), every field validated.
    pub fn from_record(rec: &LayerRecord) -> nn::Result<Self> {
        rec.expect_kind("binary_linear")?;
        let k = rec.usize_in("in_features", 1, MAX_FEATURES)?;
        let o = rec.usize_in("out_features", 1, MAX_FEATURES)?;
        let s = Stored::read(rec, o, k)?;
        let input_scale = s.input_scale;
        Self::new(s.mode, s.rows, s.alpha, s.bias)?.with_input_scale(input_scale)
    }

    /// The mode.
    pub fn mode(&self) -> BinaryMode {
        self.stored.mode
    }

    /// The packed filters `[out, in]`.
    pub fn rows(&self) -> &PackedRows {
        &self.stored.rows
    }

    /// The filter scales.
    pub fn alpha(&self) -> &[f32] {
        &self.stored.alpha
    }

    fn features(&self) -> (usize, usize) {
        (self.stored.rows.depth(), self.stored.rows.rows())
    }
}

impl Layer for BinaryLinear {
    fn kind(&self) -> &'static str {
        "binary_linear"
    }

    fn output_shape(&self, input: &Shape) -> nn::Result<Shape> {
        let (k, o) = self.features();
        match input.dims() {
            [n, c] if *c == k => Ok(Shape::new(&[*n, o])?),
            _ => Err(NnError::BadInput {
                layer: "binary_linear".into(),
                input: input.clone(),
                reason: format!("expected [batch, {k}]"),
            }),
        }
    }

    fn forward(&mut self, input: &Tensor, _mode: Mode) -> nn::Result<Tensor> {
        let out = self.output_shape(input.shape())?;
        let (k, o) = self.features();
        let n = out.dims()[0];
        let mut y = Tensor::zeros(out);
        match &self.scaled {
            Some(w) => {
                let p = GemmParams::with_trans(false, true);
                gemm(n, o, k, input.data(), w, y.data_mut(), &p)?;
                add_bias(y.data_mut(), self.stored.bias.as_ref());
            }
            None => {
                let x = PackedRows::pack(input.data(), n, k)?;
                let mut dots = vec![0i32; n * o];
                binary_gemm(&x, &self.stored.rows, &mut dots)?;
                let k = self
                    .stored
                    .input_scale
                    .then(|| linear_input_scale(input))
                    .transpose()?;
                self.stored.scale_dots(&dots, 1, k.as_deref(), y.data_mut());
            }
        }
        Ok(y)
    }

    fn backward(&mut self, _grad_output: &Tensor) -> nn::Result<Tensor> {
        Err(super::inference_only("binary_linear"))
    }

    /// Weights (one bit each) plus the bias.
    fn param_count(&self) -> usize {
        self.stored.param_count()
    }

    /// Packed words, scales and bias, as written.
    fn stored_bytes(&self) -> usize {
        self.stored.bytes()
    }

    fn macs(&self, input: &Shape) -> nn::Result<u64> {
        let out = self.output_shape(input)?;
        let (k, o) = self.features();
        Ok((out.dims()[0] * o * k) as u64)
    }

    fn record(&self) -> nn::Result<LayerRecord> {
        let (k, o) = self.features();
        let rec = LayerRecord::new("binary_linear")
            .with_int("in_features", k as i64)
            .with_int("out_features", o as i64);
        self.stored.write(rec)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
