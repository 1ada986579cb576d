//! `slimnet decompose MODEL -o OUT`: factors weight matrices and convolution filters so the
//! model needs fewer multiply-accumulates (Denton et al. 2014; Jaderberg et al. 2014;
//! Zhang et al. 2016): linear layers by truncated SVD, convolutions as separable `k x 1`
//! then `1 x k` pairs (Jaderberg's scheme 2), as separable basis filters per input channel
//! combined by a 1x1 convolution (scheme 1), or as a convolution into fewer channels then a
//! 1x1 convolution; the last factor refit by least squares on real activations; then
//! optional fine-tuning with the ordinary Trainer. The model's last factorable layer (the
//! classifier) is kept unless `--include-last`. The written model holds the factors as
//! plain layers.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Result, bail};
use decompose::{
    AlternateParams, DecomposeParams, DecomposeReport, Method, RankRule, RefitParams, Selection,
};
use nn::trainer::{TrainConfig, Trainer};

use super::{Baseline, ModelArgs, TrainDataArgs, Written, print_json};
use crate::checkpointing::{CheckpointArgs, run_key};
use crate::progress;

/// Arguments of `slimnet decompose`.
#[derive(clap::Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("ranks").args(["rank", "energy", "mac_target"])))]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Output model file.
    #[arg(short, long)]
    output: PathBuf,
    /// The same rank for every factored layer (layers it would not make cheaper are kept).
    #[arg(long)]
    rank: Option<usize>,
    /// Per layer, the smallest rank keeping this fraction of the weight's energy (default
    /// 0.95 when no rank option is given).
    #[arg(long)]
    energy: Option<f64>,
    /// The whole model at most this fraction of its multiply-accumulates; per-layer ranks
    /// chosen greedily by kept energy.
    #[arg(long)]
    mac_target: Option<f64>,
    /// svd (linear layers), separable (and convolutions as k x 1 then 1 x k: Jaderberg's
    /// scheme 2), separable1 (and convolutions as M separable basis filters per input
    /// channel then 1x1: scheme 1; the rank is M), channel (and convolutions as a
    /// convolution into fewer channels then 1x1).
    #[arg(long, default_value = "svd")]
    method: String,
    /// Also factor the model's last factorable layer (the classifier); by default it is kept.
    #[arg(long)]
    include_last: bool,
    /// Only these layers (comma-separated paths such as `1,3` or `5/0/1`); default: every
    /// layer the method factors.
    #[arg(long, value_delimiter = ',')]
    layers: Option<Vec<String>>,
    /// Training images the second factors are refit on (0: the SVD factors as they are).
    #[arg(long, default_value_t = 256)]
    calibration: usize,
    /// Rounds of alternating minimisation of each pair's output error on the calibration
    /// images after the refit (10 Adam steps on the first factor, then the second refit).
    #[arg(long, default_value_t = 0)]
    alternate: usize,
    /// Epochs of fine-tuning after the decomposition (0: none).
    #[arg(long, default_value_t = 0)]
    finetune_epochs: usize,
    /// Fine-tuning learning rate (Adam, cosine to 0).
    #[arg(long, default_value_t = 1e-4)]
    lr: f32,
    /// Fine-tuning mini-batch size.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// The fine-tuning's teacher (`self`: the model before the decomposition).
    #[command(flatten)]
    teacher: super::TeacherArgs,
    #[command(flatten)]
    common: TrainDataArgs,
    /// Checkpoints of the fine-tuning (--finetune-epochs).
    #[command(flatten)]
    ckpt: CheckpointArgs,
}

#[derive(serde::Serialize)]
struct Report {
    #[serde(flatten)]
    written: Written,
    method: Method,
    selection: Selection,
    /// Test accuracy right after the decomposition (and refit), before fine-tuning.
    accuracy_before_finetune: f64,
    finetune_epochs: usize,
    /// Convolution multiply-accumulates per image, before and after.
    conv_macs_before: u64,
    conv_macs_after: u64,
    /// Linear-layer multiply-accumulates per image, before and after.
    linear_macs_before: u64,
    linear_macs_after: u64,
    /// Whole-model multiply-accumulates per image before / after.
    mac_ratio: f64,
    #[serde(flatten)]
    decomposition: DecomposeReport,
    /// The fine-tuning's teacher, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    teacher: Option<String>,
}

fn selection(args: &Args) -> Selection {
    match (args.rank, args.energy, args.mac_target) {
        (Some(r), _, _) => Selection::PerLayer(RankRule::Given(r)),
        (_, _, Some(m)) => Selection::ModelMacs(m),
        (_, e, _) => Selection::PerLayer(RankRule::Energy(e.unwrap_or(0.95))),
    }
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    super::check_output(&args.output, &[&args.model.model])?;
    let key = run_key("decompose", &args, |a| {
        (&mut a.output, &mut a.ckpt, &mut a.common)
    });
    let resumable = key.resumable(&args.output, &[&args.model.model])?;
    let Some(method) = Method::parse(&args.method) else {
        bail!(
            "unknown --method {:?} (svd, separable, separable1 or channel)",
            args.method
        );
    };
    let selection = selection(&args);
    if let Selection::PerLayer(rule) = selection {
        rule.validate()?;
    }
    let mut model = args.model.load()?;
    nn::layers::fold_batchnorms(&mut model)?;
    let (train, test) = args.common.load()?;
    let baseline_accuracy = nn::metrics::evaluate(&mut model, &test, 256)?.accuracy;
    let baseline_params = model.param_count();
    let kinds_before = decompose::macs_by_kind(&model)?;

    let calibration = if args.calibration > 0 {
        let mut idx: Vec<usize> = (0..train.len()).collect();
        tensor_core::rng::Rng::seed_from_u64(args.common.seed).shuffle(&mut idx);
        idx.truncate(args.calibration);
        let (images, _) = train.batch(&idx)?;
        Some(nn::metrics::to_model_input(&model, images)?)
    } else {
        None
    };
    let layers = match &args.layers {
        Some(ps) => Some(
            ps.iter()
                .map(|p| nn::LayerPath::parse(p))
                .collect::<nn::Result<Vec<_>>>()?,
        ),
        None => None,
    };
    let params = DecomposeParams {
        method,
        layers,
        include_last: args.include_last,
        selection,
        refit: RefitParams {
            seed: args.common.seed,
            ..RefitParams::default()
        },
        alternate: AlternateParams {
            rounds: args.alternate,
            ..AlternateParams::default()
        },
    };
    let objective = args.teacher.objective(&model, false)?;
    crate::note!("decomposing ({method:?}, {selection:?})");
    let decomposition = decompose::decompose(&mut model, &params, calibration.as_ref())?;
    let accuracy_before_finetune = nn::metrics::evaluate(&mut model, &test, 256)?.accuracy;
    let accuracy = if args.finetune_epochs > 0 {
        let tuned =
            resumable.run_phases(|| finetune(&mut model, &args, objective, &train, &test))?;
        let Some(accuracy) = tuned else {
            return Ok(());
        };
        accuracy
    } else {
        accuracy_before_finetune
    };
    let kinds_after = decompose::macs_by_kind(&model)?;
    let kind = |m: &BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);

    let mut metadata = BTreeMap::new();
    metadata.insert("accuracy".to_string(), format!("{accuracy}"));
    metadata.insert(
        "decomposed_from".to_string(),
        args.model.model.display().to_string(),
    );
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
            Baseline::of(&args.model.model, baseline_accuracy, baseline_params)?,
        )?,
        method,
        selection,
        accuracy_before_finetune,
        finetune_epochs: args.finetune_epochs,
        conv_macs_before: kind(&kinds_before, "conv2d"),
        conv_macs_after: kind(&kinds_after, "conv2d"),
        linear_macs_before: kind(&kinds_before, "linear"),
        linear_macs_after: kind(&kinds_after, "linear"),
        mac_ratio: decomposition.macs_before as f64 / decomposition.macs_after.max(1) as f64,
        decomposition,
        teacher: args.teacher.teacher.clone(),
    };
    if args.common.json {
        return print_json(&report);
    }
    for l in &report.decomposition.layers {
        let rank = l.rank.map_or("kept".to_string(), |r| {
            format!("rank {r:>3}/{}", l.max_rank)
        });
        println!(
            "layer {:>6} {:<7} {:<9} {:<13} energy {:>6.2}%  MACs {:>9} -> {:>9}  params {:>7} -> {:>7}{}",
            l.path,
            l.kind,
            l.scheme.name(),
            rank,
            100.0 * l.kept_energy,
            l.macs_before,
            l.macs_after,
            l.params_before,
            l.params_after,
            l.refit
                .map(|r| format!(
                    "  output error {:.4} -> {:.4} (refit)",
                    r.error_before, r.error_after
                ))
                .unwrap_or_default()
                + &l.alternate
                    .map(|a| format!(" -> {:.4} (alternating)", a.error_after))
                    .unwrap_or_default()
        );
    }
    println!(
        "decomposed {}: {} -> {} MACs per image ({:.2}x{}), accuracy {:.2}% (was {:.2}%; \
         {:.2}% before fine-tuning), saved {}",
        args.model.model.display(),
        report.decomposition.macs_before,
        report.decomposition.macs_after,
        report.mac_ratio,
        if report.conv_macs_after > 0 {
            format!(
                "; convolutions {:.2}x",
                report.conv_macs_before as f64 / report.conv_macs_after as f64
            )
        } else {
            String::new()
        },
        100.0 * accuracy,
        100.0 * baseline_accuracy,
        100.0 * accuracy_before_finetune,
        report.written.output
    );
    Ok(())
}

/// Fine-tunes every parameter (the factors included) with Adam and a cosine schedule, from
/// `objective`; returns the test accuracy after.
fn finetune(
    model: &mut nn::Model,
    args: &Args,
    objective: Box<dyn nn::trainer::Objective>,
    train: &nn::Dataset,
    test: &nn::Dataset,
) -> Result<f64> {
    let config = TrainConfig {
        epochs: args.finetune_epochs,
        batch_size: args.batch_size,
        optimizer: nn::optim::OptimizerConfig::adam(args.lr),
        schedule: nn::schedule::Schedule::Cosine {
            warmup_steps: 0,
            min_lr: 0.0,
        },
        seed: args.common.seed,
        eval_every_epoch: false,
        ..TrainConfig::default()
    };
    let steps = config.steps_per_epoch(train.len()) * config.epochs;
    let pb = progress::bar(steps as u64, args.common.json);
    pb.set_prefix("fine-tune");
    let mut on_progress = progress::training(&pb, true, |_| None);
    let mut trainer = Trainer::new(config).with_objective(objective);
    trainer.fit(model, train, None, &mut on_progress)?;
    pb.finish_and_clear();
    model.clear_cache();
    Ok(trainer.evaluate(model, test)?.accuracy)
}
