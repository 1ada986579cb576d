//! The forward convolution with a fused epilogue (bias, ReLU, 2x2 max pool), dispatched:
//! the direct kernel (`direct`: AVX-512 F or AVX2 + FMA) where it applies, im2col + GEMM and
//! separate passes otherwise.

use std::cell::RefCell;
use std::ops::Range;

use super::direct::blocked::{PAIR, WIDTHS};
use super::direct::{Direct, NP, OB, PackedConvWeights};
use super::{Conv2dParams, check_bias, conv2d_forward};
use crate::activation::relu_inplace;
use crate::dispatch::{F32Path, KernelPath};
use crate::duo;
use crate::error::TensorError;
use crate::pool::{Pool2dParams, max_pool2d_forward};
use crate::shape::Shape;
use crate::tensor::Tensor;

/// What follows the convolution inside the same pass: `y = pool(relu(conv(x) + b))`, each
/// step optional. ReLU is `max(v, 0)` with NaN kept; the pool is PyTorch's `MaxPool2d(2)`
/// (2x2 window, stride 2, no padding, floor mode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConvEpilogue {
    /// Apply ReLU after the bias.
    pub relu: bool,
    /// Then a 2x2 stride-2 max pool.
    pub max_pool_2x2: bool,
}

impl ConvEpilogue {
    /// The pool the epilogue applies, as [`Pool2dParams`].
    pub fn pool_params() -> Pool2dParams {
        Pool2dParams::new((2, 2))
    }
}

/// Whether the direct kernel computes `p` (stride 1, no dilation, one group).
pub fn direct_applies(p: &Conv2dParams) -> bool {
    p.stride == (1, 1) && p.dilation == (1, 1) && p.groups == 1
}

/// Multiply-accumulates of one image below which a batch-1 call stays on the calling thread;
/// from it the image is split between the caller and the [`duo`](crate::duo) helper (a round
/// trip of ~0.4 us when the helper is awake, against ~15 us for a rayon fork/join that wakes
/// a sleeping worker): by output-channel tiles when they share evenly (16 channels on AVX2,
/// pairs of 16 on AVX-512), else by output rows (an even count when pooling), each half
/// padding only the input rows it reads into its own thread's buffer.
///
/// 2^17 splits every convolution of the zoo, the one-input-channel first layers (0.23-0.45 M)
/// included. Session 13, 2 threads, `slimnet bench --batch 1` medians of 5 interleaved runs
/// at real-time priority (`chrt -f 10`; load average 9-11 from other builds): 100 K (the
/// same layers as 2^17) against 2^20 gave lenet5 40.3-42.7 against 42.1-48.3 us, the wide
/// teacher 603-624 against 620-641 us, cnn-teacher within the noise (191-225 against 182-210
/// us); 2^21 (cnn-teacher conv2-4 only) lenet5 49.6-54.0 us. Sessions 11-12 measured rayon splits from 2^20 slower
/// than none (lenet5 117-119 against 87-92 us).
pub const DIRECT_PAR_MIN_MACS: usize = 1 << 17;

/// `pool(relu(conv(input) + bias))` on the selected f32 path ([`F32Path::selected`]): the
/// direct kernel when [`direct_applies`] and the CPU has AVX2 + FMA, else im2col + GEMM and
/// separate passes. `packed`, when given, must be `weight` packed ([`PackedConvWeights::pack`]);
/// without it the direct kernel packs per call.
pub fn conv2d_forward_fused(
    input: &Tensor,
    weight: &Tensor,
    packed: Option<&PackedConvWeights>,
    bias: Option<&[f32]>,
    p: &Conv2dParams,
    epi: ConvEpilogue,
) -> Result<Tensor, TensorError> {
    conv2d_forward_fused_with(F32Path::selected(), input, weight, packed, bias, p, epi)
}

/// [`conv2d_forward_fused`] on an explicit path: `Portable` runs im2col + GEMM (faer) then
/// the epilogue's passes; where the direct kernel applies, `Avx2Fma` runs its AVX2 twin
/// (16 channels x 6 positions) and `Avx512F` the 512-bit kernel on the channel-blocked image
/// (32 channels x up to 14 positions of a row; layers of one input channel keep the AVX2
/// twin), all with the AVX2 epilogue. Errors if the CPU lacks the path, as
/// the convolution does on bad shapes, or if `packed` is not `weight`'s shape.
pub fn conv2d_forward_fused_with(
    path: F32Path,
    input: &Tensor,
    weight: &Tensor,
    packed: Option<&PackedConvWeights>,
    bias: Option<&[f32]>,
    p: &Conv2dParams,
    epi: ConvEpilogue,
) -> Result<Tensor, TensorError> {
    path.require("conv2d_forward_fused")?;
    let [n, o, oh, ow] = p.output_dims(input.shape())?;
    let out_dims = if epi.max_pool_2x2 {
        ConvEpilogue::pool_params().output_dims(&Shape::new(&[n, o, oh, ow])?)?
    } else {
        [n, o, oh, ow]
    };
    // The epilogue is AVX2 + FMA code: an AVX-512 path needs them too (every AVX-512 CPU has
    // them).
    let direct = path != F32Path::Portable
        && F32Path::Avx2Fma.is_supported()
        && direct_applies(p)
        && cfg!(target_arch = "x86_64");
    if !direct {
        let mut y = conv2d_forward(input, weight, bias, p)?;
        if epi.relu {
            relu_inplace(y.data_mut());
        }
        if epi.max_pool_2x2 {
            y = max_pool2d_forward(&y, &ConvEpilogue::pool_params())?.0;
        }
        return Ok(y);
    }
    if weight.dims() != p.weight_dims() {
        return Err(TensorError::ShapeMismatch {
            op: "conv2d: weight",
            lhs: weight.shape().clone(),
            rhs: Shape::new(&p.weight_dims())?,
        });
    }
    check_bias(bias, o, "conv2d: bias")?;
    if let Some(pk) = packed
        && pk.weight_dims() != p.weight_dims()
    {
        return Err(TensorError::ShapeMismatch {
            op: "conv2d: packed weights",
            lhs: Shape::new(&pk.weight_dims())?,
            rhs: Shape::new(&p.weight_dims())?,
        });
    }
    if super::spatial::applies(path, p, epi) {
        return super::spatial::forward(input, weight.data(), bias, p, epi, &out_dims);
    }
    if super::winograd::dispatches(path, p) {
        // Without packed weights (training: new weights every step) only the Winograd
        // transform is made, not the direct kernel's packing as well.
        let fresh = std::sync::OnceLock::new();
        let cache = packed.map_or(&fresh, PackedConvWeights::winograd_cell);
        return super::winograd::forward(input, weight.data(), cache, bias, p, epi, &out_dims);
    }
    let owned;
    let packed = match packed {
        Some(pk) => pk,
        None => {
            owned = PackedConvWeights::pack(weight.data(), p)?;
            &owned
        }
    };
    let d = input.dims();
    // One-input-channel layers (the first convolution of lenet5 and cnn-teacher, 9 or 25 taps)
    // are bound by their stores and the epilogue, not by FMAs: the 512-bit kernel measured
    // 0.88-0.98x the AVX2 one on them at batch 1, so they keep the AVX2 kernel.
    let wide = path == F32Path::Avx512F && p.in_channels > 1;
    let np = if wide { WIDTHS[0] } else { NP };
    let geo = Direct::new(p, (d[1], d[2], d[3]), (oh, ow), np);
    let (offs, bases) = geo.tap_offsets().zip(geo.position_bases()).ok_or_else(|| {
        TensorError::InvalidArgument {
            op: "conv2d: direct",
            reason: format!("padded image {:?} too large for u32 offsets", input.shape()),
        }
    })?;
    let img_out = out_dims[1] * out_dims[2] * out_dims[3];
    if n == 0 || img_out == 0 {
        return Tensor::zeros_dims(&out_dims);
    }
    let img_in = d[1] * d[2] * d[3];
    let x = input.data();
    // 1 inside `serial::run`: the caller runs one chunk of a batch per thread already.
    let threads = crate::serial::threads();
    let per_image_macs = o * oh * ow * p.patch_len();
    let layer = Layer {
        geo: &geo,
        offs: &offs,
        bases: &bases,
        packed,
        bias,
        epi,
        wide,
    };
    if threads > 1 && n > 1 {
        // Each image's output zeroed just before its kernel writes it.
        let data = crate::par_zeroed_chunks(n * img_out, img_out, |i, yi| {
            let xi = &x[i * img_in..(i + 1) * img_in];
            // SAFETY: `yi` is one image's `img_out` floats.
            unsafe { layer.image(xi, Out(yi.as_mut_ptr()), Split::Whole) };
            Ok::<(), TensorError>(())
        })?;
        return Tensor::new(&out_dims, data);
    }
    // One image at a time, into an output left unwritten until the epilogues write it: zeroing
    // it first put every line in the caller's cache, and the duo helper's epilogue then
    // paid a transfer from the other core for each line it wrote.
    let split = layer.split(threads > 1 && per_image_macs >= DIRECT_PAR_MIN_MACS);
    let mut data = Vec::<f32>::with_capacity(n * img_out);
    let out = data.as_mut_ptr();
    for (i, xi) in x.chunks(img_in).enumerate() {
        // SAFETY: image `i`'s `img_out` floats are inside the capacity.
        unsafe { layer.image(xi, Out(out.add(i * img_out)), split) };
    }
    // SAFETY: `Layer::image` wrote every float of every image (see its contract).
    unsafe { data.set_len(n * img_out) };
    Tensor::new(&out_dims, data)
}

std::thread_local! {
    /// Per-thread padded image and accumulator tiles, reused across calls (batch-1
    /// inference then allocates only its output).
    static PADDED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static ACC: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on `len` floats of `cell` (a fresh buffer if the cell is borrowed already).
pub(super) fn with_buf<R>(
    cell: &'static std::thread::LocalKey<RefCell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    cell.with(|c| match c.try_borrow_mut() {
        Ok(mut v) => {
            if v.len() < len {
                v.resize(len, 0.0);
            }
            f(&mut v[..len])
        }
        Err(_) => f(&mut vec![0.0; len]),
    })
}

/// How one image of a batch-1 call is shared between the caller and the
/// [`duo`](crate::duo) helper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Split {
    /// On the calling thread alone.
    Whole,
    /// The first half of the output-channel tiles on the caller, the rest on the helper.
    Tiles,
    /// The first half of the output rows (an even count when pooling) on the caller, the
    /// rest on the helper; every tile on both.
    Rows,
}

std::thread_local! {
    /// The split of every batch-1 image on this thread, forced by a test whatever the thread
    /// count and size (a split that does not apply runs whole).
    #[cfg(test)]
    pub(super) static FORCE_SPLIT: std::cell::Cell<Option<Split>> =
        const { std::cell::Cell::new(None) };
}

/// One convolution layer on the direct path, everything but the image.
struct Layer<'a> {
    geo: &'a Direct,
    offs: &'a [u32],
    bases: &'a [u32],
    packed: &'a PackedConvWeights,
    bias: Option<&'a [f32]>,
    epi: ConvEpilogue,
    /// The AVX-512 kernel on the channel-blocked image (pairs of 16-channel blocks), else
    /// the AVX2 one on NCHW padded planes (16-channel tiles).
    wide: bool,
}

/// The output image written by both halves of a split: each writes only its own tiles or
/// rows of the planes.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: `Out` is shared only between the two halves of one `duo::join` in
// `Layer::image`, which write disjoint elements (other tiles or other rows) of one buffer
// that outlives the join.
unsafe impl Send for Out {}
// SAFETY: as above.
unsafe impl Sync for Out {}

impl Layer<'_> {
    /// Output channels per tile.
    fn tile_channels(&self) -> usize {
        if self.wide { PAIR } else { OB }
    }

    /// The row where a split by rows cuts: half the rows rounded up (to an even count when
    /// pooling, so that each pooled row is one half's), `None` when a half would be empty.
    fn mid_row(&self) -> Option<usize> {
        let oh = self.geo.oh;
        let mid = if self.epi.max_pool_2x2 {
            2 * (oh / 2).div_ceil(2)
        } else {
            oh.div_ceil(2)
        };
        (mid > 0 && mid < oh).then_some(mid)
    }

    /// The split of a batch-1 image when `split` is asked for: by tiles when they share
    /// evenly between two threads, else by rows; whole when neither cuts.
    fn split(&self, split: bool) -> Split {
        #[cfg(test)]
        if let Some(forced) = FORCE_SPLIT.with(|f| f.get()) {
            return forced;
        }
        if !split {
            return Split::Whole;
        }
        let tc = self.tile_channels();
        if self.geo.o.is_multiple_of(2 * tc) {
            Split::Tiles
        } else if self.mid_row().is_some() {
            Split::Rows
        } else if self.geo.o > tc {
            Split::Tiles
        } else {
            Split::Whole
        }
    }

    /// Floats of one output plane (pooled when the epilogue pools).
    fn plane(&self) -> usize {
        let g = self.geo;
        if self.epi.max_pool_2x2 {
            (g.oh / 2) * (g.ow / 2)
        } else {
            g.oh * g.ow
        }
    }

    /// One image `x` into `y` (its `O` output planes), split as `split` says. Writes every
    /// float of the planes: each tile's epilogue writes every position of its channels'
    /// planes at its rows, and the rows of a split cover `0..OH` (pooled rows `0..OH/2`).
    ///
    /// # Safety
    /// `y` is valid for writes of `O` planes of [`Layer::plane`] floats, which nothing else
    /// accesses during the call.
    unsafe fn image(&self, x: &[f32], y: Out, split: Split) {
        let (tiles, oh) = (self.geo.o.div_ceil(self.tile_channels()), self.geo.oh);
        let plane = self.plane();
        // SAFETY (each call): the contract covers `y`; the two halves of a join write other
        // tiles or other rows.
        let part = |t: Range<usize>, r: Range<usize>| unsafe { self.part(x, y, plane, t, r) };
        match (split, self.mid_row()) {
            (Split::Tiles, _) if tiles > 1 => {
                let mine = tiles.div_ceil(2);
                duo::join(|| part(0..mine, 0..oh), || part(mine..tiles, 0..oh));
            }
            (Split::Rows, Some(mid)) => {
                duo::join(|| part(0..tiles, 0..mid), || part(0..tiles, mid..oh));
            }
            _ => part(0..tiles, 0..oh),
        }
    }

    /// Tiles `tiles` at output rows `rows` of one image: pads the input rows they read into
    /// this thread's buffer, runs the kernel of each tile on those rows and its epilogue.
    ///
    /// # Safety
    /// `y` is valid for writes of the image's `O` output planes of `plane` floats, and no
    /// other thread writes the elements of these tiles and rows meanwhile; `rows.end <= OH`,
    /// `rows.start` even when pooling; `tiles.end <= ceil(O / tile_channels)`.
    unsafe fn part(
        &self,
        x: &[f32],
        y: Out,
        plane: usize,
        tiles: Range<usize>,
        rows: Range<usize>,
    ) {
        let geo = self.geo;
        let pad_len = if self.wide {
            geo.blocked_len()
        } else {
            geo.pad_len
        };
        let padded = geo.padded_rows(&rows);
        with_buf(&PADDED, pad_len, |xp| {
            if !self.wide {
                geo.pad_image(x, xp, padded.clone());
            }
            // SAFETY: `wide` only on the AVX-512 F path the caller required; `xp` has the
            // blocked length.
            #[cfg(target_arch = "x86_64")]
            if self.wide {
                unsafe { geo.pad_image_blocked(x, xp, padded) };
            }
            let xp = &*xp;
            with_buf(&ACC, 2 * geo.acc_len(), |acc| {
                for t in tiles {
                    // SAFETY: the caller chose the direct path only on x86_64 with AVX2 +
                    // FMA (`F32Path::Avx2Fma.is_supported()`), and `wide` only on the
                    // AVX-512 F path it required; `geo.np` is the kernel's; the buffer
                    // lengths are those `Direct` derives; the padded rows cover `rows`;
                    // this function's contract covers `y`.
                    #[cfg(target_arch = "x86_64")]
                    unsafe {
                        self.tile(xp, acc, t, y, plane, rows.clone());
                    }
                }
            });
        });
    }

    /// Tile `t` at output rows `rows`: the kernel into `acc`, then the epilogue into `y`.
    ///
    /// # Safety
    /// As [`Layer::part`]; the CPU has AVX2 + FMA (and AVX-512 F when `wide`); `xp` holds the
    /// padded rows of `rows`; `acc` is `2 * geo.acc_len()` long.
    #[cfg(target_arch = "x86_64")]
    unsafe fn tile(
        &self,
        xp: &[f32],
        acc: &mut [f32],
        t: usize,
        y: Out,
        plane: usize,
        rows: Range<usize>,
    ) {
        use super::direct::*;
        let geo = self.geo;
        let relu_pool = (self.epi.relu, self.epi.max_pool_2x2);
        let (o, bias) = (geo.o, self.bias);
        // SAFETY (whole body): this function's contract; each epilogue writes the planes of
        // its own channels, which are in `y`.
        unsafe {
            if self.wide {
                blocked::pair_avx512(geo, xp, self.packed.blocked_pair(t), acc, rows.clone());
                let (acc0, acc1) = acc.split_at(geo.acc_len());
                for (half, acc) in [acc0, acc1].into_iter().enumerate() {
                    let o0 = t * PAIR + half * OB;
                    if o0 < o {
                        let yt = y.0.add(o0 * plane);
                        let ch = OB.min(o - o0);
                        epilogue_avx2(geo, acc, bias, o0, relu_pool, yt, ch, rows.clone());
                    }
                }
            } else {
                let np = geo.np;
                let pos = rows.start * geo.ow / np * np..(rows.end * geo.ow).div_ceil(np) * np;
                let wt = self.packed.tile(t);
                let o0 = t * OB;
                let ch = OB.min(o - o0);
                if ch > OB / 2 {
                    tile_avx2(geo, self.offs, self.bases, xp, wt, acc, pos);
                } else {
                    tile_avx2_half(geo, self.offs, self.bases, xp, wt, acc, pos);
                }
                epilogue_avx2(geo, acc, bias, o0, relu_pool, y.0.add(o0 * plane), ch, rows);
            }
        }
    }
}
