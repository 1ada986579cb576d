//! The binary layers, run from packed sign bits and a per-filter scale: [`BinaryLinear`] and
//! [`BinaryConv2d`], each in one of three [`BinaryMode`]s; [`register`] adds their kinds to a
//! layer registry.
//!
//! Stored form (shared by both kinds, written and read by this module): attribute `mode`
//! (`"bwn"`, `"xnor"` or `"bnn"`), attribute `bias` in {0, 1}; payload `weight_bits`, the
//! `O` filters' signs as packed rows `u64 [O, ceil(K / 64)]` (bit 1 = -1, padding 0; a conv
//! filter's `K = kh*kw*C` bits in `(ki, kj, c)` order, see [`crate::conv`]); tensor `alpha`
//! `[O]` (the filter scales, finite); tensor `bias` `[O]`. Bytes written:
//! `8 O ceil(K / 64) + 4 O (+ 4 O)`, against `4 O K` for the f32 weight. Attribute
//! `input_scale` in {0, 1} (XNOR mode only): the outputs are multiplied by XNOR-Net's input
//! scale `K` ([`crate::input_scale`]); a record without it (files written before it existed)
//! reads as 0.
//!
//! [`InputScaled`] is the training form of an XNOR layer with `K` (dense latent weights).

mod binary_conv2d;
mod binary_linear;
mod input_scaled;

pub use binary_conv2d::BinaryConv2d;
pub use binary_linear::BinaryLinear;
pub use input_scaled::InputScaled;

use nn::payload::Payload;
use nn::{LayerRecord, LayerRegistry, NnError};
use tensor_core::Tensor;

use crate::pack::{PackedRows, words_for};

/// What a binary layer binarizes and how it scales (the papers' three networks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryMode {
    /// Binary-weight network (BinaryConnect with XNOR-Net's scale; Rastegari et al. 2016,
    /// section 3.1): weights `alpha_o * sign(W_o)` with `alpha_o = mean |W_o|` per output
    /// filter, real-valued inputs (run by an f32 kernel on the unpacked `±alpha` weights).
    Bwn,
    /// XNOR-Net (section 3.2): binary weights with `alpha_o`, and binary inputs: the layer
    /// packs `sign(x)` and runs the XNOR-popcount kernel, `y = alpha_o (K - 2 popcount) + b`.
    Xnor,
    /// Binarized Neural Network (Hubara et al., 2016): binary weights and inputs, no scale
    /// (`alpha = 1`).
    Bnn,
}

impl BinaryMode {
    /// The mode's name in records and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            BinaryMode::Bwn => "bwn",
            BinaryMode::Xnor => "xnor",
            BinaryMode::Bnn => "bnn",
        }
    }

    /// Parses a name (`bwn`, `xnor`, `bnn`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "bwn" => Some(BinaryMode::Bwn),
            "xnor" => Some(BinaryMode::Xnor),
            "bnn" => Some(BinaryMode::Bnn),
            _ => None,
        }
    }

    /// Whether the layer's inputs are binarized (XNOR-popcount kernel).
    pub fn binary_inputs(self) -> bool {
        self != BinaryMode::Bwn
    }

    /// The scale of each of `rows` filters of `depth` weights in `weight` (row-major):
    /// `mean |W_o|` (BWN, XNOR), or 1 (BNN).
    pub fn alpha(self, weight: &[f32], rows: usize, depth: usize) -> Vec<f32> {
        if self == BinaryMode::Bnn || depth == 0 {
            return vec![1.0; rows];
        }
        weight
            .chunks_exact(depth)
            .map(|w| w.iter().map(|v| v.abs()).sum::<f32>() / depth as f32)
            .collect()
    }
}

/// Registers `binary_linear`, `binary_conv2d` and `xnor_input_scaled`.
pub fn register(registry: &mut LayerRegistry) -> nn::Result<()> {
    nn::register_kinds! { registry;
        "binary_linear" => BinaryLinear,
        "binary_conv2d" => BinaryConv2d,
        "xnor_input_scaled" => InputScaled,
    }
    Ok(())
}

/// The parts every binary layer stores: mode, packed filters, scales, bias.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Stored {
    pub(crate) mode: BinaryMode,
    pub(crate) rows: PackedRows,
    pub(crate) alpha: Vec<f32>,
    pub(crate) bias: Option<Tensor>,
    /// Whether the outputs are scaled by XNOR-Net's input scale `K`.
    pub(crate) input_scale: bool,
}

impl Stored {
    /// Checks that alpha and bias have one finite value per filter.
    pub(crate) fn new(
        kind: &str,
        mode: BinaryMode,
        rows: PackedRows,
        alpha: Vec<f32>,
        bias: Option<Tensor>,
    ) -> nn::Result<Self> {
        let o = rows.rows();
        if alpha.len() != o || alpha.iter().any(|a| !a.is_finite()) {
            return Err(NnError::Config(format!(
                "{kind}: alpha must hold {o} finite scales, found {} values",
                alpha.len()
            )));
        }
        if let Some(b) = &bias
            && b.dims() != [o]
        {
            return Err(NnError::Config(format!(
                "{kind}: bias {} for {o} filters",
                b.shape()
            )));
        }
        Ok(Self {
            mode,
            rows,
            alpha,
            bias,
            input_scale: false,
        })
    }

    /// Turns the input scale `K` on or off; only XNOR mode has it.
    pub(crate) fn set_input_scale(&mut self, kind: &str, on: bool) -> nn::Result<()> {
        if on && self.mode != BinaryMode::Xnor {
            return Err(NnError::Config(format!(
                "{kind}: the input scale K is XNOR-Net's (mode xnor), not {}'s",
                self.mode.name()
            )));
        }
        self.input_scale = on;
        Ok(())
    }

    /// Writes the stored form (module docs) into `rec`.
    pub(crate) fn write(&self, rec: LayerRecord) -> nn::Result<LayerRecord> {
        let (o, w) = (self.rows.rows(), self.rows.words_per_row());
        let rec = rec
            .with_attr("mode", nn::AttrValue::Str(self.mode.name().into()))
            .with_int("bias", self.bias.is_some() as i64)
            .with_int("input_scale", self.input_scale as i64)
            .with_payload(
                "weight_bits",
                Payload::u64(&[o, w], self.rows.words().to_vec())?,
            )
            .with_tensor("alpha", Tensor::new(&[o], self.alpha.clone())?);
        Ok(match &self.bias {
            Some(b) => rec.with_tensor("bias", b.clone()),
            None => rec,
        })
    }

    /// Reads the stored form of `o` filters of depth `depth`, every field checked against
    /// them before anything is built (a corrupt record is an error naming the field).
    pub(crate) fn read(rec: &LayerRecord, o: usize, depth: usize) -> nn::Result<Self> {
        let mode = BinaryMode::parse(rec.str("mode")?)
            .ok_or_else(|| rec.corrupt("attribute `mode`", "expected bwn, xnor or bnn"))?;
        let has_bias = rec.usize_in("bias", 0, 1)? == 1;
        let tensors: &[&str] = if has_bias {
            &["alpha", "bias"]
        } else {
            &["alpha"]
        };
        rec.expect_fields(tensors, &["weight_bits"])?;
        let words = rec.u64s("weight_bits", &[o, words_for(depth)])?;
        let rows = PackedRows::from_words(o, depth, words.to_vec())
            .map_err(|e| rec.corrupt("payload `weight_bits`", e.to_string()))?;
        let alpha = rec.tensor_with_dims("alpha", &[o])?.data().to_vec();
        let bias = has_bias
            .then(|| rec.tensor_with_dims("bias", &[o]))
            .transpose()?;
        let mut s = Self::new(&rec.kind, mode, rows, alpha, bias)
            .map_err(|e| rec.corrupt("tensor `alpha`", e.to_string()))?;
        let input_scale = match rec.int_or("input_scale", 0)? {
            0 => false,
            1 => true,
            v => {
                return Err(rec.corrupt("attribute `input_scale`", format!("{v}: expected 0 or 1")));
            }
        };
        s.set_input_scale(&rec.kind, input_scale)
            .map_err(|e| rec.corrupt("attribute `input_scale`", e.to_string()))?;
        Ok(s)
    }

    /// Bytes as written: packed words, scales, bias.
    pub(crate) fn bytes(&self) -> usize {
        self.rows.byte_len()
            + 4 * self.alpha.len()
            + self.bias.as_ref().map_or(0, |b| 4 * b.numel())
    }

    /// Weights (one bit each) plus the bias, as parameters.
    pub(crate) fn param_count(&self) -> usize {
        self.rows.rows() * self.rows.depth() + self.bias.as_ref().map_or(0, |b| b.numel())
    }

    /// `alpha_o * sign(W_o)` as f32, row-major `[O, K]` in the packed bit order.
    pub(crate) fn scaled_signs(&self) -> Vec<f32> {
        let mut w = self.rows.unpack();
        let k = self.rows.depth().max(1);
        for (row, &a) in w.chunks_exact_mut(k).zip(&self.alpha) {
            row.iter_mut().for_each(|v| *v *= a);
        }
        w
    }

    /// `y[.., o, ..] = alpha_o * K * dot + bias_o` for integer dot products laid out with
    /// `inner` values per filter per sample (1 for linear, `OH*OW` for conv); `k` is the input
    /// scale `[N, inner]` (`None`: 1).
    pub(crate) fn scale_dots(&self, dots: &[i32], inner: usize, k: Option<&[f32]>, y: &mut [f32]) {
        let bias = self.bias.as_ref().map(|b| b.data());
        let per_sample = inner * self.alpha.len();
        for (n, (ys, ds)) in y
            .chunks_exact_mut(per_sample.max(1))
            .zip(dots.chunks_exact(per_sample.max(1)))
            .enumerate()
        {
            let ks = k.map(|k| &k[n * inner..(n + 1) * inner]);
            for (f, (yf, df)) in ys
                .chunks_exact_mut(inner.max(1))
                .zip(ds.chunks_exact(inner.max(1)))
                .enumerate()
            {
                let (a, b) = (self.alpha[f], bias.map_or(0.0, |b| b[f]));
                match ks {
                    Some(ks) => yf
                        .iter_mut()
                        .zip(df)
                        .zip(ks)
                        .for_each(|((v, &d), &s)| *v = a * s * d as f32 + b),
                    None => yf
                        .iter_mut()
                        .zip(df)
                        .for_each(|(v, &d)| *v = a * d as f32 + b),
                }
            }
        }
    }
}

/// The error of a binary layer's `backward`: these layers only infer.
pub(crate) fn inference_only(kind: &str) -> NnError {
    NnError::Unsupported(format!(
        "{kind} backward: train the latent f32 weights with BinarizeHook (straight-through \
         estimator), then convert"
    ))
}

/// `y[b][o] += bias[o]` (no bias: unchanged), for rows of `o` values.
pub(crate) fn add_bias(y: &mut [f32], bias: Option<&Tensor>) {
    if let Some(b) = bias {
        for row in y.chunks_exact_mut(b.numel().max(1)) {
            row.iter_mut().zip(b.data()).for_each(|(v, &c)| *v += c);
        }
    }
}
