//! What a quantized linear and a quantized convolution share: i8 weights packed for the GEMM,
//! i32 bias, the input's and output's quantization, and requantization with ReLU fused.

use nn::{LayerRecord, NnError, Payload};
use tensor_core::Tensor;

use crate::affine::{round_half_even, round_half_even_f32};
use crate::error::{QuantError, Result};
use crate::gemm::{PackedWeights, Requant};
use crate::params::QuantParams;
use crate::qtype::QuantType;
use crate::weights::{QuantizedWeight, WeightScheme};

/// What a quantized layer emits.
#[derive(Clone, Debug, PartialEq)]
pub enum QuantOutput {
    /// Codes of the next layer's input (requantization: `q = clamp(round_half_even(acc * M)
    /// + zero_point)`, `M = s_in s_w / s_out`); the tensor holds the integer codes.
    Codes(QuantParams),
    /// Real values `acc * s_in * s_w` (the model's last layer: logits need no requantization).
    Float,
}

/// The integer part of a quantized layer `y = W x + b` computed as
/// `acc_j = sum_k a_k w_jk - z_in sum_k w_jk + b_j` (exact i32; weights symmetric, zero point 0,
/// per output channel or per tensor), then [`QuantOutput`]. With `relu`, the output is clamped
/// at the code of 0 (or at 0.0), so ReLU costs nothing.
///
/// Bias: `b_j = round_half_even(bias_j / (s_in s_w_j))` in i32 (ONNX QLinearConv's bias).
#[derive(Clone, Debug)]
pub struct IntegerCore {
    packed: PackedWeights,
    weight_scales: Vec<f32>,
    weight_bits: u32,
    bias: Vec<i32>,
    input: QuantParams,
    output: QuantOutput,
    relu: bool,
    multipliers: Vec<f32>,
    /// `b_j - z_in sum_k w_jk`, added to each raw sum (in i32: checked at construction so
    /// that `raw + offset` cannot overflow).
    offsets: Vec<i32>,
}

/// The largest per-tensor activation type the GEMM takes: 7 bits, unsigned.
fn check_activation(op: &'static str, p: &QuantParams) -> Result<()> {
    let t = p.qtype();
    if t.signed() || t.bits() > 7 || p.axis().is_some() {
        return Err(QuantError::InvalidArgument {
            op,
            reason: format!(
                "activations must be per-tensor unsigned codes of at most 7 bits, got {t}{}",
                if p.axis().is_some() {
                    " per channel"
                } else {
                    ""
                }
            ),
        });
    }
    Ok(())
}

impl IntegerCore {
    /// Quantizes a float `[out, k]` weight by `weights` ([`WeightScheme::quantize`]) and its
    /// bias for input `input`.
    #[allow(clippy::too_many_arguments)]
    pub fn from_float(
        weight: &[f32],
        out: usize,
        k: usize,
        bias: Option<&[f32]>,
        weights: WeightScheme,
        input: QuantParams,
        output: QuantOutput,
        relu: bool,
    ) -> Result<Self> {
        if weight.len() != out * k {
            return Err(QuantError::LengthMismatch {
                op: "IntegerCore::from_float",
                what: "weight",
                got: weight.len(),
                expected: out * k,
            });
        }
        let QuantizedWeight { codes, scales, .. } = weights.quantize(weight, out)?;
        let s_in = input.scales()[0];
        let bias_codes = (0..out)
            .map(|j| {
                let b = bias.map_or(0.0, |b| b[j]);
                let q = (f64::from(b) / (f64::from(s_in) * f64::from(scales[j]))).round_ties_even();
                q.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
            })
            .collect();
        Self::new(
            codes,
            out,
            k,
            scales,
            weights.kernel_bits(),
            bias_codes,
            input,
            output,
            relu,
        )
    }

    /// A core from its stored parts, all checked.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        weight: Vec<i8>,
        out: usize,
        k: usize,
        weight_scales: Vec<f32>,
        weight_bits: u32,
        bias: Vec<i32>,
        input: QuantParams,
        output: QuantOutput,
        relu: bool,
    ) -> Result<Self> {
        const OP: &str = "IntegerCore::new";
        check_activation(OP, &input)?;
        if let QuantOutput::Codes(p) = &output {
            check_activation(OP, p)?;
        }
        let wt = QuantType::new(weight_bits, true)?;
        if let Some(&w) = weight.iter().find(|&&w| i32::from(w) < wt.qmin()) {
            return Err(QuantError::InvalidArgument {
                op: OP,
                reason: format!("weight code {w} below the {wt} range"),
            });
        }
        if let Some(&w) = weight.iter().find(|&&w| i32::from(w) > wt.qmax()) {
            return Err(QuantError::InvalidArgument {
                op: OP,
                reason: format!("weight code {w} above the {wt} range"),
            });
        }
        for (what, got) in [("weight_scales", weight_scales.len()), ("bias", bias.len())] {
            if got != out {
                return Err(QuantError::LengthMismatch {
                    op: OP,
                    what,
                    got,
                    expected: out,
                });
            }
        }
        // Validates the scales (finite, > 0).
        QuantParams::new(wt, weight_scales.clone(), vec![0; out], Some(0))?;
        let packed = PackedWeights::pack(&weight, out, k)?;
        let s_in = input.scales()[0];
        let s_out = match &output {
            QuantOutput::Codes(p) => p.scales()[0],
            QuantOutput::Float => 1.0,
        };
        let multipliers: Vec<f32> = weight_scales.iter().map(|&s| s_in * s / s_out).collect();
        if let Some((j, m)) = multipliers.iter().enumerate().find(|(_, m)| !m.is_finite()) {
            return Err(QuantError::InvalidArgument {
                op: OP,
                reason: format!(
                    "requantization multiplier {m} of channel {j} (input scale {s_in} x weight \
                     scale {} / output scale {s_out}) is not finite",
                    weight_scales[j]
                ),
            });
        }
        let zp_in = i64::from(input.zero_points()[0]);
        let max_raw = k as i64 * 127 * 128;
        let offsets = bias
            .iter()
            .zip(packed.col_sums())
            .map(|(&b, &s)| {
                let off = i64::from(b) - zp_in * i64::from(s);
                if off.abs() + max_raw > i64::from(i32::MAX) {
                    return Err(QuantError::InvalidArgument {
                        op: OP,
                        reason: format!(
                            "bias code {b} with zero-point correction {off} could overflow i32 \
                             sums of depth {k}"
                        ),
                    });
                }
                Ok(off as i32)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            packed,
            weight_scales,
            weight_bits,
            bias,
            input,
            output,
            relu,
            multipliers,
            offsets,
        })
    }

    /// The packed weights.
    pub fn packed(&self) -> &PackedWeights {
        &self.packed
    }

    /// Input quantization.
    pub fn input(&self) -> &QuantParams {
        &self.input
    }

    /// Output form.
    pub fn output(&self) -> &QuantOutput {
        &self.output
    }

    /// Whether ReLU is fused.
    pub fn relu(&self) -> bool {
        self.relu
    }

    /// Weight scales, one per output channel.
    pub fn weight_scales(&self) -> &[f32] {
        &self.weight_scales
    }

    /// Bits per weight code.
    pub fn weight_bits(&self) -> u32 {
        self.weight_bits
    }

    /// The i32 bias codes.
    pub fn bias(&self) -> &[i32] {
        &self.bias
    }

    /// The float weight the codes stand for, `[out, k]`.
    pub fn dequantized_weight(&self) -> Vec<f32> {
        let k = self.packed.k();
        self.packed
            .unpack()
            .iter()
            .enumerate()
            .map(|(i, &q)| f32::from(q) * self.weight_scales[i / k.max(1)])
            .collect()
    }

    /// The float bias the codes stand for.
    pub fn dequantized_bias(&self) -> Vec<f32> {
        let s_in = self.input.scales()[0];
        self.bias
            .iter()
            .zip(&self.weight_scales)
            .map(|(&b, &s)| b as f32 * (s_in * s))
            .collect()
    }

    /// Output values of channels `0..raw.len()` from the GEMM's raw sums
    /// `raw_j = sum_k a_k w_jk`: requantized codes (ReLU fused as the lower clamp) or real
    /// values. Computed in f32 throughout (the code is an integer-valued f32, equal to
    /// `clamp(round_half_even(acc * M) + zp)` of [`finish_channel`](Self::finish_channel)), so
    /// the loop vectorises.
    pub fn finish_row(&self, raw: &[i32], out: &mut [f32]) {
        let n = raw.len().min(out.len());
        let (raw, out) = (&raw[..n], &mut out[..n]);
        let (offsets, multipliers) = (&self.offsets[..n], &self.multipliers[..n]);
        match &self.output {
            QuantOutput::Codes(p) => self.requantize_row(p, raw, out),
            QuantOutput::Float => {
                let floor = if self.relu { 0.0 } else { f32::NEG_INFINITY };
                for j in 0..n {
                    out[j] = ((raw[j] + offsets[j]) as f32 * multipliers[j]).max(floor);
                }
            }
        }
    }

    /// The codes of channels `0..raw.len()` for output quantization `p` (the core's own
    /// [`QuantOutput::Codes`]) from the raw sums, as integer-valued f32: the integers
    /// [`finish_row`](Self::finish_row) emits.
    #[inline]
    fn requantize_row(&self, p: &QuantParams, raw: &[i32], out: &mut [f32]) {
        let n = raw.len().min(out.len());
        let (raw, out) = (&raw[..n], &mut out[..n]);
        let (offsets, multipliers) = (&self.offsets[..n], &self.multipliers[..n]);
        let (t, zp) = (p.qtype(), p.zero_points()[0]);
        let lo = if self.relu { zp } else { t.qmin() } as f32;
        let (hi, zp) = (t.qmax() as f32, zp as f32);
        for j in 0..n {
            let v = (raw[j] + offsets[j]) as f32 * multipliers[j];
            out[j] = (round_half_even_f32(v) + zp).clamp(lo, hi);
        }
    }

    /// The requantization into output quantization `p`'s codes (the core's own
    /// [`QuantOutput::Codes`]), ReLU fused as the lower clamp.
    pub(crate) fn requant(&self, p: &QuantParams) -> Requant<'_> {
        let (t, zp) = (p.qtype(), p.zero_points()[0]);
        Requant {
            offsets: &self.offsets,
            multipliers: &self.multipliers,
            zp,
            lo: if self.relu { zp } else { t.qmin() },
            hi: t.qmax(),
        }
    }

    /// Output values of channel `j` at `out.len()` positions whose raw sums are
    /// `raw[0], raw[stride], raw[2 * stride], ...` (a column of a `[positions, O]` GEMM result).
    pub fn finish_channel(&self, j: usize, raw: &[i32], stride: usize, out: &mut [f32]) {
        let (a, m) = (self.offsets[j], self.multipliers[j]);
        let raw = raw.iter().step_by(stride.max(1));
        match &self.output {
            QuantOutput::Codes(p) => {
                let (t, zp) = (p.qtype(), p.zero_points()[0]);
                let (lo, hi) = (if self.relu { zp } else { t.qmin() }, t.qmax());
                for (o, &r) in out.iter_mut().zip(raw) {
                    *o = (round_half_even((r + a) as f32 * m) + zp).clamp(lo, hi) as f32;
                }
            }
            QuantOutput::Float => {
                let floor = if self.relu { 0.0 } else { f32::NEG_INFINITY };
                for (o, &r) in out.iter_mut().zip(raw) {
                    *o = ((r + a) as f32 * m).max(floor);
                }
            }
        }
    }

    /// Input codes (f32 values that must be integers in the input type's range) as u8.
    pub fn codes_to_u8(&self, op: &str, x: &[f32], dst: &mut [u8]) -> nn::Result<()> {
        let qmax = self.input.qtype().qmax() as u8;
        // `as u8` saturates; a fraction or an out-of-range value does not survive the round
        // trip. No early exit, so the loop vectorises; the offender is found afterwards.
        let mut bad = false;
        for (d, &v) in dst.iter_mut().zip(x) {
            let c = v as u8;
            bad |= (f32::from(c) != v) | (c > qmax);
            *d = c;
        }
        if bad {
            let v = x
                .iter()
                .copied()
                .find(|&v| f32::from(v as u8) != v || v as u8 > qmax)
                .unwrap_or(f32::NAN);
            return Err(NnError::Config(format!(
                "{op}: input {v} is not a code in [0, {qmax}]: a quantized layer takes the \
                 codes of a `quantize` layer or of the quantized layer before it"
            )));
        }
        Ok(())
    }

    /// Weight codes, scales, bias and quantization attributes added to `rec`.
    pub fn write_record(&self, rec: LayerRecord) -> nn::Result<LayerRecord> {
        let (out, k) = (self.packed.n(), self.packed.k());
        let rec = rec
            .with_int("weight_bits", i64::from(self.weight_bits))
            .with_int("relu", i64::from(self.relu))
            .with_float("in_scale", self.input.scales()[0])
            .with_int("in_zero_point", i64::from(self.input.zero_points()[0]))
            .with_int("in_bits", i64::from(self.input.qtype().bits()))
            .with_tensor(
                "weight_scales",
                Tensor::new(&[out], self.weight_scales.clone())?,
            )
            .with_payload("weight", Payload::i8(&[out, k], self.packed.unpack())?)
            .with_payload("bias", Payload::i32(&[out], self.bias.clone())?);
        Ok(match &self.output {
            QuantOutput::Float => rec.with_int("float_output", 1),
            QuantOutput::Codes(p) => rec
                .with_int("float_output", 0)
                .with_float("out_scale", p.scales()[0])
                .with_int("out_zero_point", i64::from(p.zero_points()[0]))
                .with_int("out_bits", i64::from(p.qtype().bits())),
        })
    }

    /// Reads what [`write_record`](Self::write_record) wrote for an `[out, k]` layer; every
    /// field checked (a corrupt record is an error naming the field).
    pub fn read_record(rec: &LayerRecord, out: usize, k: usize) -> nn::Result<Self> {
        rec.expect_fields(&["weight_scales"], &["weight", "bias"])?;
        let act = |scale: &str, zp: &str, bits: &str| -> nn::Result<QuantParams> {
            let bits = rec.usize_in(bits, 2, 7)? as u32;
            let t = QuantType::new(bits, false)
                .map_err(|e| rec.corrupt("activation bits", e.to_string()))?;
            let zp = rec.int(zp)?;
            let zp = i32::try_from(zp).map_err(|_| rec.corrupt("zero point", format!("{zp}")))?;
            QuantParams::new(t, vec![rec.float(scale)?], vec![zp], None)
                .map_err(|e| rec.corrupt("activation quantization", e.to_string()))
        };
        let input = act("in_scale", "in_zero_point", "in_bits")?;
        let output = match rec.usize_in("float_output", 0, 1)? {
            1 => QuantOutput::Float,
            _ => QuantOutput::Codes(act("out_scale", "out_zero_point", "out_bits")?),
        };
        let weight_bits = rec.usize_in("weight_bits", 2, 8)? as u32;
        let relu = rec.usize_in("relu", 0, 1)? == 1;
        let scales = rec
            .tensor_with_dims("weight_scales", &[out])?
            .data()
            .to_vec();
        let weight = rec.i8s("weight", &[out, k])?.to_vec();
        let bias = rec.i32s("bias", &[out])?.to_vec();
        Self::new(
            weight,
            out,
            k,
            scales,
            weight_bits,
            bias,
            input,
            output,
            relu,
        )
        .map_err(|e| rec.corrupt("quantized weights", e.to_string()))
    }

    /// Bytes as stored: i8 codes, i32 bias and f32 scales.
    pub fn stored_bytes(&self) -> usize {
        let out = self.packed.n();
        out * self.packed.k() + 8 * out
    }

    /// Weights plus biases.
    pub fn param_count(&self) -> usize {
        self.packed.n() * self.packed.k() + self.packed.n()
    }
}
