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
//! and `scripts/eval_onnxruntime.py`. Output: a table on the terminal, `report.md`,
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
    /// Seconds of timed runs per batch size and thread count [default: 2, 0.3 with --quick].
    #[arg(long)]
    seconds: Option<f64>,
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

/// The `slimnet` binary next to this xtask (built first by `cargo build --release -p cli`).
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

/// Accuracy, bytes, MACs and timings of one slimnet file.
fn measure(slimnet: &Slimnet, row: &mut Row, file: &Path, args: &Args, seconds: f64) -> Result<()> {
    let f = file.display().to_string();
    let mut eval = vec!["eval".to_string(), f.clone()];
    if let Some(d) = &args.source.data {
        eval.extend(["--data".into(), d.display().to_string()]);
    }
    row.accuracy = slimnet.json(&eval)?["evaluation"]["accuracy"].as_f64();
    let bench = slimnet.json(&[vec!["bench".into(), f], timing(args, seconds)].concat())?;
    row.file_bytes = bench["file_bytes"].as_u64();
    row.macs = bench["macs"].as_u64();
    row.runs = runs_of(&bench)?;
    if let (Some(b), Some(m)) = (row.file_bytes, row.macs) {
        row.energy_uj = Some(energy_uj(b, m, row.representation == "int8"));
    }
    Ok(())
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

/// The peer rows of `model`: its dense file exported to ONNX, timed by onnxruntime (f32 and
/// its static int8) and PyTorch, evaluated by onnxruntime. A peer that cannot run gives a
/// row whose note says why.
fn peers(
    slimnet: &Slimnet,
    model: &str,
    dense: &Path,
    dense_row: &Row,
    dir: &Path,
    args: &Args,
    seconds: f64,
) -> Vec<Row> {
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
    let fail = |rows: &mut Vec<Row>, why: String| {
        for r in rows.iter_mut() {
            r.note.get_or_insert_with(|| why.clone());
        }
    };
    let exported = slimnet.run(&[
        "export".into(),
        dense.display().to_string(),
        "-o".into(),
        onnx.display().to_string(),
    ]);
    if let Err(e) = exported {
        fail(&mut rows, format!("export to ONNX failed: {e:#}"));
        return rows;
    }
    let scripts = crate::workspace_root().join("scripts");
    let data = args
        .source
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from("/usr/share/datasets/fashion-mnist"));
    let mut py: Vec<String> = vec![
        scripts.join("peer_bench.py").display().to_string(),
        onnx.display().to_string(),
    ];
    py.extend(timing(args, seconds));
    py.extend([
        "--int8-model".into(),
        int8.display().to_string(),
        "--data".into(),
        data.display().to_string(),
        "--json".into(),
    ]);
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
            for row in &mut rows {
                row.runs = all
                    .iter()
                    .filter(|(rt, _)| *rt == row.runtime)
                    .map(|(_, r)| r.clone())
                    .collect();
            }
        }
        Err(e) => fail(
            &mut rows,
            format!(
                "scripts/peer_bench.py failed (needs python3 with onnx, onnxruntime, torch): {e:#}"
            ),
        ),
    }
    for row in &mut rows {
        let file = PathBuf::from(&row.file);
        if !file.exists() {
            continue;
        }
        row.file_bytes = std::fs::metadata(&file).ok().map(|m| m.len());
        row.macs = dense_row.macs;
        let ev: Vec<String> = vec![
            scripts.join("eval_onnxruntime.py").display().to_string(),
            row.file.clone(),
            "--data".into(),
            data.display().to_string(),
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
    rows
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
    let seconds = args.seconds.unwrap_or(if args.quick { 0.3 } else { 2.0 });
    if !(seconds > 0.0 && seconds <= 3600.0) {
        bail!("--seconds must be in (0, 3600], got {seconds}");
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| crate::workspace_root().join("target/slimnet/bench"));
    let slimnet = Slimnet::build()?;
    let mut rows = Vec::new();
    for (mi, model) in models.iter().enumerate() {
        eprintln!("[{}/{}] {model}", mi + 1, models.len());
        let dense = dense_model(model, &args)?;
        let name = dense
            .file_stem()
            .map_or_else(|| model.clone(), |s| s.to_string_lossy().into_owned());
        let dir = out.join("models").join(&name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut dense_row = None;
        for rep in &reps {
            let Some((file, command)) = make(&slimnet, &name, rep, &dense, &dir, &args)? else {
                continue;
            };
            eprintln!("  {name} {rep}: measuring");
            let mut row = Row::new(&name, rep, "slimnet", &file);
            row.command = command;
            measure(&slimnet, &mut row, &file, &args, seconds)?;
            if rep == "dense" {
                dense_row = Some(row.clone());
            }
            rows.push(row);
        }
        if !args.no_peers {
            eprintln!("  {name}: peers");
            let base = dense_row
                .clone()
                .unwrap_or_else(|| Row::new(&name, "dense", "", &dense));
            rows.extend(peers(&slimnet, &name, &dense, &base, &dir, &args, seconds));
        }
    }
    let context = report::Context::here(&args, seconds, t0.elapsed().as_secs_f64());
    report::write(&out, &rows, &context)
}
