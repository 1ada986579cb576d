//! `slimnet prune MODEL -o OUT`: magnitude pruning with retraining, written as a sparse model
//! (the pruned layers become `sparse_linear` / `sparse_conv2d`, stored as relative index);
//! N:M semi-structured pruning, stored the same way; or L1-norm filter pruning, written as a
//! smaller dense model.

use std::path::PathBuf;

use anyhow::{Result, bail};
use nn::optim::OptimizerConfig;
use nn::trainer::{Progress, TrainConfig};
use prune::structured::{
    filter_candidates, prune_filters, retrain, uniform_fraction_for_macs, uniform_plan,
};
use prune::{Criterion, DropoutAdjustment, NmPattern, Schedule};

use super::{Baseline, ModelArgs, TrainDataArgs, Written, nonzero_params, print_json, write_model};
use crate::progress;

/// Arguments of `slimnet prune`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Output model file (native format: sparse layers, or smaller dense ones for filters).
    #[arg(short, long)]
    output: PathBuf,
    /// layer-std (Han et al.: per-layer threshold, or per-layer sparsity), global (one
    /// magnitude threshold over all layers), sensitivity (per-layer sparsities chosen from a
    /// sensitivity scan on training images: every layer pruned as far as one shared
    /// accuracy-drop budget allows, the budget set to reach --ratio/--sparsity), filters
    /// (L1-norm filter pruning, Li et al. 2017:
    /// removes filters and units physically, leaving a smaller dense model) or nm (N:M
    /// semi-structured, see --nm).
    #[arg(long, default_value = "layer-std")]
    method: String,
    /// Quality parameter q of the per-layer threshold q * std(W) (layer-std).
    #[arg(long)]
    quality: Option<f64>,
    /// Fraction of the weights to remove, in [0, 1] (filters: of the filters of every
    /// prunable layer).
    #[arg(long)]
    sparsity: Option<f64>,
    /// Compression ratio of the weights: sparsity = 1 - 1/R. For --method filters, R is the
    /// MAC ratio instead: multiply-accumulates per image drop R-fold, the same fraction of
    /// filters going from every conv and hidden fc layer (default 2).
    #[arg(long)]
    ratio: Option<f64>,
    /// The N:M pattern of --method nm: N kept in every M consecutive weights of a row.
    #[arg(long, default_value = "2:4")]
    nm: String,
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
    /// Random flips and 2-pixel shifts of the retraining images (as cnn-teacher's recipe).
    #[arg(long)]
    augment: bool,
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
        (m, _, _) => {
            bail!("unknown --method {m:?} (layer-std, global, sensitivity, filters or nm)")
        }
    })
}

#[derive(serde::Serialize)]
struct Report {
    #[serde(flatten)]
    written: Written,
    /// Multiply-accumulates per image of the input model (`macs` is the written one's).
    macs_before: u64,
    layers: Vec<LayerRow>,
    /// Filters (units) of each filter-pruned layer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    filters: Vec<FilterRow>,
    /// Dropout rates set for retraining (Han et al., 2015, section 3.2).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dropout: Vec<DropoutRow>,
}

#[derive(serde::Serialize)]
struct LayerRow {
    path: String,
    density: f64,
}

#[derive(serde::Serialize)]
struct FilterRow {
    path: String,
    before: usize,
    after: usize,
}

#[derive(serde::Serialize)]
struct DropoutRow {
    path: String,
    rate: f32,
}

fn train_config(args: &Args) -> Result<TrainConfig> {
    let schedule = match args.lr_schedule.as_str() {
        "cosine" => nn::schedule::Schedule::Cosine {
            warmup_steps: 0,
            min_lr: 0.0,
        },
        "constant" => nn::schedule::Schedule::Constant,
        other => bail!("unknown --lr-schedule {other:?} (cosine or constant)"),
    };
    Ok(TrainConfig {
        epochs: args.retrain_epochs,
        optimizer: OptimizerConfig::adam(args.lr),
        schedule,
        batch_size: 64,
        seed: args.common.seed,
        augment: args.augment.then(nn::data::Augment::default),
        ..TrainConfig::default()
    })
}

/// The retraining objective: distillation from `--teacher` (a file, or `self`), else the
/// labels alone.
fn objective_factory(
    args: &Args,
) -> Result<impl FnMut() -> nn::Result<Box<dyn nn::trainer::Objective>> + use<>> {
    let params = distill::DistillParams {
        temperature: args.temperature,
        alpha: args.alpha,
    };
    params.validate()?;
    let teacher = match args.teacher.as_deref() {
        Some("self") => Some(args.model.model.clone()),
        Some(p) => Some(PathBuf::from(p)),
        None => None,
    };
    let arch = args.model.arch.clone();
    Ok(move || -> nn::Result<Box<dyn nn::trainer::Objective>> {
        Ok(match &teacher {
            Some(p) => Box::new(distill::Distillation::new(
                pipeline::load(p, arch.as_deref())?,
                params,
            )?),
            None => Box::new(nn::trainer::CrossEntropy),
        })
    })
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

/// Runs `f` with a progress callback drawing a bar over the retraining steps.
fn with_progress<T>(
    args: &Args,
    config: &TrainConfig,
    train_len: usize,
    f: impl FnOnce(&mut dyn FnMut(&Progress)) -> Result<T>,
) -> Result<T> {
    let steps = config.steps_per_epoch(train_len) * args.retrain_epochs;
    let pb = progress::bar(steps as u64, args.common.json);
    let mut done = 0u64;
    let out = f(&mut |p: &Progress| {
        if !p.epoch_done {
            done += 1;
            pb.set_position(done);
            pb.set_message(format!("loss {:.4}", p.loss));
        }
    });
    pb.finish_and_clear();
    out
}

/// `--method filters`: L1-norm filter pruning to a MAC ratio or a uniform fraction, retrained
/// as a smaller dense model.
fn run_filters(args: &Args) -> Result<Report> {
    let mut model = args.model.load()?;
    let (train, test) = args.common.load()?;
    let baseline = Baseline::measure(&mut model, &args.model.model, &test)?;
    let macs_before = model.macs_per_sample()?;
    let dropout = DropoutAdjustment::capture(&model)?;
    let candidates = filter_candidates(&model);
    for (p, e) in &candidates.skipped {
        eprintln!("filters: layer {p} keeps its filters: {e}");
    }
    let fraction = match (args.sparsity, args.ratio) {
        (Some(_), Some(_)) => bail!("give --sparsity or --ratio, not both"),
        (Some(s), None) => s,
        (None, r) => uniform_fraction_for_macs(&model, &candidates.prunable, r.unwrap_or(2.0))?,
    };
    eprintln!(
        "filters: removing {:.1}% of the filters of layers {}",
        100.0 * fraction,
        candidates
            .prunable
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let report = prune_filters(&mut model, &uniform_plan(&candidates.prunable, fraction))?;
    let config = train_config(args)?;
    let retrained = with_progress(args, &config, train.len(), |cb| {
        Ok(retrain(&mut model, &dropout, None, &config, &train, cb)?)
    })?;
    let nonzero = nonzero_params(&model);
    let written = write_model(&mut model, &args.output, &test, baseline, nonzero)?;
    Ok(Report {
        written,
        macs_before,
        layers: report
            .layers
            .iter()
            .map(|c| LayerRow {
                path: c.path.to_string(),
                density: c.after as f64 / c.before as f64,
            })
            .collect(),
        filters: report
            .layers
            .iter()
            .map(|c| FilterRow {
                path: c.path.to_string(),
                before: c.before,
                after: c.after,
            })
            .collect(),
        dropout: dropout_rows(&retrained.dropout_rates),
    })
}

/// `--method nm`: N:M masks on every linear and conv2d weight, retrained with the mask held,
/// written with sparse layers.
fn run_nm(args: &Args) -> Result<Report> {
    let pattern: NmPattern = args.nm.parse()?;
    let mut model = args.model.load()?;
    let (train, test) = args.common.load()?;
    let baseline = Baseline::measure(&mut model, &args.model.model, &test)?;
    let macs_before = model.macs_per_sample()?;
    let dropout = DropoutAdjustment::capture(&model)?;
    let mask = prune::nm_masks(&model, pattern)?;
    let config = train_config(args)?;
    let retrained = with_progress(args, &config, train.len(), |cb| {
        Ok(retrain(
            &mut model,
            &dropout,
            Some(mask.clone()),
            &config,
            &train,
            cb,
        )?)
    })?;
    mask.apply(&mut model)?;
    let nonzero = nonzero_params(&model);
    prune::sparsify(&mut model, 1.0)?;
    let written = write_model(&mut model, &args.output, &test, baseline, nonzero)?;
    Ok(Report {
        written,
        macs_before,
        layers: density_rows(&mask.densities()),
        filters: Vec::new(),
        dropout: dropout_rows(&retrained.dropout_rates),
    })
}

fn density_rows(d: &[(nn::LayerPath, f64)]) -> Vec<LayerRow> {
    d.iter()
        .map(|(p, d)| LayerRow {
            path: p.to_string(),
            density: *d,
        })
        .collect()
}

fn dropout_rows(d: &[(nn::LayerPath, f32)]) -> Vec<DropoutRow> {
    d.iter()
        .map(|(p, r)| DropoutRow {
            path: p.to_string(),
            rate: *r,
        })
        .collect()
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let out = match args.method.as_str() {
        "filters" => run_filters(&args)?,
        "nm" => run_nm(&args)?,
        _ => run_magnitude(&args)?,
    };
    print_report(&args, &out)
}

/// `--method layer-std|global|sensitivity`: magnitude pruning on a schedule, written with sparse layers.
fn run_magnitude(args: &Args) -> Result<Report> {
    let criterion = criterion(args)?;
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
    let macs_before = model.macs_per_sample()?;
    let criterion = match (args.method.as_str(), criterion) {
        ("sensitivity", Criterion::GlobalSparsity(s)) => {
            by_sensitivity(&mut model, &train, s, args.common.json)?
        }
        (_, c) => c,
    };
    let config = train_config(args)?;
    let mut objective = objective_factory(args)?;
    let report = with_progress(args, &config, train.len(), |cb| {
        Ok(prune::prune_model_with(
            &mut model,
            criterion,
            schedule,
            &config,
            &train,
            args.retrain_epochs,
            &mut objective,
            cb,
        )?)
    })?;
    let nonzero_params = nonzero_params(&model);
    prune::sparsify(&mut model, 1.0)?;
    let written = write_model(&mut model, &args.output, &test, baseline, nonzero_params)?;
    Ok(Report {
        written,
        macs_before,
        layers: density_rows(&report.densities),
        filters: Vec::new(),
        dropout: Vec::new(),
    })
}

fn print_report(args: &Args, out: &Report) -> Result<()> {
    if args.common.json {
        return print_json(out);
    }
    if out.filters.is_empty() {
        for l in &out.layers {
            println!(
                "layer {:>6}: {:6.2}% of weights kept",
                l.path,
                100.0 * l.density
            );
        }
    }
    for f in &out.filters {
        println!(
            "layer {:>6}: {} of {} filters kept",
            f.path, f.after, f.before
        );
    }
    for d in &out.dropout {
        println!("dropout {:>6}: rate {:.3} for retraining", d.path, d.rate);
    }
    println!(
        "pruned {}: accuracy {:.2}% (was {:.2}%), {} of {} parameters nonzero, {} MACs per \
         image (was {}), {} bytes ({:.1}x smaller than {} bytes of f32), saved {}",
        args.model.model.display(),
        100.0 * out.written.accuracy,
        100.0 * out.written.baseline.accuracy,
        out.written.nonzero_params,
        out.written.params,
        out.written.macs,
        out.macs_before,
        out.written.file_bytes,
        out.written.ratio,
        out.written.baseline.dense_bytes,
        out.written.output
    );
    Ok(())
}
