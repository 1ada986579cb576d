//! Affine quantization of one value, exactly as ONNX QuantizeLinear / DequantizeLinear
//! (opset 21) define it:
//!
//! - quantize: `q = saturate(round_half_even(x / scale) + zero_point)` with the division in
//!   f32 and saturation to the type's `[qmin, qmax]`;
//! - dequantize: `x' = (f32(q) - f32(zero_point)) * scale`.
//!
//! Hence `|x - x'| <= scale / 2` for every `x` inside the representable range
//! `[(qmin - zp) * scale, (qmax - zp) * scale]`. A NaN input quantizes to the zero point
//! (ONNX leaves NaN undefined for integer outputs); infinities saturate.

use crate::qtype::QuantType;

/// Bound on a rounded quotient before the zero point is added: wider than any code range,
/// small enough for [`round_half_even`]'s trick and for the i32 add.
const QUOTIENT_BOUND: f32 = 65_536.0;

/// `clamp(v, -65536, 65536)` rounded half to even, as an integer; NaN gives 0.
///
/// Adding and subtracting `1.5 * 2^23` rounds any `|v| <= 2^22` to an integer in the FPU's
/// default mode (round to nearest, ties to even), exactly as `f32::round_ties_even`, which on
/// x86-64 without SSE4.1 is a call to `rintf` (18% of a quantized lenet5's time before).
#[inline(always)]
pub fn round_half_even(v: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0;
    let c = v.clamp(-QUOTIENT_BOUND, QUOTIENT_BOUND);
    ((c + MAGIC) - MAGIC) as i32
}

/// [`round_half_even`] kept in f32: the same integer, as an f32 (exact: it lies within
/// `±65_536`). Integer-valued f32 arithmetic vectorises on baseline x86-64, where the
/// saturating f32 -> i32 conversion of [`round_half_even`] is one scalar `cvttss2si` per value.
#[inline(always)]
pub fn round_half_even_f32(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (v.clamp(-QUOTIENT_BOUND, QUOTIENT_BOUND) + MAGIC) - MAGIC
}

/// The code of `x`: `clamp(round_half_even(x / scale) + zero_point, qmin, qmax)`.
#[inline]
pub fn quantize_value(x: f32, scale: f32, zero_point: i32, qtype: QuantType) -> i32 {
    // The quotient is clamped (NaN to 0) before the integer add, so it cannot overflow.
    (round_half_even(x / scale) + zero_point).clamp(qtype.qmin(), qtype.qmax())
}

/// The real value of code `q`: `(f32(q) - f32(zero_point)) * scale`.
#[inline]
pub fn dequantize_value(q: i32, scale: f32, zero_point: i32) -> f32 {
    (q as f32 - zero_point as f32) * scale
}

/// `dequantize(quantize(x))`: the value quantization-aware training and the fake-quant
/// reference see.
#[inline]
pub fn fake_quantize_value(x: f32, scale: f32, zero_point: i32, qtype: QuantType) -> f32 {
    dequantize_value(
        quantize_value(x, scale, zero_point, qtype),
        scale,
        zero_point,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_rounding_equals_round_ties_even() {
        let mut rng = tensor_core::rng::Rng::seed_from_u64(3);
        let mut xs: Vec<f32> = (-600..600).map(|i| i as f32 * 0.25).collect();
        xs.extend((0..100_000).map(|_| rng.normal() * 1000.0));
        xs.extend([65_535.5, -65_535.5, 65_536.0, 1e9, -1e9, 0.49999997, -0.0]);
        for x in xs {
            let want = x.round_ties_even().clamp(-65_536.0, 65_536.0) as i32;
            assert_eq!(round_half_even(x), want, "{x}");
        }
        assert_eq!(round_half_even(f32::NAN), 0);
    }

    #[test]
    fn ties_round_to_even() {
        let t = QuantType::I8;
        let codes: Vec<i32> = [0.5f32, 1.5, 2.5, -0.5, -1.5, -2.5]
            .iter()
            .map(|&x| quantize_value(x, 1.0, 0, t))
            .collect();
        assert_eq!(codes, [0, 2, 2, 0, -2, -2]);
    }

    #[test]
    fn saturates_at_both_ends_and_handles_non_finite() {
        let t = QuantType::U8;
        assert_eq!(quantize_value(1e30, 0.1, 10, t), 255);
        assert_eq!(quantize_value(-1e30, 0.1, 10, t), 0);
        assert_eq!(quantize_value(f32::INFINITY, 0.1, 10, t), 255);
        assert_eq!(quantize_value(f32::NEG_INFINITY, 0.1, 10, t), 0);
        assert_eq!(quantize_value(f32::NAN, 0.1, 10, t), 10);
        // A zero point at the end of the range: everything below it saturates to it.
        assert_eq!(quantize_value(-3.0, 1.0, 0, t), 0);
        assert_eq!(quantize_value(3.0, 1.0, 255, t), 255);
    }

    #[test]
    fn error_is_at_most_half_a_step_inside_the_range() {
        let mut rng = tensor_core::rng::Rng::seed_from_u64(7);
        for bits in 2..=8 {
            for signed in [false, true] {
                let t = QuantType::new(bits, signed).unwrap();
                let scale = 0.037f32;
                let zp = (t.qmin() + t.qmax()) / 2;
                let lo = (t.qmin() - zp) as f32 * scale;
                let hi = (t.qmax() - zp) as f32 * scale;
                for _ in 0..1000 {
                    let x = lo + (hi - lo) * rng.uniform();
                    let err = (x - fake_quantize_value(x, scale, zp, t)).abs();
                    assert!(err <= scale / 2.0 * (1.0 + 1e-5), "{t}: x={x} err={err}");
                }
            }
        }
    }
}
