//! The im2col path of sparse conv (any stride): one image's group as a `[Cg*kh*kw, OH*OW]`
//! column matrix, multiplied by the group's sparse rows through the spmm core.

use super::Geo;
use crate::sparse::Simd;
use crate::sparse::csr::{ColIndex, ColIndices, Csr};
use crate::sparse::dense_rhs::{CsrRef, csr_times_dense};
use crate::sparse::partition::run_split;
use crate::sparse::scratch::with_scratch;

/// Output channels of group `g` of image `img` into `yg` (`[Og, OH*OW]`), the group's rows
/// split into `parts` pieces.
#[allow(clippy::too_many_arguments)]
pub(super) fn group(
    geo: &Geo,
    weight: &Csr,
    x: &[f32],
    img: usize,
    g: usize,
    yg: &mut [f32],
    simd: Simd,
    parts: usize,
) {
    match weight.col_idx() {
        ColIndices::U16(ci) => group_with(geo, weight, ci, x, img, g, yg, simd, parts),
        ColIndices::U32(ci) => group_with(geo, weight, ci, x, img, g, yg, simd, parts),
    }
}

#[allow(clippy::too_many_arguments)]
fn group_with<I: ColIndex>(
    geo: &Geo,
    weight: &Csr,
    ci: &[I],
    x: &[f32],
    img: usize,
    g: usize,
    yg: &mut [f32],
    simd: Simd,
    parts: usize,
) {
    let w = CsrRef {
        row_ptr: weight.row_ptr(),
        col_idx: ci,
        values: weight.values(),
    };
    let plane = geo.oh * geo.ow;
    let patch = geo.cg * geo.kh * geo.kw;
    with_scratch(patch * plane, |col| {
        im2col(geo, geo.group_input(x, img, g), col);
        let col = &*col;
        let rows = g * geo.og..(g + 1) * geo.og;
        run_split(weight.row_ptr(), rows, parts, yg, plane, |r, o| {
            csr_times_dense(w, r, col, plane, o, simd)
        });
    });
}

/// Outputs `lo..hi` along one axis whose tap (at `offset = k * dilation` into the padded
/// input) lands inside the unpadded input of length `len`: `o*stride + offset - pad` in
/// `0..len`.
fn valid_range(
    out_len: usize,
    stride: usize,
    offset: usize,
    pad: usize,
    len: usize,
) -> (usize, usize) {
    let lo = pad.saturating_sub(offset).div_ceil(stride);
    let hi = if len + pad > offset {
        (len + pad - offset).div_ceil(stride)
    } else {
        0
    };
    let hi = hi.min(out_len);
    (lo.min(hi), hi)
}

// TODO: switch to tensor-core's im2col once it is public (it is being made public in
// parallel); this private copy handles one image and one group.
/// Fills `col` (`[Cg*kh*kw, OH*OW]`, row-major) with the receptive fields of the group
/// input `xg` (`[Cg, H, W]`), zeros where a tap falls in the padding.
fn im2col(geo: &Geo, xg: &[f32], col: &mut [f32]) {
    let plane_in = geo.h * geo.w;
    let op = geo.oh * geo.ow;
    for (r, row) in col.chunks_exact_mut(op).enumerate() {
        let c = r / (geo.kh * geo.kw);
        let ki = (r / geo.kw) % geo.kh;
        let kj = r % geo.kw;
        let src = &xg[c * plane_in..(c + 1) * plane_in];
        let (oy_lo, oy_hi) = valid_range(geo.oh, geo.sh, ki * geo.dh, geo.pt, geo.h);
        let (ox_lo, ox_hi) = valid_range(geo.ow, geo.sw, kj * geo.dw, geo.pl, geo.w);
        row[..oy_lo * geo.ow].fill(0.0);
        row[oy_hi * geo.ow..].fill(0.0);
        for oy in oy_lo..oy_hi {
            // In range by valid_range: 0 <= iy < h, and 0 <= ix < w for ox in lo..hi.
            let iy = oy * geo.sh + ki * geo.dh - geo.pt;
            let line = &mut row[oy * geo.ow..(oy + 1) * geo.ow];
            line[..ox_lo].fill(0.0);
            line[ox_hi..].fill(0.0);
            let base = iy * geo.w + kj * geo.dw;
            for (ox, v) in line[ox_lo..ox_hi].iter_mut().enumerate() {
                *v = src[base + (ox + ox_lo) * geo.sw - geo.pl];
            }
        }
    }
}
