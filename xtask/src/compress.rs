//! `cargo xtask compress`: Deep Compression end to end on Fashion-MNIST. Trains the reference
//! model with its zoo recipe when none is cached, runs the recipe stage by stage with a
//! progress display, writes the `.slim`, prints the report (per-layer table of Deep
//! Compression's Tables 2-3, accuracy before and after, total ratio, energy estimate) and
//! writes report.md, report.json and accuracy-vs-ratio.svg under
//! target/slimnet/compress/<model>/.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use nn::trainer::Progress;
use pipeline::compress::{Compressor, Data, Observer, StageReport};
use pipeline::recipe::{Recipe, Stage};

use crate::machine;

/// Arguments of `cargo xtask compress`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A zoo model (lenet300, lenet5, cnn-teacher: trained with its reference recipe and
    /// cached when absent) or a model file.
    #[arg(long, default_value = "lenet300")]
    model: String,
    /// A built-in recipe or a .toml/.json recipe file.
    #[arg(long, default_value = "deep-compression")]
    recipe: String,
    #[command(flatten)]
    source: crate::zoo::Source,
    /// Output directory (default target/slimnet/compress/<model>).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Progress as lines: a stage header, every tenth of the steps, the stage's outcome.
struct Lines {
    steps: u64,
    done: u64,
    next: u64,
    started: Instant,
}

impl Observer for Lines {
    fn stage_started(&mut self, index: usize, stage: &Stage, steps: u64) {
        eprintln!("stage {index}: {}", stage.describe());
        self.steps = steps;
        self.done = 0;
        self.next = steps.div_ceil(10);
        self.started = Instant::now();
    }

    fn progress(&mut self, p: &Progress) {
        if p.epoch_done {
            return;
        }
        self.done += 1;
        if self.done >= self.next {
            let elapsed = self.started.elapsed().as_secs_f64();
            let eta = elapsed / self.done as f64 * (self.steps - self.done.min(self.steps)) as f64;
            eprintln!(
                "  {:>3}% ({}/{} steps, epoch {}), loss {:.4}, {:.0} s elapsed, eta {:.0} s",
                100 * self.done / self.steps.max(1),
                self.done,
                self.steps,
                p.epoch + 1,
                p.loss,
                elapsed,
                eta
            );
            self.next += self.steps.div_ceil(10).max(1);
        }
    }

    fn stage_finished(&mut self, r: &StageReport) {
        eprintln!(
            "stage {}: accuracy {:.2}%, {} bytes ({:.1}x), {:.0} s",
            r.index,
            100.0 * r.accuracy,
            r.file_bytes,
            r.ratio,
            r.seconds
        );
    }

    fn note(&mut self, message: &str) {
        eprintln!("  {message}");
    }
}

/// The input model: a file as it is, or a zoo model from the cache, trained first when absent.
fn input_model(
    args: &Args,
    train: &nn::Dataset,
    test: &nn::Dataset,
) -> Result<(nn::Model, PathBuf, String)> {
    let path = Path::new(&args.model);
    if path.exists() {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        return Ok((pipeline::load(path, None)?, path.to_path_buf(), name));
    }
    let name = args.model.clone();
    let zoo = args.source.zoo_dir();
    let cached = crate::zoo::cached_or_trained(&name, &zoo, args.source.seed, train, test)?;
    Ok((pipeline::load(&cached, None)?, cached, name))
}

/// Runs the task.
pub fn run(args: Args) -> Result<()> {
    let t0 = Instant::now();
    let (source, train, test) = interop::load(args.source.data.as_deref(), &Default::default())?;
    eprintln!(
        "data: {source} ({} train, {} test)",
        train.len(),
        test.len()
    );
    let recipe = Recipe::resolve(&args.recipe)?;
    let (model, path, name) = input_model(&args, &train, &test)?;
    let out_dir = args.out.clone().unwrap_or_else(|| {
        crate::workspace_root()
            .join("target/slimnet/compress")
            .join(&name)
    });
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let data = Data {
        train: &train,
        test: &test,
    };
    let mut c = Compressor::new(model, recipe, args.source.seed, &path.display().to_string())?;
    eprintln!(
        "{name}: accuracy {:.2}% before compression; recipe {}",
        100.0 * c.accuracy_before(&data)?,
        args.recipe
    );
    c.run_stages(
        &data,
        &mut Lines {
            steps: 0,
            done: 0,
            next: 0,
            started: Instant::now(),
        },
    )?;
    let out = c.finish(&data)?;
    let slim = out_dir.join(format!("{name}.slim"));
    nn::io::atomic::write_atomic(&slim, &out.bytes)?;
    let r = &out.report;
    let m = machine::Machine::here();
    let command = format!(
        "cargo xtask compress --model {} --recipe {} --seed {}",
        args.model, args.recipe, args.source.seed
    );
    let context = format!(
        "`{command}` on {} ({} threads), {}; data: {source}; written to `{}`; {:.0} s in all, \
         training of an uncached model included.",
        m.cpu,
        m.threads,
        m.date,
        slim.display(),
        t0.elapsed().as_secs_f64()
    );
    let md = r.markdown(&format!("Deep Compression of {name}"), &context);
    nn::io::atomic::write_atomic(out_dir.join("report.md"), md.as_bytes())?;
    let json = serde_json::json!({
        "model": name,
        "command": command,
        "cpu": m.cpu,
        "threads": m.threads,
        "date": m.date,
        "data": source.to_string(),
        "output": slim.display().to_string(),
        "total_seconds": t0.elapsed().as_secs_f64(),
        "report": r,
        "ratio": r.ratio,
        "accuracy_before": r.accuracy_before,
        "accuracy_after": r.accuracy_after,
        "file_bytes": r.file_bytes,
        "dense_bytes": r.dense_bytes,
        "layers": r.layers,
    });
    nn::io::atomic::write_atomic(
        out_dir.join("report.json"),
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    let svg = r
        .chart(&format!(
            "{name}: accuracy against compression, stage by stage"
        ))
        .to_svg();
    nn::io::atomic::write_atomic(out_dir.join("accuracy-vs-ratio.svg"), svg.as_bytes())?;
    println!("{md}");
    println!(
        "{name}: {:.1}x ({} -> {} bytes), accuracy {:.2}% -> {:.2}%; report in {}",
        r.ratio,
        r.dense_bytes,
        r.file_bytes,
        100.0 * r.accuracy_before,
        100.0 * r.accuracy_after,
        out_dir.display()
    );
    Ok(())
}
