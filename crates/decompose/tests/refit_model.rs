//! The data-driven refit, activation capture through the model walk, whole-model
//! decomposition (per-layer rules, a MAC target, Parallel branches) and its accounting, and
//! the decomposed model through the registry and ONNX.

mod common;

use common::{copy, rand_tensor};

use decompose::{
    AlternateParams, DecomposeError, DecomposeParams, Factorization, Method, RankRule, RefitParams,
    Scheme, Selection, alternate, capture_inputs, decompose, macs_by_kind, output_error,
    refit_second,
};
use nn::layers::{Conv2d, Conv2dParams, Linear, Merge, Padding, Parallel, ReLU};
use nn::{Layer, LayerPath, Mode, Model};
use tensor_core::rng::Rng;
use tensor_core::testing::assert_close;
use tensor_core::{Shape, Tensor};

fn images(rng: &mut Rng, n: usize) -> Tensor {
    Tensor::new(
        &[n, 1, 28, 28],
        (0..n * 784).map(|_| rng.uniform()).collect(),
    )
    .unwrap()
}

#[test]
fn refit_recovers_a_reachable_target_and_never_worsens() {
    let mut rng = Rng::seed_from_u64(1);
    let p = Conv2dParams::new(3, 6, (3, 3)).with_padding(Padding::symmetric(1));
    let conv = Conv2d::new(p, &mut rng).unwrap();
    let one = Shape::new(&[1, 3, 8, 8]).unwrap();
    let x = rand_tensor(&mut rng, &[4, 3, 8, 8]);
    let f = Factorization::conv(&conv, Scheme::Separable, &one).unwrap();
    // A target the pair can reach exactly: another second factor on the same first one.
    let mut pair = f.pair(2).unwrap();
    let mut other = f.pair(2).unwrap();
    for q in other.second.params_mut() {
        q.value
            .data_mut()
            .iter_mut()
            .for_each(|v| *v = 0.5 * *v + 0.1);
    }
    let z = other.forward_first(&x, Mode::Eval).unwrap();
    let target = other.second.forward(&z, Mode::Eval).unwrap();
    let r = refit_second(&mut pair, &x, &target, &RefitParams::default()).unwrap();
    assert!(r.error_before > 1e-2, "{r:?}");
    assert!(r.error_after < 1e-8, "{r:?}");
    // The original's output: the refit error is at most the SVD's.
    let mut dense = conv.clone();
    let y = dense.forward(&x, Mode::Eval).unwrap();
    let mut pair = f.pair(3).unwrap();
    let params = RefitParams {
        max_columns: 100,
        ..RefitParams::default()
    };
    let r = refit_second(&mut pair, &x, &y, &params).unwrap();
    assert_eq!(r.columns, 100);
    assert!(r.error_after <= r.error_before, "{r:?}");
    assert!(
        refit_second(&mut pair, &x, &z, &params).is_err(),
        "wrong target shape"
    );
}

#[test]
fn refit_of_a_linear_pair_fits_the_bias_too() {
    let mut rng = Rng::seed_from_u64(2);
    let lin = Linear::new(20, 8, &mut rng).unwrap();
    let f = Factorization::linear(&lin).unwrap();
    let x = rand_tensor(&mut rng, &[64, 20]);
    // The original shifted by a constant: only the bias can absorb it.
    let mut dense = lin.clone();
    let mut y = dense.forward(&x, Mode::Eval).unwrap();
    y.data_mut().iter_mut().for_each(|v| *v += 3.0);
    let mut pair = f.pair(8).unwrap();
    let r = refit_second(&mut pair, &x, &y, &RefitParams::default()).unwrap();
    assert!(r.error_after < 1e-9, "{r:?}");
    let bias = pair
        .second
        .params()
        .into_iter()
        .find(|p| p.name == "bias")
        .unwrap();
    let want: Vec<f32> = lin.bias().unwrap().data().iter().map(|b| b + 3.0).collect();
    assert_close(bias.value.data(), &want, 1e-4, 1e-4);
}

/// A small model with a residual Parallel block of two linear layers.
fn branchy(rng: &mut Rng) -> Model {
    let block = Parallel::new(
        vec![
            vec![
                Box::new(Linear::new(32, 32, rng).unwrap()) as Box<dyn Layer>,
                Box::new(ReLU::new()),
                Box::new(Linear::new(32, 32, rng).unwrap()),
            ],
            vec![],
        ],
        Merge::Add,
    )
    .unwrap();
    Model::new(
        "branchy",
        &[16],
        vec![
            Box::new(Linear::new(16, 32, rng).unwrap()),
            Box::new(block),
            Box::new(Linear::new(32, 4, rng).unwrap()),
        ],
    )
}

#[test]
fn capture_sees_nested_inputs_and_leaves_the_model_unchanged() {
    let mut rng = Rng::seed_from_u64(3);
    let mut m = branchy(&mut rng);
    let x = rand_tensor(&mut rng, &[5, 16]);
    let before = m.forward(&x, Mode::Eval).unwrap();
    let nested = LayerPath::parse("1/0/2").unwrap();
    let got = capture_inputs(&mut m, &[LayerPath::top(0), nested.clone()], &x).unwrap();
    assert_eq!(got[0].data(), x.data());
    // Input of 1/0/2 = relu(linear 1/0/0 (linear 0 (x))).
    let mut h = m.layers[0].forward(&x, Mode::Eval).unwrap();
    let branch = &mut m.layers[1].branches_mut()[0];
    h = branch[0].forward(&h, Mode::Eval).unwrap();
    h = branch[1].forward(&h, Mode::Eval).unwrap();
    assert_eq!(got[1].data(), h.data());
    assert_eq!(m.forward(&x, Mode::Eval).unwrap().data(), before.data());
    assert_eq!(m.layer(&nested).unwrap().kind(), "linear");
    let e = capture_inputs(&mut m, &[LayerPath::top(9)], &x).unwrap_err();
    assert!(e.to_string().contains("no layer at 9"), "{e}");
    assert_eq!(m.forward(&x, Mode::Eval).unwrap().data(), before.data());
}

/// A copy of `m` through its records.

#[test]
fn decomposition_inside_branches_computes_the_dense_w_r() {
    let mut rng = Rng::seed_from_u64(4);
    let mut m = branchy(&mut rng);
    let x = rand_tensor(&mut rng, &[3, 16]);
    let before = m.forward(&x, Mode::Eval).unwrap();
    let params = DecomposeParams {
        selection: Selection::PerLayer(RankRule::Given(usize::MAX)),
        include_last: true,
        ..DecomposeParams::default()
    };
    let report = decompose(&mut m, &params, None).unwrap();
    // Full rank never saves MACs: every layer kept, the model unchanged.
    assert!(report.layers.iter().all(|l| l.rank.is_none()));
    assert_eq!(report.macs_after, report.macs_before);
    assert_eq!(m.forward(&x, Mode::Eval).unwrap().data(), before.data());
    // The reference: each factored layer's weight replaced by W_r, in place.
    let mut reference = copy(&m);
    // By default the last layer (the classifier) is left out.
    let params = DecomposeParams {
        selection: Selection::PerLayer(RankRule::Given(8)),
        ..DecomposeParams::default()
    };
    let report = decompose(&mut copy(&m), &params, None).unwrap();
    let paths: Vec<&str> = report.layers.iter().map(|l| l.path.as_str()).collect();
    assert_eq!(paths, ["0", "1/0/0", "1/0/2"]);
    let params = DecomposeParams {
        include_last: true,
        ..params
    };
    let report = decompose(&mut m, &params, None).unwrap();
    let paths: Vec<&str> = report.layers.iter().map(|l| l.path.as_str()).collect();
    assert_eq!(paths, ["0", "1/0/0", "1/0/2", "2"]);
    assert_eq!(report.layers[0].rank, Some(8), "16x32: 8 * 48 < 512");
    assert_eq!(report.layers[1].rank, Some(8), "32x32: 8 * 64 < 1024");
    assert_eq!(report.layers[3].rank, None, "32x4: 8 * 36 > 128");
    for l in report.layers.iter().filter(|l| l.rank.is_some()) {
        let path = LayerPath::parse(&l.path).unwrap();
        let slot = reference.layer_mut(&path).unwrap();
        let lin = slot.as_any().downcast_ref::<Linear>().unwrap();
        let (o, i) = (lin.out_features(), lin.in_features());
        let svd = Factorization::linear(lin).unwrap().svd().unwrap().clone();
        let w = svd.factors(8).unwrap().product(o, i);
        for p in slot.params_mut() {
            if p.name == "weight" {
                p.value.data_mut().copy_from_slice(&w);
            }
        }
    }
    assert_eq!(m.layers.len(), 4, "one top-level layer became two");
    assert_eq!(
        m.layers[2].branches()[0].len(),
        5,
        "two nested layers became four"
    );
    let sum_after: u64 = report.layers.iter().map(|l| l.macs_after).sum();
    let sum_before: u64 = report.layers.iter().map(|l| l.macs_before).sum();
    assert_eq!(
        report.macs_before - report.macs_after,
        sum_before - sum_after
    );
    assert_eq!(report.macs_after, m.macs_per_sample().unwrap());
    assert_eq!(report.params_after, m.param_count());
    let after = m.forward(&x, Mode::Eval).unwrap();
    let want = reference.forward(&x, Mode::Eval).unwrap();
    assert_close(after.data(), want.data(), 1e-4, 1e-4);
    assert!(after.data() != before.data());
}

#[test]
fn lenet5_by_energy_keeps_the_energy_and_counts_macs() {
    let mut rng = Rng::seed_from_u64(5);
    let mut m = nn::zoo::build("lenet5", &mut rng).unwrap();
    let before = macs_by_kind(&m).unwrap();
    let params = DecomposeParams {
        method: Method::Separable,
        selection: Selection::PerLayer(RankRule::Energy(0.9)),
        ..DecomposeParams::default()
    };
    let report = decompose(&mut m, &params, None).unwrap();
    for l in &report.layers {
        if let Some(r) = l.rank {
            assert!(l.kept_energy >= 0.9 - 1e-12, "{l:?}");
            assert!(r == 1 || l.kept_energy > 0.0);
            assert!(l.macs_after < l.macs_before);
            assert!((l.weight_error - (1.0 - l.kept_energy)).abs() < 1e-9);
        }
    }
    let after = macs_by_kind(&m).unwrap();
    let conv_saved: u64 = report
        .layers
        .iter()
        .filter(|l| l.kind == "conv2d")
        .map(|l| l.macs_before - l.macs_after)
        .sum();
    assert_eq!(before["conv2d"] - after["conv2d"], conv_saved);
    assert_eq!(
        before.values().sum::<u64>() - after.values().sum::<u64>(),
        report.macs_before - report.macs_after
    );
}

#[test]
fn a_model_mac_target_is_met_greedily() {
    let mut rng = Rng::seed_from_u64(6);
    let mut m = nn::zoo::build("lenet5", &mut rng).unwrap();
    nn::layers::fold_batchnorms(&mut m).unwrap();
    let total = m.macs_per_sample().unwrap();
    for (method, frac) in [(Method::Separable, 0.4), (Method::Channel, 0.5)] {
        let mut mm = nn::zoo::build("lenet5", &mut Rng::seed_from_u64(6)).unwrap();
        let params = DecomposeParams {
            method,
            selection: Selection::ModelMacs(frac),
            ..DecomposeParams::default()
        };
        let report = decompose(&mut mm, &params, None).unwrap();
        assert!(
            report.macs_after as f64 <= frac * total as f64,
            "{method:?}"
        );
        // Greedy stops at the first step under the target: undoing any one layer's last
        // step would exceed it, so the result is within one rank step of the target.
        assert!(report.macs_after as f64 > 0.3 * total as f64, "{report:?}");
        assert_eq!(report.macs_after, mm.macs_per_sample().unwrap());
    }
    let params = DecomposeParams {
        method: Method::Svd,
        selection: Selection::ModelMacs(0.01),
        ..DecomposeParams::default()
    };
    let e = decompose(&mut m, &params, None).unwrap_err();
    assert!(matches!(e, DecomposeError::TargetUnreachable { .. }), "{e}");
    let params = DecomposeParams {
        selection: Selection::ModelMacs(0.0),
        ..DecomposeParams::default()
    };
    assert!(decompose(&mut m, &params, None).is_err());
}

#[test]
fn refit_on_calibration_data_lowers_each_layers_output_error() {
    let mut rng = Rng::seed_from_u64(7);
    let mut m = nn::zoo::build("lenet5", &mut rng).unwrap();
    let x = images(&mut rng, 16);
    let params = DecomposeParams {
        method: Method::Channel,
        selection: Selection::PerLayer(RankRule::Energy(0.6)),
        ..DecomposeParams::default()
    };
    let report = decompose(&mut m, &params, Some(&x)).unwrap();
    let refits: Vec<_> = report.layers.iter().filter_map(|l| l.refit).collect();
    assert!(!refits.is_empty());
    for r in refits {
        assert!(r.error_after <= r.error_before, "{r:?}");
    }
}

#[test]
fn decomposed_models_rebuild_from_records_and_round_trip_onnx() {
    let mut rng = Rng::seed_from_u64(8);
    let mut m = nn::zoo::build("lenet5", &mut rng).unwrap();
    let params = DecomposeParams {
        method: Method::Separable,
        selection: Selection::ModelMacs(0.5),
        ..DecomposeParams::default()
    };
    decompose(&mut m, &params, None).unwrap();
    let x = images(&mut rng, 3);
    let y = m.forward(&x, Mode::Eval).unwrap();
    // Stored as its factors: plain layers the nn registry rebuilds.
    assert_eq!(copy(&m).forward(&x, Mode::Eval).unwrap().data(), y.data());
    // ONNX with no new operator.
    let bytes = nn::io::onnx::export_bytes(&m).unwrap();
    let mut back = nn::io::onnx::import_bytes(&bytes, "decomposed").unwrap();
    let yb = back.forward(&x, Mode::Eval).unwrap();
    assert_close(yb.data(), y.data(), 1e-5, 1e-5);
    assert_eq!(
        back.macs_per_sample().unwrap(),
        m.macs_per_sample().unwrap()
    );
}

/// A `20 x 20` linear layer `diag(s)`.
fn diagonal(s: impl Fn(usize) -> f32) -> Box<dyn Layer> {
    let w = (0..400)
        .map(|i| if i / 20 == i % 20 { s(i / 20) } else { 0.0 })
        .collect();
    Box::new(Linear::from_parts(Tensor::new(&[20, 20], w).unwrap(), None).unwrap())
}

#[test]
fn the_greedy_choice_cuts_the_layer_that_loses_least_energy() {
    // Layer 0 keeps almost all its energy at rank 1 (s_i = 2^-i); layer 1 is flat.
    let mut m = Model::new(
        "two",
        &[20],
        vec![diagonal(|i| 0.5f32.powi(i as i32)), diagonal(|_| 1.0)],
    );
    let params = DecomposeParams {
        selection: Selection::ModelMacs(0.5),
        include_last: true,
        ..DecomposeParams::default()
    };
    let report = decompose(&mut m, &params, None).unwrap();
    // 800 MACs, target 400; a pair needs 40 per rank, break-even at rank 9.
    assert_eq!(report.layers[0].rank, Some(1));
    assert_eq!(report.layers[1].rank, Some(9));
    assert_eq!(report.macs_after, 400);
    assert!(report.layers[0].kept_energy > 0.74);
    assert!((report.layers[1].kept_energy - 9.0 / 20.0).abs() < 1e-9);
}

#[test]
fn only_the_layers_asked_for_are_factored() {
    let mut m = nn::zoo::build("lenet300", &mut Rng::seed_from_u64(9)).unwrap();
    let params = DecomposeParams {
        layers: Some(vec![LayerPath::top(1)]),
        selection: Selection::PerLayer(RankRule::Given(10)),
        ..DecomposeParams::default()
    };
    let report = decompose(&mut m, &params, None).unwrap();
    assert_eq!(report.layers.len(), 1);
    assert_eq!(report.layers[0].path, "1");
    assert_eq!(
        m.layers.len(),
        7,
        "fc1 became two layers, the rest unchanged"
    );
    let params = DecomposeParams {
        layers: Some(vec![LayerPath::top(0)]),
        ..DecomposeParams::default()
    };
    let e = decompose(&mut m, &params, None).unwrap_err();
    assert!(e.to_string().contains("at 0"), "{e}");
}

#[test]
fn alternating_rounds_lower_the_output_error_below_the_refit() {
    let mut rng = Rng::seed_from_u64(10);
    let p = Conv2dParams::new(4, 8, (3, 3)).with_padding(Padding::symmetric(1));
    let conv = Conv2d::new(p, &mut rng).unwrap();
    let one = Shape::new(&[1, 4, 10, 10]).unwrap();
    // Correlated channels, as real activations are: the data-driven rounds have structure
    // to exploit that the weight SVD ignores.
    let base = rand_tensor(&mut rng, &[6, 1, 10, 10]);
    let mut x = Tensor::zeros_dims(&[6, 4, 10, 10]).unwrap();
    for (i, v) in x.data_mut().iter_mut().enumerate() {
        let (img, pos) = (i / 400, i % 100);
        *v = base.data()[img * 100 + pos] * (1.0 + (i / 100 % 4) as f32) + 0.1 * rng.normal();
    }
    let mut dense = conv.clone();
    let y = dense.forward(&x, Mode::Eval).unwrap();
    // Scheme 2's first factor is one layer; scheme 1's two depthwise layers, descended together.
    for scheme in [Scheme::Separable, Scheme::SeparableBasis] {
        let f = Factorization::conv(&conv, scheme, &one).unwrap();
        let mut pair = f.pair(2).unwrap();
        let refit = RefitParams::default();
        refit_second(&mut pair, &x, &y, &refit).unwrap();
        let params = AlternateParams {
            rounds: 4,
            ..AlternateParams::default()
        };
        let r = alternate(&mut pair, &x, &y, &refit, &params).unwrap();
        assert!(r.error_after < r.error_before, "{scheme:?} {r:?}");
        assert!((output_error(&mut pair, &x, &y).unwrap() - r.error_after).abs() < 1e-9);
        // No rounds: nothing changes.
        let none = alternate(&mut pair, &x, &y, &refit, &AlternateParams::default()).unwrap();
        assert_eq!(none.error_before, none.error_after);
    }
}
