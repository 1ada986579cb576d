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
