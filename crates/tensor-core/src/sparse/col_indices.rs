//! Column indices of a compressed-row matrix, stored as narrow as the column count allows.

/// Column indices of a compressed sparse row (CSR) matrix: `u16` when `cols <= 65,536`,
/// else `u32`.
///
/// Design: an enum of two concrete widths rather than a type parameter on the matrix. Every
/// real layer has at most 65,536 columns (lenet300's fc1 has 784, a 4096-wide fc layer
/// 4096), so [`ColIndices::narrowest`] picks `U16`, which halves the index traffic of the
/// kernels next to 32-bit indices; `U32` covers wider matrices. Kernels are generic over
/// [`ColIndex`] and dispatch once per call, so callers never see the width.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColIndices {
    /// 16-bit indices (`cols <= 65536`).
    U16(Vec<u16>),
    /// 32-bit indices.
    U32(Vec<u32>),
}

impl ColIndices {
    /// The indices `columns` (each `< cols`) at the width `cols` needs: `U16` when
    /// `cols <= 65536` (every column then fits 16 bits), else `U32`.
    pub fn narrowest(cols: usize, columns: Vec<u32>) -> Self {
        if cols <= 1 << 16 {
            // Columns are < cols <= 65536, so each fits u16.
            ColIndices::U16(columns.into_iter().map(|c| c as u16).collect())
        } else {
            ColIndices::U32(columns)
        }
    }

    /// Number of indices.
    pub fn len(&self) -> usize {
        match self {
            ColIndices::U16(v) => v.len(),
            ColIndices::U32(v) => v.len(),
        }
    }

    /// Whether there are no indices.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Index `k`, widened (`None` past the end).
    pub fn get(&self, k: usize) -> Option<u32> {
        match self {
            ColIndices::U16(v) => v.get(k).map(|&c| c as u32),
            ColIndices::U32(v) => v.get(k).copied(),
        }
    }

    /// Bytes per stored index (2 or 4).
    pub fn index_bytes(&self) -> usize {
        match self {
            ColIndices::U16(_) => 2,
            ColIndices::U32(_) => 4,
        }
    }
}

/// A column index the kernels widen to `usize` (`u16` or `u32`).
pub trait ColIndex: Copy + Send + Sync + 'static {
    /// Bytes per index (2 or 4), for SIMD loads.
    const BYTES: usize;
    /// The index as `usize`.
    fn idx(self) -> usize;
}

impl ColIndex for u16 {
    const BYTES: usize = 2;
    #[inline(always)]
    fn idx(self) -> usize {
        self as usize
    }
}

impl ColIndex for u32 {
    const BYTES: usize = 4;
    #[inline(always)]
    fn idx(self) -> usize {
        self as usize
    }
}
