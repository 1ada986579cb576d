//! The command line under interruption, bad values and the global options (issue 14).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{fixtures, ok, scratch, slimnet};

/// `slimnet train --model SPEC ARGS --data fixtures -o dir/NAME`: the output path and the run.
fn train(dir: &Path, spec: &str, args: &[&str], name: &str) -> (PathBuf, Output) {
    let m = dir.join(name);
    let d = fixtures();
    let mut all = vec!["train", "--model", spec];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--data", d.to_str().unwrap(), "-o", m.to_str().unwrap()]);
    let out = slimnet(&all);
    (m, out)
}

/// An MLP of `spec` trained for one epoch on the first `limit` images, written as `name`.
fn train_mlp(dir: &Path, spec: &str, limit: &str, name: &str) -> PathBuf {
    let (m, out) = train(dir, spec, &["--epochs", "1", "--limit", limit], name);
    ok(&out);
    m
}

/// A small trained model (784-30-10, 1,000 images, one epoch).
fn small_mlp(dir: &Path) -> PathBuf {
    train_mlp(dir, "mlp:784-30-10", "1000", "mlp.model")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn interrupting_a_write_leaves_no_debris() {
    let dir = scratch("interrupt");
    // 784-2000-2000-10: 5.6M weights, a 22 MB ONNX file whose write takes long enough to be
    // caught in the middle.
    let big = train_mlp(&dir, "mlp:784-2000-2000-10", "64", "big.model");
    let target = dir.join("big.onnx");
    let mut caught = 0;
    for _ in 0..4 {
        let _ = std::fs::remove_file(&target);
        let mut child = Command::new(env!("CARGO_BIN_EXE_slimnet"))
            .args([
                "export",
                big.to_str().unwrap(),
                "-o",
                target.to_str().unwrap(),
            ])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let tmp = dir.join(format!(".big.onnx.tmp-{}", child.id()));
        // Wait until the temporary file holds data (the write itself, not the output probe),
        // then interrupt.
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if std::fs::metadata(&tmp).is_ok_and(|m| m.len() > 0) {
                let sent = Command::new("kill")
                    .args(["-INT", &child.id().to_string()])
                    .status()
                    .unwrap();
                assert!(sent.success());
                caught += 1;
                break;
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let status = child.wait().unwrap();
        let leftovers: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "debris {leftovers:?} ({status})");
        if target.exists() {
            // Whatever was written is whole: it loads and names the same parameter count.
            let info: serde_json::Value = serde_json::from_str(&ok(&slimnet(&[
                "inspect",
                target.to_str().unwrap(),
                "--json",
            ])))
            .unwrap();
            assert_eq!(
                info["params"],
                784 * 2000 + 2000 + 2000 * 2000 + 2000 + 20010
            );
        }
    }
    eprintln!("interrupted {caught} of 4 writes in progress");

    // Many interruption points: `export` to ONNX and `import` back to the native format,
    // each stopped by SIGINT or SIGTERM at 16 delays spread over an uninterrupted run's
    // duration (before the read, during the conversion, during the write, around the
    // rename). Every time: no temporary file, and a target that is absent or whole.
    ok(&slimnet(&[
        "export",
        big.to_str().unwrap(),
        "-o",
        target.to_str().unwrap(),
    ]));
    let onnx = dir.join("source.onnx");
    std::fs::rename(&target, &onnx).unwrap();
    let params = 784 * 2000 + 2000 + 2000 * 2000 + 2000 + 20010;
    let mut outcomes = std::collections::BTreeMap::new();
    for (cmd, from, to) in [
        ("export", big.clone(), dir.join("out.onnx")),
        ("import", onnx.clone(), dir.join("out.model")),
    ] {
        let args = [cmd, from.to_str().unwrap(), "-o", to.to_str().unwrap()];
        let start = Instant::now();
        ok(&slimnet(&args));
        let full = start.elapsed();
        for k in 0..16u32 {
            let _ = std::fs::remove_file(&to);
            let signal = if k % 2 == 0 { "-INT" } else { "-TERM" };
            let mut child = Command::new(env!("CARGO_BIN_EXE_slimnet"))
                .args(args)
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(full * k / 15);
            let _ = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
            let status = child.wait().unwrap();
            *outcomes
                .entry(format!("{cmd} exit {:?}", status.code()))
                .or_insert(0) += 1;
            let leftovers: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".tmp-"))
                .collect();
            assert!(
                leftovers.is_empty(),
                "{cmd} {signal} at {k}/15: debris {leftovers:?} ({status})"
            );
            if to.exists() {
                let info: serde_json::Value = serde_json::from_str(&ok(&slimnet(&[
                    "inspect",
                    to.to_str().unwrap(),
                    "--json",
                ])))
                .unwrap();
                assert_eq!(info["params"], params, "{cmd} {signal} at {k}/15");
            }
        }
    }
    eprintln!("outcomes of the spread interruptions: {outcomes:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn nonfinite_weights_and_inputs_are_refused_or_warned() {
    let dir = scratch("nonfinite");
    let m = small_mlp(&dir);
    let mut model = pipeline::load(&m, None).unwrap();
    {
        let params = model.named_params_mut();
        let (_, p) = params.into_iter().next().unwrap();
        p.value.data_mut()[5] = f32::NAN;
    }
    let bad = dir.join("nan.slim");
    pipeline::save(
        &model,
        Default::default(),
        &pipeline::container::WriteOptions::default(),
        &bad,
    )
    .unwrap();
    let d = fixtures();
    let args = ["eval", bad.to_str().unwrap(), "--data", d.to_str().unwrap()];
    let out = slimnet(&[&args[..], &["--limit", "100"]].concat());
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("weight") && e.contains("element 5") && e.contains("--allow-nonfinite"),
        "{e}"
    );
    let out = slimnet(&[&args[..], &["--limit", "100", "--allow-nonfinite"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("warning:"), "{}", stderr(&out));

    // An input array with an infinity.
    let mut x = vec![0.5f32; 2 * 784];
    x[800] = f32::INFINITY;
    let xp = dir.join("x.npy");
    nn::io::npy::write_npy(&xp, &tensor_core::Tensor::new(&[2, 1, 28, 28], x).unwrap()).unwrap();
    let y = dir.join("y.npy");
    let out = slimnet(&[
        "run",
        m.to_str().unwrap(),
        "--input",
        xp.to_str().unwrap(),
        "-o",
        y.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("x.npy: element 800 is inf"),
        "{}",
        stderr(&out)
    );
    assert!(!y.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn run_works_in_batches_and_writes_probabilities_or_classes() {
    let dir = scratch("run-batches");
    let m = small_mlp(&dir);
    let n = 37;
    let x: Vec<f32> = (0..n * 784).map(|i| (i * 7 % 255) as f32 / 255.0).collect();
    let xp = dir.join("x.npy");
    nn::io::npy::write_npy(&xp, &tensor_core::Tensor::new(&[n, 1, 28, 28], x).unwrap()).unwrap();
    let run = |extra: &[&str], name: &str| -> PathBuf {
        let y = dir.join(name);
        let mut args = vec![
            "run",
            m.to_str().unwrap(),
            "--input",
            xp.to_str().unwrap(),
            "-o",
            y.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        ok(&slimnet(&args));
        y
    };
    let whole = nn::io::npy::read_npy(run(&[], "whole.npy")).unwrap();
    let batched = nn::io::npy::read_npy(run(&["--batch-size", "5"], "batched.npy")).unwrap();
    assert_eq!(whole.dims(), &[n, 10]);
    for (a, b) in whole.data().iter().zip(batched.data()) {
        assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{a} vs {b}");
    }
    let probs = nn::io::npy::read_npy(run(&["--softmax"], "p.npy")).unwrap();
    for row in probs.data().chunks(10) {
        let sum: f32 = row.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5 && row.iter().all(|&p| p >= 0.0));
    }
    // --argmax: int64 class indices, the argmax of the logits.
    let bytes = std::fs::read(run(&["--argmax"], "c.npy")).unwrap();
    let header = String::from_utf8_lossy(&bytes[10..bytes.len().min(128)]).into_owned();
    assert!(
        header.contains("'<i8'") && header.contains(&format!("({n},)")),
        "{header}"
    );
    let classes: Vec<i64> = bytes[bytes.len() - 8 * n..]
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let want: Vec<i64> = whole
        .argmax_rows()
        .unwrap()
        .into_iter()
        .map(|c| c as i64)
        .collect();
    assert_eq!(classes, want);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn global_quiet_and_threads_options() {
    let dir = scratch("global-options");
    let m = small_mlp(&dir);
    let d = fixtures();
    let eval = |extra: &[&str]| {
        let mut args = vec![
            "eval",
            m.to_str().unwrap(),
            "--data",
            d.to_str().unwrap(),
            "--limit",
            "200",
        ];
        args.extend_from_slice(extra);
        slimnet(&args)
    };
    let out = eval(&[]);
    assert!(stderr(&out).contains("data: "), "{}", stderr(&out));
    let out = eval(&["--quiet", "--threads", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "--quiet prints nothing on stderr");
    let out = eval(&["--threads", "1,2"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--threads takes one"),
        "{}",
        stderr(&out)
    );
    // bench takes a list.
    let out = slimnet(&[
        "bench",
        m.to_str().unwrap(),
        "--threads",
        "1",
        "--batch",
        "1",
        "--seconds",
        "0.05",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(report["runs"].as_array().unwrap().len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn training_prints_a_line_per_epoch_when_stderr_is_a_file() {
    let dir = scratch("epoch-lines");
    let (_, out) = train(
        &dir,
        "mlp:784-30-10",
        &["--epochs", "2", "--limit", "500"],
        "m.model",
    );
    ok(&out);
    let e = stderr(&out);
    assert!(e.contains("epoch   1:") && e.contains("epoch   2:"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn help_says_what_the_tool_does() {
    let help = ok(&slimnet(&["--help"]));
    assert!(help.contains("cheap to run"), "{help}");
    for verb in [
        "compress",
        "prune",
        "quantize",
        "binarize",
        "decompose",
        "distill",
    ] {
        assert!(help.contains(verb), "{verb} missing from --help");
    }
}

#[test]
fn a_validation_split_keeps_model_selection_off_the_test_set() {
    let dir = scratch("val-split");
    let split = ["--epochs", "1", "--val-split", "0.1"];
    let (_, out) = train(
        &dir,
        "mlp:784-30-10",
        &[&split[..], &["--limit", "1000", "--json"]].concat(),
        "m.model",
    );
    let report: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(report["train_images"], 900);
    assert_eq!(report["validation_images"], 100);
    let (_, lines) = train(
        &dir,
        "mlp:784-30-10",
        &[&split[..], &["--limit", "200"]].concat(),
        "m.model",
    );
    ok(&lines);
    assert!(
        stderr(&lines).contains("validation accuracy"),
        "{}",
        stderr(&lines)
    );
    // The test set is still evaluated whole, once.
    assert_eq!(report["test"]["samples"], 10_000);
    let bad = ["--epochs", "1", "--limit", "10", "--val-split", "1.5"];
    let (_, out) = train(&dir, "mlp:784-30-10", &bad, "m.model");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not in (0, 1)"), "{}", stderr(&out));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn train_help_shows_each_recipe_default() {
    let out = slimnet(&["train", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout).to_string();
    for name in ["lenet300", "lenet5", "cnn-teacher"] {
        let c = nn::recipes::reference_config(name).unwrap();
        for (flag, value) in [
            ("--epochs", c.epochs.to_string()),
            ("--batch-size", c.batch_size.to_string()),
            ("--lr", c.optimizer.lr().to_string()),
            ("--augment", c.augment.is_some().to_string()),
        ] {
            let line = help
                .lines()
                .find(|l| l.trim_start().starts_with(flag))
                .unwrap_or_else(|| panic!("{flag} missing from:\n{help}"));
            assert!(line.contains(&format!("{name} {value}")), "{flag}: {line}");
        }
    }
}

/// No command overwrites one of its inputs, and a bad output is found before any work
/// (issue 14, "No work lost, nothing destroyed"): `import x.onnx -o x.onnx`, `run --input
/// a.npy -o a.npy`, and `train` with an output in a missing directory (refused before the
/// data is read, so no "data:" line).
#[test]
fn inputs_are_never_outputs_and_bad_outputs_fail_first() {
    let dir = scratch("in-out");
    let m = small_mlp(&dir);
    let onnx = dir.join("x.onnx");
    ok(&slimnet(&[
        "export",
        m.to_str().unwrap(),
        "-o",
        onnx.to_str().unwrap(),
    ]));
    let before = std::fs::read(&onnx).unwrap();
    let o = onnx.to_str().unwrap();
    let out = slimnet(&["import", o, "-o", o]);
    assert!(
        !out.status.success() && stderr(&out).contains("is an input"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&onnx).unwrap(), before);

    let a = dir.join("a.npy");
    nn::io::npy::write_npy(
        &a,
        &tensor_core::Tensor::zeros_dims(&[2, 1, 28, 28]).unwrap(),
    )
    .unwrap();
    let before = std::fs::read(&a).unwrap();
    let out = slimnet(&[
        "run",
        m.to_str().unwrap(),
        "--input",
        a.to_str().unwrap(),
        "-o",
        a.to_str().unwrap(),
    ]);
    assert!(
        !out.status.success() && stderr(&out).contains("is an input"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&a).unwrap(), before);

    let bad = dir.join("../missing-dir/t.model");
    let (_, out) = train(
        &dir,
        "mlp:784-8-10",
        &["--epochs", "1"],
        "../missing-dir/t.model",
    );
    let e = stderr(&out);
    assert!(
        !out.status.success() && e.contains("does not exist") && !e.contains("data:"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(!bad.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `eval` reads the test split only (issue 14, "Bounded memory"): training files that are
/// garbage do not matter to it.
#[test]
fn eval_reads_only_the_test_split() {
    let dir = scratch("eval-test-only");
    let m = small_mlp(&dir);
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let fx = fixtures();
    for f in ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
        std::fs::copy(fx.join(f), data.join(f)).unwrap();
    }
    for f in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"] {
        std::fs::write(data.join(f), b"not an IDX file at all").unwrap();
    }
    let out = slimnet(&[
        "eval",
        m.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    assert!(v["evaluation"]["samples"].as_u64().unwrap() > 0, "{v}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A truncated `.npy` input of `run` is a one-line error naming the file once and the bytes
/// its shape needs against those it holds (issue 14, "Errors").
#[test]
fn a_truncated_npy_input_is_named() {
    let dir = scratch("npy-cut");
    let m = small_mlp(&dir);
    let a = dir.join("cut.npy");
    let full = nn::io::npy::npy_bytes(&tensor_core::Tensor::zeros_dims(&[4, 1, 28, 28]).unwrap());
    // 4 x 784 float32 = 12,544 bytes of data, 100 of them cut.
    std::fs::write(&a, &full[..full.len() - 100]).unwrap();
    let y = dir.join("y.npy");
    let out = slimnet(&[
        "run",
        m.to_str().unwrap(),
        "--input",
        a.to_str().unwrap(),
        "-o",
        y.to_str().unwrap(),
    ]);
    let e = stderr(&out);
    assert!(
        !out.status.success() && e.contains("needs 12544 bytes, file holds 12444"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert_eq!(e.matches("cut.npy").count(), 1, "the path once: {e}");
    assert!(!y.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
