//! Jaderberg's scheme 1 (separable basis filters per input channel): the three layers
//! against the dense convolution with the approximated weight at every `M` and exactly at
//! full rank, over geometries (stride, padding, dilation, non-square kernels); the weight
//! error equal to the discarded energy and monotone in `M`; the accounting; degenerate
//! ranks and weights; and whole models (Parallel branches, the greedy MAC target, the
//! registry and ONNX).

mod common;

use common::{copy, rand_tensor};

use decompose::{DecomposeError, DecomposeParams, Factorization, Method, RankRule, Scheme};
use decompose::{Selection, decompose};
use nn::layers::{Conv2d, Conv2dParams, Flatten, Linear, Merge, Padding, Parallel, ReLU};
use nn::{Layer, LayerPath, Mode, Model};
use proptest::prelude::*;
use tensor_core::rng::Rng;
use tensor_core::testing::assert_close;
use tensor_core::{Shape, Tensor};

fn sq_dist(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum()
}

/// Checks every `M` of one convolution; returns the weight errors in order of `M`.
fn check_conv(p: Conv2dParams, hw: (usize, usize), seed: u64) -> Vec<f64> {
    let mut rng = Rng::seed_from_u64(seed);
    let conv = Conv2d::new(p, &mut rng).unwrap();
    let x = rand_tensor(&mut rng, &[2, p.in_channels, hw.0, hw.1]);
    let one = Shape::new(&[1, p.in_channels, hw.0, hw.1]).unwrap();
    let f = Factorization::conv(&conv, Scheme::SeparableBasis, &one).unwrap();
    assert!(f.svd().is_none());
    assert_eq!(f.max_rank(), p.kernel.0 * p.kernel.1);
    assert_eq!(f.params_before(), conv.param_count());
    let want = conv.clone().forward(&x, Mode::Eval).unwrap();
    let tol = 1e-4 * (p.patch_len() as f32).sqrt();
    let w = conv.weight().data();
    let total: f64 = w.iter().map(|&v| (v as f64).powi(2)).sum();
    assert!((f.total_energy() - total).abs() <= 1e-9 * total);
    let mut errors = Vec::new();
    for m in 1..=f.max_rank() {
        let mut pair = f.pair(m).unwrap();
        assert_eq!(pair.first.len(), 2, "vertical, then horizontal");
        let got = pair.forward(&x, Mode::Eval).unwrap();
        assert_eq!(got.dims(), want.dims(), "M {m}");
        // Against the dense layer holding W_M: the geometry is carried correctly.
        let w_m = f.weight_at(m).unwrap();
        let mut approx = Conv2d::from_parts(p, w_m.clone(), conv.bias().cloned()).unwrap();
        let expect = approx.forward(&x, Mode::Eval).unwrap();
        assert_close(got.data(), expect.data(), tol, tol);
        // ||W - W_M||^2 is the discarded energy.
        let err = sq_dist(w, w_m.data());
        let discarded = f.discarded_energy(m);
        assert!(
            (err - discarded).abs() <= 1e-6 * total + 1e-9,
            "M {m}: {err} vs {discarded}"
        );
        errors.push(err);
        // The accounting, as the layers count it.
        assert_eq!(f.macs_at(m), pair.macs(&one).unwrap(), "M {m}");
        assert_eq!(f.params_at(m), pair.param_count(), "M {m}");
        assert!(
            pair.first
                .iter()
                .all(|l| l.params().iter().all(|q| q.name != "bias"))
        );
        // Full rank: the original layer, exactly.
        if m == f.max_rank() {
            assert_close(got.data(), want.data(), tol, tol);
            assert!(discarded <= 1e-9 * total.max(1.0));
        }
    }
    errors
}

#[test]
fn scheme1_layers_compute_the_dense_w_m_and_the_original_at_full_rank() {
    let same = Conv2dParams::new(3, 5, (3, 3)).with_padding(Padding::symmetric(1));
    check_conv(same, (7, 6), 1);
    // Non-square kernel, asymmetric padding, stride and dilation on both axes.
    let odd = common::odd_geometry();
    check_conv(odd, (9, 8), 2);
    let strided = Conv2dParams::new(2, 3, (2, 4))
        .with_stride((1, 3))
        .with_dilation((2, 1))
        .with_padding(Padding {
            top: 0,
            bottom: 1,
            left: 2,
            right: 0,
        });
    check_conv(strided, (8, 11), 3);
    // lenet5's first convolution: one input channel, 5x5, fewer filters than basis pairs.
    check_conv(Conv2dParams::new(1, 6, (5, 5)), (12, 12), 4);
}

#[test]
fn the_weight_error_falls_monotonically_with_m() {
    let p = Conv2dParams::new(4, 8, (3, 3)).with_padding(Padding::symmetric(1));
    let errors = check_conv(p, (6, 6), 5);
    assert!(errors[0] > 0.0);
    for w in errors.windows(2) {
        assert!(w[1] <= w[0] + 1e-9, "{errors:?}");
    }
    // A separable weight (every slice rank 1 with a shared vertical and horizontal filter per
    // channel) is exact at M = 1.
    let (n, c, k) = (5, 2, 3);
    let mut rng = Rng::seed_from_u64(6);
    let u: Vec<f32> = (0..c * k).map(|_| rng.normal()).collect();
    let v: Vec<f32> = (0..c * k).map(|_| rng.normal()).collect();
    let a: Vec<f32> = (0..n * c).map(|_| rng.normal()).collect();
    let w = (0..n * c * k * k)
        .map(|i| {
            let (q, pp, cc, nn) = (i % k, i / k % k, i / (k * k) % c, i / (c * k * k));
            a[nn * c + cc] * u[cc * k + pp] * v[cc * k + q]
        })
        .collect();
    let p = Conv2dParams::new(c, n, (k, k));
    let conv = Conv2d::from_parts(p, Tensor::new(&p.weight_dims(), w).unwrap(), None).unwrap();
    let one = Shape::new(&[1, c, 5, 5]).unwrap();
    let f = Factorization::conv(&conv, Scheme::SeparableBasis, &one).unwrap();
    assert!(f.discarded_energy(1) <= 1e-9 * f.total_energy());
    assert!((f.kept_energy(1) - 1.0).abs() < 1e-9);
}

#[test]
fn impossible_ranks_and_corrupt_weights_are_typed_errors() {
    let mut rng = Rng::seed_from_u64(7);
    let p = Conv2dParams::new(2, 3, (3, 2));
    let conv = Conv2d::new(p, &mut rng).unwrap();
    let one = Shape::new(&[1, 2, 5, 5]).unwrap();
    let f = Factorization::conv(&conv, Scheme::SeparableBasis, &one).unwrap();
    for m in [0, 7, usize::MAX] {
        let e = f.pair(m).unwrap_err();
        assert!(
            matches!(e, DecomposeError::InvalidRank { rank, max: 6, .. } if rank == m),
            "{e}"
        );
        assert!(matches!(
            f.weight_at(m).unwrap_err(),
            DecomposeError::InvalidRank { .. }
        ));
    }
    let mut w = conv.weight().data().to_vec();
    w[4] = f32::NAN;
    let bad = Conv2d::from_parts(p, Tensor::new(&p.weight_dims(), w).unwrap(), None).unwrap();
    let e = Factorization::conv(&bad, Scheme::SeparableBasis, &one).unwrap_err();
    assert!(
        matches!(e, DecomposeError::NonFinite { index: 4, .. }),
        "{e}"
    );
    let grouped = Conv2d::new(Conv2dParams::new(4, 4, (3, 3)).with_groups(2), &mut rng).unwrap();
    let one4 = Shape::new(&[1, 4, 6, 6]).unwrap();
    let e = Factorization::conv(&grouped, Scheme::SeparableBasis, &one4).unwrap_err();
    assert!(matches!(e, DecomposeError::Unsupported { .. }), "{e}");
    // An input too small for the kernel.
    let tiny = Shape::new(&[1, 2, 2, 1]).unwrap();
    assert!(Factorization::conv(&conv, Scheme::SeparableBasis, &tiny).is_err());
}

/// Conv, ReLU, a residual block of two convolutions, then a classifier.
fn convy(rng: &mut Rng) -> Model {
    let conv = |c, n, rng: &mut Rng| {
        let p = Conv2dParams::new(c, n, (3, 3)).with_padding(Padding::symmetric(1));
        Box::new(Conv2d::new(p, rng).unwrap()) as Box<dyn Layer>
    };
    let block = Parallel::new(
        vec![
            vec![conv(8, 8, rng), Box::new(ReLU::new()), conv(8, 8, rng)],
            vec![],
        ],
        Merge::Add,
    )
    .unwrap();
    Model::new(
        "convy",
        &[2, 6, 6],
        vec![
            conv(2, 8, rng),
            Box::new(ReLU::new()),
            Box::new(block),
            Box::new(Flatten::new()),
            Box::new(Linear::new(8 * 36, 4, rng).unwrap()),
        ],
    )
}

#[test]
fn scheme1_through_the_model_walk_registry_and_onnx() {
    let mut rng = Rng::seed_from_u64(8);
    let mut m = convy(&mut rng);
    let x = rand_tensor(&mut rng, &[3, 2, 6, 6]);
    let mut reference = copy(&m);
    let params = DecomposeParams {
        method: Method::SeparableBasis,
        selection: Selection::PerLayer(RankRule::Given(3)),
        ..DecomposeParams::default()
    };
    let report = decompose(&mut m, &params, None).unwrap();
    let paths: Vec<&str> = report.layers.iter().map(|l| l.path.as_str()).collect();
    assert_eq!(paths, ["0", "2/0/0", "2/0/2"], "the classifier is left out");
    for l in &report.layers {
        assert_eq!(l.scheme, Scheme::SeparableBasis);
        assert_eq!(l.rank, Some(3));
        assert!(l.macs_after < l.macs_before);
        assert!((l.weight_error - (1.0 - l.kept_energy)).abs() < 1e-9);
        // The reference holds W_3 in place of each factored weight.
        let path = LayerPath::parse(&l.path).unwrap();
        let one = Shape::new(&[1, 8, 6, 6]).unwrap();
        let slot = reference.layer_mut(&path).unwrap();
        let conv = slot.as_any().downcast_ref::<Conv2d>().unwrap();
        let one = if l.path == "0" {
            Shape::new(&[1, 2, 6, 6]).unwrap()
        } else {
            one
        };
        let w3 = Factorization::conv(conv, Scheme::SeparableBasis, &one)
            .unwrap()
            .weight_at(3)
            .unwrap();
        for q in slot.params_mut() {
            if q.name == "weight" {
                q.value.data_mut().copy_from_slice(w3.data());
            }
        }
    }
    assert_eq!(m.layers.len(), 7, "one top-level layer became three");
    assert_eq!(m.layers[4].branches()[0].len(), 7, "two nested became six");
    assert_eq!(report.macs_after, m.macs_per_sample().unwrap());
    assert_eq!(report.params_after, m.param_count());
    let y = m.forward(&x, Mode::Eval).unwrap();
    let want = reference.forward(&x, Mode::Eval).unwrap();
    assert_close(y.data(), want.data(), 1e-4, 1e-4);
    // Stored as its factors: plain layers the nn registry rebuilds.
    assert_eq!(copy(&m).forward(&x, Mode::Eval).unwrap().data(), y.data());
    // ONNX: the depthwise layers export with their groups.
    let bytes = nn::io::onnx::export_bytes(&m).unwrap();
    let mut back = nn::io::onnx::import_bytes(&bytes, "scheme1").unwrap();
    assert_close(
        back.forward(&x, Mode::Eval).unwrap().data(),
        y.data(),
        1e-5,
        1e-5,
    );
    assert_eq!(
        back.macs_per_sample().unwrap(),
        m.macs_per_sample().unwrap()
    );
}

#[test]
fn a_mac_target_is_met_greedily_with_scheme1() {
    let m0 = convy(&mut Rng::seed_from_u64(9));
    let total = m0.macs_per_sample().unwrap();
    for frac in [0.3, 0.6] {
        let mut m = convy(&mut Rng::seed_from_u64(9));
        let params = DecomposeParams {
            method: Method::SeparableBasis,
            selection: Selection::ModelMacs(frac),
            ..DecomposeParams::default()
        };
        let report = decompose(&mut m, &params, None).unwrap();
        assert!(report.macs_after as f64 <= frac * total as f64, "{frac}");
        assert_eq!(report.macs_after, m.macs_per_sample().unwrap());
        if frac < 0.5 {
            // 0.3 is out of reach unless every convolution is factored.
            assert!(report.layers.iter().all(|l| l.rank.is_some()), "{report:?}");
        }
    }
    // Below what M = 1 everywhere reaches: a typed error, the model untouched.
    let mut m = convy(&mut Rng::seed_from_u64(9));
    let params = DecomposeParams {
        method: Method::SeparableBasis,
        selection: Selection::ModelMacs(0.01),
        ..DecomposeParams::default()
    };
    let e = decompose(&mut m, &params, None).unwrap_err();
    assert!(matches!(e, DecomposeError::TargetUnreachable { .. }), "{e}");
    assert_eq!(m.macs_per_sample().unwrap(), total);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Full rank reproduces the original convolution over edge geometries.
    #[test]
    fn full_rank_is_exact_over_geometries(
        c in 1usize..4, n in 1usize..5, kh in 2usize..5, kw in 2usize..5,
        sh in 1usize..3, sw in 1usize..3, dh in 1usize..3, dw in 1usize..3,
        pads in (0usize..3, 0usize..3, 0usize..3, 0usize..3), seed in 0u64..1000,
    ) {
        let p = Conv2dParams::new(c, n, (kh, kw))
            .with_stride((sh, sw))
            .with_dilation((dh, dw))
            .with_padding(Padding { top: pads.0, bottom: pads.1, left: pads.2, right: pads.3 });
        let mut rng = Rng::seed_from_u64(seed);
        let conv = Conv2d::new(p, &mut rng).unwrap();
        let (h, w) = (dh * (kh - 1) + 3, dw * (kw - 1) + 2);
        let x = rand_tensor(&mut rng, &[2, c, h, w]);
        let one = Shape::new(&[1, c, h, w]).unwrap();
        let f = Factorization::conv(&conv, Scheme::SeparableBasis, &one).unwrap();
        let mut pair = f.pair(f.max_rank()).unwrap();
        let got = pair.forward(&x, Mode::Eval).unwrap();
        let want = conv.clone().forward(&x, Mode::Eval).unwrap();
        let tol = 1e-4 * (p.patch_len() as f32).sqrt();
        prop_assert_eq!(got.dims(), want.dims());
        assert_close(got.data(), want.data(), tol, tol);
        prop_assert_eq!(f.macs_at(1) * f.max_rank() as u64, pair.macs(&one).unwrap());
    }
}
