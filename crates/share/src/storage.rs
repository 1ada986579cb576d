//! Storage accounting of a shared layer: Deep Compression's rate next to the bytes written.
//!
//! Deep Compression, section 3.1: `n` weights of `b` bits each, shared through `k` centroids,
//! store `n * log2(k)` bits of indices and `k * b` bits of codebook, a compression rate
//!
//! ```text
//! r = n * b / (n * log2(k) + k * b)
//! ```
//!
//! (the paper's example: 16 weights, 4 centroids, `r = 16*32 / (4*32 + 2*16) = 3.2`).
//! Here the index width is the stored one, `bits` (so `log2(k)` becomes `bits`, equal when
//! `k = 2^bits`), and [`SharedStorage`] puts the exact bytes of the packed codes
//! ([`crate::PackedCodes`]) and the f32 codebook next to the formula.

use crate::error::Result;
use crate::packed::PackedCodes;

/// Deep Compression's rate `n * b_orig / (n * bits + k * b_orig)` (module docs), with
/// `b_orig` the bits of one original weight (32 for f32).
///
/// Nothing stored and nothing compressed (`n = 0` and `k = 0`) gives NaN (0 / 0).
pub fn compression_rate(n: usize, bits: u32, k: usize, b_orig: u32) -> f64 {
    let (n, k, bits, b_orig) = (n as f64, k as f64, bits as f64, b_orig as f64);
    n * b_orig / (n * bits + k * b_orig)
}

/// The bytes of one shared layer: packed indices plus an f32 codebook.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SharedStorage {
    /// Weights (codes).
    pub n: usize,
    /// Index width in bits.
    pub bits: u32,
    /// Centroids in the codebook.
    pub k: usize,
    /// Bytes of the packed indices, `ceil(n * bits / 8)`.
    pub index_bytes: usize,
    /// Bytes of the f32 codebook, `4 * k`.
    pub codebook_bytes: usize,
}

impl SharedStorage {
    /// The storage of `n` codes of `bits` bits and `k` f32 centroids.
    ///
    /// Errors: `bits` outside `1..=16`; a size that overflows.
    pub fn new(n: usize, bits: u32, k: usize) -> Result<Self> {
        Ok(Self {
            n,
            bits,
            k,
            index_bytes: PackedCodes::byte_len(bits, n)?,
            codebook_bytes: k.saturating_mul(4),
        })
    }

    /// Bytes written: indices plus codebook.
    pub fn bytes(&self) -> usize {
        self.index_bytes.saturating_add(self.codebook_bytes)
    }

    /// Bytes of the same weights dense, `4 * n`.
    pub fn dense_bytes(&self) -> usize {
        self.n.saturating_mul(4)
    }

    /// Deep Compression's rate for these parameters ([`compression_rate`], `b_orig = 32`).
    pub fn theoretical_rate(&self) -> f64 {
        compression_rate(self.n, self.bits, self.k, 32)
    }

    /// Dense bytes over bytes written (differs from the theoretical rate by the rounding
    /// of the last byte only).
    pub fn actual_rate(&self) -> f64 {
        self.dense_bytes() as f64 / self.bytes() as f64
    }
}

/// The stored form of one shared layer, item by item: what Deep Compression counts
/// (index bits, code bits, codebook) next to the bytes actually written.
///
/// Dense codes store every weight (`entries = weights`, no relative index); pruned and
/// shared layers store `entries` = nonzeros plus fillers, each with an `index_bits`-bit gap
/// and a `bits`-bit code. Deep Compression's rate ([`LayerStorage::rate`]) is then
/// `32 n / (e (index_bits + bits) + 32 k)`, which for dense codes is section 3.1's
/// `32 n / (n bits + 32 k)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerStorage {
    /// Record kind of the layer.
    pub kind: &'static str,
    /// Weights of the dense layer, `n`.
    pub weights: usize,
    /// Nonzero weights (entries that are not fillers).
    pub nnz: usize,
    /// Stored entries, fillers included (`n` for dense codes).
    pub entries: usize,
    /// Code width in bits.
    pub bits: u32,
    /// Centroids in the codebook.
    pub k: usize,
    /// Relative-index width in bits (0 for dense codes).
    pub index_bits: u32,
    /// Bytes of the packed gaps, `ceil(e * index_bits / 8)`.
    pub index_bytes: usize,
    /// Bytes of the packed codes, `ceil(e * bits / 8)`.
    pub code_bytes: usize,
    /// Bytes of the f32 codebook, `4 k`.
    pub codebook_bytes: usize,
    /// Bytes of the f32 bias.
    pub bias_bytes: usize,
}

impl LayerStorage {
    /// The storage of dense codes `m` of `bits` bits.
    pub fn dense(
        kind: &'static str,
        m: &crate::SharedMatrix,
        bits: u32,
        bias: Option<&tensor_core::Tensor>,
    ) -> Self {
        let n = m.rows() * m.cols();
        Self {
            kind,
            weights: n,
            nnz: m
                .codes()
                .iter()
                .filter(|&&c| m.centroids()[c as usize] != 0.0)
                .count(),
            entries: n,
            bits,
            k: m.centroids().len(),
            index_bits: 0,
            index_bytes: 0,
            code_bytes: (n * bits as usize).div_ceil(8),
            codebook_bytes: 4 * m.centroids().len(),
            bias_bytes: bias.map_or(0, |b| 4 * b.numel()),
        }
    }

    /// The storage of sparse codes `m` with `bits`-bit codes and `index_bits`-bit gaps.
    ///
    /// Errors: `index_bits` outside `1..=16`.
    pub fn sparse(
        kind: &'static str,
        m: &crate::SparseShared,
        bits: u32,
        index_bits: u32,
        bias: Option<&tensor_core::Tensor>,
    ) -> Result<Self> {
        let entries = m.relative_index_entries(index_bits)?;
        Ok(Self {
            kind,
            weights: m.rows() * m.cols(),
            nnz: m.nnz(),
            entries,
            bits,
            k: m.centroids().len(),
            index_bits,
            index_bytes: (entries * index_bits as usize).div_ceil(8),
            code_bytes: (entries * bits as usize).div_ceil(8),
            codebook_bytes: 4 * m.centroids().len(),
            bias_bytes: bias.map_or(0, |b| 4 * b.numel()),
        })
    }

    /// Bits of the relative index, `e * index_bits`.
    pub fn index_bits_total(&self) -> u64 {
        self.entries as u64 * self.index_bits as u64
    }

    /// Bits of the codes, `e * bits`.
    pub fn code_bits_total(&self) -> u64 {
        self.entries as u64 * self.bits as u64
    }

    /// Bytes written for the layer: gaps, codes, codebook and bias.
    pub fn bytes(&self) -> usize {
        self.index_bytes + self.code_bytes + self.codebook_bytes + self.bias_bytes
    }

    /// Deep Compression's rate of the weights, `32 n / (e (index_bits + bits) + 32 k)`
    /// (type docs).
    pub fn rate(&self) -> f64 {
        let stored =
            (self.index_bits_total() + self.code_bits_total()) as f64 + 32.0 * self.k as f64;
        32.0 * self.weights as f64 / stored
    }

    /// The rate of the bytes written for the weights (bias excluded): `4 n` over gaps,
    /// codes and codebook.
    pub fn actual_rate(&self) -> f64 {
        (4 * self.weights) as f64
            / (self.index_bytes + self.code_bytes + self.codebook_bytes) as f64
    }
}
