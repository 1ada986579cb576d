//! The weight gradient of a stride-1 convolution computed directly, without an im2col matrix:
//!
//! `dW[o, c, ki, kj] += sum_{n, oy, ox} dY[n, o, oy, ox] * Xp[n, c, oy + ki, ox + kj]`
//!
//! (`Xp` the zero-padded input). The output channels are the vector lanes: `dY` is first
//! transposed to `[n][O/16][position][16]` (channels past `O` zero) by 16 x 16 register
//! transposes, so that one position's output gradients are `NB` vectors. For one input channel `c` and
//! kernel row `ki`, `KW x NB` zmm accumulators (one per tap column `kj` and channel block)
//! take, at each output position, `NB` loads of `dY`, `KW` broadcasts of `Xp` and `KW * NB`
//! FMAs. lenet5's conv2 (O = 50, 5 x 5): 20 accumulators, 4 loads + 5 broadcasts per 20 FMAs.
//!
//! The GEMM form it replaces built the im2col matrix of the block (`patch x positions`: 1 MB
//! per 8 images of lenet5's conv2, written and read back once per step) and multiplied it by
//! `dY^T`; in a lenet5 epoch im2col alone took 9% of the CPU samples (session 14).
//!
//! Summation order: per `(c, ki)`, over images, then rows, then positions, then added to
//! `dW`: the same for any thread count (the caller's blocks are summed in block order).

use std::cell::RefCell;

use super::direct::PaddedPlanes;
#[cfg(target_arch = "x86_64")]
use super::direct::blocked::transpose_row_avx512;
use super::geometry::ConvGeometry;
use crate::dispatch::F32Path;

/// Lanes of one output-channel block.
const LANES: usize = 16;

/// The largest number of output-channel blocks a kernel holds (64 output channels).
const MAX_BLOCKS: usize = 4;

std::thread_local! {
    /// Per-thread transposed `dY` and padded input of a call, reused across calls.
    static BUF: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Whether [`accumulate`] handles `geo` on `path`: AVX-512 F, one group, stride and dilation
/// 1, at most 64 output channels, kernel width 3 or 5 (lenet5's and cnn-teacher's layers).
pub(super) fn applies(path: F32Path, geo: &ConvGeometry) -> bool {
    path == F32Path::Avx512F
        && cfg!(target_arch = "x86_64")
        && geo.groups == 1
        && (geo.sh, geo.sw, geo.dh, geo.dw) == (1, 1, 1, 1)
        && (1..=MAX_BLOCKS * LANES).contains(&geo.o)
        && matches!(geo.kw, 3 | 5)
        && geo.kh >= 1
}

/// Adds the weight gradient of images `n0..n0 + nb` to `dw` (`[O, C, kh, kw]`); `x` is the
/// whole input `[N, C, H, W]`, `gy` the whole output gradient `[N, O, OH, OW]`. The caller
/// checked [`applies`] (the CPU runs AVX-512 F) and the lengths.
pub(super) fn accumulate(
    geo: &ConvGeometry,
    x: &[f32],
    gy: &[f32],
    n0: usize,
    nb: usize,
    dw: &mut [f32],
) {
    let blocks = geo.o.div_ceil(LANES);
    let op = geo.oh * geo.ow;
    // Every tap of every output position lies in the padded plane `hp x wp`.
    let (hp, wp) = (geo.oh + geo.kh - 1, geo.ow + geo.kw - 1);
    let dyt_len = nb * op * blocks * LANES;
    let xp_len = nb * geo.c * hp * wp;
    super::fused::with_buf(&BUF, dyt_len + xp_len, |buf| {
        let (dyt, xp) = buf.split_at_mut(dyt_len);
        // SAFETY: `applies` checked AVX-512 F (the caller's contract); `dyt` holds `nb`
        // images of `blocks * 16 * op` floats.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            transpose_grad(
                geo,
                &gy[n0 * geo.o * op..(n0 + nb) * geo.o * op],
                blocks,
                dyt,
            )
        };
        // `xp[n][c][yy][xx] = x[n][c][yy - pt][xx - pl]` inside the input, zero elsewhere.
        let planes = PaddedPlanes {
            hw: (geo.h, geo.w),
            padded: (hp, wp),
            top_left: (geo.pt, geo.pl),
        };
        planes.pad(&x[n0 * geo.c * geo.h * geo.w..], xp, nb * geo.c, 0..hp);
        let d = Dims {
            nb,
            c: geo.c,
            oh: geo.oh,
            ow: geo.ow,
            hp,
            wp,
        };
        let taps = geo.kh * geo.kw;
        for c in 0..geo.c {
            for ki in 0..geo.kh {
                let mut sums = [[0.0f32; LANES * MAX_BLOCKS]; 5];
                // SAFETY: `applies` checked AVX-512 F (the caller's contract) and the kernel
                // width and block count the match covers; `dyt` and `xp` have the lengths
                // `Dims` describes.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    match (geo.kw, blocks) {
                        (3, 1) => row::<3, 1>(&d, xp, dyt, c, ki, &mut sums),
                        (3, 2) => row::<3, 2>(&d, xp, dyt, c, ki, &mut sums),
                        (3, 3) => row::<3, 3>(&d, xp, dyt, c, ki, &mut sums),
                        (3, _) => row::<3, 4>(&d, xp, dyt, c, ki, &mut sums),
                        (_, 1) => row::<5, 1>(&d, xp, dyt, c, ki, &mut sums),
                        (_, 2) => row::<5, 2>(&d, xp, dyt, c, ki, &mut sums),
                        (_, 3) => row::<5, 3>(&d, xp, dyt, c, ki, &mut sums),
                        (_, _) => row::<5, 4>(&d, xp, dyt, c, ki, &mut sums),
                    }
                }
                for (kj, s) in sums.iter().enumerate().take(geo.kw) {
                    for (o, &v) in s.iter().enumerate().take(geo.o) {
                        dw[(o * geo.c + c) * taps + ki * geo.kw + kj] += v;
                    }
                }
            }
        }
    });
}

/// The sizes [`row`] walks.
struct Dims {
    nb: usize,
    c: usize,
    oh: usize,
    ow: usize,
    hp: usize,
    wp: usize,
}

/// `dyt[n][b][p][l] = gy[n][16 b + l][p]` for the block's images (`gy` starts at the block),
/// channels past `O` zero: [`transpose_row_avx512`] per 16-channel block (a scalar loop took
/// 6.8% of a lenet5 epoch's samples).
///
/// # Safety
/// The CPU must support AVX-512 F; `gy` holds whole images, `dyt` as many times
/// `blocks * 16 * OH * OW` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose_grad(geo: &ConvGeometry, gy: &[f32], blocks: usize, dyt: &mut [f32]) {
    let op = geo.oh * geo.ow;
    let per_block = op * LANES;
    for (img, out) in gy
        .chunks_exact(geo.o * op)
        .zip(dyt.chunks_exact_mut(blocks * per_block))
    {
        for (b, dst) in out.chunks_exact_mut(per_block).enumerate() {
            let cin = (geo.o - b * LANES).min(LANES);
            // SAFETY: AVX-512 F by this function's contract; `img[16 b * op..]` holds `cin`
            // rows of `op` floats, `dst` is `op` lines of 16.
            unsafe { transpose_row_avx512(&img[b * LANES * op..], op, cin, dst) };
        }
    }
}

/// The sums over the block's positions for input channel `c` and kernel row `ki`: `sums[kj]
/// [o]` (lanes past `16 * NB` untouched).
///
/// # Safety
/// The CPU must support AVX-512 F; `xp` holds `d.nb * d.c` padded planes of `d.hp x d.wp`
/// with `d.hp >= d.oh + ki + 1` and `d.wp >= d.ow + KW - 1`; `dyt` holds `d.nb * NB` blocks
/// of `d.oh * d.ow` lines of 16; `c < d.c`; `KW <= 5`, `NB <= MAX_BLOCKS`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn row<const KW: usize, const NB: usize>(
    d: &Dims,
    xp: &[f32],
    dyt: &[f32],
    c: usize,
    ki: usize,
    sums: &mut [[f32; LANES * MAX_BLOCKS]; 5],
) {
    use std::arch::x86_64::*;
    debug_assert!(d.oh + ki <= d.hp && d.ow + KW <= d.wp + 1 && c < d.c);
    debug_assert!(xp.len() >= d.nb * d.c * d.hp * d.wp);
    debug_assert!(dyt.len() >= d.nb * d.oh * d.ow * NB * LANES);
    // SAFETY (whole body): reads stay inside `xp` (plane `n*C + c`, rows `oy + ki < hp`,
    // columns `ox + kj < wp`) and `dyt` (line `oy*OW + ox` of block `n*NB + b`); the
    // stores write `sums[kj][16 b..16 b + 16]` for `kj < KW <= 5`, `b < NB <= 4`.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); NB]; KW];
        let per_block = d.oh * d.ow * LANES;
        for n in 0..d.nb {
            let plane = xp.as_ptr().add((n * d.c + c) * d.hp * d.wp);
            let mut g = dyt.as_ptr().add(n * NB * per_block);
            for oy in 0..d.oh {
                let row = plane.add((oy + ki) * d.wp);
                for ox in 0..d.ow {
                    let v: [__m512; NB] =
                        std::array::from_fn(|b| _mm512_loadu_ps(g.add(per_block * b)));
                    for (kj, a) in acc.iter_mut().enumerate() {
                        let s = _mm512_set1_ps(*row.add(ox + kj));
                        for (ab, &vb) in a.iter_mut().zip(&v) {
                            *ab = _mm512_fmadd_ps(s, vb, *ab);
                        }
                    }
                    g = g.add(LANES);
                }
            }
        }
        for (kj, a) in acc.iter().enumerate() {
            for (b, &ab) in a.iter().enumerate() {
                _mm512_storeu_ps(sums[kj].as_mut_ptr().add(LANES * b), ab);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::{Conv2dParams, Padding, conv2d_grads_reference};
    use crate::rng::Rng;
    use crate::tensor::Tensor;
    use crate::testing::assert_close;

    fn normal(rng: &mut Rng, dims: &[usize]) -> Tensor {
        let n = dims.iter().product();
        Tensor::new(dims, (0..n).map(|_| rng.normal()).collect()).unwrap()
    }

    /// The direct weight gradient of a sub-block of images, added onto a nonzero `dW`,
    /// against the f64 reference: output channels around the 16-lane blocks, both kernel
    /// widths, kernel heights 1 to 5, asymmetric and larger-than-input padding, odd sizes.
    #[test]
    fn matches_the_reference_around_lane_blocks() {
        if !F32Path::Avx512F.is_supported() {
            eprintln!("skipped: direct weight gradient (CPU lacks avx512f)");
            return;
        }
        let mut rng = Rng::seed_from_u64(11);
        let pad = |t, b, l, r| Padding {
            top: t,
            bottom: b,
            left: l,
            right: r,
        };
        for (c, o, (kh, kw), padding, (n, h, w)) in [
            (1, 20, (5, 5), pad(0, 0, 0, 0), (3, 28, 28)),
            (20, 50, (5, 5), pad(0, 0, 0, 0), (4, 12, 12)),
            (3, 1, (3, 3), pad(1, 1, 1, 1), (2, 7, 6)),
            (2, 15, (1, 3), pad(0, 2, 1, 0), (2, 5, 9)),
            (4, 16, (3, 5), pad(2, 0, 0, 3), (3, 6, 7)),
            (5, 17, (5, 3), pad(1, 2, 2, 1), (2, 4, 5)),
            (2, 33, (3, 3), pad(3, 3, 3, 3), (1, 1, 2)),
            (32, 64, (3, 3), pad(1, 1, 1, 1), (2, 14, 14)),
        ] {
            let p = Conv2dParams::new(c, o, (kh, kw)).with_padding(padding);
            let x = normal(&mut rng, &[n, c, h, w]);
            let wt = normal(&mut rng, &p.weight_dims());
            let geo = ConvGeometry::with_weight(&p, x.shape(), wt.shape()).unwrap();
            assert!(applies(F32Path::Avx512F, &geo), "{c}->{o} {kh}x{kw}");
            let gy = normal(&mut rng, &[n, o, geo.oh, geo.ow]);
            let want = conv2d_grads_reference(&x, &wt, &gy, &p).unwrap().weight;
            // Images 0..1 and 1..n in two calls, onto a gradient that starts at 1.
            let mut dw = vec![1.0f32; wt.numel()];
            accumulate(&geo, x.data(), gy.data(), 0, 1, &mut dw);
            accumulate(&geo, x.data(), gy.data(), 1, n - 1, &mut dw);
            let want: Vec<f32> = want.data().iter().map(|v| v + 1.0).collect();
            let tol = 1e-5 * ((n * geo.oh * geo.ow) as f32).sqrt();
            assert_close(&dw, &want, tol, tol);
        }
    }

    /// Where the direct kernel does not apply, the GEMM path keeps the layer.
    #[test]
    fn other_geometries_stay_on_the_gemm() {
        let x = Tensor::zeros_dims(&[1, 2, 9, 9]).unwrap();
        let cases = [
            Conv2dParams::new(2, 4, (3, 3)).with_stride((2, 2)),
            Conv2dParams::new(2, 4, (3, 3)).with_dilation((2, 2)),
            Conv2dParams::new(2, 4, (3, 3)).with_groups(2),
            Conv2dParams::new(2, 65, (3, 3)),
            Conv2dParams::new(2, 4, (3, 4)),
            Conv2dParams::new(2, 4, (1, 1)),
        ];
        for p in cases {
            let wshape = crate::shape::Shape::new(&p.weight_dims()).unwrap();
            let geo = ConvGeometry::with_weight(&p, x.shape(), &wshape).unwrap();
            assert!(!applies(F32Path::Avx512F, &geo), "{p:?}");
        }
        let p = Conv2dParams::new(2, 4, (3, 3));
        let wshape = crate::shape::Shape::new(&p.weight_dims()).unwrap();
        let geo = ConvGeometry::with_weight(&p, x.shape(), &wshape).unwrap();
        for path in [F32Path::Portable, F32Path::Avx2Fma] {
            assert!(!applies(path, &geo), "{path:?}");
        }
    }
}
