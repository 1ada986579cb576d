//! The forward convolution of layers with few taps per output (`K = C kh kw <= 32`: the
//! first layer of an image model, one or three input channels) on AVX-512 F, with output
//! positions in the vector lanes: 16 positions of one output row per zmm, two rows at a time,
//! eight output channels per pass (16 accumulators), each tap one load per row and one
//! broadcast weight per channel. Bias and ReLU are applied in registers and the output rows
//! are stored straight into the NCHW planes. Each output is summed as the direct kernel sums
//! it (from zero, taps in order `(c, ky, kx)`, one FMA each, then the bias): the same bits,
//! so a layer gives the same output whether or not a pool after it is fused (the pooled
//! layers stay on the direct kernel).
//!
//! Why: the direct kernel puts channels in the lanes and positions in the accumulators, which
//! suits deep inputs; with one input channel its 9 or 25 FMAs per output are too few to pay
//! for writing the accumulators out and transposing them into the planes. cnn-teacher's conv1
//! (1 -> 32, 3x3, 28x28) took 13.4-13.6 us there at batch 1 on one thread (session 15,
//! timestamps around each layer of `slimnet bench --batch 1`).
//!
//! Layers that pool keep the direct kernel (its epilogue pools).

use std::cell::RefCell;
use std::ops::Range;

use super::direct::Direct;
use super::fused::{DIRECT_PAR_MIN_MACS, direct_applies, with_buf};
use super::{Conv2dParams, ConvEpilogue};
use crate::dispatch::F32Path;
use crate::duo;
use crate::error::TensorError;
use crate::tensor::Tensor;

/// The most taps per output (`C kh kw`) this kernel takes: beyond, the direct kernel's
/// channel lanes are full enough.
pub const SPATIAL_MAX_TAPS: usize = 32;

/// Output channels per pass (two rows of accumulators each).
const OC: usize = 8;

std::thread_local! {
    /// Per-thread padded image (`[C][Hp][Wp]`), reused across calls.
    static PADDED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Whether the fused forward on `path` runs `p` with `epi` here: the AVX-512 F path,
/// [`direct_applies`], at most [`SPATIAL_MAX_TAPS`] taps, no pooling.
pub(super) fn applies(path: F32Path, p: &Conv2dParams, epi: ConvEpilogue) -> bool {
    path == F32Path::Avx512F
        && cfg!(target_arch = "x86_64")
        && direct_applies(p)
        && p.patch_len() <= SPATIAL_MAX_TAPS
        && !epi.max_pool_2x2
}

/// `relu(conv(input) + bias)` (ReLU as `epi` says), a tensor of `out_dims`; the caller checked
/// the shapes, the bias, the AVX-512 F path and [`applies`]. Images run in parallel unless
/// [`crate::serial::threads`] is 1; a single image splits its output rows in two halves over
/// [`duo`] from [`DIRECT_PAR_MIN_MACS`].
pub(super) fn forward(
    input: &Tensor,
    weight: &[f32],
    bias: Option<&[f32]>,
    p: &Conv2dParams,
    epi: ConvEpilogue,
    out_dims: &[usize],
) -> Result<Tensor, TensorError> {
    let d = input.dims();
    let (oh, ow) = p.output_hw(d[2], d[3])?;
    let geo = Direct::new(p, (d[1], d[2], d[3]), (oh, ow), 1);
    let layer = Layer {
        geo: &geo,
        weight,
        bias,
        relu: epi.relu,
    };
    let (n, img_in, img_out) = (d[0], d[1] * d[2] * d[3], p.out_channels * oh * ow);
    if n == 0 || img_out == 0 {
        return Tensor::zeros_dims(out_dims);
    }
    let x = input.data();
    let threads = crate::serial::threads();
    if threads > 1 && n > 1 {
        let data = crate::par_zeroed_chunks(n * img_out, img_out, |i, yi| {
            // SAFETY: `yi` is one image's output.
            unsafe { layer.image(&x[i * img_in..(i + 1) * img_in], yi.as_mut_ptr(), 0..oh) };
            Ok::<(), TensorError>(())
        })?;
        return Tensor::new(out_dims, data);
    }
    let macs = img_out * p.patch_len();
    let mid = if threads > 1 && macs >= DIRECT_PAR_MIN_MACS {
        oh.div_ceil(2)
    } else {
        oh
    };
    // Left unwritten until the kernel writes it (see `conv2d_forward_fused_with`): zeroing it
    // here would put every line in this core's cache for the helper to fetch.
    let mut data = Vec::<f32>::with_capacity(n * img_out);
    for (i, xi) in x.chunks(img_in).enumerate() {
        // SAFETY: image `i`'s `img_out` floats are inside the capacity.
        unsafe { layer.split_at(xi, data.as_mut_ptr().add(i * img_out), mid) };
    }
    // SAFETY: `Layer::split_at` wrote every output row of every image.
    unsafe { data.set_len(n * img_out) };
    Tensor::new(out_dims, data)
}

/// One layer, everything but the image.
struct Layer<'a> {
    geo: &'a Direct,
    /// `[O][K]` as given (`K = C kh kw`).
    weight: &'a [f32],
    bias: Option<&'a [f32]>,
    relu: bool,
}

/// The output of one image, written by both halves of a split (other rows).
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: shared only by the two halves of one `duo::join` in `Layer::split_at`, which write
// other output rows of a buffer that outlives the join.
unsafe impl Send for Out {}
// SAFETY: as above.
unsafe impl Sync for Out {}

impl Out {
    /// The pointer (a method, so that closures capture the whole `Out`, which is `Send`).
    fn ptr(self) -> *mut f32 {
        self.0
    }
}

impl Layer<'_> {
    /// Output rows `0..mid` of image `x` on this thread and `mid..OH` on the [`duo`] helper
    /// (all here when `mid` leaves a half empty).
    ///
    /// # Safety
    /// `y` is valid for writes of the image's `O` planes of `OH x OW`, which nothing else
    /// accesses during the call.
    unsafe fn split_at(&self, x: &[f32], y: *mut f32, mid: usize) {
        let oh = self.geo.oh;
        let out = Out(y);
        // SAFETY (each call): the contract covers `y`; the halves write other rows.
        let rows = |r: Range<usize>| unsafe { self.image(x, out.ptr(), r) };
        if mid > 0 && mid < oh {
            duo::join(|| rows(0..mid), || rows(mid..oh));
        } else {
            rows(0..oh);
        }
    }

    /// Output rows `rows` of image `x`: pads the input rows they read into this thread's
    /// buffer, then runs the kernel.
    ///
    /// # Safety
    /// `y` is valid for writes of the image's `O` planes of `OH x OW`, and no other thread
    /// writes rows `rows` of them meanwhile; `rows.end <= OH`.
    unsafe fn image(&self, x: &[f32], y: *mut f32, rows: Range<usize>) {
        let geo = self.geo;
        with_buf(&PADDED, geo.pad_len, |xp| {
            geo.pad_image(x, xp, geo.padded_rows(&rows));
            // SAFETY: the caller checked the AVX-512 F path (`applies`); `xp` holds the
            // padded rows of `rows`; this function's contract covers `y`.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                rows_avx512(self, xp, y, rows)
            };
        });
    }
}

/// Output rows `rows` of every channel: pairs of rows, 16 positions per zmm (the last chunk
/// of a row masked), [`OC`] channels per pass, taps in order `(c, ky, kx)`, then bias and
/// ReLU, stored into the planes at `y`.
///
/// # Safety
/// The CPU must support AVX-512 F; `xp` is the padded image of `l.geo` holding at least the
/// padded rows of `rows`; `y` as [`Layer::image`] says; `l.weight` is `O * K` long, the bias
/// `O`; `K <= SPATIAL_MAX_TAPS`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn rows_avx512(l: &Layer<'_>, xp: &[f32], y: *mut f32, rows: Range<usize>) {
    use std::arch::x86_64::*;
    let g = l.geo;
    let k = g.c * g.kh * g.kw;
    let (o, ow, wp) = (g.o, g.ow, g.wp);
    let plane = g.oh * ow;
    debug_assert!(k <= SPATIAL_MAX_TAPS && l.weight.len() == o * k && xp.len() >= g.pad_len);
    let mut offs = [0usize; SPATIAL_MAX_TAPS];
    for (t, off) in offs.iter_mut().enumerate().take(k) {
        let (c, r) = (t / (g.kh * g.kw), t % (g.kh * g.kw));
        *off = (c * g.hp + r / g.kw) * wp + r % g.kw;
    }
    let zero = _mm512_setzero_ps();
    // The bias after the sum, as the direct kernel's epilogue adds it: the same bits.
    let finish = |v: __m512, j: usize, o0: usize| {
        let v = match l.bias {
            Some(b) => _mm512_add_ps(v, _mm512_set1_ps(b[o0 + j])),
            None => v,
        };
        if l.relu {
            _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, zero), zero)
        } else {
            v
        }
    };
    let mut oy = rows.start;
    while oy < rows.end {
        // The second row of the pair, when there is one (its loads and stores masked off).
        let two: __mmask16 = if oy + 1 < rows.end { !0 } else { 0 };
        for x0 in (0..ow).step_by(16) {
            let m = (ow - x0).min(16);
            let mask: __mmask16 = if m == 16 { !0 } else { (1u16 << m) - 1 };
            for o0 in (0..o).step_by(OC) {
                // Channels past `O` repeat the last one's weights; they are not stored.
                let ch = |j: usize| (o0 + j).min(o - 1);
                // SAFETY (whole block): masked loads read padded rows `oy + ky` and
                // `oy + 1 + ky` (held, see the contract) at columns `x0 + kx + lane` with
                // `lane < m`, inside the row (`OW - 1 + kw - 1 = Wp - 1`); weight and bias
                // reads at channels `ch(j) < O`; masked stores write rows `oy`, `oy + 1` of
                // `rows`, columns `x0..x0 + m`, channels `o0 + j < O`.
                unsafe {
                    let mut a0 = [zero; OC];
                    let mut a1 = a0;
                    let base = xp.as_ptr().add(oy * wp + x0);
                    for (t, &off) in offs.iter().enumerate().take(k) {
                        let v0 = _mm512_maskz_loadu_ps(mask, base.add(off));
                        // `wrapping_add`: past the last row the address may leave the buffer,
                        // where the load is masked off entirely.
                        let v1 = _mm512_maskz_loadu_ps(mask & two, base.wrapping_add(off + wp));
                        for j in 0..OC {
                            let w = _mm512_set1_ps(*l.weight.get_unchecked(ch(j) * k + t));
                            a0[j] = _mm512_fmadd_ps(w, v0, a0[j]);
                            a1[j] = _mm512_fmadd_ps(w, v1, a1[j]);
                        }
                    }
                    for j in 0..OC.min(o - o0) {
                        let at = y.add((o0 + j) * plane + oy * ow + x0);
                        _mm512_mask_storeu_ps(at, mask, finish(a0[j], j, o0));
                        let second = finish(a1[j], j, o0);
                        _mm512_mask_storeu_ps(at.wrapping_add(ow), mask & two, second);
                    }
                }
            }
        }
        oy += 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::Padding;
    use crate::conv::tests::fused::{EPILOGUES, assert_exact, reference};
    use crate::rng::Rng;
    use crate::testing::tensor_from_fn as tensor;

    fn skip() -> bool {
        crate::testing::skip_without(F32Path::Avx512F, "the spatial few-taps kernel")
    }

    /// Small integers (every order of summation exact) against the reference: widths around
    /// the 16 lanes, odd and even row counts, padding 0, 1 and asymmetric, 1 to 3 input
    /// channels, kernels 1x1 to 5x5 (up to 32 taps), channel counts around the passes of 8,
    /// with and without ReLU and bias, batch 1 on 1 and 2 threads with the split at every row,
    /// and batch 3.
    #[test]
    fn small_integers_match_the_reference_exactly() {
        if skip() {
            return;
        }
        let pads = [
            Padding::symmetric(0),
            Padding::symmetric(1),
            Padding::from_onnx([2, 0, 1, 3]),
        ];
        let shapes = [
            (1, 32, (3, 3)),
            (1, 20, (5, 5)),
            (3, 9, (3, 3)),
            (2, 7, (1, 1)),
            (1, 1, (2, 4)),
        ];
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let mut seed = 0;
        for (c, o, kernel) in shapes {
            for (h, w) in [(1, 1), (5, 15), (6, 16), (7, 17), (4, 33), (28, 28)] {
                seed += 1;
                let pad = pads[seed as usize % 3];
                let p = Conv2dParams::new(c, o, kernel).with_padding(pad);
                let Ok((oh, ow)) = p.output_hw(h, w) else {
                    continue;
                };
                let mut rng = Rng::seed_from_u64(seed);
                let mut int = || rng.below(7) as f32 - 3.0;
                let wt = tensor(&p.weight_dims(), &mut int);
                let b: Vec<f32> = (0..o).map(|_| int()).collect();
                for n in [1, 3] {
                    let x = tensor(&[n, c, h, w], &mut int);
                    for epi in EPILOGUES.into_iter().filter(|e| !e.max_pool_2x2) {
                        for bias in [Some(&b[..]), None] {
                            let what =
                                format!("{p:?} n={n} {h}x{w} {epi:?} bias={}", bias.is_some());
                            let dims = [n, o, oh, ow];
                            let got = forward(&x, wt.data(), bias, &p, epi, &dims);
                            assert_exact(got, (&x, &wt, bias), &p, epi, &what);
                            let two = pool.install(|| forward(&x, wt.data(), bias, &p, epi, &dims));
                            assert_exact(
                                two,
                                (&x, &wt, bias),
                                &p,
                                epi,
                                &format!("2 threads {what}"),
                            );
                            if n > 1 {
                                continue;
                            }
                            // Every split row, on the duo helper.
                            let geo = Direct::new(&p, (c, h, w), (oh, ow), 1);
                            let layer = Layer {
                                geo: &geo,
                                weight: wt.data(),
                                bias,
                                relu: epi.relu,
                            };
                            let want = reference(&x, &wt, bias, &p, epi).unwrap();
                            for mid in 0..=oh {
                                let mut y = vec![f32::NAN; o * oh * ow];
                                // SAFETY: `y` holds the image's output.
                                pool.install(|| unsafe {
                                    layer.split_at(x.data(), y.as_mut_ptr(), mid)
                                });
                                assert_eq!(want.data(), &y[..], "mid={mid} {what}");
                            }
                        }
                    }
                }
            }
        }
    }

    /// Float data: the bits of the direct AVX2 kernel (the same summation order), which the
    /// fused forward runs for the same layers with a pool, on layers of 1 to 3 channels.
    #[test]
    fn float_data_gives_the_direct_kernels_bits() {
        if skip() {
            return;
        }
        let mut rng = Rng::seed_from_u64(9);
        for (c, o, kernel, hw) in [
            (1, 32, (3, 3), 28),
            (1, 20, (5, 5), 28),
            (3, 17, (3, 3), 19),
        ] {
            let p = Conv2dParams::new(c, o, kernel).with_padding(Padding::symmetric(1));
            let mut normal = || rng.normal();
            let x = tensor(&[2, c, hw, hw], &mut normal);
            let wt = tensor(&p.weight_dims(), &mut normal);
            let b: Vec<f32> = (0..o).map(|_| normal()).collect();
            let (oh, ow) = p.output_hw(hw, hw).unwrap();
            for epi in EPILOGUES.into_iter().filter(|e| !e.max_pool_2x2) {
                for bias in [Some(&b[..]), None] {
                    let got = forward(&x, wt.data(), bias, &p, epi, &[2, o, oh, ow]).unwrap();
                    let f = crate::conv::conv2d_forward_fused_with;
                    let direct = f(F32Path::Avx2Fma, &x, &wt, None, bias, &p, epi).unwrap();
                    assert_eq!(
                        got.data(),
                        direct.data(),
                        "{p:?} {epi:?} {}",
                        bias.is_some()
                    );
                }
            }
        }
    }

    /// Unit-normal data on cnn-teacher's conv1 (1 -> 32, 3x3, 28x28): within the direct
    /// kernel's tolerance, 1e-5 sqrt(K).
    #[test]
    fn float_data_within_tolerance() {
        if skip() {
            return;
        }
        let p = Conv2dParams::new(1, 32, (3, 3)).with_padding(Padding::symmetric(1));
        let mut rng = Rng::seed_from_u64(5);
        let mut normal = || rng.normal();
        let x = tensor(&[2, 1, 28, 28], &mut normal);
        let wt = tensor(&p.weight_dims(), &mut normal);
        let b: Vec<f32> = (0..32).map(|_| normal()).collect();
        let epi = ConvEpilogue {
            relu: true,
            max_pool_2x2: false,
        };
        let got = forward(&x, wt.data(), Some(&b), &p, epi, &[2, 32, 28, 28]).unwrap();
        let want = reference(&x, &wt, Some(&b), &p, epi).unwrap();
        let tol = 1e-5 * (p.patch_len() as f32).sqrt();
        crate::testing::assert_close(got.data(), want.data(), tol, tol);
    }
}
