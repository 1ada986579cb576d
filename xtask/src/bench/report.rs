//! The bench report: a Markdown table (terminal and report.md), report.json and two SVG plots
//! (accuracy against file size and against batch-1 latency, one line per model through its
//! representations), with the machine, kernel paths, threads, date and git revision.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use pipeline::chart::{LineChart, Series};

use super::{Args, Row, Run};

/// Where and how the figures were measured.
#[derive(serde::Serialize)]
pub struct Context {
    pub command: String,
    pub cpu: String,
    pub kernels: String,
    pub threads: Vec<usize>,
    pub batch: Vec<usize>,
    pub seconds_per_timing: f64,
    /// Timing rounds; each figure is the median over them.
    pub rounds: usize,
    pub date: String,
    pub git: String,
    pub total_seconds: f64,
}

impl Context {
    /// This machine and checkout, now.
    pub fn here(args: &Args, seconds: f64, rounds: usize, total_seconds: f64) -> Self {
        let m = crate::machine::Machine::here();
        let argv: Vec<String> = std::env::args().skip(1).collect();
        Self {
            command: format!("cargo xtask {}", argv.join(" ")),
            cpu: m.cpu,
            kernels: kernels(),
            threads: args.threads.clone(),
            batch: args.batch.clone(),
            seconds_per_timing: seconds,
            rounds,
            date: m.date,
            git: git_revision(),
            total_seconds,
        }
    }
}

/// The kernel paths selected here and what the CPU lacks (the paths it skips).
fn kernels() -> String {
    use tensor_core::dispatch::{F32Path, Int8Path, PopcountPath};
    let report = tensor_core::dispatch::report();
    let lacks = report
        .split("lacks")
        .nth(1)
        .and_then(|r| r.split(']').next())
        .map(|r| r.trim_start_matches([' ', '[']).to_string())
        .unwrap_or_default();
    format!(
        "f32 {}, int8 {}, popcount {}; CPU lacks [{lacks}], those paths skipped",
        F32Path::selected().name(),
        Int8Path::selected().name(),
        PopcountPath::selected().name()
    )
}

fn git_revision() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(crate::workspace_root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(rev) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty { format!("{rev}+dirty") } else { rev }
        }
        None => "unknown (not a git checkout)".into(),
    }
}

/// The (batch, threads) columns present in any row, in the order given on the command line.
fn configs(rows: &[Row], ctx: &Context) -> Vec<(usize, usize)> {
    let present: BTreeSet<(usize, usize)> = rows
        .iter()
        .flat_map(|r| r.runs.iter().map(|x| (x.batch, x.threads)))
        .collect();
    let mut out = Vec::new();
    for &b in &ctx.batch {
        for &t in &ctx.threads {
            if present.contains(&(b, t)) {
                out.push((b, t));
            }
        }
    }
    out
}

/// The fastest batch-1 timing of a row over its thread counts.
fn best_batch1_run(r: &Row) -> Option<&Run> {
    r.runs
        .iter()
        .filter(|x| x.batch == 1)
        .min_by(|a, b| a.median_us.total_cmp(&b.median_us))
}

/// The fastest batch-1 median of a row over its thread counts.
fn best_batch1_us(r: &Row) -> Option<f64> {
    best_batch1_run(r).map(|x| x.median_us)
}

/// `, per round a-b x`: the range over rounds of `peer / ours` (each round times both one
/// after the other), when both have the same number of rounds (more than one).
fn per_round(o: &Run, p: &Run) -> String {
    if o.round_medians_us.len() < 2 || o.round_medians_us.len() != p.round_medians_us.len() {
        return String::new();
    }
    let ratios: Vec<f64> = o
        .round_medians_us
        .iter()
        .zip(&p.round_medians_us)
        .map(|(o, p)| p / o)
        .collect();
    let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("; per round {lo:.2}x-{hi:.2}x over {} rounds", ratios.len())
}

/// Whether `r` is on its model's Pareto front of (accuracy up, `cost` down).
fn on_front(rows: &[Row], r: &Row, cost: impl Fn(&Row) -> Option<f64>) -> bool {
    let (Some(a), Some(c)) = (r.accuracy, cost(r)) else {
        return false;
    };
    !rows.iter().any(|o| {
        o.model == r.model
            && matches!((o.accuracy, cost(o)), (Some(oa), Some(oc))
                if oa >= a && oc <= c && (oa > a || oc < c))
    })
}

fn label(r: &Row) -> String {
    match r.runtime.as_str() {
        "slimnet" => r.representation.clone(),
        "onnxruntime" => "onnxruntime f32".into(),
        "onnxruntime-int8" => "onnxruntime int8 (static)".into(),
        "torch" => "PyTorch f32".into(),
        other => other.into(),
    }
}

/// The Markdown report: context, the table, per-model summary lines, commands and notes.
pub fn markdown(rows: &[Row], ctx: &Context) -> String {
    let cols = configs(rows, ctx);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# slimnet bench: every representation beside its peers\n"
    );
    let _ = writeln!(
        s,
        "`{}` on {} ({} CPUs; kernels: {}), threads {:?}, {} s per timing, median over {} \
         interleaved round(s), {}, git {}; {:.0} s in all.\n",
        ctx.command,
        ctx.cpu,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        ctx.kernels,
        ctx.threads,
        ctx.seconds_per_timing,
        ctx.rounds,
        ctx.date,
        ctx.git,
        ctx.total_seconds
    );
    let mut head =
        "| model | representation | bytes | x smaller | accuracy | vs dense | energy uJ |"
            .to_string();
    let mut rule = "|---|---|---|---|---|---|---|".to_string();
    for &(b, t) in &cols {
        if b == 1 {
            let _ = write!(head, " batch 1, {t} thr: us median / p90 / p99 |");
        } else {
            let _ = write!(head, " batch {b}, {t} thr: img/s |");
        }
        rule.push_str("---|");
    }
    head.push_str(" Pareto |");
    rule.push_str("---|");
    let _ = writeln!(s, "{head}\n{rule}");
    for r in rows {
        let dense = rows
            .iter()
            .find(|d| d.model == r.model && d.runtime == "slimnet" && d.representation == "dense");
        let smaller = match (dense.and_then(|d| d.file_bytes), r.file_bytes) {
            (Some(d), Some(b)) if b > 0 => format!("{:.1}x", d as f64 / b as f64),
            _ => "-".into(),
        };
        let delta = match (dense.and_then(|d| d.accuracy), r.accuracy) {
            (Some(d), Some(a)) => format!("{:+.2}", 100.0 * (a - d)),
            _ => "-".into(),
        };
        let _ = write!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.model,
            label(r),
            r.file_bytes.map_or("-".into(), |b| b.to_string()),
            smaller,
            r.accuracy
                .map_or("-".into(), |a| format!("{:.2}%", 100.0 * a)),
            delta,
            r.energy_uj.map_or("-".into(), |e| format!("{e:.2}")),
        );
        for &(b, t) in &cols {
            let cell = r.runs.iter().find(|x| x.batch == b && x.threads == t);
            let _ = match (cell, b) {
                (None, _) => write!(s, " - |"),
                (Some(x), 1) => write!(
                    s,
                    " {:.1} / {:.1} / {:.1} |",
                    x.median_us, x.p90_us, x.p99_us
                ),
                (Some(x), _) => write!(s, " {:.0} |", x.images_per_s),
            };
        }
        let size = on_front(rows, r, |x| x.file_bytes.map(|b| b as f64));
        let speed = on_front(rows, r, best_batch1_us);
        let front = match (size, speed) {
            (true, true) => "size, latency",
            (true, false) => "size",
            (false, true) => "latency",
            _ => "",
        };
        let _ = writeln!(s, " {front} |");
    }
    s.push('\n');
    for model in models(rows) {
        let mine: Vec<&Row> = rows.iter().filter(|r| r.model == model).collect();
        let best = mine
            .iter()
            .filter(|r| r.runtime == "slimnet" && r.representation != "dense")
            .filter_map(|r| best_batch1_run(r).map(|x| (x, *r)))
            .min_by(|a, b| a.0.median_us.total_cmp(&b.0.median_us));
        let peer = mine
            .iter()
            .find(|r| r.runtime == "onnxruntime-int8")
            .and_then(|r| best_batch1_run(r));
        if let (Some((ours, r)), Some(theirs)) = (best, peer) {
            let (t, p) = (ours.median_us, theirs.median_us);
            let _ = writeln!(
                s,
                "- {model}: fastest compressed representation at batch 1 is {} ({t:.1} us, {}), \
                 {:.2}x onnxruntime's static int8 ({p:.1} us){}.",
                r.representation,
                r.accuracy
                    .map_or("accuracy -".into(), |a| format!("{:.2}%", 100.0 * a)),
                p / t,
                per_round(ours, theirs)
            );
        }
    }
    let mut named = Vec::new();
    for r in rows.iter().filter(|r| r.runtime == "slimnet") {
        if !named.contains(&r.representation) {
            named.push(r.representation.clone());
            let _ = writeln!(
                s,
                "- **{}**: {}.",
                r.representation,
                super::reps::describe(&r.representation)
            );
        }
    }
    let _ = writeln!(
        s,
        "\nCommands that made each file (rerun any of them, then `slimnet eval FILE --json` / `slimnet bench FILE --json`):\n"
    );
    for r in rows.iter().filter(|r| !r.command.is_empty()) {
        let _ = writeln!(s, "- {} {}: `{}`", r.model, r.representation, r.command);
    }
    let notes: Vec<&Row> = rows.iter().filter(|r| r.note.is_some()).collect();
    if !notes.is_empty() {
        let _ = writeln!(s, "\nEmpty cells:\n");
        for r in notes {
            let _ = writeln!(
                s,
                "- {} {}: {}",
                r.model,
                label(r),
                r.note.as_deref().unwrap_or("")
            );
        }
    }
    let _ = writeln!(
        s,
        "\nAccuracy: all 10,000 Fashion-MNIST test images (`slimnet eval`; peers: \
         scripts/eval_onnxruntime.py). Energy: 45 nm prices (Horowitz, ISSCC 2014), weights read \
         once per inference from SRAM when the file fits 512 KiB, else DRAM (pipeline::report::energy). \
         Timing: `slimnet bench` and scripts/peer_bench.py, the same method (seeded uniform input, \
         warm-up, nearest-rank percentiles), in interleaved rounds (each round times every row \
         of a model, then its peers); each figure is the median over rounds, the per-round \
         medians are in report.json."
    );
    s
}

fn models(rows: &[Row]) -> Vec<String> {
    let mut seen = Vec::new();
    for r in rows {
        if !seen.contains(&r.model) {
            seen.push(r.model.clone());
        }
    }
    seen
}

/// One line per model through its slimnet representations, ordered along x.
fn chart(rows: &[Row], title: &str, x_label: &str, x: impl Fn(&Row) -> Option<f64>) -> LineChart {
    let series = models(rows)
        .into_iter()
        .map(|m| {
            let mut points: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.model == m)
                .filter_map(|r| Some((x(r)?, 100.0 * r.accuracy?)))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series { name: m, points }
        })
        .collect();
    LineChart {
        title: title.into(),
        x_label: x_label.into(),
        y_label: "test accuracy (%)".into(),
        series,
    }
}

/// Writes report.md, report.json and the two plots under `out`, and prints the Markdown.
pub fn write(out: &Path, rows: &[Row], ctx: &Context) -> Result<()> {
    std::fs::create_dir_all(out)?;
    let md = markdown(rows, ctx);
    let write = nn::io::atomic::write_atomic;
    write(out.join("report.md"), md.as_bytes())?;
    let json = serde_json::json!({ "context": ctx, "rows": rows });
    write(
        out.join("report.json"),
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    let size = chart(
        rows,
        "Accuracy against file size",
        "log10(file bytes)",
        |r| r.file_bytes.map(|b| (b.max(1) as f64).log10()),
    );
    write(out.join("accuracy-vs-size.svg"), size.to_svg().as_bytes())?;
    let latency = chart(
        rows,
        "Accuracy against batch-1 latency (fastest thread count)",
        "log10(median us)",
        |r| best_batch1_us(r).map(|t| t.max(1e-3).log10()),
    );
    write(
        out.join("accuracy-vs-latency.svg"),
        latency.to_svg().as_bytes(),
    )?;
    println!("{md}");
    eprintln!("report: {}", out.join("report.md").display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, rep: &str, bytes: u64, acc: f64, us: f64) -> Row {
        let mut r = Row::new(model, rep, "slimnet", Path::new("f"));
        r.file_bytes = Some(bytes);
        r.accuracy = Some(acc);
        r.runs = vec![Run {
            batch: 1,
            threads: 1,
            median_us: us,
            p90_us: us,
            p99_us: us,
            images_per_s: 1e6 / us,
            round_medians_us: Vec::new(),
        }];
        r
    }

    fn ctx() -> Context {
        Context {
            command: "cargo xtask bench".into(),
            cpu: "cpu".into(),
            kernels: "k".into(),
            threads: vec![1],
            batch: vec![1],
            seconds_per_timing: 0.1,
            rounds: 1,
            date: "2026-11-30".into(),
            git: "abc".into(),
            total_seconds: 1.0,
        }
    }

    #[test]
    fn pareto_fronts_and_ratios() {
        let rows = vec![
            row("m", "dense", 1000, 0.90, 20.0),
            row("m", "pruned", 100, 0.89, 10.0),
            row("m", "int8", 300, 0.88, 30.0), // dominated on both
        ];
        assert!(on_front(&rows, &rows[0], |r| r
            .file_bytes
            .map(|b| b as f64)));
        assert!(on_front(&rows, &rows[1], best_batch1_us));
        assert!(!on_front(&rows, &rows[2], |r| r
            .file_bytes
            .map(|b| b as f64)));
        assert!(!on_front(&rows, &rows[2], best_batch1_us));
        let md = markdown(&rows, &ctx());
        assert!(
            md.contains("| m | pruned | 100 | 10.0x | 89.00% | -1.00 |"),
            "{md}"
        );
        assert!(
            md.contains("| m | int8 | 300 | 3.3x | 88.00% | -2.00 |"),
            "{md}"
        );
    }

    #[test]
    fn the_summary_compares_the_fastest_compressed_row_with_ort_int8() {
        let mut rows = vec![
            row("m", "dense", 1000, 0.9, 20.0),
            row("m", "pruned", 100, 0.89, 5.0),
        ];
        let mut peer = row("m", "int8", 250, 0.9, 15.0);
        peer.runtime = "onnxruntime-int8".into();
        rows.push(peer);
        let md = markdown(&rows, &ctx());
        assert!(
            md.contains("is pruned (5.0 us, 89.00%), 3.00x onnxruntime's static int8 (15.0 us)"),
            "{md}"
        );
    }

    #[test]
    fn the_summary_gives_the_ratio_range_over_interleaved_rounds() {
        let mut ours = row("m", "pruned", 100, 0.89, 5.0);
        ours.runs[0].round_medians_us = vec![5.0, 4.0, 6.0];
        let mut peer = row("m", "int8", 250, 0.9, 15.0);
        peer.runtime = "onnxruntime-int8".into();
        peer.runs[0].round_medians_us = vec![15.0, 16.0, 12.0];
        let rows = vec![row("m", "dense", 1000, 0.9, 20.0), ours, peer];
        let md = markdown(&rows, &ctx());
        assert!(
            md.contains(
                "3.00x onnxruntime's static int8 (15.0 us); per round 2.00x-4.00x over 3 rounds."
            ),
            "{md}"
        );
    }
}
