//! GEMM with weights packed once, for inference of linear layers:
//! `Y = act(X W^T + b)` with `X [m, k]` (activations, row-major), `W [n, k]` (weights, row-major
//! as PyTorch stores them), bias `b [n]` and `act` the identity or ReLU (`v < 0 -> 0`, NaN kept,
//! as [`crate::activation::relu_inplace`]), fused into the kernel's single store.
//!
//! # Layout
//! [`PackedLinear`] holds `W^T` as `ceil(n / NR)` panels of [`NR`] = 32 columns by `k` rows,
//! one 128-byte, 64-byte-aligned row per `p` (`panel[p][c] = W[32*j + c][p]`), columns past
//! `n` zero. `k` is cut into blocks of at most [`KC`]. The AVX-512 kernel reads `X` in place;
//! the AVX2 and portable ones pack each k block of `X` into micro-panels of `MR` rows
//! interleaved by column (`a[p][i] = X[MR*q + i][k0 + p]`, rows past `m` zero), into a buffer
//! kept per thread. Packing `X` for the AVX-512 kernel too took 21% of `slimnet bench`
//! lenet300 at batch 256 on one thread (`perf record`, session 12): the scatter costs as much
//! as a tenth of the FMAs it feeds.
//!
//! # Kernels (per [`F32Path`])
//! - `avx512f`: an `MR = 12` by 32 tile in 24 zmm accumulators; per `p` two aligned loads of the
//!   packed weights, 12 broadcasts (`vbroadcastss`, each feeding two FMAs: a pure load uop
//!   even with an index register, so reading 12 rows of `X` in place costs only address
//!   arithmetic) and 24 register FMAs. The epilogue loads the
//!   previous partial sum (k blocks after the first), adds the bias and applies ReLU (last
//!   block), with masked loads and stores on the `n` edge; `m` edges run the same kernel
//!   with fewer rows (a const generic). `m = 1` is a GEMV reading `x` in place with 8
//!   accumulators (four `p` phases of two zmm) so that FMA latency does not bound it.
//! - `avx2-fma`: a 6 by 16 tile (half a panel, 12 ymm accumulators) with separate
//!   broadcasts; the epilogue runs in scalar form, shared with the portable path.
//! - `portable`: a 4 by 32 tile in plain Rust (the reference twin of the packing).
//!
//! Loop order per k block: panels of `W` outside, micro-panels of `X` inside, so one
//! `KC x NR` slice of the packed weights (32 KB) stays in L1 while `X`'s micro-panels stream
//! from L2 (48 bytes per `p` against 128 for the weights the other way round).
//!
//! Every output element is one FMA chain over `p` in order within each k block, blocks added
//! in order, then `+ b`, then ReLU: the same arithmetic whatever the row's place in a tile or
//! the thread split, so 1 and 2 threads give the same bits.

use std::cell::RefCell;
use std::ops::Range;

use rayon::prelude::*;

use super::{PAR_MIN_FLOP, TASKS_PER_THREAD, check_len};
use crate::dispatch::{F32Path, KernelPath};
use crate::duo;
use crate::error::TensorError;

/// Columns of `W^T` per packed panel (two zmm).
pub const NR: usize = 32;

/// Columns of `k` per block: a `KC x NR` slice of the packed weights is 32 KB, within the
/// 48 KB L1 of the reference Xeon. `k` is cut into equal blocks of at most `KC`.
pub const KC: usize = 256;

/// Rows per micro-tile of the AVX-512 kernel.
const MR512: usize = 12;
/// Rows per micro-tile of the AVX2 kernel.
const MR256: usize = 6;
/// Rows per micro-tile of the portable kernel.
const MR_PORTABLE: usize = 4;

/// One packed row of a panel: the weights of [`NR`] output columns at one `p`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C, align(64))]
struct PanelRow([f32; NR]);

impl Default for PanelRow {
    fn default() -> Self {
        Self([0.0; NR])
    }
}

/// The weights `W [n, k]` of a linear layer packed for [`linear_packed`] (see the module
/// docs for the layout). Packing is `n*k` copies; nn's `Linear` packs on its first inference
/// call and drops the packing whenever its parameters are handed out for writing.
#[derive(Clone, Debug, PartialEq)]
pub struct PackedLinear {
    rows: Vec<PanelRow>,
    n: usize,
    k: usize,
}

impl PackedLinear {
    /// Packs `weight` (`[n, k]`, row-major). Errors with [`TensorError::DataLength`] when its
    /// length is not `n*k`.
    pub fn pack(weight: &[f32], n: usize, k: usize) -> Result<Self, TensorError> {
        check_len("linear: pack weight", weight.len(), n, k)?;
        let mut rows = vec![PanelRow::default(); n.div_ceil(NR) * k];
        if k > 0 {
            // Row by row of each panel: the 32 rows of `W` it reads are 32 streams advancing
            // together (one cache line each in L1), the panel is written in order. Writing
            // each row of `W` down its panel instead (128-byte strides) took 1 ms for lenet5
            // fc1's 400 K weights (criterion, load 7).
            for (j, panel) in rows.chunks_exact_mut(k).enumerate() {
                let w_rows: Vec<&[f32]> = weight[j * NR * k..]
                    .chunks_exact(k)
                    .take(NR.min(n - j * NR))
                    .collect();
                for (p, row) in panel.iter_mut().enumerate() {
                    for (v, src) in row.0.iter_mut().zip(&w_rows) {
                        *v = src[p];
                    }
                }
            }
        }
        Ok(Self { rows, n, k })
    }

    /// Packs `W` given transposed: `wt` is `W^T` (`[k, n]`, row-major), as the `B` of a
    /// plain product `X B` is (training's `dx = g W` has `B = W [out, in]`). Each panel row is
    /// a copy of 32 consecutive values of a row of `wt`. Errors with
    /// [`TensorError::DataLength`] when its length is not `k*n`.
    pub fn pack_transposed(wt: &[f32], k: usize, n: usize) -> Result<Self, TensorError> {
        check_len("linear: pack transposed weight", wt.len(), k, n)?;
        let mut rows = vec![PanelRow::default(); n.div_ceil(NR) * k];
        if n > 0 {
            for (p, src) in wt.chunks_exact(n).enumerate() {
                for (j, cols) in src.chunks(NR).enumerate() {
                    rows[j * k + p].0[..cols.len()].copy_from_slice(cols);
                }
            }
        }
        Ok(Self { rows, n, k })
    }

    /// Output features `n`.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input features `k`.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Rows `k0..k0 + len` of panel `j`.
    fn panel(&self, j: usize, k0: usize, len: usize) -> &[PanelRow] {
        &self.rows[j * self.k + k0..j * self.k + k0 + len]
    }
}

/// What [`linear_packed`] applies before its store: bias `[n]` and ReLU.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinearEpilogue<'a> {
    /// Added to every row, if given.
    pub bias: Option<&'a [f32]>,
    /// ReLU after the bias (`v < 0 -> 0`, NaN kept).
    pub relu: bool,
}

/// `y = act(x W^T + b)` on the selected f32 path; see [`linear_packed_with`].
pub fn linear_packed(
    x: &[f32],
    m: usize,
    w: &PackedLinear,
    epi: LinearEpilogue<'_>,
    y: &mut [f32],
    threads: usize,
) -> Result<(), TensorError> {
    linear_packed_with(F32Path::selected(), x, m, w, epi, y, threads)
}

/// `y [m, n] = act(x [m, k] W^T + b)` on `path`, with `W` packed in `w`. `threads`: 0 = the
/// current rayon pool's size, 1 = sequential; products below [`PAR_MIN_FLOP`] run on one
/// thread, larger ones split `m` into contiguous blocks of micro-panels, four per thread,
/// which idle workers steal; `m = 1` splits its panels in two between the caller and the
/// [`duo`] helper from 128 Ki weights. Errors: [`TensorError::UnsupportedPath`] when this
/// CPU cannot run `path`,
/// [`TensorError::DataLength`] naming `x`, `y` or the bias when a length disagrees.
pub fn linear_packed_with(
    path: F32Path,
    x: &[f32],
    m: usize,
    w: &PackedLinear,
    epi: LinearEpilogue<'_>,
    y: &mut [f32],
    threads: usize,
) -> Result<(), TensorError> {
    let all = 0..w.n.div_ceil(NR);
    if !checked_nonempty(path, x, m, w, (all.clone(), w.n), epi, y)? {
        return Ok(());
    }
    let (n, k) = (w.n, w.k);
    let threads = if threads == 0 {
        rayon::current_num_threads()
    } else {
        threads
    };
    #[cfg(target_arch = "x86_64")]
    if m == 1 && path == F32Path::Avx512F {
        let panels = n.div_ceil(NR);
        if threads >= 2 && n * k >= GEMV_PAR_MIN_WEIGHTS && panels >= 2 {
            let mid = panels.div_ceil(2);
            let (y0, y1) = y.split_at_mut(mid * NR);
            // SAFETY: `require` checked AVX-512 F; lengths checked above.
            duo::join(
                || unsafe { gemv_avx512(x, w, epi, y0, 0) },
                || unsafe { gemv_avx512(x, w, epi, y1, mid) },
            );
        } else {
            // SAFETY: as above.
            unsafe { gemv_avx512(x, w, epi, y, 0) };
        }
        return Ok(());
    }
    let mr = mr_of(path);
    let micro_panels = m.div_ceil(mr);
    let flop = 2usize.saturating_mul(m).saturating_mul(n).saturating_mul(k);
    // Several tasks per thread, stolen as workers come free: with one static half per
    // thread, a worker descheduled by another process holds up the whole call (session 12,
    // load average 3: 2 threads ran lenet300 at batch 256 no faster than 1, 0.92 CPUs used).
    let tasks = if flop < PAR_MIN_FLOP || threads <= 1 {
        1
    } else {
        (threads * TASKS_PER_THREAD).min(micro_panels)
    };
    if tasks <= 1 {
        run_rows(path, x, m, w, epi, y, all);
    } else {
        let rows = micro_panels.div_ceil(tasks) * mr;
        y.par_chunks_mut(rows * n)
            .zip(x.par_chunks(rows * k))
            .for_each(|(yc, xc)| run_rows(path, xc, yc.len() / n, w, epi, yc, all.clone()));
    }
    Ok(())
}

/// Columns `panels` (panels of [`NR`] columns of `W`'s packing, clamped to `W`'s) of
/// `y [m, n] = act(x [m, k] W^T + b)`, by the GEMM kernel on this thread for every `m`,
/// `m = 1` included (which [`linear_packed_with`] gives to a GEMV of another summation
/// order): each element of `y` gets the same bits whatever `m`, the rows around it and the
/// panels asked for, for callers that split their work differently from call to call
/// (Winograd's halves of an image). `y` holds those columns only: `[m, cols]`,
/// `cols = min(n, NR * panels.end) - NR * panels.start`. Errors as [`linear_packed_with`].
pub(crate) fn linear_packed_rows(
    path: F32Path,
    x: &[f32],
    m: usize,
    w: &PackedLinear,
    epi: LinearEpilogue<'_>,
    y: &mut [f32],
    panels: Range<usize>,
) -> Result<(), TensorError> {
    let end = panels.end.min(w.n.div_ceil(NR));
    let panels = panels.start.min(end)..end;
    let cols = w.n.min(NR * panels.end) - NR * panels.start;
    if checked_nonempty(path, x, m, w, (panels.clone(), cols), epi, y)? {
        run_rows(path, x, m, w, epi, y, panels);
    }
    Ok(())
}

/// The checks of [`linear_packed_with`] for the columns `cols` of `panels` that `y` holds;
/// `Ok(false)` when nothing is left to compute (empty `y`, or `k = 0`, whose rows this fills
/// with the epilogue of zero).
fn checked_nonempty(
    path: F32Path,
    x: &[f32],
    m: usize,
    w: &PackedLinear,
    (panels, cols): (Range<usize>, usize),
    epi: LinearEpilogue<'_>,
    y: &mut [f32],
) -> Result<bool, TensorError> {
    path.require("linear_packed")?;
    check_len("linear: x", x.len(), m, w.k)?;
    check_len("linear: y", y.len(), m, cols)?;
    crate::conv::check_bias(epi.bias, w.n, "linear: bias")?;
    if m == 0 || cols == 0 {
        return Ok(false);
    }
    if w.k == 0 {
        let zeros = vec![0.0; cols];
        let c0 = NR * panels.start;
        let epi = LinearEpilogue {
            bias: epi.bias.map(|b| &b[c0..c0 + cols]),
            ..epi
        };
        for row in y.chunks_exact_mut(cols) {
            finish(row, &zeros, epi, true, true);
        }
        return Ok(false);
    }
    Ok(true)
}

/// Weights (`n*k`) from which a GEMV (`m = 1`) splits its panels over two threads, the
/// caller and the [`duo`] helper (rounding the caller's half up): 128 Ki floats. With a
/// rayon fork/join (~15 us to wake a worker) session 12 measured the split slower below
/// 512 Ki (lenet5 fc1, 400 K weights: 22 vs 37 us; lenet300 fc1, 235 K: 19 vs 124 us, load
/// 6-7). With the duo helper (session 13, `slimnet bench --batch 1 --threads 2`, medians of 4
/// interleaved runs at real-time priority, load average 9-10): lenet5 52-57 us unsplit
/// against 39-43 split from 200 K, 42-46 from 100 K; lenet300 8.9-9.9 against 7.2-8.1 us
/// (100 K) and 7.7-11.3 us when fc2 (30 K) splits too (25 K and 0).
const GEMV_PAR_MIN_WEIGHTS: usize = 1 << 17;

/// Rows of a panel that the GEMV prefetches ahead of the row it multiplies (4 KB; each step
/// of 4 rows prefetches the 8 lines of the 4 rows this far ahead). The weights of a large
/// layer stream from L3 (the wide teacher's fc1 is 6.4 MB) and the hardware prefetcher alone
/// left the m = 1 kernel at ~28 GB/s per core. Session 13, `slimnet bench --batch 1`, medians
/// of 6 interleaved runs at real-time priority (load average 8-10), none / 32 / 64 rows ahead:
/// wide teacher 1 thread 1203-1310 / 1175-1261 / 1168-1501 us, 2 threads 612-688 / 616-679 /
/// 620-671 us; cnn-teacher 1 thread 380-412 / 371-391 / 374-399 us; lenet5 2 threads
/// 44.7-50.1 / 44.4-47.0 / 43.8-46.8 us.
const GEMV_PREFETCH_ROWS: usize = 32;

/// Rows per micro-tile of `path`.
fn mr_of(path: F32Path) -> usize {
    match path {
        F32Path::Portable => MR_PORTABLE,
        F32Path::Avx2Fma => MR256,
        F32Path::Avx512F => MR512,
    }
}

thread_local! {
    /// The packed micro-panels of `X` of the calls this thread runs, reused across calls.
    static X_PANELS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The sequential driver: every k block, panel of `panels` and micro-panel of `y` (`[m, cols]`,
/// the columns of `panels`; `k > 0`).
fn run_rows(
    path: F32Path,
    x: &[f32],
    m: usize,
    w: &PackedLinear,
    epi: LinearEpilogue<'_>,
    y: &mut [f32],
    panels: Range<usize>,
) {
    let (n, k) = (w.n, w.k);
    // Row stride of `y`: the columns of `panels`.
    let ldy = n.min(NR * panels.end) - NR * panels.start;
    let mr = mr_of(path);
    let blocks = k.div_ceil(KC);
    let kc = k.div_ceil(blocks);
    let micro_panels = m.div_ceil(mr);
    // The AVX-512 kernel reads `X` in place (see `X_IN_PLACE`).
    let in_place = path == F32Path::Avx512F;
    X_PANELS.with(|buf| {
        let mut buf = buf.borrow_mut();
        let need = if in_place { 0 } else { micro_panels * mr * kc };
        if buf.len() < need {
            buf.resize(need, 0.0);
        }
        for blk in 0..blocks {
            let k0 = blk * kc;
            let kl = kc.min(k - k0);
            if !in_place {
                pack_x(x, m, k, k0, kl, mr, &mut buf[..micro_panels * mr * kl]);
            }
            let (first, last) = (blk == 0, blk + 1 == blocks);
            for j in panels.clone() {
                let b = w.panel(j, k0, kl);
                let cols = NR.min(n - j * NR);
                let bias = epi.bias.map(|bias| &bias[j * NR..j * NR + cols]);
                for q in 0..micro_panels {
                    let rows = mr.min(m - q * mr);
                    let (a, lda) = if in_place {
                        (&x[q * mr * k + k0..], k)
                    } else {
                        (&buf[q * mr * kl..(q + 1) * mr * kl], 0)
                    };
                    let t = Tile {
                        a,
                        lda,
                        b,
                        rows,
                        cols,
                        bias,
                        relu: epi.relu,
                        first,
                        last,
                    };
                    let c = &mut y[q * mr * ldy + (j - panels.start) * NR..];
                    tile(path, &t, c, ldy);
                }
            }
        }
    });
}

/// Packs columns `k0..k0 + kl` of `x [m, k]` into micro-panels of `mr` rows:
/// `a[q][p][i] = x[q*mr + i][k0 + p]`, rows past `m` zero.
fn pack_x(x: &[f32], m: usize, k: usize, k0: usize, kl: usize, mr: usize, a: &mut [f32]) {
    for (q, panel) in a.chunks_exact_mut(mr * kl).enumerate() {
        let rows = mr.min(m - q * mr);
        if rows < mr {
            panel.fill(0.0);
        }
        for i in 0..rows {
            let r = q * mr + i;
            let src = &x[r * k + k0..r * k + k0 + kl];
            for (d, &v) in panel[i..].iter_mut().step_by(mr).zip(src) {
                *d = v;
            }
        }
    }
}

/// One micro-tile's operands: `a` one packed micro-panel of `X` (`kl x mr`) or its rows in
/// place, `b` the packed weight rows of the same k block, the tile's extent and what its
/// store applies.
struct Tile<'a> {
    a: &'a [f32],
    /// 0: `a` is a packed micro-panel; else `X` in place, row `i` at `a[i*lda..]`.
    lda: usize,
    b: &'a [PanelRow],
    rows: usize,
    cols: usize,
    /// The bias of the tile's `cols` columns.
    bias: Option<&'a [f32]>,
    relu: bool,
    /// First k block: overwrite `y` (else add to it).
    first: bool,
    /// Last k block: add the bias and apply ReLU.
    last: bool,
}

/// Runs one micro-tile on `path` into `c` (row `i` at `c[i*ldc..]`).
fn tile(path: F32Path, t: &Tile<'_>, c: &mut [f32], ldc: usize) {
    debug_assert!(c.len() >= (t.rows - 1) * ldc + t.cols);
    match path {
        #[cfg(target_arch = "x86_64")]
        F32Path::Avx512F => {
            macro_rules! by_rows {
                ($v:literal; $($r:literal)+) => {
                    match t.rows {
                        // SAFETY: the path was checked by `require`; `c` holds the tile.
                        $($r => unsafe { tile_avx512::<$r, $v>(t, c.as_mut_ptr(), ldc) },)+
                        _ => unreachable!("rows <= MR512"),
                    }
                };
            }
            if t.cols <= 16 {
                by_rows!(1; 1 2 3 4 5 6 7 8 9 10 11 12);
            } else {
                by_rows!(2; 1 2 3 4 5 6 7 8 9 10 11 12);
            }
        }
        #[cfg(target_arch = "x86_64")]
        F32Path::Avx2Fma => {
            for half in 0..2 {
                let c0 = half * 16;
                if c0 >= t.cols {
                    break;
                }
                macro_rules! by_rows {
                    ($($r:literal)+) => {
                        match t.rows {
                            // SAFETY: the path was checked by `require`.
                            $($r => unsafe { tile_avx2::<$r>(t, half, c, ldc) },)+
                            _ => unreachable!("rows <= MR256"),
                        }
                    };
                }
                by_rows!(1 2 3 4 5 6);
            }
        }
        _ => tile_portable(t, c, ldc),
    }
}

/// `out = act(prev + acc + b)` as one tile row's store: `prev` only after the first k block,
/// bias and ReLU only in the last. The scalar epilogue of the AVX2 and portable kernels (the
/// AVX-512 one is the same arithmetic on vectors).
fn finish(out: &mut [f32], acc: &[f32], epi: LinearEpilogue<'_>, first: bool, last: bool) {
    for (idx, (o, &a)) in out.iter_mut().zip(acc).enumerate() {
        let mut v = if first { a } else { *o + a };
        if last {
            if let Some(b) = epi.bias {
                v += b[idx];
            }
            if epi.relu && v < 0.0 {
                v = 0.0;
            }
        }
        *o = v;
    }
}

/// The portable micro-kernel: `mr = 4` rows by 32 columns.
fn tile_portable(t: &Tile<'_>, c: &mut [f32], ldc: usize) {
    let mut acc = [[0.0f32; NR]; MR_PORTABLE];
    for (ap, bp) in t.a.chunks_exact(MR_PORTABLE).zip(t.b) {
        for (acc_row, &av) in acc.iter_mut().zip(ap) {
            for (s, &bv) in acc_row.iter_mut().zip(&bp.0) {
                *s = av.mul_add(bv, *s);
            }
        }
    }
    let epi = LinearEpilogue {
        bias: t.bias,
        relu: t.relu,
    };
    for (i, acc_row) in acc.iter().enumerate().take(t.rows) {
        finish(
            &mut c[i * ldc..i * ldc + t.cols],
            &acc_row[..t.cols],
            epi,
            t.first,
            t.last,
        );
    }
}

/// The inner loop of the SIMD micro-kernels over `kl` packed rows: `v` vectors of weights
/// (`lanes` floats each, aligned) per row, one broadcast of `X` per tile row,
/// `acc[i][v] += a[p][i] * b[p][v]` with `a[p][i]` at `ap[i*rs + p*ps]`; `bp` advances by
/// [`NR`] per `p`.
#[cfg(target_arch = "x86_64")]
macro_rules! fma_rows {
    ($kl:expr, $ap:ident, ($rs:expr, $ps:expr), $bp:ident, $lanes:literal, $acc:ident, $v:expr,
     $load:ident, $set1:ident, $fma:ident) => {
        for _ in 0..$kl {
            let mut b = [$acc[0][0]; $v];
            for (v, bv) in b.iter_mut().enumerate() {
                *bv = $load($bp.add(v * $lanes));
            }
            for (i, acc_row) in $acc.iter_mut().enumerate() {
                let av = $set1(*$ap.add(i * $rs));
                for (s, &bv) in acc_row.iter_mut().zip(&b) {
                    *s = $fma(av, bv, *s);
                }
            }
            $ap = $ap.add($ps);
            $bp = $bp.add(NR);
        }
    };
}

/// The AVX2 micro-kernel: `R <= 6` rows by the 16 columns of half `half` of a panel, in
/// `2R` ymm accumulators; the store goes through [`finish`].
///
/// # Safety
/// The CPU must support AVX2 and FMA; `t.a` holds `kl` rows of [`MR256`], `t.b` `kl` rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2<const R: usize>(t: &Tile<'_>, half: usize, c: &mut [f32], ldc: usize) {
    use std::arch::x86_64::*;
    let kl = t.b.len();
    debug_assert!(t.a.len() >= kl * MR256 && R <= MR256);
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    let mut ap = t.a.as_ptr();
    let mut bp = t.b.as_ptr().cast::<f32>();
    // SAFETY (whole block): `kl` rows of each operand (the contract), `half < 2`.
    unsafe {
        bp = bp.add(half * 16);
        fma_rows!(
            kl,
            ap,
            (1, MR256),
            bp,
            8,
            acc,
            2,
            _mm256_load_ps,
            _mm256_set1_ps,
            _mm256_fmadd_ps
        );
    }
    let c0 = half * 16;
    let cols = 16.min(t.cols - c0);
    let epi = LinearEpilogue {
        bias: t.bias.map(|b| &b[c0..c0 + cols]),
        relu: t.relu,
    };
    for (i, acc_row) in acc.iter().enumerate() {
        let mut s = [0.0f32; 16];
        // SAFETY: `s` holds 16 floats.
        unsafe {
            _mm256_storeu_ps(s.as_mut_ptr(), acc_row[0]);
            _mm256_storeu_ps(s.as_mut_ptr().add(8), acc_row[1]);
        }
        let row = &mut c[i * ldc + c0..i * ldc + c0 + cols];
        finish(row, &s[..cols], epi, t.first, t.last);
    }
}

/// The AVX-512 micro-kernel: `R <= 12` rows by `16V` columns (`V` = 2, or 1 for a panel of
/// at most 16 columns, which halves the work of narrow layers such as `n = 10`) in `RV` zmm
/// accumulators, fused epilogue with masked stores for `t.cols < 16V`.
///
/// # Safety
/// The CPU must support AVX-512 F; `t.a` holds `R` rows of `X` in place (row `i` at
/// `t.a[i*t.lda..]`, `kl` values each), `t.b` `kl` rows, and
/// `c` is valid for rows `0..R` of `t.cols` floats at stride `ldc`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512<const R: usize, const V: usize>(t: &Tile<'_>, c: *mut f32, ldc: usize) {
    use std::arch::x86_64::*;
    let kl = t.b.len();
    debug_assert!(t.a.len() >= (R - 1) * t.lda + kl && R <= MR512 && t.cols <= 16 * V && V <= 2);
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    let mut ap = t.a.as_ptr();
    let mut bp = t.b.as_ptr().cast::<f32>();
    // SAFETY (whole block): `kl` rows of each operand and `R` rows of `c` (the contract);
    // packed rows are 64-byte aligned.
    unsafe {
        fma_rows!(
            kl,
            ap,
            (t.lda, 1),
            bp,
            16,
            acc,
            V,
            _mm512_load_ps,
            _mm512_set1_ps,
            _mm512_fmadd_ps
        );
        let store = Store512::new(t.cols, t.bias, t.relu, t.first, t.last);
        for (i, acc_row) in acc.iter().enumerate() {
            let hi = acc_row.get(1).copied().unwrap_or(_mm512_setzero_ps());
            store.row(c.add(i * ldc), acc_row[0], hi);
        }
    }
}

/// The AVX-512 epilogue of one tile: column masks, the bias, which steps apply.
#[cfg(target_arch = "x86_64")]
struct Store512 {
    m0: u16,
    m1: u16,
    bias: Option<[std::arch::x86_64::__m512; 2]>,
    relu: bool,
    first: bool,
    last: bool,
}

#[cfg(target_arch = "x86_64")]
impl Store512 {
    /// The epilogue of a tile of `cols <= 32` columns whose bias (if any) is `bias[..cols]`.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F.
    #[target_feature(enable = "avx512f")]
    unsafe fn new(cols: usize, bias: Option<&[f32]>, relu: bool, first: bool, last: bool) -> Self {
        use std::arch::x86_64::*;
        let mask = |n: usize| -> u16 { if n >= 16 { u16::MAX } else { (1u16 << n) - 1 } };
        let (m0, m1) = (mask(cols), mask(cols.saturating_sub(16)));
        let bias = bias.filter(|_| last).map(|b| {
            // SAFETY: the masks cover `b`'s `cols` floats only; masked lanes are not read.
            unsafe {
                [
                    _mm512_maskz_loadu_ps(m0, b.as_ptr()),
                    _mm512_maskz_loadu_ps(m1, b.as_ptr().wrapping_add(16)),
                ]
            }
        });
        Self {
            m0,
            m1,
            bias,
            relu,
            first,
            last,
        }
    }

    /// Stores one row `act(prev + [v0, v1] + b)` at `c`.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F; `c` is valid for the tile's `cols` floats.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn row(
        &self,
        c: *mut f32,
        mut v0: std::arch::x86_64::__m512,
        mut v1: std::arch::x86_64::__m512,
    ) {
        use std::arch::x86_64::*;
        // SAFETY: masked lanes are neither read nor written (the contract covers the rest).
        unsafe {
            let c1 = c.wrapping_add(16);
            if !self.first {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(self.m0, c));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(self.m1, c1));
            }
            if self.last {
                if let Some([b0, b1]) = self.bias {
                    v0 = _mm512_add_ps(v0, b0);
                    v1 = _mm512_add_ps(v1, b1);
                }
                if self.relu {
                    let z = _mm512_setzero_ps();
                    v0 = _mm512_mask_mov_ps(v0, _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v0, z), z);
                    v1 = _mm512_mask_mov_ps(v1, _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v1, z), z);
                }
            }
            _mm512_mask_storeu_ps(c, self.m0, v0);
            _mm512_mask_storeu_ps(c1, self.m1, v1);
        }
    }
}

/// `m = 1` on AVX-512: `y = act(x W^T + b)` reading `x` in place, panel by panel, with four
/// phases of `p` in separate accumulators (8 zmm) so that FMA latency does not bound it.
/// `y` holds the outputs of the panels from `j0` on (all of them when `j0 = 0`).
///
/// # Safety
/// The CPU must support AVX-512 F; `x.len() == w.k`, `j0*NR + y.len() <= w.n` and `y` ends at
/// a panel boundary or at `n`, bias `w.n` long.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gemv_avx512(
    x: &[f32],
    w: &PackedLinear,
    epi: LinearEpilogue<'_>,
    y: &mut [f32],
    j0: usize,
) {
    use std::arch::x86_64::*;
    let (n, k) = (w.n, w.k);
    debug_assert!(x.len() == k && j0 * NR + y.len() <= n);
    let k4 = k - k % 4;
    for j in j0..j0 + y.len().div_ceil(NR) {
        let cols = NR.min(n - j * NR);
        let b = w.panel(j, 0, k).as_ptr().cast::<f32>();
        let xp = x.as_ptr();
        // SAFETY (whole block): `p < k` rows of the panel and of `x`; the store covers `cols`
        // floats of `y` from `j*NR`.
        unsafe {
            let z = _mm512_setzero_ps();
            let mut acc = [[z; 2]; 4];
            let mut p = 0;
            while p < k4 {
                // May point past the panel (into the next one, or past the weights): a
                // prefetch never faults.
                let ahead = b.wrapping_add((p + GEMV_PREFETCH_ROWS) * NR).cast::<i8>();
                for line in 0..4 * NR / 16 {
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * line));
                }
                for (ph, acc_ph) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_ps(*xp.add(p + ph));
                    let row = b.add((p + ph) * NR);
                    acc_ph[0] = _mm512_fmadd_ps(av, _mm512_load_ps(row), acc_ph[0]);
                    acc_ph[1] = _mm512_fmadd_ps(av, _mm512_load_ps(row.add(16)), acc_ph[1]);
                }
                p += 4;
            }
            while p < k {
                let av = _mm512_set1_ps(*xp.add(p));
                let row = b.add(p * NR);
                acc[0][0] = _mm512_fmadd_ps(av, _mm512_load_ps(row), acc[0][0]);
                acc[0][1] = _mm512_fmadd_ps(av, _mm512_load_ps(row.add(16)), acc[0][1]);
                p += 1;
            }
            let sum = |h: usize| {
                _mm512_add_ps(
                    _mm512_add_ps(acc[0][h], acc[1][h]),
                    _mm512_add_ps(acc[2][h], acc[3][h]),
                )
            };
            let bias = epi.bias.map(|bb| &bb[j * NR..j * NR + cols]);
            let store = Store512::new(cols, bias, epi.relu, true, true);
            store.row(y.as_mut_ptr().add((j - j0) * NR), sum(0), sum(1));
        }
    }
}

#[cfg(test)]
mod tests;
