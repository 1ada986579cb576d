//! SELL-C-σ (sliced ELLPACK, Kreutzer et al., SIAM J. Sci. Comput. 2014): an execution
//! layout of a CSR matrix for batch-1 products, built once per layer.
//!
//! Rows are sorted by length (longest first) within windows of [`SELL_SIGMA`] rows, then
//! cut into slices of [`SELL_C`] = 8 consecutive sorted rows. A slice stores its entries
//! column-major, step `j` holding the `j`-th entry of each of its 8 rows (a padding entry,
//! value 0 at the sentinel column `cols`, where a row is shorter than the slice's longest),
//! so one SIMD step multiplies 8 rows at once, each lane accumulating its row in column
//! order. Compared with CSR this removes the per-row horizontal sums, remainder loops and
//! unpredictable loop exits, which cost about 7.5 ns per row in CSR spmv on Zen 3 (a quarter
//! of lenet300.fc1's time); sorting within windows keeps padding small.
//!
//! Measured on the 2-core EPYC (Zen 3, loaded machine, best / median of 3000 calls, 10%
//! density): lenet300.fc1 CSR spmv 8.5 / 13.0 us, SELL with σ = 8, 64, 256, all rows:
//! 7.7 / 10.0, 6.8 / 9.2, 6.7 / 7.8, 6.6 / 8.4 us (padding 17%, 4.3%, 2.6%, 1.8%);
//! 1200 x 196 (short rows): CSR 21.6 / 24.2 us, SELL σ = 64: 7.2 / 11.6 us. σ = 128 is
//! kept: padding near 3% while a window (16 slices) stays small enough to split a
//! 300-row layer between two threads.

use super::csr::{ColIndices, Csr};

/// Rows per slice (one AVX2 vector of f32).
pub const SELL_C: usize = 8;

/// Rows per sorting window.
pub const SELL_SIGMA: usize = 128;

/// A sparse matrix in SELL-C-σ layout (C = [`SELL_C`], σ = [`SELL_SIGMA`]), built from a
/// [`Csr`] by [`SellCs::from_csr`] and run by [`super::spmv_sell`].
///
/// Design: an execution layout, not a stored format: it is derived from a validated CSR
/// matrix (so it needs no validation of its own), keeps the CSR values and columns in each
/// row's order, and costs `(1 + padding) * nnz` entries plus a row permutation. Column
/// indices are 16-bit when `cols < 65536` (the sentinel column `cols` must fit).
#[derive(Clone, Debug, PartialEq)]
pub struct SellCs {
    rows: usize,
    cols: usize,
    /// Per slice: first entry (in `values`) and number of steps (entries per lane).
    slices: Vec<(usize, usize)>,
    /// Per slice lane `s * SELL_C + l`: the row it computes, or `u32::MAX` past the last row.
    lane_row: Vec<u32>,
    values: Vec<f32>,
    col_idx: ColIndices,
    nnz: usize,
}

impl SellCs {
    /// The SELL-C-σ layout of `m`.
    pub fn from_csr(m: &Csr) -> Self {
        let (rows, cols) = (m.rows(), m.cols());
        let rp = m.row_ptr();
        let len = |r: usize| (rp[r + 1] - rp[r]) as usize;
        let mut order: Vec<u32> = (0..rows as u32).collect();
        for w in order.chunks_mut(SELL_SIGMA) {
            // Stable, so equal lengths keep their row order.
            w.sort_by_key(|&r| std::cmp::Reverse(len(r as usize)));
        }
        let n_slices = rows.div_ceil(SELL_C);
        let mut lane_row = order;
        lane_row.resize(n_slices * SELL_C, u32::MAX);
        let mut slices = Vec::with_capacity(n_slices);
        let mut total = 0usize;
        for lanes in lane_row.chunks_exact(SELL_C) {
            let steps = lanes
                .iter()
                .map(|&r| {
                    if (r as usize) < rows {
                        len(r as usize)
                    } else {
                        0
                    }
                })
                .max()
                .unwrap_or(0);
            slices.push((total, steps));
            total += steps * SELL_C;
        }
        let mut values = vec![0.0f32; total];
        let mut cols_of = vec![cols as u32; total]; // the sentinel column
        for (&(start, _), lanes) in slices.iter().zip(lane_row.chunks_exact(SELL_C)) {
            for (l, &r) in lanes.iter().enumerate() {
                if (r as usize) < rows {
                    let r = r as usize;
                    for (j, k) in (rp[r] as usize..rp[r + 1] as usize).enumerate() {
                        let at = start + j * SELL_C + l;
                        values[at] = m.values()[k];
                        // k < nnz (Csr invariant).
                        cols_of[at] = m.col_idx().get(k).unwrap_or(0);
                    }
                }
            }
        }
        let col_idx = if cols < 1 << 16 {
            ColIndices::U16(cols_of.into_iter().map(|c| c as u16).collect())
        } else {
            ColIndices::U32(cols_of)
        };
        Self {
            rows,
            cols,
            slices,
            lane_row,
            values,
            col_idx,
            nnz: m.nnz(),
        }
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Nonzeros of the source matrix.
    pub fn nnz(&self) -> usize {
        self.nnz
    }

    /// Entries stored, padding included.
    pub fn padded_len(&self) -> usize {
        self.values.len()
    }

    /// Per slice: first entry and steps.
    pub(crate) fn slices(&self) -> &[(usize, usize)] {
        &self.slices
    }

    /// The row each lane computes (`u32::MAX` for lanes past the last row).
    pub(crate) fn lane_row(&self) -> &[u32] {
        &self.lane_row
    }

    /// Entry values, slice by slice, step by step.
    pub(crate) fn values(&self) -> &[f32] {
        &self.values
    }

    /// Entry columns (`cols` for padding).
    pub(crate) fn col_idx(&self) -> &ColIndices {
        &self.col_idx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_of_a_small_matrix() {
        // Rows of lengths 1, 3, 0, 2 -> sorted 1 (3), 3 (2), 0 (1), 2 (0): one slice of 3
        // steps, lanes 4..8 empty.
        #[rustfmt::skip]
        let dense = [
            5.0, 0.0, 0.0,
            1.0, 2.0, 3.0,
            0.0, 0.0, 0.0,
            0.0, 4.0, 6.0,
        ];
        let m = SellCs::from_csr(&Csr::from_dense(4, 3, &dense).unwrap());
        assert_eq!(m.slices(), &[(0, 3)]);
        assert_eq!(&m.lane_row()[..4], &[1, 3, 0, 2]);
        assert!(m.lane_row()[4..].iter().all(|&r| r == u32::MAX));
        assert_eq!(m.padded_len(), 24);
        // Step 0: the first entry of rows 1, 3, 0, then padding.
        assert_eq!(&m.values()[..4], &[1.0, 4.0, 5.0, 0.0]);
        assert_eq!(m.col_idx().get(2), Some(0));
        assert_eq!(m.col_idx().get(3), Some(3)); // sentinel = cols
        assert_eq!(&m.values()[16..19], &[3.0, 0.0, 0.0]);
    }
}
