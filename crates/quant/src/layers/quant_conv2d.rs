//! QuantConv2d: a convolution computed in integers: u8 patch rows (padding = the input zero
//! point) times packed i8 filters on the int8 GEMM.

use std::ops::Range;

use nn::layers::Conv2d;
use nn::layers::conv2d::{conv2d_params_from_record, conv2d_params_record};
use nn::{Layer, LayerRecord, NnError};
use rayon::prelude::*;
use tensor_core::conv::Conv2dParams;
use tensor_core::dispatch::Int8Path;
use tensor_core::{Shape, Tensor};

use super::core::{IntegerCore, QuantOutput};
use crate::error::QuantError;
use crate::gemm::{PackedWeights, gemm_u7i8_serial, padded_depth};
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
    /// from channels-last codes (packed once, at construction).
    hwc: PackedWeights,
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
        let hwc = PackedWeights::pack(&to_hwc_rows(&params, &core.packed().unpack()), n, k)?;
        Ok(Self {
            params,
            core,
            pool,
            hwc,
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
    /// (padding taps hold the input zero point, the code of 0.0), so a patch row is `kh` copies
    /// of `kw * C` contiguous bytes; a band of output rows then runs its patches through the
    /// GEMM and requantizes straight into the NCHW output. Batches of at least two images per
    /// thread are spread over threads by image; smaller ones by bands of one image.
    pub fn forward_with(&self, path: Int8Path, input: &Tensor) -> nn::Result<Tensor> {
        let shape = self.output_shape(input.shape())?;
        let g = Geometry::new(&self.params, input.dims(), shape.dims());
        let (n, image_in, image_out) = (input.dims()[0], g.c * g.h * g.w, g.o * g.ph * g.pw);
        let mut out = vec![0f32; n * image_out];
        if n == 0 || image_out == 0 {
            return Ok(Tensor::new(shape.dims(), out)?);
        }
        let threads = rayon::current_num_threads();
        if threads <= 1 || n >= 2 * threads {
            out.par_chunks_mut(IMAGES_PER_TASK * image_out)
                .zip(input.data().par_chunks(IMAGES_PER_TASK * image_in))
                .try_for_each_init(Scratch::default, |s, (y, x)| -> nn::Result<()> {
                    for (y, x) in y.chunks_exact_mut(image_out).zip(x.chunks_exact(image_in)) {
                        let mut xp = std::mem::take(&mut s.padded);
                        self.channels_last(&g, x, &mut xp)?;
                        let planes = Planes::new(y);
                        let done = self.band(path, &g, &xp, 0..g.ph, planes, s);
                        s.padded = xp;
                        done?;
                    }
                    Ok(())
                })?;
        } else {
            // Few images: bands of about BAND_POSITIONS output positions of one image each.
            let rows_per_band = (BAND_POSITIONS / (g.pw * self.pool).max(1)).max(1);
            let bands = g.ph.div_ceil(rows_per_band);
            let mut xp = Vec::new();
            for (y, x) in out
                .chunks_exact_mut(image_out)
                .zip(input.data().chunks_exact(image_in))
            {
                self.channels_last(&g, x, &mut xp)?;
                let planes = Planes::new(y);
                (0..bands).into_par_iter().try_for_each_init(
                    Scratch::default,
                    |s, b| -> nn::Result<()> {
                        let rows = b * rows_per_band..((b + 1) * rows_per_band).min(g.ph);
                        self.band(path, &g, &xp, rows, planes, s)
                    },
                )?;
            }
        }
        Ok(Tensor::new(shape.dims(), out)?)
    }

    /// One image's `[C, H, W]` codes (f32) as channels-last u8 codes inside the padding:
    /// `xp[((y + top) * wp + x + left) * C + c]`, padding bytes the input zero point. Read
    /// plane by plane (contiguous), converted and checked on the way.
    fn channels_last(&self, g: &Geometry, x: &[f32], xp: &mut Vec<u8>) -> nn::Result<()> {
        let qmax = self.core.input().qtype().qmax() as u8;
        let zp = self.core.input().zero_points()[0] as u8;
        xp.clear();
        xp.resize(g.hp * g.wp * g.c, zp);
        let (top, left, c) = (self.params.padding.top, self.params.padding.left, g.c);
        let mut bad = false;
        for (ci, plane) in x.chunks_exact(g.h * g.w).enumerate() {
            for (y, src) in plane.chunks_exact(g.w).enumerate() {
                let dst = &mut xp[((y + top) * g.wp + left) * c + ci..];
                for (xx, &v) in src.iter().enumerate() {
                    // `as u8` saturates; a fraction or an out-of-range value does not
                    // survive the round trip. No early exit, so the loop stays simple.
                    let q = v as u8;
                    bad |= (f32::from(q) != v) | (q > qmax);
                    dst[xx * c] = q;
                }
            }
        }
        if bad {
            // Only on the error path: the core names the offender.
            let mut codes = vec![0u8; x.len()];
            self.core.codes_to_u8("quant_conv2d", x, &mut codes)?;
        }
        Ok(())
    }

    /// Pooled output rows `rows` of one image (conv rows `rows * pool`): patches, GEMM,
    /// pooling on the raw sums, requantization into `planes`.
    fn band(
        &self,
        path: Int8Path,
        g: &Geometry,
        xp: &[u8],
        rows: Range<usize>,
        planes: Planes,
        s: &mut Scratch,
    ) -> nn::Result<()> {
        let p = &self.params;
        let (kh, kw) = p.kernel;
        let (sh, sw) = p.stride;
        let (dh, dw) = p.dilation;
        let pool = self.pool;
        let conv_rows = rows.start * pool..rows.end * pool;
        let m = conv_rows.len() * g.ow;
        let (c, k, kp, o) = (g.c, g.k, g.kp, g.o);
        s.patches.resize(m * kp, 0);
        for (i, row) in s.patches.chunks_exact_mut(kp).enumerate() {
            let (oy, ox) = (conv_rows.start + i / g.ow, i % g.ow);
            for ki in 0..kh {
                let iy = oy * sh + ki * dh;
                let taps = &mut row[ki * kw * c..(ki + 1) * kw * c];
                let at = (iy * g.wp + ox * sw) * c;
                if dw == 1 {
                    copy_run(taps, &xp[at..at + kw * c]);
                } else {
                    for (kj, t) in taps.chunks_exact_mut(c).enumerate() {
                        copy_run(t, &xp[at + kj * dw * c..][..c]);
                    }
                }
            }
            row[k..].fill(0);
        }
        s.acc.resize(m * o, 0);
        gemm_u7i8_serial(path, &s.patches, kp, m, &self.hwc, &mut s.acc)?;
        s.row.resize(o, 0.0);
        let plane = g.ph * g.pw;
        if pool == 1 {
            for (i, raw) in s.acc.chunks_exact(o).enumerate() {
                self.core.finish_row(raw, &mut s.row);
                planes.scatter(rows.start * g.pw + i, plane, &s.row);
            }
            return Ok(());
        }
        s.max.resize(o, 0);
        for py in 0..rows.len() {
            for px in 0..g.pw {
                let at = |dy: usize, dx: usize| {
                    let r = (2 * py + dy) * g.ow + 2 * px + dx;
                    &s.acc[r * o..(r + 1) * o]
                };
                let (a, b, c, d) = (at(0, 0), at(0, 1), at(1, 0), at(1, 1));
                for (j, v) in s.max.iter_mut().enumerate() {
                    *v = a[j].max(b[j]).max(c[j].max(d[j]));
                }
                self.core.finish_row(&s.max, &mut s.row);
                planes.scatter((rows.start + py) * g.pw + px, plane, &s.row);
            }
        }
        Ok(())
    }
}

/// Output positions per task when one image is split over threads.
const BAND_POSITIONS: usize = 112;

/// Sizes of one forward pass.
struct Geometry {
    c: usize,
    h: usize,
    w: usize,
    /// Padded input height and width.
    hp: usize,
    wp: usize,
    o: usize,
    /// Convolution output width (before pooling).
    ow: usize,
    /// Layer output height and width (after pooling).
    ph: usize,
    pw: usize,
    /// Patch length and its padded depth.
    k: usize,
    kp: usize,
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

/// A task's reusable buffers.
#[derive(Default)]
struct Scratch {
    padded: Vec<u8>,
    patches: Vec<u8>,
    acc: Vec<i32>,
    max: Vec<i32>,
    row: Vec<f32>,
}

/// One image's `[O, PH, PW]` output, written by tasks that own disjoint positions.
#[derive(Clone, Copy)]
struct Planes {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: tasks write disjoint positions (each band owns its rows of every plane), and the
// slice outlives every task (the forward pass joins them before returning).
unsafe impl Send for Planes {}
// SAFETY: as above.
unsafe impl Sync for Planes {}

impl Planes {
    fn new(y: &mut [f32]) -> Self {
        Self {
            ptr: y.as_mut_ptr(),
            len: y.len(),
        }
    }

    /// `y[j * plane + pos] = values[j]` for every channel `j`.
    fn scatter(self, pos: usize, plane: usize, values: &[f32]) {
        assert!(pos < plane && values.len() * plane <= self.len);
        for (j, &v) in values.iter().enumerate() {
            // SAFETY: j * plane + pos < values.len() * plane <= len (checked above); no other
            // task writes position `pos`.
            unsafe { self.ptr.add(j * plane + pos).write(v) };
        }
    }
}

/// `dst.copy_from_slice(src)`, by bytes for the short runs of thin layers (a `memcpy` call
/// per 3 bytes costs more than the copy).
#[inline(always)]
fn copy_run(dst: &mut [u8], src: &[u8]) {
    if src.len() <= 8 {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = s;
        }
    } else {
        dst.copy_from_slice(src);
    }
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
