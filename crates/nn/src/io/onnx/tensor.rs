//! Decoding `TensorProto`s (initializers, `Constant` values) into validated constants.
//!
//! Every tensor is checked before anything is allocated from its header: dimensions must be
//! non-negative, their product must fit [`tensor_core::shape::MAX_ELEMENTS`] (checked
//! multiplication), and the element count times the element size must equal the bytes of
//! `raw_data` (or the length of the typed field) actually present in the file. Externally
//! stored data (`data_location = EXTERNAL`) is refused: slimnet reads single files.

use tensor_core::{Shape, Tensor};

use super::proto::{TensorProto, data_type};
use crate::error::{NnError, Result};
use crate::io::safetensors::{bf16_to_f32, f16_to_f32};

/// The elements of a constant: floating types widen or narrow to f32, integer and boolean
/// types to i64 (shapes, axes and indices are integers in ONNX graphs).
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// FLOAT, DOUBLE, FLOAT16, BFLOAT16.
    F32(Vec<f32>),
    /// INT8, UINT8, INT16, UINT16, INT32, INT64, UINT32, BOOL.
    I64(Vec<i64>),
}

/// A constant tensor of the graph: dimensions (validated) and elements.
#[derive(Clone, Debug, PartialEq)]
pub struct Const {
    /// Dimensions (empty for a scalar).
    pub dims: Vec<usize>,
    /// Elements, row-major; length = product of `dims`.
    pub data: Data,
}

impl Const {
    /// An f32 constant.
    pub fn f32(dims: Vec<usize>, v: Vec<f32>) -> Self {
        Self {
            dims,
            data: Data::F32(v),
        }
    }

    /// An i64 constant.
    pub fn i64(dims: Vec<usize>, v: Vec<i64>) -> Self {
        Self {
            dims,
            data: Data::I64(v),
        }
    }

    /// Element count.
    pub fn numel(&self) -> usize {
        match &self.data {
            Data::F32(v) => v.len(),
            Data::I64(v) => v.len(),
        }
    }

    /// The elements as f32 (integers converted).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            Data::F32(v) => v.clone(),
            Data::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The elements as i64; float constants must hold integral values.
    pub fn to_i64(&self, what: &str) -> Result<Vec<i64>> {
        match &self.data {
            Data::I64(v) => Ok(v.clone()),
            Data::F32(v) => v
                .iter()
                .map(|&x| {
                    if x.fract() == 0.0 && x.abs() < 9.0e15 {
                        Ok(x as i64)
                    } else {
                        Err(NnError::Unsupported(format!(
                            "{what}: expected integers, found {x}"
                        )))
                    }
                })
                .collect(),
        }
    }

    /// As an f32 [`Tensor`].
    pub fn to_tensor(&self) -> Result<Tensor> {
        Ok(Tensor::new(&self.dims, self.to_f32())?)
    }
}

/// Size in bytes of one element of `data_type` in `raw_data`, for the supported types.
fn elem_size(dt: i32) -> Option<usize> {
    Some(match dt {
        data_type::FLOAT | data_type::INT32 => 4,
        data_type::UINT8 | data_type::INT8 | data_type::BOOL => 1,
        4 | 5 | data_type::FLOAT16 | data_type::BFLOAT16 => 2, // UINT16, INT16
        12 => 4,                                               // UINT32
        data_type::INT64 | data_type::DOUBLE | 13 => 8,        // UINT64
        _ => return None,
    })
}

/// Validates the dimensions of a tensor header: non-negative, product within the limit.
pub fn checked_dims(raw: &[i64], source: &str, what: &str) -> Result<Vec<usize>> {
    let mut dims = Vec::with_capacity(raw.len().min(64));
    for &d in raw {
        if d < 0 {
            return Err(NnError::corrupt(
                source,
                what,
                format!("negative dimension {d} in {raw:?}"),
            ));
        }
        let d = usize::try_from(d).map_err(|_| {
            NnError::corrupt(source, what, format!("dimension {d} does not fit in usize"))
        })?;
        dims.push(d);
    }
    if dims.len() > 64 {
        return Err(NnError::corrupt(
            source,
            what,
            format!("rank {} is absurd", dims.len()),
        ));
    }
    Shape::new(&dims).map_err(|e| NnError::corrupt(source, what, e.to_string()))?;
    Ok(dims)
}

/// Decodes and validates one tensor; `what` names it (`initializer conv1.weight`, ...).
pub fn decode(t: &TensorProto, source: &str, what: &str) -> Result<Const> {
    decode_with_raw(t, &t.raw_data, source, what)
}

/// [`decode`] with the `raw_data` bytes given apart from the header `t` (whose own
/// `raw_data` is ignored): the importer passes a slice of the file buffer (see
/// [`super::wire`]), so the weights go from the file straight into their f32 values.
pub fn decode_with_raw(t: &TensorProto, raw: &[u8], source: &str, what: &str) -> Result<Const> {
    if t.data_location == Some(1) || !t.external_data.is_empty() {
        return Err(NnError::Unsupported(format!(
            "{what}: external data (stored outside the .onnx file) is not supported; \
             re-save the model with onnx.save(model, path, save_as_external_data=False)"
        )));
    }
    let dims = checked_dims(&t.dims, source, what)?;
    // `checked_dims` bounded the product by MAX_ELEMENTS, so it does not overflow.
    let n: usize = dims.iter().product();
    let dt = t.data_type;
    let size = elem_size(dt).ok_or_else(|| {
        NnError::Unsupported(format!(
            "{what}: element type {} ({dt})",
            data_type::name(dt)
        ))
    })?;
    let bad = |have: usize, unit: &str| {
        NnError::corrupt(
            source,
            what,
            format!(
                "dims {dims:?} of {} declare {n} elements, the file holds {have} {unit}",
                data_type::name(dt)
            ),
        )
    };
    if !raw.is_empty() || n == 0 {
        let need = n.checked_mul(size).ok_or_else(|| bad(raw.len(), "bytes"))?;
        if raw.len() != need {
            return Err(NnError::corrupt(
                source,
                what,
                format!(
                    "dims {dims:?} of {} need {need} bytes of raw_data, the file holds {}",
                    data_type::name(dt),
                    raw.len()
                ),
            ));
        }
        let data = match dt {
            data_type::FLOAT => Data::F32(
                raw.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            ),
            data_type::DOUBLE => Data::F32(
                raw.chunks_exact(8)
                    .map(|b| {
                        f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
                    })
                    .collect(),
            ),
            data_type::FLOAT16 => Data::F32(
                raw.chunks_exact(2)
                    .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                    .collect(),
            ),
            data_type::BFLOAT16 => Data::F32(
                raw.chunks_exact(2)
                    .map(|b| bf16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                    .collect(),
            ),
            data_type::INT8 => Data::I64(raw.iter().map(|&b| b as i8 as i64).collect()),
            data_type::UINT8 | data_type::BOOL => {
                Data::I64(raw.iter().map(|&b| b as i64).collect())
            }
            4 => Data::I64(
                raw.chunks_exact(2)
                    .map(|b| u16::from_le_bytes([b[0], b[1]]) as i64)
                    .collect(),
            ),
            5 => Data::I64(
                raw.chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]) as i64)
                    .collect(),
            ),
            data_type::INT32 => Data::I64(
                raw.chunks_exact(4)
                    .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64)
                    .collect(),
            ),
            12 => Data::I64(
                raw.chunks_exact(4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64)
                    .collect(),
            ),
            data_type::INT64 => Data::I64(
                raw.chunks_exact(8)
                    .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                    .collect(),
            ),
            _ => Data::I64(
                // UINT64: values beyond i64 are not meaningful for shapes or indices.
                raw.chunks_exact(8)
                    .map(|b| {
                        u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
                            .min(i64::MAX as u64) as i64
                    })
                    .collect(),
            ),
        };
        return Ok(Const { dims, data });
    }
    let data = match dt {
        data_type::FLOAT => {
            if t.float_data.len() != n {
                return Err(bad(t.float_data.len(), "float_data values"));
            }
            Data::F32(t.float_data.clone())
        }
        data_type::DOUBLE => {
            if t.double_data.len() != n {
                return Err(bad(t.double_data.len(), "double_data values"));
            }
            Data::F32(t.double_data.iter().map(|&x| x as f32).collect())
        }
        data_type::FLOAT16 | data_type::BFLOAT16 => {
            if t.int32_data.len() != n {
                return Err(bad(t.int32_data.len(), "int32_data values"));
            }
            let conv = if dt == data_type::FLOAT16 {
                f16_to_f32
            } else {
                bf16_to_f32
            };
            Data::F32(t.int32_data.iter().map(|&x| conv(x as u16)).collect())
        }
        data_type::INT64 => {
            if t.int64_data.len() != n {
                return Err(bad(t.int64_data.len(), "int64_data values"));
            }
            Data::I64(t.int64_data.clone())
        }
        12 | 13 => {
            if t.uint64_data.len() != n {
                return Err(bad(t.uint64_data.len(), "uint64_data values"));
            }
            Data::I64(
                t.uint64_data
                    .iter()
                    .map(|&x| x.min(i64::MAX as u64) as i64)
                    .collect(),
            )
        }
        _ => {
            if t.int32_data.len() != n {
                return Err(bad(t.int32_data.len(), "int32_data values"));
            }
            Data::I64(t.int32_data.iter().map(|&x| x as i64).collect())
        }
    };
    Ok(Const { dims, data })
}

/// Encodes an f32 tensor as a `TensorProto` with `raw_data` (little-endian).
pub fn encode_f32(name: &str, dims: &[usize], values: &[f32]) -> TensorProto {
    let mut raw = Vec::with_capacity(values.len() * 4);
    for v in values {
        raw.extend_from_slice(&v.to_le_bytes());
    }
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: data_type::FLOAT,
        name: name.to_string(),
        raw_data: raw,
        ..Default::default()
    }
}

/// Encodes an i64 tensor as a `TensorProto` with `raw_data` (little-endian).
pub fn encode_i64(name: &str, dims: &[usize], values: &[i64]) -> TensorProto {
    let mut raw = Vec::with_capacity(values.len() * 8);
    for v in values {
        raw.extend_from_slice(&v.to_le_bytes());
    }
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: data_type::INT64,
        name: name.to_string(),
        raw_data: raw,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_typed_data_decode() {
        let t = encode_f32("w", &[2, 2], &[1.0, -2.0, 3.5, 0.0]);
        let c = decode(&t, "mem", "w").unwrap();
        assert_eq!(c, Const::f32(vec![2, 2], vec![1.0, -2.0, 3.5, 0.0]));
        let t = TensorProto {
            dims: vec![3],
            data_type: data_type::INT64,
            int64_data: vec![1, -1, 5],
            ..Default::default()
        };
        assert_eq!(
            decode(&t, "mem", "s").unwrap(),
            Const::i64(vec![3], vec![1, -1, 5])
        );
        let t = TensorProto {
            dims: vec![2],
            data_type: data_type::FLOAT16,
            int32_data: vec![0x3c00, 0xc000],
            ..Default::default()
        };
        assert_eq!(
            decode(&t, "mem", "h").unwrap(),
            Const::f32(vec![2], vec![1.0, -2.0])
        );
    }

    #[test]
    fn declared_size_must_match_data() {
        let mut t = encode_f32("w", &[2, 2], &[1.0; 4]);
        t.raw_data.pop();
        let e = decode(&t, "mem", "initializer w").unwrap_err().to_string();
        assert!(e.contains("need 16 bytes") && e.contains("holds 15"), "{e}");
        t.dims = vec![1 << 40, 1 << 40];
        let e = decode(&t, "mem", "initializer w").unwrap_err().to_string();
        assert!(e.contains("too large"), "{e}");
        t.dims = vec![-1, 4];
        assert!(decode(&t, "mem", "w").is_err());
        let t = TensorProto {
            dims: vec![5],
            data_type: data_type::FLOAT,
            float_data: vec![1.0; 4],
            ..Default::default()
        };
        assert!(decode(&t, "mem", "w").is_err());
        let t = TensorProto {
            dims: vec![1],
            data_type: 8, // STRING
            ..Default::default()
        };
        assert!(
            decode(&t, "mem", "w")
                .unwrap_err()
                .to_string()
                .contains("STRING")
        );
        let t = TensorProto {
            dims: vec![1],
            data_type: data_type::FLOAT,
            data_location: Some(1),
            ..Default::default()
        };
        assert!(
            decode(&t, "mem", "w")
                .unwrap_err()
                .to_string()
                .contains("external")
        );
    }
}
