//! QuantConv2d: a convolution computed in integers: u8 patch rows (padding = the input zero
//! point) times packed i8 filters on the int8 GEMM.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

use nn::layers::Conv2d;
use nn::layers::conv2d::{conv2d_params_from_record, conv2d_params_record};
use nn::{Layer, LayerRecord, NnError};
use rayon::prelude::*;
use tensor_core::conv::Conv2dParams;
use tensor_core::dispatch::Int8Path;
use tensor_core::{Shape, Tensor};

use super::core::{IntegerCore, QuantOutput};
use super::sink::{Frame, Row, Shared, Sink};
use crate::error::QuantError;
use crate::gemm::{
    KG, PackedWeights, Segments, gemm_u7i8_requantized_segmented, gemm_u7i8_segmented,
    gemm_u7i8_serial, padded_depth,
};
use crate::params::QuantParams;
use crate::weights::WeightScheme;

/// Images per task: a task lays out its images' patches and runs their GEMM, so patches of
/// two images at a time stay in L2 (cnn-teacher's conv2: 2 x 784 x 288 bytes = 450 KB).
const IMAGES_PER_TASK: usize = 2;

/// A convolution (one group; stride, padding, dilation as [`Conv2d`]) on codes: input
/// `[N, C, H, W]` holds u7 codes, each output position is one row of patches (read from a
/// channels-last copy of the image, `(ki, kj, c)` order, the weights packed in that order
/// once), padding taps take the input zero point
/// (the code of 0.0), and the GEMM's `[positions, O]` result is requantized into `[N, O, OH, OW]`.
///
/// With `pool = 2`, a following 2x2 max pooling (stride 2, no padding, output size rounded
/// down) is fused: the maximum is taken over the raw i32 sums before requantization, which
/// gives the same codes as pooling afterwards (requantization is monotonic: the multiplier is
/// positive, rounding and clamping do not decrease) and requantizes a quarter as many values.
///
/// Stored (record kind `quant_conv2d`): the geometry attributes of `conv2d`, `pool` (1 or 2),
/// then the [`IntegerCore`] fields with `weight` as `[O, C * kh * kw]`. Inference only.
#[derive(Clone, Debug)]
pub struct QuantConv2d {
    params: Conv2dParams,
    core: IntegerCore,
    pool: usize,
    /// The core's weights with each row in `(ki, kj, c)` order, the order of a patch read
    /// from channels-last codes (packed once, at construction); with [`Implicit`] patches each
    /// kernel row padded to whole depth groups.
    hwc: PackedWeights,
    /// Whether patches are read in place from the channels-last image ([`Implicit`]) instead
    /// of copied into rows.
    implicit: Option<Implicit>,
}

/// Patches read in place (an implicit GEMM): each kernel row of a patch is `kw * C` contiguous
/// bytes of the channels-last image, so the GEMM reads `kh` segments per output position, one
/// padded image row apart ([`Segments`]), instead of a copied patch row. Chosen when the
/// segments padded to whole groups of four bytes add no more than an eighth to the depth, and
/// the width dilation is 1.
#[derive(Clone, Copy, Debug)]
struct Implicit {
    /// Depth groups per kernel row.
    groups: usize,
}

impl Implicit {
    /// The in-place layout for `p`, when it pays.
    fn choose(p: &Conv2dParams) -> Option<Self> {
        let (c, (kh, kw)) = (p.in_channels, p.kernel);
        let groups = (kw * c).div_ceil(KG);
        let flat = padded_depth(p.patch_len());
        (p.dilation.1 == 1 && kh * groups * KG <= flat + flat / 8).then_some(Self { groups })
    }

    /// Conv row `oy`'s patches read in place from the channels-last image `xp` of `g`: the
    /// bytes from the row's first patch on, the stride from one output position's patch to
    /// the next, and the kernel rows' segments.
    fn operand<'a>(
        self,
        p: &Conv2dParams,
        g: &Geometry,
        xp: &'a [u8],
        oy: usize,
    ) -> (&'a [u8], usize, Segments) {
        let seg = Segments {
            count: p.kernel.0,
            groups: self.groups,
            stride: p.dilation.0 * g.wp * g.c,
        };
        (&xp[oy * p.stride.0 * g.wp * g.c..], p.stride.1 * g.c, seg)
    }

    /// `(ki, kj, c)`-ordered weight rows with each kernel row padded to `groups * 4` bytes.
    fn pad_rows(self, p: &Conv2dParams, hwc: &[i8]) -> Vec<i8> {
        let (seg, (kh, kw)) = (p.in_channels * p.kernel.1, p.kernel);
        let (k, kp) = (p.patch_len(), kh * self.groups * KG);
        let _ = kw;
        let mut out = vec![0i8; p.out_channels * kp];
        for (dst, src) in out.chunks_exact_mut(kp).zip(hwc.chunks_exact(k.max(1))) {
            for ki in 0..kh {
                dst[ki * self.groups * KG..][..seg].copy_from_slice(&src[ki * seg..][..seg]);
            }
        }
        out
    }
}

impl QuantConv2d {
    /// A quantized twin of `conv` (one group only).
    pub fn from_conv2d(
        conv: &Conv2d,
        weights: WeightScheme,
        input: QuantParams,
        output: QuantOutput,
        relu: bool,
        pool: usize,
    ) -> crate::Result<Self> {
        let p = *conv.params();
        let core = IntegerCore::from_float(
            conv.weight().data(),
            p.out_channels,
            p.patch_len(),
            conv.bias().map(|b| b.data()),
            weights,
            input,
            output,
            relu,
        )?;
        Self::new(p, core, pool)
    }

    /// The layer of geometry `params`, integer part `core` (`[O, C * kh * kw]`) and fused
    /// max pooling `pool` (1: none, 2: 2x2 with stride 2).
    pub fn new(params: Conv2dParams, core: IntegerCore, pool: usize) -> crate::Result<Self> {
        params.validate()?;
        if !(1..=2).contains(&pool) {
            return Err(QuantError::InvalidArgument {
                op: "QuantConv2d::new",
                reason: format!("pool {pool}: 1 (none) or 2 (2x2, stride 2)"),
            });
        }
        if params.groups != 1 {
            return Err(QuantError::InvalidArgument {
                op: "QuantConv2d::new",
                reason: format!("{} groups: only ungrouped convolutions", params.groups),
            });
        }
        let (n, k) = (core.packed().n(), core.packed().k());
        if n != params.out_channels || k != params.patch_len() {
            return Err(QuantError::LengthMismatch {
                op: "QuantConv2d::new",
                what: "weight rows x patch length",
                got: n * k,
                expected: params.out_channels * params.patch_len(),
            });
        }
        let rows = to_hwc_rows(&params, &core.packed().unpack());
        let implicit = Implicit::choose(&params);
        let hwc = match implicit {
            Some(imp) => {
                let padded = imp.pad_rows(&params, &rows);
                PackedWeights::pack(&padded, n, params.kernel.0 * imp.groups * KG)?
            }
            None => PackedWeights::pack(&rows, n, k)?,
        };
        Ok(Self {
            params,
            core,
            pool,
            hwc,
            implicit,
        })
    }

    /// The fused max pooling window (1: none).
    pub fn pool(&self) -> usize {
        self.pool
    }

    /// The geometry.
    pub fn params(&self) -> &Conv2dParams {
        &self.params
    }

    /// The integer part.
    pub fn core(&self) -> &IntegerCore {
        &self.core
    }

    /// Rebuilds the layer from its record, every field checked.
    pub fn from_record(rec: &LayerRecord) -> nn::Result<Self> {
        rec.expect_kind("quant_conv2d")?;
        let params = conv2d_params_from_record(rec)?;
        let pool = rec.usize_in("pool", 1, 2)?;
        let core = IntegerCore::read_record(rec, params.out_channels, params.patch_len())?;
        Self::new(params, core, pool).map_err(|e| rec.corrupt("geometry", e.to_string()))
    }

    /// The forward pass on a given kernel path.
    ///
    /// Each image's codes are laid out once channels-last with the padding around them
    /// (padding taps hold the input zero point, the code of 0.0), so a patch row is `kh` runs
    /// of `kw * C` contiguous bytes, read in place ([`Implicit`]) or copied into patch rows; a
    /// band of output rows then runs through the GEMM and is requantized straight into the
    /// NCHW output. Batches of at least two images per thread are spread over threads by
    /// image; smaller ones by bands of one image (as many bands as threads, when the image is
    /// worth splitting). Buffers are kept per thread between calls ([`with_scratch`]).
    pub fn forward_with(&self, path: Int8Path, input: &Tensor) -> nn::Result<Tensor> {
        let shape = self.output_shape(input.shape())?;
        let g = Geometry::new(&self.params, input.dims(), shape.dims());
        let (n, image_in, image_out) = (input.dims()[0], g.c * g.h * g.w, g.o * g.ph * g.pw);
        let mut out = vec![0f32; n * image_out];
        if n == 0 || image_out == 0 {
            return Ok(Tensor::new(shape.dims(), out)?);
        }
        let threads = rayon::current_num_threads();
        if self.bands(&g) == 1 || n >= 2 * threads {
            let run = |y: &mut [f32], x: &[f32]| -> nn::Result<()> {
                with_scratch(|s| {
                    for (y, x) in y.chunks_exact_mut(image_out).zip(x.chunks_exact(image_in)) {
                        let mut xp = std::mem::take(&mut s.padded);
                        let done =
                            self.channels_last(&g, x, &mut xp, &mut s.codes)
                                .and_then(|()| {
                                    self.band(
                                        path,
                                        &g,
                                        &xp,
                                        0..g.ph,
                                        Sink::Planes(Shared::new(y)),
                                        s,
                                    )
                                });
                        s.padded = xp;
                        done?;
                    }
                    Ok(())
                })
            };
            if threads <= 1 || n == 1 {
                run(&mut out, input.data())?;
            } else {
                out.par_chunks_mut(IMAGES_PER_TASK * image_out)
                    .zip(input.data().par_chunks(IMAGES_PER_TASK * image_in))
                    .try_for_each(|(y, x)| run(y, x))?;
            }
        } else {
            let (mut xp, mut codes) =
                with_scratch(|s| (std::mem::take(&mut s.padded), std::mem::take(&mut s.codes)));
            for (y, x) in out
                .chunks_exact_mut(image_out)
                .zip(input.data().chunks_exact(image_in))
            {
                self.channels_last(&g, x, &mut xp, &mut codes)?;
                self.image(path, &g, &xp, Sink::Planes(Shared::new(y)), true)?;
            }
            with_scratch(|s| (s.padded, s.codes) = (xp, codes));
        }
        Ok(Tensor::new(shape.dims(), out)?)
    }

    /// The sizes of a forward pass on `input` (`[N, C, H, W]`).
    pub(crate) fn geometry(&self, input: &Shape) -> nn::Result<Geometry> {
        let shape = self.output_shape(input)?;
        Ok(Geometry::new(&self.params, input.dims(), shape.dims()))
    }

    /// Where the codes of an image lie in the channels-last buffer
    /// ([`channels_last`](Self::channels_last)'s layout) a previous layer of a chain fills.
    pub(crate) fn frame(&self, g: &Geometry) -> Frame {
        Frame {
            wp: g.wp,
            top: self.params.padding.top,
            left: self.params.padding.left,
        }
    }

    /// Bands one image's output rows are split into over threads (1: run on the calling
    /// thread).
    fn bands(&self, g: &Geometry) -> usize {
        let threads = rayon::current_num_threads();
        let image_macs = g.ph * self.pool * g.ow * g.o * g.k;
        if threads <= 1 || image_macs < SPLIT_MIN.load(Ordering::Relaxed) {
            1
        } else {
            (threads * image_macs.div_ceil(BAND_MACS)).min(g.ph)
        }
    }

    /// One image's output from its channels-last codes `xp` (the layout of
    /// [`channels_last`](Self::channels_last)) into `sink`: with `split`, in bands of rows on
    /// rayon's threads when the image is worth splitting ([`bands`](Self::bands)), else on the
    /// calling thread.
    pub(crate) fn image(
        &self,
        path: Int8Path,
        g: &Geometry,
        xp: &[u8],
        sink: Sink,
        split: bool,
    ) -> nn::Result<()> {
        let bands = if split { self.bands(g) } else { 1 };
        if bands == 1 {
            return with_scratch(|s| self.band(path, g, xp, 0..g.ph, sink, s));
        }
        let rows_per_band = g.ph.div_ceil(bands);
        let bands = g.ph.div_ceil(rows_per_band);
        (0..bands).into_par_iter().try_for_each(|b| {
            let rows = b * rows_per_band..((b + 1) * rows_per_band).min(g.ph);
            with_scratch(|s| self.band(path, g, xp, rows, sink, s))
        })
    }

    /// One image's `[C, H, W]` codes (f32) as channels-last u8 codes inside the padding
    /// ([`place_channels_last`](Self::place_channels_last)), converted and checked in one
    /// contiguous pass first.
    fn channels_last(
        &self,
        g: &Geometry,
        x: &[f32],
        xp: &mut Vec<u8>,
        codes: &mut Vec<u8>,
    ) -> nn::Result<()> {
        codes.resize(x.len(), 0);
        self.core.codes_to_u8("quant_conv2d", x, codes)?;
        self.place_channels_last(g, codes, xp);
        Ok(())
    }

    /// `xp` as a blank channels-last input image of `g`: every byte the input zero point, with
    /// [`SLACK`] bytes past the end.
    pub(crate) fn blank_input(&self, g: &Geometry, xp: &mut Vec<u8>) {
        let zp = self.core.input().zero_points()[0] as u8;
        xp.clear();
        xp.resize(g.hp * g.wp * g.c + SLACK, zp);
    }

    /// One image's `[C, H, W]` u8 codes laid out channels-last inside the padding:
    /// `xp[((y + top) * wp + x + left) * C + c]`, padding bytes the input zero point, and
    /// [`SLACK`] bytes after the image (read by in-place patches and wide copies, multiplied
    /// by zero weights).
    pub(crate) fn place_channels_last(&self, g: &Geometry, codes: &[u8], xp: &mut Vec<u8>) {
        self.blank_input(g, xp);
        let (top, left, c) = (self.params.padding.top, self.params.padding.left, g.c);
        let plane = g.h * g.w;
        for y in 0..g.h {
            let dst = &mut xp[((y + top) * g.wp + left) * c..][..g.w * c];
            if c == 1 {
                dst.copy_from_slice(&codes[y * g.w..][..g.w]);
                continue;
            }
            for (xx, px) in dst.chunks_exact_mut(c).enumerate() {
                for (ci, d) in px.iter_mut().enumerate() {
                    *d = codes[ci * plane + y * g.w + xx];
                }
            }
        }
    }

    /// Pooled output rows `rows` of one image (conv rows `rows * pool`): the GEMM over the
    /// band's patches (in place or copied), pooling on the raw sums, requantization into
    /// `planes`.
    fn band(
        &self,
        path: Int8Path,
        g: &Geometry,
        xp: &[u8],
        rows: Range<usize>,
        sink: Sink,
        s: &mut Scratch,
    ) -> nn::Result<()> {
        let p = &self.params;
        let pool = self.pool;
        let conv_rows = rows.start * pool..rows.end * pool;
        let m = conv_rows.len() * g.ow;
        let o = g.o;
        if let (1, Sink::ChannelsLast(y, f), QuantOutput::Codes(q)) =
            (pool, sink, self.core.output())
        {
            return self.band_requantized(path, g, xp, rows, (y, f), q, s);
        }
        s.acc.resize(m * o, 0);
        if let Some(imp) = self.implicit {
            for (i, oy) in conv_rows.clone().enumerate() {
                let (a, lda, seg) = imp.operand(p, g, xp, oy);
                let c = &mut s.acc[i * g.ow * o..(i + 1) * g.ow * o];
                gemm_u7i8_segmented(path, a, lda, g.ow, &self.hwc, seg, c)?;
            }
        } else {
            self.patches(g, xp, conv_rows.start, m, &mut s.patches);
            gemm_u7i8_serial(path, &s.patches, g.kp, m, &self.hwc, &mut s.acc)?;
        }
        let (ph, pw) = (g.ph, g.pw);
        if pool == 1 {
            for (i, raw) in s.acc.chunks_exact(pw * o).enumerate() {
                // SAFETY: this band owns its rows.
                unsafe {
                    sink.put_row(path, &self.core, (rows.start + i, ph, pw), raw, &mut s.row)
                };
            }
            return Ok(());
        }
        s.max.resize(pw * o, 0);
        let line = g.ow * o;
        for py in 0..rows.len() {
            let (top, bottom) = s.acc[2 * py * line..].split_at(line);
            for (px, max) in s.max.chunks_exact_mut(o).enumerate() {
                let (a, b) = (&top[2 * px * o..][..2 * o], &bottom[2 * px * o..][..2 * o]);
                for (j, v) in max.iter_mut().enumerate() {
                    *v = a[j].max(a[o + j]).max(b[j].max(b[o + j]));
                }
            }
            // SAFETY: this band owns its rows.
            unsafe {
                sink.put_row(
                    path,
                    &self.core,
                    (rows.start + py, ph, pw),
                    &s.max,
                    &mut s.row,
                )
            };
        }
        Ok(())
    }

    /// [`band`](Self::band) without pooling into the next convolution's channels-last codes:
    /// each output row's GEMM requantizes its tiles straight into the row's place in `y`
    /// ([`crate::gemm::gemm_u7i8_requantized`]; the i32 sums stay in registers on AVX-512
    /// VNNI).
    #[allow(clippy::too_many_arguments)]
    fn band_requantized(
        &self,
        path: Int8Path,
        g: &Geometry,
        xp: &[u8],
        rows: Range<usize>,
        (y, f): (Shared<u8>, Frame),
        q: &QuantParams,
        s: &mut Scratch,
    ) -> nn::Result<()> {
        let (p, o) = (&self.params, g.o);
        let requant = self.core.requant(q);
        if self.implicit.is_none() {
            self.patches(g, xp, rows.start, rows.len() * g.ow, &mut s.patches);
        }
        for (i, oy) in rows.enumerate() {
            // SAFETY: this band owns its rows; a row's positions are consecutive in the
            // channels-last image.
            let dst = unsafe { y.run(((oy + f.top) * f.wp + f.left) * o, g.ow * o) };
            let (a, lda, seg) = match self.implicit {
                Some(imp) => imp.operand(p, g, xp, oy),
                None => (
                    &s.patches[i * g.ow * g.kp..],
                    g.kp,
                    Segments::flat(self.hwc.groups()),
                ),
            };
            gemm_u7i8_requantized_segmented(
                path, a, lda, g.ow, &self.hwc, seg, &requant, dst, o, false,
            )?;
        }
        Ok(())
    }

    /// The `m` patch rows (`kp` bytes each, `(ki, kj, c)` order, zero past `k`) of the output
    /// positions from conv row `first_row` on. A run of at most eight bytes is copied as one
    /// unaligned u64 (the image and `patches` have [`SLACK`] bytes past their ends; a copy's
    /// spill is overwritten by the next run or the row's zero tail).
    fn patches(&self, g: &Geometry, xp: &[u8], first_row: usize, m: usize, out: &mut Vec<u8>) {
        let p = &self.params;
        let (kh, kw) = p.kernel;
        let (sh, sw) = p.stride;
        let (dh, dw) = p.dilation;
        let (c, k, kp) = (g.c, g.k, g.kp);
        out.resize(m * kp + SLACK, 0);
        let run = kw * c;
        for i in 0..m {
            let (oy, ox) = (first_row + i / g.ow, i % g.ow);
            for ki in 0..kh {
                let iy = oy * sh + ki * dh;
                let at = (iy * g.wp + ox * sw) * c;
                let to = i * kp + ki * run;
                if dw == 1 && run <= SLACK {
                    let v = u64::from_le_bytes(xp[at..at + SLACK].try_into().unwrap_or([0; 8]));
                    out[to..to + SLACK].copy_from_slice(&v.to_le_bytes());
                } else if dw == 1 {
                    out[to..to + run].copy_from_slice(&xp[at..at + run]);
                } else {
                    for kj in 0..kw {
                        let (from, to) = (at + kj * dw * c, to + kj * c);
                        out[to..to + c].copy_from_slice(&xp[from..from + c]);
                    }
                }
            }
            out[i * kp + k..(i + 1) * kp].fill(0);
        }
    }
}

/// Bytes kept readable past a channels-last image and past the patch rows.
const SLACK: usize = 8;

/// Convolutions of fewer multiply-adds per image run on one thread at batch 1: waking rayon's
/// sleeping worker for a fork/join costs about 15 us, what one core takes for 4-5 M int8
/// multiply-adds. Measured on a quantized cnn-teacher (conv layers of 0.2-7.2 M MACs, AVX-512
/// VNNI Xeon, 2 threads): splitting from 2^18 MACs up 127 us per image, from 2^22 145 us, from
/// 2^23 (no layer split) 108.5 us, one thread 111 us. [`set_split_min_macs`] changes it.
pub const SPLIT_MIN_MACS: usize = 1 << 24;

/// The batch-1 split threshold in force ([`SPLIT_MIN_MACS`] unless set).
static SPLIT_MIN: AtomicUsize = AtomicUsize::new(SPLIT_MIN_MACS);

/// Sets the multiply-adds per image from which a convolution splits one image into bands of
/// rows over threads (batches smaller than two images per thread). A tuning knob only: every
/// split gives the same output bit for bit (tests lower it to run the banded code on small
/// layers).
pub fn set_split_min_macs(macs: usize) {
    SPLIT_MIN.store(macs, Ordering::Relaxed);
}

/// Multiply-adds per band and thread at batch 1 beyond which an image gets more bands.
const BAND_MACS: usize = 1 << 23;

thread_local! {
    /// Each thread's buffers, kept between forward passes (no allocation per call).
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// Runs `f` on this thread's [`Scratch`] (taken out for the call, so a nested call gets a
/// fresh one instead of a borrow panic).
fn with_scratch<T>(f: impl FnOnce(&mut Scratch) -> T) -> T {
    let mut s = SCRATCH.with(|c| c.take());
    let out = f(&mut s);
    SCRATCH.with(|c| c.replace(s));
    out
}

/// Sizes of one forward pass (fields as the layer's documentation names them).
pub(crate) struct Geometry {
    pub(crate) c: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    /// Padded input height and width.
    pub(crate) hp: usize,
    pub(crate) wp: usize,
    pub(crate) o: usize,
    /// Convolution output width (before pooling).
    pub(crate) ow: usize,
    /// Layer output height and width (after pooling).
    pub(crate) ph: usize,
    pub(crate) pw: usize,
    /// Patch length and its padded depth.
    pub(crate) k: usize,
    pub(crate) kp: usize,
}

impl Geometry {
    /// From checked dims: input `[N, C, H, W]`, output `[N, O, PH, PW]`.
    fn new(p: &Conv2dParams, input: &[usize], output: &[usize]) -> Self {
        let (c, h, w) = (input[1], input[2], input[3]);
        let (kh, kw) = p.kernel;
        let (sw, dw) = (p.stride.1, p.dilation.1);
        let wp = w + p.padding.left + p.padding.right;
        let k = c * kh * kw;
        Self {
            c,
            h,
            w,
            hp: h + p.padding.top + p.padding.bottom,
            wp,
            o: output[1],
            ow: (wp - dw * (kw - 1) - 1) / sw + 1,
            ph: output[2],
            pw: output[3],
            k,
            kp: padded_depth(k),
        }
    }
}

/// A thread's reusable buffers.
#[derive(Default)]
struct Scratch {
    padded: Vec<u8>,
    codes: Vec<u8>,
    patches: Vec<u8>,
    acc: Vec<i32>,
    max: Vec<i32>,
    row: Row,
}

/// Rows of `[O, C * kh * kw]` weights in `(c, ki, kj)` order rewritten in `(ki, kj, c)` order.
fn to_hwc_rows(p: &Conv2dParams, w: &[i8]) -> Vec<i8> {
    let (c, (kh, kw)) = (p.in_channels, p.kernel);
    let k = c * kh * kw;
    let mut out = vec![0i8; w.len()];
    for (dst, src) in out.chunks_exact_mut(k.max(1)).zip(w.chunks_exact(k.max(1))) {
        for ci in 0..c {
            for t in 0..kh * kw {
                dst[t * c + ci] = src[ci * kh * kw + t];
            }
        }
    }
    out
}

impl Layer for QuantConv2d {
    fn kind(&self) -> &'static str {
        "quant_conv2d"
    }

    fn output_shape(&self, input: &Shape) -> nn::Result<Shape> {
        let [n, o, oh, ow] = self
            .params
            .output_dims(input)
            .map_err(|e| NnError::BadInput {
                layer: "quant_conv2d".into(),
                input: input.clone(),
                reason: e.to_string(),
            })?;
        Ok(Shape::new(&[n, o, oh / self.pool, ow / self.pool])?)
    }

    integer_layer_common!("quant_conv2d");

    fn macs(&self, input: &Shape) -> nn::Result<u64> {
        let [n, o, oh, ow] = self.params.output_dims(input)?;
        Ok((n * oh * ow) as u64 * (o * self.params.patch_len()) as u64)
    }

    fn record(&self) -> nn::Result<LayerRecord> {
        let rec = conv2d_params_record("quant_conv2d", &self.params);
        self.core
            .write_record(rec.with_int("pool", self.pool as i64))
    }
}
