//! `slimnet import model.onnx -o model.model`: convert to the native format.

use std::path::PathBuf;

use anyhow::Result;

use super::ModelArgs;

/// Arguments of `slimnet import`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Output file (native format).
    #[arg(short, long)]
    output: PathBuf,
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    super::check_output(&args.output, &[&args.model.model])?;
    let model = args.model.load()?;
    let bytes = super::save_model(&model, Default::default(), &args.output)?;
    println!(
        "imported {} ({} layers, {} parameters) -> {} ({} bytes)",
        args.model.model.display(),
        model.layers.len(),
        model.param_count(),
        args.output.display(),
        bytes
    );
    Ok(())
}
