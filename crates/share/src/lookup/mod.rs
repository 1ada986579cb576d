//! Lookup kernels: a shared linear layer `Y = X W^T` run from its codebook and byte codes,
//! without rebuilding the dense `W`.
//!
//! Deep Compression, section 3 (and EIE, Han et al. 2016, for the execution): weight
//! `W[o, i]` is `c[code(o, i)]` for a codebook `c` of `k <= 256` f32 centroids. Conventions
//! are nn's Linear: `W` is `[out, in]` row-major, the input `[batch, in]`, the output
//! `[batch, out]`.
//!
//! # Batch 1: lookup inside the GEMV
//! `y[o] = sum_i c[code(o, i)] * x[i]`. Orders and lookups measured with
//! `benches/shared_linear.rs` (AMD EPYC Zen 3, AVX2, one thread, 5-bit codes, k = 32, on
//! the shared 2-core machine at load average 5-6):
//!
//! | kernel                                                    | 4096x4096 | lenet300.fc1 |
//! |-----------------------------------------------------------|-----------|--------------|
//! | dense f32 GEMV (faer, as nn's Linear)                     | 9.8 ms    | 22 us        |
//! | lookup-then-FMA, AVX2 byte planes + `vpshufb` (kept)      | 3.3 ms    | 35 us        |
//! | the same from the packed 5-bit codes ([`gemv_packed`])    | 4.5 ms    | 81 us        |
//! | lookup-then-FMA, portable (kept for the portable tier)    | 9.4 ms    | 163 us       |
//! | sum inputs per centroid, then multiply (Deep Compression) | 13.7 ms   | 228 us       |
//!
//! In an earlier session (load 7-8) two other AVX2 lookups lost to the byte planes: eight
//! codes through `vpermd` from four registers and `vblendvps` on bits 3 and 4, 13.6 ms and
//! 167 us, and `vgatherdps`, 13.4 ms and 224 us, against 5.4 ms and 49 us.
//!
//! Summing the inputs per centroid (`s[code] += x[i]`, then `y[o] = sum_k c_k s_k`) saves
//! multiplies, which a CPU does not need saved: every add is a load-add-store through a
//! table entry and cannot be vectorised, so it stays only as
//! [`SharedMatrix::gemv_sum_per_centroid`], for the benchmark. The AVX2 tier uses the
//! byte-plane lookup for `9 <= k <= 32`, one `vpermd` for `k <= 8` and gathers above 32
//! (8-bit codes run at about the portable speed). What the smaller matrix buys at batch 1:
//! the 4096x4096 f32 matrix (64 MiB) streams from DRAM while its byte codes (16 MiB) stay
//! in the 32 MiB L3 between calls, and the lookup is cheap enough to run 2.9x faster than
//! the dense GEMV; a layer whose f32 weights already fit in cache (lenet300.fc1, 0.9 MiB)
//! gains nothing in traffic and pays the lookup (1.6x slower than dense).
//!
//! # Codes as bytes
//! The kernels read one byte per code, unpacked once at load from the `b`-bit stored form
//! ([`crate::PackedCodes`]): `8 / b` times the packed size in memory (1.6x for 5-bit codes,
//! 16 MiB instead of 10 MiB for 4096x4096), still a quarter of the f32 matrix. Decoding the
//! packed form on the fly ([`gemv_packed`]: one row at a time into an L1 buffer, AVX2
//! unpacking, then the byte kernel) was measured against it (table above: 4.5 ms against
//! 3.3 ms, 81 us against 35 us): the decode costs more than the 6 MiB of traffic it saves
//! while the bytes stay in L3, so the byte form is the execution form and the packed form
//! the stored one. (A model whose codes outgrow the L3 may see the packed form win.)
//!
//! # Batches: decode a block, then GEMM
//! For a batch, a block of rows of `W` is decoded to f32 (a lookup per weight, amortised
//! over the batch), multiplied by faer (`tensor_core::gemm`, one thread per block) into
//! `Y^T`, and the blocks run in parallel; `Y^T` is transposed at the end. At batch 64 this
//! runs at the dense GEMM's speed (the product dominates; one thread: 4096x4096 46 ms
//! against 52 ms, lenet300.fc1 0.54 ms against 0.55 ms).
//!
//! # Tiers
//! [`F32Path::Portable`] is plain Rust; [`F32Path::Avx2Fma`] needs AVX2 + FMA;
//! [`F32Path::Avx512F`] runs the AVX2 kernels (no AVX-512 lookup kernel is written yet:
//! `vpermt2ps` would select among 32 centroids in one instruction).

use std::borrow::Cow;

use rayon::prelude::*;
use tensor_core::dispatch::F32Path;
use tensor_core::gemm::{GemmParams, gemm};

use crate::error::{Result, ShareError, check_finite, check_len, checked_mul};
use crate::packed::PackedCodes;
use crate::shared::SharedWeights;

#[cfg(target_arch = "x86_64")]
mod avx2;
mod matmul;
mod portable;
pub mod reference;

/// Most centroids byte codes address.
pub const MAX_CENTROIDS: usize = 256;

/// Weights below which a GEMV runs on one thread (a fork/join costs some microseconds).
/// On the shared 2-core machine (load average 5-9) a second thread gained nothing on
/// lenet300.fc1 or 4096x4096 (35 -> 36 us, 3.3 -> 3.6 ms): no core was idle. Re-measure
/// on an idle machine.
const PAR_MIN_WEIGHTS: usize = 100_000;

/// A linear layer's weight `[rows, cols]` as byte codes into a codebook of at most 256
/// f32 centroids (module docs). The codebook is kept padded to 256 entries with zeros, so
/// a byte code always indexes it in bounds; every code is `< k` (checked at construction).
#[derive(Clone, Debug, PartialEq)]
pub struct SharedMatrix {
    rows: usize,
    cols: usize,
    k: usize,
    table: Box<[f32; MAX_CENTROIDS]>,
    codes: Vec<u8>,
}

impl SharedMatrix {
    /// A matrix from its codebook and row-major codes, validated: `codes.len() == rows *
    /// cols`, `1 <= centroids.len() <= 256`, finite centroids, every code `< k`.
    ///
    /// Errors: [`ShareError::LengthMismatch`], [`ShareError::InvalidK`],
    /// [`ShareError::TooLarge`], [`ShareError::NonFinite`], [`ShareError::CodeOutOfRange`].
    pub fn new(rows: usize, cols: usize, centroids: &[f32], codes: Vec<u8>) -> Result<Self> {
        const OP: &str = "SharedMatrix::new";
        let n = checked_mul(OP, "rows * cols", rows, cols)?;
        check_len(OP, "codes", codes.len(), n)?;
        let table = codebook_table(OP, centroids)?;
        let k = centroids.len();
        if k < MAX_CENTROIDS
            && let Some(index) = codes.iter().position(|&c| c as usize >= k)
        {
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
            codes,
        })
    }

    /// A matrix from packed codes (of at most 8 bits), unpacked to bytes once.
    ///
    /// Errors: codes wider than 8 bits; as [`SharedMatrix::new`].
    pub fn from_packed(
        rows: usize,
        cols: usize,
        centroids: &[f32],
        packed: &PackedCodes,
    ) -> Result<Self> {
        Self::new(rows, cols, centroids, packed.unpack_u8()?)
    }

    /// A matrix from the result of [`crate::share_nonzeros`] (codes of at most 8 bits).
    ///
    /// Errors: a code that does not fit a byte; as [`SharedMatrix::new`].
    pub fn from_shared(rows: usize, cols: usize, shared: &SharedWeights) -> Result<Self> {
        const OP: &str = "SharedMatrix::from_shared";
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
        Self::new(rows, cols, &shared.codebook.centroids, codes)
    }

    /// Output features (rows of `W`).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features (columns of `W`).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The codebook.
    pub fn centroids(&self) -> &[f32] {
        &self.table[..self.k]
    }

    /// The row-major byte codes.
    pub fn codes(&self) -> &[u8] {
        &self.codes
    }

    /// The dense `W` the codes stand for (for references and export; kernels never build it).
    pub fn to_dense(&self) -> Vec<f32> {
        self.codes.iter().map(|&c| self.table[c as usize]).collect()
    }

    /// `y = W x` (`x` of `cols`, `y` of `rows`) on the tier [`F32Path::selected`] picks.
    ///
    /// Errors: `x` or `y` of the wrong length.
    pub fn gemv(&self, x: &[f32], y: &mut [f32]) -> Result<()> {
        self.gemv_with(F32Path::selected(), x, y)
    }

    /// [`SharedMatrix::gemv`] on an explicit tier (tests run every tier the CPU has).
    ///
    /// Errors: a tier this CPU lacks; `x` or `y` of the wrong length.
    pub fn gemv_with(&self, tier: F32Path, x: &[f32], y: &mut [f32]) -> Result<()> {
        const OP: &str = "SharedMatrix::gemv";
        let kernel = RowKernel::for_tier(OP, tier, &self.table, self.k)?;
        check_len(OP, "x", x.len(), self.cols)?;
        check_len(OP, "y", y.len(), self.rows)?;
        let x = kernel.prepare_x(x);
        let row = |(o, yo): (usize, &mut f32)| {
            *yo = kernel.dot(&self.table, &self.codes[o * self.cols..][..self.cols], &x);
        };
        if self.rows * self.cols >= PAR_MIN_WEIGHTS && rayon::current_num_threads() > 1 {
            y.par_iter_mut()
                .enumerate()
                .with_min_len(row_grain(self.cols))
                .for_each(row);
        } else {
            y.iter_mut().enumerate().for_each(row);
        }
        Ok(())
    }

    /// `y = W x` by Deep Compression's order: sum the inputs per centroid, then one multiply
    /// per centroid (portable, one thread; kept to measure against [`SharedMatrix::gemv`]).
    ///
    /// Errors: `x` or `y` of the wrong length.
    #[doc(hidden)]
    pub fn gemv_sum_per_centroid(&self, x: &[f32], y: &mut [f32]) -> Result<()> {
        const OP: &str = "SharedMatrix::gemv_sum_per_centroid";
        check_len(OP, "x", x.len(), self.cols)?;
        check_len(OP, "y", y.len(), self.rows)?;
        let mut sums = [0.0f32; MAX_CENTROIDS];
        for (o, yo) in y.iter_mut().enumerate() {
            let codes = &self.codes[o * self.cols..][..self.cols];
            *yo = portable::dot_sum_per_centroid(&self.table, self.k, codes, x, &mut sums);
        }
        Ok(())
    }

    /// `Y = X W^T` for `X` `[batch, cols]`, `Y` `[batch, rows]` (nn's Linear without bias)
    /// on the tier [`F32Path::selected`] picks: the GEMV for one sample, decoded blocks and
    /// GEMM for more (module docs).
    ///
    /// Errors: `x` or `y` of the wrong length; a size that overflows.
    pub fn forward(&self, batch: usize, x: &[f32], y: &mut [f32]) -> Result<()> {
        self.forward_with(F32Path::selected(), batch, x, y)
    }

    /// [`SharedMatrix::forward`] on an explicit tier.
    ///
    /// Errors: a tier this CPU lacks; as [`SharedMatrix::forward`].
    pub fn forward_with(
        &self,
        tier: F32Path,
        batch: usize,
        x: &[f32],
        y: &mut [f32],
    ) -> Result<()> {
        const OP: &str = "SharedMatrix::forward";
        let kernel = RowKernel::for_tier(OP, tier, &self.table, self.k)?;
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
        let (rows, cols) = (self.rows, self.cols);
        let block = gemm_block_rows(rows, cols);
        let mut yt = vec![0.0f32; rows * batch];
        let run = |(b, yt_block): (usize, &mut [f32])| -> Result<()> {
            let r0 = b * block;
            let nr = yt_block.len() / batch;
            let mut w = vec![0.0f32; nr * cols];
            kernel.decode(
                &self.table,
                &self.codes[r0 * cols..(r0 + nr) * cols],
                &mut w,
            );
            // Y^T[block] = W[block] X^T, one thread: the blocks are the parallelism.
            gemm(
                nr,
                batch,
                cols,
                &w,
                x,
                yt_block,
                &GemmParams::with_trans(false, true).threads(1),
            )?;
            Ok(())
        };
        if rows.div_ceil(block) > 1 {
            yt.par_chunks_mut(block * batch)
                .enumerate()
                .try_for_each(run)?;
        } else {
            run((0, &mut yt))?;
        }
        for (o, col) in yt.chunks_exact(batch).enumerate() {
            for (s, &v) in col.iter().enumerate() {
                y[s * rows + o] = v;
            }
        }
        Ok(())
    }
}

/// Rows of one parallel GEMV task: at least 64 KiB of codes, so a task outweighs its fork.
fn row_grain(cols: usize) -> usize {
    (65_536 / cols.max(1)).max(1)
}

/// Rows of `W` decoded per GEMM block: about 1 MiB of f32 (cache-resident while faer packs
/// it), a multiple of 8, and small enough to give every thread two blocks.
fn gemm_block_rows(rows: usize, cols: usize) -> usize {
    let by_cache = (262_144 / cols.max(1)).max(8);
    let by_threads = rows.div_ceil(2 * rayon::current_num_threads().max(1));
    by_cache.min(by_threads).max(8).next_multiple_of(8)
}

/// The codebook padded with zeros to 256 entries, validated.
pub(crate) fn codebook_table(
    op: &'static str,
    centroids: &[f32],
) -> Result<Box<[f32; MAX_CENTROIDS]>> {
    if centroids.is_empty() {
        return Err(ShareError::InvalidK { op, k: 0 });
    }
    if centroids.len() > MAX_CENTROIDS {
        return Err(ShareError::TooLarge {
            op,
            what: "centroids",
            value: centroids.len() as u128,
            max: MAX_CENTROIDS as u128,
        });
    }
    check_finite(op, centroids)?;
    let mut table = Box::new([0.0f32; MAX_CENTROIDS]);
    table[..centroids.len()].copy_from_slice(centroids);
    Ok(table)
}

/// The row kernels of one tier, with what they precompute from the codebook.
#[derive(Clone, Copy)]
// Built once per kernel call, on the stack: boxing the registers would allocate per call.
#[allow(clippy::large_enum_variant)]
enum RowKernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2(avx2::Tables),
}

impl RowKernel {
    /// The kernel of `tier` for the first `k` centroids of `table` (AVX-512 runs the AVX2
    /// kernels).
    fn for_tier(
        op: &'static str,
        tier: F32Path,
        table: &[f32; MAX_CENTROIDS],
        k: usize,
    ) -> Result<Self> {
        if !tier.is_supported() {
            return Err(ShareError::UnsupportedTier {
                op,
                tier: tier.name(),
            });
        }
        match tier {
            F32Path::Portable => Ok(RowKernel::Portable),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX2 and FMA were just detected.
            _ if F32Path::Avx2Fma.is_supported() => Ok(RowKernel::Avx2(unsafe {
                avx2::Tables::new(avx2::Select::for_k(k), table)
            })),
            _ => Ok(RowKernel::Portable),
        }
    }

    /// The input as [`RowKernel::dot`] reads it (reordered for the AVX2 byte-plane
    /// lookups, once per call).
    fn prepare_x<'a>(&self, x: &'a [f32]) -> Cow<'a, [f32]> {
        match self {
            RowKernel::Portable => Cow::Borrowed(x),
            #[cfg(target_arch = "x86_64")]
            RowKernel::Avx2(t) => avx2::interleave_x(t, x).map_or(Cow::Borrowed(x), Cow::Owned),
        }
    }

    /// `sum_i table[codes[i]] * x[i]` (`codes` and `x` of one length, codes `< k`; `x` from
    /// [`RowKernel::prepare_x`]).
    fn dot(&self, table: &[f32; MAX_CENTROIDS], codes: &[u8], x: &[f32]) -> f32 {
        match self {
            RowKernel::Portable => portable::dot_lookup(table, codes, x),
            // SAFETY: this variant is built only when AVX2 and FMA are detected, from
            // `table`; codes were checked `< k` when the matrix was built.
            #[cfg(target_arch = "x86_64")]
            RowKernel::Avx2(t) => unsafe { avx2::dot(t, table, codes, x) },
        }
    }

    /// `w[i] = table[codes[i]]` (same lengths, codes `< k`).
    fn decode(&self, table: &[f32; MAX_CENTROIDS], codes: &[u8], w: &mut [f32]) {
        match self {
            RowKernel::Portable => portable::decode(table, codes, w),
            // SAFETY: as in `dot`.
            #[cfg(target_arch = "x86_64")]
            RowKernel::Avx2(t) => unsafe { avx2::decode(t, table, codes, w) },
        }
    }
}

/// `y = W x` read directly from the packed codes: each row is decoded into an L1 buffer of
/// bytes ([`PackedCodes::unpack_u8_into_with`]), then the byte kernel runs on it (rows in
/// parallel as [`SharedMatrix::gemv`]). Slower than the byte form (module docs: 1.3-2.3x);
/// it reads `b / 8` of the bytes, which pays only where memory bandwidth, not the decode,
/// bounds the GEMV.
///
/// Errors: codes wider than 8 bits or not `rows * cols` of them; a code `>= k`; `x` or `y`
/// of the wrong length; a tier this CPU lacks.
pub fn gemv_packed(
    tier: F32Path,
    rows: usize,
    cols: usize,
    centroids: &[f32],
    packed: &PackedCodes,
    x: &[f32],
    y: &mut [f32],
) -> Result<()> {
    const OP: &str = "gemv_packed";
    let table = codebook_table(OP, centroids)?;
    let kernel = RowKernel::for_tier(OP, tier, &table, centroids.len())?;
    check_len(
        OP,
        "codes",
        packed.len(),
        checked_mul(OP, "rows * cols", rows, cols)?,
    )?;
    check_len(OP, "x", x.len(), cols)?;
    check_len(OP, "y", y.len(), rows)?;
    let x = kernel.prepare_x(x);
    let k = centroids.len();
    // Codes of `bits` bits are all < k when k >= 2^bits; otherwise each row is checked.
    let check = k < 1usize << packed.bits().min(8);
    let row = |buf: &mut Vec<u8>, o: usize, yo: &mut f32| -> Result<()> {
        packed.unpack_u8_into_with(tier, o * cols, buf)?;
        if check && let Some(index) = buf.iter().position(|&c| c as usize >= k) {
            return Err(ShareError::CodeOutOfRange {
                op: OP,
                index: o * cols + index,
                code: buf[index] as u32,
                len: k,
            });
        }
        *yo = kernel.dot(&table, buf, &x);
        Ok(())
    };
    if rows * cols >= PAR_MIN_WEIGHTS && rayon::current_num_threads() > 1 {
        y.par_iter_mut()
            .enumerate()
            .with_min_len(row_grain(cols))
            .try_for_each_init(|| vec![0u8; cols], |buf, (o, yo)| row(buf, o, yo))
    } else {
        let mut buf = vec![0u8; cols];
        y.iter_mut()
            .enumerate()
            .try_for_each(|(o, yo)| row(&mut buf, o, yo))
    }
}
