//! `slimnet inspect FILE`: layers, output shapes, parameters, bytes, multiply-accumulates,
//! and the code width and codebook of every shared layer.

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
    /// Code width, codebook size and storage of every shared layer, by path.
    shared: Vec<pipeline::report::SharedRow>,
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
        shared: pipeline::report::shared_rows(&model),
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
    for l in &report.shared {
        println!(
            "shared {:>6} {:<21} {} bits, codebook {:>3} ({} bytes), index {:>2} bits, {} bytes, \
             rate {:.1}x",
            l.path, l.kind, l.bits, l.k, l.codebook_bytes, l.index_bits, l.bytes, l.rate
        );
    }
    println!(
        "total: {} parameters, {} bytes of parameters, {} MACs per image",
        report.params, report.bytes, report.macs
    );
    Ok(())
}
