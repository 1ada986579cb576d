//! Factored pairs against the dense layers they replace: exact at full rank, the dense layer
//! with the reconstructed weight `W_r` at lower ranks (so the geometry of each scheme is
//! right), and the MAC/parameter accounting against the layers' own counts.

mod common;

use common::rand_tensor;

use decompose::{DecomposeError, FactoredPair, Factorization, Scheme};
use nn::layers::{Conv2d, Conv2dParams, Linear, Padding};
use nn::{Layer, Mode};
use tensor_core::rng::Rng;
use tensor_core::testing::assert_close;
use tensor_core::{Shape, Tensor};

fn run_pair(pair: &mut FactoredPair, x: &Tensor) -> Tensor {
    pair.forward(x, Mode::Eval).unwrap()
}

/// The weight of the rank-`r` approximation in the layer's own layout.
fn reconstructed_conv_weight(f: &Factorization, p: &Conv2dParams, r: usize) -> Tensor {
    let svd = f.svd().unwrap();
    let m = svd.factors(r).unwrap().product(svd.rows(), svd.cols());
    let (n, c, (kh, kw)) = (p.out_channels, p.in_channels, p.kernel);
    let mut w = vec![0.0f32; n * c * kh * kw];
    for nn in 0..n {
        for cc in 0..c {
            for pp in 0..kh {
                for q in 0..kw {
                    let at = ((nn * c + cc) * kh + pp) * kw + q;
                    w[at] = match f.scheme() {
                        Scheme::Separable => m[(cc * kh + pp) * (kw * n) + q * n + nn],
                        _ => m[nn * (c * kh * kw) + (cc * kh + pp) * kw + q],
                    };
                }
            }
        }
    }
    Tensor::new(&p.weight_dims(), w).unwrap()
}

fn check_conv(p: Conv2dParams, scheme: Scheme, hw: (usize, usize), seed: u64) {
    let mut rng = Rng::seed_from_u64(seed);
    let conv = Conv2d::new(p, &mut rng).unwrap();
    let x = rand_tensor(&mut rng, &[2, p.in_channels, hw.0, hw.1]);
    let one = Shape::new(&[1, p.in_channels, hw.0, hw.1]).unwrap();
    let f = Factorization::conv(&conv, scheme, &one).unwrap();
    assert_eq!(f.macs_before(), conv.macs(&one).unwrap());
    let mut dense = conv.clone();
    let want = dense.forward(&x, Mode::Eval).unwrap();
    let tol = 1e-4 * (p.patch_len() as f32).sqrt();
    for r in 1..=f.max_rank() {
        let mut pair = f.pair(r).unwrap();
        let got = run_pair(&mut pair, &x);
        assert_eq!(got.dims(), want.dims(), "{scheme:?} rank {r}");
        // Against the dense layer with W_r.
        let mut approx = Conv2d::from_parts(
            p,
            reconstructed_conv_weight(&f, &p, r),
            conv.bias().cloned(),
        )
        .unwrap();
        let expect = approx.forward(&x, Mode::Eval).unwrap();
        assert_close(got.data(), expect.data(), tol, tol);
        if r == f.max_rank() {
            assert_close(got.data(), want.data(), tol, tol);
        }
        // MACs and parameters as the layers count them.
        assert_eq!(
            f.macs_at(r),
            pair.macs(&one).unwrap(),
            "{scheme:?} rank {r}"
        );
        assert_eq!(f.params_at(r), pair.param_count());
        // The factorization's own W_r is the same weight.
        let own = f.weight_at(r).unwrap();
        assert_close(
            own.data(),
            reconstructed_conv_weight(&f, &p, r).data(),
            1e-5,
            1e-5,
        );
    }
    assert_eq!(f.params_before(), conv.param_count());
}

#[test]
fn separable_pairs_match_the_dense_layer_with_w_r() {
    let same = Conv2dParams::new(3, 5, (3, 3)).with_padding(Padding::symmetric(1));
    check_conv(same, Scheme::Separable, (7, 6), 1);
    // Non-square kernel, asymmetric padding, stride and dilation on both axes.
    let odd = common::odd_geometry();
    check_conv(odd, Scheme::Separable, (9, 8), 2);
    // lenet5's first convolution: one input channel, rank <= 5.
    check_conv(
        Conv2dParams::new(1, 6, (5, 5)),
        Scheme::Separable,
        (12, 12),
        3,
    );
}

#[test]
fn channel_pairs_match_the_dense_layer_with_w_r() {
    let same = Conv2dParams::new(3, 5, (3, 3)).with_padding(Padding::symmetric(1));
    check_conv(same, Scheme::Channel, (7, 6), 4);
    let strided = Conv2dParams::new(4, 6, (2, 3))
        .with_stride((2, 2))
        .with_padding(Padding {
            top: 1,
            bottom: 0,
            left: 0,
            right: 2,
        });
    check_conv(strided, Scheme::Channel, (8, 9), 5);
}

#[test]
fn low_rank_linear_pairs_match_the_dense_layer_with_w_r() {
    let mut rng = Rng::seed_from_u64(6);
    let lin = Linear::new(40, 12, &mut rng).unwrap();
    let x = rand_tensor(&mut rng, &[5, 40]);
    let f = Factorization::linear(&lin).unwrap();
    assert_eq!(f.max_rank(), 12);
    assert_eq!(f.break_even_rank(), 9, "9 * 52 = 468 < 480, 10 * 52 = 520");
    for r in [1, 5, 12] {
        let mut pair = f.pair(r).unwrap();
        let got = run_pair(&mut pair, &x);
        let svd = f.svd().unwrap();
        let w = svd.factors(r).unwrap().product(12, 40);
        let mut approx =
            Linear::from_parts(Tensor::new(&[12, 40], w).unwrap(), lin.bias().cloned()).unwrap();
        let expect = approx.forward(&x, Mode::Eval).unwrap();
        assert_close(got.data(), expect.data(), 1e-4, 1e-4);
        assert_eq!(f.macs_at(r), (r * 52) as u64);
        assert_eq!(f.params_at(r), pair.param_count());
        assert_eq!(f.weight_at(r).unwrap().data(), expect_w(&f, r).as_slice());
        // The bias lives on the second layer only.
        assert!(pair.first[0].params().iter().all(|p| p.name != "bias"));
    }
}

fn expect_w(f: &Factorization, r: usize) -> Vec<f32> {
    let svd = f.svd().unwrap();
    svd.factors(r).unwrap().product(svd.rows(), svd.cols())
}

#[test]
fn grouped_and_mismatched_convolutions_are_refused() {
    let mut rng = Rng::seed_from_u64(7);
    let grouped = Conv2d::new(Conv2dParams::new(4, 4, (3, 3)).with_groups(2), &mut rng).unwrap();
    let one = Shape::new(&[1, 4, 6, 6]).unwrap();
    let e = Factorization::conv(&grouped, Scheme::Separable, &one).unwrap_err();
    assert!(matches!(e, DecomposeError::Unsupported { .. }), "{e}");
    let plain = Conv2d::new(Conv2dParams::new(4, 4, (3, 3)), &mut rng).unwrap();
    assert!(Factorization::conv(&plain, Scheme::LowRank, &one).is_err());
    let small = Shape::new(&[1, 4, 2, 2]).unwrap();
    assert!(Factorization::conv(&plain, Scheme::Channel, &small).is_err());
}
