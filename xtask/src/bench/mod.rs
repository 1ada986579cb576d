//! `cargo xtask bench`: every representation of each zoo model (dense, pruned, Deep
//! Compression, int8, binary, decomposed, distilled student), its file bytes, test accuracy,
//! energy estimate and speed (batch-1 latency median / p90 / p99, batch-256 throughput, per
//! thread count), beside the peers a user would otherwise pick: the dense model exported to
//! ONNX and run by onnxruntime (f32 and its own static int8) and by PyTorch.
//!
//! Every figure comes from a `slimnet` command a user can rerun: each representation is made
//! by the command the report prints ([`reps::command`], cached under `<out>/models/` and
//! remade when the command or its input changes), its accuracy by `slimnet eval --json` on all
//! 10,000 test images, its speed by `slimnet bench --json`; peers by `scripts/peer_bench.py`
//! and `scripts/eval_onnxruntime.py`.
//!
//! Timing runs in rounds ([`Args::rounds`]): each round times every row once, a model's
//! representations and then its peers one after another, and each figure of the report is
//! the median over rounds. A slow moment of the machine then lands on one round of every row
//! alike instead of on whichever row happened to be timed in it, so that the ratios between
//! rows (slimnet against onnxruntime) are taken under the same conditions; the per-round
//! medians stay in report.json. Output: a table on the terminal, `report.md`,
//! `report.json`, `accuracy-vs-size.svg` and `accuracy-vs-latency.svg` under
//! target/slimnet/bench/.

mod report;
mod reps;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Arguments of `cargo xtask bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Zoo models (trained with their reference recipe and cached when absent) or model files
    /// [default: lenet300,lenet5,cnn-teacher; lenet300 with --quick].
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    /// Representations (default: all; with --quick: dense,pruned,int8,decomposed).
    #[arg(long, value_delimiter = ',')]
    reps: Vec<String>,
    /// A subset in about two minutes: lenet300 only, representations made without retraining,
    /// 0.3 s per timing.
    #[arg(long)]
    quick: bool,
    /// Seconds of timed runs per batch size and thread count, in each round
    /// [default: 0.5, 0.3 with --quick].
    #[arg(long)]
    seconds: Option<f64>,
    /// Timing rounds: every row is timed once per round (a model's representations, then its
    /// peers) and each figure is the median over rounds [default: 5, 1 with --quick].
    #[arg(long)]
    rounds: Option<usize>,
    /// Thread counts.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// Batch sizes.
    #[arg(long, value_delimiter = ',', default_value = "1,256")]
    batch: Vec<usize>,
    /// Leave out the onnxruntime and PyTorch columns.
    #[arg(long)]
    no_peers: bool,
    #[command(flatten)]
    source: crate::zoo::Source,
    /// Output directory [default: target/slimnet/bench].
    #[arg(long)]
    out: Option<PathBuf>,
}

/// One timed configuration, as `slimnet bench --json` and `scripts/peer_bench.py` print it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Run {
    pub batch: usize,
    pub threads: usize,
    pub median_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub images_per_s: f64,
    /// The median of each round, in round order (when the figures are medians over rounds).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub round_medians_us: Vec<f64>,
}

/// The nearest-rank median of `v` (sorted here), as `slimnet bench` takes its percentiles.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len().div_ceil(2).saturating_sub(1))
        .copied()
        .unwrap_or(f64::NAN)
}

/// Per (batch, threads), in the order of their first appearance, the median over `rounds` of
/// the median, p90 and p99; images/s follow from the median as a single timing's do.
fn median_over_rounds(rounds: &[Vec<Run>]) -> Vec<Run> {
    let mut keys: Vec<(usize, usize)> = Vec::new();
    for r in rounds.iter().flatten() {
        if !keys.contains(&(r.batch, r.threads)) {
            keys.push((r.batch, r.threads));
        }
    }
    keys.into_iter()
        .map(|(batch, threads)| {
            let cells: Vec<&Run> = rounds
                .iter()
                .filter_map(|round| {
                    round
                        .iter()
                        .find(|r| r.batch == batch && r.threads == threads)
                })
                .collect();
            let of = |f: fn(&Run) -> f64| median(cells.iter().map(|r| f(r)).collect());
            let median_us = of(|r| r.median_us);
            Run {
                batch,
                threads,
                median_us,
                p90_us: of(|r| r.p90_us),
                p99_us: of(|r| r.p99_us),
                images_per_s: batch as f64 / (median_us * 1e-6),
                round_medians_us: cells.iter().map(|r| r.median_us).collect(),
            }
        })
        .collect()
}

/// One row of the report: a representation run by slimnet, or a peer runtime.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub model: String,
    pub representation: String,
    /// `slimnet`, `onnxruntime`, `onnxruntime-int8` or `torch`.
    pub runtime: String,
    /// The command that made the file (empty for the dense zoo model and for peers).
    pub command: String,
    pub file: String,
    pub file_bytes: Option<u64>,
    pub accuracy: Option<f64>,
    pub macs: Option<u64>,
    /// Energy per inference (45 nm prices, `pipeline::report::energy`), microjoules.
    pub energy_uj: Option<f64>,
    pub runs: Vec<Run>,
    /// Why a figure is missing, when one is.
    pub note: Option<String>,
}

impl Row {
    fn new(model: &str, representation: &str, runtime: &str, file: &Path) -> Self {
        Self {
            model: model.into(),
            representation: representation.into(),
            runtime: runtime.into(),
            command: String::new(),
            file: file.display().to_string(),
            file_bytes: None,
            accuracy: None,
            macs: None,
            energy_uj: None,
            runs: Vec::new(),
            note: None,
        }
    }
}

/// The `slimnet` binary next to this xtask (built first by `cargo build --release -p cli`, which
/// shares the build of `cargo xtask` itself: see the feature pins in the workspace Cargo.toml).
struct Slimnet {
    bin: PathBuf,
}

impl Slimnet {
    fn build() -> Result<Self> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "-p", "cli"])
            .current_dir(crate::workspace_root())
            .status()
            .context("running cargo build --release -p cli")?;
        if !status.success() {
            bail!("cargo build --release -p cli failed ({status})");
        }
        let bin = std::env::current_exe()?
            .parent()
            .map(|d| d.join("slimnet"))
            .context("locating the slimnet binary")?;
        if !bin.exists() {
            bail!("{} not found after building the cli crate", bin.display());
        }
        Ok(Self { bin })
    }

    /// Runs `slimnet ARGS` for its effect (stdout discarded, stderr passed through).
    fn run(&self, args: &[String]) -> Result<()> {
        let status = Command::new(&self.bin)
            .args(args)
            .stdout(Stdio::null())
            .status()
            .context("running slimnet")?;
        if !status.success() {
            bail!("slimnet {} failed ({status})", args.join(" "));
        }
        Ok(())
    }

    /// Runs `slimnet ARGS --json` (progress on this process's stderr) and parses its stdout.
    fn json(&self, args: &[String]) -> Result<Value> {
        run_json(
            Command::new(&self.bin).args(args).arg("--json"),
            "slimnet",
            args,
        )
    }
}

/// Runs a command whose stdout is one JSON document; stderr passes through.
fn run_json(cmd: &mut Command, what: &str, args: &[String]) -> Result<Value> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!("{what} {} failed ({})", args.join(" "), out.status);
    }
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{what} {}: stdout is not JSON", args.join(" ")))
}

fn runs_of(v: &Value) -> Result<Vec<Run>> {
    Ok(serde_json::from_value(v["runs"].clone())?)
}

fn energy_uj(bytes: u64, macs: u64, int8: bool) -> f64 {
    use pipeline::report::energy::{Costs, price};
    price(&Costs::HOROWITZ_45NM, bytes, macs, int8).total_pj / 1e6
}

/// `model`'s dense file: a path as given, else the zoo cache (training it when absent).
fn dense_model(name: &str, args: &Args) -> Result<PathBuf> {
    let path = Path::new(name);
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    let zoo = args.source.zoo_dir();
    let cached = zoo.join(format!("{name}.model"));
    if cached.exists() {
        return Ok(cached);
    }
    let (_, train, test) = interop::load(args.source.data.as_deref(), &Default::default())?;
    crate::zoo::cached_or_trained(name, &zoo, args.source.seed, &train, &test)
}

/// Makes (or reuses) representation `rep` of `model`; returns its file and command.
fn make(
    slimnet: &Slimnet,
    model: &str,
    rep: &str,
    dense: &Path,
    dir: &Path,
    args: &Args,
) -> Result<Option<(PathBuf, String)>> {
    if rep == "dense" {
        return Ok(Some((dense.to_path_buf(), String::new())));
    }
    let out = dir.join(format!("{rep}.slim"));
    let Some(mut cmd) = reps::command(
        model,
        rep,
        &dense.display().to_string(),
        &out.display().to_string(),
        args.quick,
    ) else {
        return Ok(None);
    };
    cmd.extend(["--seed".into(), args.source.seed.to_string()]);
    if let Some(d) = &args.source.data {
        cmd.extend(["--data".into(), d.display().to_string()]);
    }
    let line = format!("slimnet {}", cmd.join(" "));
    // The cache key: the command and the input it read (size and modification time).
    let meta = std::fs::metadata(dense)?;
    let stamp = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let key = format!("{line}\n{} bytes, modified {stamp}\n", meta.len());
    let key_file = dir.join(format!("{rep}.cmd"));
    if out.exists() && std::fs::read_to_string(&key_file).ok().as_deref() == Some(key.as_str()) {
        eprintln!("  {model} {rep}: cached {}", out.display());
        return Ok(Some((out, line)));
    }
    eprintln!("  {model} {rep}: {line}");
    let t0 = Instant::now();
    slimnet.json(&cmd)?;
    eprintln!(
        "  {model} {rep}: made in {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    nn::io::atomic::write_atomic(&key_file, key.as_bytes())?;
    Ok(Some((out, line)))
}

/// Accuracy of one slimnet file on the whole test set.
fn evaluate(slimnet: &Slimnet, row: &mut Row, args: &Args) -> Result<()> {
    let mut eval = vec!["eval".to_string(), row.file.clone()];
    if let Some(d) = &args.source.data {
        eval.extend(["--data".into(), d.display().to_string()]);
    }
    row.accuracy = slimnet.json(&eval)?["evaluation"]["accuracy"].as_f64();
    Ok(())
}

/// One round's timings of one slimnet file (`slimnet bench --json`); bytes, MACs and the
/// energy estimate come with the first.
fn time_round(slimnet: &Slimnet, row: &mut Row, args: &Args, seconds: f64) -> Result<Vec<Run>> {
    let bench = slimnet.json(
        &[
            vec!["bench".into(), row.file.clone()],
            timing(args, seconds),
        ]
        .concat(),
    )?;
    row.file_bytes = bench["file_bytes"].as_u64();
    row.macs = bench["macs"].as_u64();
    if let (Some(b), Some(m)) = (row.file_bytes, row.macs) {
        row.energy_uj = Some(energy_uj(b, m, row.representation == "int8"));
    }
    runs_of(&bench)
}

/// `--batch B --threads T --seconds S`, as both `slimnet bench` and peer_bench.py take them.
fn timing(args: &Args, seconds: f64) -> Vec<String> {
    vec![
        "--batch".into(),
        join(&args.batch),
        "--threads".into(),
        join(&args.threads),
        "--seconds".into(),
        seconds.to_string(),
    ]
}

fn join(v: &[usize]) -> String {
    v.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

/// The peers of one model: its dense file exported to ONNX, timed by onnxruntime (f32 and
/// its static int8, built by the first round) and PyTorch, evaluated by onnxruntime. A peer
/// that cannot run keeps a row whose note says why.
struct Peers {
    onnx: PathBuf,
    int8: PathBuf,
    rows: Vec<Row>,
    /// Each row's timings, one entry per round.
    rounds: Vec<Vec<Vec<Run>>>,
}

impl Peers {
    /// Exports `dense` to ONNX under `dir`; rows are given notes instead when that fails.
    fn new(slimnet: &Slimnet, model: &str, dense: &Path, dir: &Path) -> Self {
        let onnx = dir.join("dense.onnx");
        let int8 = dir.join("dense-ort-int8.onnx");
        let mut rows: Vec<Row> = [
            ("dense", "onnxruntime", &onnx),
            ("dense", "torch", &onnx),
            ("int8", "onnxruntime-int8", &int8),
        ]
        .iter()
        .map(|(rep, rt, f)| Row::new(model, rep, rt, f))
        .collect();
        let exported = slimnet.run(&[
            "export".into(),
            dense.display().to_string(),
            "-o".into(),
            onnx.display().to_string(),
        ]);
        if let Err(e) = exported {
            Self::fail(&mut rows, &format!("export to ONNX failed: {e:#}"));
        }
        let n = rows.len();
        Self {
            onnx,
            int8,
            rows,
            rounds: vec![Vec::new(); n],
        }
    }

    fn fail(rows: &mut [Row], why: &str) {
        for r in rows {
            r.note.get_or_insert_with(|| why.to_string());
        }
    }

    fn usable(&self) -> bool {
        self.rows.iter().all(|r| r.note.is_none())
    }

    fn data(args: &Args) -> PathBuf {
        args.source
            .data
            .clone()
            .unwrap_or_else(|| PathBuf::from("/usr/share/datasets/fashion-mnist"))
    }

    /// One round of `scripts/peer_bench.py` (the first builds onnxruntime's int8 model, later
    /// rounds reuse it).
    fn time_round(&mut self, args: &Args, seconds: f64, first: bool) {
        if !self.usable() {
            return;
        }
        let scripts = crate::workspace_root().join("scripts");
        let mut py: Vec<String> = vec![
            scripts.join("peer_bench.py").display().to_string(),
            self.onnx.display().to_string(),
        ];
        py.extend(timing(args, seconds));
        py.extend([
            "--int8-model".into(),
            self.int8.display().to_string(),
            "--data".into(),
            Self::data(args).display().to_string(),
            "--json".into(),
        ]);
        if !first {
            py.push("--reuse-int8".into());
        }
        match run_json(Command::new("python3").args(&py), "python3", &py) {
            Ok(v) => {
                let all: Vec<(String, Run)> = v["runs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| {
                        let rt = r["runtime"].as_str()?.to_string();
                        Some((rt, serde_json::from_value(r.clone()).ok()?))
                    })
                    .collect();
                for (row, rounds) in self.rows.iter().zip(&mut self.rounds) {
                    rounds.push(
                        all.iter()
                            .filter(|(rt, _)| *rt == row.runtime)
                            .map(|(_, r)| r.clone())
                            .collect(),
                    );
                }
            }
            Err(e) => Self::fail(
                &mut self.rows,
                &format!(
                    "scripts/peer_bench.py failed (needs python3 with onnx, onnxruntime, torch): {e:#}"
                ),
            ),
        }
    }

    /// The rows with their medians over rounds, bytes, accuracy and energy.
    fn finish(mut self, dense_row: &Row, args: &Args) -> Vec<Row> {
        let scripts = crate::workspace_root().join("scripts");
        for (row, rounds) in self.rows.iter_mut().zip(&self.rounds) {
            row.runs = median_over_rounds(rounds);
            let file = PathBuf::from(&row.file);
            if row.note.is_some() || !file.exists() {
                continue;
            }
            row.file_bytes = std::fs::metadata(&file).ok().map(|m| m.len());
            row.macs = dense_row.macs;
            let ev: Vec<String> = vec![
                scripts.join("eval_onnxruntime.py").display().to_string(),
                row.file.clone(),
                "--data".into(),
                Self::data(args).display().to_string(),
                "--json".into(),
            ];
            match run_json(Command::new("python3").args(&ev), "python3", &ev) {
                Ok(v) => row.accuracy = v["accuracy"].as_f64(),
                Err(e) => {
                    row.note
                        .get_or_insert_with(|| format!("evaluation failed: {e:#}"));
                }
            }
            if let (Some(b), Some(m)) = (row.file_bytes, row.macs) {
                row.energy_uj = Some(energy_uj(b, m, row.runtime == "onnxruntime-int8"));
            }
        }
        self.rows
    }
}

/// One model's rows: its slimnet representations (with their per-round timings) and peers.
struct ModelRows {
    rows: Vec<Row>,
    rounds: Vec<Vec<Vec<Run>>>,
    peers: Option<Peers>,
}

/// Runs the task.
pub fn run(args: Args) -> Result<()> {
    let t0 = Instant::now();
    let models: Vec<String> = match (args.models.is_empty(), args.quick) {
        (false, _) => args.models.clone(),
        (true, true) => vec!["lenet300".into()],
        (true, false) => ["lenet300", "lenet5", "cnn-teacher"]
            .map(String::from)
            .to_vec(),
    };
    let reps: Vec<String> = if !args.reps.is_empty() {
        args.reps.clone()
    } else if args.quick {
        reps::QUICK.iter().map(|s| s.to_string()).collect()
    } else {
        reps::ALL.iter().map(|s| s.to_string()).collect()
    };
    if let Some(r) = reps.iter().find(|r| !reps::ALL.contains(&r.as_str())) {
        bail!(
            "unknown representation {r:?} (one of {})",
            reps::ALL.join(", ")
        );
    }
    let seconds = args.seconds.unwrap_or(if args.quick { 0.3 } else { 0.5 });
    if !(seconds > 0.0 && seconds <= 3600.0) {
        bail!("--seconds must be in (0, 3600], got {seconds}");
    }
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 5 });
    if !(1..=1000).contains(&rounds) {
        bail!("--rounds must be in 1..=1000, got {rounds}");
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| crate::workspace_root().join("target/slimnet/bench"));
    let slimnet = Slimnet::build()?;
    // Every file made and evaluated first, so that the timing rounds run back to back.
    let mut all: Vec<ModelRows> = Vec::new();
    for (mi, model) in models.iter().enumerate() {
        eprintln!("[{}/{}] {model}", mi + 1, models.len());
        let dense = dense_model(model, &args)?;
        let name = dense
            .file_stem()
            .map_or_else(|| model.clone(), |s| s.to_string_lossy().into_owned());
        let dir = out.join("models").join(&name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut rows = Vec::new();
        for rep in &reps {
            let Some((file, command)) = make(&slimnet, &name, rep, &dense, &dir, &args)? else {
                continue;
            };
            eprintln!("  {name} {rep}: evaluating");
            let mut row = Row::new(&name, rep, "slimnet", &file);
            row.command = command;
            evaluate(&slimnet, &mut row, &args)?;
            rows.push(row);
        }
        let peers = (!args.no_peers).then(|| Peers::new(&slimnet, &name, &dense, &dir));
        let n = rows.len();
        all.push(ModelRows {
            rows,
            rounds: vec![Vec::new(); n],
            peers,
        });
    }
    for round in 0..rounds {
        for m in &mut all {
            for (row, timings) in m.rows.iter_mut().zip(&mut m.rounds) {
                eprintln!(
                    "  round {}/{rounds}: {} {}",
                    round + 1,
                    row.model,
                    row.representation
                );
                timings.push(time_round(&slimnet, row, &args, seconds)?);
            }
            if let Some(p) = &mut m.peers {
                eprintln!("  round {}/{rounds}: peers", round + 1);
                p.time_round(&args, seconds, round == 0);
            }
        }
    }
    let mut rows = Vec::new();
    for m in all {
        let mut mine: Vec<Row> = m
            .rows
            .into_iter()
            .zip(&m.rounds)
            .map(|(mut row, timings)| {
                row.runs = median_over_rounds(timings);
                row
            })
            .collect();
        if let Some(p) = m.peers {
            let base = mine
                .iter()
                .find(|r| r.representation == "dense")
                .cloned()
                .unwrap_or_else(|| Row::new("", "dense", "", Path::new("")));
            mine.extend(p.finish(&base, &args));
        }
        rows.extend(mine);
    }
    let context = report::Context::here(&args, seconds, rounds, t0.elapsed().as_secs_f64());
    report::write(&out, &rows, &context)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(batch: usize, threads: usize, us: f64) -> Run {
        Run {
            batch,
            threads,
            median_us: us,
            p90_us: 2.0 * us,
            p99_us: 3.0 * us,
            images_per_s: batch as f64 / (us * 1e-6),
            round_medians_us: Vec::new(),
        }
    }

    #[test]
    fn figures_are_medians_over_rounds_per_configuration() {
        let rounds = vec![
            vec![run(1, 1, 10.0), run(256, 1, 1000.0)],
            vec![run(1, 1, 30.0), run(256, 1, 900.0)],
            vec![run(1, 1, 20.0), run(256, 1, 5000.0)],
        ];
        let m = median_over_rounds(&rounds);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].batch, m[0].median_us, m[0].p90_us), (1, 20.0, 40.0));
        assert_eq!(m[0].round_medians_us, vec![10.0, 30.0, 20.0]);
        assert_eq!((m[1].batch, m[1].median_us), (256, 1000.0));
        assert!((m[1].images_per_s - 256_000.0).abs() < 1e-6);
    }

    #[test]
    fn an_even_number_of_rounds_takes_the_lower_middle_and_none_gives_no_runs() {
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.0);
        assert!(median_over_rounds(&[]).is_empty());
        let one = median_over_rounds(&[vec![run(1, 2, 7.0)]]);
        assert_eq!((one[0].threads, one[0].median_us), (2, 7.0));
    }
}
