//! `slimnet bench` end to end: the `--json` keys, one run per batch size and thread count,
//! on a dense native model, a sparse one and an ONNX file, and typed refusals of bad options.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tensor_core::rng::Rng;

fn slimnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slimnet"))
        .args(args)
        .output()
        .expect("running slimnet")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("slimnet-bench-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn bench_json(model: &Path, extra: &[&str]) -> serde_json::Value {
    let m = model.to_str().unwrap();
    let mut args = vec!["bench", m, "--seconds", "0.02", "--json"];
    args.extend_from_slice(extra);
    let out = slimnet(&args);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Checks the report's shape and that every statistic is positive and ordered.
fn check_report(r: &serde_json::Value, model: &Path, macs: u64, batches: &[u64], threads: &[u64]) {
    assert_eq!(r["model"], model.to_str().unwrap());
    assert_eq!(
        r["file_bytes"].as_u64().unwrap(),
        std::fs::metadata(model).unwrap().len()
    );
    assert_eq!(r["macs"].as_u64().unwrap(), macs);
    let runs = r["runs"].as_array().unwrap();
    let got: Vec<(u64, u64)> = runs
        .iter()
        .map(|x| (x["batch"].as_u64().unwrap(), x["threads"].as_u64().unwrap()))
        .collect();
    let want: Vec<(u64, u64)> = threads
        .iter()
        .flat_map(|&t| batches.iter().map(move |&b| (b, t)))
        .collect();
    assert_eq!(got, want);
    for x in runs {
        let f = |k: &str| x[k].as_f64().unwrap();
        assert!(f("median_us") > 0.0, "{x}");
        assert!(
            f("median_us") <= f("p90_us") && f("p90_us") <= f("p99_us"),
            "{x}"
        );
        assert!(x["iterations"].as_u64().unwrap() >= 5, "{x}");
        let ips = f("batch") / (f("median_us") * 1e-6);
        assert!((f("images_per_s") - ips).abs() <= 1e-6 * ips, "{x}");
    }
}

#[test]
fn dense_and_sparse_native_models() {
    let dir = scratch("native");
    let mut model = nn::zoo::build("lenet5", &mut Rng::seed_from_u64(3)).unwrap();
    let dense = dir.join("lenet5.model");
    nn::io::native::save(&model, &dense).unwrap();
    let r = bench_json(&dense, &["--batch", "1,3", "--threads", "1,2"]);
    // conv1 288,000 + conv2 1,600,000 + fc 400,000 + 5,000.
    check_report(&r, &dense, 2_293_000, &[1, 3], &[1, 2]);

    // Zero all but every 10th weight: sparsify swaps in the sparse layers, whose file is
    // smaller and which the bench must run through the registry.
    for (_, p) in model.named_params_mut() {
        if p.name == "weight" {
            for (i, v) in p.value.data_mut().iter_mut().enumerate() {
                if i % 10 != 0 {
                    *v = 0.0;
                }
            }
        }
    }
    assert!(prune::sparsify(&mut model, 0.2).unwrap() >= 3);
    let sparse = dir.join("lenet5-sparse.model");
    nn::io::native::save(&model, &sparse).unwrap();
    let r = bench_json(&sparse, &["--batch", "2", "--threads", "1"]);
    assert_eq!(r["runs"].as_array().unwrap().len(), 1);
    assert!(r["file_bytes"].as_u64().unwrap() < std::fs::metadata(&dense).unwrap().len());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn onnx_model_and_human_output() {
    let onnx = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/onnx/lenet_ts_op13.onnx");
    let r = bench_json(&onnx, &["--batch", "2", "--threads", "2"]);
    assert!(r["macs"].as_u64().unwrap() > 0);
    assert_eq!(r["runs"][0]["threads"], 2);
    let out = slimnet(&[
        "bench",
        onnx.to_str().unwrap(),
        "--seconds",
        "0.01",
        "--batch",
        "1",
        "--threads",
        "1",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("images/s") && text.contains("MACs"), "{text}");
}

#[test]
fn bad_options_are_refused() {
    let onnx = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/onnx/mlp_ts_op13.onnx");
    let m = onnx.to_str().unwrap();
    for (args, what) in [
        (vec!["--batch", "0"], "--batch"),
        (vec!["--threads", "0"], "--threads"),
        (vec!["--seconds=-1"], "--seconds"),
    ] {
        let mut all = vec!["bench", m];
        all.extend(args);
        let out = slimnet(&all);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(what), "{err}");
    }
    let out = slimnet(&["bench", "/nonexistent/x.model"]);
    assert!(!out.status.success());
}
