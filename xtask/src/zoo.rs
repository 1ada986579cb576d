//! `cargo xtask zoo`: reference training runs of the zoo models, with their accuracy.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use nn::trainer::Progress;

/// Where the data and the trained zoo models of `cargo xtask compress` and `cargo xtask
/// bench` come from.
#[derive(clap::Args, Debug, Clone)]
pub struct Source {
    /// Fashion-MNIST directory (default lookup order otherwise).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Seed of zoo training and of every technique's randomness.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where trained zoo models are cached [default: target/slimnet/zoo].
    #[arg(long)]
    pub zoo: Option<PathBuf>,
}

impl Source {
    /// The zoo cache directory.
    pub fn zoo_dir(&self) -> PathBuf {
        self.zoo.clone().unwrap_or_else(default_cache)
    }
}

/// Where `cargo xtask compress` and `cargo xtask bench` cache trained zoo models.
pub fn default_cache() -> PathBuf {
    crate::workspace_root().join("target/slimnet/zoo")
}

/// The path of zoo model `name` in the cache `zoo` (`<zoo>/<name>.model`); when absent, the
/// model is trained first with its reference recipe on `train`, evaluated on `test` and saved
/// there.
pub fn cached_or_trained(
    name: &str,
    zoo: &Path,
    seed: u64,
    train: &nn::Dataset,
    test: &nn::Dataset,
) -> Result<PathBuf> {
    let cached = zoo.join(format!("{name}.model"));
    if cached.exists() {
        eprintln!("{name}: cached at {}", cached.display());
        return Ok(cached);
    }
    let mut rng = tensor_core::rng::Rng::seed_from_u64(seed);
    let mut model = nn::zoo::build(name, &mut rng)
        .with_context(|| format!("{name:?} is neither a file nor a zoo model"))?;
    let mut config = nn::recipes::reference_config(name)?;
    config.seed = seed;
    eprintln!(
        "{name}: no cached model at {}; training it with its zoo recipe ({} epochs)",
        cached.display(),
        config.epochs
    );
    let t0 = Instant::now();
    let mut on_progress = |p: &Progress| {
        if p.epoch_done {
            eprintln!(
                "  {name} epoch {:>3}/{}: loss {:.4}, {:.0} s",
                p.epoch + 1,
                config.epochs,
                p.loss,
                t0.elapsed().as_secs_f64()
            );
        }
    };
    let train_config = nn::trainer::TrainConfig {
        eval_every_epoch: false,
        ..config.clone()
    };
    let (_, eval) =
        nn::recipes::train_for_inference(&mut model, &train_config, train, test, &mut on_progress)?;
    eprintln!(
        "{name}: trained to {:.2}% in {:.0} s",
        100.0 * eval.accuracy,
        t0.elapsed().as_secs_f64()
    );
    std::fs::create_dir_all(zoo).with_context(|| format!("creating {}", zoo.display()))?;
    nn::io::native::save(&model, &cached)?;
    Ok(cached)
}

/// Arguments of `cargo xtask zoo`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Comma-separated zoo models.
    #[arg(long, default_value = "lenet300,lenet5", value_delimiter = ',')]
    models: Vec<String>,
    /// Override the recipe's epoch count.
    #[arg(long)]
    epochs: Option<usize>,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fashion-MNIST directory (default lookup order otherwise).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Where trained models and JSON reports go.
    #[arg(long, default_value = "runs")]
    out: PathBuf,
}

/// Runs the task.
pub fn run(args: Args) -> Result<()> {
    let (source, train, test) = interop::load(args.data.as_deref(), &Default::default())?;
    eprintln!(
        "data: {source} ({} train, {} test)",
        train.len(),
        test.len()
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let crate::machine::Machine { cpu, threads, .. } = crate::machine::Machine::here();
    let mut rows = Vec::new();
    for name in &args.models {
        let mut rng = tensor_core::rng::Rng::seed_from_u64(args.seed);
        let mut model = nn::zoo::build(name, &mut rng)?;
        let mut config = nn::recipes::reference_config(name)?;
        config.seed = args.seed;
        if let Some(e) = args.epochs {
            config.epochs = e;
        }
        eprintln!(
            "{name}: {} parameters, recipe {}",
            model.param_count(),
            serde_json::to_string(&config)?
        );
        let mut on_progress = |p: &Progress| {
            if let Some(acc) = p.test_accuracy {
                eprintln!(
                    "{name} epoch {:>3}: loss {:.4}, test accuracy {:.2}%",
                    p.epoch + 1,
                    p.loss,
                    100.0 * acc
                );
            }
        };
        let (report, eval) =
            nn::recipes::train_for_inference(&mut model, &config, &train, &test, &mut on_progress)?;
        let path = args.out.join(format!("{name}.model"));
        nn::io::native::save(&model, &path)?;
        let json = serde_json::json!({
            "model": name, "data": source.to_string(), "config": config, "train": report,
            "test": eval, "params_folded": model.param_count(), "cpu": cpu, "threads": threads,
        });
        nn::io::atomic::write_atomic(
            args.out.join(format!("{name}.json")),
            serde_json::to_string_pretty(&json)?.as_bytes(),
        )?;
        let per_epoch = report.total_seconds / config.epochs.max(1) as f64;
        rows.push(format!(
            "| {name} | {} | {:.2}% | {} epochs, {:.1} s/epoch | {} | {} |",
            model.param_count(),
            100.0 * eval.accuracy,
            config.epochs,
            per_epoch,
            threads,
            cpu
        ));
    }
    println!("| model | params | test accuracy | training | threads | CPU |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    Ok(())
}
