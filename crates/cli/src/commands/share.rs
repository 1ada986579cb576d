//! `slimnet share MODEL -o OUT`: k-means weight sharing with centroid fine-tuning (Deep
//! Compression, section 3); fully connected layers are written as `shared_linear` (packed
//! codes and a codebook).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use nn::optim::OptimizerConfig;
use nn::trainer::{Progress, TrainConfig, Trainer};
use share::{Init, KMeansParams, ShareHook};

use super::{Baseline, ModelArgs, TrainDataArgs, Written, nonzero_params, print_json, write_model};
use crate::progress;

/// Arguments of `slimnet share`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Output model file (native format).
    #[arg(short, long)]
    output: PathBuf,
    /// Code width of fully connected layers (k = 2^bits codes, code 0 the pruned zero; 1..=8).
    #[arg(long, default_value_t = 5)]
    bits_fc: u32,
    /// Code width of convolutions (1..=16; their weights stay dense f32 holding shared values
    /// until a shared convolution layer exists).
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
    #[command(flatten)]
    common: TrainDataArgs,
}

#[derive(serde::Serialize)]
struct LayerRow {
    path: String,
    bits: u32,
    codebook: usize,
}

#[derive(serde::Serialize)]
struct Report {
    #[serde(flatten)]
    written: Written,
    accuracy_before_finetune: f64,
    layers: Vec<LayerRow>,
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let init = match args.init.as_str() {
        "linear" => Init::Linear,
        "density" => Init::Density,
        "random" => Init::Random {
            seed: args.common.seed,
        },
        "kmeans++" => Init::KMeansPlusPlus {
            seed: args.common.seed,
        },
        other => bail!("unknown --init {other:?} (linear, density, random or kmeans++)"),
    };
    if !(1..=8).contains(&args.bits_fc) {
        bail!("--bits-fc {} must be in 1..=8", args.bits_fc);
    }
    let mut model = args.model.load()?;
    densify_sparse(&mut model)?;
    let (train, test) = args.common.load()?;
    let baseline = Baseline::measure(&mut model, &args.model.model, &test)?;
    let kp = KMeansParams {
        init,
        ..KMeansParams::default()
    };
    let shared = share::share_model(&mut model, args.bits_fc, args.bits_conv, &kp)?;
    let accuracy_before_finetune = nn::metrics::evaluate(&mut model, &test, 256)?.accuracy;
    let shared = if args.finetune_epochs > 0 {
        let config = TrainConfig {
            epochs: args.finetune_epochs,
            batch_size: 64,
            optimizer: OptimizerConfig::adam(args.lr),
            seed: args.common.seed,
            ..TrainConfig::default()
        };
        let steps = config.steps_per_epoch(train.len()) * config.epochs;
        let pb = progress::bar(steps as u64, args.common.json);
        let mut on_progress = |p: &Progress| pb.set_position(p.global_step as u64);
        let mut trainer = Trainer::new(config).with_hook(Box::new(ShareHook::new(shared)));
        trainer.fit(&mut model, &train, None, &mut on_progress)?;
        pb.finish_and_clear();
        trainer
            .hook::<ShareHook>()
            .context("the sharing hook after training")?
            .share
            .clone()
    } else {
        shared
    };
    let nonzero_params = nonzero_params(&model);
    share::to_shared_layers(&mut model, &shared)?;
    let written = write_model(&mut model, &args.output, &test, baseline, nonzero_params)?;
    let out = Report {
        written,
        accuracy_before_finetune,
        layers: shared
            .layers
            .iter()
            .map(|(p, s)| LayerRow {
                path: p.to_string(),
                bits: s.bits,
                codebook: s.codebook.len(),
            })
            .collect(),
    };
    if args.common.json {
        return print_json(&out);
    }
    for l in &out.layers {
        println!(
            "layer {:>6}: {} bits, {} centroids",
            l.path, l.bits, l.codebook
        );
    }
    println!(
        "shared {}: accuracy {:.2}% (was {:.2}%; {:.2}% before fine-tuning), {} bytes ({:.1}x \
         smaller than {} bytes of f32), saved {}",
        args.model.model.display(),
        100.0 * out.written.accuracy,
        100.0 * out.written.baseline.accuracy,
        100.0 * out.accuracy_before_finetune,
        out.written.file_bytes,
        out.written.ratio,
        out.written.baseline.dense_bytes,
        out.written.output
    );
    Ok(())
}

/// Sparse layers of a pruned model back to dense ones holding the zeros, so that sharing
/// clusters their kept weights (code 0 stays the pruned zero).
fn densify_sparse(model: &mut nn::Model) -> Result<()> {
    model.rewrite(&mut |_, layer| {
        let any = layer.as_any();
        Ok(if let Some(s) = any.downcast_ref::<prune::SparseLinear>() {
            Some(Box::new(s.to_linear()?))
        } else if let Some(s) = any.downcast_ref::<prune::SparseConv2d>() {
            Some(Box::new(s.to_conv2d()?))
        } else {
            None
        })
    })?;
    Ok(())
}
