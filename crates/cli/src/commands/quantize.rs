//! `slimnet quantize MODEL -o OUT`: post-training quantization. Activation ranges are
//! calibrated on training images, then every linear and convolution layer (with the ReLU
//! after it) becomes an integer layer (`quant_linear`, `quant_conv2d`: i8 weights, i32 bias,
//! 7-bit activation codes, requantization fused), run by the int8 GEMM.
//!
//! With `--target-bytes B` or `--max-loss P`, weight widths are mixed (quant::mixed): a
//! sensitivity scan on held-out training images quantizes one layer at a time to each width,
//! then a greedy choice narrows the layers that save the most bytes per point lost.
//!
//! With `--qat-epochs N`, quantization-aware training comes first (quant::qat): N epochs of
//! training with fake-quantized weights and activations (straight-through estimator, Adam at
//! `--lr` with a cosine schedule, from the labels or from `--teacher`'s soft targets), then
//! the same conversion with the trained ranges. That training checkpoints and resumes as
//! the other compressing commands' does (`--checkpoint-every`, `--checkpoint`, `--resume`,
//! `--stop-after-epochs`, Ctrl-C): the checkpoint holds the latent weights, and the moving
//! activation ranges as the state of the training hook ([`QatResume`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use nn::optim::OptimizerConfig;
use nn::schedule::Schedule;
use nn::trainer::{EpochContext, StepContext, TrainConfig, Trainer};
use nn::{NnError, TrainHook};
use quant::calibrate::Calibration;
use quant::layers::{QuantConv2d, QuantLinear};
use quant::mixed::{MixedTarget, choose_bits, sensitivity_scan};
use quant::qat::{EMA_AVERAGING, EmaFakeQuantize, QatHook, convert_qat, prepare_qat};
use quant::{LayerReport, QuantConfig, calibrate_ranges, convert_with_layer_bits, quantize_model};
use tensor_core::Tensor;
use tensor_core::rng::Rng;

use super::{Baseline, ModelArgs, TrainDataArgs, Written, print_json, save_model};
use crate::checkpointing::{CheckpointArgs, Resumable, run_key};
use crate::progress;

/// Arguments of `slimnet quantize`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Output model file.
    #[arg(short, long)]
    output: PathBuf,
    /// Bits of activations and (unless --weight-bits) weights, 2..=8. Activations use at
    /// most 7 (the reduced range the AVX2 kernel needs).
    #[arg(long, default_value_t = 8)]
    bits: u32,
    /// Bits of weights, 2..=8 (default: --bits).
    #[arg(long)]
    weight_bits: Option<u32>,
    /// One weight scale per output channel (default: one per layer).
    #[arg(long)]
    per_channel: bool,
    /// Activation zero points at the middle code instead of fitted to the range.
    #[arg(long)]
    symmetric: bool,
    /// Activation calibration: minmax, percentile[:P], mse or kl.
    #[arg(long, default_value = "minmax")]
    calibration: String,
    /// Training images used for calibration (a seeded random choice).
    #[arg(long, default_value_t = 512)]
    calib_samples: usize,
    /// Epochs of quantization-aware training before the conversion (0: post-training only).
    #[arg(long, default_value_t = 0)]
    qat_epochs: usize,
    /// Adam learning rate of quantization-aware training (cosine schedule to 0).
    #[arg(long, default_value_t = 1e-4)]
    lr: f32,
    /// Mini-batch size of quantization-aware training.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Quantization-aware training from a teacher's soft targets (with --qat-epochs).
    #[command(flatten)]
    teacher: super::TeacherArgs,
    /// Power-of-two weights: sign * 2^e or 0 per output channel, 2^(N-1) - 1 exponents for
    /// --weight-bits N (at most 7), run on the int8 GEMM as codes +-2^j.
    #[arg(long)]
    pow2: bool,
    /// Mixed precision: per-layer weight widths (from --weight-bits down to 2) chosen by a
    /// sensitivity scan so that the quantized layers' packed weights, biases and scales take
    /// at most this many bytes.
    #[arg(long, conflicts_with = "max_loss")]
    target_bytes: Option<usize>,
    /// Mixed precision: per-layer weight widths chosen by a sensitivity scan, as narrow as
    /// possible while losing at most this many accuracy points (on held-out training images)
    /// against the model at --weight-bits everywhere.
    #[arg(long)]
    max_loss: Option<f64>,
    /// Held-out training images (not the calibration ones) the sensitivity scan measures on.
    #[arg(long, default_value_t = 1000)]
    sensitivity_samples: usize,
    #[command(flatten)]
    common: TrainDataArgs,
    /// Checkpoints of the quantization-aware training (with --qat-epochs).
    #[command(flatten)]
    ckpt: CheckpointArgs,
}

#[derive(serde::Serialize)]
struct LayerJson {
    index: usize,
    kind: &'static str,
    weight_bits: u32,
    pow2: bool,
    input_range: [f32; 2],
    input_scale: f32,
    input_zero_point: i32,
    relu_fused: bool,
    pool_fused: bool,
    float_output: bool,
    stored_bytes: usize,
    float_bytes: usize,
}

impl From<&LayerReport> for LayerJson {
    fn from(r: &LayerReport) -> Self {
        Self {
            index: r.index,
            kind: r.kind,
            weight_bits: r.weight_bits,
            pow2: r.pow2,
            input_range: [r.input_range.0, r.input_range.1],
            input_scale: r.input_scale,
            input_zero_point: r.input_zero_point,
            relu_fused: r.relu_fused,
            pool_fused: r.pool_fused,
            float_output: r.float_output,
            stored_bytes: r.stored_bytes,
            float_bytes: r.float_bytes,
        }
    }
}

#[derive(serde::Serialize)]
struct Report {
    #[serde(flatten)]
    written: Written,
    weight_bits: u32,
    activation_bits: u32,
    per_channel: bool,
    pow2: bool,
    symmetric: bool,
    calibration: String,
    calib_samples: usize,
    /// Quantization-aware training, when --qat-epochs > 0.
    qat: Option<QatJson>,
    /// Mixed precision, with --target-bytes or --max-loss.
    mixed: Option<MixedJson>,
    layers: Vec<LayerJson>,
}

#[derive(serde::Serialize)]
struct MixedJson {
    target_bytes: Option<usize>,
    max_loss: Option<f64>,
    sensitivity_samples: usize,
    /// Packed bytes of the quantized layers (codes at their widths, i32 bias, f32 scale).
    packed_bytes: usize,
    /// The same at --weight-bits everywhere.
    base_packed_bytes: usize,
    /// Accuracy on the held-out images at --weight-bits everywhere, and of the choice.
    base_accuracy: f64,
    accuracy: f64,
    /// Sum of the scanned per-layer losses of the choice, and the measured loss, in points.
    predicted_loss: f64,
    measured_loss: f64,
    layers: Vec<MixedLayerJson>,
}

#[derive(serde::Serialize)]
struct MixedLayerJson {
    index: usize,
    bits: u32,
    weights: usize,
    /// Points lost on the held-out images with this layer alone at each width.
    loss: BTreeMap<u32, f64>,
}

#[derive(serde::Serialize)]
struct QatJson {
    epochs: usize,
    lr: f32,
    batch_size: usize,
    teacher: Option<String>,
    /// Test accuracy of the fake-quantized model after each epoch.
    epoch_accuracy: Vec<Option<f64>>,
    train_seconds: f64,
}

/// Nonzero parameters: float parameters, plus the weight and bias codes of quantized layers.
fn nonzero_params(model: &nn::Model) -> usize {
    let mut n = pipeline::compress::nonzero_params(model);
    model.visit(&mut |_, l| {
        let core = if let Some(q) = l.as_any().downcast_ref::<QuantLinear>() {
            q.core()
        } else if let Some(q) = l.as_any().downcast_ref::<QuantConv2d>() {
            q.core()
        } else {
            return;
        };
        n += core.packed().unpack().iter().filter(|&&w| w != 0).count();
        n += core.bias().iter().filter(|&&b| b != 0).count();
    });
    n
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    if args.teacher.teacher.is_some() && args.qat_epochs == 0 {
        bail!("--teacher needs --qat-epochs N > 0 (it is the training objective)");
    }
    if !(2..=8).contains(&args.bits) {
        bail!("--bits {} is outside 2..=8", args.bits);
    }
    let config = QuantConfig {
        weight_bits: args.weight_bits.unwrap_or(args.bits),
        activation_bits: args.bits.min(7),
        per_channel: args.per_channel || args.pow2,
        pow2: args.pow2,
        symmetric: args.symmetric,
        calibration: Calibration::parse(&args.calibration)?,
        ..QuantConfig::default()
    };
    let c = &args.ckpt;
    let checkpointing = c.checkpoint_every.is_some()
        || c.checkpoint.is_some()
        || c.resume.is_some()
        || c.stop_after_epochs.is_some();
    if checkpointing && args.qat_epochs == 0 {
        bail!(
            "--checkpoint-every, --checkpoint, --resume and --stop-after-epochs checkpoint the \
             quantization-aware training: give --qat-epochs N > 0"
        );
    }
    super::check_model_output(
        &args.output,
        &[&args.model.model],
        super::Writes::Compressed("integer layers"),
        None,
    )?;
    // The training's checkpoints: the input model and a teacher file are fingerprinted.
    let resumable = if args.qat_epochs > 0 {
        let mut inputs = vec![args.model.model.as_path()];
        inputs.extend(
            args.teacher
                .teacher
                .as_deref()
                .filter(|t| *t != "self")
                .map(Path::new),
        );
        let key = run_key("quantize", &args, |a| {
            (&mut a.output, &mut a.ckpt, &mut a.common)
        });
        Some(key.resumable(&args.output, &inputs)?)
    } else {
        None
    };
    let model = args.model.load()?;
    let (train, test) = args.common.load()?;
    let mut float = pipeline::compress::copy(&model)?;
    let before = nn::metrics::evaluate(&mut float, &test, 256)?.accuracy;
    crate::note!(
        "input {}: accuracy {:.2}%",
        args.model.model.display(),
        100.0 * before
    );

    // Calibration images: a seeded random choice from the training set.
    let mut order: Vec<usize> = (0..train.len()).collect();
    Rng::seed_from_u64(args.common.seed).shuffle(&mut order);
    order.truncate(args.calib_samples.max(1));
    let (images, _) = train.batch(&order)?;
    let mut dims = vec![order.len()];
    dims.extend_from_slice(&model.input_shape);
    let calib = Tensor::new(&dims, images.data().to_vec())?;
    crate::note!(
        "calibrating on {} training images ({})",
        order.len(),
        config.calibration.name()
    );

    let params = model.param_count();
    let target = match (args.target_bytes, args.max_loss) {
        (Some(b), _) => Some(MixedTarget::Bytes(b)),
        (None, Some(l)) => Some(MixedTarget::MaxLoss(l)),
        (None, None) => None,
    };
    let mut mixed = None;
    let (mut quantized, layers, qat) = if args.qat_epochs > 0 {
        if target.is_some() {
            bail!(
                "--target-bytes / --max-loss (mixed precision) work after post-training \
                   quantization only, not with --qat-epochs"
            );
        }
        let Some(resumable) = &resumable else {
            bail!("quantization-aware training without its checkpoint settings");
        };
        let trained = train_qat(&args, model, &calib, &config, (&train, &test), resumable)?;
        let Some((q, l, j)) = trained else {
            return Ok(());
        };
        (q, l, Some(j))
    } else if let Some(target) = target {
        let held_out: Vec<usize> = {
            let mut all: Vec<usize> = (0..train.len()).collect();
            Rng::seed_from_u64(args.common.seed).shuffle(&mut all);
            all.into_iter()
                .skip(order.len())
                .take(args.sensitivity_samples.max(1))
                .collect()
        };
        let val = train.subset(&held_out)?;
        let (q, l, m) = quantize_mixed(model, &calib, &config, target, &val, args.common.json)?;
        mixed = Some(m);
        (q, l, None)
    } else {
        let (q, l) = quantize_model(model, &calib, &config)?;
        (q, l, None)
    };
    let evaluation = nn::metrics::evaluate(&mut quantized, &test, 256)?;
    let mut metadata = BTreeMap::new();
    metadata.insert("source".to_string(), args.model.model.display().to_string());
    metadata.insert(
        "quantize".to_string(),
        format!(
            "weights {} bits{}{}, activations {} bits {}, calibration {} on {} images",
            config.weight_bits,
            if config.pow2 { " powers of two" } else { "" },
            if config.per_channel {
                " per channel"
            } else {
                ""
            },
            config.activation_bits.min(7),
            if config.symmetric {
                "symmetric"
            } else {
                "asymmetric"
            },
            config.calibration.name(),
            order.len()
        ) + &qat.as_ref().map_or(String::new(), |q| {
            format!(", quantization-aware training {} epochs", q.epochs)
        }),
    );
    metadata.insert("accuracy".to_string(), format!("{}", evaluation.accuracy));
    let file_bytes = save_model(&quantized, metadata, &args.output)?;
    let report = Report {
        written: Written::new(
            &args.output,
            file_bytes,
            &quantized,
            (params, nonzero_params(&quantized)),
            evaluation.accuracy,
            Baseline::of(&args.model.model, before, params)?,
        )?,
        weight_bits: config.weight_bits,
        activation_bits: config.activation_bits.min(7),
        per_channel: config.per_channel,
        pow2: config.pow2,
        symmetric: config.symmetric,
        calibration: config.calibration.name(),
        calib_samples: order.len(),
        qat,
        mixed,
        layers: layers.iter().map(LayerJson::from).collect(),
    };
    if args.common.json {
        return print_json(&report);
    }
    for l in &report.layers {
        println!(
            "layer {:>3} {:<13} w{} input [{:.3}, {:.3}] scale {:.5} zp {:>3}{}{}{} {:>8} bytes (f32 {})",
            l.index,
            l.kind,
            l.weight_bits,
            l.input_range[0],
            l.input_range[1],
            l.input_scale,
            l.input_zero_point,
            if l.relu_fused { " +relu" } else { "" },
            if l.pool_fused { " +pool" } else { "" },
            if l.float_output {
                " -> f32"
            } else {
                " -> codes"
            },
            l.stored_bytes,
            l.float_bytes
        );
    }
    if let Some(m) = &report.mixed {
        for l in &m.layers {
            let scan: Vec<String> = l
                .loss
                .iter()
                .rev()
                .map(|(b, p)| format!("w{b} {p:+.2}"))
                .collect();
            println!(
                "mixed: layer {:>3} -> w{} ({} weights; points lost alone: {})",
                l.index,
                l.bits,
                l.weights,
                scan.join(", ")
            );
        }
        println!(
            "mixed: {} packed bytes (w{} everywhere: {}), held-out accuracy {:.2}% ({:+.2} \
             points; scan predicted {:+.2}) on {} images",
            m.packed_bytes,
            config.weight_bits,
            m.base_packed_bytes,
            100.0 * m.accuracy,
            -m.measured_loss,
            -m.predicted_loss,
            m.sensitivity_samples
        );
    }
    let w = &report.written;
    println!(
        "quantized {}: accuracy {:.2}% (was {:.2}%), {} bytes ({:.1}x smaller than {} bytes of \
         f32), saved {}",
        args.model.model.display(),
        100.0 * w.accuracy,
        100.0 * w.baseline.accuracy,
        w.file_bytes,
        w.ratio,
        w.baseline.dense_bytes,
        w.output
    );
    Ok(())
}

/// Post-training quantization with per-layer weight widths from a sensitivity scan on `val`.
fn quantize_mixed(
    mut model: nn::Model,
    calib: &Tensor,
    config: &QuantConfig,
    target: MixedTarget,
    val: &nn::Dataset,
    quiet: bool,
) -> Result<(nn::Model, Vec<LayerReport>, MixedJson)> {
    nn::layers::fold_batchnorms(&mut model)?;
    let ranges = calibrate_ranges(&mut model, calib, config)?;
    let widths: Vec<u32> = (2..=config.weight_bits).collect();
    let pb = progress::bar(1, quiet);
    pb.set_prefix("sensitivity");
    let (base, sens) = sensitivity_scan(&model, &ranges, config, &widths, val, &mut |d, t| {
        pb.set_length(t as u64);
        pb.set_position(d as u64);
    })?;
    pb.finish_and_clear();
    let plan = choose_bits(&model, &ranges, config, &sens, base, target, val)?;
    let n = model.layers.len();
    let (q, layers) = convert_with_layer_bits(model, &ranges, config, &plan.layer_bits(n))?;
    let json = MixedJson {
        target_bytes: match target {
            MixedTarget::Bytes(b) => Some(b),
            MixedTarget::MaxLoss(_) => None,
        },
        max_loss: match target {
            MixedTarget::MaxLoss(l) => Some(l),
            MixedTarget::Bytes(_) => None,
        },
        sensitivity_samples: val.len(),
        packed_bytes: plan.packed_bytes,
        base_packed_bytes: plan.base_bytes,
        base_accuracy: plan.base_accuracy,
        accuracy: plan.accuracy,
        predicted_loss: plan.predicted_loss,
        measured_loss: plan.measured_loss(),
        layers: sens
            .iter()
            .zip(&plan.bits)
            .map(|(s, &(_, bits))| MixedLayerJson {
                index: s.index,
                bits,
                weights: s.weights,
                loss: s.loss.iter().copied().collect(),
            })
            .collect(),
    };
    Ok((q, layers, json))
}

/// Quantization-aware training of `model` for `--qat-epochs`, then its conversion; `None`
/// when the training stopped at a checkpoint (`resumable`'s).
fn train_qat(
    args: &Args,
    mut model: nn::Model,
    calib: &Tensor,
    config: &QuantConfig,
    data: (&nn::Dataset, &nn::Dataset),
    resumable: &Resumable,
) -> Result<Option<(nn::Model, Vec<LayerReport>, QatJson)>> {
    let objective = args.teacher.objective(&model, false)?;
    let hook = QatResume::new(prepare_qat(&mut model, calib, config)?, &model, config);
    let train_config = TrainConfig {
        epochs: args.qat_epochs,
        batch_size: args.batch_size,
        optimizer: OptimizerConfig::adam(args.lr),
        schedule: Schedule::Cosine {
            warmup_steps: 0,
            min_lr: 0.0,
        },
        seed: args.common.seed,
        ..TrainConfig::default()
    };
    train_config.validate()?;
    let steps = train_config.steps_per_epoch(data.0.len()) * train_config.epochs;
    let quiet = args.common.json;
    let pb = progress::bar(steps as u64, quiet);
    pb.set_prefix(format!("qat w{}", config.weight_bits));
    let mut on_progress = progress::training(&pb, quiet, |p| {
        p.test_accuracy.map(|acc| {
            format!(
                "qat epoch {:>3}: fake-quantized test accuracy {:.2}%",
                p.epoch + 1,
                100.0 * acc
            )
        })
    });
    // A resume keeps the prepared model (its moving activation quantizers, which the
    // checkpoint's model file holds as fixed ones) and takes the checkpoint's other layers.
    let resume = match resumable.load(&train_config)? {
        Some(ck) => {
            adopt_checkpoint_layers(&mut model, ck.model)?;
            Some(ck.state)
        }
        None => None,
    };
    let mut trainer = Trainer::new(train_config)
        .with_hook(Box::new(hook))
        .with_objective(objective);
    let note = |msg: String| progress::line(&pb, quiet, msg);
    let report = resumable.fit(
        &mut trainer,
        &mut model,
        (data.0, Some(data.1)),
        resume,
        &mut on_progress,
        &note,
    )?;
    pb.finish_and_clear();
    let Some(report) = report else {
        return Ok(None);
    };
    model.clear_cache();
    let (quantized, layers) = convert_qat(model, config)?;
    let json = QatJson {
        epochs: args.qat_epochs,
        lr: args.lr,
        batch_size: args.batch_size,
        teacher: args.teacher.teacher.clone(),
        epoch_accuracy: report.epochs.iter().map(|e| e.test_accuracy).collect(),
        train_seconds: report.total_seconds,
    };
    Ok(Some((quantized, layers, json)))
}

/// Puts the layers of a checkpoint's model into the model [`prepare_qat`] made, except its
/// activation quantizers (saved as fixed `fake_quantize` layers; their moving ranges come
/// back through [`QatResume`]'s state): the model must have the same layers in the same order.
fn adopt_checkpoint_layers(model: &mut nn::Model, saved: nn::Model) -> Result<()> {
    if saved.layers.len() != model.layers.len() {
        bail!(
            "--resume: the checkpoint's model has {} layers, the model prepared for \
             quantization-aware training {}",
            saved.layers.len(),
            model.layers.len()
        );
    }
    for (i, (mine, theirs)) in model.layers.iter_mut().zip(saved.layers).enumerate() {
        let quantizer = mine.as_any().is::<EmaFakeQuantize>();
        let expected = if quantizer {
            "fake_quantize"
        } else {
            mine.kind()
        };
        if theirs.kind() != expected {
            bail!(
                "--resume: layer {i} of the checkpoint's model is {}, the prepared model's is \
                 {expected}",
                theirs.kind()
            );
        }
        if !quantizer {
            *mine = theirs;
        }
    }
    model.clear_cache();
    Ok(())
}

/// The activation quantizers' current ranges, in layer order.
fn ema_ranges(model: &nn::Model) -> Vec<(f32, f32)> {
    model
        .layers
        .iter()
        .filter_map(|l| l.as_any().downcast_ref::<EmaFakeQuantize>())
        .map(EmaFakeQuantize::range)
        .collect()
}

/// [`QatHook`] with a checkpoint state: the ranges of the activation quantizers, which move
/// with every training batch (an exponential moving average) and which the model's file
/// records only as scales and zero points. They are read after each step; a restored state
/// is put into the model before the next forward pass or evaluation.
struct QatResume {
    inner: QatHook,
    /// The quantizers' symmetry (the configuration's, as [`prepare_qat`] made them).
    symmetry: quant::Symmetry,
    ranges: Vec<(f32, f32)>,
    pending: bool,
}

impl QatResume {
    fn new(inner: QatHook, model: &nn::Model, config: &QuantConfig) -> Self {
        Self {
            inner,
            symmetry: config.activation_symmetry(),
            ranges: ema_ranges(model),
            pending: false,
        }
    }

    /// Sets the model's quantizers to the restored ranges, once.
    fn apply(&mut self, model: &mut nn::Model) -> nn::Result<()> {
        if !std::mem::take(&mut self.pending) {
            return Ok(());
        }
        let mut ranges = self.ranges.iter();
        for layer in &mut model.layers {
            let Some(fq) = layer.as_any().downcast_ref::<EmaFakeQuantize>() else {
                continue;
            };
            let range = ranges.next().ok_or_else(|| {
                NnError::Config("quantize: resume: fewer saved ranges than quantizers".into())
            })?;
            let (qtype, symmetry) = (fq.params().qtype(), self.symmetry);
            let fresh = EmaFakeQuantize::new(qtype, symmetry, *range, EMA_AVERAGING)
                .map_err(|e| NnError::Config(format!("quantize: resume: {e}")))?;
            *layer = Box::new(fresh);
        }
        if ranges.next().is_some() {
            return Err(NnError::Config(
                "quantize: resume: more saved ranges than quantizers".into(),
            ));
        }
        Ok(())
    }
}

impl TrainHook for QatResume {
    fn before_forward(&mut self, model: &mut nn::Model, ctx: &StepContext<'_>) -> nn::Result<()> {
        self.apply(model)?;
        self.inner.before_forward(model, ctx)
    }

    fn after_backward(&mut self, model: &mut nn::Model, ctx: &StepContext<'_>) -> nn::Result<()> {
        self.inner.after_backward(model, ctx)
    }

    fn after_step(&mut self, model: &mut nn::Model, ctx: &StepContext<'_>) -> nn::Result<()> {
        self.inner.after_step(model, ctx)?;
        self.ranges = ema_ranges(model);
        Ok(())
    }

    fn on_epoch_end(&mut self, model: &mut nn::Model, ctx: &EpochContext) -> nn::Result<()> {
        self.inner.on_epoch_end(model, ctx)
    }

    fn before_eval(&mut self, model: &mut nn::Model) -> nn::Result<()> {
        self.apply(model)?;
        self.inner.before_eval(model)
    }

    fn after_eval(&mut self, model: &mut nn::Model) -> nn::Result<()> {
        self.inner.after_eval(model)
    }

    fn state(&self) -> nn::Result<Option<Vec<u8>>> {
        let mut bytes = Vec::with_capacity(8 * self.ranges.len());
        for (lo, hi) in &self.ranges {
            bytes.extend_from_slice(&lo.to_le_bytes());
            bytes.extend_from_slice(&hi.to_le_bytes());
        }
        Ok(Some(bytes))
    }

    fn restore_state(&mut self, bytes: &[u8]) -> nn::Result<()> {
        if bytes.len() != 8 * self.ranges.len() {
            return Err(NnError::Config(format!(
                "quantize: resume: the checkpoint holds {} bytes of activation ranges, this \
                 model's {} quantizers need {}",
                bytes.len(),
                self.ranges.len(),
                8 * self.ranges.len()
            )));
        }
        let f = |b: &[u8]| f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        self.ranges = bytes.chunks_exact(8).map(|c| (f(c), f(&c[4..]))).collect();
        self.pending = true;
        Ok(())
    }
}
