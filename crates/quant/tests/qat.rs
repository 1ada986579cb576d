//! Quantization-aware training: the fake quantizers against quantize -> dequantize, the
//! straight-through gradients against finite differences, and the converted integer model
//! against the fake-quantized float model it came from.

use nn::layers::{Linear, ReLU};
use nn::trainer::{StepContext, TrainConfig, Trainer};
use nn::{Layer, Mode, Model, TrainHook};
use quant::layers::QuantLinear;
use quant::qat::{EmaFakeQuantize, QatHook, convert_qat, prepare_qat};
use quant::{QuantConfig, QuantParams, QuantType, Symmetry, WeightScheme};
use tensor_core::Tensor;
use tensor_core::rng::Rng;

fn uniform(rng: &mut Rng, dims: &[usize], lo: f32, hi: f32) -> Tensor {
    let n: usize = dims.iter().product();
    Tensor::new(
        dims,
        (0..n).map(|_| lo + (hi - lo) * rng.uniform()).collect(),
    )
    .unwrap()
}

#[test]
fn weight_fake_quant_equals_quantize_dequantize_and_the_integer_layer() {
    let mut rng = Rng::seed_from_u64(1);
    let lin = Linear::new(23, 11, &mut rng).unwrap();
    let w = lin.params()[0].value.clone();
    for bits in 2..=8 {
        for per_channel in [false, true] {
            let fq = WeightScheme::uniform(bits, per_channel)
                .quantize(w.data(), 11)
                .unwrap();
            let t = QuantType::new(bits, true).unwrap();
            let p = QuantParams::from_data(
                t,
                Symmetry::Symmetric,
                per_channel.then_some(0),
                w.data(),
                &[11, 23],
            )
            .unwrap();
            let back = p
                .dequantize(&p.quantize(w.data(), &[11, 23]).unwrap(), &[11, 23])
                .unwrap();
            assert_eq!(fq.values(), back, "{bits} bits, per channel {per_channel}");
            let q = QuantLinear::from_linear(
                &lin,
                WeightScheme::uniform(bits, per_channel),
                QuantParams::from_range(QuantType::U7, Symmetry::Asymmetric, -1.0, 1.0).unwrap(),
                quant::layers::QuantOutput::Float,
                false,
            )
            .unwrap();
            assert_eq!(q.core().dequantized_weight(), fq.values(), "{bits} bits");
            // Min-max ranges clip no weight.
            assert!(fq.pass.iter().all(|&p| p));
            let levels: std::collections::BTreeSet<u32> =
                fq.values().iter().map(|v| v.to_bits()).collect();
            assert!(levels.len() <= (1 << bits) * if per_channel { 11 } else { 1 });
        }
    }
}

#[test]
fn activation_fake_quant_equals_quantize_dequantize_and_moves_by_ema() {
    let mut rng = Rng::seed_from_u64(2);
    let t = QuantType::U7;
    let mut fq = EmaFakeQuantize::new(t, Symmetry::Asymmetric, (-1.0, 2.0), 0.25).unwrap();
    let x = uniform(&mut rng, &[4, 50], -3.0, 5.0);
    // Eval: the range stays, the output is quantize -> dequantize with its parameters.
    let y = fq.forward(&x, Mode::Eval).unwrap();
    let p = QuantParams::from_range(t, Symmetry::Asymmetric, -1.0, 2.0).unwrap();
    let want = p
        .dequantize(&p.quantize(x.data(), &[200]).unwrap(), &[200])
        .unwrap();
    assert_eq!(y.data(), &want[..]);
    assert_eq!(fq.range(), (-1.0, 2.0));
    // Train: the range moves a quarter of the way to the batch's extremes first.
    let (lo, hi) = quant::min_max(x.data());
    let y = fq.forward(&x, Mode::Train).unwrap();
    let r = (-1.0 + 0.25 * (lo + 1.0), 2.0 + 0.25 * (hi - 2.0));
    assert_eq!(fq.range(), r);
    let p = QuantParams::from_range(t, Symmetry::Asymmetric, r.0, r.1).unwrap();
    assert_eq!(fq.params(), &p);
    let want = p.fake_quantize(x.data(), &[200]).unwrap();
    assert_eq!(y.data(), &want[..]);
}

#[test]
fn activation_ste_passes_inside_the_range_and_is_zero_outside() {
    let t = QuantType::U7;
    let mut fq = EmaFakeQuantize::new(t, Symmetry::Asymmetric, (0.0, 1.27), 1e-6).unwrap();
    let xs = [-0.5f32, -0.01, 0.0, 0.3, 1.0, 1.27, 1.28, 2.0, 10.0];
    let x = Tensor::new(&[1, xs.len()], xs.to_vec()).unwrap();
    fq.forward(&x, Mode::Train).unwrap();
    let (s, z) = (fq.params().scales()[0], fq.params().zero_points()[0]);
    let g = fq
        .backward(&Tensor::new(&[1, xs.len()], vec![3.0; xs.len()]).unwrap())
        .unwrap();
    for (&x, &g) in xs.iter().zip(g.data()) {
        let q = (x / s).round_ties_even() as i32 + z;
        let inside = (t.qmin()..=t.qmax()).contains(&q);
        assert_eq!(g, if inside { 3.0 } else { 0.0 }, "x = {x}");
        if !inside {
            // Saturated: the forward is flat there, so its finite difference is 0 as well.
            let f = |v: f32| {
                let mut e = fq.clone();
                let t = Tensor::new(&[1, 1], vec![v]).unwrap();
                e.forward(&t, Mode::Eval).unwrap().data()[0]
            };
            assert_eq!(f(x + 1e-3) - f(x - 1e-3), 0.0, "x = {x}");
        }
    }
}

fn mlp(rng: &mut Rng) -> Model {
    Model::new(
        "mlp",
        &[6],
        vec![
            Box::new(Linear::new(6, 5, rng).unwrap()),
            Box::new(ReLU::new()),
            Box::new(Linear::new(5, 3, rng).unwrap()),
        ],
    )
}

fn loss(model: &mut Model, x: &Tensor, labels: &[usize]) -> f64 {
    let y = model.forward(x, Mode::Eval).unwrap();
    f64::from(nn::loss::softmax_cross_entropy(&y, labels).unwrap().0)
}

/// The straight-through estimator: the latent weights receive the gradient of the loss at
/// the fake-quantized weights, which central differences of the float model with the
/// quantized weights in place confirm.
#[test]
fn weight_ste_gradient_is_the_gradient_at_the_quantized_point() {
    let mut rng = Rng::seed_from_u64(3);
    let mut model = mlp(&mut Rng::seed_from_u64(30));
    let x = uniform(&mut rng, &[8, 6], -1.0, 1.0);
    let labels = [0, 1, 2, 0, 1, 2, 0, 1];
    let paths = vec![nn::LayerPath::top(0), nn::LayerPath::top(2)];
    let mut hook = QatHook::new(paths.clone(), WeightScheme::uniform(4, true));
    let latent: Vec<Tensor> = [0, 2]
        .iter()
        .map(|&i| model.layers[i].params()[0].value.clone())
        .collect();
    let ctx = StepContext {
        step: 0,
        epoch: 0,
        step_in_epoch: 0,
        steps_per_epoch: 1,
        total_steps: 1,
        lr: 0.1,
        inputs: &x,
        labels: &labels,
    };
    model.zero_grad();
    hook.before_forward(&mut model, &ctx).unwrap();
    let y = model.forward(&x, Mode::Train).unwrap();
    let (_, g) = nn::loss::softmax_cross_entropy(&y, &labels).unwrap();
    model.backward(&g).unwrap();
    // The quantized point, for the finite differences.
    let mut quantized = mlp(&mut Rng::seed_from_u64(30));
    for i in [0, 2] {
        let w = model.layers[i].params()[0].value.clone();
        quantized.layers[i].params_mut()[0]
            .value
            .data_mut()
            .copy_from_slice(w.data());
    }
    hook.after_backward(&mut model, &ctx).unwrap();
    for (k, &i) in [0usize, 2].iter().enumerate() {
        let ps = model.layers[i].params_mut();
        assert_eq!(
            ps[0].value.data(),
            latent[k].data(),
            "latent weights restored"
        );
        let grad = ps[0].grad.data().to_vec();
        drop(ps);
        for e in [0, 3, 7, grad.len() - 1] {
            let h = 1e-3f32;
            let mut at = |d: f32| {
                let mut ps = quantized.layers[i].params_mut();
                ps[0].value.data_mut()[e] += d;
                drop(ps);
                let l = loss(&mut quantized, &x, &labels);
                let mut ps = quantized.layers[i].params_mut();
                ps[0].value.data_mut()[e] -= d;
                l
            };
            let fd = (at(h) - at(-h)) / (2.0 * f64::from(h));
            assert!(
                (fd - f64::from(grad[e])).abs() <= 1e-3 + 1e-2 * fd.abs(),
                "layer {i} weight {e}: STE {} vs finite difference {fd}",
                grad[e]
            );
        }
    }
}

/// A clipping range narrower than the weights (never the case with min-max ranges, so the
/// hook's mask is checked through the fake quantizer's own pass flags).
#[test]
fn weight_pass_flags_follow_the_unclamped_code() {
    let w = [0.1f32, -0.7, 0.7, 0.35, -0.05, 0.0];
    let fq = WeightScheme::uniform(3, false).quantize(&w, 1).unwrap();
    // 3-bit symmetric: scale 0.7 / 3; codes -3..=3 inside [-4, 3], all pass.
    assert!(fq.pass.iter().all(|&p| p));
    let scale = 0.7f32 / 3.0;
    for (&x, &v) in w.iter().zip(&fq.values()) {
        let q = ((x / scale).round_ties_even() as i32).clamp(-4, 3);
        assert_eq!(v, q as f32 * scale);
    }
}

fn images(rng: &mut Rng, n: usize) -> Tensor {
    uniform(rng, &[n, 1, 28, 28], 0.0, 1.0)
}

/// After training with fake quantization, the integer model computes what the
/// fake-quantized float model computes: logits within 2% of the logit range on every
/// element (bias rounding and the requantization multiplier round differently from f32),
/// and the same class for at least 15 of 16 images.
#[test]
fn converted_integer_model_matches_the_fake_quantized_model() {
    let mut rng = Rng::seed_from_u64(4);
    for (bits, pow2) in [(4, false), (8, false), (4, true)] {
        let mut model = nn::zoo::build("lenet5", &mut Rng::seed_from_u64(5)).unwrap();
        let config = QuantConfig {
            weight_bits: bits,
            per_channel: true,
            pow2,
            ..QuantConfig::default()
        };
        let calib = images(&mut rng, 16);
        let mut hook = prepare_qat(&mut model, &calib, &config).unwrap();
        assert_eq!(hook.paths().len(), 4);
        let fq_layers = model
            .layers
            .iter()
            .filter(|l| l.kind() == "ema_fake_quantize")
            .count();
        assert_eq!(fq_layers, 4);
        // A few training-mode passes move the activation ranges.
        for _ in 0..3 {
            model.forward(&images(&mut rng, 8), Mode::Train).unwrap();
        }
        model.clear_cache();
        let test = images(&mut rng, 16);
        hook.before_eval(&mut model).unwrap();
        let want = model.forward(&test, Mode::Eval).unwrap();
        hook.after_eval(&mut model).unwrap();
        let (mut int_model, reports) = convert_qat(model, &config).unwrap();
        assert_eq!(reports.len(), 4);
        assert!(
            reports
                .iter()
                .all(|r| r.pow2 == pow2 && r.weight_bits == bits)
        );
        if pow2 {
            for l in &int_model.layers {
                let core = if let Some(q) = l.as_any().downcast_ref::<QuantLinear>() {
                    q.core()
                } else if let Some(q) = l.as_any().downcast_ref::<quant::layers::QuantConv2d>() {
                    q.core()
                } else {
                    continue;
                };
                let w = core.dequantized_weight();
                assert!(w.iter().all(|&v| v == 0.0 || v.abs().log2().fract() == 0.0));
                let levels: std::collections::BTreeSet<u32> =
                    w.iter().map(|v| v.abs().to_bits()).collect();
                assert!(levels.len() <= 1 + 7 * core.weight_scales().len());
            }
        }
        assert!(
            int_model
                .layers
                .iter()
                .all(|l| l.kind() != "ema_fake_quantize")
        );
        let got = int_model.forward(&test, Mode::Eval).unwrap();
        let (lo, hi) = quant::min_max(want.data());
        let tol = 0.02 * (hi - lo);
        let worst = got
            .data()
            .iter()
            .zip(want.data())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst <= tol,
            "{bits} bits (pow2 {pow2}): worst logit gap {worst} > {tol}"
        );
        let argmax = |t: &Tensor, r: usize| {
            let row = &t.data()[r * 10..(r + 1) * 10];
            (0..10).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap()
        };
        let same = (0..16)
            .filter(|&r| argmax(&got, r) == argmax(&want, r))
            .count();
        assert!(
            same >= 15,
            "{bits} bits (pow2 {pow2}): {same} of 16 classes agree"
        );
        eprintln!(
            "{bits} bits (pow2 {pow2}): worst logit gap {worst:.5} (range {:.3})",
            hi - lo
        );
    }
}

/// A short run through the Trainer: the loss of the fake-quantized model goes down, latent
/// weights stay float (not on the quantization grid), and evaluation sees quantized weights.
#[test]
fn trainer_run_lowers_the_fake_quantized_loss() {
    let mut rng = Rng::seed_from_u64(6);
    let n = 256;
    let x = uniform(&mut rng, &[n, 6], -1.0, 1.0);
    let labels: Vec<u8> = (0..n)
        .map(|i| {
            let r = &x.data()[i * 6..i * 6 + 6];
            u8::from(r[0] + r[1] > 0.0) + u8::from(r[2] > 0.5)
        })
        .collect();
    let data = nn::Dataset::new(x.clone().reshape(&[n, 1, 1, 6]).unwrap(), labels, 3).unwrap();
    let mut model = mlp(&mut rng);
    let config = QuantConfig {
        weight_bits: 3,
        ..QuantConfig::default()
    };
    let hook = prepare_qat(&mut model, &x, &config).unwrap();
    let mut trainer = Trainer::new(TrainConfig {
        epochs: 1,
        batch_size: 16,
        eval_every_epoch: false,
        ..TrainConfig::default()
    })
    .with_hook(Box::new(hook));
    let before = trainer.evaluate(&mut model, &data).unwrap();
    trainer.fit(&mut model, &data, None, &mut |_| {}).unwrap();
    let after = trainer.evaluate(&mut model, &data).unwrap();
    assert!(
        after.loss < before.loss,
        "loss {} -> {}",
        before.loss,
        after.loss
    );
    let (mut q, _) = convert_qat(model, &config).unwrap();
    let acc = nn::metrics::evaluate(&mut q, &data, 64).unwrap().accuracy;
    assert!(
        (acc - after.accuracy).abs() <= 0.02,
        "integer {acc} vs fake-quantized {}",
        after.accuracy
    );
}
