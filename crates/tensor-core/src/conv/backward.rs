//! The backward convolution: input gradient by col2im of `W^T dY`, weight gradient
//! `dY col^T` and bias gradient, accumulated per block and summed.

use rayon::prelude::*;

use super::fused::{ConvEpilogue, conv2d_forward_fused, direct_applies};
use super::geometry::ConvGeometry;
use super::im2col::{col2im_block, im2col_block};
use super::plan::{Plan, with_scratch};
use super::weight_grad;
use super::{Conv2dParams, Padding, check_bias};
use crate::dispatch::F32Path;
use crate::error::TensorError;
use crate::gemm::gemm;
use crate::shape::Shape;
use crate::tensor::Tensor;

/// Where [`conv2d_backward`] writes: the input gradient is overwritten, the weight and bias
/// gradients are accumulated (added to), as `Layer::backward` requires.
#[derive(Debug)]
pub struct Conv2dGradOut<'a> {
    /// `[N, C, H, W]`, overwritten; `None` skips the input gradient (first layer).
    pub input: Option<&'a mut [f32]>,
    /// `[O, C/groups, kh, kw]`, accumulated.
    pub weight: &'a mut [f32],
    /// `[O]`, accumulated; `None` when the convolution has no bias.
    pub bias: Option<&'a mut [f32]>,
}

/// Backward convolution: given `grad_output [N, O, OH, OW]`, writes the input gradient and
/// accumulates the weight and bias gradients into `out`.
///
/// Blocks of images run in parallel; each accumulates its weight and bias gradients into a
/// per-worker buffer, summed at the end (so the result does not depend on scheduling beyond
/// float summation order).
pub fn conv2d_backward(
    input: &Tensor,
    weight: &Tensor,
    grad_output: &Tensor,
    p: &Conv2dParams,
    out: Conv2dGradOut<'_>,
) -> Result<(), TensorError> {
    let geo = grad_geometry(p, input.shape(), weight, grad_output, "conv2d backward")?;
    let Conv2dGradOut {
        input: dx,
        weight: dw,
        bias: db,
    } = out;
    if let Some(dx) = dx.as_deref()
        && dx.len() != input.numel()
    {
        return Err(TensorError::DataLength {
            op: "conv2d backward: grad_input",
            len: dx.len(),
            expected: input.numel(),
            shape: input.shape().clone(),
        });
    }
    if dw.len() != weight.numel() {
        return Err(TensorError::DataLength {
            op: "conv2d backward: grad_weight",
            len: dw.len(),
            expected: weight.numel(),
            shape: weight.shape().clone(),
        });
    }
    check_bias(db.as_deref(), geo.o, "conv2d backward: grad_bias")?;
    let op = geo.out_plane();
    if geo.n == 0 || op == 0 {
        if let Some(dx) = dx {
            dx.fill(0.0);
        }
        return Ok(());
    }
    let plan = Plan::new(&geo);
    let (x, w, gy) = (input.data(), weight.data(), grad_output.data());
    let wlen = w.len();
    let dx_block = plan.bn * geo.c * geo.h * geo.w;
    let chunks: Vec<Option<&mut [f32]>> = match dx {
        Some(d) if dx_block > 0 => d.chunks_mut(dx_block).map(Some).collect(),
        _ => (0..plan.blocks).map(|_| None).collect(),
    };
    if plan.blocks == 1 {
        // One block: accumulate straight into the caller's gradients.
        let mut acc = vec![0.0f32; geo.o];
        for (bi, dxb) in chunks.into_iter().enumerate() {
            backward_block(&geo, &plan, x, w, gy, bi * plan.bn, dxb, dw, &mut acc)?;
        }
        if let Some(db) = db {
            db.iter_mut().zip(&acc).for_each(|(a, &v)| *a += v);
        }
        return Ok(());
    }
    // Each block's weight and bias gradients land in a buffer of their own, summed in block
    // order afterwards: a rayon fold would group blocks by work stealing, so the float sums
    // (and a whole training run) would differ from run to run.
    let partials = chunks
        .into_par_iter()
        .enumerate()
        .map(|(bi, dxb)| {
            let mut acc = vec![0.0f32; wlen + geo.o];
            let (aw, ab) = acc.split_at_mut(wlen);
            backward_block(&geo, &plan, x, w, gy, bi * plan.bn, dxb, aw, ab)?;
            Ok::<Vec<f32>, TensorError>(acc)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut db = db;
    for p in &partials {
        dw.iter_mut().zip(&p[..wlen]).for_each(|(a, &v)| *a += v);
        if let Some(db) = db.as_deref_mut() {
            db.iter_mut().zip(&p[wlen..]).for_each(|(a, &v)| *a += v);
        }
    }
    Ok(())
}

/// The geometry of a backward call, checking that `grad_output` has the forward output's
/// shape (`op` names the caller in the error).
fn grad_geometry(
    p: &Conv2dParams,
    input: &Shape,
    weight: &Tensor,
    grad_output: &Tensor,
    op: &'static str,
) -> Result<ConvGeometry, TensorError> {
    let geo = ConvGeometry::with_weight(p, input, weight.shape())?;
    let want = [geo.n, geo.o, geo.oh, geo.ow];
    if grad_output.dims() != want {
        return Err(TensorError::ShapeMismatch {
            op,
            lhs: grad_output.shape().clone(),
            rhs: Shape::new(&want)?,
        });
    }
    Ok(geo)
}

/// One block of the backward pass: images `n0..n0+nb`; overwrites the block's input gradient
/// `dxb` (`[nb, C, H, W]`) when present and accumulates into `dw` and `db`.
#[allow(clippy::too_many_arguments)]
fn backward_block(
    geo: &ConvGeometry,
    plan: &Plan,
    x: &[f32],
    w: &[f32],
    gy: &[f32],
    n0: usize,
    mut dxb: Option<&mut [f32]>,
    dw: &mut [f32],
    db: &mut [f32],
) -> Result<(), TensorError> {
    let op = geo.out_plane();
    let nb = plan.bn.min(geo.n - n0);
    let gyb = &gy[n0 * geo.o * op..(n0 + nb) * geo.o * op];
    for (i, plane) in gyb.chunks_exact(op).enumerate() {
        db[i % geo.o] += lane_sum(plane);
    }
    if let Some(d) = dxb.as_deref_mut() {
        d.fill(0.0);
    }
    let dx_per_image = geo.c * geo.h * geo.w;
    let mut s0 = 0;
    while s0 < nb {
        let sn = plan.sub.min(nb - s0);
        let dxs = dxb
            .as_deref_mut()
            .map(|d| &mut d[s0 * dx_per_image..(s0 + sn) * dx_per_image]);
        backward_images(geo, plan, x, w, gy, n0 + s0, sn, dxs, dw)?;
        s0 += sn;
    }
    Ok(())
}

/// The sum of `v` in sixteen independent f32 lanes added at the end (vectorized; a plain
/// sequential sum is one dependent addition per four cycles, 2.4% of a cnn-teacher epoch in
/// the bias gradient alone).
fn lane_sum(v: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let mut it = v.chunks_exact(16);
    for c in &mut it {
        lanes.iter_mut().zip(c).for_each(|(l, &x)| *l += x);
    }
    lanes.iter().sum::<f32>() + it.remainder().iter().sum::<f32>()
}

/// Images `n0..n0+nb` of the backward pass through one GEMM per group and pass: adds onto
/// the (zeroed) input-gradient slice `dxb` and accumulates `dw`.
#[allow(clippy::too_many_arguments)]
fn backward_images(
    geo: &ConvGeometry,
    plan: &Plan,
    x: &[f32],
    w: &[f32],
    gy: &[f32],
    n0: usize,
    nb: usize,
    mut dxb: Option<&mut [f32]>,
    dw: &mut [f32],
) -> Result<(), TensorError> {
    let op = geo.out_plane();
    let patch = geo.patch_len();
    let gyb = &gy[n0 * geo.o * op..(n0 + nb) * geo.o * op];
    // The weight gradient without an im2col matrix where the direct kernel applies.
    let direct_dw = weight_grad::applies(F32Path::selected(), geo);
    if direct_dw {
        weight_grad::accumulate(geo, x, gy, n0, nb, dw);
        if dxb.is_none() {
            return Ok(());
        }
    }
    let col_len = if direct_dw { 0 } else { patch * nb * op };
    let dcol_len = if dxb.is_some() { patch * nb * op } else { 0 };
    let gt_len = if nb > 1 { geo.og * nb * op } else { 0 };
    let dwt_len = if direct_dw { 0 } else { geo.og * patch };
    with_scratch(col_len + dcol_len + gt_len + dwt_len, |buf| {
        let (col, rest) = buf.split_at_mut(col_len);
        let (dcol, rest) = rest.split_at_mut(dcol_len);
        let (gt_buf, dwt) = rest.split_at_mut(gt_len);
        for g in 0..geo.groups {
            if !direct_dw {
                im2col_block(geo, x, n0, nb, g, col, plan.inner_parallel);
            }
            // This group's output gradient as [Og, nb*OH*OW]: for one image, the group's
            // rows of dY are already contiguous; otherwise gather them.
            let gt: &[f32] = if nb == 1 {
                &gyb[g * geo.og * op..(g + 1) * geo.og * op]
            } else {
                for oc in 0..geo.og {
                    for b in 0..nb {
                        let src = (b * geo.o + g * geo.og + oc) * op;
                        let dst = (oc * nb + b) * op;
                        gt_buf[dst..dst + op].copy_from_slice(&gyb[src..src + op]);
                    }
                }
                gt_buf
            };
            // dW_g^T [patch, Og] = col [patch, L] * dY_g^T [L, Og], added to dW_g transposed:
            // the GEMM's rows are the patch (25-500), not the few output channels (6-50),
            // which left most rows of faer's 96-row microkernel idle.
            if !direct_dw {
                let dwg = &mut dw[g * geo.og * patch..(g + 1) * geo.og * patch];
                gemm(
                    patch,
                    geo.og,
                    nb * op,
                    col,
                    gt,
                    dwt,
                    &plan.gemm(false, true),
                )?;
                for (oc, row) in dwg.chunks_exact_mut(patch).enumerate() {
                    for (k, v) in row.iter_mut().enumerate() {
                        *v += dwt[k * geo.og + oc];
                    }
                }
            }
            if let Some(d) = dxb.as_deref_mut() {
                // dcol = W_g^T [patch, Og] * dY_g [Og, L], then scatter onto dX.
                let wg = &w[g * geo.og * patch..(g + 1) * geo.og * patch];
                gemm(
                    patch,
                    nb * op,
                    geo.og,
                    wg,
                    gt,
                    dcol,
                    &plan.gemm(true, false),
                )?;
                col2im_block(geo, dcol, nb, g, d, plan.inner_parallel);
            }
        }
        Ok(())
    })
}

/// Input channels from which [`conv2d_input_grad_direct`] computes the input gradient: the
/// direct kernel makes 16 output channels per tile, and the transposed convolution's outputs
/// are the layer's inputs. With lenet5's conv2 (6 input channels, 10 of 16 lanes idle) an epoch
/// of 20,000 images took 7.85-7.94 s of CPU against 6.84-7.08 s through the GEMM and col2im
/// (2 threads, loaded machine, load 4-6). The zoo lenet5's conv2 has 20 input channels and
/// passed this test; [`DIRECT_INPUT_GRAD_MAX_PLANE_QUARTERS`] is what keeps it on the GEMM.
pub const DIRECT_INPUT_GRAD_MIN_CHANNELS: usize = 16;

/// The largest ratio of the input plane to the output plane (`H*W / (OH*OW)`, in quarters)
/// for which [`conv2d_input_grad_direct`] computes the input gradient. The transposed
/// convolution pads `dY` by `kernel - 1 - pad` on each side, so a convolution with little
/// padding makes it compute every input position from a mostly zero window: lenet5's conv2
/// (20 -> 50 channels, 5x5, no padding, 12x12 -> 8x8) costs 2.25x the GEMM's multiply-adds
/// there, before lane padding (12 positions in two 8-wide tiles, 20 output channels in 32
/// lanes). Through the GEMM and col2im instead, an epoch of 20,000 lenet5 images took 5.3-5.6 s
/// of CPU against 6.8-6.9 s (2 threads, load 8-9). A "same" convolution (cnn-teacher's 3x3
/// pad 1) has ratio 1 and keeps the direct route.
pub const DIRECT_INPUT_GRAD_MAX_PLANE_QUARTERS: usize = 5;

/// The input gradient of a convolution with stride 1, no dilation and one group, computed
/// as a forward convolution on the direct kernel: `dX = conv(dY, W')` with
/// `W'[c, o, a, b] = W[o, c, kh-1-a, kw-1-b]` (the weight transposed and flipped) and the
/// padding `kernel - 1 - pad` on each side. This replaces the GEMM `W^T dY` and the col2im
/// scatter of [`conv2d_backward`] (in a cnn-teacher epoch those and their column buffers were
/// a fifth of the backward time) with the AVX-512 kernel the forward pass uses.
///
/// Returns `None` where that route does not apply: another stride, dilation or grouping, a
/// padding wider than `kernel - 1`, fewer than [`DIRECT_INPUT_GRAD_MIN_CHANNELS`] input
/// channels, an input plane more than [`DIRECT_INPUT_GRAD_MAX_PLANE_QUARTERS`] quarters of
/// the output plane (too little padding), or a CPU without the direct kernel (the caller then lets
/// [`conv2d_backward`] compute the input gradient). `input_dims` is the forward input's
/// shape; errors when `grad_output` is not the forward output's shape.
pub fn conv2d_input_grad_direct(
    grad_output: &Tensor,
    weight: &Tensor,
    p: &Conv2dParams,
    input_dims: &[usize],
) -> Result<Option<Tensor>, TensorError> {
    let input = Shape::new(input_dims)?;
    let geo = grad_geometry(p, &input, weight, grad_output, "conv2d input gradient")?;
    let (kh, kw) = p.kernel;
    let pad = p.padding;
    let fits = pad.top < kh && pad.bottom < kh && pad.left < kw && pad.right < kw;
    let kernel_runs = F32Path::selected() != F32Path::Portable && F32Path::Avx2Fma.is_supported();
    let wide = p.in_channels >= DIRECT_INPUT_GRAD_MIN_CHANNELS;
    let padded = 4 * geo.h * geo.w <= DIRECT_INPUT_GRAD_MAX_PLANE_QUARTERS * geo.oh * geo.ow;
    if !(direct_applies(p) && fits && kernel_runs && wide && padded)
        || geo.n * geo.o * geo.oh * geo.ow == 0
    {
        return Ok(None);
    }
    let (o, c) = (p.out_channels, p.in_channels);
    let mut flipped = vec![0.0f32; weight.numel()];
    let w = weight.data();
    for (ci, dst) in flipped.chunks_exact_mut(o * kh * kw).enumerate() {
        for (oi, taps) in dst.chunks_exact_mut(kh * kw).enumerate() {
            let src = &w[(oi * c + ci) * kh * kw..(oi * c + ci + 1) * kh * kw];
            taps.iter_mut()
                .zip(src.iter().rev())
                .for_each(|(d, &v)| *d = v);
        }
    }
    let tp = Conv2dParams::new(o, c, (kh, kw)).with_padding(Padding {
        top: kh - 1 - pad.top,
        bottom: kh - 1 - pad.bottom,
        left: kw - 1 - pad.left,
        right: kw - 1 - pad.right,
    });
    let flipped = Tensor::new(&tp.weight_dims(), flipped)?;
    let dx = conv2d_forward_fused(
        grad_output,
        &flipped,
        None,
        None,
        &tp,
        ConvEpilogue::default(),
    )?;
    if dx.dims() != input_dims {
        return Ok(None);
    }
    Ok(Some(dx))
}

/// The gradients of a convolution, allocated (tests, benches, one-off use).
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2dGrads {
    /// `[N, C, H, W]`.
    pub input: Tensor,
    /// `[O, C/groups, kh, kw]`.
    pub weight: Tensor,
    /// `[O]`.
    pub bias: Tensor,
}

/// [`conv2d_backward`] into freshly allocated gradients.
pub fn conv2d_grads(
    input: &Tensor,
    weight: &Tensor,
    grad_output: &Tensor,
    p: &Conv2dParams,
) -> Result<Conv2dGrads, TensorError> {
    let mut gi = Tensor::zeros(input.shape().clone());
    let mut gw = Tensor::zeros(weight.shape().clone());
    let mut gb = Tensor::zeros_dims(&[p.out_channels])?;
    conv2d_backward(
        input,
        weight,
        grad_output,
        p,
        Conv2dGradOut {
            input: Some(gi.data_mut()),
            weight: gw.data_mut(),
            bias: Some(gb.data_mut()),
        },
    )?;
    Ok(Conv2dGrads {
        input: gi,
        weight: gw,
        bias: gb,
    })
}
