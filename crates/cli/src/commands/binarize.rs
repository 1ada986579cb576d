//! `slimnet binarize MODEL -o OUT [--mode bwn|xnor|bnn]`: binary weights (BWN), binary
//! weights and activations (XNOR-Net, BNN), trained with the straight-through estimator from a
//! trained model (or from scratch with `--model NAME`), written as packed binary layers
//! (xnor-kernels: `binary_linear`, `binary_conv2d`) that run on XNOR-popcount kernels.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nn::optim::OptimizerConfig;
use nn::schedule::Schedule;
use nn::trainer::{TrainConfig, Trainer};
use xnor_kernels::{BinarizeHook, BinaryMode, binarize_model_with, to_binary_layers};

use super::{Baseline, TrainDataArgs, Written, print_json};
use crate::checkpointing::{CheckpointArgs, Resumable};
use crate::progress;

/// Arguments of `slimnet binarize`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// A trained model to start from (.slim/.model, .onnx, .safetensors with --arch).
    model_file: Option<PathBuf>,
    /// Instead of MODEL: a zoo model or spec to train binary from scratch (lenet5, cnn-teacher).
    #[arg(long)]
    model: Option<String>,
    /// Zoo architecture of a safetensors MODEL.
    #[arg(long)]
    arch: Option<String>,
    /// Output model file.
    #[arg(short, long)]
    output: PathBuf,
    /// bwn: binary weights, real inputs; xnor: binary weights and inputs with scales;
    /// bnn: binary weights and inputs, no scales.
    #[arg(long, default_value = "bwn")]
    mode: String,
    /// XNOR mode: scale the binary dot products by XNOR-Net's input scale K (mean |x| over
    /// channels and the receptive field).
    #[arg(long)]
    input_scale: bool,
    /// Epochs of binary training (straight-through estimator).
    #[arg(long, default_value_t = 2)]
    epochs: usize,
    /// Keep the first and the last parametric layers in full precision.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    keep_first_last: bool,
    /// Adam learning rate (cosine schedule to 0).
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// Mini-batch size.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Random flips and shifts of training images.
    #[arg(long)]
    augment: bool,
    /// The binary training's teacher (`self`: MODEL before binarization).
    #[command(flatten)]
    teacher: super::TeacherArgs,
    #[command(flatten)]
    common: TrainDataArgs,
    /// Checkpoints of the binary training.
    #[command(flatten)]
    ckpt: CheckpointArgs,
}

#[derive(serde::Serialize)]
struct Report {
    #[serde(flatten)]
    written: Written,
    mode: &'static str,
    /// Whether the XNOR layers scale by the input scale K.
    input_scale: bool,
    /// Paths of the binarized layers (in the written model).
    binary_layers: Vec<String>,
    /// Test accuracy after each epoch, evaluated through the training hook.
    epoch_accuracy: Vec<Option<f64>>,
    train_seconds: f64,
    /// The binary training's teacher, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    teacher: Option<String>,
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let mode = BinaryMode::parse(&args.mode)
        .with_context(|| format!("unknown --mode {:?} (bwn, xnor or bnn)", args.mode))?;
    let inputs: Vec<&Path> = args.model_file.iter().map(PathBuf::as_path).collect();
    super::check_model_output(
        &args.output,
        &inputs,
        super::Writes::Compressed("binary layers"),
        None,
    )?;
    let mut key = args.clone();
    (key.output, key.ckpt, key.common.json) = (PathBuf::new(), CheckpointArgs::default(), false);
    let mut run = crate::checkpointing::run_map("binarize", &key);
    if let Some(f) = &args.model_file {
        run.insert(
            "model_fingerprint".into(),
            format!("{:016x}", super::fingerprint(std::slice::from_ref(f))?),
        );
    }
    let resumable = Resumable::new(args.ckpt.clone(), run, &args.output, &inputs)?;
    let (train, test) = args.common.load()?;
    let (mut model, input_bytes) = match (&args.model_file, &args.model) {
        (Some(f), None) => (
            super::load_model(f, args.arch.as_deref())?,
            std::fs::metadata(f)?.len(),
        ),
        (None, Some(name)) => {
            let mut rng = tensor_core::rng::Rng::seed_from_u64(args.common.seed);
            (nn::zoo::build_spec(name, &mut rng)?, 0)
        }
        _ => bail!("give either MODEL (a trained model file) or --model NAME (from scratch)"),
    };
    let params = model.param_count();
    let baseline = Baseline {
        accuracy: nn::metrics::evaluate(&mut model, &test, 256)?.accuracy,
        file_bytes: input_bytes,
        dense_bytes: 4 * params as u64,
    };
    if args.model.is_some() && args.teacher.teacher.as_deref() == Some("self") {
        bail!("--teacher self needs a trained MODEL file (--model trains from scratch)");
    }
    let objective = args.teacher.objective(&model, args.augment)?;
    let paths = binarize_model_with(&mut model, mode, args.keep_first_last, args.input_scale)?;
    if paths.is_empty() {
        bail!("no layer to binarize (the model has at most the first and last parametric layers)");
    }
    let config = TrainConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        optimizer: OptimizerConfig::adam(args.lr),
        schedule: Schedule::Cosine {
            warmup_steps: 0,
            min_lr: 0.0,
        },
        seed: args.common.seed,
        augment: args.augment.then(nn::data::augment::Augment::default),
        ..TrainConfig::default()
    };
    config.validate()?;
    let steps = config.steps_per_epoch(train.len()) * config.epochs;
    let pb = progress::bar(steps as u64, args.common.json);
    pb.set_prefix(format!("binarize {}", mode.name()));
    let mut on_progress = progress::training(&pb, args.common.json, |p| {
        p.test_accuracy.map(|acc| {
            format!(
                "epoch {:>3}: test accuracy {:.2}%",
                p.epoch + 1,
                100.0 * acc
            )
        })
    });
    let resume = resumable.load(&config)?.map(|ck| {
        model = ck.model;
        ck.state
    });
    let hook = BinarizeHook::new(mode, paths.clone());
    let mut trainer = Trainer::new(config)
        .with_objective(objective)
        .with_hook(Box::new(hook));
    let note = |msg: String| progress::line(&pb, args.common.json, msg);
    let report = resumable.fit(
        &mut trainer,
        &mut model,
        (&train, Some(&test)),
        resume,
        &mut on_progress,
        &note,
    )?;
    pb.finish_and_clear();
    let Some(report) = report else {
        return Ok(());
    };
    model.clear_cache();
    // Convert first: BatchNorm then folds only into the full-precision convolutions.
    to_binary_layers(&mut model, mode, &paths)?;
    nn::layers::fold_batchnorms(&mut model)?;
    let accuracy = nn::metrics::evaluate(&mut model, &test, 256)?.accuracy;
    let mut meta = std::collections::BTreeMap::new();
    meta.insert("binarize.mode".to_string(), mode.name().to_string());
    meta.insert(
        "binarize.input_scale".to_string(),
        args.input_scale.to_string(),
    );
    let file_bytes = super::save_model(&model, meta, &args.output)?;
    let mut binary_layers = Vec::new();
    model.visit(&mut |path, layer| {
        if layer.kind().starts_with("binary_") {
            binary_layers.push(path.to_string());
        }
    });
    let out = Report {
        written: Written::new(
            &args.output,
            file_bytes,
            &model,
            (params, pipeline::compress::nonzero_params(&model)),
            accuracy,
            baseline,
        )?,
        mode: mode.name(),
        input_scale: args.input_scale,
        binary_layers,
        epoch_accuracy: report.epochs.iter().map(|e| e.test_accuracy).collect(),
        train_seconds: report.total_seconds,
        teacher: args.teacher.teacher.clone(),
    };
    if args.common.json {
        return print_json(&out);
    }
    println!(
        "binarized ({}) {} layers: accuracy {:.2}% (was {:.2}%), {} bytes ({:.1}x smaller than \
         {} bytes of f32), saved {}",
        out.mode,
        out.binary_layers.len(),
        100.0 * out.written.accuracy,
        100.0 * out.written.baseline.accuracy,
        out.written.file_bytes,
        out.written.ratio,
        out.written.baseline.dense_bytes,
        out.written.output
    );
    Ok(())
}
