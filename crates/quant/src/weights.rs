//! How weights become integer codes: uniform symmetric codes (`b` bits, per output channel
//! or per tensor, min-max scales) or powers of two (logarithmic quantization: Miyashita,
//! Lee, Murmann, "Convolutional Neural Networks using Logarithmic Data Representation",
//! 2016; the levels and rounding of Zhou et al., "Incremental Network Quantization", ICLR
//! 2017). Both the conversion to integer layers and quantization-aware training call
//! [`WeightScheme::quantize`], so the fake-quantized weights training sees are exactly the
//! ones the integer layers hold.
//!
//! Power-of-two weights, per output channel: `w = sign * 2^e` or 0, with `e` in
//! `[n1 - m + 1, n1]`, `n1 = floor(log2(4 max|w| / 3))` (so the largest weight rounds to
//! `2^n1`), `m = 2^(b-1) - 1` exponents for `b` bits (one code is zero, one bit the sign)
//! capped at 7. Each weight goes to the nearest level in the linear domain (`2^e` covers
//! `[0.75, 1.5) 2^e`; below the smallest level `L`, `|w| >= L/2` gives `L`, else 0). The codes
//! are stored as the int8 values `±2^(e - n1 + m - 1)` (`±1 .. ±64`) with the channel scale
//! `2^(n1 - m + 1)`, so the ordinary u8 x i8 GEMM runs them exactly (a multiply by a power of
//! two is a shift); the cap at 7 exponents keeps them inside i8, so 5- to 8-bit power-of-two
//! weights have the 4-bit levels.

use crate::affine::round_half_even;
use crate::error::{QuantError, Result};
use crate::params::{QuantParams, Symmetry};
use crate::qtype::QuantType;

/// Most exponents of power-of-two weights (`±2^0 .. ±2^6` fit in i8).
pub const POW2_MAX_EXPONENTS: u32 = 7;

/// How a layer's weights are quantized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightScheme {
    /// Symmetric `bits`-bit codes, min-max scale per output channel or per tensor.
    Uniform {
        /// Bits per code, 2..=8.
        bits: u32,
        /// One scale per output channel (else per tensor).
        per_channel: bool,
    },
    /// `sign * 2^e` or 0 per output channel (module docs), `bits` 2..=8.
    Pow2 {
        /// Bits per weight (sign, zero and `2^(bits-1) - 1` exponents, at most 7).
        bits: u32,
    },
}

/// A weight `[out, k]` quantized: `codes[i] * scales[i / k]` is its value.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedWeight {
    /// Int8 codes, row-major `[out, k]`.
    pub codes: Vec<i8>,
    /// One scale per output row.
    pub scales: Vec<f32>,
    /// Whether each weight's unclamped code was inside the code range (the straight-through
    /// estimator's pass flag).
    pub pass: Vec<bool>,
}

impl QuantizedWeight {
    /// The dequantized weights, `codes[i] * scales[row]` (ONNX DequantizeLinear, zero point 0).
    pub fn values(&self) -> Vec<f32> {
        let k = self.codes.len() / self.scales.len().max(1);
        self.codes
            .iter()
            .enumerate()
            .map(|(i, &q)| (f32::from(q) - 0.0) * self.scales[i / k.max(1)])
            .collect()
    }
}

impl WeightScheme {
    /// Uniform codes.
    pub fn uniform(bits: u32, per_channel: bool) -> Self {
        Self::Uniform { bits, per_channel }
    }

    /// Bits per weight.
    pub fn bits(self) -> u32 {
        match self {
            Self::Uniform { bits, .. } | Self::Pow2 { bits } => bits,
        }
    }

    /// Whether weights are powers of two.
    pub fn pow2(self) -> bool {
        matches!(self, Self::Pow2 { .. })
    }

    /// The code type the integer kernel checks the codes against: the scheme's for uniform
    /// codes, i8 for powers of two (whose codes are `±2^j`).
    pub fn kernel_bits(self) -> u32 {
        match self {
            Self::Uniform { bits, .. } => bits,
            Self::Pow2 { .. } => 8,
        }
    }

    /// Quantizes `weight`, `out` rows of `weight.len() / out` values.
    ///
    /// Errors: bits outside 2..=8; `out` zero or not dividing the length.
    pub fn quantize(self, weight: &[f32], out: usize) -> Result<QuantizedWeight> {
        const OP: &str = "WeightScheme::quantize";
        let t = QuantType::new(self.bits(), true)?;
        if out == 0 || !weight.len().is_multiple_of(out) {
            return Err(QuantError::InvalidArgument {
                op: OP,
                reason: format!("{} weights do not split into {out} rows", weight.len()),
            });
        }
        let k = weight.len() / out;
        match self {
            Self::Uniform { per_channel, .. } => {
                let dims = [out, k];
                let axis = per_channel.then_some(0);
                let p = QuantParams::from_data(t, Symmetry::Symmetric, axis, weight, &dims)?;
                let codes = p.quantize_i8(weight, &dims)?;
                let scales: Vec<f32> = (0..out)
                    .map(|r| p.scales()[if per_channel { r } else { 0 }])
                    .collect();
                let pass = weight
                    .iter()
                    .enumerate()
                    .map(|(i, &w)| {
                        let q = round_half_even(w / scales[i / k.max(1)]);
                        (t.qmin()..=t.qmax()).contains(&q)
                    })
                    .collect();
                Ok(QuantizedWeight {
                    codes,
                    scales,
                    pass,
                })
            }
            Self::Pow2 { bits } => {
                let m = ((1u32 << (bits - 1)) - 1).min(POW2_MAX_EXPONENTS) as i32;
                let mut codes = Vec::with_capacity(weight.len());
                let mut scales = Vec::with_capacity(out);
                for row in weight.chunks_exact(k.max(1)) {
                    let max = row
                        .iter()
                        .filter(|w| w.is_finite())
                        .fold(0.0f32, |a, w| a.max(w.abs()));
                    if max == 0.0 {
                        codes.extend(std::iter::repeat_n(0i8, row.len()));
                        scales.push(1.0);
                        continue;
                    }
                    let top = (max * 4.0 / 3.0).log2().floor() as i32;
                    let bottom = top - m + 1;
                    scales.push(2f32.powi(bottom));
                    codes.extend(row.iter().map(|&w| pow2_code(w, bottom, top)));
                }
                Ok(QuantizedWeight {
                    codes,
                    scales,
                    pass: vec![true; weight.len()],
                })
            }
        }
    }
}

/// The int8 code of `w` on the levels `2^bottom .. 2^top`: `±2^(e - bottom)` or 0.
fn pow2_code(w: f32, bottom: i32, top: i32) -> i8 {
    let a = w.abs();
    if !a.is_finite() {
        return 0;
    }
    let smallest = 2f32.powi(bottom);
    let e = if a >= 0.75 * smallest {
        ((a * 4.0 / 3.0).log2().floor() as i32).clamp(bottom, top)
    } else if a >= 0.5 * smallest {
        bottom
    } else {
        return 0;
    };
    let magnitude = 1i8 << (e - bottom);
    if w < 0.0 { -magnitude } else { magnitude }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pow2_levels_and_nearest_rounding() {
        // Max 0.9: top = floor(log2(1.2)) = 0, 4 bits: 7 exponents 2^0 .. 2^-6.
        let w = [0.9f32, -0.3, 0.374, 0.376, 0.01, 0.007, -0.0078, 0.0, 0.5];
        let q = WeightScheme::Pow2 { bits: 4 }.quantize(&w, 1).unwrap();
        assert_eq!(q.scales, [2f32.powi(-6)]);
        // 0.3 -> 0.25 (0.375 is the 0.25 / 0.5 boundary); 0.01 -> 2^-7 is below the
        // smallest level 2^-6 = 0.0156: 0.01 >= 0.0078 -> 2^-6; 0.007 -> 0.
        assert_eq!(q.codes, [64, -16, 16, 32, 1, 0, 0, 0, 32]);
        let v = q.values();
        for (x, y) in w.iter().zip(&v) {
            assert!(*y == 0.0 || y.abs().log2().fract() == 0.0, "{x} -> {y}");
        }
        // 2 bits: one exponent, the top.
        let q = WeightScheme::Pow2 { bits: 2 }.quantize(&w, 1).unwrap();
        assert_eq!(q.codes, [1, 0, 0, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn pow2_codes_fit_i8_for_every_width_and_zero_rows_stay_zero() {
        let mut rng = tensor_core::rng::Rng::seed_from_u64(9);
        let mut w: Vec<f32> = (0..300).map(|_| rng.normal()).collect();
        w[200..300].iter_mut().for_each(|v| *v = 0.0);
        for bits in 2..=8 {
            let q = WeightScheme::Pow2 { bits }.quantize(&w, 3).unwrap();
            let m = ((1i32 << (bits - 1)) - 1).min(7);
            assert!(q.codes.iter().all(|&c| c == 0 || {
                let a = i32::from(c).abs();
                a.count_ones() == 1 && a < (1 << m)
            }));
            assert!(q.codes[200..].iter().all(|&c| c == 0));
            // Nearest level: no weight moves by more than half its value, or half the
            // smallest level (its row's scale) below it.
            for (i, (x, y)) in w[..200].iter().zip(&q.values()[..200]).enumerate() {
                let smallest = q.scales[i / 100];
                assert!(
                    (x - y).abs() <= (0.5 * x.abs()).max(smallest / 2.0) + 1e-6,
                    "{bits} bits: {x} -> {y}"
                );
            }
        }
    }
}
