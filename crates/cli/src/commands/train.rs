//! `slimnet train --model lenet5 --epochs N -o lenet5.model`: train a zoo model.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use nn::optim::OptimizerConfig;
use nn::trainer::{Progress, TrainConfig};

use super::print_json;
use crate::progress;

/// Arguments of `slimnet train`. Unset options take the model's reference recipe
/// (`nn::recipes`).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Zoo model: lenet300, lenet5 or cnn-teacher.
    #[arg(long, default_value = "lenet300")]
    model: String,
    /// Epochs over the training set.
    #[arg(long)]
    epochs: Option<usize>,
    /// Mini-batch size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Optimizer: adam, or sgd (Nesterov momentum 0.9).
    #[arg(long)]
    optimizer: Option<String>,
    /// Peak learning rate (the schedule is the recipe's, cosine for every zoo model).
    #[arg(long)]
    lr: Option<f32>,
    /// Weight decay (L2, added to the gradient).
    #[arg(long)]
    weight_decay: Option<f32>,
    /// Random horizontal flips and shifts of up to 2 pixels (recipe default: on for cnn-teacher).
    #[arg(long)]
    augment: Option<bool>,
    /// Train on only the first N training images.
    #[arg(long)]
    limit: Option<usize>,
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

/// The model's reference recipe with the command-line overrides applied.
fn config(args: &Args) -> Result<TrainConfig> {
    let mut config = nn::recipes::reference_config(&args.model)?;
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
            "sgd" => OptimizerConfig::Sgd {
                lr,
                momentum: 0.9,
                nesterov: true,
                weight_decay: 0.0,
            },
            other => bail!("unknown optimizer {other:?} (adam or sgd)"),
        };
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
    train: nn::trainer::TrainReport,
    test: nn::metrics::Evaluation,
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let (source, train, test) = nn::data::source::load(args.data.as_deref())?;
    eprintln!("data: {source}");
    let train = match args.limit {
        Some(n) => train.take(n)?,
        None => train,
    };
    let mut rng = tensor_core::rng::Rng::seed_from_u64(args.seed);
    let mut model = nn::zoo::build(&args.model, &mut rng)?;
    let config = config(&args)?;
    let steps_per_epoch = train.len().div_ceil(config.batch_size);
    let pb = progress::bar((steps_per_epoch * config.epochs) as u64, args.json);
    pb.set_prefix(args.model.clone());
    let mut on_progress = |p: &Progress| {
        pb.set_position(p.global_step as u64);
        pb.set_message(format!(
            "epoch {} loss {:.4} lr {:.2e}",
            p.epoch + 1,
            p.loss,
            p.lr
        ));
        if let (true, Some(acc)) = (p.epoch_done, p.test_accuracy) {
            pb.println(format!(
                "epoch {:>3}: loss {:.4}, test accuracy {:.2}%",
                p.epoch + 1,
                p.loss,
                100.0 * acc
            ));
        }
    };
    let (report, evaluation) =
        nn::recipes::train_for_inference(&mut model, &config, &train, &test, &mut on_progress)?;
    pb.finish_and_clear();
    nn::io::native::save(&model, &args.output)
        .with_context(|| format!("writing {}", args.output.display()))?;
    let file_bytes = std::fs::metadata(&args.output)?.len();
    let config_epochs = config.epochs;
    let out = Report {
        model: args.model.clone(),
        data: source.to_string(),
        output: args.output.display().to_string(),
        params: model.param_count(),
        file_bytes,
        config,
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
