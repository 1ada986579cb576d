//! Tests of the dense layers: record round trips, corrupt records, forward references,
//! BatchNorm statistics and folding. (Gradients are checked in `tests/gradcheck.rs`.)

use tensor_core::conv::conv2d_forward_reference;
use tensor_core::rng::Rng;
use tensor_core::testing::assert_close;
use tensor_core::{Shape, Tensor};

use super::*;
use crate::layer::Mode;
use crate::model::Model;
use crate::payload::Payload;
use crate::record::AttrValue;

/// Rebuilds a layer through nn's registry.
fn layer_from_record(rec: &LayerRecord) -> Result<Box<dyn Layer>> {
    LayerRegistry::nn_default().build(rec)
}

/// The kinds [`zoo_of_layers`] must cover (the graph operators are covered in
/// `onnx_ops/tests.rs`).
const KINDS: &[&str] = &[
    "linear",
    "conv2d",
    "maxpool2d",
    "avgpool2d",
    "globalavgpool",
    "relu",
    "sigmoid",
    "tanh",
    "flatten",
    "dropout",
    "batchnorm2d",
    "sign",
    "fake_quantize",
];

fn rand_tensor(rng: &mut Rng, dims: &[usize]) -> Tensor {
    let n = dims.iter().product();
    Tensor::new(dims, (0..n).map(|_| rng.normal()).collect()).unwrap()
}

/// One layer of every kind with non-default settings, and an input for it.
fn zoo_of_layers(rng: &mut Rng) -> Vec<(Box<dyn Layer>, Vec<usize>)> {
    let conv = Conv2dParams::new(4, 6, (3, 2))
        .with_stride((2, 1))
        .with_padding(Padding {
            top: 1,
            bottom: 0,
            left: 2,
            right: 1,
        })
        .with_dilation((1, 2))
        .with_groups(2);
    let pool = Pool2dParams::new((3, 3))
        .with_stride((2, 2))
        .with_padding(Padding::symmetric(1))
        .with_ceil_mode(true);
    let mut bn = BatchNorm2d::with_config(4, 1e-3, 0.2).unwrap();
    // Non-trivial statistics so that the round trip is meaningful.
    bn.forward(&rand_tensor(rng, &[3, 4, 5, 5]), Mode::Train)
        .unwrap();
    let no_bias = Conv2d::from_parts(
        Conv2dParams::new(4, 2, (1, 1)),
        rand_tensor(rng, &[2, 4, 1, 1]),
        None,
    )
    .unwrap();
    vec![
        (Box::new(Linear::new(7, 5, rng).unwrap()), vec![3, 7]),
        (
            Box::new(Linear::from_parts(rand_tensor(rng, &[2, 7]), None).unwrap()),
            vec![3, 7],
        ),
        (Box::new(Conv2d::new(conv, rng).unwrap()), vec![2, 4, 7, 8]),
        (Box::new(no_bias), vec![2, 4, 3, 3]),
        (Box::new(MaxPool2d::new(pool).unwrap()), vec![2, 3, 7, 6]),
        (
            Box::new(AvgPool2d::new(pool, true).unwrap()),
            vec![2, 3, 7, 6],
        ),
        (
            Box::new(AvgPool2d::new(pool, false).unwrap()),
            vec![2, 3, 7, 6],
        ),
        (Box::new(GlobalAvgPool::new()), vec![2, 3, 4, 5]),
        (Box::new(ReLU::new()), vec![2, 9]),
        (Box::new(Sigmoid::new()), vec![2, 9]),
        (Box::new(Tanh::new()), vec![2, 9]),
        (Box::new(Flatten::new()), vec![2, 3, 4]),
        (Box::new(Dropout::new(0.25, 77).unwrap()), vec![2, 9]),
        (Box::new(bn), vec![2, 4, 3, 3]),
        (Box::new(Sign::new()), vec![2, 9]),
        (
            Box::new(FakeQuantize::new(0.05, 3, -8, 7).unwrap()),
            vec![2, 9],
        ),
    ]
}

#[test]
fn record_round_trip_is_exact() {
    let mut rng = Rng::seed_from_u64(1);
    let layers = zoo_of_layers(&mut rng);
    let mut kinds: Vec<&str> = Vec::new();
    for (mut layer, dims) in layers {
        let rec = layer.record().unwrap();
        assert_eq!(rec.kind, layer.kind());
        let mut back = layer_from_record(&rec).unwrap();
        assert_eq!(back.record().unwrap(), rec, "{}", layer.kind());
        assert_eq!(back.param_count(), layer.param_count());
        let x = rand_tensor(&mut rng, &dims);
        let y1 = layer.forward(&x, Mode::Eval).unwrap();
        let y2 = back.forward(&x, Mode::Eval).unwrap();
        assert_eq!(y1.dims(), layer.output_shape(x.shape()).unwrap().dims());
        let b1: Vec<u32> = y1.data().iter().map(|v| v.to_bits()).collect();
        let b2: Vec<u32> = y2.data().iter().map(|v| v.to_bits()).collect();
        assert_eq!(b1, b2, "{} forward not bit-equal", layer.kind());
        kinds.push(layer.kind());
    }
    for k in KINDS {
        assert!(kinds.contains(k), "kind {k} not covered");
    }
}

#[test]
fn corrupt_records_are_errors_not_panics() {
    let mut rng = Rng::seed_from_u64(2);
    for (layer, _) in zoo_of_layers(&mut rng) {
        let rec = layer.record().unwrap();
        // Every attribute removed, retyped, or set to absurd values.
        for name in rec.attrs.keys() {
            let mut r = rec.clone();
            r.attrs.remove(name);
            if layer.kind() != "dropout" || name != "seed" {
                assert!(
                    layer_from_record(&r).is_err(),
                    "{}: without {name}",
                    rec.kind
                );
            }
            for bad in [
                AttrValue::Str("x".into()),
                AttrValue::Int(-1),
                AttrValue::Int(i64::MAX),
                AttrValue::Ints(vec![i64::MAX, i64::MAX, i64::MAX, i64::MAX]),
                AttrValue::Ints(vec![1 << 23, 1 << 23]),
                AttrValue::Ints(vec![0, 0]),
                AttrValue::Float(f32::NAN),
                AttrValue::Float(-1.0),
            ] {
                let mut r = rec.clone();
                r.attrs.insert(name.clone(), bad);
                // Must not panic; may succeed for harmless values (e.g. a large seed).
                let _ = layer_from_record(&r);
            }
        }
        // Every tensor removed, reshaped, or duplicated.
        for i in 0..rec.tensors.len() {
            let mut r = rec.clone();
            r.tensors.remove(i);
            assert!(
                layer_from_record(&r).is_err(),
                "{}: tensor dropped",
                rec.kind
            );
            let mut r = rec.clone();
            let n = r.tensors[i].1.numel();
            r.tensors[i].1 = Tensor::zeros_dims(&[n + 1]).unwrap();
            let e = layer_from_record(&r).unwrap_err().to_string();
            assert!(e.contains(&rec.tensors[i].0), "{e}");
            let mut r = rec.clone();
            r.tensors.push(r.tensors[i].clone());
            assert!(layer_from_record(&r).is_err());
        }
        let mut r = rec.clone();
        r.tensors
            .push(("extra".into(), Tensor::zeros_dims(&[1]).unwrap()));
        assert!(layer_from_record(&r).is_err(), "{}: stray tensor", rec.kind);
        let r = rec.clone().with_payload("extra", Payload::bytes(vec![1]));
        let e = layer_from_record(&r).unwrap_err().to_string();
        assert!(
            e.contains("payload `extra`"),
            "{}: stray payload: {e}",
            rec.kind
        );
    }
    let e = layer_from_record(&LayerRecord::new("warp-drive")).unwrap_err();
    assert!(matches!(e, NnError::Unsupported(_)), "{e}");
}

#[test]
fn corrupt_conv_geometry_names_the_problem() {
    let mut rng = Rng::seed_from_u64(3);
    let conv = Conv2d::new(Conv2dParams::new(4, 6, (3, 3)), &mut rng).unwrap();
    let mut rec = conv.record().unwrap();
    rec.attrs.insert("groups".into(), AttrValue::Int(4));
    let e = layer_from_record(&rec).unwrap_err().to_string();
    assert!(e.contains("conv2d") && e.contains("groups"), "{e}");
    // Weight of the right element count but the wrong shape.
    let mut rec = conv.record().unwrap();
    rec.tensors[0].1 = rec.tensors[0].1.clone().reshape(&[6, 4, 9, 1]).unwrap();
    let e = layer_from_record(&rec).unwrap_err().to_string();
    assert!(e.contains("weight"), "{e}");
}

#[test]
fn linear_matches_naive_for_batch_one_and_many() {
    let mut rng = Rng::seed_from_u64(4);
    let mut l = Linear::new(13, 6, &mut rng).unwrap();
    for n in [1, 5] {
        let x = rand_tensor(&mut rng, &[n, 13]);
        let y = l.forward(&x, Mode::Eval).unwrap();
        let (w, b) = (l.weight().data(), l.bias().unwrap().data());
        let mut want = vec![0.0f32; n * 6];
        for i in 0..n {
            for o in 0..6 {
                let dot: f64 = (0..13)
                    .map(|k| x.data()[i * 13 + k] as f64 * w[o * 13 + k] as f64)
                    .sum();
                want[i * 6 + o] = (dot + b[o] as f64) as f32;
            }
        }
        assert_close(y.data(), &want, 1e-5, 1e-5);
    }
    assert!(
        l.forward(&rand_tensor(&mut rng, &[2, 12]), Mode::Eval)
            .is_err()
    );
    assert!(matches!(
        l.backward(&rand_tensor(&mut rng, &[2, 6])),
        Err(NnError::NoForwardCache { .. })
    ));
}

#[test]
fn linear_inference_matches_training_forward_and_repacks_after_params_mut() {
    // Small integers: every sum is exact, so the packed inference kernel and the faer
    // training product must agree bit for bit (batch 1 runs the GEMV, 29 the tiles).
    let mut rng = Rng::seed_from_u64(8);
    let ints = |rng: &mut Rng, dims: &[usize]| {
        let n = dims.iter().product();
        Tensor::new(dims, (0..n).map(|_| rng.below(7) as f32 - 3.0).collect()).unwrap()
    };
    let w = ints(&mut rng, &[300, 70]);
    let b = ints(&mut rng, &[300]);
    let mut l = Linear::from_parts(w, Some(b)).unwrap();
    for n in [1, 29] {
        let x = ints(&mut rng, &[n, 70]);
        let eval = l.forward(&x, Mode::Eval).unwrap();
        let train = l.forward(&x, Mode::Train).unwrap();
        assert_eq!(eval.data(), train.data(), "batch {n}");
        let mut relu = train.data().to_vec();
        tensor_core::activation::relu_inplace(&mut relu);
        assert_eq!(l.forward_relu(&x).unwrap().data(), &relu[..], "batch {n}");
    }
    // Writing the weight through params_mut must drop the packing made above.
    let x = ints(&mut rng, &[3, 70]);
    let before = l.forward(&x, Mode::Eval).unwrap();
    for p in l.params_mut() {
        if p.name == "weight" {
            p.value.data_mut().iter_mut().for_each(|v| *v *= 2.0);
        }
    }
    let after = l.forward(&x, Mode::Eval).unwrap();
    let want = l.forward(&x, Mode::Train).unwrap();
    assert_eq!(after.data(), want.data());
    assert_ne!(after.data(), before.data());
}

#[test]
fn init_bounds_follow_pytorch() {
    let mut rng = Rng::seed_from_u64(5);
    let l = Linear::new(100, 50, &mut rng).unwrap();
    let bound = 0.1;
    for p in l.params() {
        assert!(p.value.data().iter().all(|v| v.abs() <= bound));
        let max = p.value.data().iter().fold(0.0f32, |a, v| a.max(v.abs()));
        assert!(max > 0.9 * bound, "{} max {max}", p.name);
    }
    let c = Conv2d::new(Conv2dParams::new(8, 4, (3, 3)).with_groups(2), &mut rng).unwrap();
    let bound = 1.0 / 36f32.sqrt();
    assert!(c.weight().data().iter().all(|v| v.abs() <= bound));
}

#[test]
fn conv_layer_matches_reference() {
    let mut rng = Rng::seed_from_u64(6);
    let p = Conv2dParams::new(3, 4, (3, 3)).with_padding(Padding::symmetric(1));
    let mut c = Conv2d::new(p, &mut rng).unwrap();
    let x = rand_tensor(&mut rng, &[2, 3, 6, 6]);
    let y = c.forward(&x, Mode::Eval).unwrap();
    let want =
        conv2d_forward_reference(&x, c.weight(), Some(c.bias().unwrap().data()), &p).unwrap();
    assert_close(y.data(), want.data(), 1e-5, 1e-5);
    assert_eq!(c.macs(x.shape()).unwrap(), 2 * 4 * 36 * 27);
}

#[test]
fn batchnorm_train_statistics_and_running_update() {
    let mut rng = Rng::seed_from_u64(7);
    let mut bn = BatchNorm2d::new(3).unwrap();
    let x = rand_tensor(&mut rng, &[4, 3, 5, 5])
        .reshape(&[4, 3, 5, 5])
        .unwrap();
    let x = {
        let mut x = x;
        // Channel c has mean ~c and scale ~(c+1).
        for (i, plane) in x.data_mut().chunks_exact_mut(25).enumerate() {
            let c = (i % 3) as f32;
            plane.iter_mut().for_each(|v| *v = *v * (c + 1.0) + c);
        }
        x
    };
    let y = bn.forward(&x, Mode::Train).unwrap();
    for c in 0..3 {
        let vals: Vec<f64> = y
            .data()
            .chunks_exact(25)
            .enumerate()
            .filter(|(i, _)| i % 3 == c)
            .flat_map(|(_, p)| p.iter().map(|&v| v as f64))
            .collect();
        let m = vals.iter().sum::<f64>() / 100.0;
        let v = vals.iter().map(|x| (x - m).powi(2)).sum::<f64>() / 100.0;
        assert!(m.abs() < 1e-5, "channel {c} mean {m}");
        assert!((v - 1.0).abs() < 1e-3, "channel {c} var {v}");
        // running = 0.9 * init + 0.1 * batch (unbiased variance).
        let xs: Vec<f64> = x
            .data()
            .chunks_exact(25)
            .enumerate()
            .filter(|(i, _)| i % 3 == c)
            .flat_map(|(_, p)| p.iter().map(|&v| v as f64))
            .collect();
        let xm = xs.iter().sum::<f64>() / 100.0;
        let xv = xs.iter().map(|x| (x - xm).powi(2)).sum::<f64>() / 99.0;
        assert!((bn.running_mean().data()[c] as f64 - 0.1 * xm).abs() < 1e-5);
        assert!((bn.running_var().data()[c] as f64 - (0.9 + 0.1 * xv)).abs() < 1e-4);
    }
    assert_eq!(bn.params().len(), 4);
    assert_eq!(bn.params_mut().len(), 2);
    assert_eq!(bn.param_count(), 6);
    assert!(
        bn.forward(&rand_tensor(&mut rng, &[1, 3, 1, 1]), Mode::Train)
            .is_err()
    );
}

#[test]
fn fold_matches_conv_then_bn_in_eval() {
    let mut rng = Rng::seed_from_u64(8);
    for (p, with_bias) in [
        (
            Conv2dParams::new(3, 4, (3, 3)).with_padding(Padding::symmetric(1)),
            true,
        ),
        (Conv2dParams::new(4, 4, (3, 3)).with_groups(4), false),
    ] {
        let conv = if with_bias {
            Conv2d::new(p, &mut rng).unwrap()
        } else {
            Conv2d::from_parts(p, rand_tensor(&mut rng, &p.weight_dims()), None).unwrap()
        };
        let c = p.out_channels;
        let pos = |rng: &mut Rng| {
            Tensor::new(&[c], (0..c).map(|_| 0.5 + rng.uniform()).collect()).unwrap()
        };
        let bn = BatchNorm2d::from_parts(
            rand_tensor(&mut rng, &[c]),
            rand_tensor(&mut rng, &[c]),
            rand_tensor(&mut rng, &[c]),
            pos(&mut rng),
            1e-5,
            0.1,
        )
        .unwrap();
        let mut model = Model::new(
            "t",
            &[p.in_channels, 6, 6],
            vec![Box::new(conv), Box::new(bn), Box::new(ReLU::new())],
        );
        let x = rand_tensor(&mut rng, &[2, p.in_channels, 6, 6]);
        let before = model.forward(&x, Mode::Eval).unwrap();
        assert_eq!(fold_batchnorms(&mut model).unwrap(), 1);
        assert_eq!(model.layers.len(), 2);
        let after = model.forward(&x, Mode::Eval).unwrap();
        assert_close(after.data(), before.data(), 1e-5, 1e-5);
    }
    // A mismatched pair is an error and leaves the model unchanged.
    let conv = Conv2d::new(Conv2dParams::new(1, 2, (1, 1)), &mut rng).unwrap();
    let mut model = Model::new(
        "t",
        &[1, 2, 2],
        vec![Box::new(conv), Box::new(BatchNorm2d::new(3).unwrap())],
    );
    assert!(fold_batchnorms(&mut model).is_err());
    assert_eq!(model.layers.len(), 2);
}

#[test]
fn dropout_is_inverted_and_seeded() {
    let mut d = Dropout::new(0.5, 3).unwrap();
    let x = Tensor::full(Shape::new(&[100, 100]).unwrap(), 1.0);
    assert_eq!(d.forward(&x, Mode::Eval).unwrap(), x);
    let y = d.forward(&x, Mode::Train).unwrap();
    let kept = y.data().iter().filter(|&&v| v != 0.0).count();
    assert!((4500..5500).contains(&kept), "kept {kept}");
    assert!(y.data().iter().all(|&v| v == 0.0 || v == 2.0));
    let mean: f32 = y.data().iter().sum::<f32>() / 1e4;
    assert!((mean - 1.0).abs() < 0.05);
    let y2 = Dropout::new(0.5, 3)
        .unwrap()
        .forward(&x, Mode::Train)
        .unwrap();
    assert_eq!(y, y2);
    assert!(Dropout::new(1.0, 0).is_err());
    assert!(Dropout::new(-0.1, 0).is_err());
}

#[test]
fn set_buffer_reaches_batchnorm_only() {
    let mut bn = BatchNorm2d::new(2).unwrap();
    set_buffer(&mut bn, "running_mean", &[1.0, 2.0]).unwrap();
    assert_eq!(bn.running_mean().data(), &[1.0, 2.0]);
    assert!(set_buffer(&mut bn, "running_var", &[1.0]).is_err());
    assert!(set_buffer(&mut bn, "weight", &[1.0, 1.0]).is_err());
    assert!(set_buffer(&mut ReLU::new(), "running_mean", &[]).is_err());
}

/// Skipping the input gradient leaves the parameter gradients exactly as they were.
#[test]
fn skipping_the_input_gradient_keeps_parameter_gradients() {
    let mut rng = Rng::seed_from_u64(11);
    let layers: Vec<(Box<dyn Layer>, Vec<usize>)> = vec![
        (Box::new(Linear::new(7, 5, &mut rng).unwrap()), vec![3, 7]),
        (
            Box::new(Conv2d::new(Conv2dParams::new(2, 3, (3, 3)), &mut rng).unwrap()),
            vec![2, 2, 6, 6],
        ),
    ];
    for (mut layer, dims) in layers {
        let x = rand_tensor(&mut rng, &dims);
        let y = layer.forward(&x, Mode::Train).unwrap();
        let g = rand_tensor(&mut rng, y.dims());
        layer.zero_grad();
        let dx_full = layer.backward(&g).unwrap();
        let grads_full: Vec<Vec<f32>> = layer
            .params_mut()
            .iter()
            .map(|p| p.grad.data().to_vec())
            .collect();
        layer.zero_grad();
        layer.set_input_grad_needed(false);
        let dx_skipped = layer.backward(&g).unwrap();
        let grads_skipped: Vec<Vec<f32>> = layer
            .params_mut()
            .iter()
            .map(|p| p.grad.data().to_vec())
            .collect();
        assert_eq!(grads_full, grads_skipped, "{}", layer.kind());
        assert_eq!(dx_skipped.dims(), dx_full.dims());
        assert!(dx_skipped.data().iter().all(|&v| v == 0.0));
        assert!(dx_full.data().iter().any(|&v| v != 0.0));
    }
}
