//! The im2col path of sparse conv (any stride): one image's group as a `[Cg*kh*kw, OH*OW]`
//! column matrix (tensor-core's `im2col`, zeros in the padding), multiplied by the group's
//! sparse rows through the spmm core.

use tensor_core::TensorError;
use tensor_core::conv::im2col;

use super::Geo;
use crate::sparse::Simd;
use crate::sparse::csr::{ColIndex, ColIndices, Csr};
use crate::sparse::dense_rhs::{CsrRef, csr_times_dense};
use crate::sparse::partition::run_split;
use crate::sparse::scratch::with_scratch;

/// Output channels of group `g` of image `img` into `yg` (`[Og, OH*OW]`), the group's rows
/// split into `parts` pieces.
///
/// Errors: what tensor-core's `im2col` finds wrong with the call (nothing, for a geometry
/// built from this input: kept as an error rather than assumed).
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
) -> Result<(), TensorError> {
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
) -> Result<(), TensorError> {
    let w = CsrRef {
        row_ptr: weight.row_ptr(),
        col_idx: ci,
        values: weight.values(),
    };
    let plane = geo.oh * geo.ow;
    let patch = geo.cg * geo.kh * geo.kw;
    with_scratch(patch * plane, |col| {
        im2col(&geo.conv, x, img..img + 1, g, 0.0, col)?;
        let col = &*col;
        let rows = g * geo.og..(g + 1) * geo.og;
        run_split(weight.row_ptr(), rows, parts, yg, plane, |r, o| {
            csr_times_dense(w, r, col, plane, o, simd)
        });
        Ok(())
    })
}
