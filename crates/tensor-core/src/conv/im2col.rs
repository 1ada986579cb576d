//! The im2col machinery shared by the forward and backward kernels: the geometry derived
//! from the parameters ([`Geo`]), the split of a batch into blocks ([`Plan`],
//! [`block_images`]), per-thread scratch, and im2col / col2im themselves.

use rayon::prelude::*;

use super::{Conv2dParams, check_bias};
use crate::error::TensorError;
use crate::gemm::GemmParams;
use crate::shape::Shape;
use crate::tensor::Tensor;

/// The images per im2col block for a batch of `batch` images, a patch of `patch_len` rows and
/// `out_plane` output positions per image.
///
/// Blocks are the unit of parallelism: each runs im2col, its GEMMs (on one thread) and
/// col2im on one rayon worker, so a layer costs one fork/join instead of one per GEMM and
/// per pass. A block's column buffer stays near [`COL_BLOCK_FLOATS`] (cache-sized), and a
/// batch is cut into at least two blocks per thread for load balance.
///
/// Measured on the 2-core Xeon (LeNet-5, batch 64, SGD step, while two other processes kept
/// one core busy): whole-batch im2col with two-thread faer GEMMs took 59 ms per step, as faer's
/// spin barriers waited for the descheduled thread; per-block parallelism with one-thread
/// GEMMs (faer reaching 80-100 GFLOP/s on the conv2 block shapes) took the figures in
/// docs/BENCHMARKS.md. One image per task (`conv2d_forward_per_image`) loses to blocks because
/// each image's GEMM is too small (conv1: 20 x 576 x 25).
pub fn block_images(patch_len: usize, out_plane: usize, batch: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let per_image = (patch_len * out_plane).max(1);
    let by_memory = (COL_BLOCK_FLOATS / per_image).max(1);
    let by_balance = batch.div_ceil(2 * threads).max(1);
    by_memory.min(by_balance).min(batch.max(1))
}

/// Target size of one block's im2col buffer in floats (1 MiB; see [`block_images`]).
pub const COL_BLOCK_FLOATS: usize = 1 << 18;

/// How a call is split: images per block, number of blocks, and whether the work inside a
/// block may itself fork (only when there is a single block).
#[derive(Clone, Copy, Debug)]
pub(super) struct Plan {
    pub(super) bn: usize,
    pub(super) blocks: usize,
    /// Images per GEMM inside a block (see [`PER_IMAGE_MIN_PLANE`]).
    pub(super) sub: usize,
    pub(super) inner_parallel: bool,
}

/// Output planes at least this large (OH*OW) get one GEMM per image inside a block; smaller
/// ones batch the block's images into one wider GEMM.
///
/// Measured on the 2-core Xeon (batch 64, forward): lenet5.conv1 (24x24 = 576 positions)
/// took 1.17 ms per image against 1.67 ms batched, the batched form paying an extra pass to
/// reorder `[Og, nb, OH*OW]` into NCHW; lenet5.conv2 (8x8 = 64) took 4.2 ms batched against
/// 4.4 ms per image, its per-image GEMM being only 64 wide.
pub const PER_IMAGE_MIN_PLANE: usize = 256;

impl Plan {
    pub(super) fn new(geo: &Geo) -> Self {
        let bn = block_images(geo.patch(), geo.out_plane(), geo.n);
        let blocks = geo.n.div_ceil(bn);
        Self {
            bn,
            blocks,
            sub: if geo.out_plane() >= PER_IMAGE_MIN_PLANE {
                1
            } else {
                bn
            },
            // A lone small block (batch-1 inference) stays on one thread: a fork/join
            // costs more than the im2col of LeNet-5's layers.
            inner_parallel: blocks < 2 && geo.patch() * geo.out_plane() * bn >= INNER_PAR_MIN,
        }
    }

    /// GEMM options: one thread inside parallel blocks, the pool otherwise.
    pub(super) fn gemm(&self, trans_a: bool, trans_b: bool) -> GemmParams {
        GemmParams::with_trans(trans_a, trans_b).threads(if self.inner_parallel { 0 } else { 1 })
    }
}

/// Column-matrix size (floats) below which a single block runs on one thread.
const INNER_PAR_MIN: usize = 1 << 16;

std::thread_local! {
    /// Per-thread scratch for im2col columns and GEMM temporaries, reused across calls so
    /// that hot loops neither allocate nor page-fault fresh memory.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on `len` floats of this thread's scratch (contents unspecified: callers write
/// before reading). Re-entrant calls (a rayon worker stealing another block while waiting)
/// get a fresh allocation.
pub(super) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut v) => {
            if v.len() < len {
                v.resize(len, 0.0);
            }
            f(&mut v[..len])
        }
        Err(_) => f(&mut vec![0.0; len]),
    })
}

/// Everything the kernels need, derived once from the parameters and the input dims.
#[derive(Clone, Copy, Debug)]
pub(super) struct Geo {
    pub(super) n: usize,
    pub(super) c: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) o: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
    pub(super) groups: usize,
    pub(super) cg: usize,
    pub(super) og: usize,
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) sh: usize,
    pub(super) sw: usize,
    pub(super) dh: usize,
    pub(super) dw: usize,
    pub(super) pt: usize,
    pub(super) pl: usize,
}

impl Geo {
    pub(super) fn new(
        p: &Conv2dParams,
        input: &Shape,
        weight: &Shape,
    ) -> Result<Self, TensorError> {
        let [n, o, oh, ow] = p.output_dims(input)?;
        let wd = p.weight_dims();
        if weight.dims() != wd {
            return Err(TensorError::ShapeMismatch {
                op: "conv2d: weight",
                lhs: weight.clone(),
                rhs: Shape::new(&wd)?,
            });
        }
        let d = input.dims();
        Ok(Self {
            n,
            c: d[1],
            h: d[2],
            w: d[3],
            o,
            oh,
            ow,
            groups: p.groups,
            cg: p.in_channels / p.groups,
            og: p.out_channels / p.groups,
            kh: p.kernel.0,
            kw: p.kernel.1,
            sh: p.stride.0,
            sw: p.stride.1,
            dh: p.dilation.0,
            dw: p.dilation.1,
            pt: p.padding.top,
            pl: p.padding.left,
        })
    }

    /// The geometry of a forward pass, its bias checked, and the zeroed output
    /// `[N, O, OH, OW]`.
    pub(super) fn forward(
        p: &Conv2dParams,
        input: &Tensor,
        weight: &Tensor,
        bias: Option<&[f32]>,
    ) -> Result<(Self, Tensor), TensorError> {
        let geo = Self::new(p, input.shape(), weight.shape())?;
        check_bias(bias, geo.o, "conv2d: bias")?;
        let y = Tensor::zeros_dims(&[geo.n, geo.o, geo.oh, geo.ow])?;
        Ok((geo, y))
    }

    pub(super) fn patch(&self) -> usize {
        self.cg * self.kh * self.kw
    }

    pub(super) fn out_plane(&self) -> usize {
        self.oh * self.ow
    }
}

/// The output indices `lo..hi` (within `0..out_len`) whose input coordinate
/// `i*stride + offset - pad` falls inside `0..in_len`.
pub(super) fn valid_range(
    out_len: usize,
    stride: usize,
    offset: usize,
    pad: usize,
    in_len: usize,
) -> (usize, usize) {
    // i*stride >= pad - offset
    let lo = if pad > offset {
        (pad - offset).div_ceil(stride)
    } else {
        0
    };
    // i*stride < in_len + pad - offset
    let hi = if in_len + pad > offset {
        (in_len + pad - offset).div_ceil(stride)
    } else {
        0
    };
    let hi = hi.min(out_len);
    (lo.min(hi), hi)
}

/// Fills `col` (`[patch, nb*OH*OW]`, row-major) with the receptive fields of images
/// `n0..n0+nb`, channels of group `g`; rows in parallel when `parallel`.
pub(super) fn im2col(
    geo: &Geo,
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
            .for_each(|(r, row)| im2col_row(geo, x, n0, nb, g, r, row));
    } else {
        col.chunks_mut(row_len)
            .enumerate()
            .for_each(|(r, row)| im2col_row(geo, x, n0, nb, g, r, row));
    }
}

/// Row `r = (c, ki, kj)` of the column matrix: tap `(ki, kj)` of channel `c` for every output
/// position of every image of the block (zeros where the tap falls in the padding).
fn im2col_row(geo: &Geo, x: &[f32], n0: usize, nb: usize, g: usize, r: usize, row: &mut [f32]) {
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
        dst[..oh_lo * geo.ow].fill(0.0);
        dst[oh_hi * geo.ow..].fill(0.0);
        for oy in oh_lo..oh_hi {
            let iy = oy * geo.sh + ki * geo.dh - geo.pt;
            let line = &mut dst[oy * geo.ow..(oy + 1) * geo.ow];
            line[..ow_lo].fill(0.0);
            line[ow_hi..].fill(0.0);
            let base = iy * geo.w + kj * geo.dw;
            if ow_hi > ow_lo {
                if geo.sw == 1 {
                    let s0 = base + ow_lo - geo.pl;
                    line[ow_lo..ow_hi].copy_from_slice(&src[s0..s0 + (ow_hi - ow_lo)]);
                } else {
                    for (ox, v) in line[ow_lo..ow_hi].iter_mut().enumerate() {
                        *v = src[base + (ox + ow_lo) * geo.sw - geo.pl];
                    }
                }
            }
        }
    }
}

/// Adds the columns of `dcol` (`[patch, nb*OH*OW]`) back onto the input-gradient block
/// `dx` (`[nb, C, H, W]`), channels of group `g` (the adjoint of [`im2col`]); planes in
/// parallel when `parallel`.
pub(super) fn col2im_add(
    geo: &Geo,
    dcol: &[f32],
    nb: usize,
    g: usize,
    dx: &mut [f32],
    parallel: bool,
) {
    let plane = geo.h * geo.w;
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
fn col2im_plane(geo: &Geo, dcol: &[f32], nb: usize, g: usize, pi: usize, dst: &mut [f32]) {
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
