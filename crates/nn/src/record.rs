//! LayerRecord: the generic, serializable description of one layer (kind, attributes, tensors,
//! typed payloads).
//!
//! A record is what the native model file, the `.slim` container and the ONNX importer store
//! and read: the layer kind (`"linear"`, `"conv2d"`, ...), its hyper-parameters as typed
//! attributes, its named f32 tensors (parameters and buffers), and its named typed payloads
//! (integer arrays and byte blobs of compressed layers, [`crate::payload`]). Records come from untrusted
//! files, so every accessor here returns a typed [`NnError::Corrupt`] naming the layer kind and
//! the attribute or tensor at fault, never panics; `layers::layer_from_record` validates every
//! tensor shape against the attributes before a layer is built.

use std::collections::BTreeMap;

use tensor_core::Tensor;

use crate::error::{NnError, Result};
use crate::payload::{Payload, PayloadData};

/// One attribute value of a layer (the ONNX attribute kinds slimnet needs).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum AttrValue {
    /// A signed integer.
    Int(i64),
    /// A list of integers (kernel sizes, pads, ...).
    Ints(Vec<i64>),
    /// A float.
    Float(f32),
    /// A list of floats.
    Floats(Vec<f32>),
    /// A string.
    Str(String),
}

impl AttrValue {
    /// The variant's name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            AttrValue::Int(_) => "int",
            AttrValue::Ints(_) => "ints",
            AttrValue::Float(_) => "float",
            AttrValue::Floats(_) => "floats",
            AttrValue::Str(_) => "string",
        }
    }
}

/// The serializable record of a layer: kind, attributes, named tensors and named payloads
/// (each in a fixed order).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LayerRecord {
    /// The layer kind, as `Layer::kind` returns it.
    pub kind: String,
    /// Hyper-parameters by name (sorted, so serialization is deterministic).
    pub attrs: BTreeMap<String, AttrValue>,
    /// Parameters and buffers by name, in the layer's order (`weight`, `bias`, ...).
    pub tensors: Vec<(String, Tensor)>,
    /// Typed integer arrays and byte blobs by name (compressed layers: indices, codes, packed
    /// bits, coded streams), in the layer's order.
    pub payloads: Vec<(String, Payload)>,
}

impl LayerRecord {
    /// An empty record of `kind`.
    pub fn new(kind: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            attrs: BTreeMap::new(),
            tensors: Vec::new(),
            payloads: Vec::new(),
        }
    }

    /// Adds (or replaces) an attribute; builder style.
    pub fn with_attr(mut self, name: &str, value: AttrValue) -> Self {
        self.attrs.insert(name.to_string(), value);
        self
    }

    /// Adds an integer attribute; builder style.
    pub fn with_int(self, name: &str, v: i64) -> Self {
        self.with_attr(name, AttrValue::Int(v))
    }

    /// Adds an integer-list attribute; builder style.
    pub fn with_ints(self, name: &str, v: &[i64]) -> Self {
        self.with_attr(name, AttrValue::Ints(v.to_vec()))
    }

    /// Adds a float attribute; builder style.
    pub fn with_float(self, name: &str, v: f32) -> Self {
        self.with_attr(name, AttrValue::Float(v))
    }

    /// Appends a named tensor; builder style.
    pub fn with_tensor(mut self, name: &str, t: Tensor) -> Self {
        self.tensors.push((name.to_string(), t));
        self
    }

    /// Appends a named payload; builder style.
    pub fn with_payload(mut self, name: &str, p: Payload) -> Self {
        self.payloads.push((name.to_string(), p));
        self
    }

    /// A corrupt-record error naming this record's kind and `what` (an attribute or tensor).
    pub fn corrupt(&self, what: impl Into<String>, reason: impl Into<String>) -> NnError {
        NnError::Corrupt {
            path: format!("layer record `{}`", self.kind),
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// Checks that the record is of kind `kind`.
    pub fn expect_kind(&self, kind: &str) -> Result<()> {
        if self.kind == kind {
            Ok(())
        } else {
            Err(self.corrupt("kind", format!("expected `{kind}`, found `{}`", self.kind)))
        }
    }

    fn attr(&self, name: &str) -> Result<&AttrValue> {
        self.attrs
            .get(name)
            .ok_or_else(|| self.corrupt(format!("attribute `{name}`"), "missing"))
    }

    fn wrong_type(&self, name: &str, want: &str, got: &AttrValue) -> NnError {
        self.corrupt(
            format!("attribute `{name}`"),
            format!("expected {want}, found {}", got.type_name()),
        )
    }

    /// Integer attribute `name`.
    pub fn int(&self, name: &str) -> Result<i64> {
        match self.attr(name)? {
            AttrValue::Int(v) => Ok(*v),
            other => Err(self.wrong_type(name, "int", other)),
        }
    }

    /// Integer attribute `name`, or `default` when absent (a present value of the wrong type
    /// is still an error).
    pub fn int_or(&self, name: &str, default: i64) -> Result<i64> {
        if self.attrs.contains_key(name) {
            self.int(name)
        } else {
            Ok(default)
        }
    }

    /// Integer-list attribute `name`.
    pub fn ints(&self, name: &str) -> Result<&[i64]> {
        match self.attr(name)? {
            AttrValue::Ints(v) => Ok(v),
            other => Err(self.wrong_type(name, "ints", other)),
        }
    }

    /// Float attribute `name`.
    pub fn float(&self, name: &str) -> Result<f32> {
        match self.attr(name)? {
            AttrValue::Float(v) => Ok(*v),
            other => Err(self.wrong_type(name, "float", other)),
        }
    }

    /// Float attribute `name`, or `default` when absent.
    pub fn float_or(&self, name: &str, default: f32) -> Result<f32> {
        if self.attrs.contains_key(name) {
            self.float(name)
        } else {
            Ok(default)
        }
    }

    /// Float-list attribute `name`.
    pub fn floats(&self, name: &str) -> Result<&[f32]> {
        match self.attr(name)? {
            AttrValue::Floats(v) => Ok(v),
            other => Err(self.wrong_type(name, "floats", other)),
        }
    }

    /// String attribute `name`.
    pub fn str(&self, name: &str) -> Result<&str> {
        match self.attr(name)? {
            AttrValue::Str(v) => Ok(v),
            other => Err(self.wrong_type(name, "string", other)),
        }
    }

    /// Integer attribute `name` as a `usize` within `[min, max]` (a size, a stride, ...).
    pub fn usize_in(&self, name: &str, min: usize, max: usize) -> Result<usize> {
        let v = self.int(name)?;
        self.check_range(name, v, min, max)
    }

    /// Integer-list attribute `name` of exactly `len` elements, each a `usize` within
    /// `[min, max]`.
    pub fn usizes_in(&self, name: &str, len: usize, min: usize, max: usize) -> Result<Vec<usize>> {
        let v = self.ints(name)?;
        if v.len() != len {
            return Err(self.corrupt(
                format!("attribute `{name}`"),
                format!("expected {len} values, found {}", v.len()),
            ));
        }
        v.iter()
            .map(|&x| self.check_range(name, x, min, max))
            .collect()
    }

    fn check_range(&self, name: &str, v: i64, min: usize, max: usize) -> Result<usize> {
        match usize::try_from(v) {
            Ok(u) if u >= min && u <= max => Ok(u),
            _ => Err(self.corrupt(
                format!("attribute `{name}`"),
                format!("value {v} outside [{min}, {max}]"),
            )),
        }
    }

    /// Tensor `name`.
    pub fn tensor(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| self.corrupt(format!("tensor `{name}`"), "missing"))
    }

    /// Tensor `name`, checked to have exactly the dimensions `dims` (cloned).
    pub fn tensor_with_dims(&self, name: &str, dims: &[usize]) -> Result<Tensor> {
        let t = self.tensor(name)?;
        if t.dims() != dims {
            return Err(self.corrupt(
                format!("tensor `{name}`"),
                format!("shape {} but the attributes require {dims:?}", t.shape()),
            ));
        }
        Ok(t.clone())
    }

    /// Checks that the record holds exactly the tensors `names`, no payload, and nothing
    /// else (a stray entry means the record is not what its kind claims).
    pub fn expect_tensor_names(&self, names: &[&str]) -> Result<()> {
        self.expect_fields(names, &[])
    }

    /// Checks that the record holds exactly the tensors `tensors` and the payloads
    /// `payloads`, each once, and nothing else.
    pub fn expect_fields(&self, tensors: &[&str], payloads: &[&str]) -> Result<()> {
        let t: Vec<&str> = self.tensors.iter().map(|(n, _)| n.as_str()).collect();
        let p: Vec<&str> = self.payloads.iter().map(|(n, _)| n.as_str()).collect();
        self.expect_exactly("tensor", &t, tensors)?;
        self.expect_exactly("payload", &p, payloads)
    }

    fn expect_exactly(&self, what: &str, present: &[&str], names: &[&str]) -> Result<()> {
        for n in present {
            if !names.contains(n) {
                return Err(self.corrupt(
                    format!("{what} `{n}`"),
                    format!("unexpected; this kind holds {names:?}"),
                ));
            }
        }
        for name in names {
            let count = present.iter().filter(|n| *n == name).count();
            if count != 1 {
                return Err(self.corrupt(
                    format!("{what} `{name}`"),
                    format!("present {count} times, expected once"),
                ));
            }
        }
        Ok(())
    }

    /// Payload `name`.
    pub fn payload(&self, name: &str) -> Result<&Payload> {
        self.payloads
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p)
            .ok_or_else(|| self.corrupt(format!("payload `{name}`"), "missing"))
    }

    /// Payload `name` checked to have dimensions `dims` (`None`: any).
    fn payload_data(&self, name: &str, dims: Option<&[usize]>) -> Result<&PayloadData> {
        let p = self.payload(name)?;
        if let Some(d) = dims
            && p.dims() != d
        {
            return Err(self.corrupt(
                format!("payload `{name}`"),
                format!("dimensions {:?} but the attributes require {d:?}", p.dims()),
            ));
        }
        Ok(p.data())
    }

    fn wrong_payload(&self, name: &str, want: &str, got: &PayloadData) -> NnError {
        self.corrupt(
            format!("payload `{name}`"),
            format!("expected {want} elements, found {}", got.type_name()),
        )
    }
}

macro_rules! payload_accessor {
    ($(#[$doc:meta])* $fn:ident, $t:ty, $variant:ident, $want:literal) => {
        impl LayerRecord {
            $(#[$doc])*
            pub fn $fn(&self, name: &str, dims: &[usize]) -> Result<&[$t]> {
                match self.payload_data(name, Some(dims))? {
                    PayloadData::$variant(v) => Ok(v),
                    other => Err(self.wrong_payload(name, $want, other)),
                }
            }
        }
    };
}

payload_accessor!(
    /// `u8` payload `name`, checked to have dimensions `dims`.
    u8s, u8, U8, "u8"
);
payload_accessor!(
    /// `i8` payload `name`, checked to have dimensions `dims`.
    i8s, i8, I8, "i8"
);
payload_accessor!(
    /// `u16` payload `name`, checked to have dimensions `dims`.
    u16s, u16, U16, "u16"
);
payload_accessor!(
    /// `i32` payload `name`, checked to have dimensions `dims`.
    i32s, i32, I32, "i32"
);
payload_accessor!(
    /// `u64` payload `name`, checked to have dimensions `dims`.
    u64s, u64, U64, "u64"
);

impl LayerRecord {
    /// Byte-blob payload `name` of at most `max_len` bytes (its length is the blob's own; the
    /// caller's decoder checks the content).
    pub fn bytes(&self, name: &str, max_len: usize) -> Result<&[u8]> {
        match self.payload_data(name, None)? {
            PayloadData::Bytes(v) if v.len() <= max_len => Ok(v),
            PayloadData::Bytes(v) => Err(self.corrupt(
                format!("payload `{name}`"),
                format!("{} bytes, at most {max_len} expected", v.len()),
            )),
            other => Err(self.wrong_payload(name, "bytes", other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_accessors_and_errors() {
        let rec = LayerRecord::new("conv2d")
            .with_int("groups", 2)
            .with_ints("kernel", &[3, 3])
            .with_float("eps", 1e-5)
            .with_tensor("weight", Tensor::zeros_dims(&[4, 2, 3, 3]).unwrap());
        assert_eq!(rec.int("groups").unwrap(), 2);
        assert_eq!(rec.usizes_in("kernel", 2, 1, 10).unwrap(), vec![3, 3]);
        assert_eq!(rec.float("eps").unwrap(), 1e-5);
        assert_eq!(rec.int_or("absent", 7).unwrap(), 7);
        let e = rec.float("groups").unwrap_err().to_string();
        assert!(e.contains("conv2d") && e.contains("groups"), "{e}");
        let e = rec.int("stride").unwrap_err().to_string();
        assert!(e.contains("stride") && e.contains("missing"), "{e}");
        assert!(rec.usizes_in("kernel", 3, 1, 10).is_err());
        assert!(rec.usizes_in("kernel", 2, 4, 10).is_err());
        assert!(rec.tensor_with_dims("weight", &[4, 2, 3, 3]).is_ok());
        let e = rec.tensor_with_dims("weight", &[4, 1, 3, 3]).unwrap_err();
        assert!(e.to_string().contains("weight"));
        assert!(rec.expect_tensor_names(&["weight"]).is_ok());
        assert!(rec.expect_tensor_names(&["weight", "bias"]).is_err());
        assert!(rec.expect_tensor_names(&[]).is_err());
        assert!(rec.expect_kind("linear").is_err());
    }

    #[test]
    fn negative_int_is_out_of_range() {
        let rec = LayerRecord::new("maxpool2d").with_int("stride", -1);
        assert!(rec.usize_in("stride", 1, 100).is_err());
    }
}
