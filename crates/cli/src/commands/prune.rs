//! `slimnet prune MODEL -o OUT`: magnitude pruning with retraining, written as a sparse model
//! (the pruned layers become `sparse_linear` / `sparse_conv2d`, stored as relative index);
//! N:M semi-structured pruning, stored the same way; or L1-norm filter pruning, written as a
//! smaller dense model.

use std::path::PathBuf;

use anyhow::{Result, bail};
use pipeline::compress::{PruneDetail, StageDetail};
use pipeline::recipe::{
    LrSchedule, PruneMethod, PruneSchedule, PruneStage, Recipe, Retrain, Stage,
};

use super::compress::run_recipe;
use super::{ModelArgs, TrainDataArgs, Written, print_json};
use crate::checkpointing::{CheckpointArgs, run_key};

/// Arguments of `slimnet prune`.
#[derive(clap::Args, Debug, Clone)]
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
    #[command(flatten)]
    teacher: super::TeacherArgs,
    #[command(flatten)]
    common: TrainDataArgs,
    /// Checkpoints of the retraining (every round of the schedule).
    #[command(flatten)]
    ckpt: CheckpointArgs,
}

/// The prune stage the arguments describe.
fn stage(a: &Args) -> Result<PruneStage> {
    let method = match a.method.as_str() {
        "layer-std" => PruneMethod::LayerStd,
        "global" => PruneMethod::Global,
        "sensitivity" => PruneMethod::Sensitivity,
        "filters" => PruneMethod::Filters,
        "nm" => PruneMethod::Nm,
        m => bail!("unknown --method {m:?} (layer-std, global, sensitivity, filters or nm)"),
    };
    let schedule = match a.schedule.as_str() {
        "oneshot" => PruneSchedule::OneShot,
        "iterative" => PruneSchedule::Iterative,
        "agp" => PruneSchedule::Agp,
        other => bail!("unknown --schedule {other:?} (oneshot, iterative or agp)"),
    };
    let lr_schedule = match a.lr_schedule.as_str() {
        "cosine" => LrSchedule::Cosine,
        "constant" => LrSchedule::Constant,
        other => bail!("unknown --lr-schedule {other:?} (cosine or constant)"),
    };
    if a.sparsity.is_some() && a.ratio.is_some() {
        bail!("give --sparsity or --ratio, not both");
    }
    if let Some(r) = a.ratio
        && r < 1.0
    {
        bail!("--ratio {r} must be >= 1");
    }
    Ok(PruneStage {
        method,
        ratio: a.ratio,
        sparsity: a.sparsity,
        quality: a.quality,
        nm: a.nm.clone(),
        schedule,
        rounds: a.rounds,
        retrain: Retrain {
            epochs: a.retrain_epochs,
            lr: a.lr,
            lr_schedule,
            augment: a.augment,
            ..Retrain::default()
        },
        teacher: a.teacher.teacher(),
    })
}

#[derive(serde::Serialize)]
struct Report {
    #[serde(flatten)]
    written: Written,
    /// Multiply-accumulates per image of the input model (`macs` is the written one's).
    macs_before: u64,
    #[serde(flatten)]
    detail: PruneDetail,
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let recipe = Recipe {
        name: format!("prune {}", args.method),
        stages: vec![Stage::Prune(stage(&args)?)],
        huffman: true,
    };
    recipe.validate("from the command line")?;
    let key = run_key("prune", &args, |a| {
        (&mut a.output, &mut a.ckpt, &mut a.common)
    });
    let Some(mut out) = run_recipe(&args.model, recipe, &args.output, &args.common, key)? else {
        return Ok(());
    };
    let detail = match out.report.stages.pop().map(|s| s.detail) {
        Some(StageDetail::Prune(d)) => d,
        _ => bail!("the prune stage left no report"),
    };
    print_report(
        &args,
        &Report {
            written: out.written,
            macs_before: out.report.macs_before,
            detail,
        },
    )
}

fn print_report(args: &Args, out: &Report) -> Result<()> {
    if args.common.json {
        return print_json(out);
    }
    if out.detail.filters.is_empty() {
        for l in &out.detail.densities {
            println!(
                "layer {:>6}: {:6.2}% of weights kept",
                l.path,
                100.0 * l.density
            );
        }
    }
    for f in &out.detail.filters {
        println!(
            "layer {:>6}: {} of {} filters kept",
            f.path, f.after, f.before
        );
    }
    for d in &out.detail.dropout {
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
