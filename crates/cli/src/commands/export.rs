//! `slimnet export MODEL -o model.onnx`: write a model as ONNX (opset 13) or safetensors.

use std::path::PathBuf;

use anyhow::Result;

use super::ModelArgs;

/// Arguments of `slimnet export`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Output file: `.onnx` (runs in onnxruntime) or `.safetensors` (PyTorch state_dict names);
    /// `.slim`/`.model` (or another extension, with a note) write the native format.
    #[arg(short, long)]
    output: PathBuf,
    /// Rebuild compressed layers (sparse, shared) as the dense layers their weights stand for,
    /// so that ONNX and safetensors can hold them. Without it a compressed layer is refused.
    #[arg(long)]
    densify: bool,
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    super::check_output(&args.output, &[&args.model.model])?;
    let mut model = args.model.load()?;
    if args.densify {
        let n = pipeline::compress::densify(&mut model)?;
        crate::note!("densified {n} compressed layers");
    }
    super::check_model_output(
        &args.output,
        &[&args.model.model],
        super::Writes::Dense,
        Some(&model),
    )?;
    let bytes = super::save_model(&model, Default::default(), &args.output)?;
    println!(
        "exported {} -> {} ({} bytes)",
        args.model.model.display(),
        args.output.display(),
        bytes
    );
    Ok(())
}
