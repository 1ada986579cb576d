//! `slimnet share MODEL -o OUT`: k-means weight sharing with centroid fine-tuning (Deep
//! Compression, section 3). Layers are written as `shared_linear` / `shared_conv2d` (packed
//! codes and a codebook) or, when pruned below half density (a model written by `slimnet
//! prune`), as `sparse_shared_linear` / `sparse_shared_conv2d` (relative-index gaps plus a
//! code per entry, Deep Compression's storage).

use std::path::PathBuf;

use anyhow::{Result, bail};
use pipeline::compress::{ShareDetail, StageDetail};
use pipeline::recipe::{LrSchedule, Recipe, Retrain, ShareInit, ShareStage, Stage};

use super::compress::run_recipe;
use super::{ModelArgs, TrainDataArgs, Written, print_json};
use crate::checkpointing::{CheckpointArgs, run_key};

/// Arguments of `slimnet share`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Output model file (native format).
    #[arg(short, long)]
    output: PathBuf,
    /// Code width of fully connected layers (k = 2^bits codes, code 0 the pruned zero; 1..=8).
    #[arg(long, default_value_t = 5)]
    bits_fc: u32,
    /// Code width of convolutions (k = 2^bits codes, code 0 the pruned zero; 1..=8).
    #[arg(long, default_value_t = 8)]
    bits_conv: u32,
    /// Centroid initialisation: linear, density, random or kmeans++.
    #[arg(long, default_value = "linear")]
    init: String,
    /// Epochs of centroid fine-tuning (0: none).
    #[arg(long, default_value_t = 1)]
    finetune_epochs: usize,
    /// Fine-tuning learning rate (Adam).
    #[arg(long, default_value_t = 1e-4)]
    lr: f32,
    /// Layers with fewer nonzero weights than this fraction are written in the sparse form.
    #[arg(long, default_value_t = 0.5)]
    sparse_below: f64,
    #[command(flatten)]
    teacher: super::TeacherArgs,
    #[command(flatten)]
    common: TrainDataArgs,
    /// Checkpoints of the centroid fine-tuning.
    #[command(flatten)]
    ckpt: CheckpointArgs,
}

#[derive(serde::Serialize)]
struct Report {
    #[serde(flatten)]
    written: Written,
    #[serde(flatten)]
    detail: ShareDetail,
    /// The teacher of the centroid fine-tuning (`self`: the input model), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    teacher: Option<String>,
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let init = match args.init.as_str() {
        "linear" => ShareInit::Linear,
        "density" => ShareInit::Density,
        "random" => ShareInit::Random,
        "kmeans++" => ShareInit::KMeansPlusPlus,
        other => bail!("unknown --init {other:?} (linear, density, random or kmeans++)"),
    };
    let recipe = Recipe {
        name: "share".into(),
        stages: vec![Stage::Share(ShareStage {
            bits_fc: args.bits_fc,
            bits_conv: args.bits_conv,
            init,
            finetune: Retrain {
                epochs: args.finetune_epochs,
                lr: args.lr,
                lr_schedule: LrSchedule::Constant,
                ..Retrain::default()
            },
            sparse_below: args.sparse_below,
            teacher: args.teacher.teacher(),
        })],
        huffman: true,
    };
    recipe.validate("from the command line")?;
    let key = run_key("share", &args, |a| {
        (&mut a.output, &mut a.ckpt, &mut a.common)
    });
    let Some(mut out) = run_recipe(&args.model, recipe, &args.output, &args.common, key)? else {
        return Ok(());
    };
    let detail = match out.report.stages.pop().map(|s| s.detail) {
        Some(StageDetail::Share(d)) => d,
        _ => bail!("the share stage left no report"),
    };
    let out = Report {
        written: out.written,
        detail,
        teacher: args.teacher.teacher.clone(),
    };
    if args.common.json {
        return print_json(&out);
    }
    for l in &out.detail.layers {
        println!(
            "layer {:>6} {:<21} {} bits, k {:>3}, index {:>2} bits, {:>7} nonzero, {:>8} bytes, \
             rate {:.1}x",
            l.path, l.kind, l.bits, l.k, l.index_bits, l.nnz, l.bytes, l.rate
        );
    }
    println!(
        "shared {}: accuracy {:.2}% (was {:.2}%; {:.2}% before fine-tuning), {} bytes ({:.1}x \
         smaller than {} bytes of f32), saved {}",
        args.model.model.display(),
        100.0 * out.written.accuracy,
        100.0 * out.written.baseline.accuracy,
        100.0 * out.detail.accuracy_before_finetune,
        out.written.file_bytes,
        out.written.ratio,
        out.written.baseline.dense_bytes,
        out.written.output
    );
    Ok(())
}
