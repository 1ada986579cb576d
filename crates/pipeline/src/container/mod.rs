//! The `.slim` container (native format version 3): one file format for every model, dense
//! or compressed, in checksummed sections, with payloads optionally Huffman-coded.
//! docs/FORMAT.md specifies every byte; this module implements it.
//!
//! A file is a header (magic, version, section count), a table with each section's tag,
//! length and CRC-32, the header's own CRC-32, then the sections: `MODL` (name, input shape,
//! layer count, metadata such as the recipe, the source model's hash and the accuracy
//! measured) and one `LAYR` per top-level layer (its record, each payload raw or as a
//! Huffman block, [`coding`]). Every error names the section it was found in. Version 1 and 2
//! files (nn's single-record format) still load through [`decode_any`].
//!
//! ```
//! # fn main() -> nn::Result<()> {
//! let model = nn::zoo::build("lenet300", &mut tensor_core::rng::Rng::seed_from_u64(1))?;
//! let record = nn::io::native::ModelRecord::from_model(&model, Default::default())?;
//! let bytes = pipeline::container::encode(&record, &pipeline::container::WriteOptions::default())?;
//! assert_eq!(pipeline::container::decode(&bytes, "lenet300.slim")?, record);
//! # Ok(())
//! # }
//! ```

pub mod coding;
pub mod stream;

use std::collections::BTreeMap;

use nn::io::native::{self, CONTAINER_VERSION, MAGIC, ModelRecord, crc32};
use nn::{AttrValue, LayerRecord, NnError, Result};
use serde::{Deserialize, Serialize};
use tensor_core::Tensor;

use coding::StoredPayload;

/// Tag of the model section.
pub const TAG_MODEL: [u8; 4] = *b"MODL";
/// Tag of a layer section.
pub const TAG_LAYER: [u8; 4] = *b"LAYR";
/// Bytes before the section table: magic, version, section count.
pub const HEADER_LEN: usize = 16;
/// Bytes of one section-table entry: tag, length, CRC-32.
pub const ENTRY_LEN: usize = 16;
/// Most sections a file may declare (the model section and up to 65,535 layers).
pub const MAX_SECTIONS: u32 = 1 << 16;

/// How the writer stores payloads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteOptions {
    /// Huffman-code payloads where that is smaller (Deep Compression's last stage).
    pub huffman: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self { huffman: true }
    }
}

#[derive(Serialize, Deserialize)]
struct ModelSection {
    name: String,
    input_shape: Vec<usize>,
    layers: u64,
    metadata: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct LayerSection {
    kind: String,
    attrs: BTreeMap<String, AttrValue>,
    tensors: Vec<(String, Tensor)>,
    payloads: Vec<(String, StoredPayload)>,
}

/// One section of a file, as [`sections`] lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionInfo {
    /// The tag (`MODL` or `LAYR`).
    pub tag: String,
    /// Offset of its first byte in the file.
    pub offset: u64,
    /// Its length in bytes.
    pub len: u64,
}

/// Whether `bytes` start like a container (magic and version 3).
pub fn is_container(bytes: &[u8]) -> bool {
    bytes.len() >= 12 && bytes[..8] == MAGIC && bytes[8..12] == CONTAINER_VERSION.to_le_bytes()
}

/// The file image of `record` (the bytes [`stream::save_model`] writes for its model).
///
/// Errors: more layers than [`MAX_SECTIONS`] allows, or a record the serializer rejects.
pub fn encode(record: &ModelRecord, options: &WriteOptions) -> Result<Vec<u8>> {
    let mut out = std::io::Cursor::new(Vec::new());
    let header = stream::ModelHeader {
        name: &record.name,
        input_shape: &record.input_shape,
        metadata: &record.metadata,
    };
    let layer = |i: usize| Ok(std::borrow::Cow::Borrowed(&record.layers[i]));
    stream::write_to(&mut out, header, record.layers.len(), layer, options)?;
    Ok(out.into_inner())
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// The sections of a file image, checked: header, table, header checksum and that the
/// sections exactly fill the file (section checksums are checked by [`decode`]).
pub fn sections(bytes: &[u8], source: &str) -> Result<Vec<SectionInfo>> {
    sections_of(bytes, bytes.len() as u64, source)
}

/// [`sections`] from the start of a file only: `bytes` holds at least the header and the
/// section table (or all of a shorter file), `file_len` is the whole file's length.
fn sections_of(bytes: &[u8], file_len: u64, source: &str) -> Result<Vec<SectionInfo>> {
    let corrupt = |what: &str, reason: String| NnError::corrupt(source, what, reason);
    if bytes.len() < HEADER_LEN + 4 {
        return Err(corrupt(
            "container header",
            format!("file is {} bytes, shorter than a header", bytes.len()),
        ));
    }
    if bytes[..8] != MAGIC {
        return Err(corrupt(
            "container header",
            format!(
                "magic {:?} is not {:?} (not a slimnet model file)",
                String::from_utf8_lossy(&bytes[..8]),
                String::from_utf8_lossy(&MAGIC)
            ),
        ));
    }
    let version = u32_at(bytes, 8);
    if version != CONTAINER_VERSION {
        return Err(corrupt(
            "container header",
            format!("format version {version}, a container is version {CONTAINER_VERSION}"),
        ));
    }
    let count = u32_at(bytes, 12);
    if count == 0 || count > MAX_SECTIONS {
        return Err(corrupt(
            "container header",
            format!("{count} sections declared (1..={MAX_SECTIONS})"),
        ));
    }
    let table_end = HEADER_LEN + ENTRY_LEN * count as usize;
    if bytes.len() < table_end + 4 {
        return Err(corrupt(
            "section table",
            format!(
                "{count} sections need {} bytes of table, the file has {}: truncated",
                table_end + 4,
                bytes.len()
            ),
        ));
    }
    let stored = u32_at(bytes, table_end);
    let computed = crc32(&bytes[..table_end]);
    if stored != computed {
        return Err(corrupt(
            "section table",
            format!("stored CRC-32 {stored:#010x}, header and table have {computed:#010x}"),
        ));
    }
    let mut offset = (table_end + 4) as u64;
    let mut out = Vec::with_capacity(count as usize);
    for i in 0..count as usize {
        let at = HEADER_LEN + ENTRY_LEN * i;
        let tag = String::from_utf8_lossy(&bytes[at..at + 4]).into_owned();
        let len = u64_at(bytes, at + 4);
        let end = offset.checked_add(len).filter(|&e| e <= file_len);
        let Some(end) = end else {
            return Err(corrupt(
                &section_name(i, &tag),
                format!(
                    "{len} bytes at offset {offset} run past the end of the {file_len}-byte \
                     file: truncated"
                ),
            ));
        };
        out.push(SectionInfo { tag, offset, len });
        offset = end;
    }
    if offset != file_len {
        return Err(corrupt(
            "section table",
            format!("sections end at byte {offset}, the file has {file_len} bytes"),
        ));
    }
    Ok(out)
}

fn section_name(i: usize, tag: &str) -> String {
    if i == 0 {
        format!("section 0 ({tag})")
    } else {
        format!("section {i} ({tag}, layer {})", i - 1)
    }
}

/// Reads a container file image into the model record (payloads decoded back to their
/// typed form), checking everything docs/FORMAT.md lists. `source` names the file in errors.
pub fn decode(bytes: &[u8], source: &str) -> Result<ModelRecord> {
    let infos = sections(bytes, source)?;
    let body = |i: usize| -> Result<&[u8]> {
        let s = &infos[i];
        let name = section_name(i, &s.tag);
        // Offsets were checked against the file length by `sections`.
        let b = &bytes[s.offset as usize..(s.offset + s.len) as usize];
        let stored = u32_at(bytes, HEADER_LEN + ENTRY_LEN * i + 12);
        let computed = crc32(b);
        if stored != computed {
            return Err(NnError::corrupt(
                source,
                name,
                format!("stored CRC-32 {stored:#010x}, section has {computed:#010x}"),
            ));
        }
        Ok(b)
    };
    if infos[0].tag.as_bytes() != TAG_MODEL {
        return Err(NnError::corrupt(
            source,
            section_name(0, &infos[0].tag),
            "the first section must be MODL".to_string(),
        ));
    }
    let model: ModelSection = native::decode_value(body(0)?, source, "section 0 (MODL)")?;
    if model.layers != infos.len() as u64 - 1 {
        return Err(NnError::corrupt(
            source,
            "section 0 (MODL)",
            format!(
                "{} layers declared, {} layer sections present",
                model.layers,
                infos.len() - 1
            ),
        ));
    }
    let mut layers = Vec::with_capacity(infos.len() - 1);
    for (i, info) in infos.iter().enumerate().skip(1) {
        let name = section_name(i, &info.tag);
        if info.tag.as_bytes() != TAG_LAYER {
            return Err(NnError::corrupt(
                source,
                name,
                "expected a LAYR section".to_string(),
            ));
        }
        let stored: LayerSection = native::decode_value(body(i)?, source, &name)?;
        let payloads = stored
            .payloads
            .into_iter()
            .map(|(n, p)| {
                let what = format!("{name} payload `{n}`");
                coding::decode(p, source, &what).map(|p| (n, p))
            })
            .collect::<Result<Vec<_>>>()?;
        layers.push(LayerRecord {
            kind: stored.kind,
            attrs: stored.attrs,
            tensors: stored.tensors,
            payloads,
        });
    }
    let record = ModelRecord {
        name: model.name,
        input_shape: model.input_shape,
        layers,
        metadata: model.metadata,
    };
    native::validate(&record, source)?;
    Ok(record)
}

/// The metadata of a container file, reading only its header, section table and model
/// section (not the layers: a large model's metadata costs kilobytes, not its weights), with
/// the same checks [`decode`] makes of them.
pub fn read_metadata(path: &std::path::Path) -> Result<BTreeMap<String, String>> {
    use std::io::{Read, Seek, SeekFrom};
    let source = path.display().to_string();
    let io = |e: std::io::Error| NnError::io(path, e);
    let mut f = std::fs::File::open(path).map_err(io)?;
    let file_len = f.metadata().map_err(io)?.len();
    let mut head = vec![0u8; HEADER_LEN];
    let n = f.read(&mut head).map_err(io)?;
    head.truncate(n);
    if head.len() == HEADER_LEN {
        // The table's length, as declared (checked by `sections_of`; capped here).
        let count = u32_at(&head, 12).min(MAX_SECTIONS) as usize;
        let want = (HEADER_LEN + ENTRY_LEN * count + 4) as u64;
        let mut rest = Vec::new();
        (&mut f)
            .take(want.min(file_len) - HEADER_LEN as u64)
            .read_to_end(&mut rest)
            .map_err(io)?;
        head.extend_from_slice(&rest);
    }
    let infos = sections_of(&head, file_len, &source)?;
    let name = section_name(0, &infos[0].tag);
    if infos[0].tag.as_bytes() != TAG_MODEL {
        return Err(NnError::corrupt(
            &source,
            name,
            "the first section must be MODL".to_string(),
        ));
    }
    // Its length was checked against the file's by `sections_of`.
    let mut body = vec![0u8; infos[0].len as usize];
    f.seek(SeekFrom::Start(infos[0].offset)).map_err(io)?;
    f.read_exact(&mut body).map_err(io)?;
    let stored = u32_at(&head, HEADER_LEN + 12);
    let computed = crc32(&body);
    if stored != computed {
        return Err(NnError::corrupt(
            &source,
            name,
            format!("stored CRC-32 {stored:#010x}, section has {computed:#010x}"),
        ));
    }
    let model: ModelSection = native::decode_value(&body, &source, "section 0 (MODL)")?;
    Ok(model.metadata)
}

/// One payload of a layer section as stored: its name, the bytes of its raw form and the
/// bytes it occupies (smaller when Huffman-coded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayloadInfo {
    /// Payload name (`codes`, `gaps`, ...).
    pub name: String,
    /// Bytes of the little-endian elements.
    pub raw_bytes: u64,
    /// Bytes stored (the Huffman block, or the raw bytes).
    pub stored_bytes: u64,
    /// Symbol width of the Huffman coding, or `None` when stored raw.
    pub symbol_bits: Option<u8>,
}

/// A layer section as stored: its kind, length and payloads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// Record kind.
    pub kind: String,
    /// Bytes of the section.
    pub section_bytes: u64,
    /// Its payloads, in record order.
    pub payloads: Vec<PayloadInfo>,
}

/// What each layer section of a file image stores, without decoding any Huffman block: the
/// sizes a per-layer compression table reports.
pub fn layer_infos(bytes: &[u8], source: &str) -> Result<Vec<LayerInfo>> {
    let infos = sections(bytes, source)?;
    let mut out = Vec::with_capacity(infos.len().saturating_sub(1));
    for (i, s) in infos.iter().enumerate().skip(1) {
        let name = section_name(i, &s.tag);
        let body = &bytes[s.offset as usize..(s.offset + s.len) as usize];
        let stored: LayerSection = native::decode_value(body, source, &name)?;
        out.push(LayerInfo {
            kind: stored.kind,
            section_bytes: s.len,
            payloads: stored
                .payloads
                .iter()
                .map(|(n, p)| PayloadInfo {
                    name: n.clone(),
                    raw_bytes: nn::Payload::expected_byte_len(p.elem, &p.dims).unwrap_or(0),
                    stored_bytes: p.stored_len() as u64,
                    symbol_bits: match &p.coding {
                        coding::Coding::Raw(_) => None,
                        coding::Coding::Huffman { symbol_bits, .. } => Some(*symbol_bits),
                    },
                })
                .collect(),
        });
    }
    Ok(out)
}

/// Reads any native file image: a container (version 3) or nn's single-record format
/// (versions 1 and 2).
pub fn decode_any(bytes: &[u8], source: &str) -> Result<ModelRecord> {
    if bytes.len() >= 12 && bytes[..8] == MAGIC && u32_at(bytes, 8) == CONTAINER_VERSION {
        decode(bytes, source)
    } else {
        native::decode(bytes, source)
    }
}

#[cfg(test)]
mod tests;
