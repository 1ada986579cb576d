//! `slimnet inspect FILE`: layers, output shapes, parameters, bytes, multiply-accumulates,
//! and the code width and codebook of every shared layer.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

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
    /// Each top-level layer's section as stored in a `.slim` container: its bytes and each
    /// payload's raw and stored (Huffman-coded) bytes. Empty for other formats.
    sections: Vec<Section>,
    /// The file's metadata (recipe, source hash, accuracy when written), when it has any.
    metadata: BTreeMap<String, String>,
}

#[derive(serde::Serialize)]
struct Section {
    layer: usize,
    kind: String,
    bytes: u64,
    payloads: Vec<Payload>,
}

#[derive(serde::Serialize)]
struct Payload {
    name: String,
    raw_bytes: u64,
    stored_bytes: u64,
    symbol_bits: Option<u8>,
}

/// The sections of a container's bytes.
fn sections(bytes: &[u8], source: &str) -> Result<Vec<Section>> {
    Ok(pipeline::container::layer_infos(bytes, source)?
        .into_iter()
        .enumerate()
        .map(|(layer, l)| Section {
            layer,
            kind: l.kind,
            bytes: l.section_bytes,
            payloads: l
                .payloads
                .into_iter()
                .map(|p| Payload {
                    name: p.name,
                    raw_bytes: p.raw_bytes,
                    stored_bytes: p.stored_bytes,
                    symbol_bits: p.symbol_bits,
                })
                .collect(),
        })
        .collect())
}

/// The model, its sections and its metadata: a container read whole and decoded once,
/// anything else through the loader alone (ONNX and safetensors files are read once, by
/// their importer; metadata only from older native files).
fn read(args: &Args) -> Result<(nn::Model, Vec<Section>, BTreeMap<String, String>)> {
    let path = &args.model.model;
    let source = path.display().to_string();
    let head = nn::io::any::read_head(path).context("loading model")?;
    if pipeline::container::is_container(&head) {
        let bytes = std::fs::read(path).with_context(|| format!("reading {source}"))?;
        let record = pipeline::container::decode(&bytes, &source)
            .and_then(|r| {
                let metadata = r.metadata.clone();
                Ok((r.into_model_with(&pipeline::registry())?, metadata))
            })
            .with_context(|| format!("loading model {source}"))?;
        return Ok((record.0, sections(&bytes, &source)?, record.1));
    }
    let native =
        nn::io::any::ModelFormat::detect(path, &head) == Some(nn::io::any::ModelFormat::Native);
    let metadata = if native {
        pipeline::load_record(path)
            .map(|r| r.metadata)
            .unwrap_or_default()
    } else {
        BTreeMap::new()
    };
    Ok((args.model.load()?, Vec::new(), metadata))
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let (model, sections, metadata) = read(&args)?;
    let layers = model.summary()?;
    let report = Report {
        name: model.name.clone(),
        input_shape: model.input_shape.clone(),
        params: model.param_count(),
        bytes: model.stored_bytes(),
        macs: layers.iter().map(|l| l.macs).sum(),
        file_bytes: std::fs::metadata(&args.model.model)?.len(),
        shared: pipeline::report::shared_rows(&model),
        sections,
        metadata,
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
    for sec in &report.sections {
        let coded: Vec<String> = sec
            .payloads
            .iter()
            .map(|p| match p.symbol_bits {
                Some(w) => format!(
                    "{} {} -> {} bytes (Huffman, {w}-bit symbols)",
                    p.name, p.raw_bytes, p.stored_bytes
                ),
                None => format!("{} {} bytes raw", p.name, p.raw_bytes),
            })
            .collect();
        println!(
            "section {:>3} {:<22} {:>8} bytes  {}",
            sec.layer,
            sec.kind,
            sec.bytes,
            coded.join(", ")
        );
    }
    for (k, v) in &report.metadata {
        println!("metadata {k}: {v}");
    }
    println!(
        "total: {} parameters, {} bytes of parameters, {} MACs per image",
        report.params, report.bytes, report.macs
    );
    Ok(())
}
