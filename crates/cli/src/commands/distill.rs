//! `slimnet distill --teacher T -o OUT`: trains a student (a zoo name, an architecture spec
//! such as `mlp:784-30-10`, or a model file) on a teacher's soft targets (Hinton et al.
//! 2015) or logits (Bucilua et al. 2006), over the training set, the augmented training set
//! or the training images without their labels; with `--twin`, also the same student trained
//! on the labels alone (same initialisation, epochs, optimizer and seed) for comparison.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use distill::{DistillParams, Distillation, Target};
use nn::trainer::{CrossEntropy, Objective, Progress, TrainConfig, Trainer};

use super::{Baseline, Written, print_json};
use crate::progress;

/// Arguments of `slimnet distill`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The teacher: any model slimnet reads (.slim/.model, .onnx, .safetensors with --arch).
    #[arg(long)]
    teacher: PathBuf,
    /// Zoo architecture of a safetensors teacher.
    #[arg(long)]
    arch: Option<String>,
    /// The student: a zoo name (lenet300, lenet5), a spec (mlp:784-30-10, cnn:16-32) trained
    /// from its initialisation, or a model file to continue from.
    #[arg(long, default_value = "lenet300")]
    student: String,
    /// Output model file.
    #[arg(short, long)]
    output: PathBuf,
    /// Softmax temperature of the soft targets.
    #[arg(long, default_value_t = 4.0)]
    temperature: f32,
    /// Weight of the teacher's term against the labels (1 with --transfer unlabeled).
    #[arg(long, default_value_t = 0.9)]
    alpha: f32,
    /// Match the teacher's logits (squared error) instead of its soft targets.
    #[arg(long)]
    logits: bool,
    /// Transfer set: train (the training images), augmented (with random flips and 2-pixel
    /// shifts; teacher outputs computed on the fly), unlabeled (the training images without
    /// their labels: alpha is 1).
    #[arg(long, default_value = "train")]
    transfer: String,
    /// Epochs.
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    /// Adam's learning rate (cosine schedule to 0).
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// Mini-batch size.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Also train the student on the labels alone, the same way, and report its accuracy.
    #[arg(long)]
    twin: bool,
    #[command(flatten)]
    common: super::TrainDataArgs,
}

#[derive(serde::Serialize)]
struct Report {
    #[serde(flatten)]
    written: Written,
    /// The student architecture.
    student: String,
    /// Test accuracy of the teacher (also `baseline.accuracy`).
    teacher_accuracy: f64,
    /// Test accuracy of the same student trained on the labels alone (with --twin).
    #[serde(skip_serializing_if = "Option::is_none")]
    twin_accuracy: Option<f64>,
    /// `soft` or `logits`.
    target: &'static str,
    temperature: f32,
    alpha: f32,
    transfer: String,
    epochs: usize,
}

/// A fresh student: a zoo name or spec from the seed, else a file.
fn student(args: &Args) -> Result<nn::Model> {
    if nn::zoo::NAMES.contains(&args.student.as_str()) || super::train::is_spec(&args.student) {
        let mut rng = tensor_core::rng::Rng::seed_from_u64(args.common.seed);
        Ok(nn::zoo::build_spec(&args.student, &mut rng)?)
    } else {
        super::load_model(Path::new(&args.student), None)
    }
}

/// Trains `model` with `objective`, readies it for inference, returns its test accuracy.
fn fit(
    model: &mut nn::Model,
    objective: Box<dyn Objective>,
    config: &TrainConfig,
    data: (&nn::Dataset, &nn::Dataset),
    label: &str,
    quiet: bool,
) -> Result<f64> {
    let steps = config.steps_per_epoch(data.0.len()) * config.epochs;
    let pb = progress::bar(steps as u64, quiet);
    pb.set_prefix(label.to_string());
    let mut on_progress = |p: &Progress| {
        pb.set_position(p.global_step as u64);
        pb.set_message(format!("epoch {} loss {:.4}", p.epoch + 1, p.loss));
        if p.epoch_done {
            let line = format!("{label} epoch {:>3}: loss {:.4}", p.epoch + 1, p.loss);
            progress::line(&pb, quiet, line);
        }
    };
    let mut trainer = Trainer::new(config.clone()).with_objective(objective);
    trainer.fit(model, data.0, None, &mut on_progress)?;
    pb.finish_and_clear();
    model.clear_cache();
    nn::layers::fold_batchnorms(model)?;
    Ok(trainer.evaluate(model, data.1)?.accuracy)
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    super::check_output(&args.output, &[&args.teacher])?;
    let (augment, alpha) = match args.transfer.as_str() {
        "train" => (false, args.alpha),
        "augmented" => (true, args.alpha),
        "unlabeled" => (false, 1.0),
        other => bail!("unknown --transfer {other:?} (train, augmented or unlabeled)"),
    };
    let target = if args.logits {
        Target::Logits { alpha }
    } else {
        Target::Soft(DistillParams {
            temperature: args.temperature,
            alpha,
        })
    };
    if args.epochs == 0 || args.batch_size == 0 {
        bail!("--epochs and --batch-size must be at least 1");
    }
    let mut teacher = super::load_model(&args.teacher, args.arch.as_deref())?;
    let mut model = student(&args)?;
    let initial = nn::io::native::ModelRecord::from_model(&model, Default::default())?;
    let (train, test) = args.common.load()?;
    let teacher_accuracy = nn::metrics::evaluate(&mut teacher, &test, 256)?.accuracy;
    let teacher_params = teacher.param_count();
    let config = TrainConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        optimizer: nn::optim::OptimizerConfig::adam(args.lr),
        schedule: nn::schedule::Schedule::Cosine {
            warmup_steps: 0,
            min_lr: 0.0,
        },
        seed: args.common.seed,
        augment: augment.then(nn::data::Augment::default),
        eval_every_epoch: false,
        ..TrainConfig::default()
    };
    let objective = Distillation::with_target(teacher, target)?.caching(!augment);
    let quiet = args.common.json;
    let accuracy = fit(
        &mut model,
        Box::new(objective),
        &config,
        (&train, &test),
        "distill",
        quiet,
    )?;
    let twin_accuracy = if args.twin {
        let mut twin = initial.into_model_with(&pipeline::registry())?;
        Some(fit(
            &mut twin,
            Box::new(CrossEntropy),
            &config,
            (&train, &test),
            "twin",
            quiet,
        )?)
    } else {
        None
    };
    let mut metadata = std::collections::BTreeMap::new();
    metadata.insert("accuracy".to_string(), format!("{accuracy}"));
    metadata.insert("teacher".to_string(), args.teacher.display().to_string());
    let file_bytes = super::save_model(&model, metadata, &args.output)?;
    let report = Report {
        written: Written::new(
            &args.output,
            file_bytes,
            &model,
            (
                model.param_count(),
                pipeline::compress::nonzero_params(&model),
            ),
            accuracy,
            Baseline::of(&args.teacher, teacher_accuracy, teacher_params)?,
        )?,
        student: args.student.clone(),
        teacher_accuracy,
        twin_accuracy,
        target: if args.logits { "logits" } else { "soft" },
        temperature: args.temperature,
        alpha,
        transfer: args.transfer.clone(),
        epochs: args.epochs,
    };
    if args.common.json {
        return print_json(&report);
    }
    println!(
        "distilled {} ({} parameters) from {} ({:.2}%): accuracy {:.2}%{}, {} bytes ({:.1}x \
         smaller than the teacher's f32), saved {}",
        report.student,
        report.written.params,
        args.teacher.display(),
        100.0 * teacher_accuracy,
        100.0 * accuracy,
        twin_accuracy
            .map(|t| format!(" (labels alone: {:.2}%)", 100.0 * t))
            .unwrap_or_default(),
        file_bytes,
        report.written.ratio,
        report.written.output
    );
    Ok(())
}
