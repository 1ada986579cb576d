//! im2col and its adjoint col2im, generic over the element type: the receptive fields of a
//! block of images laid out as the columns of a matrix, so that a convolution is one GEMM.

use std::ops::Range;

use rayon::prelude::*;

use super::geometry::{ConvGeometry, valid_range};
use crate::error::TensorError;
use crate::shape::Shape;

/// Lays out the receptive fields of images `images` of `input`, channels of group `group`, as
/// the columns of `col`; taps that fall in the padding get `pad_value`.
///
/// `input` is the whole batch `[N, C, H, W]` (row-major) that `geo` was built for; `col` is
/// row-major `[Cg*kh*kw, nb*OH*OW]` with `nb = images.len()` and `Cg = C / groups`:
/// - row `r = (c*kh + ki)*kw + kj` is channel `c` of the group (input channel
///   `group*Cg + c`) at kernel tap `(ki, kj)`, the order of a weight row `[Cg, kh, kw]`;
/// - column `b*OH*OW + oy*OW + ox` is output position `(oy, ox)` of image
///   `images.start + b`;
/// - the entry is `input[n, group*Cg + c, oy*sh + ki*dh - pad_top, ox*sw + kj*dw - pad_left]`,
///   or `pad_value` where that coordinate lies outside the image.
///
/// So `W_g [Og, Cg*kh*kw] x col` is group `group`'s convolution of the block. The padding
/// value is the caller's: `0.0` for f32, the zero point for asymmetric u8, what the binary
/// convention calls for with packed bits.
///
/// Errors when `input` or `col` has the wrong length, `images` is not within `0..N`, or
/// `group >= groups`.
///
/// ```
/// use tensor_core::Shape;
/// use tensor_core::conv::{Conv2dParams, ConvGeometry, Padding, im2col};
///
/// // One 2x2 u8 image [[1, 2], [3, 4]], a 2x2 kernel, one column of padding on the left
/// // (filled with 9): the output is 1x2.
/// let p = Conv2dParams::new(1, 1, (2, 2)).with_padding(Padding { left: 1, ..Padding::default() });
/// let geo = ConvGeometry::new(&p, &Shape::new(&[1, 1, 2, 2])?)?;
/// let mut col = vec![0u8; geo.col_len(1).unwrap_or(0)];
/// im2col(&geo, &[1, 2, 3, 4], 0..1, 0, 9, &mut col)?;
/// // Rows: taps (0,0), (0,1), (1,0), (1,1); columns: output positions (0,0), (0,1).
/// assert_eq!(col, [9, 1, 1, 2, 9, 3, 3, 4]);
/// # Ok::<(), tensor_core::TensorError>(())
/// ```
pub fn im2col<T: Copy>(
    geo: &ConvGeometry,
    input: &[T],
    images: Range<usize>,
    group: usize,
    pad_value: T,
    col: &mut [T],
) -> Result<(), TensorError> {
    check_call(geo, "im2col", input.len(), &images, group, col.len())?;
    let row_len = images.len() * geo.out_plane();
    if row_len == 0 {
        return Ok(());
    }
    for (r, row) in col.chunks_mut(row_len).enumerate() {
        im2col_row(
            geo,
            input,
            images.start,
            images.len(),
            group,
            r,
            pad_value,
            row,
        );
    }
    Ok(())
}

/// The adjoint of [`im2col`]: adds every entry of `col` (`[Cg*kh*kw, nb*OH*OW]`, laid out as
/// there) onto the input position it was taken from, in `input_grad` (`[N, C, H, W]`, images
/// `images`, channels of group `group`); entries taken from the padding are dropped.
///
/// This is the backward step `dX += col2im(W_g^T dY_g)`. It stays f32: only training needs it,
/// and training runs in f32 even for int8 and binary layers (their straight-through
/// estimators pass f32 gradients), so there is no second element type to be generic over.
///
/// Errors as [`im2col`].
pub fn col2im_add(
    geo: &ConvGeometry,
    col: &[f32],
    images: Range<usize>,
    group: usize,
    input_grad: &mut [f32],
) -> Result<(), TensorError> {
    check_call(geo, "col2im", input_grad.len(), &images, group, col.len())?;
    let block = &mut input_grad[images.start * geo.image_len()..images.end * geo.image_len()];
    col2im_block(geo, col, images.len(), group, block, false);
    Ok(())
}

/// The checks of the public entry points, in argument order.
fn check_call(
    geo: &ConvGeometry,
    op: &'static str,
    input_len: usize,
    images: &Range<usize>,
    group: usize,
    col_len: usize,
) -> Result<(), TensorError> {
    let bad = |reason: String| TensorError::InvalidArgument { op, reason };
    let want = geo.n * geo.image_len();
    if input_len != want {
        return Err(TensorError::DataLength {
            op,
            len: input_len,
            expected: want,
            shape: Shape::new(&geo.input_dims())?,
        });
    }
    if images.start > images.end || images.end > geo.n {
        return Err(bad(format!(
            "images {images:?} outside the batch 0..{}",
            geo.n
        )));
    }
    if group >= geo.groups {
        return Err(bad(format!(
            "group {group} out of range ({} groups)",
            geo.groups
        )));
    }
    let nb = images.len();
    let want = geo.col_len(nb).ok_or_else(|| {
        bad(format!(
            "column matrix of {nb} images overflows ({} x {} per image)",
            geo.patch_len(),
            geo.out_plane()
        ))
    })?;
    if col_len != want {
        return Err(TensorError::DataLength {
            op,
            len: col_len,
            expected: want,
            shape: Shape::new(&[geo.patch_len(), nb * geo.out_plane()])?,
        });
    }
    Ok(())
}

/// The f32 kernels' im2col (no checks: the caller derived every size from `geo`): images
/// `n0..n0+nb` of `x`, zero padding, rows in parallel when `parallel`.
pub(super) fn im2col_block(
    geo: &ConvGeometry,
    x: &[f32],
    n0: usize,
    nb: usize,
    g: usize,
    col: &mut [f32],
    parallel: bool,
) {
    let row_len = nb * geo.out_plane();
    if parallel {
        col.par_chunks_mut(row_len)
            .enumerate()
            .for_each(|(r, row)| im2col_row(geo, x, n0, nb, g, r, 0.0, row));
    } else {
        col.chunks_mut(row_len)
            .enumerate()
            .for_each(|(r, row)| im2col_row(geo, x, n0, nb, g, r, 0.0, row));
    }
}

/// Row `r = (c, ki, kj)` of the column matrix: tap `(ki, kj)` of channel `c` for every output
/// position of every image of the block (`pad` where the tap falls in the padding).
#[allow(clippy::too_many_arguments)]
fn im2col_row<T: Copy>(
    geo: &ConvGeometry,
    x: &[T],
    n0: usize,
    nb: usize,
    g: usize,
    r: usize,
    pad: T,
    row: &mut [T],
) {
    let plane = geo.h * geo.w;
    let op = geo.out_plane();
    let c = r / (geo.kh * geo.kw);
    let ki = (r / geo.kw) % geo.kh;
    let kj = r % geo.kw;
    let (oh_lo, oh_hi) = valid_range(geo.oh, geo.sh, ki * geo.dh, geo.pt, geo.h);
    let (ow_lo, ow_hi) = valid_range(geo.ow, geo.sw, kj * geo.dw, geo.pl, geo.w);
    for b in 0..nb {
        let src_off = ((n0 + b) * geo.c + g * geo.cg + c) * plane;
        let src = &x[src_off..src_off + plane];
        let dst = &mut row[b * op..(b + 1) * op];
        // Fills are guarded: for byte types `fill` is a memset call, costly when repeated
        // empty on every line of a layer without padding (the u8 im2col of lenet5.conv2 took
        // twice the f32 time unguarded, about the same guarded).
        if oh_lo > 0 {
            dst[..oh_lo * geo.ow].fill(pad);
        }
        if oh_hi < geo.oh {
            dst[oh_hi * geo.ow..].fill(pad);
        }
        for oy in oh_lo..oh_hi {
            let iy = oy * geo.sh + ki * geo.dh - geo.pt;
            let line = &mut dst[oy * geo.ow..(oy + 1) * geo.ow];
            if ow_lo > 0 {
                line[..ow_lo].fill(pad);
            }
            if ow_hi < geo.ow {
                line[ow_hi..].fill(pad);
            }
            let base = iy * geo.w + kj * geo.dw;
            if ow_hi > ow_lo {
                if geo.sw == 1 {
                    let s0 = base + ow_lo - geo.pl;
                    copy_line(&mut line[ow_lo..ow_hi], &src[s0..s0 + (ow_hi - ow_lo)]);
                } else {
                    for (ox, v) in line[ow_lo..ow_hi].iter_mut().enumerate() {
                        *v = src[base + (ox + ow_lo) * geo.sw - geo.pl];
                    }
                }
            }
        }
    }
}

/// `dst.copy_from_slice(src)` (equal lengths) without a `memcpy` call: at LeNet line widths
/// (8 and 24 floats) the call's overhead was most of im2col (lenet5 training on the 2-core
/// EPYC: im2col 8.3% of an epoch, half of it in `memmove`); fixed-size chunks compile to
/// plain vector moves.
#[inline(always)]
fn copy_line<T: Copy>(dst: &mut [T], src: &[T]) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (a, b) in (&mut d).zip(&mut s) {
        copy_fixed::<T, 8>(a, b);
    }
    let (mut d, mut s) = (d.into_remainder(), s.remainder());
    for k in [4, 2, 1] {
        if s.len() >= k {
            let (dh, dt) = std::mem::take(&mut d).split_at_mut(k);
            let (sh, st) = s.split_at(k);
            match k {
                4 => copy_fixed::<T, 4>(dh, sh),
                2 => copy_fixed::<T, 2>(dh, sh),
                _ => dh[0] = sh[0],
            }
            (d, s) = (dt, st);
        }
    }
}

/// Copies `K` elements as one array move (`dst` and `src` hold exactly `K`).
#[inline(always)]
fn copy_fixed<T: Copy, const K: usize>(dst: &mut [T], src: &[T]) {
    if let (Ok(d), Ok(s)) = (<&mut [T; K]>::try_from(dst), <&[T; K]>::try_from(src)) {
        *d = *s;
    }
}

/// The f32 kernels' col2im (no checks): adds the columns of `dcol` (`[patch, nb*OH*OW]`) onto
/// the input-gradient block `dx` (`[nb, C, H, W]`), channels of group `g`; planes in parallel
/// when `parallel`.
pub(super) fn col2im_block(
    geo: &ConvGeometry,
    dcol: &[f32],
    nb: usize,
    g: usize,
    dx: &mut [f32],
    parallel: bool,
) {
    let plane = geo.h * geo.w;
    if plane == 0 {
        return;
    }
    if parallel {
        dx.par_chunks_mut(plane)
            .enumerate()
            .for_each(|(pi, dst)| col2im_plane(geo, dcol, nb, g, pi, dst));
    } else {
        dx.chunks_mut(plane)
            .enumerate()
            .for_each(|(pi, dst)| col2im_plane(geo, dcol, nb, g, pi, dst));
    }
}
/// Plane `pi = b*C + ch` of the block's input gradient (skipped unless `ch` is in group `g`).
fn col2im_plane(geo: &ConvGeometry, dcol: &[f32], nb: usize, g: usize, pi: usize, dst: &mut [f32]) {
    let op = geo.out_plane();
    let row_len = nb * op;
    let khw = geo.kh * geo.kw;
    let b = pi / geo.c;
    let ch = pi % geo.c;
    if ch / geo.cg != g {
        return;
    }
    let c = ch % geo.cg;
    for ki in 0..geo.kh {
        let (oh_lo, oh_hi) = valid_range(geo.oh, geo.sh, ki * geo.dh, geo.pt, geo.h);
        for kj in 0..geo.kw {
            let (ow_lo, ow_hi) = valid_range(geo.ow, geo.sw, kj * geo.dw, geo.pl, geo.w);
            let r = c * khw + ki * geo.kw + kj;
            let src = &dcol[r * row_len + b * op..r * row_len + (b + 1) * op];
            for oy in oh_lo..oh_hi {
                let iy = oy * geo.sh + ki * geo.dh - geo.pt;
                let base = iy * geo.w + kj * geo.dw;
                let line = &src[oy * geo.ow..(oy + 1) * geo.ow];
                if geo.sw == 1 && ow_hi > ow_lo {
                    let d0 = base + ow_lo - geo.pl;
                    let d = &mut dst[d0..d0 + (ow_hi - ow_lo)];
                    for (a, &v) in d.iter_mut().zip(&line[ow_lo..ow_hi]) {
                        *a += v;
                    }
                } else {
                    for ox in ow_lo..ow_hi {
                        dst[base + ox * geo.sw - geo.pl] += line[ox];
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::copy_line;

    #[test]
    fn copy_line_copies_every_length() {
        for n in 0..40usize {
            let src: Vec<u32> = (0..n as u32).map(|v| v * 3 + 1).collect();
            let mut dst = vec![0u32; n + 1];
            copy_line(&mut dst[..n], &src);
            assert_eq!(&dst[..n], &src[..], "length {n}");
            assert_eq!(dst[n], 0, "length {n} wrote past the end");
        }
    }
}
