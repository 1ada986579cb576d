//! 2-D convolution (NCHW), forward and backward, by im2col + GEMM.
//!
//! The convolution of PyTorch and ONNX (a cross-correlation):
//! `y[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] *
//!  x[n, g*Cg + c, i*sh + p*dh - pad_top, j*sw + q*dw - pad_left]`
//! with `g = o / Og` the group of output channel `o`, `Cg = C / groups`, `Og = O / groups`,
//! weight `[O, Cg, kh, kw]`, zero padding (ONNX allows the four sides to differ) and the
//! output size `OH = (H + pad_top + pad_bottom - dh*(kh-1) - 1) / sh + 1`.
//!
//! im2col (Chellapilla et al., 2006) lays the receptive fields of a block of images out as
//! the columns of a `[Cg*kh*kw, B*OH*OW]` matrix, so that each group's convolution is one
//! GEMM `W_g [Og, Cg*kh*kw] x col`. The backward pass reuses the same matrix:
//! `dW_g += dY_g col^T`, `dcol = W_g^T dY_g`, then col2im scatters `dcol` back onto `dX`.
//! Images are processed in blocks ([`block_images`]) so the GEMM is wide enough for both
//! cores while the column buffer stays in cache-friendly bounds.

use rayon::prelude::*;

use crate::error::TensorError;
use crate::gemm::{GemmParams, gemm};
use crate::shape::Shape;
use crate::tensor::Tensor;

/// Zero padding on each side of a 2-D input (ONNX `pads` may be asymmetric).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Padding {
    /// Rows added above.
    pub top: usize,
    /// Rows added below.
    pub bottom: usize,
    /// Columns added on the left.
    pub left: usize,
    /// Columns added on the right.
    pub right: usize,
}

impl Padding {
    /// The same padding `p` on all four sides (PyTorch's `padding=p`).
    pub fn symmetric(p: usize) -> Self {
        Self {
            top: p,
            bottom: p,
            left: p,
            right: p,
        }
    }

    /// From ONNX's `pads = [top, left, bottom, right]` order.
    pub fn from_onnx(pads: [usize; 4]) -> Self {
        Self {
            top: pads[0],
            left: pads[1],
            bottom: pads[2],
            right: pads[3],
        }
    }

    /// In ONNX's `[top, left, bottom, right]` order.
    pub fn to_onnx(self) -> [usize; 4] {
        [self.top, self.left, self.bottom, self.right]
    }
}

/// Output length of a sliding window along one axis, or `None` when the window (span
/// `dilation*(kernel-1)+1`) does not fit in the padded input or a value overflows.
/// `ceil` rounds up as ONNX `ceil_mode` / PyTorch do, dropping a last window that would start
/// in the end padding.
pub fn window_out_len(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad_begin: usize,
    pad_end: usize,
    ceil: bool,
) -> Option<usize> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return None;
    }
    let span = (kernel - 1).checked_mul(dilation)?.checked_add(1)?;
    let padded = input.checked_add(pad_begin)?.checked_add(pad_end)?;
    if padded < span {
        return None;
    }
    let mut n = if ceil {
        (padded - span).div_ceil(stride) + 1
    } else {
        (padded - span) / stride + 1
    };
    if ceil && n > 1 && (n - 1) * stride >= input + pad_begin {
        n -= 1;
    }
    Some(n)
}

/// The geometry of a 2-D convolution (PyTorch's `Conv2d` arguments, with four-sided
/// padding). Build with [`Conv2dParams::new`] and the builder methods; every kernel calls
/// [`Conv2dParams::validate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Conv2dParams {
    /// Input channels `C`.
    pub in_channels: usize,
    /// Output channels `O`.
    pub out_channels: usize,
    /// Kernel height and width.
    pub kernel: (usize, usize),
    /// Vertical and horizontal stride.
    pub stride: (usize, usize),
    /// Zero padding.
    pub padding: Padding,
    /// Vertical and horizontal dilation.
    pub dilation: (usize, usize),
    /// Channel groups (`groups == in_channels` is a depthwise convolution).
    pub groups: usize,
}

impl Conv2dParams {
    /// `in_channels -> out_channels` with a `kernel` window, stride 1, no padding, no
    /// dilation, one group.
    pub fn new(in_channels: usize, out_channels: usize, kernel: (usize, usize)) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel,
            stride: (1, 1),
            padding: Padding::default(),
            dilation: (1, 1),
            groups: 1,
        }
    }

    /// With stride `(sh, sw)`.
    pub fn with_stride(self, stride: (usize, usize)) -> Self {
        Self { stride, ..self }
    }

    /// With padding.
    pub fn with_padding(self, padding: Padding) -> Self {
        Self { padding, ..self }
    }

    /// With dilation `(dh, dw)`.
    pub fn with_dilation(self, dilation: (usize, usize)) -> Self {
        Self { dilation, ..self }
    }

    /// With `groups` channel groups.
    pub fn with_groups(self, groups: usize) -> Self {
        Self { groups, ..self }
    }

    /// Checks that every value is positive where it must be and that channels divide by
    /// groups.
    pub fn validate(&self) -> Result<(), TensorError> {
        let bad = |reason: String| TensorError::InvalidArgument {
            op: "conv2d",
            reason,
        };
        if self.in_channels == 0 || self.out_channels == 0 {
            return Err(bad(format!(
                "channels must be positive ({} -> {})",
                self.in_channels, self.out_channels
            )));
        }
        if self.kernel.0 == 0 || self.kernel.1 == 0 {
            return Err(bad(format!("kernel {:?} has a zero side", self.kernel)));
        }
        if self.stride.0 == 0 || self.stride.1 == 0 {
            return Err(bad(format!("stride {:?} has a zero side", self.stride)));
        }
        if self.dilation.0 == 0 || self.dilation.1 == 0 {
            return Err(bad(format!("dilation {:?} has a zero side", self.dilation)));
        }
        if self.groups == 0
            || !self.in_channels.is_multiple_of(self.groups)
            || !self.out_channels.is_multiple_of(self.groups)
        {
            return Err(bad(format!(
                "groups {} must divide in_channels {} and out_channels {}",
                self.groups, self.in_channels, self.out_channels
            )));
        }
        Shape::new(&self.weight_dims())?;
        Ok(())
    }

    /// The weight's dimensions `[O, C/groups, kh, kw]`.
    pub fn weight_dims(&self) -> [usize; 4] {
        [
            self.out_channels,
            self.in_channels / self.groups.max(1),
            self.kernel.0,
            self.kernel.1,
        ]
    }

    /// Weights in one group's filter: `C/groups * kh * kw` (the GEMM depth).
    pub fn patch_len(&self) -> usize {
        (self.in_channels / self.groups.max(1)) * self.kernel.0 * self.kernel.1
    }

    /// The output spatial size for an input of `h x w`.
    pub fn output_hw(&self, h: usize, w: usize) -> Result<(usize, usize), TensorError> {
        let p = &self.padding;
        let oh = window_out_len(
            h,
            self.kernel.0,
            self.stride.0,
            self.dilation.0,
            p.top,
            p.bottom,
            false,
        );
        let ow = window_out_len(
            w,
            self.kernel.1,
            self.stride.1,
            self.dilation.1,
            p.left,
            p.right,
            false,
        );
        match (oh, ow) {
            (Some(oh), Some(ow)) => Ok((oh, ow)),
            _ => Err(TensorError::InvalidArgument {
                op: "conv2d",
                reason: format!(
                    "kernel {:?} with dilation {:?} does not fit input {h}x{w} padded by {:?}",
                    self.kernel, self.dilation, self.padding
                ),
            }),
        }
    }

    /// The output dimensions `[N, O, OH, OW]` for an input `[N, C, H, W]`, checking the
    /// rank and the channel count.
    pub fn output_dims(&self, input: &Shape) -> Result<[usize; 4], TensorError> {
        self.validate()?;
        if input.rank() != 4 {
            return Err(TensorError::RankMismatch {
                op: "conv2d",
                expected: 4,
                shape: input.clone(),
            });
        }
        let d = input.dims();
        if d[1] != self.in_channels {
            return Err(TensorError::InvalidArgument {
                op: "conv2d",
                reason: format!(
                    "input {input} has {} channels, the convolution expects {}",
                    d[1], self.in_channels
                ),
            });
        }
        let (oh, ow) = self.output_hw(d[2], d[3])?;
        Shape::new(&[d[0], self.out_channels, oh, ow])?;
        Ok([d[0], self.out_channels, oh, ow])
    }

    /// Multiply-accumulates of one forward pass on `input` (`N*O*OH*OW*Cg*kh*kw`).
    pub fn macs(&self, input: &Shape) -> Result<u64, TensorError> {
        let [n, o, oh, ow] = self.output_dims(input)?;
        Ok((n * o * oh * ow) as u64 * self.patch_len() as u64)
    }
}

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
struct Plan {
    bn: usize,
    blocks: usize,
    /// Images per GEMM inside a block (see [`PER_IMAGE_MIN_PLANE`]).
    sub: usize,
    inner_parallel: bool,
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
    fn new(geo: &Geo) -> Self {
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
    fn gemm(&self, trans_a: bool, trans_b: bool) -> GemmParams {
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
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
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
struct Geo {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    oh: usize,
    ow: usize,
    groups: usize,
    cg: usize,
    og: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    dh: usize,
    dw: usize,
    pt: usize,
    pl: usize,
}

impl Geo {
    fn new(p: &Conv2dParams, input: &Shape, weight: &Shape) -> Result<Self, TensorError> {
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

    fn patch(&self) -> usize {
        self.cg * self.kh * self.kw
    }

    fn out_plane(&self) -> usize {
        self.oh * self.ow
    }
}

/// The output indices `lo..hi` (within `0..out_len`) whose input coordinate
/// `i*stride + offset - pad` falls inside `0..in_len`.
fn valid_range(
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
fn im2col(geo: &Geo, x: &[f32], n0: usize, nb: usize, g: usize, col: &mut [f32], parallel: bool) {
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
fn col2im_add(geo: &Geo, dcol: &[f32], nb: usize, g: usize, dx: &mut [f32], parallel: bool) {
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

fn check_bias(bias: Option<&[f32]>, o: usize, op: &'static str) -> Result<(), TensorError> {
    if let Some(b) = bias
        && b.len() != o
    {
        return Err(TensorError::DataLength {
            op,
            len: b.len(),
            expected: o,
            shape: Shape::new(&[o])?,
        });
    }
    Ok(())
}

/// Forward convolution: `input [N, C, H, W]`, `weight [O, C/groups, kh, kw]`, optional
/// `bias [O]` -> `[N, O, OH, OW]`.
pub fn conv2d_forward(
    input: &Tensor,
    weight: &Tensor,
    bias: Option<&[f32]>,
    p: &Conv2dParams,
) -> Result<Tensor, TensorError> {
    let geo = Geo::new(p, input.shape(), weight.shape())?;
    check_bias(bias, geo.o, "conv2d: bias")?;
    let mut y = Tensor::zeros_dims(&[geo.n, geo.o, geo.oh, geo.ow])?;
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
    geo: &Geo,
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
    geo: &Geo,
    plan: &Plan,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    n0: usize,
    yb: &mut [f32],
) -> Result<(), TensorError> {
    let op = geo.out_plane();
    let patch = geo.patch();
    let nb = yb.len() / (geo.o * op);
    let col_len = patch * nb * op;
    let tmp_len = if nb > 1 { geo.og * nb * op } else { 0 };
    with_scratch(col_len + tmp_len, |buf| {
        let (col, tmp) = buf.split_at_mut(col_len);
        for g in 0..geo.groups {
            im2col(geo, x, n0, nb, g, col, plan.inner_parallel);
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
    let geo = Geo::new(p, input.shape(), weight.shape())?;
    let want = [geo.n, geo.o, geo.oh, geo.ow];
    if grad_output.dims() != want {
        return Err(TensorError::ShapeMismatch {
            op: "conv2d backward: grad_output",
            lhs: grad_output.shape().clone(),
            rhs: Shape::new(&want)?,
        });
    }
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
    let sums = chunks
        .into_par_iter()
        .enumerate()
        .try_fold(
            || vec![0.0f32; wlen + geo.o],
            |mut acc, (bi, dxb)| {
                let (aw, ab) = acc.split_at_mut(wlen);
                backward_block(&geo, &plan, x, w, gy, bi * plan.bn, dxb, aw, ab)?;
                Ok::<Vec<f32>, TensorError>(acc)
            },
        )
        .try_reduce(
            || vec![0.0f32; wlen + geo.o],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, &y)| *x += y);
                Ok(a)
            },
        )?;
    dw.iter_mut().zip(&sums[..wlen]).for_each(|(a, &v)| *a += v);
    if let Some(db) = db {
        db.iter_mut().zip(&sums[wlen..]).for_each(|(a, &v)| *a += v);
    }
    Ok(())
}

/// One block of the backward pass: images `n0..n0+nb`; overwrites the block's input gradient
/// `dxb` (`[nb, C, H, W]`) when present and accumulates into `dw` and `db`.
#[allow(clippy::too_many_arguments)]
fn backward_block(
    geo: &Geo,
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
        db[i % geo.o] += plane.iter().sum::<f32>();
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

/// Images `n0..n0+nb` of the backward pass through one GEMM per group and pass: adds onto
/// the (zeroed) input-gradient slice `dxb` and accumulates `dw`.
#[allow(clippy::too_many_arguments)]
fn backward_images(
    geo: &Geo,
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
    let patch = geo.patch();
    let gyb = &gy[n0 * geo.o * op..(n0 + nb) * geo.o * op];
    let col_len = patch * nb * op;
    let dcol_len = if dxb.is_some() { col_len } else { 0 };
    let gt_len = if nb > 1 { geo.og * nb * op } else { 0 };
    with_scratch(col_len + dcol_len + gt_len, |buf| {
        let (col, rest) = buf.split_at_mut(col_len);
        let (dcol, gt_buf) = rest.split_at_mut(dcol_len);
        for g in 0..geo.groups {
            im2col(geo, x, n0, nb, g, col, plan.inner_parallel);
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
            // dW_g += dY_g [Og, L] * col^T [L, patch]
            let dwg = &mut dw[g * geo.og * patch..(g + 1) * geo.og * patch];
            gemm(
                geo.og,
                patch,
                nb * op,
                gt,
                col,
                dwg,
                &plan.gemm(false, true).beta(1.0),
            )?;
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
                col2im_add(geo, dcol, nb, g, d, plan.inner_parallel);
            }
        }
        Ok(())
    })
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

/// Forward convolution one image at a time, images in parallel with rayon and each GEMM on
/// one thread: the alternative to blocked im2col that [`block_images`] was measured against
/// (kept for the benchmark).
#[doc(hidden)]
pub fn conv2d_forward_per_image(
    input: &Tensor,
    weight: &Tensor,
    bias: Option<&[f32]>,
    p: &Conv2dParams,
) -> Result<Tensor, TensorError> {
    let geo = Geo::new(p, input.shape(), weight.shape())?;
    check_bias(bias, geo.o, "conv2d: bias")?;
    let mut y = Tensor::zeros_dims(&[geo.n, geo.o, geo.oh, geo.ow])?;
    let op = geo.out_plane();
    if geo.n == 0 || op == 0 {
        return Ok(y);
    }
    let patch = geo.patch();
    let x = input.data();
    let wdat = weight.data();
    y.data_mut()
        .par_chunks_mut(geo.o * op)
        .enumerate()
        .try_for_each_init(
            || vec![0.0f32; patch * op],
            |col, (n, out)| -> Result<(), TensorError> {
                for g in 0..geo.groups {
                    im2col(&geo, x, n, 1, g, col, false);
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

/// Direct-loop convolution (f64 accumulation), the reference for [`conv2d_forward`].
#[doc(hidden)]
pub fn conv2d_forward_reference(
    input: &Tensor,
    weight: &Tensor,
    bias: Option<&[f32]>,
    p: &Conv2dParams,
) -> Result<Tensor, TensorError> {
    let geo = Geo::new(p, input.shape(), weight.shape())?;
    check_bias(bias, geo.o, "conv2d: bias")?;
    let mut y = Tensor::zeros_dims(&[geo.n, geo.o, geo.oh, geo.ow])?;
    let (x, w) = (input.data(), weight.data());
    let out = y.data_mut();
    for n in 0..geo.n {
        for o in 0..geo.o {
            let g = o / geo.og;
            for oy in 0..geo.oh {
                for ox in 0..geo.ow {
                    let mut acc = bias.map_or(0.0, |b| b[o] as f64);
                    for_each_tap(&geo, n, g, oy, ox, |c, ki, kj, xi| {
                        let wi = ((o * geo.cg + c) * geo.kh + ki) * geo.kw + kj;
                        acc += w[wi] as f64 * x[xi] as f64;
                    });
                    out[((n * geo.o + o) * geo.oh + oy) * geo.ow + ox] = acc as f32;
                }
            }
        }
    }
    Ok(y)
}

/// Direct-loop backward (f64 accumulation), the reference for [`conv2d_backward`].
#[doc(hidden)]
pub fn conv2d_grads_reference(
    input: &Tensor,
    weight: &Tensor,
    grad_output: &Tensor,
    p: &Conv2dParams,
) -> Result<Conv2dGrads, TensorError> {
    let geo = Geo::new(p, input.shape(), weight.shape())?;
    let (x, w, gy) = (input.data(), weight.data(), grad_output.data());
    let mut gi = vec![0.0f64; x.len()];
    let mut gw = vec![0.0f64; w.len()];
    let mut gb = vec![0.0f64; geo.o];
    for n in 0..geo.n {
        for o in 0..geo.o {
            let g = o / geo.og;
            for oy in 0..geo.oh {
                for ox in 0..geo.ow {
                    let gv = gy[((n * geo.o + o) * geo.oh + oy) * geo.ow + ox] as f64;
                    gb[o] += gv;
                    for_each_tap(&geo, n, g, oy, ox, |c, ki, kj, xi| {
                        let wi = ((o * geo.cg + c) * geo.kh + ki) * geo.kw + kj;
                        gw[wi] += gv * x[xi] as f64;
                        gi[xi] += gv * w[wi] as f64;
                    });
                }
            }
        }
    }
    let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
    Ok(Conv2dGrads {
        input: Tensor::from_vec(input.shape().clone(), f(gi))?,
        weight: Tensor::from_vec(weight.shape().clone(), f(gw))?,
        bias: Tensor::new(&[geo.o], f(gb))?,
    })
}

/// Calls `f(c, ki, kj, input_index)` for every in-bounds tap of output `(n, g, oy, ox)`.
fn for_each_tap(
    geo: &Geo,
    n: usize,
    g: usize,
    oy: usize,
    ox: usize,
    mut f: impl FnMut(usize, usize, usize, usize),
) {
    for c in 0..geo.cg {
        for ki in 0..geo.kh {
            let iy = (oy * geo.sh + ki * geo.dh) as isize - geo.pt as isize;
            if iy < 0 || iy as usize >= geo.h {
                continue;
            }
            for kj in 0..geo.kw {
                let ix = (ox * geo.sw + kj * geo.dw) as isize - geo.pl as isize;
                if ix < 0 || ix as usize >= geo.w {
                    continue;
                }
                let xi = ((n * geo.c + g * geo.cg + c) * geo.h + iy as usize) * geo.w + ix as usize;
                f(c, ki, kj, xi);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use crate::testing::assert_close;

    fn rand_tensor(rng: &mut Rng, dims: &[usize]) -> Tensor {
        let n = dims.iter().product();
        Tensor::new(dims, (0..n).map(|_| rng.normal()).collect()).unwrap()
    }

    /// Forward, per-image forward and backward against the direct loops.
    fn check(p: Conv2dParams, n: usize, h: usize, w: usize, seed: u64) {
        let mut rng = Rng::seed_from_u64(seed);
        let x = rand_tensor(&mut rng, &[n, p.in_channels, h, w]);
        let wt = rand_tensor(&mut rng, &p.weight_dims());
        let b: Vec<f32> = (0..p.out_channels).map(|_| rng.normal()).collect();
        let y = conv2d_forward(&x, &wt, Some(&b), &p).unwrap();
        let yr = conv2d_forward_reference(&x, &wt, Some(&b), &p).unwrap();
        let tol = 1e-5 * (p.patch_len() as f32).sqrt();
        assert_eq!(y.dims(), yr.dims());
        assert_close(y.data(), yr.data(), tol, tol);
        let yp = conv2d_forward_per_image(&x, &wt, Some(&b), &p).unwrap();
        assert_close(yp.data(), yr.data(), tol, tol);
        let gy = rand_tensor(&mut rng, y.dims());
        let g = conv2d_grads(&x, &wt, &gy, &p).unwrap();
        let gr = conv2d_grads_reference(&x, &wt, &gy, &p).unwrap();
        let big = 1e-5 * ((n * y.dims()[2] * y.dims()[3]) as f32).sqrt();
        assert_close(g.input.data(), gr.input.data(), tol, tol);
        assert_close(g.weight.data(), gr.weight.data(), big, big);
        assert_close(g.bias.data(), gr.bias.data(), big, big);
    }

    #[test]
    fn plain_3x3() {
        check(Conv2dParams::new(3, 4, (3, 3)), 2, 7, 6, 1);
    }

    #[test]
    fn lenet5_conv_shapes() {
        check(Conv2dParams::new(1, 20, (5, 5)), 3, 28, 28, 2);
        check(Conv2dParams::new(20, 50, (5, 5)), 3, 12, 12, 3);
    }

    #[test]
    fn stride_padding_dilation_groups() {
        let p = Conv2dParams::new(4, 6, (3, 2))
            .with_stride((2, 3))
            .with_padding(Padding {
                top: 1,
                bottom: 2,
                left: 0,
                right: 3,
            })
            .with_dilation((2, 1))
            .with_groups(2);
        check(p, 3, 9, 10, 4);
    }

    #[test]
    fn depthwise_and_pointwise() {
        let dw = Conv2dParams::new(5, 5, (3, 3))
            .with_padding(Padding::symmetric(2))
            .with_dilation((2, 2))
            .with_groups(5);
        check(dw, 2, 6, 5, 5);
        check(
            Conv2dParams::new(6, 3, (1, 1)).with_stride((2, 2)),
            2,
            5,
            5,
            6,
        );
    }

    #[test]
    fn many_images_span_several_blocks() {
        // 20*25 rows * 64 positions = 32,000 floats per image: 8 images per block.
        let p = Conv2dParams::new(20, 8, (5, 5));
        assert!(block_images(p.patch_len(), 64, 70) < 70);
        check(p, 70, 12, 12, 7);
    }

    #[test]
    fn padding_larger_than_input_and_one_pixel_output() {
        check(
            Conv2dParams::new(2, 3, (3, 3)).with_padding(Padding::symmetric(3)),
            1,
            1,
            2,
            8,
        );
        check(Conv2dParams::new(2, 3, (4, 4)), 2, 4, 4, 9);
    }

    #[test]
    fn output_size_formula_and_errors() {
        let p = Conv2dParams::new(1, 1, (3, 3))
            .with_stride((2, 2))
            .with_padding(Padding::symmetric(1));
        assert_eq!(p.output_hw(28, 28).unwrap(), (14, 14));
        assert!(Conv2dParams::new(1, 1, (5, 5)).output_hw(4, 8).is_err());
        assert!(
            Conv2dParams::new(3, 4, (3, 3))
                .with_groups(2)
                .validate()
                .is_err()
        );
        assert!(Conv2dParams::new(1, 1, (0, 3)).validate().is_err());
        assert!(
            Conv2dParams::new(1, 1, (3, 3))
                .with_stride((0, 1))
                .validate()
                .is_err()
        );
        let x = Tensor::zeros_dims(&[1, 2, 5, 5]).unwrap();
        let w = Tensor::zeros_dims(&[1, 1, 3, 3]).unwrap();
        assert!(conv2d_forward(&x, &w, None, &Conv2dParams::new(1, 1, (3, 3))).is_err());
        let p2 = Conv2dParams::new(2, 1, (3, 3));
        assert!(matches!(
            conv2d_forward(&x, &w, None, &p2),
            Err(TensorError::ShapeMismatch { .. })
        ));
        let w2 = Tensor::zeros_dims(&[1, 2, 3, 3]).unwrap();
        assert!(conv2d_forward(&x, &w2, Some(&[0.0, 0.0]), &p2).is_err());
        let bad_gy = Tensor::zeros_dims(&[1, 1, 2, 2]).unwrap();
        assert!(conv2d_grads(&x, &w2, &bad_gy, &p2).is_err());
    }

    #[test]
    fn window_len_ceil_mode() {
        // ONNX: 5 wide, kernel 2, stride 2: floor 2, ceil 3.
        assert_eq!(window_out_len(5, 2, 2, 1, 0, 0, false), Some(2));
        assert_eq!(window_out_len(5, 2, 2, 1, 0, 0, true), Some(3));
        // A last window starting in the end padding is dropped.
        assert_eq!(window_out_len(4, 2, 2, 1, 0, 1, true), Some(2));
        assert_eq!(window_out_len(2, 3, 1, 1, 0, 0, false), None);
        assert_eq!(window_out_len(usize::MAX, 3, 1, 1, 1, 0, false), None);
    }
}
