//! The stored form shared by the sparse layers: Deep Compression's relative index of the
//! weight matrix (section 2), as attributes `index_bits` and `entries`, the payload `gaps`
//! (the gaps packed LSB-first in `index_bits` bits) and the tensor `values` (one f32 per
//! entry, fillers as 0.0), plus an optional `bias` tensor.

use nn::payload::Payload;
use nn::{LayerRecord, NnError};
use tensor_core::Tensor;

use crate::RelativeIndexed;
use crate::sparse::{Csr, packed_len};

/// Writes `csr` (a `rows x cols` weight) and `bias` into `rec` in relative-index form.
pub(crate) fn write(
    rec: LayerRecord,
    csr: &Csr,
    index_bits: u32,
    bias: Option<&Tensor>,
) -> nn::Result<LayerRecord> {
    let ri = csr.to_relative_index(index_bits).map_err(NnError::from)?;
    let gaps = ri.pack_gaps().map_err(NnError::from)?;
    let entries = ri.values.len();
    let mut rec = rec
        .with_int("index_bits", index_bits as i64)
        .with_int("entries", entries as i64)
        .with_int("bias", bias.is_some() as i64)
        .with_payload("gaps", Payload::bytes(gaps))
        .with_tensor("values", Tensor::new(&[entries], ri.values)?);
    if let Some(b) = bias {
        rec = rec.with_tensor("bias", b.clone());
    }
    Ok(rec)
}

/// Reads the `rows x cols` weight and the bias (`[rows]`) written by [`write`], validating
/// every field against the attributes before anything sized by them is allocated.
pub(crate) fn read(
    rec: &LayerRecord,
    rows: usize,
    cols: usize,
) -> nn::Result<(Csr, u32, Option<Tensor>)> {
    let has_bias = rec.usize_in("bias", 0, 1)? == 1;
    let tensors: &[&str] = if has_bias {
        &["values", "bias"]
    } else {
        &["values"]
    };
    rec.expect_fields(tensors, &["gaps"])?;
    let index_bits = rec.usize_in("index_bits", 1, 16)? as u32;
    // At most one filler per 2^bits positions plus one entry per weight.
    let max_entries = rows
        .checked_mul(cols)
        .ok_or_else(|| rec.corrupt("attributes", format!("{rows} x {cols} overflows")))?;
    let entries = rec.usize_in("entries", 0, max_entries)?;
    let values = rec.tensor_with_dims("values", &[entries])?;
    let want = packed_len(entries, index_bits).unwrap_or(usize::MAX);
    let gaps = rec.bytes("gaps", want)?;
    let ri = RelativeIndexed::from_packed(gaps, index_bits, values.into_vec(), rows * cols)
        .map_err(|e| rec.corrupt("payload `gaps`", e.to_string()))?;
    let csr = Csr::from_relative_index(rows, cols, &ri)
        .map_err(|e| rec.corrupt("payload `gaps`", e.to_string()))?;
    let bias = if has_bias {
        Some(rec.tensor_with_dims("bias", &[rows])?)
    } else {
        None
    };
    Ok((csr, index_bits, bias))
}
