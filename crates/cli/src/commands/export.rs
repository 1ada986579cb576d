//! `slimnet export MODEL -o model.onnx`: write a model as ONNX (opset 13) or safetensors.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use super::ModelArgs;

/// Arguments of `slimnet export`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Output file: `.onnx` (runs in onnxruntime) or `.safetensors` (PyTorch state_dict names).
    #[arg(short, long)]
    output: PathBuf,
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let model = args.model.load()?;
    let ext = args
        .output
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "onnx" => nn::io::onnx::export(&model, &args.output),
        "safetensors" => nn::io::safetensors::save_safetensors(&model, &args.output),
        other => bail!(
            "{}: unknown output format {other:?} (.onnx or .safetensors)",
            args.output.display()
        ),
    }
    .with_context(|| format!("writing {}", args.output.display()))?;
    let bytes = std::fs::metadata(&args.output)?.len();
    println!(
        "exported {} -> {} ({} bytes)",
        args.model.model.display(),
        args.output.display(),
        bytes
    );
    Ok(())
}
