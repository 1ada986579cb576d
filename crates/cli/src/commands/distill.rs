//! `slimnet distill --teacher T -o OUT`: trains a student (a zoo name, an architecture spec
//! such as `mlp:784-30-10`, or a model file) on a teacher's soft targets (Hinton et al.
//! 2015) or logits (Bucilua et al. 2006), over the training set, the augmented training set
//! or the training images without their labels; with `--twin`, also the same student trained
//! on the labels alone (same initialisation, epochs, optimizer and seed) for comparison.
//!
//! Several `--teacher`s form an ensemble (their mean logits); `--assistant` makes a chain
//! (teacher -> assistant -> student: the assistant is distilled from the teacher first, the
//! same way, then teaches the student); `--teacher-cache` keeps the teacher's logits over
//! the transfer set in a file, so a sweep runs the teacher once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use distill::{Anneal, DistillParams, Distillation, Target};
use nn::trainer::{CrossEntropy, Objective, TrainConfig, Trainer};

use super::{Baseline, Written, print_json};
use crate::checkpointing::{CheckpointArgs, Resumable};
use crate::progress;

/// Arguments of `slimnet distill`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The teacher: any model slimnet reads (.slim/.model, .onnx, .safetensors with --arch).
    /// Repeat for an ensemble: the student learns from the teachers' mean logits.
    #[arg(long, required = true)]
    teacher: Vec<PathBuf>,
    /// A teacher assistant (Mirzadeh et al. 2020) between teacher and student: a zoo name or
    /// spec distilled from the teacher first (same temperature, alpha, transfer set, epochs,
    /// optimizer and seed), which then teaches the student; or a model file used as is.
    #[arg(long)]
    assistant: Option<String>,
    /// File of the teacher's logits over the transfer set: read when it exists (refused if
    /// another teacher made it), else written after training. Not with --transfer augmented.
    #[arg(long)]
    teacher_cache: Option<PathBuf>,
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
    /// Softmax temperature of the soft targets. The defaults of temperature, alpha, transfer
    /// set and epochs are the best of the issue-17 sweep (docs/BENCHMARKS.md, "distillation
    /// sweep"): T 1, alpha 0.5, the training set, 20 epochs; higher temperatures, higher
    /// alpha, logit matching and augmented transfer sets all did worse there.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Weight of the teacher's term against the labels (1 with --transfer unlabeled).
    #[arg(long, default_value_t = 0.5)]
    alpha: f32,
    /// Anneal alpha linearly over training, from --alpha to this at the last step.
    #[arg(long)]
    alpha_end: Option<f32>,
    /// Anneal the temperature linearly over training, from --temperature to this.
    #[arg(long)]
    temperature_end: Option<f32>,
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
    /// Checkpoints of the student's training (not with --assistant).
    #[command(flatten)]
    ckpt: CheckpointArgs,
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
    /// The teacher files (more than one: an ensemble).
    teachers: Vec<String>,
    /// The assistant of a chain and its test accuracy after distillation (with --assistant).
    #[serde(skip_serializing_if = "Option::is_none")]
    assistant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    assistant_accuracy: Option<f64>,
    /// Images whose teacher logits came from --teacher-cache.
    cached_logits: usize,
    /// `alpha` and `temperature` at the last step, when annealed.
    #[serde(skip_serializing_if = "Option::is_none")]
    alpha_end: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature_end: Option<f32>,
    /// `soft` or `logits`.
    target: &'static str,
    temperature: f32,
    alpha: f32,
    transfer: String,
    epochs: usize,
}

/// A fresh student (or assistant): a zoo name or spec from the seed, else a file.
fn student(name: &str, seed: u64) -> Result<nn::Model> {
    if is_architecture(name) {
        let mut rng = tensor_core::rng::Rng::seed_from_u64(seed);
        Ok(nn::zoo::build_spec(name, &mut rng)?)
    } else {
        super::load_model(Path::new(name), None)
    }
}

/// A zoo name or spec (not a file).
fn is_architecture(name: &str) -> bool {
    nn::zoo::NAMES.contains(&name) || super::train::is_spec(name)
}

/// Trains `model` with `objective` (checkpointed by `ckpt`, from its resume state), readies
/// it for inference, returns its test accuracy; `None` when the run stopped at a checkpoint.
fn fit(
    model: &mut nn::Model,
    objective: Box<dyn Objective>,
    config: &TrainConfig,
    data: (&nn::Dataset, &nn::Dataset),
    (label, quiet): (&str, bool),
    ckpt: Option<(&Resumable, Option<nn::trainer::TrainState>)>,
) -> Result<Option<f64>> {
    let steps = config.steps_per_epoch(data.0.len()) * config.epochs;
    let pb = progress::bar(steps as u64, quiet);
    pb.set_prefix(label.to_string());
    let mut on_progress = progress::training(&pb, quiet, |p| {
        Some(format!(
            "{label} epoch {:>3}: loss {:.4}",
            p.epoch + 1,
            p.loss
        ))
    });
    let mut trainer = Trainer::new(config.clone()).with_objective(objective);
    match ckpt {
        Some((r, resume)) => {
            let note = |msg: String| progress::line(&pb, quiet, msg);
            let done = r.fit(
                &mut trainer,
                model,
                (data.0, None),
                resume,
                &mut on_progress,
                &note,
            )?;
            if done.is_none() {
                pb.finish_and_clear();
                return Ok(None);
            }
        }
        None => {
            trainer.fit(model, data.0, None, &mut on_progress)?;
        }
    }
    pb.finish_and_clear();
    model.clear_cache();
    nn::layers::fold_batchnorms(model)?;
    Ok(Some(trainer.evaluate(model, data.1)?.accuracy))
}

/// Lends a [`Distillation`] to a Trainer (which owns its objective) and takes it back.
struct Lent(Arc<Mutex<Distillation>>);

impl Lent {
    fn lock(&self) -> nn::Result<std::sync::MutexGuard<'_, Distillation>> {
        self.0
            .lock()
            .map_err(|_| nn::NnError::Config("distillation: objective poisoned by a panic".into()))
    }
}

impl Objective for Lent {
    fn loss(
        &mut self,
        logits: &tensor_core::Tensor,
        inputs: &tensor_core::Tensor,
        labels: &[usize],
    ) -> nn::Result<(f32, tensor_core::Tensor)> {
        self.lock()?.loss(logits, inputs, labels)
    }

    fn state(&self) -> nn::Result<Option<Vec<u8>>> {
        self.lock()?.state()
    }

    fn restore_state(&mut self, bytes: &[u8]) -> nn::Result<()> {
        self.lock()?.restore_state(bytes)
    }
}

/// [`fit`] with `objective`, returned afterwards (its cached logits with it) beside the test
/// accuracy; `None` when the run stopped at a checkpoint.
fn fit_lent(
    model: &mut nn::Model,
    objective: Distillation,
    config: &TrainConfig,
    data: (&nn::Dataset, &nn::Dataset),
    label: (&str, bool),
    ckpt: Option<(&Resumable, Option<nn::trainer::TrainState>)>,
) -> Result<Option<(Distillation, f64)>> {
    let shared = Arc::new(Mutex::new(objective));
    let accuracy = fit(
        model,
        Box::new(Lent(shared.clone())),
        config,
        data,
        label,
        ckpt,
    )?;
    let objective = Arc::try_unwrap(shared)
        .ok()
        .and_then(|m| m.into_inner().ok())
        .context("distillation: the trainer kept its objective")?;
    Ok(accuracy.map(|a| (objective, a)))
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let inputs: Vec<&Path> = args.teacher.iter().map(PathBuf::as_path).collect();
    super::check_output(&args.output, &inputs)?;
    let ckpt = &args.ckpt;
    let checkpointed = ckpt.resume.is_some()
        || ckpt.checkpoint_every.is_some()
        || ckpt.stop_after_epochs.is_some()
        || ckpt.checkpoint.is_some();
    if checkpointed && args.assistant.is_some() {
        bail!(
            "--checkpoint-every, --checkpoint, --resume and --stop-after-epochs cover the \
             student's training: not with --assistant"
        );
    }
    let resumable = if args.assistant.is_none() {
        // The run is what the options say: the output, its style and the checkpoint options
        // aside; the teachers' bytes too (a retrained teacher is another run).
        let mut key = args.clone();
        (key.output, key.ckpt, key.common.json) =
            (PathBuf::new(), CheckpointArgs::default(), false);
        let mut run = crate::checkpointing::run_map("distill", &key);
        run.insert(
            "teacher_fingerprint".into(),
            format!("{:016x}", super::fingerprint(&args.teacher)?),
        );
        Some(Resumable::new(
            args.ckpt.clone(),
            run,
            &args.output,
            &inputs,
        )?)
    } else {
        None
    };
    let (augment, alpha) = match args.transfer.as_str() {
        "train" => (false, args.alpha),
        "augmented" => (true, args.alpha),
        "unlabeled" => (false, 1.0),
        other => bail!("unknown --transfer {other:?} (train, augmented or unlabeled)"),
    };
    if augment && args.teacher_cache.is_some() {
        bail!("--teacher-cache holds the training images' logits: not with --transfer augmented");
    }
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
    let mut teachers = Vec::new();
    for t in &args.teacher {
        teachers.push(super::load_model(t, args.arch.as_deref())?);
    }
    let mut model = student(&args.student, args.common.seed)?;
    let initial = nn::io::native::ModelRecord::from_model(&model, Default::default())?;
    let (train, test) = args.common.load()?;
    let teacher_params = teachers.iter().map(nn::Model::param_count).sum();
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
    let anneal = (args.alpha_end.is_some() || args.temperature_end.is_some()).then(|| Anneal {
        steps: config.steps_per_epoch(train.len()) * config.epochs,
        alpha_end: args.alpha_end.unwrap_or(alpha),
        temperature_end: args.temperature_end.unwrap_or(args.temperature),
    });
    let objective = |teachers: Vec<nn::Model>| -> Result<Distillation> {
        let d = Distillation::ensemble(teachers, target)?.caching(!augment);
        Ok(match anneal {
            Some(a) => d.anneal(a)?,
            None => d,
        })
    };
    let mut first = objective(teachers)?;
    let cache_key = match &args.teacher_cache {
        Some(_) => Some(super::fingerprint(&args.teacher)?),
        None => None,
    };
    let mut cached_logits = 0;
    if let (Some(path), Some(key)) = (&args.teacher_cache, cache_key)
        && path.exists()
    {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        cached_logits = first.load_cache(&bytes, key, &path.display().to_string())?;
        crate::note!(
            "teacher logits of {cached_logits} images from {}",
            path.display()
        );
    }
    let teacher_accuracy = first.teacher_accuracy(&test, 256)?;
    let quiet = args.common.json;
    let data = (&train, &test);
    let save_cache = |d: &Distillation| -> Result<()> {
        if let (Some(path), Some(key)) = (&args.teacher_cache, cache_key)
            && cached_logits == 0
        {
            nn::io::atomic::write_atomic(path, &d.cache_bytes(key)?)?;
        }
        Ok(())
    };
    let (objective, assistant_accuracy) = match &args.assistant {
        None => (first, None),
        Some(name) => {
            let mut assistant = student(name, args.common.seed)?;
            let accuracy = if is_architecture(name) {
                let Some((first, a)) = fit_lent(
                    &mut assistant,
                    first,
                    &config,
                    data,
                    ("assistant", quiet),
                    None,
                )?
                else {
                    bail!("the assistant's training stopped early");
                };
                save_cache(&first)?;
                a
            } else {
                nn::metrics::evaluate(&mut assistant, &test, 256)?.accuracy
            };
            (objective(vec![assistant])?, Some(accuracy))
        }
    };
    let resume = match &resumable {
        Some(r) => r.load(&config)?.map(|ck| {
            model = ck.model;
            ck.state
        }),
        None => None,
    };
    let Some((objective, accuracy)) = fit_lent(
        &mut model,
        objective,
        &config,
        data,
        ("distill", quiet),
        resumable.as_ref().map(|r| (r, resume)),
    )?
    else {
        return Ok(());
    };
    if args.assistant.is_none() {
        save_cache(&objective)?;
    }
    let twin_accuracy = if args.twin {
        let mut twin = initial.into_model_with(&pipeline::registry())?;
        fit(
            &mut twin,
            Box::new(CrossEntropy),
            &config,
            data,
            ("twin", quiet),
            None,
        )?
    } else {
        None
    };
    let mut metadata = std::collections::BTreeMap::new();
    metadata.insert("accuracy".to_string(), format!("{accuracy}"));
    let teacher_names: Vec<String> = args
        .teacher
        .iter()
        .map(|t| t.display().to_string())
        .collect();
    metadata.insert("teacher".to_string(), teacher_names.join(","));
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
            Baseline::of(&args.teacher[0], teacher_accuracy, teacher_params)?,
        )?,
        student: args.student.clone(),
        teacher_accuracy,
        twin_accuracy,
        teachers: teacher_names,
        assistant: args.assistant.clone(),
        assistant_accuracy,
        cached_logits,
        alpha_end: anneal.map(|a| a.alpha_end),
        temperature_end: anneal.map(|a| a.temperature_end),
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
        report.teachers.join(" + "),
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
