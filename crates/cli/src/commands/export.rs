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
    let ext = args
        .output
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    // Integer layers go out as QDQ (quant::onnx), everything else through nn's exporter.
    let quantized = model.layers.iter().any(|l| l.kind().starts_with("quant"));
    match ext.as_str() {
        "onnx" if quantized => quant::onnx::export_qdq_bytes(&model)
            .map_err(nn::NnError::from)
            .and_then(|b| nn::io::atomic::write_atomic(&args.output, &b)),
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
