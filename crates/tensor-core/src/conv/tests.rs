//! Tests of the convolution kernels against the direct-loop references, over strides,
//! padding, dilation, groups and block boundaries; output sizes and parameter errors.

use super::*;
use crate::rng::Rng;
use crate::tensor::Tensor;
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
    // The transposed direct route, where it applies, against the same reference.
    let tol_t = transposed_tolerance(&p, (h, w));
    if let Some(dx) = conv2d_input_grad_direct(&gy, &wt, &p, x.dims()).unwrap() {
        assert_eq!(dx.dims(), x.dims());
        assert_close(dx.data(), gr.input.data(), tol_t, tol_t);
    }
}

/// The tolerance of [`conv2d_input_grad_direct`] for `p` on inputs `h x w`: that of the fused
/// forward it runs, of the transposed layer (`O -> C` channels, outputs `h x w`).
fn transposed_tolerance(p: &Conv2dParams, hw: (usize, usize)) -> f32 {
    let tp = Conv2dParams::new(p.out_channels, p.in_channels, p.kernel);
    winograd_tolerance(crate::dispatch::F32Path::selected(), &tp, hw)
}

#[test]
fn input_gradient_on_the_direct_kernel() {
    use crate::dispatch::F32Path;
    let applies = |p: &Conv2dParams, h: usize, w: usize| {
        let (kh, kw) = p.kernel;
        let d = p.padding;
        let [_, _, oh, ow] = p
            .output_dims(&Shape::new(&[1, p.in_channels, h, w]).unwrap())
            .unwrap();
        direct_applies(p)
            && 4 * h * w <= DIRECT_INPUT_GRAD_MAX_PLANE_QUARTERS * oh * ow
            && d.top < kh
            && d.bottom < kh
            && d.left < kw
            && d.right < kw
            && p.in_channels >= DIRECT_INPUT_GRAD_MIN_CHANNELS
    };
    // ONNX order: top 0, left 1, bottom 2, right 0.
    let asym = Padding::from_onnx([0, 1, 2, 0]);
    let cases = [
        // cnn-teacher conv2 and conv4 (at a smaller batch), edge widths around the kernel's
        // 10- and 6-position tiles, one channel each way, asymmetric padding, 1x1 and 5x5
        // (6 input channels stay on the GEMM; lenet5's conv2, 20 channels without padding,
        // too: its 12x12 input plane is 2.25x its 8x8 output plane; with padding 2 it is
        // direct). 17 -> 1 without padding (9x13 from 7x11) stays on the GEMM.
        (
            Conv2dParams::new(32, 32, (3, 3)).with_padding(Padding::symmetric(1)),
            3,
            28,
            28,
        ),
        (
            Conv2dParams::new(64, 64, (3, 3)).with_padding(Padding::symmetric(1)),
            2,
            14,
            14,
        ),
        (
            Conv2dParams::new(1, 17, (3, 3)).with_padding(Padding::symmetric(1)),
            2,
            5,
            11,
        ),
        (Conv2dParams::new(17, 1, (3, 3)), 1, 9, 13),
        (
            Conv2dParams::new(17, 1, (3, 3)).with_padding(Padding::symmetric(1)),
            1,
            9,
            13,
        ),
        (
            Conv2dParams::new(16, 6, (3, 3)).with_padding(asym),
            2,
            7,
            10,
        ),
        (Conv2dParams::new(6, 16, (5, 5)), 2, 12, 12),
        (Conv2dParams::new(20, 16, (5, 5)), 2, 12, 12),
        (
            Conv2dParams::new(20, 16, (5, 5)).with_padding(Padding::symmetric(2)),
            2,
            12,
            12,
        ),
        (Conv2dParams::new(16, 3, (1, 1)), 2, 4, 21),
        (
            Conv2dParams::new(3, 4, (2, 3)).with_padding(Padding::symmetric(1)),
            1,
            1,
            1,
        ),
    ];
    let runs = F32Path::selected() != F32Path::Portable && F32Path::Avx2Fma.is_supported();
    if !runs {
        eprintln!("skipped: the direct f32 kernel does not run on this CPU");
    }
    for (i, (p, n, h, w)) in cases.into_iter().enumerate() {
        let mut rng = Rng::seed_from_u64(40 + i as u64);
        let x = rand_tensor(&mut rng, &[n, p.in_channels, h, w]);
        let wt = rand_tensor(&mut rng, &p.weight_dims());
        let [_, o, oh, ow] = p.output_dims(x.shape()).unwrap();
        let gy = rand_tensor(&mut rng, &[n, o, oh, ow]);
        let got = conv2d_input_grad_direct(&gy, &wt, &p, x.dims()).unwrap();
        assert_eq!(got.is_some(), runs && applies(&p, h, w), "case {i}: {p:?}");
        if let Some(dx) = got {
            let want = conv2d_grads_reference(&x, &wt, &gy, &p).unwrap().input;
            let tol = transposed_tolerance(&p, (h, w));
            assert_close(dx.data(), want.data(), tol, tol);
        }
    }
    // Not this route: stride 2, dilation, groups, padding wider than kernel - 1.
    let mut rng = Rng::seed_from_u64(3);
    for p in [
        Conv2dParams::new(2, 2, (3, 3)).with_stride((2, 2)),
        Conv2dParams::new(2, 2, (3, 3)).with_dilation((2, 2)),
        Conv2dParams::new(2, 2, (3, 3)).with_groups(2),
        Conv2dParams::new(2, 2, (3, 3)).with_padding(Padding::symmetric(3)),
    ] {
        let x = rand_tensor(&mut rng, &[1, 2, 9, 9]);
        let wt = rand_tensor(&mut rng, &p.weight_dims());
        let gy = rand_tensor(&mut rng, &p.output_dims(x.shape()).unwrap());
        assert!(
            conv2d_input_grad_direct(&gy, &wt, &p, x.dims())
                .unwrap()
                .is_none(),
            "{p:?}"
        );
    }
    // A gradient of the wrong shape is an error.
    let p = Conv2dParams::new(2, 2, (3, 3));
    let (x, wt) = (
        rand_tensor(&mut rng, &[1, 2, 9, 9]),
        rand_tensor(&mut rng, &[2, 2, 3, 3]),
    );
    let bad = rand_tensor(&mut rng, &[1, 2, 6, 7]);
    assert!(conv2d_input_grad_direct(&bad, &wt, &p, x.dims()).is_err());
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

pub(super) mod fused {
    //! The fused forward (direct AVX2 kernel and the portable fallback) against the reference
    //! loops followed by separate ReLU and max-pool passes, on every f32 path this CPU runs.

    use super::super::fused::{FORCE_SPLIT, Split};
    use super::super::*;
    use crate::activation::relu_inplace;
    use crate::dispatch::{F32Path, KernelPath, report};
    use crate::pool::max_pool2d_forward;
    use crate::rng::Rng;
    use crate::tensor::Tensor;
    use crate::testing::assert_close;
    use proptest::prelude::*;

    fn ints(rng: &mut Rng, dims: &[usize]) -> Tensor {
        let n = dims.iter().product();
        Tensor::new(dims, (0..n).map(|_| rng.below(7) as f32 - 3.0).collect()).unwrap()
    }

    pub(in crate::conv) fn reference(
        x: &Tensor,
        w: &Tensor,
        b: Option<&[f32]>,
        p: &Conv2dParams,
        epi: ConvEpilogue,
    ) -> Result<Tensor, TensorError> {
        let mut y = conv2d_forward_reference(x, w, b, p)?;
        if epi.relu {
            relu_inplace(y.data_mut());
        }
        if epi.max_pool_2x2 {
            y = max_pool2d_forward(&y, &ConvEpilogue::pool_params())?.0;
        }
        Ok(y)
    }

    /// The batch-1 splits a test forces (`None`: the one the size and thread count choose).
    const SPLITS: [Option<Split>; 4] = [
        None,
        Some(Split::Whole),
        Some(Split::Tiles),
        Some(Split::Rows),
    ];

    /// Every epilogue: none, ReLU, pool, both.
    pub(in crate::conv) const EPILOGUES: [ConvEpilogue; 4] = [
        ConvEpilogue {
            relu: false,
            max_pool_2x2: false,
        },
        ConvEpilogue {
            relu: true,
            max_pool_2x2: false,
        },
        ConvEpilogue {
            relu: false,
            max_pool_2x2: true,
        },
        ConvEpilogue {
            relu: true,
            max_pool_2x2: true,
        },
    ];

    /// `got` equals the reference on `(x, weight, bias)` bit for bit, or both are errors (an
    /// output too small to pool: the fused call refuses it too); `what` names the case.
    pub(in crate::conv) fn assert_exact(
        got: Result<Tensor, TensorError>,
        (x, wt, bias): (&Tensor, &Tensor, Option<&[f32]>),
        p: &Conv2dParams,
        epi: ConvEpilogue,
        what: &str,
    ) {
        let Ok(want) = reference(x, wt, bias, p, epi) else {
            assert!(got.is_err(), "{what}");
            return;
        };
        let got = got.unwrap();
        assert_eq!(got.dims(), want.dims(), "{what}");
        assert_eq!(got.data(), want.data(), "{what}");
    }

    /// [`assert_exact`], except where `path` runs `p` by Winograd F(4x4, 3x3), which is not
    /// exact on small integers (`G` has sixths): there within [`winograd_tolerance`].
    fn assert_exact_on(
        path: F32Path,
        got: Result<Tensor, TensorError>,
        (x, wt, bias): (&Tensor, &Tensor, Option<&[f32]>),
        p: &Conv2dParams,
        epi: ConvEpilogue,
        what: &str,
    ) {
        let out = p.output_hw(x.dims()[2], x.dims()[3]);
        let Some(out) = out
            .ok()
            .filter(|&o| winograd_variant(path, p, o) == Some(4))
        else {
            return assert_exact(got, (x, wt, bias), p, epi, what);
        };
        let Ok(want) = reference(x, wt, bias, p, epi) else {
            assert!(got.is_err(), "{what}");
            return;
        };
        let tol = winograd_tolerance(path, p, out);
        assert_close(got.unwrap().data(), want.data(), tol, tol);
    }

    /// Every path, every epilogue, with and without bias and packing, on 1 and 2 threads,
    /// at batch 1 under every split (forced, so that small layers split too; on one thread
    /// both halves run on the caller): small integers make every order of summation exact,
    /// so results must be equal.
    fn check_exact(p: Conv2dParams, n: usize, h: usize, w: usize, seed: u64) {
        let mut rng = Rng::seed_from_u64(seed);
        let x = ints(&mut rng, &[n, p.in_channels, h, w]);
        let wt = ints(&mut rng, &p.weight_dims());
        let b: Vec<f32> = (0..p.out_channels)
            .map(|_| rng.below(5) as f32 - 2.0)
            .collect();
        let packed = PackedConvWeights::pack(wt.data(), &p).unwrap();
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for path in F32Path::supported() {
                for epi in EPILOGUES {
                    for ((bias, pk), split) in [(Some(&b[..]), Some(&packed)), (None, None)]
                        .into_iter()
                        .flat_map(|bp| SPLITS.map(|s| (bp, s)))
                    {
                        if n > 1 && split.is_some() {
                            continue;
                        }
                        let got = pool.install(|| {
                            FORCE_SPLIT.set(split);
                            let y = conv2d_forward_fused_with(path, &x, &wt, pk, bias, &p, epi);
                            FORCE_SPLIT.set(None);
                            y
                        });
                        let what = format!(
                            "path {} {p:?} n={n} {h}x{w} {epi:?} bias={} threads={threads} \
                             split={split:?} seed={seed}",
                            path.name(),
                            bias.is_some()
                        );
                        assert_exact_on(path, got, (&x, &wt, bias), &p, epi, &what);
                        if split.is_none() {
                            // On the calling thread alone (`serial::run`), inside the same pool.
                            let serial = pool.install(|| {
                                crate::serial::run(|| {
                                    conv2d_forward_fused_with(path, &x, &wt, pk, bias, &p, epi)
                                })
                            });
                            assert_exact_on(
                                path,
                                serial,
                                (&x, &wt, bias),
                                &p,
                                epi,
                                &format!("serial: {what}"),
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn zoo_layer_shapes_match_exactly() {
        eprintln!("{}", report());
        for path in F32Path::skipped() {
            eprintln!("skipped on this CPU: f32 path {}", path.name());
        }
        let same = Padding::symmetric(1);
        // cnn-teacher conv1 and a narrow conv2; lenet5 conv1 and conv2.
        check_exact(
            Conv2dParams::new(1, 32, (3, 3)).with_padding(same),
            2,
            28,
            28,
            1,
        );
        check_exact(
            Conv2dParams::new(8, 12, (3, 3)).with_padding(same),
            3,
            14,
            14,
            2,
        );
        check_exact(Conv2dParams::new(1, 20, (5, 5)), 2, 28, 28, 3);
        check_exact(Conv2dParams::new(20, 50, (5, 5)), 1, 12, 12, 4);
        // 17.8 M MACs: batch 1 splits the image's channel tiles over both threads
        // (`DIRECT_PAR_MIN_MACS`).
        check_exact(
            Conv2dParams::new(64, 64, (3, 3)).with_padding(same),
            1,
            22,
            22,
            8,
        );
    }

    #[test]
    fn odd_sizes_asymmetric_padding_and_fallbacks() {
        let asym = Padding {
            top: 2,
            bottom: 0,
            left: 1,
            right: 3,
        };
        check_exact(
            Conv2dParams::new(3, 5, (2, 3)).with_padding(asym),
            3,
            7,
            5,
            5,
        );
        check_exact(Conv2dParams::new(2, 1, (1, 1)), 1, 3, 3, 6);
        // Stride, dilation and groups take the im2col fallback on every path.
        check_exact(
            Conv2dParams::new(4, 6, (3, 3)).with_stride((2, 1)),
            2,
            9,
            9,
            7,
        );
        check_exact(
            Conv2dParams::new(4, 6, (3, 3)).with_dilation((1, 2)),
            2,
            9,
            9,
            8,
        );
        check_exact(Conv2dParams::new(4, 6, (3, 3)).with_groups(2), 2, 9, 9, 9);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn matches_reference_around_tile_edges(
            c in 1usize..4, o in 1usize..40, kh in 1usize..4, kw in 1usize..4,
            extra_h in 0usize..9, extra_w in 0usize..27, pad in 0usize..3,
            n in 1usize..3, seed in any::<u64>(),
        ) {
            let p = Conv2dParams::new(c, o, (kh, kw)).with_padding(Padding::symmetric(pad));
            check_exact(p, n, kh + extra_h, kw + extra_w, seed);
        }
    }

    #[test]
    fn float_data_within_tolerance() {
        let p = Conv2dParams::new(32, 64, (3, 3)).with_padding(Padding::symmetric(1));
        let mut rng = Rng::seed_from_u64(10);
        let x = Tensor::new(
            &[2, 32, 14, 14],
            (0..2 * 32 * 196).map(|_| rng.normal()).collect(),
        )
        .unwrap();
        let wt = Tensor::new(
            &p.weight_dims(),
            (0..64 * 288).map(|_| rng.normal()).collect(),
        )
        .unwrap();
        let b: Vec<f32> = (0..64).map(|_| rng.normal()).collect();
        let epi = ConvEpilogue {
            relu: true,
            max_pool_2x2: true,
        };
        let want = reference(&x, &wt, Some(&b), &p, epi).unwrap();
        for path in F32Path::supported() {
            let got = conv2d_forward_fused_with(path, &x, &wt, None, Some(&b), &p, epi).unwrap();
            // Sums of 288 unit-normal products: error ~ sqrt(K) * eps * |terms|.
            let tol = 1e-5 * (p.patch_len() as f32).sqrt();
            assert_close(got.data(), want.data(), tol, tol);
        }
    }

    /// Prints the dispatch report and every f32 path this CPU skips.
    fn announce_paths() {
        eprintln!("{}", report());
        for path in F32Path::skipped() {
            eprintln!(
                "skipped: f32 path {} (CPU lacks {})",
                path.name(),
                path.needs()
            );
        }
    }

    #[test]
    fn channel_counts_around_both_tile_widths() {
        // 16-lane tiles of the AVX-512 kernel run in pairs (32 channels) then alone; the
        // AVX2 one runs 16 then 8. Kernels 1x1, 3x3, 5x5, odd sizes, several paddings.
        announce_paths();
        let asym = Padding {
            top: 0,
            bottom: 2,
            left: 1,
            right: 0,
        };
        let cases = [(1, 1, 0), (3, 3, 1), (5, 5, 2), (3, 3, 0), (5, 5, 0)];
        for (i, o) in [1, 3, 15, 16, 17, 20, 31, 32, 33, 50, 64]
            .into_iter()
            .enumerate()
        {
            let c = [1, 3, 2, 5][i % 4];
            for (j, &(kh, kw, pad)) in cases.iter().enumerate() {
                let pad = if j == 3 {
                    asym
                } else {
                    Padding::symmetric(pad)
                };
                let p = Conv2dParams::new(c, o, (kh, kw)).with_padding(pad);
                let n = 1 + (i + j) % 3;
                check_exact(p, n, 9 + j % 2, 7 + 2 * (i % 3), (100 * i + j) as u64);
            }
        }
    }

    /// The AVX-512 kernel on the channel-blocked image (`direct::blocked`) around its block
    /// and tile edges: input channels around 16 and 32, output channels around one and two
    /// 16-channel blocks, output rows of each tile width (14, 8, 4, 1), narrower and just past.
    #[test]
    fn blocked_channel_blocks_and_row_tiles() {
        announce_paths();
        // Top 2, left 0, bottom 0, right 3.
        let asym = Padding::from_onnx([2, 0, 0, 3]);
        let kernels = [
            ((1, 1), Padding::symmetric(0)),
            ((3, 3), Padding::symmetric(1)),
            ((5, 5), Padding::symmetric(2)),
            ((3, 2), asym),
        ];
        let mut seed = 0;
        for c in [15, 16, 17, 33] {
            for o in [5, 16, 17, 33, 50] {
                for (i, &(k, pad)) in kernels.iter().enumerate() {
                    // Output widths 1..=3 (tile 1), 4..=7, 8..=13, 14 and 29 (14 + 14 + 1).
                    let ow: usize = [1, 3, 5, 9, 14, 29][(c + o + i) % 6];
                    let w = (ow + k.1 - 1).saturating_sub(pad.left + pad.right).max(1);
                    seed += 1;
                    let p = Conv2dParams::new(c, o, k).with_padding(pad);
                    check_exact(p, 1 + seed as usize % 2, 4, w, seed);
                }
            }
        }
        let p = Conv2dParams::new(20, 40, (3, 3)).with_padding(Padding::symmetric(1));
        for w in 1..=30 {
            check_exact(p, 1, 3, w, 1000 + w as u64);
        }
    }

    /// The zoo's layers on float data: every path within the reference's tolerance, and 1 and
    /// 2 threads bit-identical on each path.
    #[test]
    fn zoo_layers_float_data_and_threads_agree() {
        announce_paths();
        let same = |c, o| Conv2dParams::new(c, o, (3, 3)).with_padding(Padding::symmetric(1));
        let layers = [
            (same(1, 32), 28, false),
            (same(32, 32), 28, true),
            (same(32, 64), 14, false),
            (same(64, 64), 14, true),
            (Conv2dParams::new(1, 20, (5, 5)), 28, true),
            (Conv2dParams::new(20, 50, (5, 5)), 12, true),
        ];
        let mut rng = Rng::seed_from_u64(11);
        for (p, hw, pool) in layers {
            let epi = ConvEpilogue {
                relu: true,
                max_pool_2x2: pool,
            };
            let normal = |rng: &mut Rng, dims: &[usize]| {
                let len = dims.iter().product();
                Tensor::new(dims, (0..len).map(|_| rng.normal()).collect()).unwrap()
            };
            let wt = normal(&mut rng, &p.weight_dims());
            let b: Vec<f32> = (0..p.out_channels).map(|_| rng.normal()).collect();
            let packed = PackedConvWeights::pack(wt.data(), &p).unwrap();
            for n in [1, 3] {
                let x = normal(&mut rng, &[n, p.in_channels, hw, hw]);
                let want = reference(&x, &wt, Some(&b), &p, epi).unwrap();
                for path in F32Path::supported() {
                    let tol = winograd_tolerance(path, &p, (hw, hw));
                    let runs: Vec<Tensor> = [1, 2]
                        .map(|threads| {
                            let pool = rayon::ThreadPoolBuilder::new()
                                .num_threads(threads)
                                .build()
                                .unwrap();
                            pool.install(|| {
                                conv2d_forward_fused_with(
                                    path,
                                    &x,
                                    &wt,
                                    Some(&packed),
                                    Some(&b),
                                    &p,
                                    epi,
                                )
                            })
                            .unwrap()
                        })
                        .into();
                    assert_close(runs[0].data(), want.data(), tol, tol);
                    assert_eq!(runs[0].data(), runs[1].data(), "{} {p:?}", path.name());
                }
            }
        }
    }

    /// Float data at batch 1: every split (by tiles, by rows, on one thread and on the duo
    /// helper) gives the bits of the unsplit run, on layers of 1-3 tiles of both kernels,
    /// odd and even rows, pooled or not (the same kernel sums each output in the same order
    /// whoever computes it).
    #[test]
    fn batch1_splits_are_bit_identical_on_float_data() {
        announce_paths();
        let same = |c, o| Conv2dParams::new(c, o, (3, 3)).with_padding(Padding::symmetric(1));
        let layers = [
            (same(1, 32), 13, 28),
            (same(1, 48), 28, 7),
            (same(32, 32), 28, 28),
            (same(32, 32), 15, 9),
            (same(20, 70), 14, 13),
            (same(64, 96), 5, 3),
            (Conv2dParams::new(20, 50, (5, 5)), 12, 11),
        ];
        let mut rng = Rng::seed_from_u64(17);
        for (p, h, w) in layers {
            let normal = |rng: &mut Rng, dims: &[usize]| {
                let len = dims.iter().product();
                Tensor::new(dims, (0..len).map(|_| rng.normal()).collect()).unwrap()
            };
            let wt = normal(&mut rng, &p.weight_dims());
            let b: Vec<f32> = (0..p.out_channels).map(|_| rng.normal()).collect();
            let x = normal(&mut rng, &[1, p.in_channels, h, w]);
            for (relu, max_pool_2x2) in [(true, false), (true, true), (false, true)] {
                let epi = ConvEpilogue { relu, max_pool_2x2 };
                for path in F32Path::supported() {
                    for threads in [1, 2] {
                        let pool = rayon::ThreadPoolBuilder::new()
                            .num_threads(threads)
                            .build()
                            .unwrap();
                        let [whole, tiles, rows] =
                            [Split::Whole, Split::Tiles, Split::Rows].map(|split| {
                                pool.install(|| {
                                    FORCE_SPLIT.set(Some(split));
                                    let y = conv2d_forward_fused_with(
                                        path,
                                        &x,
                                        &wt,
                                        None,
                                        Some(&b),
                                        &p,
                                        epi,
                                    );
                                    FORCE_SPLIT.set(None);
                                    y.unwrap()
                                })
                            });
                        let at = format!("{} {p:?} {h}x{w} {epi:?} threads={threads}", path.name());
                        assert_eq!(whole.data(), tiles.data(), "tiles: {at}");
                        assert_eq!(whole.data(), rows.data(), "rows: {at}");
                    }
                }
            }
        }
    }

    /// NaN in the input: ReLU keeps it and the pool lets it win, on every path, as the
    /// reference with separate passes does.
    #[test]
    fn nan_propagates_through_relu_and_pool() {
        announce_paths();
        for (c, o, k) in [(2, 20, 3), (3, 33, 3), (1, 50, 5)] {
            let p = Conv2dParams::new(c, o, (k, k)).with_padding(Padding::symmetric(k / 2));
            let mut rng = Rng::seed_from_u64(12 + o as u64);
            let mut x = ints(&mut rng, &[2, c, 10, 9]);
            let len = x.data().len();
            x.data_mut()[len / 3] = f32::NAN;
            x.data_mut()[len - 1] = f32::NAN;
            let wt = ints(&mut rng, &p.weight_dims());
            let b: Vec<f32> = (0..o).map(|_| rng.below(5) as f32 - 2.0).collect();
            for (relu, max_pool_2x2) in [(true, false), (true, true), (false, true)] {
                let epi = ConvEpilogue { relu, max_pool_2x2 };
                let want = reference(&x, &wt, Some(&b), &p, epi).unwrap();
                assert!(want.data().iter().any(|v| v.is_nan()));
                for path in F32Path::supported() {
                    let got =
                        conv2d_forward_fused_with(path, &x, &wt, None, Some(&b), &p, epi).unwrap();
                    for (i, (g, w)) in got.data().iter().zip(want.data()).enumerate() {
                        assert!(
                            g == w || (g.is_nan() && w.is_nan()),
                            "path {} {p:?} {epi:?} at {i}: {g} vs {w}",
                            path.name()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn mismatched_packing_and_shapes_are_errors() {
        let p = Conv2dParams::new(2, 3, (3, 3));
        let other = Conv2dParams::new(2, 4, (3, 3));
        let x = Tensor::zeros_dims(&[1, 2, 5, 5]).unwrap();
        let w = Tensor::zeros_dims(&p.weight_dims()).unwrap();
        let wrong = PackedConvWeights::pack(&[0.0; 72], &other).unwrap();
        let epi = ConvEpilogue::default();
        for path in F32Path::supported() {
            if path != F32Path::Portable {
                let e = conv2d_forward_fused_with(path, &x, &w, Some(&wrong), None, &p, epi);
                assert!(matches!(e, Err(TensorError::ShapeMismatch { .. })), "{e:?}");
            }
            let e = conv2d_forward_fused_with(path, &x, &w, None, Some(&[0.0; 2]), &p, epi);
            assert!(matches!(e, Err(TensorError::DataLength { .. })), "{e:?}");
            // A 1x1 output cannot be pooled 2x2.
            let tiny = Tensor::zeros_dims(&[1, 2, 3, 3]).unwrap();
            let pool = ConvEpilogue {
                max_pool_2x2: true,
                ..epi
            };
            assert!(conv2d_forward_fused_with(path, &tiny, &w, None, None, &p, pool).is_err());
        }
        assert!(PackedConvWeights::pack(&[0.0; 5], &p).is_err());
    }
}
