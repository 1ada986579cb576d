//! Column-block SELL with in-register permutes: a batch-1 execution layout of a CSR matrix
//! for layers whose input vector fits in L1 (lenet300.fc1: 784 floats).
//!
//! Rows are cut into slices of [`PERM_C`] = 8 consecutive rows, columns into blocks of
//! [`PERM_BLOCK`] = 8. For each slice and column block, the nonzeros of the slice's rows in
//! that block are laid out as *steps*: step `k` holds, per row lane, the `k`-th nonzero of
//! that row in the block (its value and its 3-bit column offset within the block), value 0
//! where the row has fewer; a (slice, block) pair takes as many steps as its longest row
//! has nonzeros there. One step multiplies 8 rows at once: the block of `x` is one 8-float
//! vector, and one `vpermps` by the 8 offsets puts each lane's input in place, where SELL
//! ([`super::SellCs`]) loads 8 scalars from scattered columns and inserts them one by one
//! (the insert-bound part of SELL on Zen 3).
//!
//! The steps of a slice form one flat stream (the block is stored per step), padded with
//! empty steps to a multiple of [`PERM_UNROLL`] so the kernel rotates that many accumulators
//! (FMA latency) without a remainder loop or data-dependent inner loop counts.
//!
//! Per step: a `u64` (high 32 bits: the block's first column; low 32 bits: 8 nibbles, lane
//! `l` in bits `4l..4l+4`, low 3 bits the column offset and bit 3 set on padding lanes)
//! and 8 f32 values. The padding flag is ignored by the fast kernel (`vpermps` reads only
//! the low 3 bits of each lane; padding values are 0) and read by the path for inputs
//! holding NaN or infinity, which must not propagate from pruned positions.
//!
//! At 10% density a slice's row holds binomial(8, 0.1) nonzeros per block, and the longest
//! of 8 rows about 2.1: about 2.7 stored entries per nonzero (lenet300.fc1: 8,000 steps for
//! 23,500 nonzeros), against SELL's ~1.03. Whether fewer, cheaper steps win over more bytes
//! is a question of density: [`super::Batch1Layout`] picks between this layout and
//! [`super::SellCs`] per layer by a measured cost model.

use super::csr::Csr;

/// Rows per slice (one AVX2 vector of f32).
pub const PERM_C: usize = 8;

/// Columns per block (one AVX2 vector of the input).
pub const PERM_BLOCK: usize = 8;

/// Steps of a slice come in groups of this many (one per rotating accumulator).
pub const PERM_UNROLL: usize = 4;

/// The nibble flag of a padding lane.
pub(crate) const PAD_FLAG: u32 = 8;

/// A sparse matrix in column-block SELL layout, built from a [`Csr`] by
/// [`SellPerm::from_csr`] and run by [`super::spmv_sell_perm`].
///
/// Design: an execution layout, not a stored format: derived from a validated CSR matrix
/// (so it needs no validation of its own: every block start plus offset is `< cols`
/// rounded up to [`PERM_BLOCK`]), rows in their natural order (no permutation).
#[derive(Clone, Debug, PartialEq)]
pub struct SellPerm {
    rows: usize,
    cols: usize,
    nnz: usize,
    /// Per slice: its first step; `slices + 1` entries.
    slice_ptr: Vec<usize>,
    /// Per step: block start column << 32 | 8 lane nibbles.
    meta: Vec<u64>,
    /// Per step: 8 values, lane `l` the row `8 * slice + l`.
    values: Vec<f32>,
}

impl SellPerm {
    /// The column-block SELL layout of `m`.
    pub fn from_csr(m: &Csr) -> Self {
        let (rows, cols) = (m.rows(), m.cols());
        let rp = m.row_ptr();
        let n_slices = rows.div_ceil(PERM_C);
        let mut slice_ptr = Vec::with_capacity(n_slices + 1);
        let mut meta = Vec::new();
        let mut values = Vec::new();
        slice_ptr.push(0);
        for s in 0..n_slices {
            let lanes = s * PERM_C..((s + 1) * PERM_C).min(rows);
            // Per lane: the next entry of its row not yet placed, and the row's end.
            let mut next: Vec<(usize, usize)> = lanes
                .clone()
                .map(|r| (rp[r] as usize, rp[r + 1] as usize))
                .collect();
            let col = |k: usize| m.col_idx().get(k).unwrap_or(0) as usize; // k < nnz
            let first = meta.len();
            // Each step: the lowest block any lane still has entries in.
            while let Some(block) = next
                .iter()
                .filter(|(k, e)| k < e)
                .map(|&(k, _)| col(k) / PERM_BLOCK)
                .min()
            {
                let mut nibbles = 0u32;
                let mut vals = [0.0f32; PERM_C];
                for (l, (k, e)) in next.iter_mut().enumerate() {
                    let mut nib = PAD_FLAG;
                    if *k < *e && col(*k) / PERM_BLOCK == block {
                        nib = (col(*k) % PERM_BLOCK) as u32;
                        vals[l] = m.values()[*k];
                        *k += 1;
                    }
                    nibbles |= nib << (4 * l);
                }
                for l in lanes.len()..PERM_C {
                    nibbles |= PAD_FLAG << (4 * l);
                }
                meta.push(((block * PERM_BLOCK) as u64) << 32 | nibbles as u64);
                values.extend_from_slice(&vals);
            }
            while (meta.len() - first) % PERM_UNROLL != 0 {
                meta.push(PAD_STEP);
                values.extend_from_slice(&[0.0; PERM_C]);
            }
            slice_ptr.push(meta.len());
        }
        Self {
            rows,
            cols,
            nnz: m.nnz(),
            slice_ptr,
            meta,
            values,
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

    /// Steps stored (8 entries each), padding included.
    pub fn steps(&self) -> usize {
        self.meta.len()
    }

    /// Bytes the kernel streams per call: 8 bytes of metadata and 32 of values per step.
    pub fn layout_bytes(&self) -> usize {
        self.meta.len() * (8 + 4 * PERM_C) + self.slice_ptr.len() * 8
    }

    /// Per slice: its first step (`slices + 1` entries).
    pub(crate) fn slice_ptr(&self) -> &[usize] {
        &self.slice_ptr
    }

    /// Per step: block start column << 32 | lane nibbles.
    pub(crate) fn meta(&self) -> &[u64] {
        &self.meta
    }

    /// Per step: 8 values.
    pub(crate) fn values(&self) -> &[f32] {
        &self.values
    }
}

/// An empty step: block 0, every lane padding (value 0).
const PAD_STEP: u64 = 0x8888_8888;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_of_a_small_matrix() {
        // Row 0: columns 1, 3, 9; row 1: column 8; row 2: empty. One slice, blocks 0 and 1:
        // block 0 takes 2 steps (row 0 has two entries there), block 1 one step, then one
        // padding step to a multiple of 4.
        let mut dense = vec![0.0f32; 3 * 10];
        dense[1] = 1.0;
        dense[3] = 2.0;
        dense[9] = 3.0;
        dense[10 + 8] = 4.0;
        let m = SellPerm::from_csr(&Csr::from_dense(3, 10, &dense).unwrap());
        assert_eq!(m.slice_ptr(), &[0, 4]);
        assert_eq!(m.steps(), 4);
        let nib = |step: usize, l: usize| (m.meta()[step] >> (4 * l)) & 0xf;
        assert_eq!(m.meta()[0] >> 32, 0);
        assert_eq!((nib(0, 0), nib(0, 1), nib(0, 2)), (1, 8, 8));
        assert_eq!(&m.values()[..3], &[1.0, 0.0, 0.0]);
        assert_eq!((nib(1, 0), nib(1, 1)), (3, 8));
        assert_eq!(m.meta()[2] >> 32, 8);
        assert_eq!((nib(2, 0), nib(2, 1), nib(2, 7)), (1, 0, 8));
        assert_eq!(&m.values()[16..18], &[3.0, 4.0]);
        assert_eq!(m.meta()[3], PAD_STEP);
        assert_eq!(m.nnz(), 4);
    }

    #[test]
    fn empty_and_fully_pruned_matrices_have_no_steps() {
        let m = SellPerm::from_csr(&Csr::from_dense(0, 5, &[]).unwrap());
        assert_eq!((m.steps(), m.slice_ptr()), (0, &[0usize][..]));
        let m = SellPerm::from_csr(&Csr::from_dense(9, 5, &[0.0; 45]).unwrap());
        assert_eq!((m.steps(), m.slice_ptr()), (0, &[0usize, 0, 0][..]));
    }
}
