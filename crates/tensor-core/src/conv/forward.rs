//! The forward convolution: blocked im2col + GEMM, and the per-image variant it was
//! measured against.

use rayon::prelude::*;

use super::Conv2dParams;
use super::geometry::ConvGeometry;
use super::im2col::im2col_block;
use super::plan::{Plan, with_scratch};
use crate::error::TensorError;
use crate::gemm::{GemmParams, gemm};
use crate::tensor::Tensor;

/// Forward convolution: `input [N, C, H, W]`, `weight [O, C/groups, kh, kw]`, optional
/// `bias [O]` -> `[N, O, OH, OW]`.
pub fn conv2d_forward(
    input: &Tensor,
    weight: &Tensor,
    bias: Option<&[f32]>,
    p: &Conv2dParams,
) -> Result<Tensor, TensorError> {
    let (geo, mut y) = ConvGeometry::forward(p, input, weight, bias)?;
    let op = geo.out_plane();
    if geo.n == 0 || op == 0 {
        return Ok(y);
    }
    let plan = Plan::new(&geo);
    let (x, w) = (input.data(), weight.data());
    y.data_mut()
        .par_chunks_mut(plan.bn * geo.o * op)
        .enumerate()
        .try_for_each(|(bi, yb)| forward_block(&geo, &plan, x, w, bias, bi * plan.bn, yb))?;
    Ok(y)
}

/// One block of the forward pass: images `n0..`, output block `yb` (`[nb, O, OH, OW]`),
/// `plan.sub` images per GEMM.
fn forward_block(
    geo: &ConvGeometry,
    plan: &Plan,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    n0: usize,
    yb: &mut [f32],
) -> Result<(), TensorError> {
    let per_image = geo.o * geo.out_plane();
    for (si, ys) in yb.chunks_mut(plan.sub * per_image).enumerate() {
        forward_images(geo, plan, x, w, bias, n0 + si * plan.sub, ys)?;
    }
    Ok(())
}

/// Images `n0..n0+nb` of the forward pass through one GEMM per group, into `yb`.
fn forward_images(
    geo: &ConvGeometry,
    plan: &Plan,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    n0: usize,
    yb: &mut [f32],
) -> Result<(), TensorError> {
    let op = geo.out_plane();
    let patch = geo.patch_len();
    let nb = yb.len() / (geo.o * op);
    let col_len = patch * nb * op;
    let tmp_len = if nb > 1 { geo.og * nb * op } else { 0 };
    with_scratch(col_len + tmp_len, |buf| {
        let (col, tmp) = buf.split_at_mut(col_len);
        for g in 0..geo.groups {
            im2col_block(geo, x, n0, nb, g, col, plan.inner_parallel);
            let wg = &w[g * geo.og * patch..(g + 1) * geo.og * patch];
            if nb == 1 {
                // One image: the group's output rows are contiguous; write them in place.
                let dst = &mut yb[g * geo.og * op..(g + 1) * geo.og * op];
                gemm(geo.og, op, patch, wg, col, dst, &plan.gemm(false, false))?;
            } else {
                gemm(
                    geo.og,
                    nb * op,
                    patch,
                    wg,
                    col,
                    tmp,
                    &plan.gemm(false, false),
                )?;
                // [Og, nb, OH*OW] -> each image's [Og, OH*OW] rows.
                for b in 0..nb {
                    for oc in 0..geo.og {
                        let dst = (b * geo.o + g * geo.og + oc) * op;
                        let src = (oc * nb + b) * op;
                        yb[dst..dst + op].copy_from_slice(&tmp[src..src + op]);
                    }
                }
            }
        }
        Ok::<(), TensorError>(())
    })?;
    if let Some(b) = bias {
        for (i, plane) in yb.chunks_exact_mut(op).enumerate() {
            let v = b[i % geo.o];
            plane.iter_mut().for_each(|x| *x += v);
        }
    }
    Ok(())
}

/// Forward convolution one image at a time, images in parallel with rayon and each GEMM on
/// one thread: the alternative to blocked im2col that [`super::block_images`] was measured against
/// (kept for the benchmark).
#[doc(hidden)]
pub fn conv2d_forward_per_image(
    input: &Tensor,
    weight: &Tensor,
    bias: Option<&[f32]>,
    p: &Conv2dParams,
) -> Result<Tensor, TensorError> {
    let (geo, mut y) = ConvGeometry::forward(p, input, weight, bias)?;
    let op = geo.out_plane();
    if geo.n == 0 || op == 0 {
        return Ok(y);
    }
    let patch = geo.patch_len();
    let x = input.data();
    let wdat = weight.data();
    y.data_mut()
        .par_chunks_mut(geo.o * op)
        .enumerate()
        .try_for_each_init(
            || vec![0.0f32; patch * op],
            |col, (n, out)| -> Result<(), TensorError> {
                for g in 0..geo.groups {
                    im2col_block(&geo, x, n, 1, g, col, false);
                    let wg = &wdat[g * geo.og * patch..(g + 1) * geo.og * patch];
                    let dst = &mut out[g * geo.og * op..(g + 1) * geo.og * op];
                    gemm(
                        geo.og,
                        op,
                        patch,
                        wg,
                        col,
                        dst,
                        &GemmParams::default().threads(1),
                    )?;
                }
                if let Some(b) = bias {
                    for (oc, plane) in out.chunks_exact_mut(op).enumerate() {
                        plane.iter_mut().for_each(|v| *v += b[oc]);
                    }
                }
                Ok(())
            },
        )?;
    Ok(y)
}
