//! `slimnet inspect FILE`: layers, output shapes, parameters, bytes, multiply-accumulates.

use anyhow::Result;

use super::{ModelArgs, print_json};

/// Arguments of `slimnet inspect`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Report {
    name: String,
    input_shape: Vec<usize>,
    layers: Vec<nn::LayerSummary>,
    params: usize,
    bytes: usize,
    macs: u64,
    file_bytes: u64,
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let model = args.model.load()?;
    let layers = model.summary()?;
    let report = Report {
        name: model.name.clone(),
        input_shape: model.input_shape.clone(),
        params: model.param_count(),
        bytes: model.stored_bytes(),
        macs: layers.iter().map(|l| l.macs).sum(),
        file_bytes: std::fs::metadata(&args.model.model)?.len(),
        layers,
    };
    if args.json {
        return print_json(&report);
    }
    println!(
        "model {}  input {:?}  file {} bytes",
        report.name, report.input_shape, report.file_bytes
    );
    println!(
        "{:>3}  {:<14} {:<18} {:>10} {:>12} {:>12}",
        "#", "layer", "output", "params", "bytes", "MACs"
    );
    for l in &report.layers {
        println!(
            "{:>3}  {:<14} {:<18} {:>10} {:>12} {:>12}",
            l.index,
            l.kind,
            format!("{:?}", &l.output_shape[1..]),
            l.params,
            l.bytes,
            l.macs
        );
    }
    println!(
        "total: {} parameters, {} bytes of parameters, {} MACs per image",
        report.params, report.bytes, report.macs
    );
    Ok(())
}
