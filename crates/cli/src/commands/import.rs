//! `slimnet import model.onnx -o model.slim`: convert a model (to the native format, or to
//! the format `-o`'s extension names).

use std::path::PathBuf;

use anyhow::Result;

use super::ModelArgs;

/// Arguments of `slimnet import`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Output file; the format follows the extension: .slim/.model native, .onnx ONNX,
    /// .safetensors safetensors (another extension: native, with a note).
    #[arg(short, long)]
    output: PathBuf,
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    super::check_output(&args.output, &[&args.model.model])?;
    let model = args.model.load()?;
    super::check_model_output(
        &args.output,
        &[&args.model.model],
        super::Writes::Dense,
        Some(&model),
    )?;
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
