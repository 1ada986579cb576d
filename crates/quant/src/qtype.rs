//! Integer code types: `bits` in `2..=8`, signed or unsigned, and their code ranges.

use std::fmt;

use crate::error::{QuantError, Result};

/// An integer code type of `bits` bits (2 to 8), signed (`[-2^(b-1), 2^(b-1) - 1]`) or
/// unsigned (`[0, 2^b - 1]`), as ONNX's INT2/UINT2, INT4/UINT4 and INT8/UINT8 (opset 21+)
/// define them; 3, 5, 6 and 7 bits follow the same rule.
///
/// **Reduced range** (FBGEMM's and PyTorch's `reduce_range`): [`QuantType::U7`], unsigned
/// codes in `0..=127` stored in a `u8`, is the activation type of slimnet's quantized layers.
/// With 7-bit activations, AVX2's `vpmaddubsw`, which adds two u8 x i8 products into a
/// *saturating* i16, never saturates (`2 * 127 * 128 = 32_512 < 32_767`), so the AVX2 int8
/// GEMM runs twice the multiply-adds per instruction of the widening path and still equals
/// the portable and VNNI paths bit for bit. The range is a property of the quantization
/// parameters (the scale is chosen for 128 levels), not of a kernel, so every path computes
/// the same integers; it costs one bit of activation resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QuantType {
    bits: u8,
    signed: bool,
}

impl QuantType {
    /// ONNX INT8: `[-128, 127]`.
    pub const I8: QuantType = QuantType {
        bits: 8,
        signed: true,
    };
    /// ONNX UINT8: `[0, 255]`.
    pub const U8: QuantType = QuantType {
        bits: 8,
        signed: false,
    };
    /// Reduced-range activations: `[0, 127]` in a `u8` (see the type's docs).
    pub const U7: QuantType = QuantType {
        bits: 7,
        signed: false,
    };

    /// A `bits`-bit type, `bits` in `2..=8`.
    pub fn new(bits: u32, signed: bool) -> Result<Self> {
        if !(2..=8).contains(&bits) {
            return Err(QuantError::InvalidBits {
                op: "QuantType::new",
                bits,
            });
        }
        Ok(Self {
            bits: bits as u8,
            signed,
        })
    }

    /// Bits per code.
    pub fn bits(self) -> u32 {
        u32::from(self.bits)
    }

    /// Whether codes are signed.
    pub fn signed(self) -> bool {
        self.signed
    }

    /// Smallest code.
    pub fn qmin(self) -> i32 {
        if self.signed {
            -(1 << (self.bits - 1))
        } else {
            0
        }
    }

    /// Largest code.
    pub fn qmax(self) -> i32 {
        if self.signed {
            (1 << (self.bits - 1)) - 1
        } else {
            (1 << self.bits) - 1
        }
    }

    /// Number of distinct codes, `2^bits`.
    pub fn levels(self) -> u32 {
        1 << self.bits
    }
}

impl fmt::Display for QuantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", if self.signed { 'i' } else { 'u' }, self.bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_match_onnx_types() {
        let cases = [
            (8, true, -128, 127),
            (8, false, 0, 255),
            (4, true, -8, 7),
            (4, false, 0, 15),
            (2, true, -2, 1),
            (2, false, 0, 3),
            (7, false, 0, 127),
        ];
        for (bits, signed, lo, hi) in cases {
            let t = QuantType::new(bits, signed).unwrap();
            assert_eq!((t.qmin(), t.qmax()), (lo, hi), "{t}");
            assert_eq!((t.qmax() - t.qmin() + 1) as u32, t.levels());
        }
        assert_eq!(QuantType::U7, QuantType::new(7, false).unwrap());
    }

    #[test]
    fn widths_outside_2_to_8_are_refused() {
        for bits in [0, 1, 9, 16] {
            let e = QuantType::new(bits, true).unwrap_err().to_string();
            assert!(e.contains(&format!("{bits} bits")), "{e}");
        }
    }
}
