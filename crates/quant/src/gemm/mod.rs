//! The integer GEMM of quantized layers: `C[m, n] = A[m, k] W[n, k]^T`, reduced-range u8
//! activations (`0..=127`, [`QuantType::U7`](crate::QuantType::U7)) times i8 weights, exact i32
//! sums.
//!
//! Structure (Goto and van de Geijn's, as in FBGEMM and oneDNN): the weights are packed once
//! into 16-column panels ([`PackedWeights`]); a register-blocked microkernel computes a
//! `4 x 16` tile (AVX-512 VNNI: `8 x 32`, two panels, [`ZMM_MR`]) over the whole depth (one panel of `16 * k` bytes stays in L1 while it meets
//! every row of a block); rows are blocked by [`MC`] so a block of activations stays in L2
//! while it meets every panel; blocks x panel ranges are spread over rayon's threads. The
//! depth is not blocked: the widest layer of the zoo (`k = 3136`) keeps a panel at 49 KiB,
//! within L2.
//!
//! Paths ([`Int8Path`], chosen at run time; [`gemm_u7i8_with`] runs a given one):
//! - `portable`: i32 multiply-adds, the reference;
//! - `avx2`: `vpmaddubsw` (u8 x i8 pairs into i16, saturating) + `vpmaddwd` by ones. With
//!   activations below 128 the i16 sums cannot saturate, so the path is exact; this is why
//!   the activations of slimnet's quantized layers are 7-bit (FBGEMM's `reduce_range`).
//!   With narrow weights (magnitude at most 64: `--weight-bits 7`; at most 32: 6 bits and
//!   fewer) the i16 results of two (four) depth groups are added before one `vpmaddwd`
//!   ([`summed_groups`]), still exactly: 3 (5) multiply-unit instructions per 2 (4) groups
//!   instead of 4 (8);
//! - `avx-vnni`, `avx512-vnni`: `vpdpbusd`, four u8 x i8 products into each i32 lane.
//!
//! All paths compute the same exact integers ([`gemm_reference`] is the naive triple loop
//! they are tested against). An activation above 127 is refused on every path, so a result
//! never depends on the CPU.

mod kernels;
mod pack;
mod requantize;

pub use kernels::{MR, Segments, ZMM_MR, ZMM_PANELS};
pub use pack::{KG, NR, PackedWeights, padded_depth};
pub use requantize::Requant;

use rayon::prelude::*;
use tensor_core::dispatch::{Int8Path, KernelPath};

use crate::error::{QuantError, Result};
use kernels::Tile;

/// Largest activation code the kernels take (7-bit, reduced range).
pub const MAX_ACTIVATION: u8 = 127;

/// Deepest product whose sums always fit in i32: `|a w| <= 127 * 128` per term.
pub const MAX_DEPTH: usize = (i32::MAX / (127 * 128)) as usize;

/// Rows per cache block (a multiple of [`MR`]): 64 rows of the deepest zoo layer are 200 KiB
/// of activations, within Zen 3's 512 KiB L2.
pub const MC: usize = 64;

/// Products below this many multiply-adds run on the calling thread: a fork/join costs a few
/// microseconds, more than the second core saves on a small layer.
pub const PAR_MIN_MACS: usize = 1 << 20;

/// `C = A W^T` on the selected [`Int8Path`] (see [`gemm_u7i8_with`]).
pub fn gemm_u7i8(a: &[u8], lda: usize, m: usize, w: &PackedWeights, c: &mut [i32]) -> Result<()> {
    gemm_u7i8_with(Int8Path::selected(), a, lda, m, w, c)
}

/// `C[m, n] = A W^T` on `path`: `a` holds `m` rows of `lda` bytes, `lda >= padded_depth(k)`
/// (bytes past `k` in a row are read and multiplied by zero weights; the last row needs only
/// `padded_depth(k)` bytes); `c` is row-major `m x n`.
///
/// Errors: a path this CPU lacks, slice lengths that disagree, `k > MAX_DEPTH`, or an
/// activation above [`MAX_ACTIVATION`] (named with its row and column).
pub fn gemm_u7i8_with(
    path: Int8Path,
    a: &[u8],
    lda: usize,
    m: usize,
    w: &PackedWeights,
    c: &mut [i32],
) -> Result<()> {
    const OP: &str = "gemm_u7i8";
    check_c(OP, m, w.n(), c)?;
    check_args(OP, path, a, lda, m, w)?;
    if m == 0 || w.n() == 0 {
        return Ok(());
    }
    check_reduced_range(OP, a, lda, m, w.k())?;
    run(
        path,
        a,
        lda,
        m,
        w,
        Segments::flat(w.groups()),
        Dest::Sums(c.as_mut_ptr()),
        true,
    );
    Ok(())
}

/// [`gemm_u7i8_with`] on the calling thread, for a caller that already holds the activations
/// to the reduced range (a quantized layer's input codes are checked when they are read) and
/// runs several products in parallel itself (the bands of a convolution).
///
/// Errors: as [`gemm_u7i8_with`], except that activations above [`MAX_ACTIVATION`] are not
/// looked for (they give path-dependent sums, never unsafety).
pub(crate) fn gemm_u7i8_serial(
    path: Int8Path,
    a: &[u8],
    lda: usize,
    m: usize,
    w: &PackedWeights,
    c: &mut [i32],
) -> Result<()> {
    check_c("gemm_u7i8", m, w.n(), c)?;
    check_args("gemm_u7i8", path, a, lda, m, w)?;
    if m > 0 && w.n() > 0 {
        let dest = Dest::Sums(c.as_mut_ptr());
        run(path, a, lda, m, w, Segments::flat(w.groups()), dest, false);
    }
    Ok(())
}

/// `C = A W^T` on the calling thread where row `i`'s depth groups lie in `seg`'s segments from
/// byte `i * lda` of `a` (rows may overlap): a convolution's patches read in place from a
/// channels-last image, one segment per kernel row, the weights packed with each kernel row
/// padded to `seg.groups` groups. `lda` may be below the depth. Activations are not checked
/// (as [`gemm_u7i8_serial`]).
///
/// Errors: a path this CPU lacks, `seg` whose groups disagree with the weights', a depth
/// above [`MAX_DEPTH`], or slices shorter than the shapes need
/// (`(m - 1) * lda + seg.span()` bytes of `a`).
pub fn gemm_u7i8_segmented(
    path: Int8Path,
    a: &[u8],
    lda: usize,
    m: usize,
    w: &PackedWeights,
    seg: Segments,
    c: &mut [i32],
) -> Result<()> {
    const OP: &str = "gemm_u7i8_segmented";
    check_c(OP, m, w.n(), c)?;
    run_segmented(
        OP,
        path,
        a,
        lda,
        m,
        w,
        seg,
        Dest::Sums(c.as_mut_ptr()),
        false,
    )
}

/// `C = A W^T` requantized into u8 codes ([`Requant`], a quantized layer's epilogue): row
/// `i`'s codes at `out[i * ldo .. i * ldo + n]`, `a` as [`gemm_u7i8_with`] reads it (and
/// checked the same way). The AVX-512 VNNI path requantizes each tile in registers, so the
/// i32 sums never reach memory; the others requantize each tile row from the stack. Large
/// products run on rayon's threads, as [`gemm_u7i8_with`].
///
/// Errors: as [`gemm_u7i8_with`]; a requantization that is not `n` channels or whose clamp
/// leaves `0..=255`; `ldo < n`, or `out` shorter than `(m - 1) * ldo + n`.
#[allow(clippy::too_many_arguments)]
pub fn gemm_u7i8_requantized(
    path: Int8Path,
    a: &[u8],
    lda: usize,
    m: usize,
    w: &PackedWeights,
    requant: &Requant,
    out: &mut [u8],
    ldo: usize,
) -> Result<()> {
    const OP: &str = "gemm_u7i8_requantized";
    if m > 0 && w.n() > 0 {
        check_args(OP, path, a, lda, m, w)?;
        check_reduced_range(OP, a, lda, m, w.k())?;
    }
    let seg = Segments::flat(w.groups());
    gemm_u7i8_requantized_segmented(path, a, lda, m, w, seg, requant, out, ldo, true)
}

/// [`gemm_u7i8_requantized`] with rows read as [`gemm_u7i8_segmented`] reads them (a
/// convolution's band), on rayon's threads when `parallel` and large; activations are not
/// checked.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_u7i8_requantized_segmented(
    path: Int8Path,
    a: &[u8],
    lda: usize,
    m: usize,
    w: &PackedWeights,
    seg: Segments,
    requant: &Requant,
    out: &mut [u8],
    ldo: usize,
    parallel: bool,
) -> Result<()> {
    const OP: &str = "gemm_u7i8_requantized";
    check_codes(OP, m, w, requant, out, ldo)?;
    let dest = Dest::Codes {
        out: out.as_mut_ptr(),
        ldo,
        requant,
    };
    run_segmented(OP, path, a, lda, m, w, seg, dest, parallel)
}

/// A segmented product into `dest` (whose size the caller checked): nothing for an empty
/// product, else [`check_segmented`] and the driver.
#[allow(clippy::too_many_arguments)]
fn run_segmented(
    op: &'static str,
    path: Int8Path,
    a: &[u8],
    lda: usize,
    m: usize,
    w: &PackedWeights,
    seg: Segments,
    dest: Dest,
    parallel: bool,
) -> Result<()> {
    if m == 0 || w.n() == 0 {
        return Ok(());
    }
    check_segmented(op, path, a, lda, m, w, seg)?;
    run(path, a, lda, m, w, seg, dest, parallel);
    Ok(())
}

/// A requantizing product's output checks: `n` channels, a u8 clamp, room for `m` rows of
/// stride `ldo`.
fn check_codes(
    op: &'static str,
    m: usize,
    w: &PackedWeights,
    requant: &Requant,
    out: &[u8],
    ldo: usize,
) -> Result<()> {
    let n = w.n();
    if requant.offsets.len() != n || requant.multipliers.len() != n {
        return Err(QuantError::LengthMismatch {
            op,
            what: "requantization offsets and multipliers",
            got: requant.offsets.len().min(requant.multipliers.len()),
            expected: n,
        });
    }
    if !(0..=255).contains(&requant.lo) || !(requant.lo..=255).contains(&requant.hi) {
        return Err(QuantError::InvalidArgument {
            op,
            reason: format!("clamp {}..={} is not a u8 range", requant.lo, requant.hi),
        });
    }
    let need = if m == 0 || n == 0 {
        0
    } else {
        (m - 1) * ldo + n
    };
    if ldo < n || out.len() < need {
        return Err(QuantError::LengthMismatch {
            op,
            what: "output codes",
            got: out.len(),
            expected: need,
        });
    }
    Ok(())
}

/// The checks of a segmented product's inputs (`m, n > 0`): the path runs here, the segments
/// cover the weights' groups, the depth is bounded, and `a` holds every row's segments.
fn check_segmented(
    op: &'static str,
    path: Int8Path,
    a: &[u8],
    lda: usize,
    m: usize,
    w: &PackedWeights,
    seg: Segments,
) -> Result<()> {
    path.require(op)?;
    if seg.total_groups() != w.groups() {
        return Err(QuantError::InvalidArgument {
            op,
            reason: format!(
                "{} segments of {} groups do not cover the weights' {} groups",
                seg.count,
                seg.groups,
                w.groups()
            ),
        });
    }
    check_depth(op, w.k())?;
    let need = (m - 1) * lda + seg.span();
    if a.len() < need {
        return Err(QuantError::LengthMismatch {
            op,
            what: "A",
            got: a.len(),
            expected: need,
        });
    }
    Ok(())
}

/// The depth bound every entry checks.
fn check_depth(op: &'static str, k: usize) -> Result<()> {
    if k > MAX_DEPTH {
        return Err(QuantError::InvalidArgument {
            op,
            reason: format!("depth {k} exceeds {MAX_DEPTH}, the deepest whose sums fit in i32"),
        });
    }
    Ok(())
}

/// `C` holds `m x n` sums.
fn check_c(op: &'static str, m: usize, n: usize, c: &[i32]) -> Result<()> {
    if c.len() != m * n {
        return Err(QuantError::LengthMismatch {
            op,
            what: "C",
            got: c.len(),
            expected: m * n,
        });
    }
    Ok(())
}

/// The checks every entry on plain rows makes: the path runs here, the depth is bounded, and
/// `a` holds what the shapes say.
fn check_args(
    op: &'static str,
    path: Int8Path,
    a: &[u8],
    lda: usize,
    m: usize,
    w: &PackedWeights,
) -> Result<()> {
    path.require(op)?;
    let (n, k) = (w.n(), w.k());
    let kp = padded_depth(k);
    check_depth(op, k)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    if lda < kp {
        return Err(QuantError::InvalidArgument {
            op,
            reason: format!("row stride {lda} is below the padded depth {kp} (k = {k})"),
        });
    }
    let need = (m - 1) * lda + kp;
    if a.len() < need {
        return Err(QuantError::LengthMismatch {
            op,
            what: "A",
            got: a.len(),
            expected: need,
        });
    }
    Ok(())
}

/// `C = A W^T` for `a` holding exactly `m` rows of `k` bytes (copied to padded rows when `k`
/// is not a multiple of 4).
pub fn gemm_u7i8_dense(
    path: Int8Path,
    a: &[u8],
    m: usize,
    w: &PackedWeights,
    c: &mut [i32],
) -> Result<()> {
    let k = w.k();
    if a.len() != m * k {
        return Err(QuantError::LengthMismatch {
            op: "gemm_u7i8_dense",
            what: "A",
            got: a.len(),
            expected: m * k,
        });
    }
    let kp = padded_depth(k);
    if kp == k {
        return gemm_u7i8_with(path, a, k, m, w, c);
    }
    let mut padded = vec![0u8; m * kp];
    for (dst, src) in padded.chunks_exact_mut(kp).zip(a.chunks_exact(k.max(1))) {
        dst[..k].copy_from_slice(src);
    }
    gemm_u7i8_with(path, &padded, kp, m, w, c)
}

/// The naive triple loop every path must equal: `C[i][j] = sum_k A[i][k] W[j][k]`, with `a`
/// `m x k` and `w` `n x k`, both row-major.
pub fn gemm_reference(a: &[u8], m: usize, k: usize, w: &[i8], n: usize) -> Vec<i32> {
    let mut c = vec![0i32; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k)
                .map(|t| i32::from(a[i * k + t]) * i32::from(w[j * k + t]))
                .sum();
        }
    }
    c
}

/// Refuses any activation above 127 in the first `k` bytes of each row.
///
/// First one OR over every byte the rows span (a vectorised pass: bytes between rows count
/// too, so this can only over-report); rows are looked at one by one only when it finds a
/// byte above 127. Row by row, a depth of 9 cost as much as the product itself.
fn check_reduced_range(op: &'static str, a: &[u8], lda: usize, m: usize, k: usize) -> Result<()> {
    if m == 0 {
        return Ok(());
    }
    let span = &a[..(m - 1) * lda + k];
    if span.iter().fold(0u8, |acc, &x| acc | x) <= MAX_ACTIVATION {
        return Ok(());
    }
    for r in 0..m {
        let row = &a[r * lda..r * lda + k];
        if row.iter().fold(0u8, |acc, &x| acc | x) > MAX_ACTIVATION {
            // Only on the error path: find the offender.
            let (col, &v) = row
                .iter()
                .enumerate()
                .find(|(_, x)| **x > MAX_ACTIVATION)
                .unwrap_or((0, &0));
            return Err(QuantError::InvalidArgument {
                op,
                reason: format!(
                    "activation A[{r}][{col}] = {v} exceeds {MAX_ACTIVATION}: the int8 GEMM takes \
                     reduced-range (7-bit) activations"
                ),
            });
        }
    }
    Ok(())
}

/// Where the driver's tasks put their tiles: raw sums into `C` (`m x n`, row-major), or
/// requantized codes, row `i` at `out + i * ldo`.
#[derive(Clone, Copy)]
enum Dest<'a> {
    Sums(*mut i32),
    Codes {
        out: *mut u8,
        ldo: usize,
        requant: &'a Requant<'a>,
    },
}
// SAFETY: tasks write disjoint (row range x column range) regions of the destination, and
// `run` returns only after every task finished.
unsafe impl Send for Dest<'_> {}
// SAFETY: as above.
unsafe impl Sync for Dest<'_> {}

/// The blocked, parallel driver (arguments already checked).
#[allow(clippy::too_many_arguments)]
fn run(
    path: Int8Path,
    a: &[u8],
    lda: usize,
    m: usize,
    w: &PackedWeights,
    seg: Segments,
    dest: Dest,
    parallel: bool,
) {
    let n_panels = w.n_panels();
    let row_blocks = m.div_ceil(MC);
    let macs = m * w.n() * w.k();
    let threads = rayon::current_num_threads();
    let serial = !parallel || macs < PAR_MIN_MACS || threads <= 1;
    // Split panels only when there are too few row blocks to keep every thread busy.
    let panel_splits = if serial {
        1
    } else {
        (2 * threads).div_ceil(row_blocks).clamp(1, n_panels)
    };
    let panels_per_task = n_panels.div_ceil(panel_splits);
    let tasks = row_blocks * panel_splits;
    let task = |t: usize| {
        let (rb, ps) = (t / panel_splits, t % panel_splits);
        let rows = rb * MC..((rb + 1) * MC).min(m);
        let panels = ps * panels_per_task..((ps + 1) * panels_per_task).min(n_panels);
        block(path, a, lda, rows, panels, w, seg, dest);
    };
    if serial {
        (0..tasks).for_each(task);
    } else {
        (0..tasks).into_par_iter().for_each(task);
    }
}

/// One task: rows `rows` x panels `panels` of the destination.
#[allow(clippy::too_many_arguments)]
fn block(
    path: Int8Path,
    a: &[u8],
    lda: usize,
    rows: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
    w: &PackedWeights,
    seg: Segments,
    dest: Dest,
) {
    let n = w.n();
    #[cfg(target_arch = "x86_64")]
    if path == Int8Path::Avx512Vnni {
        // Tiles of up to ZMM_MR rows x ZMM_PANELS panels, stored straight into the
        // destination under a column mask.
        let mut p = panels.start;
        while p < panels.end {
            let np = ZMM_PANELS.min(panels.end - p);
            let ptrs = std::array::from_fn(|i| w.panel(p + i.min(np - 1)).as_ptr());
            let masks = std::array::from_fn(|i| {
                let cols = n.saturating_sub((p + i) * NR).min(NR);
                if i < np {
                    ((1u32 << cols) - 1) as u16
                } else {
                    0
                }
            });
            let mut r0 = rows.start;
            while r0 < rows.end {
                let mr = ZMM_MR.min(rows.end - r0);
                let row_ptrs: [*const u8; ZMM_MR] =
                    std::array::from_fn(|r| a.as_ptr().wrapping_add((r0 + r.min(mr - 1)) * lda));
                debug_assert!((r0 + mr - 1) * lda + seg.span() <= a.len());
                let (c, codes) = match dest {
                    Dest::Codes { out, ldo, requant } => (
                        std::ptr::null_mut(),
                        Some(kernels::x86::ZmmCodes {
                            out: out.wrapping_add(r0 * ldo + p * NR),
                            ldo,
                            offsets: requant.offsets.as_ptr().wrapping_add(p * NR),
                            multipliers: requant.multipliers.as_ptr().wrapping_add(p * NR),
                            zp: requant.zp,
                            lo: requant.lo,
                            hi: requant.hi,
                        }),
                    ),
                    Dest::Sums(c) => (c.wrapping_add(r0 * n + p * NR), None),
                };
                let dst = kernels::x86::ZmmOut {
                    c,
                    ldc: n,
                    masks,
                    codes,
                };
                // SAFETY: the caller checked the path's features (`require`), that rows
                // r0 .. r0 + mr are readable for `seg.span()` bytes and the panels for all
                // their groups; the masked columns of rows r0 .. r0 + mr lie in this task's
                // region of the destination (and, for codes, in the requantization's
                // offsets and multipliers, `n` long).
                unsafe { zmm_tile(mr, np, &row_ptrs, ptrs, seg, dst) };
                r0 += mr;
            }
            p += np;
        }
        return;
    }
    let sum = summed_groups(w.max_abs());
    let mut tile: Tile = [[0; NR]; MR];
    for p in panels {
        let panel = w.panel(p);
        let cols = NR.min(n - p * NR);
        // This panel's columns of a requantization.
        let panel_requant = match dest {
            Dest::Codes { requant, .. } => Some(Requant {
                offsets: &requant.offsets[p * NR..p * NR + cols],
                multipliers: &requant.multipliers[p * NR..p * NR + cols],
                ..*requant
            }),
            Dest::Sums(_) => None,
        };
        let mut r0 = rows.start;
        while r0 < rows.end {
            let mr = MR.min(rows.end - r0);
            microkernel(path, a, lda, r0, mr, panel, seg, sum, &mut tile);
            for (r, lanes) in tile.iter().enumerate().take(mr) {
                match dest {
                    // SAFETY: row r0 + r < m and columns p*NR .. p*NR + cols < n lie in C
                    // (length m * n), and no other task writes this (row, panel) region.
                    Dest::Sums(c) => unsafe {
                        let dst = c.add((r0 + r) * n + p * NR);
                        if cols == NR {
                            // A whole row of the tile: a fixed-size store, not a `memmove`
                            // call (15% of a quantized lenet5, whose first layer has 7 depth
                            // groups).
                            dst.cast::<[i32; NR]>().write_unaligned(*lanes);
                        } else {
                            std::ptr::copy_nonoverlapping(lanes.as_ptr(), dst, cols);
                        }
                    },
                    Dest::Codes { out, ldo, .. } => {
                        // SAFETY: codes p*NR .. p*NR + cols of row r0 + r lie in the output
                        // (checked by the entry), written by this task only.
                        let dst = unsafe {
                            std::slice::from_raw_parts_mut(out.add((r0 + r) * ldo + p * NR), cols)
                        };
                        // `panel_requant` is set for every `Codes` destination.
                        if let Some(q) = &panel_requant {
                            q.codes_u8(path, &lanes[..cols], dst);
                        }
                    }
                }
            }
            r0 += mr;
        }
    }
}

/// Dispatches one AVX-512 VNNI tile of `mr` rows and `np` panels to its instantiation.
///
/// # Safety
/// As [`kernels::x86::avx512_vnni`] with `ROWS = mr`, `PANELS = np`.
#[cfg(target_arch = "x86_64")]
unsafe fn zmm_tile(
    mr: usize,
    np: usize,
    rows: &[*const u8; ZMM_MR],
    panels: [*const i8; ZMM_PANELS],
    seg: Segments,
    out: kernels::x86::ZmmOut,
) {
    use kernels::x86::avx512_vnni as k;
    macro_rules! by_rows {
        ($p:literal) => {
            // SAFETY: forwarded from the caller.
            unsafe {
                match mr {
                    1 => k::<1, $p>(rows, panels, seg, out),
                    2 => k::<2, $p>(rows, panels, seg, out),
                    3 => k::<3, $p>(rows, panels, seg, out),
                    4 => k::<4, $p>(rows, panels, seg, out),
                    5 => k::<5, $p>(rows, panels, seg, out),
                    6 => k::<6, $p>(rows, panels, seg, out),
                    7 => k::<7, $p>(rows, panels, seg, out),
                    _ => k::<8, $p>(rows, panels, seg, out),
                }
            }
        };
    }
    if np == 1 { by_rows!(1) } else { by_rows!(2) }
}

/// One `mr x 16` tile (`mr <= MR`) on `path`.
#[allow(clippy::too_many_arguments)]
fn microkernel(
    path: Int8Path,
    a: &[u8],
    lda: usize,
    r0: usize,
    mr: usize,
    panel: &[i8],
    seg: Segments,
    sum: usize,
    tile: &mut Tile,
) {
    let span = seg.span();
    match path {
        #[cfg(target_arch = "x86_64")]
        Int8Path::Avx2 | Int8Path::AvxVnni | Int8Path::Avx512Vnni => {
            let base = a.as_ptr();
            // Rows past `mr` repeat the last valid row (read, never stored).
            let rows: [*const u8; MR] =
                std::array::from_fn(|r| base.wrapping_add((r0 + r.min(mr - 1)) * lda));
            debug_assert!(
                (r0 + mr - 1) * lda + span <= a.len()
                    && panel.len() >= seg.total_groups() * KG * NR
            );
            // SAFETY: the caller checked the path's features (`require`), that every row
            // r0 .. r0 + mr has `seg.span()` readable bytes, and the panel is
            // `seg.total_groups() * 64` bytes.
            unsafe { x86_tile(path, mr, &rows, panel.as_ptr(), seg, sum, tile) }
        }
        _ => {
            // The portable sums are exact whatever the weights: no summing to choose.
            let _ = sum;
            let rows: [&[u8]; MR] = std::array::from_fn(|r| {
                let s = (r0 + r.min(mr - 1)) * lda;
                &a[s..s + span]
            });
            kernels::portable(&rows, mr, panel, seg, tile);
        }
    }
}

/// How many depth groups the AVX2 kernel may add in i16 lanes before widening to i32, for
/// weights of magnitude at most `max_abs`: each `vpmaddubsw` lane is at most
/// `2 * 127 * max_abs`, and `sum` of them must stay within i16.
pub fn summed_groups(max_abs: u8) -> usize {
    let lane = 2 * i32::from(MAX_ACTIVATION) * i32::from(max_abs);
    match lane {
        l if 4 * l <= i32::from(i16::MAX) => 4,
        l if 2 * l <= i32::from(i16::MAX) => 2,
        _ => 1,
    }
}

/// Dispatches one tile to the x86 kernel for `path` with `mr` rows.
///
/// # Safety
/// As [`kernels::x86::avx2`], with the features of `path` present.
#[cfg(target_arch = "x86_64")]
unsafe fn x86_tile(
    path: Int8Path,
    mr: usize,
    rows: &[*const u8; MR],
    panel: *const i8,
    seg: Segments,
    sum: usize,
    tile: &mut Tile,
) {
    use kernels::x86;
    macro_rules! by_rows {
        ($f:ident $(, $s:literal)?) => {
            // SAFETY: forwarded from the caller.
            unsafe {
                match mr {
                    1 => x86::$f::<1 $(, $s)?>(rows, panel, seg, tile),
                    2 => x86::$f::<2 $(, $s)?>(rows, panel, seg, tile),
                    3 => x86::$f::<3 $(, $s)?>(rows, panel, seg, tile),
                    _ => x86::$f::<4 $(, $s)?>(rows, panel, seg, tile),
                }
            }
        };
    }
    // AVX-512 VNNI never comes here: `block` runs its own tiles.
    match (path, sum) {
        (Int8Path::AvxVnni, _) => by_rows!(avx_vnni),
        (_, 4) => by_rows!(avx2_summed, 4),
        (_, 2) => by_rows!(avx2_summed, 2),
        _ => by_rows!(avx2),
    }
}

#[cfg(test)]
mod tests;
