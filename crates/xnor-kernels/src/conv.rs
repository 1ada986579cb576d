//! Binary conv2d on XNOR + popcount: binary im2col into packed rows, the binary GEMM, and an
//! exact zero-padding correction.
//!
//! **Bit order of a patch.** A weight row and a patch row hold their `K = kh * kw * C` signs
//! in `(ki, kj, c)` order, channel innermost (not the `(c, ki, kj)` order of an f32 weight
//! `[O, C, kh, kw]`): the input's signs are packed channels-last once per forward
//! ([`pack_channels_last`], each pixel's `C` channel bits in `ceil(C / 64)` words), so the
//! binary im2col appends one run of `C` bits per tap instead of testing `K` floats per output
//! position. [`BinaryConvWeights::pack`] permutes the weight to the same order.
//!
//! **Padding convention: zero padding, exact.** A tap in the padding holds 0, which has no
//! bit; the im2col leaves its bits 0 (read as +1) and the result is corrected: with `M` the
//! padded taps of an output position, the XNOR count includes `sum_{t in M} w_t`, so
//! `y = (K - 2 popcount(x ^ w)) - (|M| - 2 popcount(w & mask_M))`. The correction depends only
//! on the filter and the position, not on the image, and is zero away from the border; it is
//! computed once per input size ([`padding_correction`]). So the binary conv equals the f32
//! conv of `sign(x)` and `sign(w)` with PyTorch's zero padding, exactly.
//!
//! Supported: stride, dilation, asymmetric padding; `groups = 1` (the cnn-teacher and
//! LeNet-5 layers).

use rayon::prelude::*;
use tensor_core::conv::Conv2dParams;
use tensor_core::{Shape, Tensor};

use crate::error::{Result, XnorError};
use crate::gemm::{BinaryGemmParams, binary_gemm_with};
use crate::pack::{PackedRows, WORD_BITS, words_for};

/// A convolution's geometry on one input shape, as the binary kernels use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BinaryConvGeometry {
    /// Images.
    pub n: usize,
    /// Input channels.
    pub c: usize,
    /// Input height and width.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub o: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    params: Conv2dParams,
}

impl BinaryConvGeometry {
    /// The geometry of `p` on an input `[N, C, H, W]`; errors as
    /// [`Conv2dParams::output_dims`], and for `groups != 1`.
    pub fn new(p: &Conv2dParams, input: &Shape) -> Result<Self> {
        let [n, o, oh, ow] = p.output_dims(input)?;
        if p.groups != 1 {
            return Err(XnorError::InvalidArgument {
                op: "binary_conv2d",
                reason: format!(
                    "groups = {}: binary convolutions support groups = 1",
                    p.groups
                ),
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
            params: *p,
        })
    }

    /// Output positions per image, `OH * OW`.
    pub fn out_plane(&self) -> usize {
        self.oh * self.ow
    }

    /// The depth of a patch, `kh * kw * C`.
    pub fn depth(&self) -> usize {
        self.params.kernel.0 * self.params.kernel.1 * self.c
    }

    /// Input row and column of tap `(ki, kj)` at output `(oy, ox)`, or `None` in the padding.
    fn tap(&self, oy: usize, ox: usize, ki: usize, kj: usize) -> Option<(usize, usize)> {
        let p = &self.params;
        let iy = (oy * p.stride.0 + ki * p.dilation.0).checked_sub(p.padding.top)?;
        let ix = (ox * p.stride.1 + kj * p.dilation.1).checked_sub(p.padding.left)?;
        (iy < self.h && ix < self.w).then_some((iy, ix))
    }
}

/// A convolution's weight as packed sign rows `[O, kh*kw*C]` in `(ki, kj, c)` order (module
/// docs), with its geometry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinaryConvWeights {
    params: Conv2dParams,
    rows: PackedRows,
}

impl BinaryConvWeights {
    /// Packs the signs of an f32 weight `[O, C, kh, kw]` (row-major) for `params`.
    pub fn pack(params: &Conv2dParams, weight: &[f32]) -> Result<Self> {
        params.validate()?;
        let [o, c, kh, kw] = params.weight_dims();
        let k = o * c * kh * kw;
        if weight.len() != k {
            return Err(XnorError::LengthMismatch {
                op: "BinaryConvWeights::pack",
                what: "weight",
                got: weight.len(),
                expected: k,
            });
        }
        // [O, C, kh, kw] -> [O, kh, kw, C].
        let mut permuted = Vec::with_capacity(k);
        for oi in 0..o {
            for t in 0..kh * kw {
                permuted.extend((0..c).map(|ci| weight[(oi * c + ci) * kh * kw + t]));
            }
        }
        Self::from_rows(params, PackedRows::pack(&permuted, o, kh * kw * c)?)
    }

    /// Weights from packed rows already in `(ki, kj, c)` order (a stored layer); checks that
    /// the rows fit `params`.
    pub fn from_rows(params: &Conv2dParams, rows: PackedRows) -> Result<Self> {
        params.validate()?;
        let [o, c, kh, kw] = params.weight_dims();
        if params.groups != 1 || rows.rows() != o || rows.depth() != kh * kw * c {
            return Err(XnorError::InvalidArgument {
                op: "BinaryConvWeights::from_rows",
                reason: format!(
                    "{} rows of depth {} for {params:?} (expected {o} rows of depth {}, groups 1)",
                    rows.rows(),
                    rows.depth(),
                    kh * kw * c
                ),
            });
        }
        Ok(Self {
            params: *params,
            rows,
        })
    }

    /// The geometry.
    pub fn params(&self) -> &Conv2dParams {
        &self.params
    }

    /// The packed rows `[O, kh*kw*C]`.
    pub fn rows(&self) -> &PackedRows {
        &self.rows
    }

    /// The ±1 weight `[O, C, kh, kw]` (for tests and densifying).
    pub fn unpack(&self) -> Vec<f32> {
        let [o, c, kh, kw] = self.params.weight_dims();
        let flat = self.rows.unpack();
        let mut w = vec![0.0; flat.len()];
        for oi in 0..o {
            for t in 0..kh * kw {
                for ci in 0..c {
                    w[(oi * c + ci) * kh * kw + t] = flat[(oi * kh * kw + t) * c + ci];
                }
            }
        }
        w
    }
}

/// The signs of `x` (`[N, C, H, W]`, row-major) packed channels-last: `[N, H, W, ceil(C/64)]`
/// words, bit `c % 64` of word `c / 64` of a pixel = channel `c` negative.
pub fn pack_channels_last(x: &[f32], (n, c, h, w): (usize, usize, usize, usize)) -> Vec<u64> {
    let cw = words_for(c);
    let plane = h * w;
    let mut out = vec![0u64; n * plane * cw];
    out.par_chunks_mut((plane * cw).max(1))
        .zip(x.par_chunks((c * plane).max(1)))
        .for_each(|(dst, img)| {
            // One word of 64 channels for every pixel at a time, built in a contiguous buffer
            // (the inner loop over pixels vectorises), then scattered to the pixels.
            let mut word = vec![0u64; plane];
            for g in 0..cw {
                word.fill(0);
                for ci in g * WORD_BITS..(c.min((g + 1) * WORD_BITS)) {
                    let bit = ci % WORD_BITS;
                    let channel = &img[ci * plane..(ci + 1) * plane];
                    for (acc, &v) in word.iter_mut().zip(channel) {
                        *acc |= ((v < 0.0) as u64) << bit;
                    }
                }
                for (px, &v) in dst.chunks_exact_mut(cw).zip(&word) {
                    px[g] = v;
                }
            }
        });
    out
}

/// Binary im2col of image `image`: one packed row of depth `kh*kw*C` per output position
/// (row `oy * OW + ox`), taps in `(ki, kj, c)` order from the channels-last signs `bits`
/// ([`pack_channels_last`]); padded taps are left 0 (see the module docs).
pub fn binary_im2col(geo: &BinaryConvGeometry, bits: &[u64], image: usize) -> Result<PackedRows> {
    let cw = words_for(geo.c);
    let img_len = geo.h * geo.w * cw;
    let src =
        bits.get(image * img_len..(image + 1) * img_len)
            .ok_or(XnorError::LengthMismatch {
                op: "binary_im2col",
                what: "channels-last bits",
                got: bits.len(),
                expected: geo.n * img_len,
            })?;
    let depth = geo.depth();
    let wpr = words_for(depth);
    let (kh, kw) = geo.params.kernel;
    let mut words = vec![0u64; geo.out_plane() * wpr];
    for (pos, row) in words.chunks_exact_mut(wpr.max(1)).enumerate() {
        let (oy, ox) = (pos / geo.ow, pos % geo.ow);
        let mut at = 0;
        for ki in 0..kh {
            for kj in 0..kw {
                if let Some((iy, ix)) = geo.tap(oy, ox, ki, kj) {
                    let pixel = &src[(iy * geo.w + ix) * cw..(iy * geo.w + ix + 1) * cw];
                    append_bits(row, at, pixel, geo.c);
                }
                at += geo.c;
            }
        }
    }
    PackedRows::from_words(geo.out_plane(), depth, words)
}

/// ORs the first `len` bits of `src` (LSB-first) into `row` at bit offset `at`; the bits of
/// `src` past `len` are 0 (channels-last packing), and so the bits of `row` past
/// `at + len` stay as they were.
fn append_bits(row: &mut [u64], at: usize, src: &[u64], len: usize) {
    let mut at = at;
    let mut left = len;
    for &v in src {
        let n = left.min(WORD_BITS);
        let (word, shift) = (at / WORD_BITS, at % WORD_BITS);
        row[word] |= v << shift;
        if shift != 0 && shift + n > WORD_BITS {
            row[word + 1] |= v >> (WORD_BITS - shift);
        }
        at += n;
        left -= n;
    }
}

/// The zero-padding correction `[O, OH*OW]` (module docs): for each filter and output
/// position, `|M| - 2 popcount(w & mask_M)` (the sum of the filter's signs on the padded taps
/// `M`), to subtract from the XNOR count; zero where no tap is padded.
pub fn padding_correction(weights: &BinaryConvWeights, geo: &BinaryConvGeometry) -> Vec<i32> {
    let depth = geo.depth();
    let wpr = words_for(depth);
    let (kh, kw) = geo.params.kernel;
    let mut corr = vec![0i32; geo.o * geo.out_plane()];
    let mut mask = vec![0u64; wpr];
    for pos in 0..geo.out_plane() {
        let (oy, ox) = (pos / geo.ow, pos % geo.ow);
        mask.fill(0);
        let mut padded = 0;
        for ki in 0..kh {
            for kj in 0..kw {
                if geo.tap(oy, ox, ki, kj).is_none() {
                    let t = ki * kw + kj;
                    set_run(&mut mask, t * geo.c, geo.c);
                    padded += geo.c;
                }
            }
        }
        if padded == 0 {
            continue;
        }
        for o in 0..geo.o {
            let neg: u32 = weights
                .rows
                .row(o)
                .iter()
                .zip(&mask)
                .map(|(w, m)| (w & m).count_ones())
                .sum();
            // Padded taps of a positive weight add +1 each, of a negative one -1.
            corr[o * geo.out_plane() + pos] = padded as i32 - 2 * neg as i32;
        }
    }
    corr
}

/// Sets bits `at..at+len` of `mask`.
fn set_run(mask: &mut [u64], at: usize, len: usize) {
    for b in at..at + len {
        mask[b / WORD_BITS] |= 1 << (b % WORD_BITS);
    }
}

/// The binary convolution of `sign(input)` (`[N, C, H, W]`) with the packed weights: the
/// dot products `[N, O, OH, OW]` as i32, zero padding exact (module docs), on
/// `gemm.path`. Images run in parallel (each its own sequential GEMM `W [O, K] x patches^T`,
/// whose `[O, OH*OW]` result is the image's NCHW output); a single image runs its GEMM on
/// `gemm.threads`.
pub fn binary_conv2d(
    input: &Tensor,
    weights: &BinaryConvWeights,
    gemm: &BinaryGemmParams,
) -> Result<Vec<i32>> {
    let geo = BinaryConvGeometry::new(&weights.params, input.shape())?;
    let bits = pack_channels_last(input.data(), (geo.n, geo.c, geo.h, geo.w));
    let corr = padding_correction(weights, &geo);
    let per_image = geo.o * geo.out_plane();
    let mut out = vec![0i32; geo.n * per_image];
    let one_image = |image: usize, dst: &mut [i32], p: &BinaryGemmParams| -> Result<()> {
        let patches = binary_im2col(&geo, &bits, image)?;
        binary_gemm_with(&weights.rows, &patches, dst, p)?;
        dst.iter_mut().zip(&corr).for_each(|(y, c)| *y -= c);
        Ok(())
    };
    if geo.n == 1 || gemm.threads == 1 {
        for (image, dst) in out.chunks_mut(per_image.max(1)).enumerate() {
            one_image(image, dst, gemm)?;
        }
    } else {
        let seq = gemm.threads(1);
        out.par_chunks_mut(per_image.max(1))
            .enumerate()
            .try_for_each(|(image, dst)| one_image(image, dst, &seq))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_bits_straddles_words() {
        let mut row = [0u64; 2];
        append_bits(&mut row, 60, &[0b1_0110], 5);
        assert_eq!(row, [0b0110 << 60, 0b1]);
        let mut row = [0u64; 3];
        append_bits(&mut row, 3, &[u64::MAX, 0b11], 66);
        assert_eq!(row, [u64::MAX << 3, 0b11111, 0]);
    }

    #[test]
    fn weights_round_trip_through_the_permutation() {
        let p = Conv2dParams::new(3, 2, (2, 2));
        let w: Vec<f32> = (0..24)
            .map(|i| if i % 3 == 1 { -1.0 } else { 1.0 })
            .collect();
        let bw = BinaryConvWeights::pack(&p, &w).unwrap();
        assert_eq!(bw.unpack(), w);
        assert_eq!(bw.rows().depth(), 12);
        // Tap 0 of filter 0 holds channels 0, 1, 2 = weights 0, 4, 8.
        let bits: Vec<bool> = bw.rows().row_bits(0)[..3].iter().map(|b| *b).collect();
        assert_eq!(bits, [w[0] < 0.0, w[4] < 0.0, w[8] < 0.0]);
        let other = PackedRows::pack(&[1.0; 12], 3, 4).unwrap();
        assert!(BinaryConvWeights::from_rows(&p, other).is_err());
    }
}
