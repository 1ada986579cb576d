//! The stored forms of the shared layers (Deep Compression, sections 2-3), written and read
//! here once for the linear and conv kinds alike.
//!
//! - Dense codes: attributes `bits` (1..=8) and `bias` in {0, 1}; tensor `codebook` `[k]`
//!   (`1 <= k <= 2^bits`); payload `codes`, the `rows * cols` codes packed LSB-first in
//!   `bits` bits ([`PackedCodes`]); tensor `bias` `[rows]`.
//! - Sparse codes (pruned and shared): attributes `bits`, `index_bits` (1..=16), `entries`
//!   and `bias`; payload `gaps`, the relative index (`index_bits`-bit gaps over the
//!   row-major flattening, fillers included, packed LSB-first); payload `codes`, one
//!   `bits`-bit code per entry (fillers code 0); tensor `codebook` `[k]` whose centroid 0
//!   is 0.0; tensor `bias`.
//!
//! Every field is validated against the attributes before anything sized by it is
//! allocated; a bad payload is an `NnError::Corrupt` naming the kind and the field.

use nn::payload::Payload;
use nn::{LayerRecord, NnError};
use tensor_core::Tensor;
use tensor_core::sparse::{check_gaps, pack_bits, packed_len, unpack_bits};

use crate::lookup::SharedMatrix;
use crate::packed::PackedCodes;
use crate::sparse::SparseShared;

/// The codebook, the optional bias and the checks every shared kind shares.
fn begin(rec: &LayerRecord, payloads: &[&str]) -> nn::Result<(u32, bool)> {
    let has_bias = rec.usize_in("bias", 0, 1)? == 1;
    let tensors: &[&str] = if has_bias {
        &["codebook", "bias"]
    } else {
        &["codebook"]
    };
    rec.expect_fields(tensors, payloads)?;
    Ok((rec.usize_in("bits", 1, 8)? as u32, has_bias))
}

fn codebook(rec: &LayerRecord, bits: u32) -> nn::Result<&[f32]> {
    let codebook = rec.tensor("codebook")?;
    let k = codebook.numel();
    if codebook.dims().len() != 1 || k == 0 || k > 1 << bits {
        return Err(rec.corrupt(
            "tensor `codebook`",
            format!("shape {} for {bits}-bit codes", codebook.shape()),
        ));
    }
    Ok(codebook.data())
}

fn bias(rec: &LayerRecord, has_bias: bool, rows: usize) -> nn::Result<Option<Tensor>> {
    has_bias
        .then(|| rec.tensor_with_dims("bias", &[rows]))
        .transpose()
}

fn weights(rec: &LayerRecord, rows: usize, cols: usize) -> nn::Result<usize> {
    rows.checked_mul(cols)
        .ok_or_else(|| rec.corrupt("attributes", format!("{rows} x {cols} overflows")))
}

/// Writes dense codes (module docs) into `rec`.
pub(crate) fn write_dense(
    rec: LayerRecord,
    m: &SharedMatrix,
    bits: u32,
    bias: Option<&Tensor>,
) -> nn::Result<LayerRecord> {
    let packed = PackedCodes::pack(m.codes(), bits).map_err(NnError::from)?;
    let k = m.centroids().len();
    let rec = rec
        .with_int("bits", bits as i64)
        .with_int("bias", bias.is_some() as i64)
        .with_tensor("codebook", Tensor::new(&[k], m.centroids().to_vec())?)
        .with_payload("codes", Payload::bytes(packed.into_bytes()));
    Ok(match bias {
        Some(b) => rec.with_tensor("bias", b.clone()),
        None => rec,
    })
}

/// Reads the dense codes of a `rows x cols` weight, its code width and bias.
pub(crate) fn read_dense(
    rec: &LayerRecord,
    rows: usize,
    cols: usize,
) -> nn::Result<(SharedMatrix, u32, Option<Tensor>)> {
    let (bits, has_bias) = begin(rec, &["codes"])?;
    let centroids = codebook(rec, bits)?;
    let n = weights(rec, rows, cols)?;
    let want = PackedCodes::byte_len(bits, n).map_err(NnError::from)?;
    let bytes = rec.bytes("codes", want)?;
    let packed = PackedCodes::from_parts(bits, n, bytes.to_vec(), centroids.len())
        .map_err(|e| rec.corrupt("payload `codes`", e.to_string()))?;
    let matrix = SharedMatrix::from_packed(rows, cols, centroids, &packed)
        .map_err(|e| rec.corrupt("payload `codes`", e.to_string()))?;
    Ok((matrix, bits, bias(rec, has_bias, rows)?))
}

/// The relative index of `m` as written: packed gaps, packed codes and the entry count.
pub(crate) struct SparseStored {
    pub(crate) gaps: Vec<u8>,
    pub(crate) codes: Vec<u8>,
    pub(crate) entries: usize,
}

impl SparseStored {
    /// Packs `m` with `index_bits`-bit gaps and `bits`-bit codes.
    pub(crate) fn new(m: &SparseShared, bits: u32, index_bits: u32) -> crate::Result<Self> {
        let (gaps, codes) = m.to_relative_index(index_bits)?;
        Ok(Self {
            entries: gaps.len(),
            gaps: pack_bits(&gaps, index_bits)?,
            codes: PackedCodes::pack(&codes, bits)?.into_bytes(),
        })
    }
}

/// Writes sparse codes (module docs) into `rec`.
pub(crate) fn write_sparse(
    rec: LayerRecord,
    m: &SparseShared,
    bits: u32,
    index_bits: u32,
    bias: Option<&Tensor>,
) -> nn::Result<LayerRecord> {
    let s = SparseStored::new(m, bits, index_bits).map_err(NnError::from)?;
    let k = m.centroids().len();
    let rec = rec
        .with_int("bits", bits as i64)
        .with_int("index_bits", index_bits as i64)
        .with_int("entries", s.entries as i64)
        .with_int("bias", bias.is_some() as i64)
        .with_tensor("codebook", Tensor::new(&[k], m.centroids().to_vec())?)
        .with_payload("gaps", Payload::bytes(s.gaps))
        .with_payload("codes", Payload::bytes(s.codes));
    Ok(match bias {
        Some(b) => rec.with_tensor("bias", b.clone()),
        None => rec,
    })
}

/// Reads the sparse codes of a `rows x cols` weight: the matrix, code width, gap width and
/// bias.
pub(crate) fn read_sparse(
    rec: &LayerRecord,
    rows: usize,
    cols: usize,
) -> nn::Result<(SparseShared, u32, u32, Option<Tensor>)> {
    let (bits, has_bias) = begin(rec, &["gaps", "codes"])?;
    let index_bits = rec.usize_in("index_bits", 1, 16)? as u32;
    let centroids = codebook(rec, bits)?;
    let n = weights(rec, rows, cols)?;
    // Every entry, filler or not, occupies its own position.
    let entries = rec.usize_in("entries", 0, n)?;
    let gap_bytes = rec.bytes(
        "gaps",
        packed_len(entries, index_bits).unwrap_or(usize::MAX),
    )?;
    let corrupt_gaps = |e: String| rec.corrupt("payload `gaps`", e);
    let gaps =
        unpack_bits(gap_bytes, index_bits, entries).map_err(|e| corrupt_gaps(e.to_string()))?;
    check_gaps("read sparse codes", &gaps, index_bits, n)
        .map_err(|e| corrupt_gaps(e.to_string()))?;
    let want = PackedCodes::byte_len(bits, entries).map_err(NnError::from)?;
    let code_bytes = rec.bytes("codes", want)?;
    let codes = PackedCodes::from_parts(bits, entries, code_bytes.to_vec(), centroids.len())
        .map_err(|e| rec.corrupt("payload `codes`", e.to_string()))?;
    let matrix = SparseShared::from_relative_index(rows, cols, centroids, &gaps, &codes.unpack())
        .map_err(|e| rec.corrupt("payload `codes`", e.to_string()))?;
    Ok((matrix, bits, index_bits, bias(rec, has_bias, rows)?))
}
