//! Binary GEMM on XNOR + popcount: `C[m][n] = K - 2 * popcount(A_m ^ B_n)` over packed rows.
//!
//! Both operands are [`PackedRows`] of the same true depth `K`: `A` is `[M, K]`, `B` is
//! `[N, K]` (a weight matrix `[out, in]` as stored, or the rows of a binary im2col), and `C`
//! is row-major `[M, N]` i32, the dot products of ±1 vectors (XNOR-Net, Rastegari et al.,
//! 2016, section 3.2: `x^T w = K - 2 popcount(x xor w)` with bit 1 = -1).
//!
//! Structure (as a BLIS-style GEMM, with popcount for multiply-add):
//! - a register-blocked tile computes `MR x NR` popcounts per call, loading each vector of
//!   `A` once per tile column and each vector of `B` once per tile row, and reduces them to
//!   scalars once per tile; edge tiles run the same code with `MR` or `NR` = 1;
//! - cache blocking: `B` is walked in panels of [`panel_rows`] rows (about
//!   [`L2_PANEL_BYTES`]), so a panel stays in L2 while every row tile of the task's `A`
//!   streams past it;
//! - threads: rows of `C` split into tasks (several per thread, so an idle worker steals from
//!   a descheduled one on a shared machine); when `C` has fewer rows than a split needs
//!   (batch-1 inference) the product is computed as `C^T = B A^T` and transposed.
//!
//! Paths ([`PopcountPath`]): `portable` (`u64::count_ones`), `avx2` (nibble-table
//! `vpshufb` + `vpsadbw` on rows split into nibble planes once per product ([`planes`]),
//! 2 x 4 tiles), `avx512-vpopcntdq` (`vpopcntq`, 4 x 4 tiles, the last partial vector of a
//! row as a masked load, the tile's sums reduced eight at a time). Beside them, on CPUs with
//! AMX-INT8, `amx-int8` ([`AmxUse`]; module `amx`): the ±1 values as int8 bytes on tile
//! registers, 32 x 32 blocks of `C`. Every path returns the same integers as
//! [`binary_gemm_reference`].

#[cfg(target_arch = "x86_64")]
mod amx;
mod planes;
mod portable;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::borrow::Cow;

use rayon::prelude::*;
use tensor_core::dispatch::{KernelPath, Level, PopcountPath, ceiling};

use crate::error::{Result, XnorError};
use crate::pack::PackedRows;

/// Target bytes of one panel of `B` (a quarter of Zen 3's 512 KiB L2, leaving room for the
/// `A` tiles and `C`).
pub const L2_PANEL_BYTES: usize = 128 * 1024;

/// Products of fewer word pairs (`M * N * words`) than this run on one thread: below it
/// (about 0.1 ms of popcounts) a fork/join costs more than the second core saves.
pub const PAR_MIN_WORD_PAIRS: usize = 1 << 18;

/// Rows of `B` per cache panel for rows of `words` words (a multiple of 4, at least 4).
pub fn panel_rows(words: usize) -> usize {
    let rows = L2_PANEL_BYTES / (8 * words.max(1));
    (rows / 4 * 4).max(4)
}

/// Products with fewer rows than this on either side stay on the popcount path under
/// [`AmxUse::Large`]: an AMX register block is 32 x 32, so a batch-1 row would pay for 32.
pub const AMX_MIN_SIDE: usize = 32;

/// When the AMX-INT8 path (±1 bytes multiplied on tile registers, `tdpbssd`; x86_64 CPUs
/// with AMX-TILE and AMX-INT8 where the OS grants the tile state) runs instead of
/// [`BinaryGemmParams::path`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AmxUse {
    /// Never: the popcount path runs every product.
    Never,
    /// Products with at least [`AMX_MIN_SIDE`] rows of `A` and of `B`.
    Large,
    /// Every product (tests reach the edge tiles with it).
    Always,
}

impl AmxUse {
    /// The default: [`AmxUse::Never`] for now. Measured on a Sapphire Rapids class Xeon
    /// (`popcount_ceiling`, one thread, 256 x 512 x K, BENCHMARKS "Binary GEMM against faer
    /// on AVX-512 (issue 11), session 10"), AMX beats `avx512-vpopcntdq` at K = 256 (106
    /// against 62 MACs per cycle) and 1024 (214 against 175) but not at 4096 (129 against
    /// 249): its tile loads stall on L2 (perf: a third of the kernel's samples on one
    /// `tileloadd`). [`AmxUse::Large`] is the choice to make once it wins at every depth.
    pub fn selected() -> Self {
        Self::Never
    }

    /// [`AmxUse::Large`] where the AMX path runs and `SLIMNET_KERNEL` allows AVX-512-level
    /// paths, else [`AmxUse::Never`].
    pub fn large_if_usable() -> Self {
        if amx_usable() && ceiling() == Level::Avx512 {
            Self::Large
        } else {
            Self::Never
        }
    }
}

/// Whether this CPU and OS run the AMX-INT8 path (AMX-TILE, AMX-INT8, AVX-512 F and BW, and
/// on Linux the tile data permission, requested once per process).
pub fn amx_usable() -> bool {
    #[cfg(target_arch = "x86_64")]
    return amx::usable();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The name of the AMX path in reports and test messages.
pub const AMX_PATH_NAME: &str = "amx-int8";

/// What the AMX path needs, for skip lines and errors.
pub const AMX_NEEDS: &str = "amx-tile + amx-int8 + avx512bw and the OS tile permission";

/// Options of a binary GEMM (`Default`: the selected path, [`AmxUse::selected`], rayon's
/// pool).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BinaryGemmParams {
    /// The popcount kernel path.
    pub path: PopcountPath,
    /// When the AMX-INT8 path runs instead of `path`.
    pub amx: AmxUse,
    /// Threads: 0 = the current rayon pool, 1 = sequential (callers already running in
    /// parallel), `n > 1` = the pool too (the split adapts to it).
    pub threads: usize,
    /// AVX2 only: split the rows into nibble planes once per product and run the planes
    /// tile (6 vector instructions per pair and vector; the default), or run the table tile
    /// on the packed words (8; kept to measure one against the other).
    pub nibble_planes: bool,
}

impl Default for BinaryGemmParams {
    fn default() -> Self {
        Self {
            path: PopcountPath::selected(),
            amx: AmxUse::selected(),
            threads: 0,
            nibble_planes: true,
        }
    }
}

impl BinaryGemmParams {
    /// Defaults on `path`, which then runs every product (AMX off).
    pub fn on(path: PopcountPath) -> Self {
        Self {
            path,
            amx: AmxUse::Never,
            ..Self::default()
        }
    }

    /// Same options with [`Self::amx`] replaced.
    pub fn amx(self, amx: AmxUse) -> Self {
        Self { amx, ..self }
    }

    /// Same options with `threads` replaced.
    pub fn threads(self, threads: usize) -> Self {
        Self { threads, ..self }
    }

    /// Same options with [`Self::nibble_planes`] replaced.
    pub fn nibble_planes(self, nibble_planes: bool) -> Self {
        Self {
            nibble_planes,
            ..self
        }
    }
}

/// `C = A B^T` on ±1 rows on the selected path: `c[m * N + n] = K - 2 popcount(A_m ^ B_n)`.
///
/// Errors: the depths differ, or `c.len() != M * N`.
pub fn binary_gemm(a: &PackedRows, b: &PackedRows, c: &mut [i32]) -> Result<()> {
    binary_gemm_with(a, b, c, &BinaryGemmParams::default())
}

/// [`binary_gemm`] with explicit options; also an error if this CPU cannot run `p.path`.
pub fn binary_gemm_with(
    a: &PackedRows,
    b: &PackedRows,
    c: &mut [i32],
    p: &BinaryGemmParams,
) -> Result<()> {
    const OP: &str = "binary_gemm";
    check(OP, a, b, c.len())?;
    require(p.path, OP)?;
    let (m, n, w) = (a.rows(), b.rows(), a.words_per_row());
    if m == 0 || n == 0 {
        return Ok(());
    }
    let depth = a.depth() as i32;
    if w == 0 {
        c.fill(depth);
        return Ok(());
    }
    let threads = if p.threads == 0 {
        rayon::current_num_threads()
    } else {
        p.threads
    };
    let parallel = threads > 1 && m.saturating_mul(n).saturating_mul(w) >= PAR_MIN_WORD_PAIRS;
    let amx = match p.amx {
        AmxUse::Never => false,
        AmxUse::Large => m >= AMX_MIN_SIDE && n >= AMX_MIN_SIDE,
        AmxUse::Always => true,
    };
    if amx {
        if !amx_usable() {
            return Err(XnorError::InvalidArgument {
                op: OP,
                reason: format!(
                    "path {AMX_PATH_NAME} needs {AMX_NEEDS}, which this CPU or OS lacks"
                ),
            });
        }
        #[cfg(target_arch = "x86_64")]
        amx_product(a, b, c, if parallel { threads } else { 1 });
        return Ok(());
    }
    // The AVX2 tile reads both operands as nibble planes, split once here.
    let split = p.nibble_planes && matches!(p.path, PopcountPath::Avx2) && w >= 4;
    let (a_words, b_words, stride) = if split {
        (
            Cow::Owned(planes::split(a.words(), w)),
            Cow::Owned(planes::split(b.words(), w)),
            planes::stride(w),
        )
    } else {
        (Cow::Borrowed(a.words()), Cow::Borrowed(b.words()), w)
    };
    let run = Run {
        path: p.path,
        split,
        w: stride,
        depth,
    };
    if !parallel {
        run.rows(&a_words, &b_words, n, c);
        return Ok(());
    }
    let tasks = 4 * threads;
    if m >= tasks * 4 || m >= n {
        run.rows_parallel(&a_words, &b_words, m, n, c, tasks);
    } else {
        // Few rows of C (batch-1 inference): split the other dimension through C^T = B A^T.
        let mut ct = vec![0i32; m * n];
        run.rows_parallel(&b_words, &a_words, n, m, &mut ct, tasks);
        for (i, row) in c.chunks_exact_mut(n).enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = ct[j * m + i];
            }
        }
    }
    Ok(())
}

/// `C = A B^T` on the AMX path (see module `amx`): `A` expanded to bytes and `B` packed in
/// the VNNI tile layout once, then blocks of 32 rows of `C` split over `threads` (rayon).
/// Callers checked [`amx_usable`].
#[cfg(target_arch = "x86_64")]
fn amx_product(a: &PackedRows, b: &PackedRows, c: &mut [i32], threads: usize) {
    let (n, w, depth) = (b.rows(), a.words_per_row(), a.depth());
    // SAFETY: the caller checked amx_usable (AVX-512 F and BW among its features).
    let (ea, pb) = unsafe {
        (
            amx::expand_rows(a.words(), w, depth),
            amx::pack_vnni(b.words(), w, depth),
        )
    };
    // SAFETY (every call): AMX usable (the caller); `ea` and `pb` come from expand_rows and
    // pack_vnni with the same `w`, and each task's rows start at a multiple of 32 rows of
    // `ea`, which holds every row of `A` rounded up to 32.
    let run = |first_row: usize, c: &mut [i32]| unsafe {
        amx::rows(&ea[first_row * 64 * w..], &pb, w, n, c)
    };
    if threads <= 1 {
        run(0, c);
        return;
    }
    // Two tasks a thread (an idle worker steals from a descheduled one), each as tall as it
    // can be, so that each pass of `B` serves many rows.
    let rows_per_task = a.rows().div_ceil(2 * threads).next_multiple_of(amx::BLOCK);
    c.par_chunks_mut(rows_per_task * n)
        .enumerate()
        .for_each(|(t, c)| run(t * rows_per_task, c));
}

/// The naive reference: one `count_ones` loop per dot product, no blocking.
pub fn binary_gemm_reference(a: &PackedRows, b: &PackedRows) -> Result<Vec<i32>> {
    check("binary_gemm_reference", a, b, a.rows() * b.rows())?;
    let mut c = Vec::with_capacity(a.rows() * b.rows());
    for i in 0..a.rows() {
        for j in 0..b.rows() {
            let p: u32 = a
                .row(i)
                .iter()
                .zip(b.row(j))
                .map(|(x, y)| (x ^ y).count_ones())
                .sum();
            c.push(a.depth() as i32 - 2 * p as i32);
        }
    }
    Ok(c)
}

/// Same depth on both sides and a `C` of `M * N`.
fn check(op: &'static str, a: &PackedRows, b: &PackedRows, c_len: usize) -> Result<()> {
    if a.depth() != b.depth() {
        return Err(XnorError::DepthMismatch {
            op,
            lhs: a.depth(),
            rhs: b.depth(),
        });
    }
    let want = a.rows().checked_mul(b.rows()).ok_or(XnorError::TooLarge {
        op,
        what: "M * N",
        value: a.rows() as u128 * b.rows() as u128,
        max: usize::MAX as u128,
    })?;
    if c_len != want {
        return Err(XnorError::LengthMismatch {
            op,
            what: "C",
            got: c_len,
            expected: want,
        });
    }
    Ok(())
}

/// `Ok` when this CPU runs `path` (its own features, and POPCNT for the SIMD paths' scalar
/// tails, which every CPU with AVX2 has).
pub(crate) fn require(path: PopcountPath, op: &'static str) -> Result<()> {
    path.require(op)?;
    #[cfg(target_arch = "x86_64")]
    if path != PopcountPath::Portable && !std::arch::is_x86_feature_detected!("popcnt") {
        return Err(XnorError::InvalidArgument {
            op,
            reason: format!("path {} needs popcnt, which this CPU lacks", path.name()),
        });
    }
    Ok(())
}

/// One product's fixed parts: the path, whether the rows are nibble planes, words per row
/// (of the layout the tiles read) and the true depth.
#[derive(Clone, Copy)]
struct Run {
    path: PopcountPath,
    split: bool,
    w: usize,
    depth: i32,
}

impl Run {
    /// Splits the `m` rows of `C` into about `tasks` blocks of whole tiles, run in parallel.
    fn rows_parallel(&self, a: &[u64], b: &[u64], m: usize, n: usize, c: &mut [i32], tasks: usize) {
        let rows_per_task = m.div_ceil(tasks).next_multiple_of(4).max(4);
        c.par_chunks_mut(rows_per_task * n)
            .zip(a.par_chunks(rows_per_task * self.w))
            .for_each(|(c, a)| self.rows(a, b, n, c));
    }

    /// `C` rows for the rows of `a` (all of `b`), sequentially.
    fn rows(&self, a: &[u64], b: &[u64], n: usize, c: &mut [i32]) {
        // SAFETY (the x86 arms): a Run on a SIMD path exists only after `require` checked
        // the path's features.
        match self.path {
            #[cfg(target_arch = "x86_64")]
            PopcountPath::Avx2 if self.split => unsafe {
                simd_panels::avx2_planes(self, a, b, n, c)
            },
            #[cfg(target_arch = "x86_64")]
            PopcountPath::Avx2 => unsafe { simd_panels::avx2(self, a, b, n, c) },
            #[cfg(target_arch = "x86_64")]
            PopcountPath::Avx512Vpopcntdq => unsafe { simd_panels::avx512(self, a, b, n, c) },
            _ => self.panels::<Portable, 2, 4>(a, b, n, c),
        }
    }

    /// Panel by panel of `b`: every `MR x NR` tile of the rows of `a` against the panel, then
    /// the edges with `MR` or `NR` = 1.
    #[inline(always)]
    fn panels<T: Tiles, const MR: usize, const NR: usize>(
        &self,
        a: &[u64],
        b: &[u64],
        n: usize,
        c: &mut [i32],
    ) {
        let w = self.w;
        let m = a.len() / w;
        let panel = panel_rows(w).next_multiple_of(NR);
        for j0 in (0..n).step_by(panel) {
            let j1 = (j0 + panel).min(n);
            let jt = j0 + (j1 - j0) / NR * NR;
            let mt = m / MR * MR;
            for i in (0..mt).step_by(MR) {
                for j in (j0..jt).step_by(NR) {
                    self.tile::<T, MR, NR>(a, b, i, j, n, c);
                }
                for j in jt..j1 {
                    self.tile::<T, MR, 1>(a, b, i, j, n, c);
                }
            }
            for i in mt..m {
                for j in (j0..jt).step_by(NR) {
                    self.tile::<T, 1, NR>(a, b, i, j, n, c);
                }
                for j in jt..j1 {
                    self.tile::<T, 1, 1>(a, b, i, j, n, c);
                }
            }
        }
    }

    /// The tile at rows `i..i+MR` of `a`, rows `j..j+NR` of `b`, written into `c` (row
    /// length `n`) as `K - 2p`.
    #[inline(always)]
    fn tile<T: Tiles, const MR: usize, const NR: usize>(
        &self,
        a: &[u64],
        b: &[u64],
        i: usize,
        j: usize,
        n: usize,
        c: &mut [i32],
    ) {
        let w = self.w;
        let mut out = [[0u32; NR]; MR];
        T::tile::<MR, NR>(
            &a[i * w..(i + MR) * w],
            &b[j * w..(j + NR) * w],
            w,
            &mut out,
        );
        for (r, counts) in out.iter().enumerate() {
            let row = &mut c[(i + r) * n + j..(i + r) * n + j + NR];
            for (v, &p) in row.iter_mut().zip(counts) {
                *v = self.depth - 2 * p as i32;
            }
        }
    }
}

/// The panel loops of the x86 paths compiled with the paths' target features, so that the
/// tiles (target-feature functions), their reductions and the `K - 2p` write-back inline into
/// one loop. Called from plain code, each tile was a call, its counts passed through memory
/// and the write-back scalar: 14% of the time at K = 256 beside 58% in the tile (perf).
#[cfg(target_arch = "x86_64")]
mod simd_panels {
    use super::{Avx2, Avx2Planes, Avx512, Run};

    #[target_feature(enable = "avx2,popcnt")]
    pub(super) fn avx2_planes(run: &Run, a: &[u64], b: &[u64], n: usize, c: &mut [i32]) {
        run.panels::<Avx2Planes, 2, 4>(a, b, n, c)
    }

    #[target_feature(enable = "avx2,popcnt")]
    pub(super) fn avx2(run: &Run, a: &[u64], b: &[u64], n: usize, c: &mut [i32]) {
        run.panels::<Avx2, 2, 4>(a, b, n, c)
    }

    #[target_feature(enable = "avx512f,avx512vpopcntdq,popcnt")]
    pub(super) fn avx512(run: &Run, a: &[u64], b: &[u64], n: usize, c: &mut [i32]) {
        run.panels::<Avx512, 4, 4>(a, b, n, c)
    }
}

/// A path's tile: the popcounts of `a_i ^ b_j` for `MR` rows of `a` and `NR` rows of `b`.
trait Tiles {
    fn tile<const MR: usize, const NR: usize>(
        a: &[u64],
        b: &[u64],
        w: usize,
        out: &mut [[u32; NR]; MR],
    );
}

/// A zero-sized path type whose tile calls `$tile`; `$safety` says why the call is sound.
macro_rules! tiles {
    ($(#[$cfg:meta])* $name:ident, $tile:path, $safety:literal) => {
        $(#[$cfg])*
        struct $name;

        $(#[$cfg])*
        impl Tiles for $name {
            #[inline(always)]
            fn tile<const MR: usize, const NR: usize>(
                a: &[u64],
                b: &[u64],
                w: usize,
                out: &mut [[u32; NR]; MR],
            ) {
                #[allow(unused_unsafe)]
                // SAFETY: as the invocation of `tiles!` states (its third argument).
                unsafe {
                    $tile(a, b, w, out)
                }
            }
        }
    };
}

tiles!(Portable, portable::tile, "plain Rust");
tiles!(
    #[cfg(target_arch = "x86_64")]
    Avx2,
    x86::tile_avx2,
    "a Run on this path exists only after `require` checked AVX2 and POPCNT"
);
tiles!(
    #[cfg(target_arch = "x86_64")]
    Avx2Planes,
    x86::tile_avx2_planes,
    "a Run on this path exists only after `require` checked AVX2 and POPCNT; `split` says \
     the rows are planes"
);
tiles!(
    #[cfg(target_arch = "x86_64")]
    Avx512,
    x86::tile_avx512,
    "a Run on this path exists only after `require` checked AVX-512 F, VPOPCNTDQ, POPCNT"
);
