//! `slimnet train --model lenet5 --epochs N -o lenet5.model`: train a zoo model from scratch;
//! `slimnet train --model FILE ...`: fine-tune any model slimnet reads (native, ONNX,
//! safetensors with `--arch`), residual ones included.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use nn::optim::OptimizerConfig;
use nn::trainer::{Progress, TrainConfig};

use super::print_json;
use crate::progress;

/// Arguments of `slimnet train`. Unset options take the zoo model's reference recipe
/// (`nn::recipes`), or for a model file the fine-tuning defaults (1 epoch, batch 64, Adam at
/// 1e-4, constant rate).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Zoo model to train from scratch (lenet300, lenet5, cnn-teacher), an architecture spec
    /// (mlp:784-300-10, cnn:16-32), or a model file to fine-tune (.model/.slim, .onnx,
    /// .safetensors with --arch).
    #[arg(long, default_value = "lenet300")]
    model: String,
    /// Zoo architecture of a safetensors file given as --model.
    #[arg(long)]
    arch: Option<String>,
    /// Epochs over the training set.
    #[arg(long)]
    epochs: Option<usize>,
    /// Mini-batch size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Optimizer: adam, or sgd (Nesterov momentum, see --momentum).
    #[arg(long)]
    optimizer: Option<String>,
    /// Peak learning rate (the schedule is the recipe's, cosine for every zoo model).
    #[arg(long)]
    lr: Option<f32>,
    /// SGD momentum (Nesterov when > 0); default 0.9.
    #[arg(long)]
    momentum: Option<f32>,
    /// Weight decay (L2, added to the gradient).
    #[arg(long)]
    weight_decay: Option<f32>,
    /// Random horizontal flips and shifts of up to 2 pixels (recipe default: on for cnn-teacher).
    #[arg(long)]
    augment: Option<bool>,
    /// Train on only the first N training images.
    #[arg(long)]
    limit: Option<usize>,
    /// Hold out this fraction of the training images (drawn with --seed) for the per-epoch
    /// accuracy, so that model selection never looks at the test set; the test set is
    /// evaluated once, at the end.
    #[arg(long)]
    val_split: Option<f64>,
    /// Seed for initialisation, shuffling, dropout and augmentation.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Directory holding the Fashion-MNIST IDX files.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Output model file (native format).
    #[arg(short, long)]
    output: PathBuf,
    /// Machine-readable output (the final report as JSON on stdout).
    #[arg(long)]
    json: bool,
}

/// Where the model comes from: a zoo architecture or a spec (`mlp:784-300-10`,
/// `cnn:16-32`) trained from scratch, or a file.
fn is_zoo_name(model: &str) -> bool {
    nn::zoo::NAMES.contains(&model) || is_spec(model)
}

/// An architecture spec of `nn::zoo::build_spec`.
pub fn is_spec(model: &str) -> bool {
    model.starts_with("mlp:") || model.starts_with("cnn:")
}

/// The reference recipe a zoo name or spec trains with: its own, lenet300's for an mlp spec,
/// lenet5's for a cnn spec.
pub fn recipe_for(model: &str) -> Result<TrainConfig> {
    let name = match model {
        m if m.starts_with("mlp:") => "lenet300",
        m if m.starts_with("cnn:") => "lenet5",
        m => m,
    };
    Ok(nn::recipes::reference_config(name)?)
}

/// Fine-tuning defaults for a model read from a file: 1 epoch of batch 64, Adam at 1e-4,
/// constant rate (a gentle start that leaves a trained model near where it was).
fn fine_tune_config() -> TrainConfig {
    TrainConfig {
        epochs: 1,
        batch_size: 64,
        optimizer: OptimizerConfig::adam(1e-4),
        ..TrainConfig::default()
    }
}

/// The model's reference recipe (or the fine-tuning defaults) with the command-line
/// overrides applied.
fn config(args: &Args) -> Result<TrainConfig> {
    let mut config = if is_zoo_name(&args.model) {
        recipe_for(&args.model)?
    } else {
        fine_tune_config()
    };
    config.seed = args.seed;
    if let Some(e) = args.epochs {
        config.epochs = e;
    }
    if let Some(b) = args.batch_size {
        config.batch_size = b;
    }
    let lr = args.lr.unwrap_or(config.optimizer.lr());
    if let Some(name) = &args.optimizer {
        config.optimizer = match name.as_str() {
            "adam" => OptimizerConfig::adam(lr),
            "sgd" => {
                let momentum = args.momentum.unwrap_or(0.9);
                OptimizerConfig::Sgd {
                    lr,
                    momentum,
                    nesterov: momentum > 0.0,
                    weight_decay: 0.0,
                }
            }
            other => bail!("unknown optimizer {other:?} (adam or sgd)"),
        };
    }
    if let Some(m) = args.momentum {
        match &mut config.optimizer {
            OptimizerConfig::Sgd {
                momentum, nesterov, ..
            } => {
                *momentum = m;
                *nesterov = *nesterov && m > 0.0;
            }
            OptimizerConfig::Adam { .. } => {
                bail!("--momentum applies to sgd; Adam's betas are fixed at (0.9, 0.999)")
            }
        }
    }
    match &mut config.optimizer {
        OptimizerConfig::Sgd {
            lr: l,
            weight_decay,
            ..
        }
        | OptimizerConfig::Adam {
            lr: l,
            weight_decay,
            ..
        } => {
            *l = lr;
            if let Some(wd) = args.weight_decay {
                *weight_decay = wd;
            }
        }
    }
    if let Some(a) = args.augment {
        config.augment = a.then(nn::data::augment::Augment::default);
    }
    config.validate()?;
    Ok(config)
}

#[derive(serde::Serialize)]
struct Report {
    model: String,
    data: String,
    output: String,
    params: usize,
    file_bytes: u64,
    config: TrainConfig,
    /// Training images used (after --limit and --val-split).
    train_images: usize,
    /// Held-out validation images (--val-split), on which the per-epoch accuracy was measured.
    validation_images: Option<usize>,
    train: nn::trainer::TrainReport,
    test: nn::metrics::Evaluation,
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    super::check_output(&args.output, &[Path::new(&args.model)])?;
    let (source, train, test) = nn::data::source::load(args.data.as_deref())?;
    crate::note!("data: {source}");
    let train = match args.limit {
        Some(n) => train.take(n)?,
        None => train,
    };
    let (train, validation) = match args.val_split {
        Some(f) => {
            let (train, val) = train.split_validation(f, args.seed)?;
            (train, Some(val))
        }
        None => (train, None),
    };
    let monitor_name = if validation.is_some() {
        "validation"
    } else {
        "test"
    };
    let mut model = if is_zoo_name(&args.model) {
        let mut rng = tensor_core::rng::Rng::seed_from_u64(args.seed);
        nn::zoo::build_spec(&args.model, &mut rng)?
    } else {
        super::load_model(std::path::Path::new(&args.model), args.arch.as_deref())?
    };
    let config = config(&args)?;
    let steps_per_epoch = config.steps_per_epoch(train.len());
    let pb = progress::bar((steps_per_epoch * config.epochs) as u64, args.json);
    pb.set_prefix(model.name.clone());
    let mut on_progress = |p: &Progress| {
        pb.set_position(p.global_step as u64);
        pb.set_message(format!(
            "epoch {} loss {:.4} lr {:.2e}",
            p.epoch + 1,
            p.loss,
            p.lr
        ));
        if let (true, Some(acc)) = (p.epoch_done, p.test_accuracy) {
            progress::line(
                &pb,
                args.json,
                format!(
                    "epoch {:>3}: loss {:.4}, {monitor_name} accuracy {:.2}%",
                    p.epoch + 1,
                    p.loss,
                    100.0 * acc
                ),
            );
        }
    };
    let (report, evaluation) = nn::recipes::train_for_inference_monitored(
        &mut model,
        &config,
        &train,
        validation.as_ref().unwrap_or(&test),
        &test,
        &mut on_progress,
    )?;
    pb.finish_and_clear();
    let file_bytes = super::save_model(&model, Default::default(), &args.output)?;
    let config_epochs = config.epochs;
    let out = Report {
        model: args.model.clone(),
        data: source.to_string(),
        output: args.output.display().to_string(),
        params: model.param_count(),
        file_bytes,
        config,
        train_images: train.len(),
        validation_images: validation.as_ref().map(|v| v.len()),
        train: report,
        test: evaluation,
    };
    if args.json {
        return print_json(&out);
    }
    println!(
        "trained {} for {} epochs in {:.1} s: test accuracy {:.2}% ({} images), {} parameters, saved {} ({} bytes)",
        out.model,
        config_epochs,
        out.train.total_seconds,
        100.0 * out.test.accuracy,
        out.test.samples,
        out.params,
        out.output,
        out.file_bytes
    );
    Ok(())
}
