//! Streamed writing of the container: each section is serialized straight from the layer's
//! record into the output, so writing a model never holds a second copy of all its weights
//! (only the record of the one layer being written). The section table, whose lengths and
//! checksums are known only after the sections, is written as zeros first and filled in at
//! the end by seeking back: the bytes are exactly those of a file image built in memory.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use nn::io::native::{self, Crc32};
use nn::{AttrValue, LayerRecord, Model, NnError, Result};
use serde::Serialize;
use tensor_core::Tensor;

use super::coding::{self, StoredPayload};
use super::{ENTRY_LEN, HEADER_LEN, MAX_SECTIONS, TAG_LAYER, TAG_MODEL, WriteOptions};

/// The model section, borrowed (serializes exactly as `ModelSection`).
#[derive(Serialize)]
struct ModelSectionRef<'a> {
    name: &'a str,
    input_shape: &'a [usize],
    layers: u64,
    metadata: &'a BTreeMap<String, String>,
}

/// A layer section, borrowing the record's tensors (serializes exactly as `LayerSection`).
#[derive(Serialize)]
struct LayerSectionRef<'a> {
    kind: &'a str,
    attrs: &'a BTreeMap<String, AttrValue>,
    tensors: &'a [(String, Tensor)],
    payloads: Vec<(&'a str, StoredPayload)>,
}

/// What the header says of the model: its name, input shape and metadata.
#[derive(Clone, Copy, Debug)]
pub struct ModelHeader<'a> {
    /// Model name.
    pub name: &'a str,
    /// Input shape (without the batch dimension).
    pub input_shape: &'a [usize],
    /// Metadata (recipe, source hash, measured accuracy ...).
    pub metadata: &'a BTreeMap<String, String>,
}

/// Counts and checksums the bytes of one section on their way to the output.
struct SectionWriter<'w, W: Write> {
    out: &'w mut W,
    crc: Crc32,
    len: u64,
}

impl<W: Write> Write for SectionWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Serializes one section into `out`; returns its table entry (tag, length, CRC-32).
fn section<T: Serialize, W: Write>(
    out: &mut W,
    tag: [u8; 4],
    value: &T,
    what: &str,
) -> Result<([u8; 4], u64, u32)> {
    let mut w = SectionWriter {
        out,
        crc: Crc32::new(),
        len: 0,
    };
    native::encode_value_into(value, &mut w, what)?;
    Ok((tag, w.len, w.crc.finish()))
}

/// The header and section table of a file whose sections are `entries` (tag, length,
/// CRC-32), ending with the header's own CRC-32.
fn table(entries: &[([u8; 4], u64, u32)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + ENTRY_LEN * entries.len() + 4);
    out.extend_from_slice(&native::MAGIC);
    out.extend_from_slice(&native::CONTAINER_VERSION.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (tag, len, crc) in entries {
        out.extend_from_slice(tag);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
    }
    let header_crc = native::crc32(&out);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out
}

/// Writes a container to `out` from its current position: the header, then `layers` layer
/// sections, the `i`-th from the record `layer(i)` returns (asked for one at a time and
/// dropped once written). Returns the bytes written; `out` is left at their end.
///
/// Errors: more layers than [`MAX_SECTIONS`] allows (before anything is written), a record
/// the serializer rejects, an error of `layer`, or an I/O error of `out`.
pub fn write_to<'r, W: Write + Seek>(
    out: &mut W,
    header: ModelHeader<'_>,
    layers: usize,
    mut layer: impl FnMut(usize) -> Result<Cow<'r, LayerRecord>>,
    options: &WriteOptions,
) -> Result<u64> {
    if layers as u64 >= MAX_SECTIONS as u64 {
        return Err(NnError::Unsupported(format!(
            "container: {layers} layers, at most {}",
            MAX_SECTIONS - 1
        )));
    }
    let io = |e: std::io::Error| NnError::Unsupported(format!("container: writing failed: {e}"));
    let start = out.stream_position().map_err(io)?;
    let table_len = (HEADER_LEN + ENTRY_LEN * (layers + 1) + 4) as u64;
    let mut buf = BufWriter::with_capacity(1 << 20, &mut *out);
    buf.write_all(&vec![0u8; table_len as usize]).map_err(io)?;
    let mut entries = Vec::with_capacity(layers + 1);
    let model = ModelSectionRef {
        name: header.name,
        input_shape: header.input_shape,
        layers: layers as u64,
        metadata: header.metadata,
    };
    entries.push(section(
        &mut buf,
        TAG_MODEL,
        &model,
        "container model section",
    )?);
    for i in 0..layers {
        let record = layer(i)?;
        let stored = LayerSectionRef {
            kind: &record.kind,
            attrs: &record.attrs,
            tensors: &record.tensors,
            payloads: record
                .payloads
                .iter()
                .map(|(n, p)| (n.as_str(), coding::encode(p, options.huffman)))
                .collect(),
        };
        let what = format!("container layer {i} ({})", record.kind);
        entries.push(section(&mut buf, TAG_LAYER, &stored, &what)?);
    }
    buf.flush().map_err(io)?;
    drop(buf);
    let total = table_len + entries.iter().map(|e| e.1).sum::<u64>();
    out.seek(SeekFrom::Start(start)).map_err(io)?;
    out.write_all(&table(&entries)).map_err(io)?;
    out.seek(SeekFrom::Start(start + total)).map_err(io)?;
    Ok(total)
}

/// Writes `model` with `metadata` as a container file at `path`, atomically (a temporary
/// file renamed into place; removed on any error) and streamed: one layer's record at a time
/// is serialized straight into the file. Returns the bytes written.
pub fn save_model(
    model: &Model,
    metadata: &BTreeMap<String, String>,
    options: &WriteOptions,
    path: &Path,
) -> Result<u64> {
    let header = ModelHeader {
        name: &model.name,
        input_shape: &model.input_shape,
        metadata,
    };
    let mut written = 0;
    nn::io::atomic::write_atomic_with(path, |f| {
        let layer = |i: usize| model.layers[i].record().map(Cow::Owned);
        written = write_to(f, header, model.layers.len(), layer, options)?;
        Ok(())
    })?;
    Ok(written)
}
