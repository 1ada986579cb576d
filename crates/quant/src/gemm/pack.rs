//! Weights packed into column panels for the int8 GEMM microkernels.

use crate::error::{QuantError, Result};

/// Columns per panel: two AVX2 registers of eight i32 lanes, one AVX-512 register of sixteen.
pub const NR: usize = 16;
/// Depth of one group: the four bytes `vpdpbusd` (and `vpmaddubsw` + `vpmaddwd`) add into
/// one i32 lane.
pub const KG: usize = 4;
/// Bytes of one panel per depth group.
pub const GROUP_BYTES: usize = NR * KG;

/// `K` rounded up to a whole number of depth groups.
pub fn padded_depth(k: usize) -> usize {
    k.div_ceil(KG) * KG
}

/// The weights `W[n, k]` (row `j` = output column `j` of `C = A W^T`) packed once into panels
/// of [`NR`] columns: panel `p`, depth group `g` holds 64 bytes, column `j`'s four weights
/// `W[16p + j][4g .. 4g + 4]` at bytes `4j .. 4j + 4`. One 64-byte load (or two 32-byte ones)
/// then feeds sixteen columns' i32 lanes. Columns past `n` and depths past `k` are zero, so a
/// kernel needs no tail code and padding bytes of the activations multiply zeros.
///
/// Also keeps each column's weight sum `sum_k W[j][k]`, which the zero-point correction of
/// a quantized layer needs (`sum_k (a - za) w = sum_k a w - za sum_k w`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedWeights {
    n: usize,
    k: usize,
    panels: Vec<i8>,
    col_sums: Vec<i32>,
    max_abs: u8,
}

impl PackedWeights {
    /// Packs row-major `w` of `n` rows and `k` columns.
    pub fn pack(w: &[i8], n: usize, k: usize) -> Result<Self> {
        let expected = n
            .checked_mul(k)
            .ok_or_else(|| QuantError::InvalidArgument {
                op: "PackedWeights::pack",
                reason: format!("{n} x {k} weights overflow usize"),
            })?;
        if w.len() != expected {
            return Err(QuantError::LengthMismatch {
                op: "PackedWeights::pack",
                what: "weights",
                got: w.len(),
                expected,
            });
        }
        let groups = padded_depth(k) / KG;
        let n_panels = n.div_ceil(NR);
        let mut panels = vec![0i8; n_panels * groups * GROUP_BYTES];
        for (col, row) in w.chunks_exact(k.max(1)).enumerate().take(n) {
            let (p, j) = (col / NR, col % NR);
            let panel = &mut panels[p * groups * GROUP_BYTES..(p + 1) * groups * GROUP_BYTES];
            for (kk, &v) in row.iter().enumerate() {
                panel[(kk / KG) * GROUP_BYTES + j * KG + kk % KG] = v;
            }
        }
        let col_sums = if k == 0 {
            vec![0; n]
        } else {
            w.chunks_exact(k)
                .map(|r| r.iter().map(|&v| i32::from(v)).sum())
                .collect()
        };
        let max_abs = w.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0);
        Ok(Self {
            n,
            k,
            panels,
            col_sums,
            max_abs,
        })
    }

    /// Output columns (rows of the unpacked `W`).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Depth (columns of the unpacked `W`).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Depth groups per panel.
    pub fn groups(&self) -> usize {
        padded_depth(self.k) / KG
    }

    /// Number of [`NR`]-column panels.
    pub fn n_panels(&self) -> usize {
        self.n.div_ceil(NR)
    }

    /// Panel `p`'s bytes (`groups() * 64`).
    pub fn panel(&self, p: usize) -> &[i8] {
        let len = self.groups() * GROUP_BYTES;
        &self.panels[p * len..(p + 1) * len]
    }

    /// The largest weight magnitude (128 for a weight of -128): how many `vpmaddubsw` results
    /// the AVX2 kernel may add in i16 before widening.
    pub fn max_abs(&self) -> u8 {
        self.max_abs
    }

    /// `sum_k W[j][k]` per output column `j`.
    pub fn col_sums(&self) -> &[i32] {
        &self.col_sums
    }

    /// The weights back in row-major `[n, k]` order.
    pub fn unpack(&self) -> Vec<i8> {
        let groups = self.groups();
        let mut w = vec![0i8; self.n * self.k];
        for col in 0..self.n {
            let panel = self.panel(col / NR);
            for kk in 0..self.k {
                w[col * self.k + kk] = panel[(kk / KG) * GROUP_BYTES + (col % NR) * KG + kk % KG];
            }
        }
        debug_assert_eq!(self.panels.len(), self.n_panels() * groups * GROUP_BYTES);
        w
    }
}
