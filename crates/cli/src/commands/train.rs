//! `slimnet train --model lenet5 --epochs N -o lenet5.model`: train a zoo model from scratch;
//! `slimnet train --model FILE ...`: fine-tune any model slimnet reads (native, ONNX,
//! safetensors with `--arch`), residual ones included.

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use nn::optim::OptimizerConfig;
use nn::trainer::{FitControl, FitOutcome, Progress, TrainConfig};

use super::print_json;
use crate::progress;

/// Arguments of `slimnet train`. Unset options take the zoo model's reference recipe
/// (`nn::recipes`), or for a model file the fine-tuning defaults (1 epoch, batch 64, Adam at
/// 1e-4, constant rate).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Zoo model to train from scratch (lenet300, lenet5, cnn-teacher), an architecture spec
    /// (mlp:784-300-10, cnn:16-32), or a model file to fine-tune (.model/.slim, .onnx,
    /// .safetensors with --arch) [default: lenet300].
    #[arg(long)]
    model: Option<String>,
    /// Zoo architecture of a safetensors file given as --model.
    #[arg(long)]
    arch: Option<String>,
    #[arg(long, help = with_default("Epochs over the training set", |c| c.epochs.to_string()))]
    epochs: Option<usize>,
    #[arg(long, help = with_default("Mini-batch size", |c| c.batch_size.to_string()))]
    batch_size: Option<usize>,
    #[arg(long, help = with_default(
        "Optimizer: adam, or sgd (Nesterov momentum, see --momentum)",
        |c| optimizer_name(&c.optimizer).to_string(),
    ))]
    optimizer: Option<String>,
    #[arg(long, help = with_default(
        "Peak learning rate (the schedule is the recipe's, cosine for every zoo model)",
        |c| c.optimizer.lr().to_string(),
    ))]
    lr: Option<f32>,
    /// SGD momentum (Nesterov when > 0) [default: 0.9].
    #[arg(long)]
    momentum: Option<f32>,
    #[arg(long, help = with_default(
        "Weight decay (L2, added to the gradient)",
        |c| weight_decay(&c.optimizer).to_string(),
    ))]
    weight_decay: Option<f32>,
    #[arg(long, help = with_default(
        "Random horizontal flips and shifts of up to 2 pixels",
        |c| if c.augment.is_some() { "true" } else { "false" }.to_string(),
    ))]
    augment: Option<bool>,
    /// Train on only the first N training images.
    #[arg(long)]
    limit: Option<usize>,
    /// Hold out this fraction of the training images (drawn with --seed) for the per-epoch
    /// accuracy, so that model selection never looks at the test set; the test set is
    /// evaluated once, at the end.
    #[arg(long)]
    val_split: Option<f64>,
    /// Seed for initialisation, shuffling, dropout and augmentation [default: 1].
    #[arg(long)]
    seed: Option<u64>,
    /// The data: a directory of Fashion-MNIST IDX files (default), a .npz, a .npy pair, a
    /// CIFAR-10 directory or an image folder. An architecture spec takes its input shape and
    /// class count from it.
    #[arg(long)]
    data: Option<PathBuf>,
    #[command(flatten)]
    data_opts: super::DataOptArgs,
    /// Output model file; the format follows the extension: .slim/.model native, .onnx ONNX,
    /// .safetensors safetensors (another extension: native, with a note).
    #[arg(short, long)]
    output: PathBuf,
    /// Write a training checkpoint every N epochs (weights, optimizer state, position, data
    /// order; see --checkpoint). A Ctrl-C or SIGTERM always writes one at the next step.
    #[arg(long, value_name = "N")]
    checkpoint_every: Option<usize>,
    /// Where checkpoints go [default: OUTPUT.ckpt, the -o path with `.ckpt` appended].
    #[arg(long, value_name = "PATH")]
    checkpoint: Option<PathBuf>,
    /// Continue the run a checkpoint saved (its model, recipe, data options and seed; give
    /// -o and optionally --data, --checkpoint-every, --checkpoint). The finished model is the
    /// one an uninterrupted run writes, bit for bit.
    #[arg(long, value_name = "CKPT")]
    resume: Option<PathBuf>,
    /// Stop once N epochs of the run are complete, writing the checkpoint as an interruption
    /// does (to train in slices; continue with --resume).
    #[arg(long, value_name = "N")]
    stop_after_epochs: Option<usize>,
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

/// `text` with the defaults the recipes give the option: each zoo model's reference recipe,
/// and the fine-tuning defaults of a model file (`--help` shows what a run would use).
fn with_default(text: &str, value: fn(&TrainConfig) -> String) -> String {
    let zoo: Vec<String> = nn::zoo::NAMES
        .iter()
        .filter_map(|n| {
            let c = nn::recipes::reference_config(n).ok()?;
            Some(format!("{n} {}", value(&c)))
        })
        .collect();
    format!(
        "{text} [default: the recipe's: {}; a model file {}]",
        zoo.join(", "),
        value(&fine_tune_config())
    )
}

fn optimizer_name(o: &OptimizerConfig) -> &'static str {
    match o {
        OptimizerConfig::Sgd { .. } => "sgd",
        OptimizerConfig::Adam { .. } => "adam",
    }
}

fn weight_decay(o: &OptimizerConfig) -> f32 {
    match o {
        OptimizerConfig::Sgd { weight_decay, .. } | OptimizerConfig::Adam { weight_decay, .. } => {
            *weight_decay
        }
    }
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
fn config(args: &Args, run: &RunArgs) -> Result<TrainConfig> {
    let mut config = if is_zoo_name(&run.model) {
        recipe_for(&run.model)?
    } else {
        fine_tune_config()
    };
    config.seed = run.seed;
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

/// The options that fix a run's model and data, saved in its checkpoints and taken from
/// there on resume.
#[derive(Debug, Clone)]
struct RunArgs {
    model: String,
    arch: Option<String>,
    limit: Option<usize>,
    val_split: Option<f64>,
    seed: u64,
    data: Option<PathBuf>,
    data_opts: super::DataOptArgs,
}

impl RunArgs {
    fn from_args(args: &Args) -> Self {
        Self {
            model: args.model.clone().unwrap_or_else(|| "lenet300".into()),
            arch: args.arch.clone(),
            limit: args.limit,
            val_split: args.val_split,
            seed: args.seed.unwrap_or(1),
            data: args.data.clone(),
            data_opts: args.data_opts.clone(),
        }
    }

    fn to_map(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::from([
            ("model".to_string(), self.model.clone()),
            ("seed".to_string(), self.seed.to_string()),
        ]);
        let optional = [
            ("arch", self.arch.clone()),
            ("limit", self.limit.map(|v| v.to_string())),
            ("val_split", self.val_split.map(|v| v.to_string())),
            ("data", self.data.as_ref().map(|d| d.display().to_string())),
            ("normalize", self.data_opts.normalize.clone()),
            ("resize", self.data_opts.resize.clone()),
            (
                "test_split",
                self.data_opts.test_split.map(|v| v.to_string()),
            ),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                m.insert(k.to_string(), v);
            }
        }
        m
    }

    /// The run a checkpoint's `args` describe; `data` replaces the saved data directory.
    fn from_checkpoint(
        path: &Path,
        m: &BTreeMap<String, String>,
        data: Option<PathBuf>,
    ) -> Result<Self> {
        fn parse<T: std::str::FromStr>(
            path: &Path,
            m: &BTreeMap<String, String>,
            key: &str,
        ) -> Result<Option<T>> {
            m.get(key)
                .map(|v| {
                    v.parse().map_err(|_| {
                        anyhow::anyhow!(
                            "{}: checkpoint argument `{key}` = {v:?} is not valid",
                            path.display()
                        )
                    })
                })
                .transpose()
        }
        Ok(Self {
            model: m.get("model").cloned().with_context(|| {
                format!("{}: checkpoint arguments lack `model`", path.display())
            })?,
            arch: m.get("arch").cloned(),
            limit: parse(path, m, "limit")?,
            val_split: parse(path, m, "val_split")?,
            seed: parse(path, m, "seed")?.unwrap_or(1),
            data: data.or_else(|| m.get("data").map(PathBuf::from)),
            data_opts: super::DataOptArgs {
                normalize: m.get("normalize").cloned(),
                resize: m.get("resize").cloned(),
                test_split: parse(path, m, "test_split")?,
            },
        })
    }
}

/// The checkpoint path of a run writing `output`: `output` with `.ckpt` appended.
fn default_checkpoint(output: &Path) -> PathBuf {
    let mut s = output.as_os_str().to_owned();
    s.push(".ckpt");
    PathBuf::from(s)
}

/// Options a resumed run takes from its checkpoint: giving one is refused.
fn refuse_recipe_options(args: &Args) -> Result<()> {
    let given = [
        ("--model", args.model.is_some()),
        ("--arch", args.arch.is_some()),
        ("--epochs", args.epochs.is_some()),
        ("--batch-size", args.batch_size.is_some()),
        ("--optimizer", args.optimizer.is_some()),
        ("--lr", args.lr.is_some()),
        ("--momentum", args.momentum.is_some()),
        ("--weight-decay", args.weight_decay.is_some()),
        ("--augment", args.augment.is_some()),
        ("--limit", args.limit.is_some()),
        ("--val-split", args.val_split.is_some()),
        ("--seed", args.seed.is_some()),
        ("--normalize", args.data_opts.normalize.is_some()),
        ("--resize", args.data_opts.resize.is_some()),
        ("--test-split", args.data_opts.test_split.is_some()),
    ];
    let given: Vec<&str> = given.iter().filter(|(_, g)| *g).map(|(n, _)| *n).collect();
    if !given.is_empty() {
        bail!(
            "--resume continues the checkpoint's run with its recipe, data options and seed; \
             drop {}",
            given.join(", ")
        );
    }
    Ok(())
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let registry = pipeline::registry();
    let resume = match &args.resume {
        Some(p) => {
            refuse_recipe_options(&args)?;
            Some(nn::io::checkpoint::read(p, &registry)?)
        }
        None => None,
    };
    let run = match (&resume, &args.resume) {
        (Some(ck), Some(p)) => RunArgs::from_checkpoint(p, &ck.args, args.data.clone())?,
        _ => RunArgs::from_args(&args),
    };
    let checkpoint_path = args
        .checkpoint
        .clone()
        .unwrap_or_else(|| default_checkpoint(&args.output));
    let model_path = Path::new(&run.model);
    super::check_output(&args.output, &[model_path, &checkpoint_path])?;
    let mut inputs = vec![model_path, args.output.as_path()];
    inputs.extend(args.resume.as_deref());
    // Resuming from the checkpoint path itself is allowed: it is read before it is replaced.
    if args.resume.as_deref() != Some(checkpoint_path.as_path()) {
        super::check_output(&checkpoint_path, &inputs)?;
    }
    let model_file = (!is_zoo_name(&run.model)).then_some(model_path);
    let data_opts = run.data_opts.options(model_file, run.seed)?;
    let (source, train, test) = super::load_data(run.data.as_deref(), &data_opts, None)?;
    crate::note!("data: {source}");
    let train = match run.limit {
        Some(n) => train.take(n)?,
        None => train,
    };
    let (train, validation) = match run.val_split {
        Some(f) => {
            let (train, val) = train.split_validation(f, run.seed)?;
            (train, Some(val))
        }
        None => (train, None),
    };
    let monitor_name = if validation.is_some() {
        "validation"
    } else {
        "test"
    };
    let (mut model, config, state) = match resume {
        Some(ck) => (ck.model, ck.recipe, Some(ck.state)),
        None => {
            let model = if is_zoo_name(&run.model) {
                let mut rng = tensor_core::rng::Rng::seed_from_u64(run.seed);
                nn::zoo::build_spec_for(&run.model, train.sample_shape(), train.classes, &mut rng)?
            } else {
                super::load_model(model_path, run.arch.as_deref())?
            };
            (model, config(&args, &run)?, None)
        }
    };
    let data = run.data.as_deref();
    let (train, test) = (
        super::fit_split(train, &model, &source, data, super::Split::Train)?,
        super::fit_split(test, &model, &source, data, super::Split::Test)?,
    );
    let validation = validation
        .map(|v| super::fit_split(v, &model, &source, data, super::Split::Train))
        .transpose()?;
    super::check_model_output(
        &args.output,
        &[model_path],
        super::Writes::Dense,
        Some(&model),
    )?;
    if let Some(st) = &state {
        crate::note!(
            "resuming {} at epoch {} step {} of {} epochs",
            args.resume.as_deref().unwrap_or(Path::new("")).display(),
            st.epoch + 1,
            st.step_in_epoch,
            config.epochs
        );
    }
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
    let run_map = run.to_map();
    let write_checkpoint = |m: &nn::Model, st: &nn::trainer::TrainState| -> nn::Result<u64> {
        nn::io::checkpoint::write(&checkpoint_path, &run_map, &config, st, m)
    };
    let mut control = FitControl {
        resume: state,
        checkpoint_every: args.checkpoint_every,
        stop_after_epochs: args.stop_after_epochs,
        should_stop: Box::new(crate::interrupt::requested),
        on_checkpoint: Box::new(|m, st| {
            write_checkpoint(m, st)?;
            progress::line(
                &pb,
                args.json,
                format!(
                    "checkpoint after epoch {}: {}",
                    st.epoch,
                    checkpoint_path.display()
                ),
            );
            Ok(())
        }),
    };
    crate::interrupt::defer();
    let (outcome, evaluation) = nn::recipes::train_for_inference_controlled(
        &mut model,
        &config,
        (&train, validation.as_ref().unwrap_or(&test), &test),
        &mut on_progress,
        &mut control,
    )?;
    drop(control);
    pb.finish_and_clear();
    let (report, evaluation) = match (outcome, evaluation) {
        (FitOutcome::Finished(report), Some(evaluation)) => (report, evaluation),
        (FitOutcome::Stopped { state, .. }, _) => {
            write_checkpoint(&model, &state)
                .with_context(|| format!("writing checkpoint {}", checkpoint_path.display()))?;
            eprintln!(
                "stopped at epoch {} step {}: checkpoint {}; continue with: slimnet train \
                 --resume {} -o {}",
                state.epoch + 1,
                state.step_in_epoch,
                checkpoint_path.display(),
                checkpoint_path.display(),
                args.output.display()
            );
            if crate::interrupt::requested() {
                std::process::exit(crate::interrupt::EXIT_CODE);
            }
            return Ok(());
        }
        (FitOutcome::Finished(_), None) => bail!("train: finished without a test evaluation"),
    };
    // The preprocessing travels with the model: eval and compression reapply it.
    let metadata = data_opts.transform.to_metadata();
    let file_bytes = super::save_model(&model, metadata, &args.output)?;
    let config_epochs = config.epochs;
    let out = Report {
        model: run.model.clone(),
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
