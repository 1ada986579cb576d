//! `slimnet run MODEL --input x.npy -o y.npy`: inference on a NumPy array.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::ModelArgs;

/// Arguments of `slimnet run`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Input: NumPy array, float32, `[N, ...]` matching the model's input (NCHW for images).
    #[arg(long)]
    input: PathBuf,
    /// Output: NumPy array, float32.
    #[arg(short, long)]
    output: PathBuf,
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    super::check_output(&args.output, &[&args.model.model, &args.input])?;
    let mut model = args.model.load()?;
    let x = nn::io::npy::read_npy(&args.input)
        .with_context(|| format!("reading {}", args.input.display()))?;
    let y = model.forward(&x, nn::Mode::Eval)?;
    nn::io::npy::write_npy(&args.output, &y)
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!(
        "{} {} -> {} {}",
        args.input.display(),
        x.shape(),
        args.output.display(),
        y.shape()
    );
    Ok(())
}
