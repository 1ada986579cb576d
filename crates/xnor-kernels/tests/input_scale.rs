//! XNOR-Net's input scale `K`: against a naive f32 reference (stride, asymmetric padding,
//! dilation), the packed layers with `K` against the float training graph ([`InputScaled`]
//! with the hook's binary weights), the training layer's backward (weight and bias gradients
//! by finite differences, input gradient straight through), and the records (round trip,
//! older records without the flag, corrupt flags).

use nn::layers::{Conv2d, Linear};
use nn::{Layer, LayerRegistry, Mode, Model, zoo};
use proptest::prelude::*;
use tensor_core::conv::{Conv2dParams, Padding};
use tensor_core::rng::Rng;
use tensor_core::testing::assert_close;
use tensor_core::{Shape, Tensor};
use xnor_kernels::{
    BinarizeHook, BinaryConv2d, BinaryLinear, BinaryMode, InputScaled, binarize_model_with,
    conv_input_scale, linear_input_scale, to_binary_layers,
};

fn random(dims: &[usize], rng: &mut Rng) -> Tensor {
    let n: usize = dims.iter().product();
    Tensor::new(dims, (0..n).map(|_| 2.0 * rng.uniform() - 1.0).collect()).unwrap()
}

fn registry() -> LayerRegistry {
    let mut r = LayerRegistry::nn();
    xnor_kernels::register(&mut r).unwrap();
    r
}

/// `K[n][oy][ox] = (1 / (kh kw)) sum over in-bounds taps of mean_c |x[n][c][iy][ix]|`, by
/// loops.
fn naive_conv_k(x: &Tensor, p: &Conv2dParams) -> Vec<f32> {
    let [n, c, h, w] = [x.dims()[0], x.dims()[1], x.dims()[2], x.dims()[3]];
    let [_, _, oh, ow] = p.output_dims(x.shape()).unwrap();
    let (kh, kw) = p.kernel;
    let mut k = Vec::new();
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut s = 0.0f64;
                for ki in 0..kh {
                    for kj in 0..kw {
                        let iy =
                            (oy * p.stride.0 + ki * p.dilation.0) as isize - p.padding.top as isize;
                        let ix = (ox * p.stride.1 + kj * p.dilation.1) as isize
                            - p.padding.left as isize;
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            continue;
                        }
                        let (iy, ix) = (iy as usize, ix as usize);
                        let a: f64 = (0..c)
                            .map(|ci| x.data()[((b * c + ci) * h + iy) * w + ix].abs() as f64)
                            .sum::<f64>()
                            / c as f64;
                        s += a;
                    }
                }
                k.push((s / (kh * kw) as f64) as f32);
            }
        }
    }
    k
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// `K` of a convolution equals the naive reference (to f32 rounding) over stride,
    /// asymmetric padding and dilation.
    #[test]
    fn conv_k_matches_the_naive_reference(
        (n, c, h, w) in (1usize..3, 1usize..70, 1usize..9, 1usize..9),
        (kh, kw) in (1usize..4, 1usize..4),
        (sy, sx, dy, dx) in (1usize..3, 1usize..3, 1usize..3, 1usize..3),
        (pt, pl, pb, pr) in (0usize..3, 0usize..3, 0usize..3, 0usize..3),
        seed in 0u64..1000,
    ) {
        let p = Conv2dParams {
            stride: (sy, sx),
            dilation: (dy, dx),
            padding: Padding { top: pt, left: pl, bottom: pb, right: pr },
            ..Conv2dParams::new(c, 3, (kh, kw))
        };
        let shape = Shape::new(&[n, c, h, w]).unwrap();
        prop_assume!(p.output_dims(&shape).is_ok());
        let x = random(&[n, c, h, w], &mut Rng::seed_from_u64(seed));
        let k = conv_input_scale(&x, &p).unwrap();
        let want = naive_conv_k(&x, &p);
        prop_assert_eq!(k.len(), want.len());
        for (a, b) in k.iter().zip(&want) {
            prop_assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{} vs {}", a, b);
        }
    }
}

#[test]
fn linear_k_is_the_mean_absolute_value_per_sample() {
    let x = Tensor::new(&[2, 4], vec![1.0, -3.0, 0.0, 2.0, -0.5, -0.5, 0.5, 0.5]).unwrap();
    assert_eq!(linear_input_scale(&x).unwrap(), [1.5, 0.5]);
    assert!(linear_input_scale(&Tensor::zeros_dims(&[2, 2, 2]).unwrap()).is_err());
    let p = Conv2dParams::new(3, 1, (3, 3));
    assert!(conv_input_scale(&Tensor::zeros_dims(&[1, 2, 5, 5]).unwrap(), &p).is_err());
}

/// `InputScaled` with `alpha_o sign(W_o)` swapped in (what `BinarizeHook` does), evaluated.
fn float_graph(layer: &mut InputScaled, x: &Tensor) -> Tensor {
    let mut params = layer.params_mut();
    let w = params.iter_mut().find(|p| p.name == "weight").unwrap();
    let rows = w.value.dims()[0];
    let depth = w.value.numel() / rows;
    let alpha = BinaryMode::Xnor.alpha(w.value.data(), rows, depth);
    for (row, a) in w.value.data_mut().chunks_exact_mut(depth).zip(alpha) {
        row.iter_mut()
            .for_each(|v| *v = if *v < 0.0 { -a } else { a });
    }
    drop(params);
    layer.forward(x, Mode::Eval).unwrap()
}

/// Tolerance of a float graph against the packed layer: the f32 conv sums `K` terms of
/// `±alpha` (rounding grows with the depth), the packed layer multiplies an exact integer.
fn close(packed: &Tensor, float: &Tensor) {
    let scale = float.data().iter().fold(0f32, |m, v| m.max(v.abs()));
    assert_close(packed.data(), float.data(), 1e-4, 1e-5 * (1.0 + scale));
}

#[test]
fn packed_conv_with_k_equals_the_float_training_graph() {
    let mut rng = Rng::seed_from_u64(11);
    for (c, o, k, stride, pad) in [(32, 16, 3, 1, 1), (3, 5, 5, 2, 2), (65, 4, 2, 1, 0)] {
        let p = Conv2dParams::new(c, o, (k, k))
            .with_stride((stride, stride))
            .with_padding(Padding::symmetric(pad));
        let conv = Conv2d::new(p, &mut rng).unwrap();
        let x = random(&[2, c, 9, 7], &mut rng);
        let packed = BinaryConv2d::from_conv2d(&conv, BinaryMode::Xnor)
            .unwrap()
            .with_input_scale(true)
            .unwrap();
        let y = packed.clone().forward(&x, Mode::Eval).unwrap();
        let float = float_graph(&mut InputScaled::from_conv2d(&conv).unwrap(), &x);
        close(&y, &float);
        // K changes the output: without it the layer computes something else.
        let plain = BinaryConv2d::from_conv2d(&conv, BinaryMode::Xnor).unwrap();
        let y0 = plain.clone().forward(&x, Mode::Eval).unwrap();
        assert!(
            y0.data()
                .iter()
                .zip(y.data())
                .any(|(a, b)| (a - b).abs() > 1e-3)
        );
    }
}

#[test]
fn packed_linear_with_k_equals_the_float_training_graph() {
    let mut rng = Rng::seed_from_u64(12);
    for (i, o) in [(1, 3), (63, 7), (129, 10), (800, 50)] {
        let l = Linear::new(i, o, &mut rng).unwrap();
        let x = random(&[5, i], &mut rng);
        let mut packed = BinaryLinear::from_linear(&l, BinaryMode::Xnor)
            .unwrap()
            .with_input_scale(true)
            .unwrap();
        let y = packed.forward(&x, Mode::Eval).unwrap();
        let float = float_graph(&mut InputScaled::from_linear(&l).unwrap(), &x);
        close(&y, &float);
    }
}

/// The whole model: trained form (InputScaled + hook) and packed form agree, and the packed
/// records rebuild through the registry to identical outputs.
#[test]
fn binarized_models_with_k_convert_to_what_training_evaluated() {
    for (spec, keep) in [("cnn:4-8", false), ("lenet5", true)] {
        let mut rng = Rng::seed_from_u64(5);
        let mut model = zoo::build_spec(spec, &mut rng).unwrap();
        let paths = binarize_model_with(&mut model, BinaryMode::Xnor, keep, true).unwrap();
        assert!(!paths.is_empty());
        assert!(model.layers.iter().all(|l| l.kind() != "sign"));
        for p in &paths {
            assert_eq!(model.layer(p).unwrap().kind(), "xnor_input_scaled");
        }
        let x = random(&[3, 1, 28, 28], &mut rng);
        let mut hook = BinarizeHook::new(BinaryMode::Xnor, paths.clone());
        nn::TrainHook::before_eval(&mut hook, &mut model).unwrap();
        let emulated = model.forward(&x, Mode::Eval).unwrap();
        nn::TrainHook::after_eval(&mut hook, &mut model).unwrap();
        // The training form's records round-trip too.
        let reg = registry();
        for l in &model.layers {
            let rec = l.record().unwrap();
            assert_eq!(reg.build(&rec).unwrap().record().unwrap(), rec);
        }
        to_binary_layers(&mut model, BinaryMode::Xnor, &paths).unwrap();
        let packed = model.forward(&x, Mode::Eval).unwrap();
        close(&packed, &emulated);
        let layers: Vec<Box<dyn Layer>> = model
            .layers
            .iter()
            .map(|l| reg.build(&l.record().unwrap()).unwrap())
            .collect();
        let mut again = Model::new("again", &model.input_shape, layers);
        assert_eq!(again.forward(&x, Mode::Eval).unwrap().data(), packed.data());
    }
    // K is XNOR-Net's: other modes refuse it.
    let mut m = zoo::build_spec("lenet5", &mut Rng::seed_from_u64(1)).unwrap();
    assert!(binarize_model_with(&mut m, BinaryMode::Bnn, true, true).is_err());
}

#[test]
fn records_keep_the_flag_and_older_records_load_without_it() {
    let mut rng = Rng::seed_from_u64(13);
    let p = Conv2dParams::new(3, 4, (3, 3)).with_padding(Padding::symmetric(1));
    let conv = Conv2d::new(p, &mut rng).unwrap();
    let layer = BinaryConv2d::from_conv2d(&conv, BinaryMode::Xnor)
        .unwrap()
        .with_input_scale(true)
        .unwrap();
    let rec = layer.record().unwrap();
    let back = BinaryConv2d::from_record(&rec).unwrap();
    assert!(back.input_scale());
    assert_eq!(back.record().unwrap(), rec);
    // A record written before the flag existed loads with K off.
    let mut old = rec.clone();
    old.attrs.remove("input_scale");
    assert!(!BinaryConv2d::from_record(&old).unwrap().input_scale());
    // A flag outside {0, 1}, or on a non-XNOR layer, is a corrupt record naming it.
    let mut bad = rec.clone();
    bad.attrs
        .insert("input_scale".into(), nn::AttrValue::Int(2));
    let e = BinaryConv2d::from_record(&bad).unwrap_err().to_string();
    assert!(e.contains("input_scale"), "{e}");
    let l = Linear::new(10, 2, &mut rng).unwrap();
    let mut bwn = BinaryLinear::from_linear(&l, BinaryMode::Bwn)
        .unwrap()
        .record()
        .unwrap();
    bwn.attrs
        .insert("input_scale".into(), nn::AttrValue::Int(1));
    let e = BinaryLinear::from_record(&bwn).unwrap_err().to_string();
    assert!(e.contains("input_scale"), "{e}");
    assert!(
        BinaryLinear::from_linear(&l, BinaryMode::Bnn)
            .unwrap()
            .with_input_scale(true)
            .is_err()
    );
    // The training form's record names a dense kind.
    let mut rec = InputScaled::from_linear(&l).unwrap().record().unwrap();
    rec.attrs
        .insert("inner".into(), nn::AttrValue::Str("relu".into()));
    assert!(InputScaled::from_record(&rec).is_err());
}

/// Backward with `K` constant: weight and bias gradients match finite differences of the
/// forward pass (linear in the weight for fixed signs), and the input gradient is the
/// straight-through one: zero where `|x| > 1`.
#[test]
fn training_layer_backward_treats_k_as_a_constant() {
    let mut rng = Rng::seed_from_u64(14);
    let p = Conv2dParams::new(3, 2, (3, 3))
        .with_stride((2, 2))
        .with_padding(Padding::symmetric(1));
    let conv = Conv2d::new(p, &mut rng).unwrap();
    let mut x = random(&[2, 3, 6, 5], &mut rng);
    x.data_mut()[0] = 1.5;
    x.data_mut()[7] = -2.0;
    let mut layer = InputScaled::from_conv2d(&conv).unwrap();
    let y = layer.forward(&x, Mode::Train).unwrap();
    // Loss = sum(g * y) with a fixed random g.
    let g = random(y.dims(), &mut rng);
    layer.zero_grad();
    let dx = layer.backward(&g).unwrap();
    let loss = |l: &mut InputScaled| -> f64 {
        let y = l.forward(&x, Mode::Eval).unwrap();
        y.data()
            .iter()
            .zip(g.data())
            .map(|(a, b)| (a * b) as f64)
            .sum()
    };
    let grads: Vec<(String, Vec<f32>)> = layer
        .params_mut()
        .iter()
        .map(|p| (p.name.to_string(), p.grad.data().to_vec()))
        .collect();
    assert_eq!(grads.len(), 2);
    for (pi, (name, grad)) in grads.iter().enumerate() {
        for i in [0, 3, grad.len() - 1]
            .into_iter()
            .filter(|&i| i < grad.len())
        {
            let h = 1e-2f32;
            let bump = |d: f32, l: &mut InputScaled| {
                l.params_mut()[pi].value.data_mut()[i] += d;
            };
            bump(h, &mut layer);
            let up = loss(&mut layer);
            bump(-2.0 * h, &mut layer);
            let down = loss(&mut layer);
            bump(h, &mut layer);
            let fd = ((up - down) / (2.0 * h as f64)) as f32;
            assert!(
                (fd - grad[i]).abs() <= 1e-2 * (1.0 + fd.abs()),
                "{name}[{i}]: finite difference {fd}, backward {}",
                grad[i]
            );
        }
    }
    assert_eq!(dx.data()[0], 0.0);
    assert_eq!(dx.data()[7], 0.0);
    assert!(dx.data().iter().any(|v| *v != 0.0));
}
