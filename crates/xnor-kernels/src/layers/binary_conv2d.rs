//! BinaryConv2d: a convolution with binary filters `alpha_o sign(W_o)`, run from its packed
//! sign bits by [`binary_conv2d`] (XNOR, BNN) or by an f32 conv of the unpacked scaled signs
//! (BWN).

use std::any::Any;

use nn::layers::Conv2d;
use nn::layers::conv2d::{conv2d_params_from_record, conv2d_params_record};
use nn::{Layer, LayerRecord, Mode, NnError};
use tensor_core::conv::{Conv2dParams, conv2d_forward};
use tensor_core::{Shape, Tensor};

use super::{BinaryMode, Stored};
use crate::conv::{BinaryConvWeights, binary_conv2d};
use crate::gemm::BinaryGemmParams;
use crate::input_scale::conv_input_scale;

/// A convolution (stride, padding, dilation; groups 1) whose filters are binary.
///
/// - [`BinaryMode::Xnor`], [`BinaryMode::Bnn`]: `y = alpha_o (sign(x) * sign(W_o)) + b_o`
///   with the XNOR-popcount convolution ([`binary_conv2d`]: zero padding exact); XNOR with
///   the input scale on ([`BinaryConv2d::with_input_scale`]) multiplies by `K[n, oy, ox]`,
///   the box-filtered mean `|x|` over channels (XNOR-Net section 3.2).
/// - [`BinaryMode::Bwn`]: real inputs, `y = x * (alpha_o sign(W_o)) + b_o` by the f32
///   convolution of the unpacked scaled signs (built once; the file holds only the bits).
///
/// Stored as kind `binary_conv2d`: the geometry attributes of `conv2d`, then the binary
/// layers' stored form ([`super`] module docs; filter bits in `(ki, kj, c)` order).
/// Inference only: `backward` is an error.
#[derive(Clone, Debug)]
pub struct BinaryConv2d {
    weights: BinaryConvWeights,
    stored: Stored,
    /// BWN's `alpha_o sign(W_o)` as an f32 weight `[O, C, kh, kw]`, unpacked once.
    scaled: Option<Tensor>,
}

impl BinaryConv2d {
    /// The layer of packed filters `weights`, scales `alpha` and bias.
    pub fn new(
        mode: BinaryMode,
        weights: BinaryConvWeights,
        alpha: Vec<f32>,
        bias: Option<Tensor>,
    ) -> nn::Result<Self> {
        let stored = Stored::new("binary_conv2d", mode, weights.rows().clone(), alpha, bias)?;
        let scaled = if mode == BinaryMode::Bwn {
            Some(scaled_weight(&weights, &stored.alpha)?)
        } else {
            None
        };
        Ok(Self {
            weights,
            stored,
            scaled,
        })
    }

    /// Turns XNOR-Net's input scale `K` on or off (XNOR mode only): the outputs are
    /// multiplied by the box-filtered mean `|x|` over channels ([`crate::conv_input_scale`]).
    pub fn with_input_scale(mut self, on: bool) -> nn::Result<Self> {
        self.stored.set_input_scale("binary_conv2d", on)?;
        Ok(self)
    }

    /// Whether the outputs are scaled by the input scale `K`.
    pub fn input_scale(&self) -> bool {
        self.stored.input_scale
    }

    /// Binarizes a dense convolution: `alpha_o = mean |W_o|` (1 for BNN), signs packed.
    pub fn from_conv2d(c: &Conv2d, mode: BinaryMode) -> crate::Result<Self> {
        let p = *c.params();
        let w = c.weight().data();
        let weights = BinaryConvWeights::pack(&p, w)?;
        let alpha = mode.alpha(w, p.out_channels, p.patch_len());
        Ok(Self::new(mode, weights, alpha, c.bias().cloned())?)
    }

    /// The dense twin holding `alpha_o sign(W_o)`.
    pub fn to_conv2d(&self) -> nn::Result<Conv2d> {
        let mut w = self.weights.unpack();
        let per = w.len() / self.stored.alpha.len().max(1);
        for (f, &a) in w.chunks_exact_mut(per.max(1)).zip(&self.stored.alpha) {
            f.iter_mut().for_each(|v| *v *= a);
        }
        let p = *self.weights.params();
        Conv2d::from_parts(
            p,
            Tensor::new(&p.weight_dims(), w)?,
            self.stored.bias.clone(),
        )
    }

    /// Rebuilds the layer from its record (type docs), every field validated.
    pub fn from_record(rec: &LayerRecord) -> nn::Result<Self> {
        rec.expect_kind("binary_conv2d")?;
        let p = conv2d_params_from_record(rec)?;
        if p.groups != 1 {
            return Err(rec.corrupt("attribute `groups`", "binary convolutions have groups 1"));
        }
        let [o, c, kh, kw] = p.weight_dims();
        let s = Stored::read(rec, o, kh * kw * c)?;
        let weights = BinaryConvWeights::from_rows(&p, s.rows)
            .map_err(|e| rec.corrupt("payload `weight_bits`", e.to_string()))?;
        Self::new(s.mode, weights, s.alpha, s.bias)?.with_input_scale(s.input_scale)
    }

    /// The mode.
    pub fn mode(&self) -> BinaryMode {
        self.stored.mode
    }

    /// The geometry.
    pub fn params(&self) -> &Conv2dParams {
        self.weights.params()
    }

    /// The filter scales.
    pub fn alpha(&self) -> &[f32] {
        &self.stored.alpha
    }
}

/// `alpha_o sign(W_o)` as an f32 weight `[O, C, kh, kw]`.
fn scaled_weight(weights: &BinaryConvWeights, alpha: &[f32]) -> nn::Result<Tensor> {
    let mut w = weights.unpack();
    let per = w.len() / alpha.len().max(1);
    for (f, &a) in w.chunks_exact_mut(per.max(1)).zip(alpha) {
        f.iter_mut().for_each(|v| *v *= a);
    }
    Ok(Tensor::new(&weights.params().weight_dims(), w)?)
}

impl Layer for BinaryConv2d {
    fn kind(&self) -> &'static str {
        "binary_conv2d"
    }

    fn output_shape(&self, input: &Shape) -> nn::Result<Shape> {
        let d = self
            .params()
            .output_dims(input)
            .map_err(|e| NnError::BadInput {
                layer: "binary_conv2d".into(),
                input: input.clone(),
                reason: e.to_string(),
            })?;
        Ok(Shape::new(&d)?)
    }

    fn forward(&mut self, input: &Tensor, _mode: Mode) -> nn::Result<Tensor> {
        let out = self.output_shape(input.shape())?;
        let bias = self.stored.bias.as_ref().map(|b| b.data());
        if let Some(w) = &self.scaled {
            return Ok(conv2d_forward(input, w, bias, self.params())?);
        }
        let dots = binary_conv2d(input, &self.weights, &BinaryGemmParams::default())?;
        let inner = out.dims()[2] * out.dims()[3];
        let k = self
            .stored
            .input_scale
            .then(|| conv_input_scale(input, self.params()))
            .transpose()?;
        let mut y = Tensor::zeros(out);
        self.stored
            .scale_dots(&dots, inner, k.as_deref(), y.data_mut());
        Ok(y)
    }

    fn backward(&mut self, _grad_output: &Tensor) -> nn::Result<Tensor> {
        Err(super::inference_only("binary_conv2d"))
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
        Ok(self.params().macs(input)?)
    }

    fn record(&self) -> nn::Result<LayerRecord> {
        self.stored
            .write(conv2d_params_record("binary_conv2d", self.params()))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
