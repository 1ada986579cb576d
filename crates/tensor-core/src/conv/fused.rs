//! The forward convolution with a fused epilogue (bias, ReLU, 2x2 max pool), dispatched:
//! the direct kernel (`direct`: AVX-512 F or AVX2 + FMA) where it applies, im2col + GEMM and
//! separate passes otherwise.

use std::cell::RefCell;

use rayon::prelude::*;

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
/// from it the image's output-channel tiles (16 channels on AVX2, pairs of 16 on AVX-512)
/// are split between the caller and the [`duo`](crate::duo) helper (a round trip of ~0.4 us
/// when the helper is awake, against ~15 us for a rayon fork/join that wakes a sleeping
/// worker).
///
/// 2^20 splits lenet5 conv2 (1.6 M) and cnn-teacher conv2-4 (3.6-7.2 M), the wide teacher's
/// conv2-4, and no first layer (one input channel, 0.2-0.45 M, 15-25 us). Session 11 measured
/// rayon splits from 2^20 at 117-119 us (lenet5) and 435-445 us (cnn-teacher) on 2 threads
/// against 87-92 / 420-431 us unsplit; session 12 measured the duo split only on a machine
/// under load average 5-8 (no free core: see docs/BENCHMARKS.md, issue 16, session 12), so
/// re-measure this threshold on a quiet machine.
pub const DIRECT_PAR_MIN_MACS: usize = 1 << 20;

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
    let owned;
    let packed = match packed {
        Some(pk) if pk.weight_dims() == p.weight_dims() => pk,
        Some(pk) => {
            return Err(TensorError::ShapeMismatch {
                op: "conv2d: packed weights",
                lhs: Shape::new(&pk.weight_dims())?,
                rhs: Shape::new(&p.weight_dims())?,
            });
        }
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
    let mut y = Tensor::zeros_dims(&out_dims)?;
    let img_out = out_dims[1] * out_dims[2] * out_dims[3];
    if n == 0 || img_out == 0 {
        return Ok(y);
    }
    let img_in = d[1] * d[2] * d[3];
    let x = input.data();
    // 1 inside `serial::run`: the caller runs one chunk of a batch per thread already.
    let threads = crate::serial::threads();
    let per_image_macs = o * oh * ow * p.patch_len();
    let run = |xi: &[f32], yi: &mut [f32], split: bool| {
        direct_image(&geo, &offs, &bases, packed, bias, epi, wide, xi, yi, split)
    };
    if threads > 1 && n > 1 {
        y.data_mut()
            .par_chunks_mut(img_out)
            .zip(x.par_chunks(img_in))
            .for_each(|(yi, xi)| run(xi, yi, false));
    } else {
        let split = threads > 1 && per_image_macs >= DIRECT_PAR_MIN_MACS;
        for (yi, xi) in y.data_mut().chunks_mut(img_out).zip(x.chunks(img_in)) {
            run(xi, yi, split);
        }
    }
    Ok(y)
}

std::thread_local! {
    /// Per-thread padded image and accumulator tiles, reused across calls (batch-1
    /// inference then allocates only its output).
    static PADDED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static ACC: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on `len` floats of `cell` (a fresh buffer if the cell is borrowed already).
fn with_buf<R>(
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

/// One image: pad it, then every tile of output channels (split over two threads by
/// [`duo::join`] when `split`): pairs of 16-channel blocks by the AVX-512 kernel on the
/// channel-blocked image when `wide`, else 16-channel tiles by the AVX2 one on the NCHW padded
/// planes.
#[allow(clippy::too_many_arguments)]
fn direct_image(
    geo: &Direct,
    offs: &[u32],
    bases: &[u32],
    packed: &PackedConvWeights,
    bias: Option<&[f32]>,
    epi: ConvEpilogue,
    wide: bool,
    x: &[f32],
    y: &mut [f32],
    split: bool,
) {
    let plane = y.len() / geo.o;
    let (pad_len, tile_channels) = if wide {
        (geo.blocked_len(), PAIR)
    } else {
        (geo.pad_len, OB)
    };
    with_buf(&PADDED, pad_len, |xp| {
        if !wide {
            geo.pad_image(x, xp);
        }
        // SAFETY: `wide` only on the AVX-512 F path the caller required; `xp` has the
        // blocked length.
        #[cfg(target_arch = "x86_64")]
        if wide {
            unsafe { geo.pad_image_blocked(x, xp) };
        }
        let xp = &*xp;
        let tile = |(t, yt): (usize, &mut [f32])| {
            with_buf(&ACC, 2 * geo.acc_len(), |acc| {
                // SAFETY: the caller chose the direct path only on x86_64 with AVX2 + FMA
                // (`F32Path::Avx2Fma.is_supported()`), and `wide` only on the AVX-512 F path
                // it required; `geo.np` is the kernel's; the buffer lengths are those
                // `Direct` derives.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    use super::direct::*;
                    let (relu, pool) = (epi.relu, epi.max_pool_2x2);
                    if wide {
                        blocked::pair_avx512(geo, xp, packed.blocked_pair(t), acc);
                        let (acc0, acc1) = acc.split_at(geo.acc_len());
                        let (y0, y1) = yt.split_at_mut(yt.len().min(OB * plane));
                        epilogue_avx2(geo, acc0, bias, t * PAIR, relu, pool, y0);
                        if !y1.is_empty() {
                            epilogue_avx2(geo, acc1, bias, t * PAIR + OB, relu, pool, y1);
                        }
                    } else {
                        let wt = packed.tile(t);
                        if yt.len() / plane > OB / 2 {
                            tile_avx2(geo, offs, bases, xp, wt, acc);
                        } else {
                            tile_avx2_half(geo, offs, bases, xp, wt, acc);
                        }
                        epilogue_avx2(geo, acc, bias, t * OB, relu, pool, yt);
                    }
                }
            })
        };
        // Split: the caller runs the first half of the tiles (the larger one: it starts at
        // once), the duo helper the rest; a layer of one tile stays whole.
        let span = tile_channels * plane;
        let tiles = geo.o.div_ceil(tile_channels);
        if split && tiles > 1 {
            let mine = tiles.div_ceil(2);
            let (lo, hi) = y.split_at_mut((mine * span).min(y.len()));
            duo::join(
                || lo.chunks_mut(span).enumerate().for_each(&tile),
                || {
                    let rest = hi.chunks_mut(span).enumerate();
                    rest.for_each(|(t, yt)| tile((mine + t, yt)));
                },
            );
        } else {
            y.chunks_mut(span).enumerate().for_each(&tile);
        }
    });
}
