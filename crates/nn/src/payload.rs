//! Typed payloads: the integer arrays and byte blobs compressed layers store (sparse indices,
//! int8 weights, packed bit words, codebook indices, Huffman-coded streams), kept as what they
//! are, never as f32.
//!
//! A [`Payload`] is an element type, dimensions and the elements. In a model file it is
//! written as the element type's code, the dimensions and the elements' little-endian bytes
//! (see docs/FORMAT.md); reading checks that the byte count is exactly the product of the
//! dimensions times the element size before any typed buffer is built, so a corrupt length
//! is an error, never a large allocation.
//!
//! ```
//! use nn::payload::Payload;
//! use nn::LayerRecord;
//!
//! let rec = LayerRecord::new("sparse_linear")
//!     .with_payload("col_idx", Payload::u16(&[3], vec![0, 5, 7]).unwrap());
//! assert_eq!(rec.u16s("col_idx", &[3]).unwrap(), &[0, 5, 7]);
//! // Asking for another type or other dimensions names the record and the payload.
//! let e = rec.u8s("col_idx", &[3]).unwrap_err().to_string();
//! assert!(e.contains("sparse_linear") && e.contains("col_idx"));
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{NnError, Result};

/// Most dimensions a payload may have.
pub const MAX_PAYLOAD_RANK: usize = 8;

/// Most elements a payload may hold (2^36, the element cap of [`tensor_core::Shape`]'s order).
pub const MAX_PAYLOAD_ELEMENTS: u64 = 1 << 36;

/// The elements of a payload, by type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PayloadData {
    /// Unsigned bytes (uint8 activations or weights, b-bit codes unpacked to bytes).
    U8(Vec<u8>),
    /// Signed bytes (int8 weights).
    I8(Vec<i8>),
    /// 16-bit unsigned integers (column indices, gaps, codebook indices).
    U16(Vec<u16>),
    /// 32-bit signed integers (int32 biases, row pointers).
    I32(Vec<i32>),
    /// 64-bit words (packed binary weights, LSB-first).
    U64(Vec<u64>),
    /// An opaque byte blob (a Huffman-coded stream, a bit-packed index array); its one
    /// dimension is its length.
    Bytes(Vec<u8>),
}

impl PayloadData {
    /// The element type's name, as errors and `slimnet inspect` print it.
    pub fn type_name(&self) -> &'static str {
        ElemType::of(self).name()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            PayloadData::U8(v) | PayloadData::Bytes(v) => v.len(),
            PayloadData::I8(v) => v.len(),
            PayloadData::U16(v) => v.len(),
            PayloadData::I32(v) => v.len(),
            PayloadData::U64(v) => v.len(),
        }
    }

    /// Whether there is no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the elements occupy (as stored in a file, headers excluded).
    pub fn byte_len(&self) -> usize {
        self.len() * ElemType::of(self).size()
    }
}

/// The element type code written in files (docs/FORMAT.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ElemType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I32 = 3,
    U64 = 4,
    Bytes = 5,
}

impl ElemType {
    fn of(d: &PayloadData) -> Self {
        match d {
            PayloadData::U8(_) => ElemType::U8,
            PayloadData::I8(_) => ElemType::I8,
            PayloadData::U16(_) => ElemType::U16,
            PayloadData::I32(_) => ElemType::I32,
            PayloadData::U64(_) => ElemType::U64,
            PayloadData::Bytes(_) => ElemType::Bytes,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => ElemType::U8,
            1 => ElemType::I8,
            2 => ElemType::U16,
            3 => ElemType::I32,
            4 => ElemType::U64,
            5 => ElemType::Bytes,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            ElemType::U8 | ElemType::I8 | ElemType::Bytes => 1,
            ElemType::U16 => 2,
            ElemType::I32 => 4,
            ElemType::U64 => 8,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ElemType::U8 => "u8",
            ElemType::I8 => "i8",
            ElemType::U16 => "u16",
            ElemType::I32 => "i32",
            ElemType::U64 => "u64",
            ElemType::Bytes => "bytes",
        }
    }
}

/// A typed integer array (or byte blob) with its dimensions; the element count always equals
/// the product of the dimensions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "RawPayload", try_from = "RawPayload")]
pub struct Payload {
    dims: Vec<usize>,
    data: PayloadData,
}

/// The element count of `dims`, checked against the rank and element limits.
fn checked_numel(dims: &[usize]) -> std::result::Result<usize, String> {
    if dims.len() > MAX_PAYLOAD_RANK {
        return Err(format!(
            "{} dimensions, at most {MAX_PAYLOAD_RANK}",
            dims.len()
        ));
    }
    let mut n: u64 = 1;
    for &d in dims {
        n = n
            .checked_mul(d as u64)
            .filter(|&n| n <= MAX_PAYLOAD_ELEMENTS)
            .ok_or_else(|| format!("dimensions {dims:?} exceed {MAX_PAYLOAD_ELEMENTS} elements"))?;
    }
    Ok(n as usize)
}

macro_rules! constructor {
    ($(#[$doc:meta])* $name:ident, $t:ty, $variant:ident) => {
        $(#[$doc])*
        pub fn $name(dims: &[usize], data: Vec<$t>) -> Result<Self> {
            Self::new(dims, PayloadData::$variant(data))
        }
    };
}

impl Payload {
    /// A payload of `data` with dimensions `dims`. Errors: the element count differs from the
    /// product of `dims`, or the dimensions exceed the limits.
    pub fn new(dims: &[usize], data: PayloadData) -> Result<Self> {
        let n = checked_numel(dims).map_err(|r| NnError::Config(format!("payload: {r}")))?;
        if n != data.len() {
            return Err(NnError::Config(format!(
                "payload: {} {} elements for dimensions {dims:?} ({n} expected)",
                data.len(),
                data.type_name()
            )));
        }
        Ok(Self {
            dims: dims.to_vec(),
            data,
        })
    }

    constructor!(
        /// A `u8` payload.
        u8, u8, U8
    );
    constructor!(
        /// An `i8` payload.
        i8, i8, I8
    );
    constructor!(
        /// A `u16` payload.
        u16, u16, U16
    );
    constructor!(
        /// An `i32` payload.
        i32, i32, I32
    );
    constructor!(
        /// A `u64` payload (packed bit words).
        u64, u64, U64
    );

    /// An opaque byte blob (one dimension, its length).
    pub fn bytes(data: Vec<u8>) -> Self {
        Self {
            dims: vec![data.len()],
            data: PayloadData::Bytes(data),
        }
    }

    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    /// The elements.
    pub fn data(&self) -> &PayloadData {
        &self.data
    }

    /// Bytes the elements occupy as stored.
    pub fn byte_len(&self) -> usize {
        self.data.byte_len()
    }

    /// The element type code (the `elem` of docs/FORMAT.md), the dimensions and the
    /// elements as little-endian bytes: the stored form, for containers that code the bytes
    /// further.
    pub fn to_le_parts(&self) -> (u8, Vec<u64>, Vec<u8>) {
        let raw = RawPayload::from(self.clone());
        (raw.elem, raw.dims, raw.bytes)
    }

    /// The inverse of [`Payload::to_le_parts`]. Errors: an unknown element type, dimensions
    /// past the limits, or a byte count other than elements × element size.
    pub fn from_le_parts(elem: u8, dims: Vec<u64>, bytes: Vec<u8>) -> Result<Self> {
        Self::try_from(RawPayload { elem, dims, bytes }).map_err(NnError::Config)
    }

    /// The byte count a payload of element type `elem` and dimensions `dims` must hold, or
    /// `None` for an unknown type or dimensions past the limits (checked before anything is
    /// allocated from them).
    pub fn expected_byte_len(elem: u8, dims: &[u64]) -> Option<u64> {
        let size = ElemType::from_code(elem)?.size() as u64;
        let dims: Vec<usize> = dims
            .iter()
            .map(|&d| usize::try_from(d).ok())
            .collect::<Option<_>>()?;
        Some(checked_numel(&dims).ok()? as u64 * size)
    }
}

/// The serialized form: element type code, dimensions, little-endian element bytes.
#[derive(Serialize, Deserialize)]
struct RawPayload {
    elem: u8,
    dims: Vec<u64>,
    bytes: Vec<u8>,
}

impl From<Payload> for RawPayload {
    fn from(p: Payload) -> Self {
        let elem = ElemType::of(&p.data) as u8;
        let bytes = match p.data {
            PayloadData::U8(v) | PayloadData::Bytes(v) => v,
            PayloadData::I8(v) => v.into_iter().map(|x| x as u8).collect(),
            PayloadData::U16(v) => v.into_iter().flat_map(u16::to_le_bytes).collect(),
            PayloadData::I32(v) => v.into_iter().flat_map(i32::to_le_bytes).collect(),
            PayloadData::U64(v) => v.into_iter().flat_map(u64::to_le_bytes).collect(),
        };
        Self {
            elem,
            dims: p.dims.iter().map(|&d| d as u64).collect(),
            bytes,
        }
    }
}

impl TryFrom<RawPayload> for Payload {
    type Error = String;

    /// Checks the element type code, the dimensions and that the byte count is exactly
    /// elements × element size, then converts the bytes (whose length bounds every
    /// allocation here).
    fn try_from(raw: RawPayload) -> std::result::Result<Self, String> {
        let elem = ElemType::from_code(raw.elem)
            .ok_or_else(|| format!("payload element type code {} is not 0..=5", raw.elem))?;
        let dims = raw
            .dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| format!("payload dimension {d}")))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let n = checked_numel(&dims).map_err(|r| format!("payload: {r}"))?;
        let want = n as u64 * elem.size() as u64;
        if raw.bytes.len() as u64 != want {
            return Err(format!(
                "payload of {n} {} elements (dimensions {dims:?}) needs {want} bytes, found {}",
                elem.name(),
                raw.bytes.len()
            ));
        }
        let b = raw.bytes;
        let data = match elem {
            ElemType::U8 => PayloadData::U8(b),
            ElemType::Bytes => PayloadData::Bytes(b),
            ElemType::I8 => PayloadData::I8(b.into_iter().map(|x| x as i8).collect()),
            ElemType::U16 => PayloadData::U16(
                b.chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            ),
            ElemType::I32 => PayloadData::I32(
                b.chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            ElemType::U64 => PayloadData::U64(
                b.chunks_exact(8)
                    .map(|c| {
                        let mut w = [0u8; 8];
                        w.copy_from_slice(c);
                        u64::from_le_bytes(w)
                    })
                    .collect(),
            ),
        };
        Ok(Self { dims, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(p: &Payload) -> Payload {
        let bytes = bincode::serde::encode_to_vec(p, bincode::config::standard()).unwrap();
        bincode::serde::decode_from_slice::<Payload, _>(&bytes, bincode::config::standard())
            .unwrap()
            .0
    }

    #[test]
    fn every_type_round_trips_exactly() {
        let all = [
            Payload::u8(&[2, 2], vec![0, 1, 254, 255]).unwrap(),
            Payload::i8(&[3], vec![-128, 0, 127]).unwrap(),
            Payload::u16(&[2], vec![0, 65535]).unwrap(),
            Payload::i32(&[1, 2], vec![i32::MIN, i32::MAX]).unwrap(),
            Payload::u64(&[2], vec![u64::MAX, 0x0123_4567_89AB_CDEF]).unwrap(),
            Payload::bytes(vec![9, 8, 7]),
            Payload::u16(&[0, 5], vec![]).unwrap(),
        ];
        for p in &all {
            assert_eq!(&round_trip(p), p);
        }
        assert_eq!(all[4].byte_len(), 16);
    }

    #[test]
    fn lengths_are_checked_against_dims() {
        assert!(Payload::u8(&[3], vec![1, 2]).is_err());
        assert!(Payload::u8(&[usize::MAX, 2], vec![]).is_err());
        assert!(Payload::u8(&[1; 9], vec![0]).is_err());
        for (elem, dims, len, what) in [
            (2u8, vec![3u64], 5usize, "needs 6 bytes"),
            (4, vec![1], 7, "needs 8 bytes"),
            (9, vec![1], 1, "type code 9"),
            (0, vec![1 << 40, 1 << 40], 0, "exceed"),
        ] {
            let raw = RawPayload {
                elem,
                dims,
                bytes: vec![0; len],
            };
            let e = Payload::try_from(raw).unwrap_err();
            assert!(e.contains(what), "{e}");
        }
    }
}
