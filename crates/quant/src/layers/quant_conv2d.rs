//! QuantConv2d: a convolution computed in integers: u8 patch rows (padding = the input zero
//! point) times packed i8 filters on the int8 GEMM.

use nn::layers::Conv2d;
use nn::layers::conv2d::{conv2d_params_from_record, conv2d_params_record};
use nn::{Layer, LayerRecord, NnError};
use rayon::prelude::*;
use tensor_core::conv::Conv2dParams;
use tensor_core::dispatch::Int8Path;
use tensor_core::{Shape, Tensor};

use super::core::{IntegerCore, QuantOutput};
use crate::error::QuantError;
use crate::gemm::{gemm_u7i8_with, padded_depth};
use crate::params::QuantParams;
use crate::weights::WeightScheme;

/// Images per task: a task lays out its images' patches and runs their GEMM, so patches of
/// two images at a time stay in L2 (cnn-teacher's conv2: 2 x 784 x 288 bytes = 450 KB).
const IMAGES_PER_TASK: usize = 2;

/// A convolution (one group; stride, padding, dilation as [`Conv2d`]) on codes: input
/// `[N, C, H, W]` holds u7 codes, each output position is one row of patches
/// (`(c, ki, kj)` order, the order of a weight row), padding taps take the input zero point
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
        Ok(Self { params, core, pool })
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
    pub fn forward_with(&self, path: Int8Path, input: &Tensor) -> nn::Result<Tensor> {
        let shape = self.output_shape(input.shape())?;
        let (n, o, ph, pw) = (
            shape.dims()[0],
            shape.dims()[1],
            shape.dims()[2],
            shape.dims()[3],
        );
        let [_, _, oh, ow] = self.params.output_dims(input.shape())?;
        let d = input.dims();
        let (c, h, w) = (d[1], d[2], d[3]);
        let image_in = c * h * w;
        let image_out = o * ph * pw;
        let mut out = vec![0f32; n * image_out];
        if n == 0 || image_out == 0 {
            return Ok(Tensor::new(shape.dims(), out)?);
        }
        let p = &self.params;
        let k = p.patch_len();
        let kp = padded_depth(k);
        let positions = oh * ow;
        let zp = self.core.input().zero_points()[0] as u8;
        out.par_chunks_mut(IMAGES_PER_TASK * image_out)
            .zip(input.data().par_chunks(IMAGES_PER_TASK * image_in))
            .try_for_each(|(y, x)| -> nn::Result<()> {
                let images = x.len() / image_in;
                let mut codes = vec![0u8; x.len()];
                self.core.codes_to_u8("quant_conv2d", x, &mut codes)?;
                let mut rows = vec![zp; images * positions * kp];
                for (img, xs) in codes.chunks_exact(image_in).enumerate() {
                    let dst = &mut rows[img * positions * kp..(img + 1) * positions * kp];
                    patch_rows(p, xs, (c, h, w), (oh, ow), kp, dst);
                }
                let m = images * positions;
                let mut acc = vec![0i32; m * o];
                gemm_u7i8_with(path, &rows, kp, m, self.core.packed(), &mut acc)?;
                // Requantize channel by channel, reading the GEMM's [positions, O] result
                // down a column (after the fused pooling's maximum) and writing NCHW planes.
                let mut pooled = vec![0i32; ph * pw];
                for (img, ys) in y.chunks_exact_mut(image_out).enumerate() {
                    let acc = &acc[img * positions * o..(img + 1) * positions * o];
                    for (j, plane) in ys.chunks_exact_mut(ph * pw).enumerate() {
                        if self.pool == 1 {
                            self.core.finish_channel(j, &acc[j..], o, plane);
                            continue;
                        }
                        for (py, row) in pooled.chunks_exact_mut(pw).enumerate() {
                            for (px, v) in row.iter_mut().enumerate() {
                                let at = |dy: usize, dx: usize| {
                                    acc[((2 * py + dy) * ow + 2 * px + dx) * o + j]
                                };
                                *v = at(0, 0).max(at(0, 1)).max(at(1, 0).max(at(1, 1)));
                            }
                        }
                        self.core.finish_channel(j, &pooled, 1, plane);
                    }
                }
                Ok(())
            })?;
        Ok(Tensor::new(shape.dims(), out)?)
    }
}

/// One image's patches as rows of `kp` bytes (`dst` pre-filled with the zero point, which
/// the padding taps keep): row `oy * ow + ox`, byte `(ci * kh + ki) * kw + kj`.
fn patch_rows(
    p: &Conv2dParams,
    x: &[u8],
    (c, h, w): (usize, usize, usize),
    (oh, ow): (usize, usize),
    kp: usize,
    dst: &mut [u8],
) {
    let (kh, kw) = p.kernel;
    let (sh, sw) = p.stride;
    let (dh, dw) = p.dilation;
    let (pt, pl) = (p.padding.top, p.padding.left);
    for oy in 0..oh {
        for ox in 0..ow {
            let row = &mut dst[(oy * ow + ox) * kp..][..kh * kw * c];
            for ci in 0..c {
                let plane = &x[ci * h * w..(ci + 1) * h * w];
                for ki in 0..kh {
                    let iy = (oy * sh + ki * dh).wrapping_sub(pt);
                    if iy >= h {
                        continue;
                    }
                    let src = &plane[iy * w..(iy + 1) * w];
                    let taps = &mut row[(ci * kh + ki) * kw..][..kw];
                    let ix0 = (ox * sw).wrapping_sub(pl);
                    if dw == 1 && ix0 < w && ix0 + kw <= w {
                        // The whole window row lies inside the image: one copy, of a constant
                        // size for the common kernels (a `memmove` call per 3 or 5 bytes cost
                        // 9% of a quantized lenet5's time).
                        let run = &src[ix0..ix0 + kw];
                        match kw {
                            3 => copy_fixed::<3>(taps, run),
                            5 => copy_fixed::<5>(taps, run),
                            _ => taps.copy_from_slice(run),
                        }
                        continue;
                    }
                    for (kj, t) in taps.iter_mut().enumerate() {
                        let ix = (ox * sw + kj * dw).wrapping_sub(pl);
                        if ix < w {
                            *t = src[ix];
                        }
                    }
                }
            }
        }
    }
}

/// `dst.copy_from_slice(src)` for slices of length `N`, inlined as fixed-size moves.
#[inline(always)]
fn copy_fixed<const N: usize>(dst: &mut [u8], src: &[u8]) {
    if let (Ok(d), Ok(s)) = (<&mut [u8; N]>::try_from(dst), <&[u8; N]>::try_from(src)) {
        *d = *s;
    }
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
