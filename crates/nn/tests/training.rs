//! End-to-end tests of the training machinery: Trainer, hooks, optimizers, schedules,
//! evaluation and the native model file, on a tiny naive model defined here (independent of
//! the real layers) and on the zoo's lenet300 with the Fashion-MNIST fixture slice.

use std::any::Any;
use std::sync::{Arc, Mutex};

use nn::data::Augment;
use nn::metrics::evaluate;
use nn::optim::OptimizerConfig;
use nn::record::LayerRecord;
use nn::schedule::Schedule;
use nn::trainer::{EpochContext, Progress, StepContext, TrainConfig, TrainHook, Trainer};
use nn::{Dataset, Layer, Mode, Model, NnError, ParamMut, ParamRef, Result};
use tensor_core::rng::Rng;
use tensor_core::{Shape, Tensor};

/// A naive fully connected layer `y = x W^T + b` on `[B, in]` (any trailing shape is
/// flattened), written with plain loops as a reference.
#[derive(Debug)]
struct NaiveLinear {
    w: Tensor,
    b: Tensor,
    gw: Tensor,
    gb: Tensor,
    cache: Option<Tensor>,
}

impl NaiveLinear {
    fn new(inputs: usize, outputs: usize, rng: &mut Rng) -> Self {
        let bound = (6.0 / (inputs + outputs) as f32).sqrt();
        let w = (0..inputs * outputs)
            .map(|_| rng.uniform_range(-bound, bound))
            .collect();
        let w = Tensor::new(&[outputs, inputs], w).unwrap();
        let b = Tensor::zeros_dims(&[outputs]).unwrap();
        Self {
            gw: Tensor::zeros(w.shape().clone()),
            gb: Tensor::zeros(b.shape().clone()),
            w,
            b,
            cache: None,
        }
    }

    fn dims(&self) -> (usize, usize) {
        (self.w.dims()[0], self.w.dims()[1])
    }
}

impl Layer for NaiveLinear {
    fn kind(&self) -> &'static str {
        "naive_linear"
    }

    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        Ok(Shape::new(&[input.dims()[0], self.dims().0])?)
    }

    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let (o, i) = self.dims();
        let n = x.dims()[0];
        if x.numel() != n * i {
            return Err(NnError::BadInput {
                layer: "naive_linear".into(),
                input: x.shape().clone(),
                reason: format!("{i} features per sample"),
            });
        }
        let (w, b, xd) = (self.w.data(), self.b.data(), x.data());
        let mut y = vec![0.0; n * o];
        for s in 0..n {
            for r in 0..o {
                let mut acc = b[r];
                for c in 0..i {
                    acc += w[r * i + c] * xd[s * i + c];
                }
                y[s * o + r] = acc;
            }
        }
        if mode == Mode::Train {
            self.cache = Some(x.clone().reshape(&[n, i])?);
        }
        Ok(Tensor::new(&[n, o], y)?)
    }

    fn backward(&mut self, g: &Tensor) -> Result<Tensor> {
        let x = self.cache.take().ok_or(NnError::NoForwardCache {
            layer: "naive_linear".into(),
        })?;
        let (o, i) = self.dims();
        let n = x.dims()[0];
        let (gd, xd) = (g.data(), x.data());
        let mut gx = vec![0.0; n * i];
        let (gw, gb) = (self.gw.data_mut(), self.gb.data_mut());
        for s in 0..n {
            for r in 0..o {
                let go = gd[s * o + r];
                gb[r] += go;
                for c in 0..i {
                    gw[r * i + c] += go * xd[s * i + c];
                    gx[s * i + c] += go * self.w.data()[r * i + c];
                }
            }
        }
        Ok(Tensor::new(&[n, i], gx)?)
    }

    fn params(&self) -> Vec<ParamRef<'_>> {
        vec![
            ParamRef {
                name: "weight",
                value: &self.w,
            },
            ParamRef {
                name: "bias",
                value: &self.b,
            },
        ]
    }

    fn params_mut(&mut self) -> Vec<ParamMut<'_>> {
        vec![
            ParamMut {
                name: "weight",
                value: &mut self.w,
                grad: &mut self.gw,
            },
            ParamMut {
                name: "bias",
                value: &mut self.b,
                grad: &mut self.gb,
            },
        ]
    }

    fn param_count(&self) -> usize {
        self.w.numel() + self.b.numel()
    }

    fn macs(&self, input: &Shape) -> Result<u64> {
        Ok((input.dims()[0] * self.w.numel()) as u64)
    }

    fn record(&self) -> Result<LayerRecord> {
        Ok(LayerRecord::new("naive_linear")
            .with_tensor("weight", self.w.clone())
            .with_tensor("bias", self.b.clone()))
    }

    fn clear_cache(&mut self) {
        self.cache = None;
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// ReLU with a cached mask.
#[derive(Debug, Default)]
struct NaiveRelu {
    mask: Option<Vec<bool>>,
}

impl Layer for NaiveRelu {
    fn kind(&self) -> &'static str {
        "naive_relu"
    }
    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        Ok(input.clone())
    }
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        if mode == Mode::Train {
            self.mask = Some(x.data().iter().map(|&v| v > 0.0).collect());
        }
        let y = x.data().iter().map(|&v| v.max(0.0)).collect();
        Ok(Tensor::new(x.dims(), y)?)
    }
    fn backward(&mut self, g: &Tensor) -> Result<Tensor> {
        let mask = self.mask.take().ok_or(NnError::NoForwardCache {
            layer: "naive_relu".into(),
        })?;
        let gx = g
            .data()
            .iter()
            .zip(&mask)
            .map(|(&v, &m)| if m { v } else { 0.0 })
            .collect();
        Ok(Tensor::new(g.dims(), gx)?)
    }
    fn param_count(&self) -> usize {
        0
    }
    fn macs(&self, _input: &Shape) -> Result<u64> {
        Ok(0)
    }
    fn record(&self) -> Result<LayerRecord> {
        Ok(LayerRecord::new("naive_relu"))
    }
    fn clear_cache(&mut self) {
        self.mask = None;
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// 16 -> 12 -> 3 MLP on 4x4 single-channel images.
fn tiny_model(init_seed: u64) -> Model {
    let mut rng = Rng::seed_from_u64(init_seed);
    Model::new(
        "tiny-mlp",
        &[16],
        vec![
            Box::new(NaiveLinear::new(16, 12, &mut rng)),
            Box::new(NaiveRelu::default()),
            Box::new(NaiveLinear::new(12, 3, &mut rng)),
        ],
    )
}

/// Three noisy classes of 4x4 images: class `c` lights up a class-specific set of pixels.
fn clusters(n: usize, seed: u64) -> Dataset {
    let mut rng = Rng::seed_from_u64(seed);
    let mut images = Vec::with_capacity(n * 16);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let c = rng.below(3);
        for p in 0..16 {
            let on = match c {
                0 => p < 6,
                1 => (5..11).contains(&p),
                _ => p >= 10,
            };
            let v = if on { 0.8 } else { 0.2 } + 0.25 * rng.normal();
            images.push(v.clamp(0.0, 1.0));
        }
        labels.push(c as u8);
    }
    Dataset::new(Tensor::new(&[n, 1, 4, 4], images).unwrap(), labels, 3).unwrap()
}

fn weight_bits(model: &Model) -> Vec<u32> {
    model
        .layers
        .iter()
        .flat_map(|l| l.params().into_iter().map(|p| p.value.clone()))
        .flat_map(|t| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>())
        .collect()
}

fn config(epochs: usize, seed: u64) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 16,
        optimizer: OptimizerConfig::sgd(0.1, 0.9),
        seed,
        ..TrainConfig::default()
    }
}

#[test]
fn trainer_learns_separable_clusters_and_reports_progress() {
    let (train, test) = (clusters(320, 1), clusters(160, 2));
    let mut model = tiny_model(7);
    let before = evaluate(&mut model, &test, 64).unwrap();
    let mut steps_seen = 0;
    let mut epoch_ends = Vec::new();
    let report = Trainer::new(config(4, 3))
        .fit(&mut model, &train, Some(&test), &mut |p: &Progress| {
            if p.epoch_done {
                epoch_ends.push((p.epoch, p.test_accuracy));
            } else {
                steps_seen += 1;
                assert_eq!(p.steps_per_epoch, 20);
                assert!(p.loss.is_finite() && p.lr == 0.1);
            }
        })
        .unwrap();
    assert_eq!(steps_seen, 80);
    assert_eq!(report.steps, 80);
    assert_eq!(report.epochs.len(), 4);
    assert_eq!(epoch_ends.len(), 4);
    assert!(epoch_ends.iter().all(|(_, a)| a.is_some()));
    let acc = report.final_test_accuracy().unwrap();
    assert!(
        acc > 0.95,
        "test accuracy {acc} (before training {})",
        before.accuracy
    );
    assert!(report.epochs[3].train_loss < report.epochs[0].train_loss);
    assert!(report.epochs[3].train_accuracy > 0.9);
    let after = evaluate(&mut model, &test, 64).unwrap();
    assert_eq!(after.accuracy, acc);
    assert_eq!(after.confusion.iter().flatten().sum::<u64>(), 160);
}

#[test]
fn same_seed_gives_bit_identical_weights() {
    let train = clusters(100, 4);
    let run = |seed: u64, augment: Option<Augment>| {
        let mut model = tiny_model(11);
        let cfg = TrainConfig {
            augment,
            schedule: Schedule::Cosine {
                warmup_steps: 3,
                min_lr: 0.001,
            },
            optimizer: OptimizerConfig::adam(0.01),
            batch_size: 7,
            ..config(2, seed)
        };
        Trainer::new(cfg)
            .fit(&mut model, &train, None, &mut |_| {})
            .unwrap();
        weight_bits(&model)
    };
    let aug = Some(Augment {
        flip: true,
        max_shift: 1,
    });
    assert_eq!(run(5, None), run(5, None));
    assert_eq!(run(5, aug), run(5, aug));
    assert_ne!(run(5, None), run(6, None));
    assert_ne!(run(5, None), run(5, aug));
}

/// Records the order of hook calls.
struct Recorder(Arc<Mutex<Vec<String>>>);

impl TrainHook for Recorder {
    fn before_forward(&mut self, _m: &mut Model, ctx: &StepContext<'_>) -> Result<()> {
        let step = ctx.step;
        assert_eq!(
            ctx.step,
            ctx.epoch * ctx.steps_per_epoch + ctx.step_in_epoch
        );
        assert_eq!(ctx.inputs.dims()[0], ctx.labels.len());
        assert!(ctx.lr > 0.0 && ctx.total_steps == 2 * ctx.steps_per_epoch);
        self.0
            .lock()
            .unwrap()
            .push(format!("before_forward {step}"));
        Ok(())
    }
    fn after_backward(&mut self, m: &mut Model, ctx: &StepContext<'_>) -> Result<()> {
        let step = ctx.step;
        // Gradients exist here (backward ran).
        let g: f32 = m.layers[0].params_mut()[0]
            .grad
            .data()
            .iter()
            .map(|v| v.abs())
            .sum();
        assert!(g > 0.0);
        self.0
            .lock()
            .unwrap()
            .push(format!("after_backward {step}"));
        Ok(())
    }
    fn after_step(&mut self, _m: &mut Model, ctx: &StepContext<'_>) -> Result<()> {
        self.0
            .lock()
            .unwrap()
            .push(format!("after_step {}", ctx.step));
        Ok(())
    }
    fn on_epoch_end(&mut self, _m: &mut Model, ctx: &EpochContext) -> Result<()> {
        self.0
            .lock()
            .unwrap()
            .push(format!("epoch_end {}", ctx.epoch));
        Ok(())
    }
    fn before_eval(&mut self, _m: &mut Model) -> Result<()> {
        self.0.lock().unwrap().push("before_eval".into());
        Ok(())
    }
    fn after_eval(&mut self, _m: &mut Model) -> Result<()> {
        self.0.lock().unwrap().push("after_eval".into());
        Ok(())
    }
}

#[test]
fn hooks_run_in_order_around_every_step() {
    let train = clusters(10, 5);
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut model = tiny_model(1);
    let cfg = TrainConfig {
        batch_size: 4,
        ..config(2, 0)
    };
    let test = clusters(8, 6);
    let mut trainer = Trainer::new(cfg).with_hook(Box::new(Recorder(log.clone())));
    trainer
        .fit(&mut model, &train, Some(&test), &mut |_| {})
        .unwrap();
    trainer.evaluate(&mut model, &test).unwrap();
    // The hook is read back by its type after training.
    assert!(trainer.hook::<Recorder>().is_some());
    assert!(trainer.hook::<Mask>().is_none());
    let log = log.lock().unwrap();
    let mut want = Vec::new();
    for epoch in 0..2 {
        for s in 0..3 {
            let step = epoch * 3 + s;
            want.push(format!("before_forward {step}"));
            want.push(format!("after_backward {step}"));
            want.push(format!("after_step {step}"));
        }
        want.push(format!("epoch_end {epoch}"));
        // Every evaluation, during training and after, runs through the hooks.
        want.push("before_eval".into());
        want.push("after_eval".into());
    }
    want.push("before_eval".into());
    want.push("after_eval".into());
    assert_eq!(*log, want);
}

/// A hook that, like a quantizer, changes the weights the model is evaluated with: zeroes
/// every parameter in `before_eval` and restores them in `after_eval`.
struct ZeroForEval(Vec<Tensor>);

impl TrainHook for ZeroForEval {
    fn before_eval(&mut self, m: &mut Model) -> Result<()> {
        self.0.clear();
        for (_, p) in m.named_params_mut() {
            self.0.push(p.value.clone());
            p.value.fill_zero();
        }
        Ok(())
    }
    fn after_eval(&mut self, m: &mut Model) -> Result<()> {
        for ((_, p), saved) in m.named_params_mut().into_iter().zip(self.0.drain(..)) {
            *p.value = saved;
        }
        Ok(())
    }
}

#[test]
fn evaluation_measures_the_model_as_the_hooks_make_it() {
    let (train, test) = (clusters(320, 6), clusters(160, 7));
    let mut model = tiny_model(3);
    let plain = Trainer::new(config(3, 1))
        .fit(&mut model, &train, Some(&test), &mut |_| {})
        .unwrap()
        .final_test_accuracy()
        .unwrap();
    assert!(plain > 0.9, "{plain}");
    let before = model
        .named_params()
        .iter()
        .map(|(_, p)| p.value.clone())
        .collect::<Vec<_>>();
    let mut hooked = Trainer::new(config(1, 1)).with_hook(Box::new(ZeroForEval(Vec::new())));
    let zeroed = hooked.evaluate(&mut model, &test).unwrap().accuracy;
    // All-zero weights give constant logits: one class, about 1/classes of the samples.
    assert!(zeroed < 0.5, "{zeroed}");
    let after = model
        .named_params()
        .iter()
        .map(|(_, p)| p.value.clone())
        .collect::<Vec<_>>();
    assert_eq!(before, after, "after_eval restored the weights");
}

/// A pruning-style hook: zeroes the gradients of masked weights after backward and re-zeroes
/// the weights after the step (momentum and weight decay would otherwise move them).
struct Mask {
    layer: usize,
    keep: Vec<bool>,
}

impl Mask {
    fn apply(&self, m: &mut Model, grads: bool) {
        let mut params = m.layers[self.layer].params_mut();
        let p = &mut params[0];
        let t = if grads { &mut *p.grad } else { &mut *p.value };
        for (v, &k) in t.data_mut().iter_mut().zip(&self.keep) {
            if !k {
                *v = 0.0;
            }
        }
    }
}

impl TrainHook for Mask {
    fn after_backward(&mut self, m: &mut Model, _ctx: &StepContext<'_>) -> Result<()> {
        self.apply(m, true);
        Ok(())
    }
    fn after_step(&mut self, m: &mut Model, _ctx: &StepContext<'_>) -> Result<()> {
        self.apply(m, false);
        Ok(())
    }
}

#[test]
fn masking_hook_keeps_pruned_weights_at_zero_while_training() {
    let (train, test) = (clusters(320, 6), clusters(160, 7));
    let mut model = tiny_model(3);
    let keep: Vec<bool> = (0..16 * 12).map(|i| i % 2 == 0).collect();
    Mask {
        layer: 0,
        keep: keep.clone(),
    }
    .apply(&mut model, false);
    let cfg = TrainConfig {
        optimizer: OptimizerConfig::Sgd {
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 1e-3,
        },
        ..config(4, 1)
    };
    let report = Trainer::new(cfg)
        .with_hook(Box::new(Mask {
            layer: 0,
            keep: keep.clone(),
        }))
        .fit(&mut model, &train, Some(&test), &mut |_| {})
        .unwrap();
    let w = model.layers[0].params()[0].value.clone();
    for (i, (&v, &k)) in w.data().iter().zip(&keep).enumerate() {
        if !k {
            assert_eq!(v, 0.0, "pruned weight {i} moved");
        }
    }
    assert!(report.final_test_accuracy().unwrap() > 0.9);
}

/// Writes NaN into the first weight of the output layer after step `at` (a NaN before the
/// naive ReLU would be clipped away by `f32::max`).
struct Poison {
    at: usize,
}

impl TrainHook for Poison {
    fn after_step(&mut self, m: &mut Model, ctx: &StepContext<'_>) -> Result<()> {
        if ctx.step == self.at {
            m.layers[2].params_mut()[0].value.data_mut()[0] = f32::NAN;
        }
        Ok(())
    }
}

#[test]
fn non_finite_loss_is_an_error_naming_epoch_and_step() {
    let train = clusters(32, 8);
    let mut model = tiny_model(2);
    let cfg = TrainConfig {
        batch_size: 8,
        ..config(3, 0)
    };
    // 4 steps per epoch; poisoned after global step 4, so global step 5 (epoch 2, step 2)
    // sees a NaN loss.
    let err = Trainer::new(cfg)
        .with_hook(Box::new(Poison { at: 4 }))
        .fit(&mut model, &train, None, &mut |_| {})
        .unwrap_err();
    assert!(
        matches!(
            err,
            NnError::NonFiniteLoss {
                epoch: 2,
                step: 2,
                ..
            }
        ),
        "{err}"
    );
    let err = err.to_string();
    assert!(err.contains("NaN"), "{err}");
    assert!(err.contains("epoch 2 of 3, step 2 of 4"), "{err}");
}

#[test]
fn schedules_drive_the_learning_rate_per_step() {
    let train = clusters(40, 9);
    let mut model = tiny_model(4);
    let cfg = TrainConfig {
        batch_size: 10,
        schedule: Schedule::Step {
            gamma: 0.5,
            every_epochs: 1,
        },
        ..config(3, 0)
    };
    let mut lrs = Vec::new();
    let report = Trainer::new(cfg)
        .fit(&mut model, &train, None, &mut |p| {
            if !p.epoch_done {
                lrs.push(p.lr);
            }
        })
        .unwrap();
    let want: Vec<f32> = [0.1f32, 0.05, 0.025]
        .iter()
        .flat_map(|&lr| [lr; 4])
        .collect();
    assert_eq!(lrs, want);
    assert_eq!(report.epochs[2].lr, 0.025);
    assert!(report.epochs.iter().all(|e| e.test_accuracy.is_none()));
}

#[test]
fn bad_arguments_are_errors() {
    let train = clusters(10, 10);
    let mut model = tiny_model(5);
    let empty = train.take(0).unwrap();
    assert!(
        Trainer::new(config(1, 0))
            .fit(&mut model, &empty, None, &mut |_| {})
            .is_err()
    );
    let other = Dataset::new(Tensor::zeros_dims(&[1, 1, 4, 4]).unwrap(), vec![0u8], 5).unwrap();
    assert!(
        Trainer::new(config(1, 0))
            .fit(&mut model, &train, Some(&other), &mut |_| {})
            .is_err()
    );
    let cfg = TrainConfig {
        batch_size: 11,
        drop_last: true,
        ..config(1, 0)
    };
    assert!(
        Trainer::new(cfg)
            .fit(&mut model, &train, None, &mut |_| {})
            .is_err()
    );
    // A model whose input does not fit the samples.
    let mut rng = Rng::seed_from_u64(0);
    let mut wrong = Model::new(
        "wrong",
        &[9],
        vec![Box::new(NaiveLinear::new(9, 3, &mut rng))],
    );
    assert!(
        Trainer::new(config(1, 0))
            .fit(&mut wrong, &train, None, &mut |_| {})
            .is_err()
    );
}

/// lenet300 trained for one epoch on the Fashion-MNIST fixture slice (10,000 training
/// images) reaches more than 70% test accuracy, and survives the native model file.
#[test]
fn lenet300_learns_the_fashion_mnist_slice_in_one_epoch() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/fashion-mnist");
    let (train, test) = nn::data::load_fashion_mnist(&dir).unwrap();
    let test = test.take(2000).unwrap();
    let mut rng = Rng::seed_from_u64(0);
    let mut model = nn::zoo::build("lenet300", &mut rng).unwrap();
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 64,
        optimizer: OptimizerConfig::sgd(0.05, 0.9),
        seed: 1,
        ..TrainConfig::default()
    };
    let report = Trainer::new(cfg)
        .fit(&mut model, &train, Some(&test), &mut |_| {})
        .unwrap();
    let acc = report.final_test_accuracy().unwrap();
    eprintln!(
        "lenet300, 1 epoch on {} images: test accuracy {:.2}% on {} images, {:.2} s",
        train.len(),
        100.0 * acc,
        test.len(),
        report.total_seconds
    );
    assert!(acc > 0.70, "test accuracy {acc}");

    let path =
        std::env::temp_dir().join(format!("slimnet-lenet300-{}.slimnet", std::process::id()));
    nn::io::native::save(&model, &path).unwrap();
    let mut back = nn::io::native::load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let again = evaluate(&mut back, &test, 256).unwrap();
    assert_eq!(again.accuracy, acc);
    assert_eq!(weight_bits(&back), weight_bits(&model));
}

/// Same seed, same bits with the real (multi-threaded) layers too.
#[test]
fn lenet300_training_is_bit_reproducible() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/fashion-mnist");
    let train = nn::data::idx::load_split(&dir, nn::data::Split::Train)
        .unwrap()
        .take(640)
        .unwrap();
    let run = || {
        let mut model = nn::zoo::build("lenet300", &mut Rng::seed_from_u64(3)).unwrap();
        let cfg = TrainConfig {
            epochs: 1,
            batch_size: 64,
            augment: Some(Augment::default()),
            ..TrainConfig::default()
        };
        Trainer::new(cfg)
            .fit(&mut model, &train, None, &mut |_| {})
            .unwrap();
        weight_bits(&model)
    };
    assert_eq!(run(), run());
}

/// A residual model whose two branches hold layers of different shapes (the case that used to
/// fail, when optimizer state was keyed by top-level index and parameter name).
fn residual_model(seed: u64) -> Model {
    use nn::layers::{Linear, Merge, Parallel, ReLU};
    let mut rng = Rng::seed_from_u64(seed);
    let wide: Vec<Box<dyn Layer>> = vec![
        Box::new(Linear::new(6, 10, &mut rng).unwrap()),
        Box::new(ReLU::new()),
        Box::new(Linear::new(10, 6, &mut rng).unwrap()),
    ];
    let narrow: Vec<Box<dyn Layer>> = vec![Box::new(Linear::new(6, 6, &mut rng).unwrap())];
    Model::new(
        "residual",
        &[16],
        vec![
            Box::new(Linear::new(16, 6, &mut rng).unwrap()),
            Box::new(Parallel::new(vec![wide, narrow, vec![]], Merge::Add).unwrap()),
            Box::new(ReLU::new()),
            Box::new(Linear::new(6, 3, &mut rng).unwrap()),
        ],
    )
}

/// Optimizer state of the reference: one independent slot per parameter, by position in the
/// model walk.
#[derive(Default)]
struct Reference {
    buf: Vec<Vec<f32>>,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    t: Vec<i32>,
}

#[test]
fn residual_training_updates_every_parameter_like_a_per_parameter_reference() {
    let data = clusters(48, 9);
    for adam in [false, true] {
        let mut model = residual_model(3);
        let mut twin =
            nn::io::native::from_bytes(&nn::io::native::to_bytes(&model).unwrap(), "twin").unwrap();
        let (lr, mu, b1, b2, eps) = (0.05f32, 0.9f32, 0.9f32, 0.999f32, 1e-8f32);
        let cfg = if adam {
            OptimizerConfig::adam(lr)
        } else {
            OptimizerConfig::sgd(lr, mu)
        };
        let mut opt = cfg.build().unwrap();
        let mut reference = Reference::default();
        let paths: Vec<String> = model
            .named_params()
            .iter()
            .map(|(p, q)| format!("{p}.{}", q.name))
            .collect();
        assert!(
            paths.contains(&"1/0/2.weight".to_string())
                && paths.contains(&"1/1/0.weight".to_string())
        );
        for step in 0..6 {
            let idx: Vec<usize> = (0..8).map(|i| (step * 8 + i) % data.len()).collect();
            let (x, labels) = data.batch(&idx).unwrap();
            let x = nn::metrics::to_model_input(&model, x).unwrap();
            for m in [&mut model, &mut twin] {
                m.zero_grad();
                let logits = m.forward(&x, Mode::Train).unwrap();
                let (_, g) = nn::loss::softmax_cross_entropy(&logits, &labels).unwrap();
                m.backward(&g).unwrap();
            }
            // On step 3 the narrow branch gets no gradient: its weights must then move only
            // by their own momentum, never by another parameter's.
            if step == 3 {
                for m in [&mut model, &mut twin] {
                    for (p, q) in m.named_params_mut() {
                        if p.to_string() == "1/1/0" {
                            q.grad.fill_zero();
                        }
                    }
                }
            }
            opt.step(&mut model).unwrap();
            for (k, (_, p)) in twin.named_params_mut().into_iter().enumerate() {
                if reference.buf.len() <= k {
                    let n = p.value.numel();
                    reference.buf.push(vec![0.0; n]);
                    reference.m.push(vec![0.0; n]);
                    reference.v.push(vec![0.0; n]);
                    reference.t.push(0);
                }
                reference.t[k] += 1;
                let t = reference.t[k];
                for i in 0..p.value.numel() {
                    let g = p.grad.data()[i];
                    let w = &mut p.value.data_mut()[i];
                    if adam {
                        let m = &mut reference.m[k][i];
                        let v = &mut reference.v[k][i];
                        *m = b1 * *m + (1.0 - b1) * g;
                        *v = b2 * *v + (1.0 - b2) * g * g;
                        let denom = v.sqrt() / (1.0 - b2.powi(t)).sqrt() + eps;
                        *w -= (lr / (1.0 - b1.powi(t))) * *m / denom;
                    } else {
                        let b = &mut reference.buf[k][i];
                        *b = if t == 1 { g } else { mu * *b + g };
                        *w -= lr * *b;
                    }
                }
            }
            let got = model.named_params();
            let want = twin.named_params();
            for ((path, a), (_, b)) in got.iter().zip(&want) {
                assert_eq!(
                    a.value.data(),
                    b.value.data(),
                    "{} step {step}: {path}.{} differs from the reference",
                    if adam { "adam" } else { "sgd" },
                    a.name
                );
            }
        }
    }
}

/// A stop in the middle of an epoch, then a resume from the saved state into a model rebuilt
/// from the saved weights, gives the weights of a run that never stopped, bit for bit: SGD
/// momentum buffers and a dropout layer's mask stream included.
#[test]
fn a_stopped_run_resumes_bit_identically() {
    use nn::layers::{Dropout, Linear, ReLU};
    use nn::trainer::{FitControl, FitOutcome};
    let build = || {
        let mut rng = Rng::seed_from_u64(4);
        Model::new(
            "tiny-dropout",
            &[16],
            vec![
                Box::new(Linear::new(16, 12, &mut rng).unwrap()),
                Box::new(ReLU::default()),
                Box::new(Dropout::new(0.3, 11).unwrap()),
                Box::new(Linear::new(12, 3, &mut rng).unwrap()),
            ],
        )
    };
    let data = clusters(90, 2);
    let cfg = TrainConfig {
        epochs: 3,
        batch_size: 8,
        optimizer: nn::optim::OptimizerConfig::sgd(0.05, 0.9),
        seed: 6,
        eval_every_epoch: false,
        ..TrainConfig::default()
    };
    let mut straight = build();
    Trainer::new(cfg.clone())
        .fit(&mut straight, &data, None, &mut |_| {})
        .unwrap();

    let mut first = build();
    let steps = std::cell::Cell::new(0);
    let mut control = FitControl {
        // 12 steps per epoch: stop before step 5 of the second epoch.
        should_stop: Box::new(|| {
            steps.set(steps.get() + 1);
            steps.get() > 16
        }),
        ..FitControl::default()
    };
    let outcome = Trainer::new(cfg.clone())
        .fit_controlled(&mut first, &data, None, &mut |_| {}, &mut control)
        .unwrap();
    let FitOutcome::Stopped { state, .. } = outcome else {
        panic!("the run did not stop");
    };
    assert_eq!((state.epoch, state.step_in_epoch), (1, 4));
    drop(control);
    let bytes = nn::io::native::to_bytes(&first).unwrap();
    let mut resumed = nn::io::native::from_bytes(&bytes, "resumed").unwrap();
    let mut control = FitControl {
        resume: Some(*state),
        ..FitControl::default()
    };
    let outcome = Trainer::new(cfg)
        .fit_controlled(&mut resumed, &data, None, &mut |_| {}, &mut control)
        .unwrap();
    assert!(matches!(outcome, FitOutcome::Finished(_)));
    assert_eq!(weight_bits(&straight), weight_bits(&resumed));
}

/// A hook with a state of its own: a generator drawn once per step, whose draw scales the
/// gradients (so the weights depend on its position), saved and restored through
/// `TrainHook::state` / `restore_state`.
struct NoisyHook(Rng);

impl TrainHook for NoisyHook {
    fn after_backward(&mut self, model: &mut Model, _ctx: &StepContext<'_>) -> Result<()> {
        let scale = 0.5 + self.0.uniform();
        for layer in model.layers.iter_mut() {
            for p in layer.params_mut() {
                p.grad.data_mut().iter_mut().for_each(|g| *g *= scale);
            }
        }
        Ok(())
    }

    fn state(&self) -> Result<Option<Vec<u8>>> {
        Ok(Some(
            self.0
                .state()
                .iter()
                .flat_map(|w| w.to_le_bytes())
                .collect(),
        ))
    }

    fn restore_state(&mut self, bytes: &[u8]) -> Result<()> {
        let words: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let state: [u64; 4] = words
            .try_into()
            .map_err(|_| NnError::Config("NoisyHook: bad state".into()))?;
        self.0 = Rng::from_state(state).ok_or_else(|| NnError::Config("zero state".into()))?;
        Ok(())
    }
}

/// An objective counting its calls: cross-entropy scaled by a factor that moves with the
/// count (as an annealed distillation's weights do), saved through `Objective::state`.
struct CountingObjective(u64);

impl nn::trainer::Objective for CountingObjective {
    fn loss(
        &mut self,
        logits: &Tensor,
        _inputs: &Tensor,
        labels: &[usize],
    ) -> Result<(f32, Tensor)> {
        let (loss, mut grad) = nn::loss::softmax_cross_entropy(logits, labels)?;
        let f = 1.0 / (1.0 + self.0 as f32 * 0.1);
        self.0 += 1;
        grad.data_mut().iter_mut().for_each(|g| *g *= f);
        Ok((loss * f, grad))
    }

    fn state(&self) -> Result<Option<Vec<u8>>> {
        Ok(Some(self.0.to_le_bytes().to_vec()))
    }

    fn restore_state(&mut self, bytes: &[u8]) -> Result<()> {
        self.0 = u64::from_le_bytes(
            bytes
                .try_into()
                .map_err(|_| NnError::Config("CountingObjective: bad state".into()))?,
        );
        Ok(())
    }
}

/// A stopped run with a stateful hook and objective resumes bit-identically once their
/// states are restored; without them (a hook-less checkpoint, or a hook count that differs)
/// the resume is refused rather than silently different.
#[test]
fn hook_and_objective_states_travel_with_the_checkpoint() {
    use nn::layers::{Linear, ReLU};
    use nn::trainer::{FitControl, FitOutcome};
    let build = || {
        let mut rng = Rng::seed_from_u64(8);
        Model::new(
            "tiny",
            &[16],
            vec![
                Box::new(Linear::new(16, 10, &mut rng).unwrap()),
                Box::new(ReLU::default()),
                Box::new(Linear::new(10, 3, &mut rng).unwrap()),
            ],
        )
    };
    let trainer = |cfg: &TrainConfig| {
        Trainer::new(cfg.clone())
            .with_hook(Box::new(NoisyHook(Rng::seed_from_u64(77))))
            .with_objective(Box::new(CountingObjective(0)))
    };
    let data = clusters(90, 3);
    let cfg = TrainConfig {
        epochs: 2,
        batch_size: 8,
        optimizer: OptimizerConfig::adam(0.01),
        seed: 2,
        eval_every_epoch: false,
        ..TrainConfig::default()
    };
    let mut straight = build();
    trainer(&cfg)
        .fit(&mut straight, &data, None, &mut |_| {})
        .unwrap();

    let mut first = build();
    let steps = std::cell::Cell::new(0);
    let mut control = FitControl {
        should_stop: Box::new(|| {
            steps.set(steps.get() + 1);
            steps.get() > 15
        }),
        ..FitControl::default()
    };
    let FitOutcome::Stopped { state, .. } = trainer(&cfg)
        .fit_controlled(&mut first, &data, None, &mut |_| {}, &mut control)
        .unwrap()
    else {
        panic!("the run did not stop");
    };
    drop(control);
    assert_eq!(state.hooks.len(), 1);
    assert_eq!(state.objective, Some(15u64.to_le_bytes().to_vec()));
    // Through the checkpoint file format and back.
    let bytes = nn::io::checkpoint::encode(&Default::default(), &cfg, &state, &first).unwrap();
    let ck = nn::io::checkpoint::decode(&bytes, "t.ckpt", nn::LayerRegistry::nn_default()).unwrap();
    assert_eq!(ck.state, *state);

    let resume = |state: nn::trainer::TrainState, trainer: &mut Trainer| {
        let mut model =
            nn::io::native::from_bytes(&nn::io::native::to_bytes(&first).unwrap(), "m").unwrap();
        let mut control = FitControl {
            resume: Some(state),
            ..FitControl::default()
        };
        trainer
            .fit_controlled(&mut model, &data, None, &mut |_| {}, &mut control)
            .map(|_| model)
    };
    let resumed = resume(ck.state.clone(), &mut trainer(&cfg)).unwrap();
    assert_eq!(weight_bits(&straight), weight_bits(&resumed));

    // A state without the hook's or the objective's part is refused, naming what is missing.
    let mut no_hooks = ck.state.clone();
    no_hooks.hooks.clear();
    let e = resume(no_hooks, &mut trainer(&cfg))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("state of 0 training hooks, this run has 1"),
        "{e}"
    );
    let mut no_objective = ck.state.clone();
    no_objective.objective = None;
    let e = resume(no_objective, &mut trainer(&cfg))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no state for the training objective"), "{e}");
    // A hook that keeps no state refuses bytes meant for another.
    let e = resume(
        ck.state.clone(),
        &mut Trainer::new(cfg.clone())
            .with_hook(Box::new(Recorder(Arc::default())))
            .with_objective(Box::new(CountingObjective(0))),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("keeps none"), "{e}");
}

/// 16 -> 12 -> 3 MLP of registered layers (a checkpoint can rebuild it).
fn registered_mlp(init_seed: u64) -> Model {
    let mut rng = Rng::seed_from_u64(init_seed);
    Model::new(
        "mlp",
        &[16],
        vec![
            Box::new(nn::layers::Linear::new(16, 12, &mut rng).unwrap()),
            Box::new(nn::layers::ReLU::default()),
            Box::new(nn::layers::Linear::new(12, 3, &mut rng).unwrap()),
        ],
    )
}

/// Counts the steps it saw; the count is its checkpoint state.
struct StepCounter(u64);

impl nn::TrainHook for StepCounter {
    fn after_step(&mut self, _m: &mut Model, _c: &nn::trainer::StepContext<'_>) -> nn::Result<()> {
        self.0 += 1;
        Ok(())
    }

    fn state(&self) -> nn::Result<Option<Vec<u8>>> {
        Ok(Some(self.0.to_le_bytes().to_vec()))
    }

    fn restore_state(&mut self, bytes: &[u8]) -> nn::Result<()> {
        self.0 = u64::from_le_bytes(
            bytes
                .try_into()
                .map_err(|_| nn::NnError::Config(format!("StepCounter: {} bytes", bytes.len())))?,
        );
        Ok(())
    }
}

#[test]
fn a_session_replays_finished_phases_and_resumes_the_current_one() {
    use nn::trainer::{InProgress, Session, SessionCheckpoint, StopPoint};
    use std::cell::RefCell;
    use std::rc::Rc;
    let data = clusters(90, 2);
    let cfg = |epochs, seed| TrainConfig {
        epochs,
        batch_size: 8,
        optimizer: nn::optim::OptimizerConfig::sgd(0.05, 0.9),
        seed,
        eval_every_epoch: false,
        ..TrainConfig::default()
    };
    // Two phases, as a technique crate runs them: between them, the first phase's hook
    // state and weights decide what the second starts from.
    let work = |model: &mut Model| -> nn::Result<u64> {
        let mut first = Trainer::new(cfg(2, 6)).with_hook(Box::new(StepCounter(0)));
        first.fit(model, &data, None, &mut |_| {})?;
        let count = first.hook::<StepCounter>().unwrap().0;
        model.named_params_mut()[0].1.value.data_mut()[0] += count as f32 * 1e-3;
        let mut second = Trainer::new(cfg(2, 7)).with_hook(Box::new(StepCounter(100)));
        second.fit(model, &data, None, &mut |_| {})?;
        Ok(count + second.hook::<StepCounter>().unwrap().0)
    };
    let never = || Box::new(|| false) as Box<dyn Fn() -> bool>;
    let saved: Rc<RefCell<Vec<Vec<u8>>>> = Rc::default();
    let sink = |into: Rc<RefCell<Vec<Vec<u8>>>>| {
        Box::new(move |c: &SessionCheckpoint<'_>| {
            let args = std::collections::BTreeMap::new();
            let bytes = nn::io::checkpoint::encode_with_phases(
                &args, c.config, c.state, c.model, c.finished,
            )?;
            into.borrow_mut().push(bytes);
            Ok(())
        }) as Box<nn::trainer::SessionSink>
    };
    let registry = nn::registry::LayerRegistry::nn_default().clone();

    let mut straight = registered_mlp(3);
    let session = Session::new(registry.clone(), None, None, never(), sink(saved.clone()));
    let (count, session) = session.run(|| work(&mut straight)).unwrap();
    assert_eq!((count.unwrap(), session.finished().len()), (24 + 124, 2));
    assert!(saved.borrow().is_empty());

    // Stopped after three epochs: inside the second phase, with the first one finished.
    let mut stopped = registered_mlp(3);
    let session = Session::new(
        registry.clone(),
        Some(1),
        Some(3),
        never(),
        sink(saved.clone()),
    );
    let (out, session) = session.run(|| work(&mut stopped)).unwrap();
    assert!(
        matches!(out, Err(nn::NnError::Stopped { phase: 2, .. })),
        "{out:?}"
    );
    let stop = StopPoint {
        phase: 1,
        epoch: 1,
        step_in_epoch: 0,
    };
    assert_eq!(session.stopped(), Some(stop));
    // `--checkpoint-every 1` wrote one within each phase, then the stop wrote its own.
    assert_eq!(saved.borrow().len(), 3);
    let last = saved.borrow().last().unwrap().clone();
    let ck = nn::io::checkpoint::decode(&last, "t.ckpt", &registry).unwrap();
    assert_eq!(ck.phases.len(), 1);

    // Resumed on a fresh model: the first phase is replayed (its hook's count included),
    // the second continues; weights equal the straight run's bit for bit.
    let mut resumed = registered_mlp(99);
    let current = InProgress {
        config: ck.recipe,
        state: ck.state,
        model: ck.model,
    };
    let session = Session::new(registry.clone(), None, None, never(), sink(saved.clone()))
        .resuming(ck.phases.clone(), current);
    let (count, session) = session.run(|| work(&mut resumed)).unwrap();
    assert_eq!(count.unwrap(), 24 + 124);
    assert_eq!(session.stopped(), None);
    assert_eq!(weight_bits(&straight), weight_bits(&resumed));

    // A replay under other settings is refused, naming the phase.
    let mut other = registered_mlp(3);
    let mut phases = ck.phases;
    phases[0].config.seed = 42;
    let session = Session::new(registry.clone(), None, None, never(), sink(saved)).resuming(
        phases,
        InProgress {
            config: cfg(2, 7),
            state: nn::io::checkpoint::decode(&last, "t.ckpt", &registry)
                .unwrap()
                .state,
            model: registered_mlp(3),
        },
    );
    let (out, _) = session.run(|| work(&mut other)).unwrap();
    let e = out.unwrap_err().to_string();
    assert!(e.contains("training phase 1"), "{e}");
}
