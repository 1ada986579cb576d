//! Sparse + shared: a pruned, shared layer as compressed rows whose values are codes.
//!
//! Deep Compression stores a pruned and shared layer as its nonzero entries in row-major
//! order, each with a relative index (the gap since the previous entry, `b_gap` bits, with
//! filler entries of code 0 when a gap does not fit) and a cluster index into the
//! codebook (section 2, figure 2; section 3). That form is for storage. For execution,
//! [`SparseShared`] keeps compressed sparse rows (CSR) whose values are codebook indices:
//!
//! - `row_starts[o] .. row_starts[o + 1]` are the entries of row `o` (`rows + 1` offsets);
//! - `col_indices[j]` is the column of entry `j` (u16 while `cols <= 65,536`, else u32),
//!   strictly increasing within a row;
//! - `codes[j]` is its centroid index (a byte), never 0: code 0 is the reserved zero of
//!   [`crate::SharedWeights`] and has no entry.
//!
//! From the relative form ([`SparseShared::from_relative_index`]): entry `j` sits at flat
//! position `p_j = p_{j-1} + 1 + gaps[j]` (`p_{-1} = -1`; `gaps[j]` is the number of zeros
//! skipped, prune's `RelativeIndexed` convention), that is row `p_j / cols` and column
//! `p_j mod cols`; gaps run across row ends, and fillers (code 0) are dropped. CSR spends
//! 16 bits per column index where the gap took 4-8, plus the row offsets, and buys rows
//! that run independently (in parallel, without a running sum over the whole layer).
//!
//! Kernels: `y[o] = sum_{j in row o} c[codes[j]] * x[col_indices[j]]`; for a batch, `X` is
//! transposed once so that each entry multiplies a contiguous column of the batch
//! ([`SparseShared::matmul_rows_with`], which a convolution runs on its im2col patches).
//! [`SparseShared::to_relative_index`] writes the stored form back (tensor-core's
//! [`tensor_core::sparse::GapWriter`]: the same gaps and fillers as prune's layers).

use std::ops::Range;

use rayon::prelude::*;
use tensor_core::dispatch::F32Path;
use tensor_core::sparse::{GapWriter, check_gaps, positions};

use crate::error::{Result, ShareError, check_len, checked_mul};
use crate::lookup::{MAX_CENTROIDS, codebook_table};
use crate::shared::SharedWeights;

mod kernels;

/// Column indices of the entries (tensor-core's, shared with the `prune` crate's CSR).
pub use tensor_core::sparse::ColIndices;

/// A pruned, shared `[rows, cols]` weight in compressed rows of codes (module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct SparseShared {
    rows: usize,
    cols: usize,
    k: usize,
    table: Box<[f32; MAX_CENTROIDS]>,
    row_starts: Vec<u32>,
    col_indices: ColIndices,
    codes: Vec<u8>,
}

/// Most rows a sparse matrix may have: the row offsets are allocated from the row count,
/// which a matrix with no columns does not bound (nn's `MAX_DIM`).
pub const MAX_ROWS: usize = 1 << 24;

/// Entries below which the GEMV runs on one thread (as the dense lookup GEMV).
const PAR_MIN_ENTRIES: usize = 100_000;

impl SparseShared {
    /// A matrix from its parts, validated: `row_starts` has `rows + 1` non-decreasing
    /// offsets from 0 to the entry count; columns are `< cols` and strictly increasing
    /// within a row; `1 <= k <= 256` finite centroids with `centroids[0] == 0.0`; every
    /// code in `1..k`.
    ///
    /// Errors: [`ShareError::LengthMismatch`], [`ShareError::CorruptSparse`] naming the
    /// field, [`ShareError::CodeOutOfRange`], and those of the codebook.
    pub fn from_parts(
        rows: usize,
        cols: usize,
        centroids: &[f32],
        row_starts: Vec<u32>,
        col_indices: ColIndices,
        codes: Vec<u8>,
    ) -> Result<Self> {
        const OP: &str = "SparseShared::from_parts";
        check_rows(OP, rows)?;
        checked_mul(OP, "rows * cols", rows, cols)?;
        let table = zero_code_table(OP, centroids)?;
        let nnz = codes.len();
        check_len(OP, "row_starts", row_starts.len(), rows + 1)?;
        check_len(OP, "col_indices", col_indices.len(), nnz)?;
        let corrupt = |field, reason| ShareError::CorruptSparse {
            op: OP,
            field,
            reason,
        };
        if row_starts[0] != 0 || row_starts[rows] as usize != nnz {
            return Err(corrupt(
                "row_starts",
                format!(
                    "runs from {} to {}, expected 0 to {nnz}",
                    row_starts[0], row_starts[rows]
                ),
            ));
        }
        // Offsets first (non-decreasing from 0 to nnz keeps every row inside the entries),
        // then the columns of each row.
        for (o, w) in row_starts.windows(2).enumerate() {
            if w[0] > w[1] {
                return Err(corrupt(
                    "row_starts",
                    format!("row {o} starts at {} after its end {}", w[0], w[1]),
                ));
            }
        }
        for o in 0..rows {
            let (s, e) = (row_starts[o] as usize, row_starts[o + 1] as usize);
            let mut prev: Option<usize> = None;
            for j in s..e {
                // j < nnz == col_indices.len() (offsets checked above).
                let c = col_indices.get(j).map_or(usize::MAX, |c| c as usize);
                if c >= cols || prev.is_some_and(|p| c <= p) {
                    return Err(corrupt(
                        "col_indices",
                        format!(
                            "entry {j} (row {o}) has column {c}: expected above {prev:?} and below {cols}"
                        ),
                    ));
                }
                prev = Some(c);
            }
        }
        let k = centroids.len();
        if let Some(index) = codes.iter().position(|&c| c == 0 || c as usize >= k) {
            return Err(ShareError::CodeOutOfRange {
                op: OP,
                index,
                code: codes[index] as u32,
                len: k,
            });
        }
        Ok(Self {
            rows,
            cols,
            k,
            table,
            row_starts,
            col_indices,
            codes,
        })
    }

    /// The entries of dense row-major codes whose code is not 0 (the reserved zero).
    ///
    /// Errors: `codes` not `rows * cols` long; as [`SparseShared::from_parts`].
    pub fn from_dense_codes(
        rows: usize,
        cols: usize,
        centroids: &[f32],
        codes: &[u8],
    ) -> Result<Self> {
        const OP: &str = "SparseShared::from_dense_codes";
        check_rows(OP, rows)?;
        check_len(
            OP,
            "codes",
            codes.len(),
            checked_mul(OP, "rows * cols", rows, cols)?,
        )?;
        zero_code_table(OP, centroids)?;
        check_codes(OP, codes.iter().map(|&c| c as u32), centroids.len())?;
        check_entry_count(OP, codes.iter().filter(|&&c| c != 0).count())?;
        let mut b = Builder::new(rows);
        for (p, &c) in codes.iter().enumerate() {
            if c != 0 {
                b.push(p / cols.max(1), (p % cols.max(1)) as u32, c);
            }
        }
        b.finish(rows, cols, centroids)
    }

    /// The entries of a shared layer's codes ([`crate::share_nonzeros`], row-major
    /// `rows x cols`, code 0 the pruned zero, codes of at most 8 bits).
    ///
    /// Errors: a code that does not fit a byte; as [`SparseShared::from_dense_codes`].
    pub fn from_shared(rows: usize, cols: usize, shared: &SharedWeights) -> Result<Self> {
        const OP: &str = "SparseShared::from_shared";
        let codes = shared
            .codes
            .iter()
            .enumerate()
            .map(|(index, &c)| {
                u8::try_from(c).map_err(|_| ShareError::CodeOutOfRange {
                    op: OP,
                    index,
                    code: c as u32,
                    len: MAX_CENTROIDS,
                })
            })
            .collect::<Result<Vec<u8>>>()?;
        Self::from_dense_codes(rows, cols, &shared.codebook.centroids, &codes)
    }

    /// The entries of Deep Compression's relative-index form: `gaps[j]` zeros skipped before
    /// entry `j`, `codes[j]` its centroid index, fillers of code 0 dropped (module docs).
    /// Gaps are checked against the 16 bits a `u16` holds; a layer reading `index_bits`-bit
    /// gaps checks their width first ([`tensor_core::sparse::check_gaps`]).
    ///
    /// Errors: `gaps` and `codes` of different lengths; entries past `rows * cols`
    /// ([`ShareError::Sparse`] with `PastEnd`); a code past the codebook; as
    /// [`SparseShared::from_parts`].
    pub fn from_relative_index(
        rows: usize,
        cols: usize,
        centroids: &[f32],
        gaps: &[u16],
        codes: &[u16],
    ) -> Result<Self> {
        const OP: &str = "SparseShared::from_relative_index";
        check_rows(OP, rows)?;
        let n = checked_mul(OP, "rows * cols", rows, cols)?;
        check_len(OP, "codes", codes.len(), gaps.len())?;
        zero_code_table(OP, centroids)?;
        check_codes(OP, codes.iter().map(|&c| c as u32), centroids.len())?;
        check_entry_count(OP, codes.iter().filter(|&&c| c != 0).count())?;
        check_gaps(OP, gaps, 16, n)?;
        let mut b = Builder::new(rows);
        for (p, &code) in positions(gaps).zip(codes) {
            if code != 0 {
                // Checked: p < rows * cols (so cols > 0), and codes < k <= 256.
                let p = p as usize;
                b.push(p / cols, (p % cols) as u32, code as u8);
            }
        }
        b.finish(rows, cols, centroids)
    }

    /// Deep Compression's stored form of this matrix: `index_bits`-bit gaps over the
    /// row-major flattening and one code per gap, fillers (code 0) included (module docs).
    /// The inverse of [`SparseShared::from_relative_index`].
    ///
    /// Errors: `index_bits` outside `1..=16`.
    pub fn to_relative_index(&self, index_bits: u32) -> Result<(Vec<u16>, Vec<u16>)> {
        let mut writer = GapWriter::new("SparseShared::to_relative_index", index_bits)?;
        let mut gaps = Vec::with_capacity(self.nnz());
        let mut codes = Vec::with_capacity(self.nnz());
        for o in 0..self.rows {
            for j in self.row_starts[o] as usize..self.row_starts[o + 1] as usize {
                // Invariants: j < nnz; columns increase within a row, so positions do.
                let c = self.col_indices.get(j).unwrap_or(0) as u64;
                let fillers = writer.push(o as u64 * self.cols as u64 + c, &mut gaps)?;
                codes.extend(std::iter::repeat_n(0u16, fillers));
                codes.push(self.codes[j] as u16);
            }
        }
        Ok((gaps, codes))
    }

    /// Stored entries of the relative-index form with `index_bits`-bit gaps: the nonzeros
    /// plus the fillers, counted without building the form.
    ///
    /// Errors: `index_bits` outside `1..=16`.
    pub fn relative_index_entries(&self, index_bits: u32) -> Result<usize> {
        let span = tensor_core::sparse::check_index_bits(
            "SparseShared::relative_index_entries",
            index_bits,
        )? as u64
            + 1;
        let mut next = 0u64;
        let mut entries = 0usize;
        for o in 0..self.rows {
            for j in self.row_starts[o] as usize..self.row_starts[o + 1] as usize {
                let p = o as u64 * self.cols as u64 + self.col_indices.get(j).unwrap_or(0) as u64;
                entries += 1 + ((p - next) / span) as usize;
                next = p + 1;
            }
        }
        Ok(entries)
    }

    /// Fraction of the weights stored, `nnz / (rows * cols)` (0 for an empty matrix).
    pub fn density(&self) -> f64 {
        let n = self.rows * self.cols;
        if n == 0 {
            0.0
        } else {
            self.nnz() as f64 / n as f64
        }
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Stored entries (nonzero weights).
    pub fn nnz(&self) -> usize {
        self.codes.len()
    }

    /// The codebook (`centroids[0] == 0.0`).
    pub fn centroids(&self) -> &[f32] {
        &self.table[..self.k]
    }

    /// Row offsets (`rows + 1`).
    pub fn row_starts(&self) -> &[u32] {
        &self.row_starts
    }

    /// Column of every entry.
    pub fn col_indices(&self) -> &ColIndices {
        &self.col_indices
    }

    /// Centroid index of every entry.
    pub fn codes(&self) -> &[u8] {
        &self.codes
    }

    /// Bytes of this form in memory: offsets, column indices, codes and the f32 codebook.
    pub fn bytes(&self) -> usize {
        4 * self.row_starts.len() + (self.col_indices.index_bytes() + 1) * self.nnz() + 4 * self.k
    }

    /// The dense `W` (for references; the kernels never build it).
    pub fn to_dense(&self) -> Vec<f32> {
        let mut w = vec![0.0f32; self.rows * self.cols];
        for o in 0..self.rows {
            for j in self.row_starts[o] as usize..self.row_starts[o + 1] as usize {
                // Invariants: j < nnz, column < cols.
                let c = self.col_indices.get(j).unwrap_or(0) as usize;
                w[o * self.cols + c] = self.table[self.codes[j] as usize];
            }
        }
        w
    }

    /// `y = W x` on the tier [`F32Path::selected`] picks.
    ///
    /// Errors: `x` or `y` of the wrong length.
    pub fn gemv(&self, x: &[f32], y: &mut [f32]) -> Result<()> {
        self.gemv_with(F32Path::selected(), x, y)
    }

    /// [`SparseShared::gemv`] on an explicit tier.
    ///
    /// Errors: a tier this CPU lacks; `x` or `y` of the wrong length.
    pub fn gemv_with(&self, tier: F32Path, x: &[f32], y: &mut [f32]) -> Result<()> {
        const OP: &str = "SparseShared::gemv";
        let kernel = kernels::Kernel::for_tier(OP, tier)?;
        check_len(OP, "x", x.len(), self.cols)?;
        check_len(OP, "y", y.len(), self.rows)?;
        let row = |(o, yo): (usize, &mut f32)| {
            let (s, e) = (self.row_starts[o] as usize, self.row_starts[o + 1] as usize);
            *yo = kernel.row_dot(&self.table, &self.col_indices, &self.codes, s..e, x);
        };
        if self.nnz() >= PAR_MIN_ENTRIES && rayon::current_num_threads() > 1 {
            let grain = (16_384 * self.rows / self.nnz().max(1)).max(1);
            y.par_iter_mut()
                .enumerate()
                .with_min_len(grain)
                .for_each(row);
        } else {
            y.iter_mut().enumerate().for_each(row);
        }
        Ok(())
    }

    /// `Y = X W^T` for `X` `[batch, cols]`, `Y` `[batch, rows]` on the selected tier.
    ///
    /// Errors: `x` or `y` of the wrong length; a size that overflows.
    pub fn forward(&self, batch: usize, x: &[f32], y: &mut [f32]) -> Result<()> {
        self.forward_with(F32Path::selected(), batch, x, y)
    }

    /// [`SparseShared::forward`] on an explicit tier.
    ///
    /// Errors: a tier this CPU lacks; as [`SparseShared::forward`].
    pub fn forward_with(
        &self,
        tier: F32Path,
        batch: usize,
        x: &[f32],
        y: &mut [f32],
    ) -> Result<()> {
        const OP: &str = "SparseShared::forward";
        kernels::Kernel::for_tier(OP, tier)?;
        check_len(
            OP,
            "x",
            x.len(),
            checked_mul(OP, "batch * cols", batch, self.cols)?,
        )?;
        check_len(
            OP,
            "y",
            y.len(),
            checked_mul(OP, "batch * rows", batch, self.rows)?,
        )?;
        if batch == 1 {
            return self.gemv_with(tier, x, y);
        }
        if batch == 0 || self.rows == 0 {
            return Ok(());
        }
        // X^T [cols, batch]: every entry then scales one contiguous column of the batch.
        let mut xt = vec![0.0f32; self.cols * batch];
        for (s, xs) in x.chunks_exact(self.cols).enumerate() {
            for (i, &v) in xs.iter().enumerate() {
                xt[i * batch + s] = v;
            }
        }
        let mut yt = vec![0.0f32; self.rows * batch];
        self.matmul_rows_with(tier, 0..self.rows, batch, &xt, &mut yt)?;
        for (o, col) in yt.chunks_exact(batch).enumerate() {
            for (s, &v) in col.iter().enumerate() {
                y[s * self.rows + o] = v;
            }
        }
        Ok(())
    }

    /// `out += W[rows, :] B` for `B` `[cols, n]` and `out` `[rows.len(), n]`, row-major: the
    /// product a convolution runs on its im2col matrix (`B` = the patches, `n` = output
    /// positions), each entry adding `c[code] * B[col, :]` to its row of `out`. Rows run
    /// on both cores when the work is large.
    ///
    /// Errors: a tier this CPU lacks; `rows` past the matrix; `b` or `out` of the wrong
    /// length.
    pub fn matmul_rows_with(
        &self,
        tier: F32Path,
        rows: Range<usize>,
        n: usize,
        b: &[f32],
        out: &mut [f32],
    ) -> Result<()> {
        const OP: &str = "SparseShared::matmul_rows";
        let kernel = kernels::Kernel::for_tier(OP, tier)?;
        check_row_range(OP, &rows, self.rows)?;
        check_len(OP, "b", b.len(), checked_mul(OP, "cols * n", self.cols, n)?)?;
        check_len(
            OP,
            "out",
            out.len(),
            checked_mul(OP, "rows * n", rows.len(), n)?,
        )?;
        if n == 0 || rows.is_empty() {
            return Ok(());
        }
        let first = rows.start;
        let row = |(i, acc): (usize, &mut [f32])| {
            let o = first + i;
            let (s, e) = (self.row_starts[o] as usize, self.row_starts[o + 1] as usize);
            kernel.row_axpy(&self.table, &self.col_indices, &self.codes, s..e, b, acc);
        };
        let entries = (self.row_starts[rows.end] - self.row_starts[rows.start]) as usize;
        if entries.saturating_mul(n) >= PAR_MIN_ENTRIES && rayon::current_num_threads() > 1 {
            out.par_chunks_mut(n).enumerate().for_each(row);
        } else {
            out.chunks_mut(n).enumerate().for_each(row);
        }
        Ok(())
    }
}

/// `Err(LengthMismatch)` unless `rows` lies within `0..len`.
pub(crate) fn check_row_range(op: &'static str, rows: &Range<usize>, len: usize) -> Result<()> {
    if rows.start > rows.end || rows.end > len {
        return Err(ShareError::LengthMismatch {
            op,
            what: "row range end",
            got: rows.end,
            expected: len,
        });
    }
    Ok(())
}

/// The codebook table of a sparse form: as the dense one, and `centroids[0]` must be the
/// zero the missing entries stand for.
fn zero_code_table(op: &'static str, centroids: &[f32]) -> Result<Box<[f32; MAX_CENTROIDS]>> {
    let table = codebook_table(op, centroids)?;
    if table[0] != 0.0 {
        return Err(ShareError::CorruptSparse {
            op,
            field: "centroids",
            reason: format!(
                "centroid 0 is {}, expected 0.0 (code 0 is the zero absent entries stand for)",
                table[0]
            ),
        });
    }
    Ok(table)
}

/// `Err(CodeOutOfRange)` at the first code `>= k`.
fn check_codes(op: &'static str, codes: impl Iterator<Item = u32>, k: usize) -> Result<()> {
    for (index, code) in codes.enumerate() {
        if code as usize >= k {
            return Err(ShareError::CodeOutOfRange {
                op,
                index,
                code,
                len: k,
            });
        }
    }
    Ok(())
}

/// `Err(TooLarge)` past [`MAX_ROWS`].
fn check_rows(op: &'static str, rows: usize) -> Result<()> {
    if rows > MAX_ROWS {
        return Err(ShareError::TooLarge {
            op,
            what: "rows",
            value: rows as u128,
            max: MAX_ROWS as u128,
        });
    }
    Ok(())
}

/// Entry counts must fit the u32 row offsets.
fn check_entry_count(op: &'static str, nnz: usize) -> Result<()> {
    if nnz > u32::MAX as usize {
        return Err(ShareError::TooLarge {
            op,
            what: "entries",
            value: nnz as u128,
            max: u32::MAX as u128,
        });
    }
    Ok(())
}

/// Collects entries in row-major order into the CSR arrays.
struct Builder {
    row_starts: Vec<u32>,
    cols: Vec<u32>,
    codes: Vec<u8>,
}

impl Builder {
    fn new(rows: usize) -> Self {
        Self {
            row_starts: Vec::with_capacity(rows + 1),
            cols: Vec::new(),
            codes: Vec::new(),
        }
    }

    /// Appends an entry at (`row`, `col`); rows arrive in order. The entry count was
    /// checked against `u32::MAX` before building.
    fn push(&mut self, row: usize, col: u32, code: u8) {
        while self.row_starts.len() <= row {
            self.row_starts.push(self.codes.len() as u32);
        }
        self.cols.push(col);
        self.codes.push(code);
    }

    fn finish(mut self, rows: usize, cols: usize, centroids: &[f32]) -> Result<SparseShared> {
        while self.row_starts.len() <= rows {
            self.row_starts.push(self.codes.len() as u32);
        }
        SparseShared::from_parts(
            rows,
            cols,
            centroids,
            self.row_starts,
            ColIndices::narrowest(cols, self.cols),
            self.codes,
        )
    }
}
