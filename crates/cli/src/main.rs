//! The `slimnet` command-line tool: train, evaluate, inspect, import and run models.
//!
//! Every command that takes a model accepts the native file (`.model`), ONNX (`.onnx`) or
//! safetensors (`.safetensors`, with `--arch`). `--json` switches to machine-readable output
//! on stdout; human-readable progress always goes to stderr.

mod checkpointing;
mod commands;
mod interrupt;
mod progress;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

/// slimnet: make trained neural networks cheap to run.
#[derive(Parser, Debug)]
#[command(
    name = "slimnet",
    version,
    about = "slimnet: make trained neural networks cheap to run (prune, quantize, binarize, share, \
             decompose, distill; Huffman-coded .slim files executed as stored)",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Worker threads of every kernel (default: one per CPU). `bench` takes a list (`1,2`)
    /// and times each count.
    #[arg(long, global = true, value_delimiter = ',')]
    threads: Vec<usize>,
    /// No progress bars or progress lines on stderr (errors and warnings still print).
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Go on with a warning when a model's weights or an input hold NaN or infinity
    /// (default: refuse, naming the tensor and element).
    #[arg(long, global = true)]
    allow_nonfinite: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a zoo model on Fashion-MNIST and save it.
    Train(commands::train::Args),
    /// Evaluate a model on the Fashion-MNIST test set (accuracy, loss, confusion matrix).
    Eval(commands::eval::Args),
    /// List a model's layers, shapes, parameters, bytes and multiply-accumulates.
    Inspect(commands::inspect::Args),
    /// Convert an ONNX or safetensors model to the native format.
    Import(commands::import::Args),
    /// Export a model as ONNX or safetensors.
    Export(commands::export::Args),
    /// Run a model on a NumPy array (NCHW float32) and write its output as .npy.
    Run(commands::run::Args),
    /// Train a student on a teacher's soft targets or logits (Hinton et al. 2015).
    Distill(commands::distill::Args),
    /// Run a compression recipe (deep-compression, or a TOML/JSON file) and write the .slim.
    Compress(commands::compress::Args),
    /// Prune a model by weight magnitude, retrain, and write it with sparse layers.
    Prune(commands::prune::Args),
    /// Share weights through per-layer k-means codebooks, fine-tune the centroids, write it.
    Share(commands::share::Args),
    /// Factor weights (SVD, separable or channel-decomposed convolutions) to cut MACs.
    Decompose(commands::decompose::Args),
    /// Quantize weights and activations to integers (post-training, calibrated), run by int8 kernels.
    Quantize(commands::quantize::Args),
    /// Binary weights (BWN) or weights and activations (XNOR-Net, BNN), trained with the
    /// straight-through estimator, written packed for the XNOR-popcount kernels.
    Binarize(commands::binarize::Args),
    /// Accuracy against sparsity for each layer pruned alone, as a table and an SVG plot.
    Sensitivity(commands::sensitivity::Args),
    /// Time inference: latency percentiles and images/s per batch size and thread count.
    Bench(commands::bench::Args),
}

fn main() -> std::process::ExitCode {
    // Rust ignores SIGPIPE, so a closed pipe (`slimnet inspect M --json | head`) made the next
    // print panic; the default action ends the process quietly, as for any Unix filter.
    #[cfg(unix)]
    // SAFETY: called once at start, before any thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    interrupt::install();
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The error chain, one cause per clause; no backtrace for a user-facing tool.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    progress::set_quiet(cli.quiet);
    commands::set_allow_nonfinite(cli.allow_nonfinite);
    let bench_threads = match (&cli.command, cli.threads.as_slice()) {
        (Command::Bench(_), counts) => counts.to_vec(),
        (_, []) => Vec::new(),
        (_, &[n]) if n > 0 => {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global()
                .context("setting the thread count")?;
            Vec::new()
        }
        (_, counts) => bail!("--threads takes one positive count here, got {counts:?}"),
    };
    match cli.command {
        Command::Train(a) => commands::train::run(a),
        Command::Eval(a) => commands::eval::run(a),
        Command::Inspect(a) => commands::inspect::run(a),
        Command::Import(a) => commands::import::run(a),
        Command::Export(a) => commands::export::run(a),
        Command::Run(a) => commands::run::run(a),
        Command::Compress(a) => commands::compress::run(a),
        Command::Distill(a) => commands::distill::run(a),
        Command::Prune(a) => commands::prune::run(a),
        Command::Share(a) => commands::share::run(a),
        Command::Decompose(a) => commands::decompose::run(a),
        Command::Quantize(a) => commands::quantize::run(a),
        Command::Binarize(a) => commands::binarize::run(a),
        Command::Sensitivity(a) => commands::sensitivity::run(a),
        Command::Bench(a) => commands::bench::run(a, bench_threads),
    }
}
