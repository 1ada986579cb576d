//! `slimnet eval FILE`: accuracy, loss and confusion matrix on a test set (Fashion-MNIST by
//! default, or any `--data` interop reads).

use std::path::PathBuf;

use anyhow::Result;

use super::{ModelArgs, print_json};

/// Arguments of `slimnet eval`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// The data: a directory of Fashion-MNIST IDX files (default: $SLIMNET_DATA, the Debian
    /// package, then the fixtures slice), a .npz, a .npy pair, a CIFAR-10 directory or an
    /// image folder.
    #[arg(long)]
    data: Option<PathBuf>,
    #[command(flatten)]
    data_opts: super::DataOptArgs,
    /// Seed of --test-split.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Evaluate only the first N test images.
    #[arg(long)]
    limit: Option<usize>,
    /// Batch size.
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Report {
    model: String,
    data: String,
    evaluation: nn::metrics::Evaluation,
    seconds: f64,
    images_per_second: f64,
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let mut model = args.model.load()?;
    let opts = args
        .data_opts
        .options(Some(args.model.model.as_path()), args.seed)?;
    let (source, test) = super::load_test_data(args.data.as_deref(), &opts, &model)?;
    crate::note!("data: {source}");
    let test = match args.limit {
        Some(n) => test.take(n)?,
        None => test,
    };
    let start = std::time::Instant::now();
    let pb = crate::progress::bar(test.len() as u64, args.json);
    pb.set_prefix("eval");
    let evaluation =
        nn::metrics::evaluate_observed(&mut model, &test, args.batch_size, &mut |n| {
            pb.set_position(n as u64)
        })?;
    pb.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let report = Report {
        model: args.model.model.display().to_string(),
        data: source.to_string(),
        images_per_second: evaluation.samples as f64 / seconds,
        evaluation,
        seconds,
    };
    if args.json {
        return print_json(&report);
    }
    println!(
        "{}",
        report
            .evaluation
            .confusion_table(source.class_name_refs().as_deref())
    );
    println!(
        "{}: accuracy {:.2}% ({} images), loss {:.4}, {:.0} images/s",
        report.model,
        100.0 * report.evaluation.accuracy,
        report.evaluation.samples,
        report.evaluation.loss,
        report.images_per_second
    );
    Ok(())
}
