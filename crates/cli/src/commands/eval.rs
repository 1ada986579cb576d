//! `slimnet eval FILE`: accuracy, loss and confusion matrix on the Fashion-MNIST test set.

use std::path::PathBuf;

use anyhow::Result;

use super::{ModelArgs, print_json};

/// Arguments of `slimnet eval`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Directory holding the Fashion-MNIST IDX files (default: $SLIMNET_DATA, the Debian
    /// package, then the fixtures slice).
    #[arg(long)]
    data: Option<PathBuf>,
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
    let (source, test) = nn::data::source::load_test(args.data.as_deref())?;
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
            .confusion_table(Some(&nn::data::idx::FASHION_MNIST_LABELS))
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
