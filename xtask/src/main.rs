//! `cargo xtask`: project tasks too long or too broad for `cargo test`.
//!
//! - `cargo xtask zoo [--models lenet300,lenet5,cnn-teacher]`: trains each zoo model with its
//!   reference recipe on the full Fashion-MNIST training set, evaluates it on the 10,000 test
//!   images, saves it under `runs/`, and prints a Markdown row per model for
//!   docs/BENCHMARKS.md (the accuracy acceptance runs of the foundation issue).
//! - `cargo xtask streams [--models runs/lenet300.model,runs/lenet5.model] [--out
//!   fixtures/streams]`: prunes and shares trained models as Deep Compression does and writes
//!   the code-index and gap streams its Huffman stage codes (huffman-codec's real test data).
//!
//! - `cargo xtask compress [--model lenet300|lenet5|cnn-teacher|FILE] [--recipe NAME|FILE]`:
//!   Deep Compression end to end (trains and caches the zoo model when needed), with the
//!   report under target/slimnet/compress/<model>/.
//!
//! - `cargo xtask bench [--quick] [--models ...] [--reps ...]`: every representation of each
//!   zoo model (dense, pruned, Deep Compression, int8, binary, decomposed, distilled) with its
//!   bytes, accuracy, energy estimate and speed, beside onnxruntime (f32 and static int8) and
//!   PyTorch, with report.md, report.json and plots under target/slimnet/bench/.

mod bench;
mod compress;
mod machine;
mod streams;
mod zoo;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "xtask", about = "slimnet project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand, Debug)]
enum Task {
    /// Every representation of each zoo model beside its peers: bytes, accuracy, energy,
    /// batch-1 latency and batch-256 throughput (report under target/slimnet/bench/).
    Bench(bench::Args),
    /// Run a compression recipe (default: Deep Compression on lenet300) end to end, with its
    /// report (per-layer table, accuracy, ratio, energy) under target/slimnet/compress/.
    Compress(compress::Args),
    /// Train and evaluate zoo models with their reference recipes (long: minutes to an hour).
    Zoo(zoo::Args),
    /// Prune, share and relative-index trained models; write their Deep Compression symbol
    /// streams (code indices and gaps) with entropy and Huffman figures.
    Streams(streams::Args),
}

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> std::path::PathBuf {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Bench(a) => bench::run(a),
        Task::Compress(a) => compress::run(a),
        Task::Zoo(a) => zoo::run(a),
        Task::Streams(a) => streams::run(a),
    }
}
