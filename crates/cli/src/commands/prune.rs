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
    /// layer-std (Han et al.: per-layer threshold, or per-layer sparsity) or global (one
    /// magnitude threshold over all layers). filters and nm are not implemented yet.
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
        ("global", Some(_), _) => bail!("--method global takes --sparsity or --ratio"),
        ("layer-std", Some(_), Some(_)) => bail!("give --quality or --sparsity/--ratio, not both"),
        ("filters" | "nm", _, _) => bail!("--method {} is not implemented yet", a.method),
        (m, _, _) => bail!("unknown --method {m:?} (layer-std or global)"),
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
    let config = TrainConfig {
        optimizer: OptimizerConfig::adam(args.lr),
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
    let report = prune::prune_model(
        &mut model,
        criterion,
        schedule,
        &config,
        &train,
        args.retrain_epochs,
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
