//! The direct path of sparse conv (horizontal stride 1): each nonzero scales shifted rows of
//! its input plane into a tile of output rows held in registers; no im2col matrix.
//!
//! For output channel `o` and nonzero `w = W[o, (c, ki, kj)]`, output `(oy, ox)` gains
//! `w * xpad[c, oy*sh + ki*dh, ox + kj*dw]`, where `xpad` is the input group padded on all
//! four sides (`[Cg, Hp, Wp]`). With the nonzero's offset `off = (c*Hp + ki*dh)*Wp + kj*dw`,
//! that is `xpad[off + oy*sh*Wp + ox]`: for a fixed `oy`, `OW` contiguous floats. A tile of
//! up to 8 output rows by 8 columns (one AVX2 vector per row) is accumulated over the row's
//! nonzeros in column order, then stored.

use std::ops::Range;

use super::Geo;
use crate::sparse::Simd;
use crate::sparse::csr::Csr;
use crate::sparse::partition::run_split;
use crate::sparse::scratch::with_scratch;

/// Output channels of group `g` of image `img` into `yg` (`[Og, OH*OW]`); `offsets[k]` is
/// nonzero `k`'s offset into the padded group input; rows split into `parts` pieces.
#[allow(clippy::too_many_arguments)]
pub(super) fn group(
    geo: &Geo,
    weight: &Csr,
    offsets: &[u32],
    x: &[f32],
    img: usize,
    g: usize,
    yg: &mut [f32],
    simd: Simd,
    parts: usize,
) {
    let xg = geo.group_input(x, img, g);
    let rows = g * geo.og..(g + 1) * geo.og;
    let plane = geo.oh * geo.ow;
    let run = |xpad: &[f32], yg: &mut [f32]| {
        run_split(weight.row_ptr(), rows.clone(), parts, yg, plane, |r, o| {
            product(geo, weight, offsets, r, xpad, o, simd)
        });
    };
    if geo.padded() {
        with_scratch(geo.cg * geo.hp * geo.wp, |xpad| {
            pad(geo, xg, xpad);
            run(xpad, yg);
        });
    } else {
        run(xg, yg);
    }
}

/// `xpad [Cg, Hp, Wp]` = `xg [Cg, H, W]` with zero borders.
fn pad(geo: &Geo, xg: &[f32], xpad: &mut [f32]) {
    xpad.fill(0.0);
    for (src, dst) in xg
        .chunks_exact(geo.h * geo.w)
        .zip(xpad.chunks_exact_mut(geo.hp * geo.wp))
    {
        for (i, line) in src.chunks_exact(geo.w).enumerate() {
            let start = (geo.pt + i) * geo.wp + geo.pl;
            dst[start..start + geo.w].copy_from_slice(line);
        }
    }
}

/// Output channels `rows` into `out` (`[rows.len(), OH*OW]`).
///
/// Preconditions: `xpad.len() == Cg * Hp * Wp`; `offsets` parallel to the weight's values
/// with every `offsets[k] = (c*Hp + ki*dh)*Wp + kj*dw` for the nonzero's `(c, ki, kj)`;
/// `OH, OW` the output size of this geometry with horizontal stride 1.
fn product(
    geo: &Geo,
    weight: &Csr,
    offsets: &[u32],
    rows: Range<usize>,
    xpad: &[f32],
    out: &mut [f32],
    simd: Simd,
) {
    let t = Tiles {
        oh: geo.oh,
        ow: geo.ow,
        row_step: geo.sh * geo.wp,
    };
    match simd {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Simd::Avx2 is only produced by simd_for after checking the CPU.
        Simd::Avx2 => unsafe { rows_avx2(&t, weight, offsets, rows, xpad, out) },
        _ => rows_generic::<false>(&t, weight, offsets, rows, xpad, out),
    }
}

/// Output size and the input distance between consecutive output rows (`sh * Wp`).
struct Tiles {
    oh: usize,
    ow: usize,
    row_step: usize,
}

/// [`rows_generic`] compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA; the preconditions of [`product`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_avx2(
    t: &Tiles,
    weight: &Csr,
    offsets: &[u32],
    rows: Range<usize>,
    xpad: &[f32],
    out: &mut [f32],
) {
    rows_generic::<true>(t, weight, offsets, rows, xpad, out)
}

/// Tiles of 8 rows x 8 columns, then single rows, then single columns.
#[inline(always)]
fn rows_generic<const FMA: bool>(
    t: &Tiles,
    weight: &Csr,
    offsets: &[u32],
    rows: Range<usize>,
    xpad: &[f32],
    out: &mut [f32],
) {
    let row_ptr = weight.row_ptr();
    let plane = t.oh * t.ow;
    for (r, yo) in rows.zip(out.chunks_exact_mut(plane)) {
        let (s, e) = (row_ptr[r] as usize, row_ptr[r + 1] as usize);
        let (vals, offs) = (&weight.values()[s..e], &offsets[s..e]);
        let mut oy = 0;
        while oy < t.oh {
            let tall = oy + 8 <= t.oh;
            let mut ox = 0;
            while ox + 8 <= t.ow {
                if tall {
                    tile::<8, 8, FMA>(t, vals, offs, xpad, oy, ox, yo);
                } else {
                    tile::<1, 8, FMA>(t, vals, offs, xpad, oy, ox, yo);
                }
                ox += 8;
            }
            while ox < t.ow {
                if tall {
                    tile::<8, 1, FMA>(t, vals, offs, xpad, oy, ox, yo);
                } else {
                    tile::<1, 1, FMA>(t, vals, offs, xpad, oy, ox, yo);
                }
                ox += 1;
            }
            oy += if tall { 8 } else { 1 };
        }
    }
}

/// Outputs `oy..oy+R` x `ox..ox+CW` of one channel (`yo`, `[OH, OW]`).
#[inline(always)]
fn tile<const R: usize, const CW: usize, const FMA: bool>(
    t: &Tiles,
    vals: &[f32],
    offs: &[u32],
    xpad: &[f32],
    oy: usize,
    ox: usize,
    yo: &mut [f32],
) {
    let mut acc = [[0.0f32; CW]; R];
    let origin = oy * t.row_step + ox;
    for (&v, &off) in vals.iter().zip(offs) {
        let base = off as usize + origin;
        for (i, a) in acc.iter_mut().enumerate() {
            let start = base + i * t.row_step;
            // SAFETY: with off = (c*Hp + ki*dh)*Wp + kj*dw, the largest index read is
            // (c*Hp + (OH-1)*sh + ki*dh)*Wp + (OW-1) + kj*dw; the output-size formula gives
            // (OH-1)*sh + ki*dh <= Hp-1 and (OW-1) + kj*dw <= Wp-1 (stride 1), so it is below
            // Cg*Hp*Wp == xpad.len() (preconditions of `product`; oy+R <= OH, ox+CW <= OW).
            let src = unsafe { xpad.get_unchecked(start..start + CW) };
            for j in 0..CW {
                a[j] = if FMA {
                    v.mul_add(src[j], a[j])
                } else {
                    a[j] + v * src[j]
                };
            }
        }
    }
    for (i, a) in acc.iter().enumerate() {
        let start = (oy + i) * t.ow + ox;
        yo[start..start + CW].copy_from_slice(a);
    }
}
