//! `slimnet prune MODEL -o OUT`: magnitude pruning with retraining, written as a sparse model
//! (the pruned layers become `sparse_linear` / `sparse_conv2d`, stored as relative index).

use std::path::PathBuf;

use anyhow::{Result, bail};
use nn::optim::OptimizerConfig;
use nn::trainer::{Progress, TrainConfig};
use prune::{Criterion, Schedule};

use super::{Baseline, ModelArgs, TrainDataArgs, Written, nonzero_params, print_json, write_model};
use crate::progress;

/// Arguments of `slimnet prune`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Output model file (native format, sparse layers).
    #[arg(short, long)]
    output: PathBuf,
    /// layer-std (Han et al.: per-layer threshold, or per-layer sparsity), global (one
    /// magnitude threshold over all layers) or sensitivity (per-layer sparsities chosen from
    /// a sensitivity scan on training images: every layer pruned as far as one shared
    /// accuracy-drop budget allows, the budget set to reach --ratio/--sparsity).
    /// filters and nm are not implemented yet.
    #[arg(long, default_value = "layer-std")]
    method: String,
    /// Quality parameter q of the per-layer threshold q * std(W) (layer-std).
    #[arg(long)]
    quality: Option<f64>,
    /// Fraction of the weights to remove, in [0, 1].
    #[arg(long)]
    sparsity: Option<f64>,
    /// Compression ratio of the weights: sparsity = 1 - 1/R.
    #[arg(long)]
    ratio: Option<f64>,
    /// oneshot, iterative or agp (Zhu and Gupta's polynomial schedule).
    #[arg(long, default_value = "oneshot")]
    schedule: String,
    /// Rounds of the iterative schedule.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Retraining epochs (the whole budget of the schedule).
    #[arg(long, default_value_t = 2)]
    retrain_epochs: usize,
    /// Retraining learning rate (Adam; Han et al. retrain at about 1/10 of the original rate).
    #[arg(long, default_value_t = 1e-4)]
    lr: f32,
    /// Learning-rate schedule of the retraining: cosine (from --lr down to 0 over the whole
    /// budget) or constant.
    #[arg(long, default_value = "cosine")]
    lr_schedule: String,
    /// Retrain from a teacher's soft targets (Hinton et al. 2015) instead of the labels
    /// alone: a model file, or `self` for the unpruned input model.
    #[arg(long)]
    teacher: Option<String>,
    /// Distillation temperature (with --teacher).
    #[arg(long, default_value_t = 4.0)]
    temperature: f32,
    /// Weight of the soft targets against the labels (with --teacher).
    #[arg(long, default_value_t = 0.9)]
    alpha: f32,
    #[command(flatten)]
    common: TrainDataArgs,
}

fn criterion(a: &Args) -> Result<Criterion> {
    let sparsity = match (a.sparsity, a.ratio) {
        (Some(_), Some(_)) => bail!("give --sparsity or --ratio, not both"),
        (Some(s), None) => Some(s),
        (None, Some(r)) if r >= 1.0 => Some(1.0 - 1.0 / r),
        (None, Some(r)) => bail!("--ratio {r} must be >= 1"),
        (None, None) => None,
    };
    Ok(match (a.method.as_str(), a.quality, sparsity) {
        ("layer-std", Some(q), None) => Criterion::LayerQuality(q),
        ("layer-std", None, Some(s)) => Criterion::LayerSparsity(s),
        ("global", None, Some(s)) => Criterion::GlobalSparsity(s),
        ("layer-std", None, None) => Criterion::LayerQuality(1.0),
        ("sensitivity", None, Some(s)) => Criterion::GlobalSparsity(s),
        ("global" | "sensitivity", Some(_), _) => {
            bail!("--method {} takes --sparsity or --ratio", a.method)
        }
        ("global" | "sensitivity", None, None) => {
            bail!("--method {} needs --sparsity or --ratio", a.method)
        }
        ("layer-std", Some(_), Some(_)) => bail!("give --quality or --sparsity/--ratio, not both"),
        ("filters" | "nm", _, _) => bail!("--method {} is not implemented yet", a.method),
        (m, _, _) => bail!("unknown --method {m:?} (layer-std, global or sensitivity)"),
    })
}

#[derive(serde::Serialize)]
struct Report {
    #[serde(flatten)]
    written: Written,
    layers: Vec<LayerRow>,
}

#[derive(serde::Serialize)]
struct LayerRow {
    path: String,
    density: f64,
}

/// Training images the sensitivity scan measures accuracy on (the test set is never used
/// to choose the per-layer targets).
const SCAN_IMAGES: usize = 10_000;

/// Per-layer sparsities from a sensitivity scan on training images, reaching sparsity `s`
/// overall with one shared accuracy-drop budget.
fn by_sensitivity(
    model: &mut nn::Model,
    train: &nn::Dataset,
    s: f64,
    quiet: bool,
) -> Result<Criterion> {
    let scan_set = train.take(SCAN_IMAGES.min(train.len()))?;
    let table =
        super::sensitivity::measure(model, &scan_set, &prune::sensitivity::DEFAULT_SPARSITIES)?;
    let ratio = 1.0 / (1.0 - s).max(1e-9);
    let (chosen, budget) = table.sparsities_for_ratio(ratio)?;
    if !quiet {
        let q = prune::Sensitivity::quality_params(model, &chosen)?;
        for ((p, s), (_, q)) in chosen.iter().zip(&q) {
            eprintln!(
                "sensitivity: layer {p} to sparsity {:.2}% (quality parameter {q:.3}); \
                 drop budget {:.2} points on {} training images",
                100.0 * s,
                100.0 * budget,
                scan_set.len()
            );
        }
    }
    Ok(Criterion::PerLayerSparsity(chosen))
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let criterion = criterion(&args)?;
    let schedule = match args.schedule.as_str() {
        "oneshot" => Schedule::OneShot,
        "iterative" => Schedule::Iterative {
            rounds: args.rounds,
        },
        "agp" => Schedule::Polynomial,
        other => bail!("unknown --schedule {other:?} (oneshot, iterative or agp)"),
    };
    let mut model = args.model.load()?;
    let (train, test) = args.common.load()?;
    let baseline = Baseline::measure(&mut model, &args.model.model, &test)?;
    let criterion = match (args.method.as_str(), criterion) {
        ("sensitivity", Criterion::GlobalSparsity(s)) => {
            by_sensitivity(&mut model, &train, s, args.common.json)?
        }
        (_, c) => c,
    };
    let lr_schedule = match args.lr_schedule.as_str() {
        "cosine" => nn::schedule::Schedule::Cosine {
            warmup_steps: 0,
            min_lr: 0.0,
        },
        "constant" => nn::schedule::Schedule::Constant,
        other => bail!("unknown --lr-schedule {other:?} (cosine or constant)"),
    };
    let config = TrainConfig {
        optimizer: OptimizerConfig::adam(args.lr),
        schedule: lr_schedule,
        batch_size: 64,
        seed: args.common.seed,
        ..TrainConfig::default()
    };
    let steps = config.steps_per_epoch(train.len()) * args.retrain_epochs;
    let pb = progress::bar(steps as u64, args.common.json);
    let mut done = 0u64;
    let mut on_progress = |p: &Progress| {
        if !p.epoch_done {
            done += 1;
            pb.set_position(done);
            pb.set_message(format!("loss {:.4}", p.loss));
        }
    };
    let params = distill::DistillParams {
        temperature: args.temperature,
        alpha: args.alpha,
    };
    params.validate()?;
    let teacher_path = match args.teacher.as_deref() {
        Some("self") => Some(args.model.model.clone()),
        Some(p) => Some(PathBuf::from(p)),
        None => None,
    };
    let arch = args.model.arch.clone();
    let mut objective = || -> nn::Result<Box<dyn nn::trainer::Objective>> {
        Ok(match &teacher_path {
            Some(p) => Box::new(distill::Distillation::new(
                pipeline::load(p, arch.as_deref())?,
                params,
            )?),
            None => Box::new(nn::trainer::CrossEntropy),
        })
    };
    let report = prune::prune_model_with(
        &mut model,
        criterion,
        schedule,
        &config,
        &train,
        args.retrain_epochs,
        &mut objective,
        &mut on_progress,
    )?;
    pb.finish_and_clear();
    let nonzero_params = nonzero_params(&model);
    prune::sparsify(&mut model, 1.0)?;
    let written = write_model(&mut model, &args.output, &test, baseline, nonzero_params)?;
    let out = Report {
        written,
        layers: report
            .densities
            .iter()
            .map(|(p, d)| LayerRow {
                path: p.to_string(),
                density: *d,
            })
            .collect(),
    };
    if args.common.json {
        return print_json(&out);
    }
    for l in &out.layers {
        println!(
            "layer {:>6}: {:6.2}% of weights kept",
            l.path,
            100.0 * l.density
        );
    }
    println!(
        "pruned {}: accuracy {:.2}% (was {:.2}%), {} of {} parameters nonzero, {} bytes \
         ({:.1}x smaller than {} bytes of f32), saved {}",
        args.model.model.display(),
        100.0 * out.written.accuracy,
        100.0 * out.written.baseline.accuracy,
        out.written.nonzero_params,
        out.written.params,
        out.written.file_bytes,
        out.written.ratio,
        out.written.baseline.dense_bytes,
        out.written.output
    );
    Ok(())
}
