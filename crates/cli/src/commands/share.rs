//! `slimnet share MODEL -o OUT`: k-means weight sharing with centroid fine-tuning (Deep
//! Compression, section 3). Layers are written as `shared_linear` / `shared_conv2d` (packed
//! codes and a codebook) or, when pruned below half density (a model written by `slimnet
//! prune`), as `sparse_shared_linear` / `sparse_shared_conv2d` (relative-index gaps plus a
//! code per entry, Deep Compression's storage).

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
    common: TrainDataArgs,
}

/// One written layer's storage (Deep Compression's accounting next to the bytes).
#[derive(serde::Serialize)]
pub(crate) struct LayerRow {
    pub(crate) path: String,
    pub(crate) kind: &'static str,
    pub(crate) bits: u32,
    /// Centroids in the codebook (`codebook` is the same figure, kept for older readers).
    pub(crate) k: usize,
    pub(crate) codebook: usize,
    /// Relative-index width (0: dense codes).
    pub(crate) index_bits: u32,
    pub(crate) nnz: usize,
    /// Stored entries, fillers included.
    pub(crate) entries: usize,
    pub(crate) index_bytes: usize,
    pub(crate) code_bytes: usize,
    pub(crate) codebook_bytes: usize,
    /// Bytes written for the layer (gaps, codes, codebook, bias).
    pub(crate) bytes: usize,
    /// Deep Compression's rate `32 n / (e (index_bits + bits) + 32 k)`.
    pub(crate) rate: f64,
}

impl LayerRow {
    fn new(path: String, s: share::LayerStorage) -> Self {
        Self {
            path,
            kind: s.kind,
            bits: s.bits,
            k: s.k,
            codebook: s.k,
            index_bits: s.index_bits,
            nnz: s.nnz,
            entries: s.entries,
            index_bytes: s.index_bytes,
            code_bytes: s.code_bytes,
            codebook_bytes: s.codebook_bytes,
            bytes: s.bytes(),
            rate: s.rate(),
        }
    }
}

/// The storage rows of every shared layer of `model`, by path.
pub(crate) fn shared_rows(model: &nn::Model) -> Vec<LayerRow> {
    let mut rows = Vec::new();
    model.visit(&mut |path, layer| {
        if let Some(s) = share::layer_storage(layer) {
            rows.push(LayerRow::new(path.to_string(), s));
        }
    });
    rows
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
    if !(1..=8).contains(&args.bits_conv) {
        bail!("--bits-conv {} must be in 1..=8", args.bits_conv);
    }
    if !(0.0..=1.0).contains(&args.sparse_below) {
        bail!("--sparse-below {} must be in [0, 1]", args.sparse_below);
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
    let forms = share::SharedForms {
        sparse_below_density: args.sparse_below,
        ..share::SharedForms::default()
    };
    share::to_shared_layers_with(&mut model, &shared, &forms)?;
    let written = write_model(&mut model, &args.output, &test, baseline, nonzero_params)?;
    let out = Report {
        written,
        accuracy_before_finetune,
        layers: shared_rows(&model),
    };
    if args.common.json {
        return print_json(&out);
    }
    for l in &out.layers {
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
