//! Quantization parameters of a tensor: one (scale, zero point) per tensor or per channel
//! along an axis, chosen from observed ranges symmetrically or asymmetrically.

use crate::affine::{dequantize_value, quantize_value};
use crate::error::{QuantError, Result};
use crate::qtype::QuantType;

/// How ranges map to codes.
///
/// - **Asymmetric**: the range is widened to include 0 (`min' = min(min, 0)`,
///   `max' = max(max, 0)`), `scale = (max' - min') / (qmax - qmin)` and
///   `zero_point = clamp(round_half_even(qmin - min' / scale))`, so 0 is exact (ONNX Runtime's
///   `compute_scale_zp`).
/// - **Symmetric**: `scale = max(|min|, |max|) / m` and the zero point sits at the middle
///   code: `zero_point = 0`, `m = qmax` for a signed type (the code `qmin` is then unused,
///   "restricted range"); `zero_point = 2^(bits-1)`, `m = qmax - zero_point` for an unsigned one.
///
/// An all-zero range gets `scale = 1` (every value is then the zero point).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Symmetry {
    /// Zero point chosen from the range.
    #[default]
    Asymmetric,
    /// Zero point fixed at the middle of the codes.
    Symmetric,
}

/// Scales and zero points of one tensor: a single pair (`axis == None`, per tensor) or one
/// pair per index of dimension `axis` (per channel; axis 0 is the output channel of a linear
/// `[out, in]` or conv `[out, in, kh, kw]` weight).
#[derive(Clone, Debug, PartialEq)]
pub struct QuantParams {
    qtype: QuantType,
    scales: Vec<f32>,
    zero_points: Vec<i32>,
    axis: Option<usize>,
}

impl QuantParams {
    /// Parameters from explicit scales and zero points (one each, or one per channel when
    /// `axis` is set); every scale finite and > 0, every zero point a code of `qtype`.
    pub fn new(
        qtype: QuantType,
        scales: Vec<f32>,
        zero_points: Vec<i32>,
        axis: Option<usize>,
    ) -> Result<Self> {
        const OP: &str = "QuantParams::new";
        if scales.len() != zero_points.len() {
            return Err(QuantError::LengthMismatch {
                op: OP,
                what: "zero_points",
                got: zero_points.len(),
                expected: scales.len(),
            });
        }
        if scales.is_empty() || (axis.is_none() && scales.len() != 1) {
            return Err(QuantError::LengthMismatch {
                op: OP,
                what: "scales (per tensor)",
                got: scales.len(),
                expected: 1,
            });
        }
        for (channel, (&scale, &zero_point)) in scales.iter().zip(&zero_points).enumerate() {
            if !(scale.is_finite() && scale > 0.0) {
                return Err(QuantError::InvalidScale {
                    op: OP,
                    channel,
                    scale,
                });
            }
            if !(qtype.qmin()..=qtype.qmax()).contains(&zero_point) {
                return Err(QuantError::InvalidZeroPoint {
                    op: OP,
                    channel,
                    zero_point,
                    qmin: qtype.qmin(),
                    qmax: qtype.qmax(),
                });
            }
        }
        Ok(Self {
            qtype,
            scales,
            zero_points,
            axis,
        })
    }

    /// Per-tensor parameters for values in `[min, max]`.
    pub fn from_range(qtype: QuantType, symmetry: Symmetry, min: f32, max: f32) -> Result<Self> {
        let (s, z) = scale_zero_point(qtype, symmetry, min, max, 0)?;
        Self::new(qtype, vec![s], vec![z], None)
    }

    /// Per-channel parameters along `axis`, channel `c` covering `[mins[c], maxs[c]]`.
    pub fn from_channel_ranges(
        qtype: QuantType,
        symmetry: Symmetry,
        axis: usize,
        mins: &[f32],
        maxs: &[f32],
    ) -> Result<Self> {
        if mins.len() != maxs.len() {
            return Err(QuantError::LengthMismatch {
                op: "QuantParams::from_channel_ranges",
                what: "maxs",
                got: maxs.len(),
                expected: mins.len(),
            });
        }
        let (scales, zero_points) = mins
            .iter()
            .zip(maxs)
            .enumerate()
            .map(|(c, (&lo, &hi))| scale_zero_point(qtype, symmetry, lo, hi, c))
            .collect::<Result<(Vec<_>, Vec<_>)>>()?;
        Self::new(qtype, scales, zero_points, Some(axis))
    }

    /// Min-max parameters of a tensor with dimensions `dims` (per tensor, or per channel
    /// along `axis`).
    pub fn from_data(
        qtype: QuantType,
        symmetry: Symmetry,
        axis: Option<usize>,
        data: &[f32],
        dims: &[usize],
    ) -> Result<Self> {
        match axis {
            None => {
                let (lo, hi) = min_max(data);
                Self::from_range(qtype, symmetry, lo, hi)
            }
            Some(axis) => {
                let layout = ChannelLayout::new("QuantParams::from_data", dims, axis, data.len())?;
                let mut mins = vec![f32::INFINITY; layout.channels];
                let mut maxs = vec![f32::NEG_INFINITY; layout.channels];
                for (i, &x) in data.iter().enumerate() {
                    let c = layout.channel_of(i);
                    mins[c] = mins[c].min(x);
                    maxs[c] = maxs[c].max(x);
                }
                let fix = |v: f32| if v.is_finite() { v } else { 0.0 };
                let mins: Vec<f32> = mins.into_iter().map(fix).collect();
                let maxs: Vec<f32> = maxs.into_iter().map(fix).collect();
                Self::from_channel_ranges(qtype, symmetry, axis, &mins, &maxs)
            }
        }
    }

    /// The code type.
    pub fn qtype(&self) -> QuantType {
        self.qtype
    }

    /// One scale per tensor or per channel.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// One zero point per tensor or per channel.
    pub fn zero_points(&self) -> &[i32] {
        &self.zero_points
    }

    /// The per-channel axis, `None` per tensor.
    pub fn axis(&self) -> Option<usize> {
        self.axis
    }

    /// Codes of `data` (a tensor of dimensions `dims`), as ONNX QuantizeLinear computes them.
    pub fn quantize(&self, data: &[f32], dims: &[usize]) -> Result<Vec<i32>> {
        self.map("QuantParams::quantize", data, dims, |x, s, z| {
            quantize_value(x, s, z, self.qtype)
        })
    }

    /// Values of `codes` (a tensor of dimensions `dims`), as ONNX DequantizeLinear computes them.
    pub fn dequantize(&self, codes: &[i32], dims: &[usize]) -> Result<Vec<f32>> {
        self.map("QuantParams::dequantize", codes, dims, dequantize_value)
    }

    /// `dequantize(quantize(data))`.
    pub fn fake_quantize(&self, data: &[f32], dims: &[usize]) -> Result<Vec<f32>> {
        self.map("QuantParams::fake_quantize", data, dims, |x, s, z| {
            dequantize_value(quantize_value(x, s, z, self.qtype), s, z)
        })
    }

    /// Codes of `data` stored as `i8` (signed types only).
    pub fn quantize_i8(&self, data: &[f32], dims: &[usize]) -> Result<Vec<i8>> {
        self.require_storage("QuantParams::quantize_i8", true, "i8")?;
        // Codes of a signed type of at most 8 bits fit in i8.
        Ok(self
            .quantize(data, dims)?
            .into_iter()
            .map(|q| q as i8)
            .collect())
    }

    /// Codes of `data` stored as `u8` (unsigned types only).
    pub fn quantize_u8(&self, data: &[f32], dims: &[usize]) -> Result<Vec<u8>> {
        self.require_storage("QuantParams::quantize_u8", false, "u8")?;
        // Codes of an unsigned type of at most 8 bits fit in u8.
        Ok(self
            .quantize(data, dims)?
            .into_iter()
            .map(|q| q as u8)
            .collect())
    }

    fn require_storage(&self, op: &'static str, signed: bool, storage: &'static str) -> Result<()> {
        if self.qtype.signed() == signed {
            Ok(())
        } else {
            Err(QuantError::StorageType {
                op,
                qtype: self.qtype.to_string(),
                storage,
            })
        }
    }

    /// Applies `f(value, scale, zero_point)` elementwise with each element's channel parameters.
    fn map<T: Copy, U>(
        &self,
        op: &'static str,
        data: &[T],
        dims: &[usize],
        f: impl Fn(T, f32, i32) -> U,
    ) -> Result<Vec<U>> {
        let expected: usize = dims.iter().product();
        if data.len() != expected {
            return Err(QuantError::LengthMismatch {
                op,
                what: "data",
                got: data.len(),
                expected,
            });
        }
        match self.axis {
            None => {
                let (s, z) = (self.scales[0], self.zero_points[0]);
                Ok(data.iter().map(|&x| f(x, s, z)).collect())
            }
            Some(axis) => {
                let layout = ChannelLayout::new(op, dims, axis, data.len())?;
                if layout.channels != self.scales.len() {
                    return Err(QuantError::LengthMismatch {
                        op,
                        what: "scales (one per channel)",
                        got: self.scales.len(),
                        expected: layout.channels,
                    });
                }
                Ok(data
                    .iter()
                    .enumerate()
                    .map(|(i, &x)| {
                        let c = layout.channel_of(i);
                        f(x, self.scales[c], self.zero_points[c])
                    })
                    .collect())
            }
        }
    }
}

/// Which channel of `axis` each row-major element belongs to: `(i / inner) % channels`.
struct ChannelLayout {
    channels: usize,
    inner: usize,
}

impl ChannelLayout {
    fn new(op: &'static str, dims: &[usize], axis: usize, len: usize) -> Result<Self> {
        if axis >= dims.len() {
            return Err(QuantError::InvalidAxis {
                op,
                axis,
                dims: dims.to_vec(),
            });
        }
        let expected: usize = dims.iter().product();
        if expected != len {
            return Err(QuantError::LengthMismatch {
                op,
                what: "data",
                got: len,
                expected,
            });
        }
        Ok(Self {
            channels: dims[axis],
            inner: dims[axis + 1..].iter().product::<usize>().max(1),
        })
    }

    #[inline]
    fn channel_of(&self, i: usize) -> usize {
        (i / self.inner) % self.channels
    }
}

/// Smallest and largest finite values (`(0, 0)` when there are none).
pub fn min_max(data: &[f32]) -> (f32, f32) {
    let (lo, hi) = data
        .iter()
        .filter(|x| x.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        });
    if lo > hi { (0.0, 0.0) } else { (lo, hi) }
}

/// `(scale, zero_point)` for `[min, max]` (see [`Symmetry`] for the formulas).
pub fn scale_zero_point(
    qtype: QuantType,
    symmetry: Symmetry,
    min: f32,
    max: f32,
    channel: usize,
) -> Result<(f32, i32)> {
    if !(min.is_finite() && max.is_finite() && min <= max) {
        return Err(QuantError::InvalidRange {
            op: "scale_zero_point",
            channel,
            min,
            max,
        });
    }
    let (qmin, qmax) = (qtype.qmin(), qtype.qmax());
    let (lo, hi) = (min.min(0.0), max.max(0.0));
    let (scale, zero_point) = match symmetry {
        Symmetry::Symmetric => {
            let zero_point = if qtype.signed() {
                0
            } else {
                1 << (qtype.bits() - 1)
            };
            let absmax = lo.abs().max(hi.abs());
            (absmax / (qmax - zero_point) as f32, zero_point)
        }
        Symmetry::Asymmetric => {
            let scale = (hi - lo) / (qmax - qmin) as f32;
            let zero_point = if scale > 0.0 {
                ((qmin as f32 - lo / scale).round_ties_even() as i32).clamp(qmin, qmax)
            } else {
                qmin.max(0)
            };
            (scale, zero_point)
        }
    };
    if scale > 0.0 && scale.is_finite() {
        Ok((scale, zero_point))
    } else {
        Ok((1.0, zero_point))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asymmetric_range_keeps_zero_exact_and_covers_the_ends() {
        let t = QuantType::U8;
        let p = QuantParams::from_range(t, Symmetry::Asymmetric, -1.0, 3.0).unwrap();
        let q = p.quantize(&[0.0, -1.0, 3.0], &[3]).unwrap();
        assert_eq!(q[1], 0);
        assert_eq!(q[2], 255);
        assert_eq!(p.dequantize(&q[..1], &[1]).unwrap(), [0.0]);
    }

    #[test]
    fn symmetric_zero_points_sit_in_the_middle() {
        let s = QuantParams::from_range(QuantType::I8, Symmetry::Symmetric, -0.5, 2.0).unwrap();
        assert_eq!(s.zero_points(), [0]);
        assert_eq!(s.quantize(&[2.0, -2.0], &[2]).unwrap(), [127, -127]);
        let u = QuantParams::from_range(QuantType::U8, Symmetry::Symmetric, -0.5, 2.0).unwrap();
        assert_eq!(u.zero_points(), [128]);
        assert_eq!(u.quantize(&[2.0, -2.0], &[2]).unwrap(), [255, 1]);
    }

    #[test]
    fn per_channel_uses_each_rows_parameters() {
        // Two output channels of a [2, 1, 2] weight with very different ranges.
        let w = [0.1f32, -0.2, 10.0, -20.0];
        let p = QuantParams::from_data(QuantType::I8, Symmetry::Symmetric, Some(0), &w, &[2, 1, 2])
            .unwrap();
        assert_eq!(p.scales().len(), 2);
        assert_eq!(p.quantize(&w, &[2, 1, 2]).unwrap(), [64, -127, 64, -127]);
        let back = p.fake_quantize(&w, &[2, 1, 2]).unwrap();
        for (c, (&x, &y)) in w.iter().zip(&back).enumerate() {
            assert!((x - y).abs() <= p.scales()[c / 2] / 2.0, "{x} vs {y}");
        }
    }

    #[test]
    fn all_zero_range_gets_unit_scale() {
        let p = QuantParams::from_range(QuantType::U7, Symmetry::Asymmetric, 0.0, 0.0).unwrap();
        assert_eq!((p.scales(), p.zero_points()), (&[1.0f32][..], &[0][..]));
    }

    #[test]
    fn bad_parameters_are_named() {
        let e = QuantParams::new(QuantType::I8, vec![0.0], vec![0], None).unwrap_err();
        assert!(e.to_string().contains("scale 0"), "{e}");
        let e = QuantParams::new(QuantType::U8, vec![1.0], vec![256], None).unwrap_err();
        assert!(e.to_string().contains("zero point 256"), "{e}");
        let e = QuantParams::from_range(QuantType::U8, Symmetry::Asymmetric, 1.0, f32::NAN)
            .unwrap_err();
        assert!(e.to_string().contains("range"), "{e}");
        let p = QuantParams::from_range(QuantType::U8, Symmetry::Asymmetric, 0.0, 1.0).unwrap();
        let e = p.quantize_i8(&[0.5], &[1]).unwrap_err();
        assert!(e.to_string().contains("u8 codes do not fit in i8"), "{e}");
        let e = p.quantize(&[0.5, 1.0], &[3]).unwrap_err();
        assert!(e.to_string().contains("expected 3"), "{e}");
    }
}
