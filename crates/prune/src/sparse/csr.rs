//! CSR (compressed sparse row): the in-memory form the sparse kernels execute from.
//!
//! A pruned weight matrix `W [rows, cols]` (row-major, `[out, in]` for a linear layer,
//! `[O, C/groups * kh * kw]` for a conv layer) keeps its nonzeros row by row: `values[k]`
//! sits at column `col_idx[k]`, and row `r` owns entries `row_ptr[r] .. row_ptr[r + 1]`.
//! Deep Compression (Han et al., 2016, section 2) stores pruned layers in CSR/CSC with
//! relative indices; [`super::relative`] converts between the two.

use tensor_core::Shape;

use crate::error::{PruneError, Result};

/// Largest row or column count of a sparse matrix (2^24, the bound `nn` puts on every
/// feature or channel count read from a record): keeps `rows * cols` and every flat position
/// far from overflow, whatever an untrusted header says.
pub const MAX_SPARSE_DIM: usize = 1 << 24;

/// Column indices of a CSR matrix (moved down to tensor-core, which `share` uses too).
pub use tensor_core::sparse::ColIndices;

/// A column index the kernels can widen to `usize` (`u16` or `u32`).
pub(crate) use tensor_core::sparse::ColIndex;

/// A sparse `rows x cols` f32 matrix in CSR form, nonzeros only.
///
/// Invariants (established by [`Csr::from_dense`] and checked by [`Csr::from_parts`], relied
/// on by the kernels to skip bounds checks): `rows, cols <= MAX_SPARSE_DIM`;
/// `row_ptr.len() == rows + 1`, `row_ptr[0] == 0`, `row_ptr` never decreases and ends at
/// `nnz`; `col_idx.len() == values.len() == nnz`; within a row, columns strictly increase
/// and are `< cols`; no stored value equals zero (`-0.0` included) when built, though
/// [`Csr::values_mut`] (training the kept weights) may write zeros later: kernels multiply
/// them like any value, and the relative-index writer drops them as it drops fillers.
#[derive(Clone, Debug, PartialEq)]
pub struct Csr {
    rows: usize,
    cols: usize,
    row_ptr: Vec<u32>,
    col_idx: ColIndices,
    values: Vec<f32>,
}

/// Checks `rows` and `cols` against [`MAX_SPARSE_DIM`] and the tensor element limit.
pub(crate) fn check_dims(op: &'static str, rows: usize, cols: usize) -> Result<()> {
    if rows > MAX_SPARSE_DIM || cols > MAX_SPARSE_DIM || Shape::new(&[rows, cols]).is_err() {
        return Err(PruneError::MatrixTooLarge {
            op,
            rows,
            cols,
            max_dim: MAX_SPARSE_DIM,
        });
    }
    Ok(())
}

impl Csr {
    /// The CSR form of the row-major `rows x cols` matrix `dense`, dropping every zero
    /// (`0.0` and `-0.0`; NaN is kept). Column indices are 16-bit when `cols <= 65536`.
    ///
    /// Errors: `dense.len() != rows * cols`; a side above [`MAX_SPARSE_DIM`]; more than
    /// `u32::MAX` nonzeros.
    pub fn from_dense(rows: usize, cols: usize, dense: &[f32]) -> Result<Self> {
        const OP: &str = "Csr::from_dense";
        check_dims(OP, rows, cols)?;
        if dense.len() != rows * cols {
            return Err(PruneError::LengthMismatch {
                op: OP,
                what: format!("dense data of a {rows} x {cols} matrix"),
                got: dense.len(),
                expected: rows * cols,
            });
        }
        let nnz = dense.iter().filter(|&&v| v != 0.0).count();
        if nnz > u32::MAX as usize {
            return Err(PruneError::TooManyNonzeros {
                op: OP,
                nnz,
                max: u32::MAX as usize,
            });
        }
        let mut row_ptr = Vec::with_capacity(rows + 1);
        let mut values = Vec::with_capacity(nnz);
        let mut cols_of = Vec::with_capacity(nnz);
        row_ptr.push(0u32);
        // chunks_exact(0) would panic; a 0-column matrix has empty rows.
        if cols == 0 {
            row_ptr.resize(rows + 1, 0);
        } else {
            for row in dense.chunks_exact(cols) {
                for (c, &v) in row.iter().enumerate() {
                    if v != 0.0 {
                        values.push(v);
                        cols_of.push(c as u32);
                    }
                }
                row_ptr.push(values.len() as u32); // <= nnz <= u32::MAX, checked above
            }
        }
        let col_idx = ColIndices::narrowest(cols, cols_of);
        Ok(Self {
            rows,
            cols,
            row_ptr,
            col_idx,
            values,
        })
    }

    /// A CSR matrix from its arrays, as a loader reads them from an untrusted payload.
    ///
    /// Validates every invariant listed on [`Csr`], in this order, and names the first
    /// violation: dimensions ([`PruneError::MatrixTooLarge`]); `row_ptr` length `rows + 1`
    /// and `col_idx` length `values.len()` ([`PruneError::LengthMismatch`]); `row_ptr[0] ==
    /// 0` ([`PruneError::RowPtrStart`]); non-decreasing ([`PruneError::RowPtrDecreasing`]);
    /// ending at `values.len()` ([`PruneError::RowPtrEnd`]); columns in range
    /// ([`PruneError::ColumnOutOfRange`]) and strictly increasing within each row
    /// ([`PruneError::ColumnsNotIncreasing`]); no stored zero ([`PruneError::StoredZero`]).
    /// Either index width is accepted as given.
    pub fn from_parts(
        rows: usize,
        cols: usize,
        row_ptr: Vec<u32>,
        col_idx: ColIndices,
        values: Vec<f32>,
    ) -> Result<Self> {
        const OP: &str = "Csr::from_parts";
        check_dims(OP, rows, cols)?;
        if row_ptr.len() != rows + 1 {
            return Err(PruneError::LengthMismatch {
                op: OP,
                what: format!("row_ptr of {rows} rows"),
                got: row_ptr.len(),
                expected: rows + 1,
            });
        }
        if col_idx.len() != values.len() {
            return Err(PruneError::LengthMismatch {
                op: OP,
                what: "col_idx".into(),
                got: col_idx.len(),
                expected: values.len(),
            });
        }
        // Non-empty: rows + 1 >= 1 entries.
        let first = row_ptr[0];
        if first != 0 {
            return Err(PruneError::RowPtrStart { op: OP, first });
        }
        for (row, w) in row_ptr.windows(2).enumerate() {
            if w[1] < w[0] {
                return Err(PruneError::RowPtrDecreasing {
                    op: OP,
                    row,
                    start: w[0],
                    end: w[1],
                });
            }
        }
        let end = row_ptr[rows];
        if end as usize != values.len() {
            return Err(PruneError::RowPtrEnd {
                op: OP,
                end,
                nnz: values.len(),
            });
        }
        for (row, w) in row_ptr.windows(2).enumerate() {
            let mut prev: Option<u32> = None;
            let (start, stop) = (w[0] as usize, w[1] as usize);
            // stop <= end == values.len() == col_idx.len(): row_ptr is monotone up to `end`.
            for (entry, &value) in values.iter().enumerate().take(stop).skip(start) {
                let col = col_idx.get(entry).unwrap_or(u32::MAX);
                if col as usize >= cols {
                    return Err(PruneError::ColumnOutOfRange {
                        op: OP,
                        row,
                        entry,
                        col,
                        cols,
                    });
                }
                if let Some(prev) = prev
                    && col <= prev
                {
                    return Err(PruneError::ColumnsNotIncreasing {
                        op: OP,
                        row,
                        entry,
                        prev,
                        col,
                    });
                }
                prev = Some(col);
                if value == 0.0 {
                    return Err(PruneError::StoredZero {
                        op: OP,
                        row,
                        entry,
                        value,
                    });
                }
            }
        }
        Ok(Self {
            rows,
            cols,
            row_ptr,
            col_idx,
            values,
        })
    }

    /// The arrays `(rows, cols, row_ptr, col_idx, values)`, for a writer.
    pub fn into_parts(self) -> (usize, usize, Vec<u32>, ColIndices, Vec<f32>) {
        (
            self.rows,
            self.cols,
            self.row_ptr,
            self.col_idx,
            self.values,
        )
    }

    /// The dense row-major matrix (`rows * cols` values; allocates that many).
    pub fn to_dense(&self) -> Vec<f32> {
        let mut dense = vec![0.0f32; self.rows * self.cols];
        for r in 0..self.rows {
            let (start, end) = self.row_range(r);
            for k in start..end {
                // Invariants: k < nnz, col < cols, r < rows.
                let c = self.col_idx.get(k).unwrap_or(0) as usize;
                dense[r * self.cols + c] = self.values[k];
            }
        }
        dense
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Stored nonzeros.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    /// Fraction of entries stored, `nnz / (rows * cols)` (0 for an empty matrix).
    pub fn density(&self) -> f64 {
        let n = self.rows * self.cols;
        if n == 0 {
            0.0
        } else {
            self.nnz() as f64 / n as f64
        }
    }

    /// Row pointers, `rows + 1` of them.
    pub fn row_ptr(&self) -> &[u32] {
        &self.row_ptr
    }

    /// Column indices, one per stored value.
    pub fn col_idx(&self) -> &ColIndices {
        &self.col_idx
    }

    /// Stored values, row by row.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// Stored values, mutable (the structure stays fixed: retraining the kept weights).
    pub fn values_mut(&mut self) -> &mut [f32] {
        &mut self.values
    }

    /// Entries `start..end` of row `r` (`r < rows`).
    pub(crate) fn row_range(&self, r: usize) -> (usize, usize) {
        (self.row_ptr[r] as usize, self.row_ptr[r + 1] as usize)
    }

    /// Bytes of the three arrays as written: `4 * (rows + 1)` for `row_ptr`, 2 or 4 per
    /// column index, 4 per value. The header (dimensions, index width) belongs to the
    /// container that writes the arrays and is counted there.
    pub fn stored_bytes(&self) -> usize {
        4 * self.row_ptr.len() + (self.col_idx.index_bytes() + 4) * self.nnz()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_matrix_layout_and_bytes() {
        #[rustfmt::skip]
        let dense = [
            0.0, 2.0, 0.0,
            0.0, 0.0, 0.0,
            1.0, -0.0, 3.0,
        ];
        let m = Csr::from_dense(3, 3, &dense).unwrap();
        assert_eq!(m.row_ptr(), &[0, 1, 1, 3]);
        assert_eq!(m.col_idx(), &ColIndices::U16(vec![1, 0, 2]));
        assert_eq!(m.values(), &[2.0, 1.0, 3.0]);
        assert_eq!(m.stored_bytes(), 4 * 4 + 3 * (2 + 4));
        assert_eq!(m.to_dense(), [0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 3.0]);
        let wide = Csr::from_dense(1, 70_000, &vec![1.0; 70_000]).unwrap();
        assert_eq!(wide.col_idx().index_bytes(), 4);
        assert_eq!(
            Csr::from_dense(1, 65_536, &vec![1.0; 65_536])
                .unwrap()
                .col_idx()
                .index_bytes(),
            2
        );
    }

    #[test]
    fn empty_shapes() {
        for (r, c) in [(0, 0), (0, 5), (4, 0)] {
            let m = Csr::from_dense(r, c, &[]).unwrap();
            assert_eq!(
                (m.nnz(), m.row_ptr().len(), m.to_dense().len()),
                (0, r + 1, 0)
            );
            let back = Csr::from_parts(r, c, m.row_ptr().to_vec(), m.col_idx().clone(), vec![]);
            assert_eq!(back.unwrap(), m);
        }
    }
}
