//! `slimnet sensitivity MODEL`: accuracy against sparsity for each prunable layer pruned
//! alone (Han et al. 2015, figure 5), as a table, JSON and an SVG plot.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use pipeline::chart::{LineChart, Series};
use prune::sensitivity::{DEFAULT_SPARSITIES, Sensitivity};

use super::{ModelArgs, print_json};

/// Arguments of `slimnet sensitivity`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Sparsities to scan, comma-separated, increasing, in [0, 1].
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_SPARSITIES)]
    sparsities: Vec<f64>,
    /// Write the curves as an SVG line chart.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Which images measure accuracy: test (all 10,000) or train (held-out choice of
    /// per-layer targets should not look at the test set).
    #[arg(long, default_value = "test")]
    split: String,
    /// Use only the first N images of the split.
    #[arg(long)]
    samples: Option<usize>,
    /// Directory holding the Fashion-MNIST IDX files.
    #[arg(long)]
    data: Option<PathBuf>,
    #[command(flatten)]
    data_opts: super::DataOptArgs,
    /// Print one JSON document on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Report {
    model: String,
    split: String,
    samples: usize,
    baseline: f64,
    sparsities: Vec<f64>,
    layers: Vec<Row>,
    plot: Option<String>,
}

#[derive(serde::Serialize)]
struct Row {
    path: String,
    kind: String,
    weights: usize,
    accuracy: Vec<f64>,
}

/// Scans `model` on `data`: the accuracy of every prunable layer pruned alone to each
/// sparsity (shared by `slimnet prune --method sensitivity`).
pub fn measure(
    model: &mut nn::Model,
    data: &nn::Dataset,
    sparsities: &[f64],
) -> Result<Sensitivity> {
    let pb = crate::progress::bar(
        (prune::prunable_layers(model).len() * sparsities.len() + 1) as u64,
        false,
    );
    let mut eval = |m: &mut nn::Model| -> prune::Result<f64> {
        let a = nn::metrics::evaluate(m, data, 500)?.accuracy;
        pb.inc(1);
        Ok(a)
    };
    let table = prune::sensitivity::scan(model, sparsities, &mut eval)?;
    pb.finish_and_clear();
    Ok(table)
}

/// The chart of a scan: one line per layer, sparsity against accuracy.
pub fn chart(table: &Sensitivity, kinds: &[String], title: &str) -> LineChart {
    LineChart {
        title: title.to_string(),
        x_label: "sparsity of the layer pruned alone (no retraining)".into(),
        y_label: "accuracy".into(),
        series: table
            .layers
            .iter()
            .zip(kinds)
            .map(|(l, k)| Series {
                name: format!("{} {k} ({} w)", l.path, l.weights),
                points: table
                    .sparsities
                    .iter()
                    .copied()
                    .zip(l.accuracy.iter().copied())
                    .collect(),
            })
            .collect(),
    }
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let mut model = args.model.load()?;
    let opts = args
        .data_opts
        .options(Some(args.model.model.as_path()), 1)?;
    let (source, train, test) = super::load_data(args.data.as_deref(), &opts, Some(&model))?;
    crate::note!("data: {source}");
    let data = match args.split.as_str() {
        "test" => test,
        "train" => train,
        other => bail!("unknown --split {other:?} (test or train)"),
    };
    let data = match args.samples {
        Some(n) => data.take(n)?,
        None => data,
    };
    let table = measure(&mut model, &data, &args.sparsities)?;
    let kinds: Vec<String> = table
        .layers
        .iter()
        .map(|l| {
            model
                .layer(&l.path)
                .map(|x| x.kind().to_string())
                .unwrap_or_default()
        })
        .collect();
    if let Some(plot) = &args.plot {
        let title = format!(
            "Sensitivity of {}",
            args.model
                .model
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        nn::io::atomic::write_atomic(plot, chart(&table, &kinds, &title).to_svg().as_bytes())
            .with_context(|| format!("writing {}", plot.display()))?;
    }
    let report = Report {
        model: args.model.model.display().to_string(),
        split: args.split.clone(),
        samples: data.len(),
        baseline: table.baseline,
        sparsities: table.sparsities.clone(),
        layers: table
            .layers
            .iter()
            .zip(&kinds)
            .map(|(l, k)| Row {
                path: l.path.to_string(),
                kind: k.clone(),
                weights: l.weights,
                accuracy: l.accuracy.clone(),
            })
            .collect(),
        plot: args.plot.as_ref().map(|p| p.display().to_string()),
    };
    if args.json {
        return print_json(&report);
    }
    print!("{:>8} {:>8} {:>9}", "layer", "kind", "weights");
    for s in &report.sparsities {
        print!(" {:>6.0}%", 100.0 * s);
    }
    println!();
    for r in &report.layers {
        print!("{:>8} {:>8} {:>9}", r.path, r.kind, r.weights);
        for a in &r.accuracy {
            print!(" {:>6.2}%", 100.0 * a);
        }
        println!();
    }
    println!(
        "accuracy on {} {} images, {:.2}% unpruned{}",
        report.samples,
        report.split,
        100.0 * report.baseline,
        report
            .plot
            .as_ref()
            .map(|p| format!("; plot written to {p}"))
            .unwrap_or_default()
    );
    Ok(())
}
