//! `cargo xtask streams`: the real Deep Compression symbol streams of trained models.
//!
//! For each model: prune every `linear` and `conv2d` weight by magnitude to the per-layer
//! density Han et al. report for that model (one shot, no retraining), share each layer's
//! surviving weights by k-means with linear initialisation (8-bit codes for conv, 5-bit for
//! fc, code 0 reserved for zero), store each layer in relative-index form with 8-bit (conv) or
//! 5-bit (fc) gap fields, and write, per model and layer kind, the two streams Deep
//! Compression Huffman-codes: the codes of the stored entries (fillers carry code 0) and their
//! gaps, concatenated over layers in model order, one byte per symbol
//! (`{model}.{conv|fc}.{indices|gaps}.u8`). Also writes `summary.json` and `README.md` (how
//! the streams were made, densities, accuracy of the pruned and shared model before any
//! retraining, and for each stream its entropy, Huffman mean code length and sizes).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use huffman_codec::{
    CanonicalCode, DEFAULT_MAX_CODE_LEN, DecodeLimits, EncodeParams, compress_u8, decompress_u8,
    entropy_bits, histogram_u8,
};
use prune::{ModelMask, RelativeIndexed, prunable_layers};
use share::{KMeansParams, share_layer};

/// Arguments of `cargo xtask streams`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Comma-separated trained model files (native format); the file stem names the model
    /// and picks its densities (`lenet300`, `lenet5`).
    #[arg(
        long,
        default_value = "runs/lenet300.model,runs/lenet5.model",
        value_delimiter = ','
    )]
    models: Vec<PathBuf>,
    /// Output directory.
    #[arg(long, default_value = "fixtures/streams")]
    out: PathBuf,
    /// Fashion-MNIST directory (default lookup order otherwise).
    #[arg(long)]
    data: Option<PathBuf>,
}

/// Per-layer densities (kept fraction of weights) of Han et al., "Learning both Weights and
/// Connections" (NeurIPS 2015), tables 1 and 2, reused by Deep Compression (tables 2 and 3).
fn paper_densities(model: &str) -> Result<&'static [f64]> {
    Ok(match model {
        // LeNet-300-100: fc1 8%, fc2 9%, fc3 26%.
        "lenet300" => &[0.08, 0.09, 0.26],
        // LeNet-5: conv1 66%, conv2 12%, fc1 8%, fc2 19%.
        "lenet5" => &[0.66, 0.12, 0.08, 0.19],
        other => bail!("no paper densities for model `{other}` (known: lenet300, lenet5)"),
    })
}

/// Code and gap-field width: Deep Compression uses 8 bits for conv layers, 5 for fc layers.
fn bits_for(kind: &str) -> u32 {
    if kind == "conv2d" { 8 } else { 5 }
}

struct StreamStats {
    name: String,
    symbols: usize,
    alphabet: usize,
    used: usize,
    entropy: f64,
    mean_code_len: f64,
    fixed_bytes: usize,
    block_bytes: usize,
}

fn stream_stats(name: String, symbols: &[u8], bits: u32) -> Result<StreamStats> {
    let alphabet = 1usize << bits;
    let hist = histogram_u8(symbols);
    let freqs = &hist[..alphabet];
    let code = CanonicalCode::from_frequencies(freqs, DEFAULT_MAX_CODE_LEN)
        .with_context(|| format!("{name}: Huffman code"))?;
    let block = compress_u8(symbols, &EncodeParams::default())?;
    if decompress_u8(&block, &DecodeLimits::default())? != symbols {
        bail!("{name}: Huffman block does not round-trip");
    }
    Ok(StreamStats {
        used: freqs.iter().filter(|&&c| c > 0).count(),
        entropy: entropy_bits(&hist),
        mean_code_len: code.cost_bits(freqs) as f64 / symbols.len() as f64,
        fixed_bytes: (symbols.len() * bits as usize).div_ceil(8),
        block_bytes: block.len(),
        name,
        symbols: symbols.len(),
        alphabet,
    })
}

struct LayerRow {
    index: usize,
    kind: &'static str,
    weights: usize,
    kept: usize,
    entries: usize,
    fillers: usize,
    bits: u32,
    centroids_used: usize,
}

struct ModelReport {
    name: String,
    file_crc32: u32,
    acc_dense: f64,
    acc_pruned: f64,
    acc_shared: f64,
    layers: Vec<LayerRow>,
    streams: Vec<StreamStats>,
}

fn process(path: &Path, out: &Path, test: &nn::Dataset) -> Result<ModelReport> {
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .with_context(|| format!("{}: no file name", path.display()))?
        .to_string();
    let densities = paper_densities(&name)?;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut model = nn::io::native::from_bytes(&bytes, &path.display().to_string())?;
    let acc_dense = nn::metrics::evaluate(&mut model, test, 256)?.accuracy;

    let masks = ModelMask::by_density(&model, densities)?;
    masks.apply(&mut model)?;
    let acc_pruned = nn::metrics::evaluate(&mut model, test, 256)?.accuracy;

    // Streams per layer kind, concatenated over layers in model order.
    let mut conv = (Vec::new(), Vec::new());
    let mut fc = (Vec::new(), Vec::new());
    let mut layers = Vec::new();
    for path in prunable_layers(&model) {
        // The zoo models are sequential: every prunable layer is at top level.
        let i = path.index();
        let kind = model.layers[i].kind();
        let bits = bits_for(kind);
        let shared = share_layer(&mut model, &path, bits, &KMeansParams::default())?;
        let sparse = RelativeIndexed::encode(&shared.codes, bits)?;
        if sparse.decode()? != shared.codes {
            bail!("{name} layer {i}: relative-index form does not round-trip");
        }
        let mut used = vec![false; 1 << bits];
        shared.codes.iter().for_each(|&c| used[c as usize] = true);
        layers.push(LayerRow {
            index: i,
            kind,
            weights: shared.codes.len(),
            kept: shared.codes.iter().filter(|&&c| c != 0).count(),
            entries: sparse.entries(),
            fillers: sparse.fillers(),
            bits,
            // Learned centroids that some weight uses (code 0, the reserved zero, excluded).
            centroids_used: used[1..].iter().filter(|&&u| u).count(),
        });
        let (idx, gaps) = if kind == "conv2d" { &mut conv } else { &mut fc };
        // Invariant: codes < 2^bits <= 256 and gaps <= 2^bits - 1, so both fit a byte.
        idx.extend(sparse.values.iter().map(|&c| c as u8));
        gaps.extend(sparse.gaps.iter().map(|&g| g as u8));
    }
    let acc_shared = nn::metrics::evaluate(&mut model, test, 256)?.accuracy;

    let mut streams = Vec::new();
    for (kind, (idx, gaps), bits) in [("conv", conv, 8), ("fc", fc, 5)] {
        if idx.is_empty() {
            continue;
        }
        for (what, symbols) in [("indices", idx), ("gaps", gaps)] {
            let stream = format!("{name}.{kind}.{what}");
            let file = out.join(format!("{stream}.u8"));
            nn::io::atomic::write_atomic(&file, &symbols)?;
            streams.push(stream_stats(stream, &symbols, bits)?);
        }
    }
    Ok(ModelReport {
        name,
        file_crc32: nn::io::native::crc32(&bytes),
        acc_dense,
        acc_pruned,
        acc_shared,
        layers,
        streams,
    })
}

fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

fn markdown(reports: &[ModelReport], source: &str, command: &str) -> String {
    let mut s = String::new();
    s.push_str(
        "# Real Deep Compression streams of the zoo models\n\n\
         Generated by `cargo xtask streams` (`xtask/src/streams.rs`); do not edit by hand.\n\n",
    );
    s.push_str(&format!("Command: `{command}`\n\n"));
    s.push_str(&format!(
        "Test data: {source}. Models: `runs/{{name}}.model` as trained by `cargo xtask zoo` \
         (CRC-32 of each file below).\n\n"
    ));
    s.push_str(
        "## How they were made\n\n\
         1. **Prune** (`prune::ModelMask::by_density`): each `linear` and `conv2d` weight keeps \
         its `round(density * n)` largest `|w|` (biases untouched), at the per-layer densities of \
         Han et al. 2015 (tables 1 and 2): lenet300 8% / 9% / 26%, lenet5 66% / 12% / 8% / 19%. \
         One shot, **no retraining** (that is a later stage).\n\
         2. **Share** (`share::share_layer`): the surviving weights of each layer are clustered by \
         1-D k-means (Lloyd, linear initialisation between min and max, until no assignment \
         changes) into `2^bits - 1` centroids; code 0 is reserved for the value 0.0. \
         `bits` = 8 for conv layers, 5 for fc layers (Deep Compression).\n\
         3. **Relative index** (`prune::RelativeIndexed`): each layer's codes, flattened \
         row-major, are stored as (gap, code) entries, the gap being the number of zeros \
         skipped since the previous entry, in a field of the same `bits` (8 conv, 5 fc). A run of \
         more than `2^bits - 1` zeros gets a **filler** entry with gap `2^bits - 1` and code 0 \
         (the reserved zero, so the stream decodes exactly).\n\
         4. **Streams**: per model and layer kind, the codes of all entries (`indices`) and \
         their gaps (`gaps`), concatenated over layers in model order, one byte per symbol: \
         `{model}.{conv|fc}.{indices|gaps}.u8`.\n\n",
    );
    s.push_str("## Models\n\n");
    s.push_str("| model | file CRC-32 | test accuracy dense | pruned | pruned + shared |\n");
    s.push_str("|---|---|---|---|---|\n");
    for r in reports {
        s.push_str(&format!(
            "| {} | {:08x} | {} | {} | {} |\n",
            r.name,
            r.file_crc32,
            pct(r.acc_dense),
            pct(r.acc_pruned),
            pct(r.acc_shared)
        ));
    }
    s.push_str("\n## Layers\n\n");
    s.push_str(
        "| model | layer | kind | weights | kept | density | bits | centroids used | entries | fillers |\n",
    );
    s.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    for r in reports {
        for l in &r.layers {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} |\n",
                r.name,
                l.index,
                l.kind,
                l.weights,
                l.kept,
                pct(l.kept as f64 / l.weights as f64),
                l.bits,
                l.centroids_used,
                (1usize << l.bits) - 1,
                l.entries,
                l.fillers
            ));
        }
    }
    s.push_str(
        "\n## Streams\n\n\
         Mean code length: `huffman_codec::CanonicalCode::from_frequencies` (cap 11 bits). \
         Fixed width: `ceil(symbols * bits / 8)`. Block: `huffman_codec::compress_u8`, \
         everything written (header, code-length table, stream sizes, four streams).\n\n",
    );
    s.push_str(
        "| stream | symbols | alphabet | used | entropy (bits) | mean code length (bits) | ratio | fixed-width bytes | block bytes | saving |\n",
    );
    s.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    for r in reports {
        for t in &r.streams {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {:.4} | {:.4} | {:.4} | {} | {} | {:.1}% |\n",
                t.name,
                t.symbols,
                t.alphabet,
                t.used,
                t.entropy,
                t.mean_code_len,
                t.mean_code_len / t.entropy,
                t.fixed_bytes,
                t.block_bytes,
                100.0 * (1.0 - t.block_bytes as f64 / t.fixed_bytes as f64)
            ));
        }
    }
    s.push('\n');
    for r in reports {
        let fixed: usize = r.streams.iter().map(|t| t.fixed_bytes).sum();
        let block: usize = r.streams.iter().map(|t| t.block_bytes).sum();
        s.push_str(&format!(
            "{}: indices and gaps together {} -> {} bytes ({:.1}% saved by Huffman coding).\n",
            r.name,
            fixed,
            block,
            100.0 * (1.0 - block as f64 / fixed as f64)
        ));
    }
    s
}

fn json(reports: &[ModelReport], source: &str) -> serde_json::Value {
    let models: Vec<_> = reports
        .iter()
        .map(|r| {
            serde_json::json!({
                "model": r.name,
                "file_crc32": format!("{:08x}", r.file_crc32),
                "test_accuracy": {
                    "dense": r.acc_dense, "pruned": r.acc_pruned, "pruned_shared": r.acc_shared,
                    "retrained": false,
                },
                "layers": r.layers.iter().map(|l| serde_json::json!({
                    "index": l.index, "kind": l.kind, "weights": l.weights, "kept": l.kept,
                    "density": l.kept as f64 / l.weights as f64, "bits": l.bits,
                    "centroids_used": l.centroids_used, "entries": l.entries,
                    "fillers": l.fillers,
                })).collect::<Vec<_>>(),
                "streams": r.streams.iter().map(|t| serde_json::json!({
                    "name": t.name, "file": format!("{}.u8", t.name), "symbols": t.symbols,
                    "alphabet": t.alphabet, "used": t.used, "entropy_bits": t.entropy,
                    "mean_code_len_bits": t.mean_code_len, "fixed_width_bytes": t.fixed_bytes,
                    "huffman_block_bytes": t.block_bytes,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({ "data": source, "models": models })
}

/// Runs the task.
pub fn run(args: Args) -> Result<()> {
    let (source, _train, test) = interop::load(args.data.as_deref(), &Default::default())?;
    let source = source.to_string();
    eprintln!("data: {source} ({} test images)", test.len());
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut reports = Vec::new();
    for path in &args.models {
        let r = process(path, &args.out, &test)?;
        eprintln!(
            "{}: test accuracy dense {}, pruned {}, pruned + shared {}",
            r.name,
            pct(r.acc_dense),
            pct(r.acc_pruned),
            pct(r.acc_shared)
        );
        reports.push(r);
    }
    let models: Vec<String> = args
        .models
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let command = format!(
        "cargo xtask streams --models {} --out {}",
        models.join(","),
        args.out.display()
    );
    let md = markdown(&reports, &source, &command);
    nn::io::atomic::write_atomic(args.out.join("README.md"), md.as_bytes())?;
    let summary = serde_json::to_string_pretty(&json(&reports, &source))? + "\n";
    nn::io::atomic::write_atomic(args.out.join("summary.json"), summary.as_bytes())?;
    println!("{md}");
    Ok(())
}
