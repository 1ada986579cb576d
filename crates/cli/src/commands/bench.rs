//! `slimnet bench MODEL`: inference latency and throughput per batch size and thread count.
//!
//! For each thread count `t` the runs execute inside a rayon pool of `t` workers; tensor-core's
//! GEMM asks faer for `rayon::current_num_threads()` workers (`GemmParams::threads = 0`) and
//! faer forks on the current pool, so every kernel of the model uses exactly `t` threads.
//! For each batch size the input is seeded uniform noise in `[0, 1)` of the model's declared
//! input shape; a warm-up (a tenth of `--seconds`, at least two runs) fills caches, scratch
//! buffers and the pool's stacks, then forward passes in inference mode are timed one by one
//! until `--seconds` have passed (at least [`MIN_RUNS`] runs). Latency statistics are
//! nearest-rank percentiles of those per-pass times; `images_per_s` is `batch / median`.

use anyhow::{Context, Result, bail};
use std::time::{Duration, Instant};

use tensor_core::Tensor;
use tensor_core::rng::Rng;

use super::{ModelArgs, print_json};

/// Timed runs per configuration, however short `--seconds` is.
pub const MIN_RUNS: usize = 5;

/// Arguments of `slimnet bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Batch sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 256])]
    batch: Vec<usize>,
    /// Seconds of timed runs per batch size and thread count (after the warm-up).
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Seed of the random input.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// The whole report (`--json`).
#[derive(serde::Serialize, Debug)]
struct Report {
    model: String,
    file_bytes: u64,
    params: usize,
    /// Multiply-accumulates per image.
    macs: u64,
    runs: Vec<Run>,
}

/// One batch size at one thread count.
#[derive(serde::Serialize, Debug)]
struct Run {
    batch: usize,
    threads: usize,
    median_us: f64,
    p90_us: f64,
    p99_us: f64,
    mean_us: f64,
    min_us: f64,
    images_per_s: f64,
    /// Timed forward passes.
    iterations: usize,
}

/// Thread counts timed when the global `--threads` gives none.
pub const DEFAULT_THREADS: [usize; 2] = [1, 2];

/// Runs the command; `threads` is the global `--threads` list (each count runs in a rayon
/// pool of that size; empty: [`DEFAULT_THREADS`]).
pub fn run(args: Args, threads: Vec<usize>) -> Result<()> {
    let threads = if threads.is_empty() {
        DEFAULT_THREADS.to_vec()
    } else {
        threads
    };
    if args.batch.is_empty() || args.batch.contains(&0) {
        bail!("--batch needs positive sizes, got {:?}", args.batch);
    }
    if threads.contains(&0) {
        bail!("--threads needs positive counts, got {threads:?}");
    }
    if !(args.seconds.is_finite() && args.seconds > 0.0 && args.seconds <= 3600.0) {
        bail!("--seconds must be in (0, 3600], got {}", args.seconds);
    }
    let mut model = args.model.load()?;
    let file_bytes = std::fs::metadata(&args.model.model)
        .with_context(|| format!("reading {}", args.model.model.display()))?
        .len();
    let macs = model.macs_per_sample()?;
    let mut runs = Vec::new();
    for &threads in &threads {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .with_context(|| format!("building a pool of {threads} threads"))?;
        for &batch in &args.batch {
            let input = random_input(&model, batch, args.seed)?;
            let times = pool.install(|| time_forward(&mut model, &input, args.seconds))?;
            let run = summarize(batch, threads, times);
            if !args.json {
                crate::note!(
                    "batch {batch:>4}, {threads} thread(s): median {:.1} us, p90 {:.1} us, \
                     p99 {:.1} us, {:.0} images/s ({} runs)",
                    run.median_us,
                    run.p90_us,
                    run.p99_us,
                    run.images_per_s,
                    run.iterations
                );
            }
            runs.push(run);
        }
    }
    let report = Report {
        model: args.model.model.display().to_string(),
        file_bytes,
        params: model.param_count(),
        macs,
        runs,
    };
    if args.json {
        return print_json(&report);
    }
    println!(
        "{}: {} bytes, {} params, {} MACs per image",
        report.model, report.file_bytes, report.params, report.macs
    );
    println!(
        "{:>6} {:>7} {:>12} {:>12} {:>12} {:>12}",
        "batch", "threads", "median_us", "p90_us", "p99_us", "images/s"
    );
    for r in &report.runs {
        println!(
            "{:>6} {:>7} {:>12.1} {:>12.1} {:>12.1} {:>12.0}",
            r.batch, r.threads, r.median_us, r.p90_us, r.p99_us, r.images_per_s
        );
    }
    Ok(())
}

/// Seeded uniform `[0, 1)` images of the model's input shape, `batch` of them.
fn random_input(model: &nn::Model, batch: usize, seed: u64) -> Result<Tensor> {
    let shape = model.batch_shape(batch)?;
    let mut rng = Rng::seed_from_u64(seed);
    let data = (0..shape.numel()).map(|_| rng.uniform()).collect();
    Ok(Tensor::new(shape.dims(), data)?)
}

/// Warm-up, then per-pass wall times of inference-mode forward passes for `seconds`.
fn time_forward(model: &mut nn::Model, input: &Tensor, seconds: f64) -> Result<Vec<Duration>> {
    let warm = Duration::from_secs_f64(seconds / 10.0);
    let start = Instant::now();
    let mut n = 0;
    while n < 2 || start.elapsed() < warm {
        std::hint::black_box(model.forward(input, nn::Mode::Eval)?);
        n += 1;
    }
    let budget = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut times = Vec::new();
    while times.len() < MIN_RUNS || start.elapsed() < budget {
        let t = Instant::now();
        std::hint::black_box(model.forward(input, nn::Mode::Eval)?);
        times.push(t.elapsed());
    }
    Ok(times)
}

/// Nearest-rank percentile `q` (in `0..=1`) of sorted `us`.
fn percentile(us: &[f64], q: f64) -> f64 {
    let rank = (q * us.len() as f64).ceil() as usize;
    us[rank.clamp(1, us.len()) - 1]
}

/// The statistics of one configuration (`times` is non-empty: [`time_forward`] runs at least
/// [`MIN_RUNS`]).
fn summarize(batch: usize, threads: usize, times: Vec<Duration>) -> Run {
    let mut us: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1e6).collect();
    us.sort_by(f64::total_cmp);
    let median = percentile(&us, 0.5);
    Run {
        batch,
        threads,
        median_us: median,
        p90_us: percentile(&us, 0.9),
        p99_us: percentile(&us, 0.99),
        mean_us: us.iter().sum::<f64>() / us.len() as f64,
        min_us: us[0],
        images_per_s: batch as f64 / (median * 1e-6),
        iterations: us.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let us: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&us, 0.5), 50.0);
        assert_eq!(percentile(&us, 0.9), 90.0);
        assert_eq!(percentile(&us, 0.99), 99.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        let r = summarize(
            4,
            1,
            vec![Duration::from_micros(300), Duration::from_micros(100)],
        );
        assert_eq!((r.median_us, r.min_us, r.iterations), (100.0, 100.0, 2));
        assert!((r.images_per_s - 40_000.0).abs() < 1e-6);
    }
}
