//! The native model file (`.model`, `.slim`): a checksummed, versioned serialization of a
//! [`Model`], dense or compressed.
//!
//! docs/FORMAT.md specifies every byte (header, payload encoding, checksum, versions); this
//! module implements it. In short: magic `SLIMNETM`, a `u32` version, a `u64` payload length,
//! the payload (a [`ModelRecord`] encoded with bincode 2), a CRC-32 of the payload. Version 2
//! (written now) adds typed payloads ([`crate::payload`]) to every layer record; version 1
//! files still load.
//!
//! # Reading untrusted files
//!
//! [`decode`] checks, in order and before decoding anything: the file holds at least the
//! 24 bytes of header and trailer; the magic; the version; that the payload length equals the
//! file size minus 24 exactly; the checksum. The payload is then decoded with a bincode byte
//! limit of the smallest power of two at least its length, so no length field inside it can
//! make the decoder allocate more than twice the bytes actually present; trailing payload
//! bytes are an error. Every tensor's data length is checked against its shape and every
//! typed payload's byte count against its dimensions, and each layer is rebuilt through a
//! [`LayerRegistry`], whose constructors validate every attribute, tensor and payload.
//!
//! # Writing
//!
//! [`save`] writes to a temporary file in the destination's directory, syncs it, and renames
//! it over the destination: a reader never sees a half-written model.
//!
//! Design: bincode 2.0.1 is pinned (3.0.0 is a tombstone release, and 2.0.1 is flagged
//! unmaintained, RUSTSEC-2025-0141); this module is the only place that names it, so moving
//! the payload to postcard (a new format version) touches this file alone.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{NnError, Result};
use crate::model::Model;
use crate::record::{AttrValue, LayerRecord};
use crate::registry::LayerRegistry;

/// The first 8 bytes of every native model file.
pub const MAGIC: [u8; 8] = *b"SLIMNETM";

/// The format version this module writes.
pub const FORMAT_VERSION: u32 = 2;

/// The oldest format version this module still reads.
pub const OLDEST_READABLE_VERSION: u32 = 1;

/// Bytes before the payload: magic, version, payload length.
pub const HEADER_LEN: usize = 20;

/// Bytes after the payload: the CRC-32.
pub const TRAILER_LEN: usize = 4;

/// The version of the sectioned `.slim` container, which the `pipeline` crate writes and
/// reads (same magic; docs/FORMAT.md).
pub const CONTAINER_VERSION: u32 = 3;

/// Largest payload accepted, 2^38 bytes (256 GiB): four times the largest tensor a
/// [`tensor_core::Shape`] admits.
pub const MAX_PAYLOAD: u64 = 1 << 38;

/// What a native model file stores: the model's name and per-sample input shape, one
/// [`LayerRecord`] per layer in order, and free-form metadata (training recipe, accuracy,
/// provenance).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// The model's name.
    pub name: String,
    /// Shape of one sample, without the batch dimension.
    pub input_shape: Vec<usize>,
    /// The layers, in order.
    pub layers: Vec<LayerRecord>,
    /// Free-form key-value metadata (sorted, so encoding is deterministic).
    pub metadata: BTreeMap<String, String>,
}

impl ModelRecord {
    /// The record of `model` (each layer through [`Layer::record`]) with `metadata`.
    pub fn from_model(model: &Model, metadata: BTreeMap<String, String>) -> Result<Self> {
        let layers = model
            .layers
            .iter()
            .map(|l| l.record())
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            name: model.name.clone(),
            input_shape: model.input_shape.clone(),
            layers,
            metadata,
        })
    }

    /// Rebuilds the model with nn's own kinds ([`LayerRegistry::nn_default`]).
    pub fn into_model(self) -> Result<Model> {
        self.into_model_with(LayerRegistry::nn_default())
    }

    /// Rebuilds the model, each layer through `registry` (compressed layers need their
    /// crate's kinds: `pipeline::registry()` holds them all).
    pub fn into_model_with(self, registry: &LayerRegistry) -> Result<Model> {
        let layers = self
            .layers
            .iter()
            .enumerate()
            .map(|(i, rec)| {
                registry.build(rec).map_err(|e| match e {
                    NnError::Corrupt { path, what, reason } => NnError::Corrupt {
                        path: format!("{} (layer {i})", path),
                        what,
                        reason,
                    },
                    NnError::Unsupported(m) => NnError::Unsupported(format!("layer {i}: {m}")),
                    other => other,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Model::new(self.name, &self.input_shape, layers))
    }
}

/// CRC-32/ISO-HDLC lookup table (reflected polynomial `0xEDB88320`), built at compile time.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32/ISO-HDLC of `bytes` (as zlib's `crc32`), one table lookup per byte.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(bytes);
    c.finish()
}

/// [`crc32`] computed incrementally, over bytes that arrive in pieces (a streamed write).
#[derive(Clone, Copy, Debug)]
pub struct Crc32(u32);

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32 {
    /// The checksum of no bytes yet.
    pub fn new() -> Self {
        Self(0xFFFF_FFFF)
    }

    /// Adds `bytes` after those already seen.
    pub fn update(&mut self, bytes: &[u8]) {
        let mut c = self.0;
        for &b in bytes {
            c = CRC_TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
        }
        self.0 = c;
    }

    /// The CRC-32 of every byte seen.
    pub fn finish(&self) -> u32 {
        self.0 ^ 0xFFFF_FFFF
    }
}

/// The bincode configuration of the payload.
fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes a record as a complete file image (header, payload, checksum).
pub fn encode(record: &ModelRecord) -> Result<Vec<u8>> {
    let payload = bincode::serde::encode_to_vec(record, config())
        .map_err(|e| NnError::Unsupported(format!("native model file: encoding failed: {e}")))?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + TRAILER_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&crc32(&payload).to_le_bytes());
    Ok(out)
}

/// Decodes `payload` with a bincode byte limit of `2^bits`.
macro_rules! decode_with_limit {
    ($ty:ty, $payload:expr, $bits:expr, $is_model_record:expr; $($b:literal)*) => {
        match $bits {
            $( $b => decode_naming_field::<$ty, _>(
                $payload,
                config().with_limit::<{ 1usize << $b }>(),
                $is_model_record,
            ), )*
            // `bits` is clamped to the listed range by the caller.
            _ => unreachable!("payload limit 2^{} outside the table", $bits),
        }
    };
}

/// Decodes one value, and when bincode fails, decodes again through `serde_path_to_error` to
/// say in which field it failed (`field layers[3].tensors[0].data: the payload ends 4 bytes
/// early`): bincode alone reports only the cause. The second pass runs on the error path only.
fn decode_naming_field<T, C>(
    bytes: &[u8],
    config: C,
    is_model_record: bool,
) -> std::result::Result<(T, usize), String>
where
    T: serde::de::DeserializeOwned,
    C: bincode::config::Config,
{
    bincode::serde::decode_from_slice::<T, C>(bytes, config).map_err(|cause| {
        let cause = describe_decode_error(&cause);
        let mut decoder = bincode::serde::BorrowedSerdeDecoder::from_slice(bytes, config, ());
        match serde_path_to_error::deserialize::<_, T>(decoder.as_deserializer()) {
            Err(tracked) => match field_name(tracked.path(), is_model_record) {
                Some(field) => format!("field {field}: {cause}"),
                None => cause,
            },
            Ok(_) => cause,
        }
    })
}

/// bincode's decode errors in words (its `Display` is the variant's debug form).
fn describe_decode_error(e: &bincode::error::DecodeError) -> String {
    use bincode::error::DecodeError as E;
    match e {
        E::UnexpectedEnd { additional } => {
            format!("the payload ends at least {additional} bytes early")
        }
        E::LimitExceeded => "a length claims more memory than the payload can hold".into(),
        E::UnexpectedVariant {
            type_name, found, ..
        } => format!("unknown {type_name} variant {found}"),
        E::Utf8 { .. } => "a name is not valid UTF-8".into(),
        E::OutsideUsizeRange(n) => format!("a length {n} does not fit this machine's usize"),
        other => other.to_string(),
    }
}

/// The field a decode failed in, in the record's own words for a [`ModelRecord`]:
/// bincode reads structs as tuples, so the tracked path holds field positions
/// (`[2][1][2][0][1][1]`), which this maps to names (`layers[1].tensors[0].data`).
fn field_name(path: &serde_path_to_error::Path, is_model_record: bool) -> Option<String> {
    use serde_path_to_error::Segment;
    let positions: Vec<usize> = path
        .iter()
        .map_while(|s| match s {
            Segment::Seq { index } => Some(*index),
            _ => None,
        })
        .collect();
    if !is_model_record {
        let generic = path.to_string();
        return (!matches!(generic.as_str(), "" | ".")).then_some(generic);
    }
    const MODEL: [&str; 4] = ["name", "input_shape", "layers", "metadata"];
    const LAYER: [&str; 4] = ["kind", "attrs", "tensors", "payloads"];
    let mut p = positions.iter().copied();
    let mut out = String::from(*MODEL.get(p.next()?)?);
    if out != "layers" {
        return Some(out);
    }
    let Some(layer) = p.next() else {
        return Some(out);
    };
    out += &format!("[{layer}]");
    let Some(field) = p.next().and_then(|f| LAYER.get(f)) else {
        return Some(out);
    };
    out += &format!(".{field}");
    if !matches!(*field, "tensors" | "payloads") {
        return Some(out);
    }
    let Some(entry) = p.next() else {
        return Some(out);
    };
    out += &format!("[{entry}]");
    match (p.next(), p.next()) {
        (Some(0), _) => out += ".name",
        (Some(1), Some(0)) => {
            out += if *field == "tensors" {
                ".shape"
            } else {
                ".dims"
            }
        }
        (Some(1), Some(1)) => out += ".data",
        _ => {}
    }
    Some(out)
}

/// bincode's allocation limit for `len` encoded bytes, as a power of two: the smallest power
/// of two at least `len`, times 8. bincode counts against its limit what a container will
/// occupy in memory, not the bytes it reads: a `Vec<u64>` of small values takes one byte per
/// element on disk and claims eight, and a section whose f32 values nearly filled its
/// power of two once failed on the few bytes its dimension vectors claim beyond their
/// encoding (lenet300 pruned 20x). So no length field can make the reader allocate more
/// than 16 times the bytes present.
fn limit_bits(len: usize) -> u32 {
    (len.max(1).next_power_of_two().trailing_zeros() + 3).clamp(16, 41)
}

/// Encodes any serializable value as this format encodes its record (bincode 2, standard
/// configuration; see docs/FORMAT.md): the one place besides [`encode`] that knows the
/// serializer, so containers built on this format share it.
pub fn encode_value<T: Serialize>(value: &T, what: &str) -> Result<Vec<u8>> {
    bincode::serde::encode_to_vec(value, config())
        .map_err(|e| NnError::Unsupported(format!("{what}: encoding failed: {e}")))
}

/// Encodes `value` exactly as [`encode_value`] does, but straight into `writer` (no
/// intermediate buffer; give a buffered writer). Returns the bytes written.
pub fn encode_value_into<T: Serialize, W: std::io::Write>(
    value: &T,
    writer: &mut W,
    what: &str,
) -> Result<usize> {
    bincode::serde::encode_into_std_write(value, writer, config())
        .map_err(|e| NnError::Unsupported(format!("{what}: encoding failed: {e}")))
}

/// Decodes one value encoded by [`encode_value`] from exactly `bytes` (trailing bytes are an
/// error), with an allocation limit of 8 times the smallest power of two at least
/// `bytes.len()` (see `limit_bits`). `source` and
/// `what` name the file and the part in errors.
pub fn decode_value<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    source: &str,
    what: &str,
) -> Result<T> {
    let bits = limit_bits(bytes.len());
    let (value, used) = decode_with_limit!(T, bytes, bits, false;
        16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40 41)
    .map_err(|e| NnError::corrupt(source, what, e))?;
    if used != bytes.len() {
        return Err(NnError::corrupt(
            source,
            what,
            format!("{} trailing bytes", bytes.len() - used),
        ));
    }
    Ok(value)
}

/// Decodes a file image into a [`ModelRecord`], checking everything listed in the module
/// docs. `source` names the file in errors.
pub fn decode(bytes: &[u8], source: &str) -> Result<ModelRecord> {
    let corrupt = |what: &str, reason: String| NnError::corrupt(source, what, reason);
    if bytes.len() < HEADER_LEN + TRAILER_LEN {
        return Err(corrupt(
            "header",
            format!(
                "file is {} bytes, shorter than the {} bytes of header and checksum",
                bytes.len(),
                HEADER_LEN + TRAILER_LEN
            ),
        ));
    }
    if bytes[..8] != MAGIC {
        return Err(corrupt(
            "header",
            format!(
                "magic {:?} is not {:?} (not a slimnet model file)",
                String::from_utf8_lossy(&bytes[..8]),
                String::from_utf8_lossy(&MAGIC)
            ),
        ));
    }
    // The slices below have the exact lengths of the integers (checked length above).
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version == CONTAINER_VERSION {
        return Err(corrupt(
            "header",
            format!(
                "format version {version} is the sectioned .slim container (Huffman-coded \
                 payloads): read it with pipeline::load (nn alone reads versions \
                 {OLDEST_READABLE_VERSION} to {FORMAT_VERSION})"
            ),
        ));
    }
    if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(corrupt(
            "header",
            format!(
                "format version {version}, this build reads versions \
                 {OLDEST_READABLE_VERSION} to {FORMAT_VERSION}"
            ),
        ));
    }
    let declared = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let actual = (bytes.len() - HEADER_LEN - TRAILER_LEN) as u64;
    if declared != actual {
        return Err(corrupt(
            "header",
            format!(
                "payload length {declared} disagrees with the file size {} (payload {actual} \
                 bytes): truncated or extended file",
                bytes.len()
            ),
        ));
    }
    if declared > MAX_PAYLOAD {
        return Err(corrupt(
            "header",
            format!("payload length {declared} exceeds the limit {MAX_PAYLOAD}"),
        ));
    }
    let payload = &bytes[HEADER_LEN..bytes.len() - TRAILER_LEN];
    let stored = u32::from_le_bytes(
        bytes[bytes.len() - TRAILER_LEN..]
            .try_into()
            .expect("4 bytes"),
    );
    let computed = crc32(payload);
    if stored != computed {
        return Err(corrupt(
            "checksum",
            format!("stored CRC-32 {stored:#010x}, payload has {computed:#010x}"),
        ));
    }
    let bits = limit_bits(payload.len());
    let (record, used) = if version == 1 {
        let decoded = decode_with_limit!(v1::ModelRecord, payload, bits, false;
            16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40 41);
        let (r, used) = decoded.map_err(|e| corrupt("model record (version 1)", e))?;
        (r.into(), used)
    } else {
        let decoded = decode_with_limit!(ModelRecord, payload, bits, true;
            16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40 41);
        decoded.map_err(|e| corrupt("model record", e))?
    };
    if used != payload.len() {
        return Err(corrupt(
            "model record",
            format!("{} trailing bytes after the record", payload.len() - used),
        ));
    }
    validate(&record, source)?;
    Ok(record)
}

/// Checks what bincode cannot: each tensor's data length against its shape, and a sane
/// input shape.
pub fn validate(record: &ModelRecord, source: &str) -> Result<()> {
    let mut dims = vec![1];
    dims.extend_from_slice(&record.input_shape);
    tensor_core::Shape::new(&dims).map_err(|e| {
        NnError::corrupt(
            source,
            "input shape",
            format!("{:?}: {e}", record.input_shape),
        )
    })?;
    for (i, layer) in record.layers.iter().enumerate() {
        for (name, t) in &layer.tensors {
            if t.numel() != t.shape().numel() {
                return Err(NnError::corrupt(
                    source,
                    format!("layer {i} ({}) tensor `{name}`", layer.kind),
                    format!(
                        "{} elements for shape {} ({} expected)",
                        t.numel(),
                        t.shape(),
                        t.shape().numel()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The records of format version 1, which had no typed payloads; read and converted.
mod v1 {
    use super::*;

    #[derive(Deserialize)]
    pub(super) struct LayerRecord {
        kind: String,
        attrs: BTreeMap<String, AttrValue>,
        tensors: Vec<(String, tensor_core::Tensor)>,
    }

    #[derive(Deserialize)]
    pub(super) struct ModelRecord {
        name: String,
        input_shape: Vec<usize>,
        layers: Vec<LayerRecord>,
        metadata: BTreeMap<String, String>,
    }

    impl From<ModelRecord> for super::ModelRecord {
        fn from(r: ModelRecord) -> Self {
            Self {
                name: r.name,
                input_shape: r.input_shape,
                layers: r
                    .layers
                    .into_iter()
                    .map(|l| crate::record::LayerRecord {
                        kind: l.kind,
                        attrs: l.attrs,
                        tensors: l.tensors,
                        payloads: Vec::new(),
                    })
                    .collect(),
                metadata: r.metadata,
            }
        }
    }
}

/// The file image of `model` with empty metadata.
pub fn to_bytes(model: &Model) -> Result<Vec<u8>> {
    encode(&ModelRecord::from_model(model, BTreeMap::new())?)
}

/// Decodes a file image and rebuilds the model with nn's kinds; `source_name` names it in
/// errors.
pub fn from_bytes(bytes: &[u8], source_name: &str) -> Result<Model> {
    from_bytes_with(bytes, source_name, LayerRegistry::nn_default())
}

/// Decodes a file image and rebuilds the model through `registry`.
pub fn from_bytes_with(bytes: &[u8], source_name: &str, registry: &LayerRegistry) -> Result<Model> {
    decode(bytes, source_name)?.into_model_with(registry)
}

/// Writes `model` to `path` (with empty metadata), atomically (see the module docs).
pub fn save(model: &Model, path: impl AsRef<Path>) -> Result<()> {
    save_record(&ModelRecord::from_model(model, BTreeMap::new())?, path)
}

/// Writes `model` with `metadata` to `path`, atomically.
pub fn save_with_metadata(
    model: &Model,
    metadata: BTreeMap<String, String>,
    path: impl AsRef<Path>,
) -> Result<()> {
    save_record(&ModelRecord::from_model(model, metadata)?, path)
}

/// Writes a record to `path`: to a temporary file in the same directory, synced, then
/// renamed over `path`. On failure the temporary file is removed and `path` is untouched.
pub fn save_record(record: &ModelRecord, path: impl AsRef<Path>) -> Result<()> {
    super::atomic::write_atomic(path, &encode(record)?)
}

/// Reads and decodes the record at `path` (metadata included), without building layers.
pub fn load_record(path: impl AsRef<Path>) -> Result<ModelRecord> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| NnError::io(path, e))?;
    decode(&bytes, &path.display().to_string())
}

/// Reads the model at `path` with nn's kinds ([`LayerRegistry::nn_default`]).
pub fn load(path: impl AsRef<Path>) -> Result<Model> {
    load_with(path, LayerRegistry::nn_default())
}

/// Reads the model at `path`, rebuilding its layers through `registry`.
pub fn load_with(path: impl AsRef<Path>, registry: &LayerRegistry) -> Result<Model> {
    load_record(path)?.into_model_with(registry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_that_claim_more_memory_than_bytes_decode() {
        // One byte per element on disk, eight claimed in memory.
        for n in [10, 8_000, 10_000, 65_000, 70_000] {
            let v = vec![1u64; n];
            let bytes = encode_value(&v, "v").unwrap();
            let back: Vec<u64> = decode_value(&bytes, "t", "v").unwrap();
            assert_eq!(back, v, "n = {n}");
        }
        // A length field far beyond the bytes present is still refused.
        let mut bytes = encode_value(&vec![1u8; 16], "v").unwrap();
        bytes[0] = 0xfd; // u64 length follows
        bytes.splice(1..1, (1u64 << 40).to_le_bytes());
        assert!(decode_value::<Vec<u8>>(&bytes, "t", "v").is_err());
    }
    use crate::layer::{Layer, Mode, ParamMut, ParamRef};
    use crate::record::AttrValue;
    use std::any::Any;
    use tensor_core::rng::Rng;
    use tensor_core::{Shape, Tensor};

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"a"), 0xE8B7_BE43);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
    }

    #[test]
    fn incremental_crc32_and_streamed_values_match_the_whole() {
        let text = b"The quick brown fox jumps over the lazy dog";
        for cut in [0, 1, 9, 42, text.len()] {
            let mut c = Crc32::new();
            c.update(&text[..cut]);
            c.update(&text[cut..]);
            assert_eq!(c.finish(), crc32(text), "cut at {cut}");
        }
        let value = (
            "layer".to_string(),
            vec![1.5f32, -0.0, f32::MAX],
            vec![300u64, 1],
        );
        let whole = encode_value(&value, "v").unwrap();
        let mut streamed = Vec::new();
        let n = encode_value_into(&value, &mut streamed, "v").unwrap();
        assert_eq!((n, streamed), (whole.len(), whole));
    }

    /// A naive dense layer `y = x W^T + b` for the round-trip tests (the real layers live in
    /// `crate::layers`; this one keeps the tests independent of them).
    #[derive(Debug)]
    struct Dense {
        w: Tensor,
        b: Tensor,
        gw: Tensor,
        gb: Tensor,
    }

    impl Dense {
        fn random(inputs: usize, outputs: usize, rng: &mut Rng) -> Self {
            let w = (0..inputs * outputs).map(|_| rng.normal() * 0.5).collect();
            let b = (0..outputs).map(|_| rng.normal() * 0.1).collect();
            Self::from_tensors(
                Tensor::new(&[outputs, inputs], w).unwrap(),
                Tensor::new(&[outputs], b).unwrap(),
            )
        }

        fn from_tensors(w: Tensor, b: Tensor) -> Self {
            Self {
                gw: Tensor::zeros(w.shape().clone()),
                gb: Tensor::zeros(b.shape().clone()),
                w,
                b,
            }
        }
    }

    impl Layer for Dense {
        fn kind(&self) -> &'static str {
            "test_dense"
        }
        fn output_shape(&self, input: &Shape) -> Result<Shape> {
            Ok(Shape::new(&[input.dims()[0], self.w.dims()[0]])?)
        }
        fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
            let (o, i) = (self.w.dims()[0], self.w.dims()[1]);
            let n = x.dims()[0];
            let mut y = vec![0.0; n * o];
            for s in 0..n {
                for r in 0..o {
                    let mut acc = self.b.data()[r];
                    for c in 0..i {
                        acc += self.w.data()[r * i + c] * x.data()[s * i + c];
                    }
                    y[s * o + r] = acc;
                }
            }
            Ok(Tensor::new(&[n, o], y)?)
        }
        fn backward(&mut self, _g: &Tensor) -> Result<Tensor> {
            Err(NnError::Unsupported("test_dense backward".into()))
        }
        fn params(&self) -> Vec<ParamRef<'_>> {
            vec![
                ParamRef {
                    name: "weight",
                    value: &self.w,
                },
                ParamRef {
                    name: "bias",
                    value: &self.b,
                },
            ]
        }
        fn params_mut(&mut self) -> Vec<ParamMut<'_>> {
            vec![
                ParamMut {
                    name: "weight",
                    value: &mut self.w,
                    grad: &mut self.gw,
                },
                ParamMut {
                    name: "bias",
                    value: &mut self.b,
                    grad: &mut self.gb,
                },
            ]
        }
        fn param_count(&self) -> usize {
            self.w.numel() + self.b.numel()
        }
        fn macs(&self, input: &Shape) -> Result<u64> {
            Ok((input.dims()[0] * self.w.numel()) as u64)
        }
        fn record(&self) -> Result<LayerRecord> {
            Ok(LayerRecord::new("test_dense")
                .with_int("in_features", self.w.dims()[1] as i64)
                .with_attr("note", AttrValue::Str("naive".into()))
                .with_tensor("weight", self.w.clone())
                .with_tensor("bias", self.b.clone()))
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
        fn as_any_mut(&mut self) -> &mut dyn Any {
            self
        }
    }

    fn test_registry() -> LayerRegistry {
        let mut r = LayerRegistry::nn();
        r.register("test_dense", |rec, _| build_test_layer(rec))
            .unwrap();
        r
    }

    fn build_test_layer(rec: &LayerRecord) -> Result<Box<dyn Layer>> {
        rec.expect_kind("test_dense")?;
        rec.expect_tensor_names(&["weight", "bias"])?;
        let w = rec.tensor("weight")?;
        let (o, i) = match *w.dims() {
            [o, i] => (o, i),
            _ => return Err(rec.corrupt("tensor `weight`", "not rank 2")),
        };
        let want_i = rec.usize_in("in_features", 1, 1 << 20)?;
        if i != want_i {
            return Err(rec.corrupt("tensor `weight`", "in_features disagree"));
        }
        let b = rec.tensor_with_dims("bias", &[o])?;
        Ok(Box::new(Dense::from_tensors(w.clone(), b)))
    }

    fn small_model(seed: u64) -> Model {
        let mut rng = Rng::seed_from_u64(seed);
        Model::new(
            "tiny",
            &[6],
            vec![
                Box::new(Dense::random(6, 4, &mut rng)),
                Box::new(Dense::random(4, 3, &mut rng)),
            ],
        )
    }

    fn image(model: &Model) -> Vec<u8> {
        let mut meta = BTreeMap::new();
        meta.insert("accuracy".to_string(), "0.5".to_string());
        encode(&ModelRecord::from_model(model, meta).unwrap()).unwrap()
    }

    fn rebuild(bytes: &[u8]) -> Result<Model> {
        decode(bytes, "test")?.into_model_with(&test_registry())
    }

    #[test]
    fn round_trip_is_bit_exact() {
        let mut model = small_model(1);
        let bytes = image(&model);
        assert_eq!(&bytes[..8], b"SLIMNETM");
        let record = decode(&bytes, "test").unwrap();
        assert_eq!(record.metadata["accuracy"], "0.5");
        assert_eq!(
            record,
            ModelRecord::from_model(&model, record.metadata.clone()).unwrap()
        );
        let mut back = rebuild(&bytes).unwrap();
        assert_eq!(back.name, "tiny");
        assert_eq!(back.input_shape, vec![6]);
        for (a, b) in model.layers.iter().zip(&back.layers) {
            for (pa, pb) in a.params().iter().zip(b.params()) {
                assert_eq!(pa.name, pb.name);
                let bits = |t: &Tensor| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(pa.value), bits(pb.value));
            }
        }
        let mut rng = Rng::seed_from_u64(9);
        let x = Tensor::new(&[5, 6], (0..30).map(|_| rng.normal()).collect()).unwrap();
        let ya = model.forward(&x, Mode::Eval).unwrap();
        let yb = back.forward(&x, Mode::Eval).unwrap();
        assert_eq!(ya, yb);
        // Encoding is deterministic.
        assert_eq!(image(&back), bytes);
    }

    #[test]
    fn save_and_load_through_a_file() {
        let dir = std::env::temp_dir().join(format!("slimnet-native-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.slimnet");
        let model = small_model(2);
        save_with_metadata(&model, BTreeMap::from([("k".into(), "v".into())]), &path).unwrap();
        let record = load_record(&path).unwrap();
        assert_eq!(record.metadata["k"], "v");
        assert_eq!(record.layers.len(), 2);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        // Overwriting replaces the file whole.
        save(&small_model(3), &path).unwrap();
        assert!(load_record(&path).unwrap().metadata.is_empty());
        // A missing file and a directory as destination are I/O errors naming the path.
        let e = load_record(dir.join("absent")).unwrap_err().to_string();
        assert!(e.contains("absent"), "{e}");
        assert!(save(&model, &dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = image(&small_model(4));
        for len in 0..bytes.len() {
            assert!(
                rebuild(&bytes[..len]).is_err(),
                "truncated to {len} accepted"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(rebuild(&longer).is_err());
    }

    #[test]
    fn every_flipped_byte_is_an_error() {
        let bytes = image(&small_model(5));
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x20;
            let e = rebuild(&b).expect_err("flipped byte accepted").to_string();
            if (HEADER_LEN..bytes.len() - TRAILER_LEN).contains(&i)
                || i >= bytes.len() - TRAILER_LEN
            {
                assert!(e.contains("checksum"), "byte {i}: {e}");
            }
        }
    }

    #[test]
    fn wrong_magic_version_and_length_are_errors() {
        let bytes = image(&small_model(6));
        let mut b = bytes.clone();
        b[0] = b'X';
        assert!(rebuild(&b).unwrap_err().to_string().contains("magic"));
        let mut b = bytes.clone();
        for v in [0u32, 3] {
            let mut b = bytes.clone();
            b[8..12].copy_from_slice(&v.to_le_bytes());
            let e = rebuild(&b).unwrap_err().to_string();
            assert!(e.contains(&format!("version {v}")), "{e}");
        }
        // A version-2 payload announced as version 1 does not decode as one.
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        assert!(rebuild(&b).is_err());
        // An absurd length is rejected from the header alone (no allocation is attempted).
        let mut b = bytes.clone();
        b[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
        let e = rebuild(&b).unwrap_err().to_string();
        assert!(e.contains("payload length 18446744073709551615"), "{e}");
    }

    /// A payload cut inside a layer's tensor (re-framed, so the checksum passes) names the
    /// field bincode failed in, not only the cause.
    #[test]
    fn a_cut_payload_names_the_field() {
        let rec = ModelRecord::from_model(&small_model(9), BTreeMap::new()).unwrap();
        let payload = bincode::serde::encode_to_vec(&rec, config()).unwrap();
        let e = decode(&frame(&payload[..payload.len() * 2 / 3]), "cut")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cut: corrupt model record: field layers["),
            "{e}"
        );
        assert!(e.contains("bytes early"), "{e}");
    }

    /// A payload that passes the checksum but whose inner length fields lie: the decoder must
    /// fail without allocating what they claim.
    #[test]
    fn lying_inner_lengths_are_errors_without_allocation() {
        // name length varint: 0xFD marker + u64 = 2^62 bytes.
        let mut payload = vec![0xFD];
        payload.extend_from_slice(&(1u64 << 62).to_le_bytes());
        payload.extend_from_slice(b"tiny");
        let file = frame(&payload);
        let e = decode(&file, "lying").unwrap_err().to_string();
        assert!(e.contains("model record"), "{e}");
        // A tensor whose data is shorter than its shape, written through a mirror of the
        // record's serde layout (Tensor itself cannot hold such a pair).
        #[derive(Serialize)]
        struct FakeTensor {
            shape: Vec<usize>,
            data: Vec<f32>,
        }
        #[derive(Serialize)]
        struct FakeLayer {
            kind: String,
            attrs: BTreeMap<String, AttrValue>,
            tensors: Vec<(String, FakeTensor)>,
        }
        #[derive(Serialize)]
        struct FakeModel {
            name: String,
            input_shape: Vec<usize>,
            layers: Vec<FakeLayer>,
            metadata: BTreeMap<String, String>,
        }
        let fake = FakeModel {
            name: "short".into(),
            input_shape: vec![3],
            layers: vec![FakeLayer {
                kind: "test_dense".into(),
                attrs: BTreeMap::new(),
                tensors: vec![(
                    "bias".into(),
                    FakeTensor {
                        shape: vec![4],
                        data: vec![0.0; 3],
                    },
                )],
            }],
            metadata: BTreeMap::new(),
        };
        let payload = bincode::serde::encode_to_vec(&fake, config()).unwrap();
        let e = decode(&frame(&payload), "short").unwrap_err().to_string();
        assert!(e.contains("data has 3 elements but shape [4]"), "{e}");
    }

    /// Every zoo model survives the file bit for bit through the real layer builders, in
    /// weights, buffers (BatchNorm running statistics) and outputs.
    #[test]
    fn zoo_models_round_trip_through_layer_from_record() {
        for &name in crate::zoo::NAMES {
            let mut rng = Rng::seed_from_u64(21);
            let mut model = crate::zoo::build(name, &mut rng).unwrap();
            let x = Tensor::new(
                &[2, 1, 28, 28],
                (0..2 * 784).map(|_| rng.uniform()).collect(),
            )
            .unwrap();
            // A training pass moves BatchNorm's running statistics off their defaults.
            model.forward(&x, Mode::Train).unwrap();
            model.clear_cache();
            let bytes = to_bytes(&model).unwrap();
            let mut back = from_bytes(&bytes, name).unwrap();
            assert_eq!(back.name, name);
            assert_eq!(back.layers.len(), model.layers.len());
            for (a, b) in model.layers.iter().zip(&back.layers) {
                assert_eq!(a.kind(), b.kind());
                let pa: Vec<_> = a
                    .params()
                    .iter()
                    .map(|p| (p.name, p.value.clone()))
                    .collect();
                let pb: Vec<_> = b
                    .params()
                    .iter()
                    .map(|p| (p.name, p.value.clone()))
                    .collect();
                assert_eq!(pa, pb, "{name}: layer {} differs", a.kind());
            }
            let ya = model.forward(&x, Mode::Eval).unwrap();
            let yb = back.forward(&x, Mode::Eval).unwrap();
            assert_eq!(ya, yb, "{name}: outputs differ");
            assert_eq!(
                to_bytes(&back).unwrap(),
                bytes,
                "{name}: re-encoding differs"
            );
        }
    }

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(payload);
        out.extend_from_slice(&crc32(payload).to_le_bytes());
        out
    }

    #[test]
    fn unknown_layer_kinds_are_errors_naming_the_layer() {
        let mut rec = ModelRecord::from_model(&small_model(8), BTreeMap::new()).unwrap();
        rec.layers[1].kind = "mystery".into();
        let e = decode(&encode(&rec).unwrap(), "m")
            .unwrap()
            .into_model_with(&test_registry())
            .unwrap_err()
            .to_string();
        assert!(e.contains("layer 1") && e.contains("mystery"), "{e}");
    }
}
