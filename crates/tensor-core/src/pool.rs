//! 2-D max and average pooling (NCHW), forward and backward, and global average pooling.
//!
//! A window of `kernel` taps spaced by `dilation` slides with `stride` over the input padded
//! by [`Padding`]; the output size is [`crate::conv::window_out_len`] (floor, or ceil as
//! ONNX `ceil_mode`). Max pooling ignores padding (it counts as -inf) and returns, for each
//! output, the index of its maximum within the input plane (first maximum on ties), which
//! the backward pass routes the gradient to. Average pooling divides by the number of
//! in-bounds taps, or with `count_include_pad` by the taps inside the padded extent
//! (PyTorch's and ONNX's convention). Planes (`N*C` of them) run in parallel.

use rayon::prelude::*;

use crate::conv::{Padding, window_out_hw};
use crate::error::TensorError;
use crate::shape::Shape;
use crate::tensor::Tensor;

/// Planes per rayon task so that each task does at least ~16K taps: smaller pooling layers
/// (batch-1 inference) then run on one thread instead of paying a fork/join per plane.
fn min_planes(taps_per_plane: usize) -> usize {
    ((1 << 14) / taps_per_plane.max(1)).max(1)
}

/// The geometry of a pooling window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Pool2dParams {
    /// Window height and width.
    pub kernel: (usize, usize),
    /// Vertical and horizontal stride.
    pub stride: (usize, usize),
    /// Padding (not counted by max pooling; by average pooling only with
    /// `count_include_pad`).
    pub padding: Padding,
    /// Spacing of the window taps (ONNX `dilations`; 1 = contiguous).
    pub dilation: (usize, usize),
    /// Round the output size up (ONNX `ceil_mode`).
    pub ceil_mode: bool,
}

impl Pool2dParams {
    /// A `kernel` window with stride = kernel (PyTorch's default), no padding.
    pub fn new(kernel: (usize, usize)) -> Self {
        Self {
            kernel,
            stride: kernel,
            padding: Padding::default(),
            dilation: (1, 1),
            ceil_mode: false,
        }
    }

    /// With stride.
    pub fn with_stride(self, stride: (usize, usize)) -> Self {
        Self { stride, ..self }
    }

    /// With padding.
    pub fn with_padding(self, padding: Padding) -> Self {
        Self { padding, ..self }
    }

    /// With dilation.
    pub fn with_dilation(self, dilation: (usize, usize)) -> Self {
        Self { dilation, ..self }
    }

    /// With ceil mode.
    pub fn with_ceil_mode(self, ceil_mode: bool) -> Self {
        Self { ceil_mode, ..self }
    }

    /// Checks positivity and that each padding side is smaller than the window span (so
    /// every window holds at least one input element).
    pub fn validate(&self) -> Result<(), TensorError> {
        let bad = |reason: String| TensorError::InvalidArgument {
            op: "pool2d",
            reason,
        };
        let (kh, kw) = self.kernel;
        if kh == 0 || kw == 0 || self.stride.0 == 0 || self.stride.1 == 0 {
            return Err(bad(format!(
                "kernel {:?} and stride {:?} must be positive",
                self.kernel, self.stride
            )));
        }
        if self.dilation.0 == 0 || self.dilation.1 == 0 {
            return Err(bad(format!(
                "dilation {:?} must be positive",
                self.dilation
            )));
        }
        let span_h = (kh - 1).saturating_mul(self.dilation.0).saturating_add(1);
        let span_w = (kw - 1).saturating_mul(self.dilation.1).saturating_add(1);
        let p = self.padding;
        if p.top >= span_h || p.bottom >= span_h || p.left >= span_w || p.right >= span_w {
            return Err(bad(format!(
                "padding {p:?} must be smaller than the window span {span_h}x{span_w}"
            )));
        }
        Ok(())
    }

    /// The output dimensions `[N, C, OH, OW]` for an input `[N, C, H, W]`.
    pub fn output_dims(&self, input: &Shape) -> Result<[usize; 4], TensorError> {
        self.validate()?;
        if input.rank() != 4 {
            return Err(TensorError::RankMismatch {
                op: "pool2d",
                expected: 4,
                shape: input.clone(),
            });
        }
        let d = input.dims();
        let out = window_out_hw(
            (d[2], d[3]),
            self.kernel,
            self.stride,
            self.dilation,
            self.padding,
            self.ceil_mode,
        );
        match out {
            Some((oh, ow)) => {
                Shape::new(&[d[0], d[1], oh, ow])?;
                Ok([d[0], d[1], oh, ow])
            }
            None => Err(TensorError::InvalidArgument {
                op: "pool2d",
                reason: format!("window {self:?} does not fit input {input}"),
            }),
        }
    }
}

/// The in-bounds taps of output row/column `o` along one axis: `(first input index, count)`
/// stepping by `dilation`, plus the tap count inside the padded extent (for
/// `count_include_pad`).
#[derive(Clone, Copy, Debug)]
struct Taps {
    /// Signed input coordinate of the first tap.
    start: isize,
    /// First in-bounds tap number and one past the last.
    lo: usize,
    hi: usize,
    /// Taps inside `[-pad_begin, len + pad_end)`.
    padded: usize,
}

fn taps(
    o: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad_begin: usize,
    pad_end: usize,
    len: usize,
) -> Taps {
    let start = (o * stride) as isize - pad_begin as isize;
    let (mut lo, mut hi, mut padded) = (kernel, 0, 0);
    for t in 0..kernel {
        let i = start + (t * dilation) as isize;
        if i >= 0 && (i as usize) < len {
            lo = lo.min(t);
            hi = t + 1;
        }
        if i < (len + pad_end) as isize {
            padded += 1;
        }
    }
    Taps {
        start,
        lo: lo.min(hi),
        hi,
        padded,
    }
}

/// Per-axis tap tables for all output rows and columns.
fn tap_tables(
    p: &Pool2dParams,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
) -> (Vec<Taps>, Vec<Taps>) {
    let pad = p.padding;
    let rows = (0..oh)
        .map(|o| {
            taps(
                o,
                p.kernel.0,
                p.stride.0,
                p.dilation.0,
                pad.top,
                pad.bottom,
                h,
            )
        })
        .collect();
    let cols = (0..ow)
        .map(|o| {
            taps(
                o,
                p.kernel.1,
                p.stride.1,
                p.dilation.1,
                pad.left,
                pad.right,
                w,
            )
        })
        .collect();
    (rows, cols)
}

/// Max pooling forward: returns the output `[N, C, OH, OW]` and, for each output, the index
/// of its maximum within its input plane (`iy * W + ix`). NaN propagates (a NaN tap wins).
pub fn max_pool2d_forward(
    input: &Tensor,
    p: &Pool2dParams,
) -> Result<(Tensor, Vec<u32>), TensorError> {
    let [n, c, oh, ow] = p.output_dims(input.shape())?;
    let (h, w) = (input.dims()[2], input.dims()[3]);
    if h * w > u32::MAX as usize {
        return Err(TensorError::InvalidArgument {
            op: "max_pool2d",
            reason: format!("plane {h}x{w} too large for u32 argmax indices"),
        });
    }
    let mut y = Tensor::zeros_dims(&[n, c, oh, ow])?;
    let mut idx = crate::zeroed_vec::<u32>(n * c * oh * ow);
    let op = oh * ow;
    if op == 0 || h * w == 0 {
        return Ok((y, idx));
    }
    if is_plain_2x2(p, h, w, oh, ow) {
        max_pool_2x2(input.data(), h, w, oh, ow, y.data_mut(), &mut idx);
    } else {
        max_pool_general(input.data(), p, h, w, oh, ow, y.data_mut(), &mut idx);
    }
    Ok((y, idx))
}

/// Whether `p` is PyTorch's `MaxPool2d(2)` on this plane: a 2x2 window, stride 2, no
/// padding or dilation, every window inside the `h x w` plane (floor mode, or ceil mode where
/// it rounds to the same size).
fn is_plain_2x2(p: &Pool2dParams, h: usize, w: usize, oh: usize, ow: usize) -> bool {
    p.kernel == (2, 2)
        && p.stride == (2, 2)
        && p.dilation == (1, 1)
        && p.padding == Padding::default()
        && 2 * oh <= h
        && 2 * ow <= w
}

/// The 2x2 stride-2 max pool with argmax (the pools of lenet5 and cnn-teacher), unrolled: the
/// general loop's tap tables and range checks cost more than the four compares (lenet5
/// training on the 2-core EPYC: the general form took 9.6% of an epoch). Same results as
/// [`max_pool_general`] bit for bit: ties keep the first tap in row-major order, and the first
/// NaN wins.
fn max_pool_2x2(
    x: &[f32],
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    y: &mut [f32],
    idx: &mut [u32],
) {
    let (op, plane) = (oh * ow, h * w);
    let offsets = [0u32, 1, w as u32, w as u32 + 1];
    y.par_chunks_mut(op)
        .zip(idx.par_chunks_mut(op))
        .with_min_len(min_planes(op * 4))
        .enumerate()
        .for_each(|(pi, (yo, io))| {
            let src = &x[pi * plane..(pi + 1) * plane];
            for oy in 0..oh {
                let r0 = &src[2 * oy * w..2 * oy * w + 2 * ow];
                let r1 = &src[(2 * oy + 1) * w..(2 * oy + 1) * w + 2 * ow];
                let base = (2 * oy * w) as u32;
                let outs = yo[oy * ow..(oy + 1) * ow]
                    .iter_mut()
                    .zip(&mut io[oy * ow..(oy + 1) * ow]);
                for (ox, (yv, iv)) in outs.enumerate() {
                    let taps = [r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]];
                    let (mut best, mut k) = (taps[0], 0usize);
                    for (t, &v) in taps.iter().enumerate().skip(1) {
                        let take = v > best;
                        best = if take { v } else { best };
                        k = if take { t } else { k };
                    }
                    if let Some(t) = taps.iter().position(|v| v.is_nan()) {
                        (best, k) = (f32::NAN, t);
                    }
                    *yv = best;
                    *iv = base + 2 * ox as u32 + offsets[k];
                }
            }
        });
}

/// Max pooling with argmax over the tap tables: any geometry.
#[allow(clippy::too_many_arguments)]
fn max_pool_general(
    x: &[f32],
    p: &Pool2dParams,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    y: &mut [f32],
    idx: &mut [u32],
) {
    let op = oh * ow;
    let (rows, cols) = tap_tables(p, h, w, oh, ow);
    let (dh, dw) = p.dilation;
    y.par_chunks_mut(op)
        .zip(idx.par_chunks_mut(op))
        .with_min_len(min_planes(op * p.kernel.0 * p.kernel.1))
        .enumerate()
        .for_each(|(pi, (yo, io))| {
            let src = &x[pi * h * w..(pi + 1) * h * w];
            for (oy, ry) in rows.iter().enumerate() {
                for (ox, rx) in cols.iter().enumerate() {
                    // Branch-free: a data-dependent branch per tap mispredicts on random
                    // data (lenet5.pool1 forward, batch 64, on the 2-core Xeon: 9.2 ms with
                    // an `if v > best` select, 2.3 ms in this form).
                    // `arg` moves to a tap only when it is strictly larger, so ties keep the
                    // first; NaN (ignored by `max` and `>`) is handled after the loop.
                    let mut best = f32::NEG_INFINITY;
                    let mut arg = u32::MAX;
                    let mut has_nan = false;
                    for ty in ry.lo..ry.hi {
                        let iy = (ry.start + (ty * dh) as isize) as usize;
                        for tx in rx.lo..rx.hi {
                            let i = (iy * w + (rx.start + (tx * dw) as isize) as usize) as u32;
                            let v = src[i as usize];
                            let take = ((v > best) | (arg == u32::MAX)) as u32;
                            arg = arg.wrapping_add(take.wrapping_mul(i.wrapping_sub(arg)));
                            best = best.max(v);
                            has_nan |= v.is_nan();
                        }
                    }
                    if has_nan {
                        // The first NaN wins (NaN propagates, as in PyTorch).
                        'find: for ty in ry.lo..ry.hi {
                            let iy = (ry.start + (ty * dh) as isize) as usize;
                            for tx in rx.lo..rx.hi {
                                let i = iy * w + (rx.start + (tx * dw) as isize) as usize;
                                if src[i].is_nan() {
                                    arg = i as u32;
                                    break 'find;
                                }
                            }
                        }
                        best = f32::NAN;
                    }
                    yo[oy * ow + ox] = best;
                    io[oy * ow + ox] = arg;
                }
            }
        });
}

/// Max pooling backward: adds each output gradient to the input element its `argmax` names
/// (from [`max_pool2d_forward`]); returns the input gradient of shape `input_shape`.
pub fn max_pool2d_backward(
    grad_output: &Tensor,
    argmax: &[u32],
    input_shape: &Shape,
    p: &Pool2dParams,
) -> Result<Tensor, TensorError> {
    let dims = p.output_dims(input_shape)?;
    if grad_output.dims() != dims {
        return Err(TensorError::ShapeMismatch {
            op: "max_pool2d backward: grad_output",
            lhs: grad_output.shape().clone(),
            rhs: Shape::new(&dims)?,
        });
    }
    if argmax.len() != grad_output.numel() {
        return Err(TensorError::DataLength {
            op: "max_pool2d backward: argmax",
            len: argmax.len(),
            expected: grad_output.numel(),
            shape: grad_output.shape().clone(),
        });
    }
    let plane = input_shape.dims()[2] * input_shape.dims()[3];
    let op = dims[2] * dims[3];
    if op == 0 || plane == 0 {
        return Ok(Tensor::zeros(input_shape.clone()));
    }
    let g = grad_output.data();
    // Tasks of `per` planes, each zeroed just before its gradients are scattered into it.
    let per = min_planes(plane);
    let gx = crate::par_zeroed_chunks(input_shape.numel(), per * plane, |t, dsts| {
        for (j, dst) in dsts.chunks_exact_mut(plane).enumerate() {
            let pi = t * per + j;
            for (k, &a) in argmax[pi * op..(pi + 1) * op].iter().enumerate() {
                if a == u32::MAX {
                    // A window with no in-bounds tap (possible with dilation on a tiny
                    // input): its output is -inf and its gradient goes nowhere.
                    continue;
                }
                match dst.get_mut(a as usize) {
                    Some(d) => *d += g[pi * op + k],
                    None => {
                        return Err(TensorError::InvalidArgument {
                            op: "max_pool2d backward",
                            reason: format!("argmax index {a} outside a plane of {plane}"),
                        });
                    }
                }
            }
        }
        Ok(())
    })?;
    Tensor::from_vec(input_shape.clone(), gx)
}

/// The divisor of each output position of average pooling, per axis product.
fn avg_divisor(ry: &Taps, rx: &Taps, count_include_pad: bool) -> f32 {
    let n = if count_include_pad {
        ry.padded * rx.padded
    } else {
        (ry.hi - ry.lo) * (rx.hi - rx.lo)
    };
    1.0 / n.max(1) as f32
}

/// Average pooling forward.
pub fn avg_pool2d_forward(
    input: &Tensor,
    p: &Pool2dParams,
    count_include_pad: bool,
) -> Result<Tensor, TensorError> {
    let [n, c, oh, ow] = p.output_dims(input.shape())?;
    let (h, w) = (input.dims()[2], input.dims()[3]);
    let mut y = Tensor::zeros_dims(&[n, c, oh, ow])?;
    let op = oh * ow;
    if op == 0 || h * w == 0 {
        return Ok(y);
    }
    let (rows, cols) = tap_tables(p, h, w, oh, ow);
    let (dh, dw) = p.dilation;
    let x = input.data();
    y.data_mut()
        .par_chunks_mut(op)
        .with_min_len(min_planes(op * p.kernel.0 * p.kernel.1))
        .enumerate()
        .for_each(|(pi, yo)| {
            let src = &x[pi * h * w..(pi + 1) * h * w];
            for (oy, ry) in rows.iter().enumerate() {
                for (ox, rx) in cols.iter().enumerate() {
                    let mut acc = 0.0f32;
                    for ty in ry.lo..ry.hi {
                        let iy = (ry.start + (ty * dh) as isize) as usize;
                        for tx in rx.lo..rx.hi {
                            let ix = (rx.start + (tx * dw) as isize) as usize;
                            acc += src[iy * w + ix];
                        }
                    }
                    yo[oy * ow + ox] = acc * avg_divisor(ry, rx, count_include_pad);
                }
            }
        });
    Ok(y)
}

/// Average pooling backward: spreads each output gradient over its window's in-bounds taps,
/// divided as in the forward pass.
pub fn avg_pool2d_backward(
    grad_output: &Tensor,
    input_shape: &Shape,
    p: &Pool2dParams,
    count_include_pad: bool,
) -> Result<Tensor, TensorError> {
    let [_, _, oh, ow] = p.output_dims(input_shape)?;
    let dims = p.output_dims(input_shape)?;
    if grad_output.dims() != dims {
        return Err(TensorError::ShapeMismatch {
            op: "avg_pool2d backward: grad_output",
            lhs: grad_output.shape().clone(),
            rhs: Shape::new(&dims)?,
        });
    }
    let (h, w) = (input_shape.dims()[2], input_shape.dims()[3]);
    let mut gx = Tensor::zeros(input_shape.clone());
    let op = oh * ow;
    if op == 0 || h * w == 0 {
        return Ok(gx);
    }
    let (rows, cols) = tap_tables(p, h, w, oh, ow);
    let (dh, dw) = p.dilation;
    let g = grad_output.data();
    gx.data_mut()
        .par_chunks_mut(h * w)
        .with_min_len(min_planes(op * p.kernel.0 * p.kernel.1))
        .enumerate()
        .for_each(|(pi, dst)| {
            let go = &g[pi * op..(pi + 1) * op];
            for (oy, ry) in rows.iter().enumerate() {
                for (ox, rx) in cols.iter().enumerate() {
                    let v = go[oy * ow + ox] * avg_divisor(ry, rx, count_include_pad);
                    for ty in ry.lo..ry.hi {
                        let iy = (ry.start + (ty * dh) as isize) as usize;
                        for tx in rx.lo..rx.hi {
                            let ix = (rx.start + (tx * dw) as isize) as usize;
                            dst[iy * w + ix] += v;
                        }
                    }
                }
            }
        });
    Ok(gx)
}

fn check_rank4(op: &'static str, s: &Shape) -> Result<(), TensorError> {
    if s.rank() != 4 {
        return Err(TensorError::RankMismatch {
            op,
            expected: 4,
            shape: s.clone(),
        });
    }
    Ok(())
}

/// Global average pooling: `[N, C, H, W] -> [N, C, 1, 1]`, the mean of each plane.
pub fn global_avg_pool_forward(input: &Tensor) -> Result<Tensor, TensorError> {
    check_rank4("global_avg_pool", input.shape())?;
    let d = input.dims();
    let plane = d[2] * d[3];
    let mut y = Tensor::zeros_dims(&[d[0], d[1], 1, 1])?;
    if plane == 0 {
        return Ok(y);
    }
    let inv = 1.0 / plane as f64;
    for (v, src) in y
        .data_mut()
        .iter_mut()
        .zip(input.data().chunks_exact(plane))
    {
        *v = (src.iter().map(|&x| x as f64).sum::<f64>() * inv) as f32;
    }
    Ok(y)
}

/// Global average pooling backward: each input element receives its plane's output
/// gradient divided by `H*W`.
pub fn global_avg_pool_backward(
    grad_output: &Tensor,
    input_shape: &Shape,
) -> Result<Tensor, TensorError> {
    check_rank4("global_avg_pool backward", input_shape)?;
    let d = input_shape.dims();
    if grad_output.dims() != [d[0], d[1], 1, 1] {
        return Err(TensorError::ShapeMismatch {
            op: "global_avg_pool backward: grad_output",
            lhs: grad_output.shape().clone(),
            rhs: Shape::new(&[d[0], d[1], 1, 1])?,
        });
    }
    let plane = d[2] * d[3];
    let mut gx = Tensor::zeros(input_shape.clone());
    if plane == 0 {
        return Ok(gx);
    }
    let inv = 1.0 / plane as f32;
    for (dst, &g) in gx
        .data_mut()
        .chunks_exact_mut(plane)
        .zip(grad_output.data())
    {
        dst.fill(g * inv);
    }
    Ok(gx)
}

/// Direct-loop pooling reference (tests): max or average over every tap, with padding
/// handled by explicit bounds checks per tap. Returns the output and the max indices.
#[doc(hidden)]
pub fn pool2d_reference(
    input: &Tensor,
    p: &Pool2dParams,
    average: bool,
    count_include_pad: bool,
) -> Result<(Tensor, Vec<u32>), TensorError> {
    let [n, c, oh, ow] = p.output_dims(input.shape())?;
    let (h, w) = (input.dims()[2] as isize, input.dims()[3] as isize);
    let mut y = Tensor::zeros_dims(&[n, c, oh, ow])?;
    let mut idx = vec![u32::MAX; y.numel()];
    let x = input.data();
    let pad = p.padding;
    for pi in 0..n * c {
        for oy in 0..oh {
            for ox in 0..ow {
                let (mut best, mut arg, mut sum, mut cnt, mut cnt_pad) =
                    (f32::NEG_INFINITY, u32::MAX, 0.0f64, 0usize, 0usize);
                for ky in 0..p.kernel.0 {
                    for kx in 0..p.kernel.1 {
                        let iy = (oy * p.stride.0 + ky * p.dilation.0) as isize - pad.top as isize;
                        let ix = (ox * p.stride.1 + kx * p.dilation.1) as isize - pad.left as isize;
                        if iy < h + pad.bottom as isize && ix < w + pad.right as isize {
                            cnt_pad += 1;
                        }
                        if iy < 0 || ix < 0 || iy >= h || ix >= w {
                            continue;
                        }
                        let flat = (iy * w + ix) as usize;
                        let v = x[pi * (h * w) as usize + flat];
                        cnt += 1;
                        sum += v as f64;
                        if arg == u32::MAX || v > best {
                            best = v;
                            arg = flat as u32;
                        }
                    }
                }
                let o = (pi * oh + oy) * ow + ox;
                y.data_mut()[o] = if average {
                    let d = if count_include_pad { cnt_pad } else { cnt };
                    (sum / d.max(1) as f64) as f32
                } else {
                    best
                };
                idx[o] = arg;
            }
        }
    }
    Ok((y, idx))
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

    /// Forward against the reference; backward against the adjoint identity
    /// `<backward(g), x> == <g, forward_linearized(x)>` computed from the reference.
    fn check(p: Pool2dParams, dims: [usize; 4], seed: u64) {
        let mut rng = Rng::seed_from_u64(seed);
        let x = rand_tensor(&mut rng, &dims);
        let (y, idx) = max_pool2d_forward(&x, &p).unwrap();
        let (yr, idxr) = pool2d_reference(&x, &p, false, false).unwrap();
        assert_eq!(y.data(), yr.data(), "max forward {p:?}");
        assert_eq!(idx, idxr, "argmax {p:?}");
        let g = rand_tensor(&mut rng, y.dims());
        let gx = max_pool2d_backward(&g, &idx, x.shape(), &p).unwrap();
        // Reference backward: route each gradient to the reference argmax.
        let plane = dims[2] * dims[3];
        let op = y.dims()[2] * y.dims()[3];
        let mut want = vec![0.0f32; x.numel()];
        for (o, &a) in idxr.iter().enumerate() {
            want[(o / op) * plane + a as usize] += g.data()[o];
        }
        assert_close(gx.data(), &want, 1e-6, 1e-6);
        for cip in [false, true] {
            let ya = avg_pool2d_forward(&x, &p, cip).unwrap();
            let (yar, _) = pool2d_reference(&x, &p, true, cip).unwrap();
            assert_close(ya.data(), yar.data(), 1e-5, 1e-6);
            // Average pooling is linear: <A^T g, x> == <g, A x>.
            let gxa = avg_pool2d_backward(&g, x.shape(), &p, cip).unwrap();
            let lhs: f64 = gxa
                .data()
                .iter()
                .zip(x.data())
                .map(|(a, b)| (a * b) as f64)
                .sum();
            let rhs: f64 = g
                .data()
                .iter()
                .zip(yar.data())
                .map(|(a, b)| (a * b) as f64)
                .sum();
            assert!(
                (lhs - rhs).abs() < 1e-4 * (1.0 + rhs.abs()),
                "{lhs} vs {rhs} {p:?}"
            );
        }
    }

    #[test]
    fn lenet_pool() {
        check(Pool2dParams::new((2, 2)), [2, 3, 24, 24], 1);
        check(Pool2dParams::new((2, 2)), [2, 3, 7, 7], 2);
    }

    #[test]
    fn overlapping_and_padded_windows() {
        let p = Pool2dParams::new((3, 3))
            .with_stride((2, 2))
            .with_padding(Padding::symmetric(1));
        check(p, [2, 2, 9, 8], 3);
        let asym = Pool2dParams::new((3, 2))
            .with_stride((1, 3))
            .with_padding(Padding {
                top: 2,
                bottom: 0,
                left: 1,
                right: 1,
            });
        check(asym, [1, 2, 6, 7], 4);
    }

    #[test]
    fn ceil_mode_and_dilation() {
        check(
            Pool2dParams::new((2, 2)).with_ceil_mode(true),
            [1, 2, 5, 7],
            5,
        );
        let p = Pool2dParams::new((3, 3))
            .with_stride((2, 1))
            .with_dilation((2, 2))
            .with_padding(Padding::symmetric(1))
            .with_ceil_mode(true);
        check(p, [2, 1, 9, 8], 6);
    }

    #[test]
    fn count_include_pad_divisor() {
        // 1x1x2x2 of ones, 2x2 window, stride 2, padding 1: each output window holds one real
        // element and three padded ones.
        let x = Tensor::full(Shape::new(&[1, 1, 2, 2]).unwrap(), 1.0);
        let p = Pool2dParams::new((2, 2)).with_padding(Padding::symmetric(1));
        let y = avg_pool2d_forward(&x, &p, false).unwrap();
        assert_eq!(y.data(), &[1.0; 4]);
        let y = avg_pool2d_forward(&x, &p, true).unwrap();
        assert_eq!(y.data(), &[0.25; 4]);
    }

    #[test]
    fn global_average() {
        let x = Tensor::new(&[1, 2, 1, 3], vec![1.0, 2.0, 3.0, -1.0, 0.0, 4.0]).unwrap();
        let y = global_avg_pool_forward(&x).unwrap();
        assert_eq!(y.dims(), &[1, 2, 1, 1]);
        assert_eq!(y.data(), &[2.0, 1.0]);
        let g = Tensor::new(&[1, 2, 1, 1], vec![3.0, 6.0]).unwrap();
        let gx = global_avg_pool_backward(&g, x.shape()).unwrap();
        assert_eq!(gx.data(), &[1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
        assert!(global_avg_pool_forward(&Tensor::zeros_dims(&[2, 3]).unwrap()).is_err());
    }

    #[test]
    fn invalid_geometry_and_bad_argmax_are_errors() {
        let x = Tensor::zeros_dims(&[1, 1, 4, 4]).unwrap();
        assert!(max_pool2d_forward(&x, &Pool2dParams::new((5, 5))).is_err());
        assert!(max_pool2d_forward(&x, &Pool2dParams::new((0, 2))).is_err());
        let big_pad = Pool2dParams::new((2, 2)).with_padding(Padding::symmetric(2));
        assert!(max_pool2d_forward(&x, &big_pad).is_err());
        let p = Pool2dParams::new((2, 2));
        let g = Tensor::zeros_dims(&[1, 1, 2, 2]).unwrap();
        assert!(max_pool2d_backward(&g, &[0, 1, 99, 3], x.shape(), &p).is_err());
        assert!(max_pool2d_backward(&g, &[0, 1], x.shape(), &p).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// The unrolled 2x2 pool equals the general loop bit for bit (values and argmax) on
        /// data full of ties, infinities and NaN, odd and even plane sizes.
        #[test]
        fn plain_2x2_equals_the_general_loop(
            n in 1usize..3, c in 1usize..4, h in 2usize..11, w in 2usize..11,
            seed in proptest::prelude::any::<u64>(),
        ) {
            let vals = [-1.0f32, 0.0, 1.0, 1.0, f32::NEG_INFINITY, f32::INFINITY, f32::NAN, -0.0];
            let mut rng = Rng::seed_from_u64(seed);
            let data: Vec<f32> = (0..n * c * h * w).map(|_| vals[rng.below(8)]).collect();
            let x = Tensor::new(&[n, c, h, w], data).unwrap();
            let p = Pool2dParams::new((2, 2));
            let [_, _, oh, ow] = p.output_dims(x.shape()).unwrap();
            proptest::prop_assert!(is_plain_2x2(&p, h, w, oh, ow));
            let (y, idx) = max_pool2d_forward(&x, &p).unwrap();
            let mut yg = vec![0.0f32; y.numel()];
            let mut ig = vec![0u32; y.numel()];
            max_pool_general(x.data(), &p, h, w, oh, ow, &mut yg, &mut ig);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            proptest::prop_assert_eq!(bits(y.data()), bits(&yg));
            proptest::prop_assert_eq!(idx, ig);
        }
    }

    #[test]
    fn nan_propagates_through_max() {
        let x = Tensor::new(&[1, 1, 1, 2], vec![f32::NAN, 1.0]).unwrap();
        let (y, _) = max_pool2d_forward(&x, &Pool2dParams::new((1, 2))).unwrap();
        assert!(y.data()[0].is_nan());
    }
}
