//! The binary layers: the converted model computes what the straight-through training hook
//! evaluated, records round-trip through the registry, corrupt records are refused, and the
//! hook's straight-through estimator and clipping behave as BinaryConnect / BNN state.

use nn::layers::Linear;
use nn::trainer::StepContext;
use nn::{Layer, LayerPath, LayerRegistry, Mode, Model, PayloadData, TrainHook, zoo};
use tensor_core::rng::Rng;
use tensor_core::testing::assert_close;
use tensor_core::{Shape, Tensor};
use xnor_kernels::{BinarizeHook, BinaryLinear, BinaryMode, binarize_model, to_binary_layers};

const MODES: [BinaryMode; 3] = [BinaryMode::Bwn, BinaryMode::Xnor, BinaryMode::Bnn];

fn images(n: usize, rng: &mut Rng) -> Tensor {
    Tensor::new(
        &[n, 1, 28, 28],
        (0..n * 784).map(|_| rng.uniform()).collect(),
    )
    .unwrap()
}

fn registry() -> LayerRegistry {
    let mut r = LayerRegistry::nn();
    xnor_kernels::register(&mut r).unwrap();
    r
}

/// The hook-emulated binary model and the converted packed one agree (for every mode, the
/// CNN with every layer binarized and the MLP with first and last kept).
#[test]
fn converted_layers_compute_what_training_evaluated() {
    for (spec, keep) in [
        ("cnn:4-8", false),
        ("mlp:784-64-32-10", true),
        ("lenet5", true),
    ] {
        for mode in MODES {
            let mut rng = Rng::seed_from_u64(7);
            let mut model = zoo::build_spec(spec, &mut rng).unwrap();
            let paths = binarize_model(&mut model, mode, keep).unwrap();
            let x = images(3, &mut rng);
            let mut hook = BinarizeHook::new(mode, paths.clone());
            hook.before_eval(&mut model).unwrap();
            let emulated = model.forward(&x, Mode::Eval).unwrap();
            hook.after_eval(&mut model).unwrap();
            let n = to_binary_layers(&mut model, mode, &paths).unwrap();
            assert_eq!(n, paths.len());
            let packed = model.forward(&x, Mode::Eval).unwrap();
            let tol = 1e-4 * (1.0 + emulated.data().iter().fold(0f32, |m, v| m.max(v.abs())));
            assert_close(packed.data(), emulated.data(), 1e-4, tol);
            // Every record rebuilds through the registry and runs identically.
            let reg = registry();
            let layers: Vec<Box<dyn Layer>> = model
                .layers
                .iter()
                .map(|l| reg.build(&l.record().unwrap()).unwrap())
                .collect();
            let mut again = Model::new("again", &model.input_shape, layers);
            let y = again.forward(&x, Mode::Eval).unwrap();
            assert_eq!(y.data(), packed.data(), "{spec} {}", mode.name());
        }
    }
}

#[test]
fn xnor_mode_places_sign_before_each_binary_layer_and_drops_relus() {
    let mut rng = Rng::seed_from_u64(1);
    let mut m = zoo::build("cnn-teacher", &mut rng).unwrap();
    let paths = binarize_model(&mut m, BinaryMode::Xnor, true).unwrap();
    let kinds: Vec<&str> = m.layers.iter().map(|l| l.kind()).collect();
    assert_eq!(
        kinds,
        [
            "conv2d",
            "batchnorm2d",
            "sign",
            "conv2d",
            "batchnorm2d",
            "maxpool2d",
            "sign",
            "conv2d",
            "batchnorm2d",
            "sign",
            "conv2d",
            "batchnorm2d",
            "maxpool2d",
            "flatten",
            "sign",
            "linear",
            "relu",
            "dropout",
            "linear"
        ]
    );
    let at: Vec<usize> = paths.iter().map(LayerPath::index).collect();
    assert_eq!(at, [3, 7, 10, 15]);
    // BWN changes no layer; without keep_first_last every parametric layer is a target.
    let mut m = zoo::build("lenet5", &mut rng).unwrap();
    let paths = binarize_model(&mut m, BinaryMode::Bwn, false).unwrap();
    assert_eq!(m.layers.len(), 8);
    assert_eq!(paths.len(), 4);
}

#[test]
fn packed_files_are_small() {
    let mut rng = Rng::seed_from_u64(2);
    let l = Linear::new(800, 500, &mut rng).unwrap();
    let b = BinaryLinear::from_linear(&l, BinaryMode::Bwn).unwrap();
    // 500 rows of 13 words, 500 scales, 500 biases.
    assert_eq!(b.stored_bytes(), 500 * 13 * 8 + 500 * 4 + 500 * 4);
    assert!(
        b.stored_bytes() * 20 <= l.stored_bytes(),
        "{}",
        b.stored_bytes()
    );
    let rec = b.record().unwrap();
    let (_, words) = &rec.payloads[0];
    assert!(matches!(words.data(), PayloadData::U64(v) if v.len() == 6500));
    // alpha is the mean |W| of each filter.
    let w = l.weight().data();
    let mean0 = w[..800].iter().map(|v| v.abs()).sum::<f32>() / 800.0;
    assert!((b.alpha()[0] - mean0).abs() <= 1e-6 * mean0);
}

#[test]
fn corrupt_records_are_errors_naming_the_field() {
    let mut rng = Rng::seed_from_u64(3);
    let l = Linear::new(70, 3, &mut rng).unwrap();
    let rec = BinaryLinear::from_linear(&l, BinaryMode::Xnor)
        .unwrap()
        .record()
        .unwrap();
    let reg = registry();
    assert!(reg.build(&rec).is_ok());
    let with_words = |words: Vec<u64>, dims: &[usize]| {
        let mut r = rec.clone();
        r.payloads[0].1 = nn::Payload::u64(dims, words).unwrap();
        r
    };
    // A padding bit past K = 70 in row 1.
    let mut words = match rec.payloads[0].1.data() {
        PayloadData::U64(v) => v.clone(),
        _ => unreachable!(),
    };
    words[3] |= 1 << 20;
    let e = reg
        .build(&with_words(words, &[3, 2]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("weight_bits") && e.contains("padding"), "{e}");
    let e = reg
        .build(&with_words(vec![0; 3], &[3, 1]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("weight_bits"), "{e}");
    let mut r = rec.clone();
    r.attrs
        .insert("mode".into(), nn::AttrValue::Str("ternary".into()));
    assert!(reg.build(&r).unwrap_err().to_string().contains("mode"));
    let mut r = rec.clone();
    r.tensors[0].1 = Tensor::new(&[3], vec![1.0, f32::NAN, 1.0]).unwrap();
    assert!(reg.build(&r).unwrap_err().to_string().contains("alpha"));
    let mut r = rec.clone();
    r.attrs.insert("in_features".into(), nn::AttrValue::Int(-1));
    assert!(reg.build(&r).is_err());
    // Every flipped word gives a layer or a padding error, never a panic; every shorter
    // payload is an error.
    let words = match rec.payloads[0].1.data() {
        PayloadData::U64(v) => v.clone(),
        _ => unreachable!(),
    };
    for i in 0..words.len() {
        let mut w = words.clone();
        w[i] ^= 0xA5A5_A5A5_A5A5_A5A5;
        match reg.build(&with_words(w, &[3, 2])) {
            Ok(_) => assert_eq!(i % 2, 0, "word {i} holds padding bits"),
            Err(e) => assert!(e.to_string().contains("padding"), "{e}"),
        }
    }
    for len in 0..words.len() {
        let r = with_words(words[..len].to_vec(), &[len]);
        assert!(reg.build(&r).is_err(), "{len} words");
    }
}

#[test]
fn binary_conv_records_refuse_groups_and_wrong_depths() {
    let mut rng = Rng::seed_from_u64(4);
    let p = tensor_core::conv::Conv2dParams::new(3, 4, (3, 3));
    let c = nn::layers::Conv2d::new(p, &mut rng).unwrap();
    let b = xnor_kernels::BinaryConv2d::from_conv2d(&c, BinaryMode::Xnor).unwrap();
    let rec = b.record().unwrap();
    let reg = registry();
    let again = reg.build(&rec).unwrap();
    assert_eq!(again.record().unwrap(), rec);
    for (name, v) in [("groups", 3), ("in_channels", 70), ("out_channels", 5)] {
        let mut r = rec.clone();
        r.attrs.insert(name.into(), nn::AttrValue::Int(v));
        assert!(reg.build(&r).is_err(), "{name} = {v}");
    }
    // The dense twin holds alpha_o sign(W_o).
    let dense = b.to_conv2d().unwrap();
    let w = c.weight().data();
    let (a0, s0) = (b.alpha()[0], if w[0] < 0.0 { -1.0 } else { 1.0 });
    assert_eq!(dense.weight().data()[0], a0 * s0);
}

#[test]
fn hook_passes_gradients_straight_through_and_clips() {
    let w = Tensor::new(&[2, 3], vec![2.0, 0.5, -0.3, -1.5, 0.1, 0.0]).unwrap();
    let l = Linear::from_parts(w, None).unwrap();
    let mut model = Model::new("m", &[3], vec![Box::new(l)]);
    let path = LayerPath::top(0);
    let mut hook = BinarizeHook::new(BinaryMode::Xnor, vec![path.clone()]);
    let x = Tensor::zeros(Shape::new(&[1, 3]).unwrap());
    let ctx = StepContext {
        step: 0,
        epoch: 0,
        step_in_epoch: 0,
        steps_per_epoch: 1,
        total_steps: 1,
        lr: 0.1,
        inputs: &x,
        labels: &[0],
    };
    hook.before_forward(&mut model, &ctx).unwrap();
    let weight = |m: &Model| m.layer(&path).unwrap().params()[0].value.data().to_vec();
    let (a0, a1) = ((2.0 + 0.5 + 0.3) / 3.0, (1.5 + 0.1) / 3.0);
    assert_close(&weight(&model), &[a0, a0, -a0, -a1, a1, a1], 1e-6, 1e-6);
    {
        let layer = model.layer_mut(&path).unwrap();
        layer.params_mut()[0].grad.data_mut().fill(1.0);
    }
    hook.after_backward(&mut model, &ctx).unwrap();
    assert_eq!(weight(&model), [2.0, 0.5, -0.3, -1.5, 0.1, 0.0]);
    let g = model.layer_mut(&path).unwrap().params_mut()[0]
        .grad
        .data()
        .to_vec();
    assert_eq!(g, [0.0, 1.0, 1.0, 0.0, 1.0, 1.0]);
    hook.after_step(&mut model, &ctx).unwrap();
    assert_eq!(weight(&model), [1.0, 0.5, -0.3, -1.0, 0.1, 0.0]);
}
