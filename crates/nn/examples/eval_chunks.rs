//! Times eval-mode inference of a model per thread count and chunk size of its leading
//! per-sample layers ([`nn::Model::forward_eval_chunked`]; `Model::forward` uses
//! [`nn::model::EVAL_CHUNK`]):
//! median wall time per batch, images/s, and the process CPU time per image (user + system
//! over the timed runs, which under load measures the work better than the wall clock).
//! The combinations run interleaved, in rounds, so that a change in the machine's load falls
//! on all of them alike.
//!
//! `cargo run --release -p nn --example eval_chunks -- MODEL [BATCH] [THREADS] [CHUNKS]
//! [SECONDS]`, e.g. `... cnn-teacher.model 256 1,2 8,16,32 2` (the defaults).

use std::time::{Duration, Instant};

use tensor_core::Tensor;
use tensor_core::rng::Rng;
use tensor_core::testing::process_cpu_time;

const ROUNDS: usize = 4;

fn list(arg: Option<String>, default: &str) -> Result<Vec<usize>, Box<dyn std::error::Error>> {
    let s = arg.unwrap_or_else(|| default.to_string());
    Ok(s.split(',')
        .map(|v| v.trim().parse())
        .collect::<Result<_, _>>()?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: eval_chunks MODEL [BATCH] [THREADS] [CHUNKS] [SECONDS]";
    let path = args.next().ok_or(usage)?;
    let batch = list(args.next(), "256")?.first().copied().ok_or(usage)?;
    let threads = list(args.next(), "1,2")?;
    let chunks = list(args.next(), "8,16,32")?;
    let seconds: f64 = args.next().map_or(Ok(2.0), |s| s.parse())?;
    let mut model = nn::io::load_any(&path, None)?;
    let mut dims = vec![batch];
    dims.extend_from_slice(&model.input_shape);
    let mut rng = Rng::seed_from_u64(1);
    let numel = dims.iter().product();
    let x = Tensor::new(&dims, (0..numel).map(|_| rng.uniform()).collect())?;
    let pools = threads
        .iter()
        .map(|&t| rayon::ThreadPoolBuilder::new().num_threads(t).build())
        .collect::<Result<Vec<_>, _>>()?;
    // Per combination: the batch times and the CPU time they took.
    let combos: Vec<(usize, usize)> = (0..pools.len())
        .flat_map(|p| chunks.iter().map(move |&c| (p, c)))
        .collect();
    let mut times = vec![Vec::<Duration>::new(); combos.len()];
    let mut cpu = vec![Duration::ZERO; combos.len()];
    let slice = Duration::from_secs_f64(seconds / ROUNDS as f64);
    for _ in 0..ROUNDS {
        for (i, &(p, chunk)) in combos.iter().enumerate() {
            pools[p].install(|| -> Result<(), nn::NnError> {
                for _ in 0..2 {
                    model.forward_eval_chunked(&x, chunk)?;
                }
                let (start, c0) = (Instant::now(), process_cpu_time());
                while start.elapsed() < slice {
                    let t = Instant::now();
                    model.forward_eval_chunked(&x, chunk)?;
                    times[i].push(t.elapsed());
                }
                cpu[i] += process_cpu_time() - c0;
                Ok(())
            })?;
        }
    }
    println!("{path}: batch {batch}, {ROUNDS} rounds of {seconds} s in all per line");
    println!("threads chunk  median_us   images/s  cpu_us/image");
    for (i, &(p, chunk)) in combos.iter().enumerate() {
        let t = &mut times[i];
        t.sort();
        let median = t[t.len() / 2].as_secs_f64();
        let per_image = cpu[i].as_secs_f64() / (t.len() * batch) as f64;
        println!(
            "{:>7} {chunk:>5} {:>10.1} {:>10.0} {:>13.2}",
            threads[p],
            median * 1e6,
            batch as f64 / median,
            per_image * 1e6
        );
    }
    Ok(())
}
