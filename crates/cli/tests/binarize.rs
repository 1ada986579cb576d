//! `slimnet binarize` -> `slimnet eval`: an XNOR-Net lenet5 trained from scratch on the
//! fixture slice is written with packed binary layers, reports the DESIGN keys, is much
//! smaller than its f32 twin, and eval reproduces the accuracy binarize reported (with and
//! without XNOR-Net's input scale K).

mod common;

use common::{fixtures, ok, scratch, slimnet};

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).expect("one JSON document")
}

/// `slimnet binarize --model lenet5 --mode MODE` for one epoch on 256 images of `data`, to
/// `out`, with `extra` arguments.
fn binarize_lenet5(mode: &str, extra: &[&str], data: &str, out: &str) -> std::process::Output {
    let mut args = vec![
        "binarize", "--model", "lenet5", "--mode", mode, "--epochs", "1", "--limit", "256",
        "--data", data, "-o", out,
    ];
    args.extend_from_slice(extra);
    slimnet(&args)
}

#[test]
fn binarize_writes_packed_layers_that_eval_reproduces() {
    let dir = scratch("binarize");
    let data = fixtures();
    let d = data.to_str().unwrap();
    let out = dir.join("l5-xnor.slim");
    let o = out.to_str().unwrap();
    let r = json(&binarize_lenet5("xnor", &["--json"], d, o));
    for key in [
        "output",
        "file_bytes",
        "params",
        "nonzero_params",
        "macs",
        "accuracy",
        "ratio",
    ] {
        assert!(r.get(key).is_some(), "missing {key}: {r}");
    }
    assert_eq!(r["mode"], "xnor");
    // conv2 and fc1 binarized (first and last kept), as paths of the written model.
    assert_eq!(r["binary_layers"].as_array().unwrap().len(), 2, "{r}");
    let file_bytes = r["file_bytes"].as_u64().unwrap();
    assert_eq!(file_bytes, std::fs::metadata(&out).unwrap().len());
    // lenet5's conv2 and fc1 hold 425,000 of its 431,080 weights: about 1/10 of f32 overall.
    assert!(r["ratio"].as_f64().unwrap() > 8.0, "{r}");
    let e = json(&slimnet(&["eval", o, "--data", d, "--json"]));
    assert_eq!(e["evaluation"]["accuracy"], r["accuracy"], "eval {e}");
    // With XNOR-Net's input scale K: the packed layers carry it, eval reproduces the accuracy.
    let out_k = dir.join("l5-xnor-k.slim");
    let out_k_str = out_k.to_str().unwrap();
    let r = json(&binarize_lenet5(
        "xnor",
        &["--input-scale", "--json"],
        d,
        out_k_str,
    ));
    assert_eq!(r["input_scale"], true, "{r}");
    let e = json(&slimnet(&["eval", out_k_str, "--data", d, "--json"]));
    assert_eq!(e["evaluation"]["accuracy"], r["accuracy"], "eval {e}");
    // K is XNOR-Net's: BNN refuses it, naming it.
    let bnn = dir.join("bnn.slim");
    let bad = binarize_lenet5("bnn", &["--input-scale"], d, bnn.to_str().unwrap());
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("input scale"));
    // Neither a file and --model, nor an unknown mode.
    let bad = slimnet(&[
        "binarize", "--model", "lenet5", "--mode", "ternary", "-o", o,
    ]);
    assert!(!bad.status.success());
    let bad = slimnet(&["binarize", "-o", o]);
    assert!(!bad.status.success());
    std::fs::remove_dir_all(&dir).ok();
}
