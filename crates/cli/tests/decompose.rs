//! `slimnet decompose`: a lenet5 decomposed to a MAC target (separable convolutions, SVD
//! linear layers), fine-tuned, written; `slimnet eval` and `inspect` reproduce its accuracy
//! and MACs; the rank options are exclusive; scheme 1 (`--method separable1`) and
//! `--include-last`.

mod common;

use common::{fixtures, ok, scratch, slimnet};
use std::process::Output;

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).expect("one JSON document")
}

#[test]
fn lenet5_to_half_its_macs_with_fine_tuning() {
    let dir = scratch("decompose");
    let data = fixtures();
    let d = data.to_str().unwrap();
    let model = dir.join("lenet5.model");
    let mn = model.to_str().unwrap();
    ok(&slimnet(&[
        "train", "--model", "lenet5", "--epochs", "1", "--limit", "500", "--data", d, "-o", mn,
    ]));
    let out = dir.join("lenet5-dec.slim");
    let on = out.to_str().unwrap();
    let r = json(&slimnet(&[
        "decompose",
        mn,
        "-o",
        on,
        "--method",
        "separable",
        "--mac-target",
        "0.5",
        "--calibration",
        "32",
        "--alternate",
        "1",
        "--finetune-epochs",
        "1",
        "--limit",
        "500",
        "--data",
        d,
        "--json",
    ]));
    for key in [
        "output",
        "file_bytes",
        "params",
        "nonzero_params",
        "macs",
        "accuracy",
        "baseline",
        "ratio",
        "layers",
        "macs_before",
        "macs_after",
        "conv_macs_before",
        "conv_macs_after",
        "accuracy_before_finetune",
    ] {
        assert!(r.get(key).is_some(), "missing {key}: {r}");
    }
    let (before, after) = (
        r["macs_before"].as_u64().unwrap(),
        r["macs_after"].as_u64().unwrap(),
    );
    assert!(after * 2 <= before, "{r}");
    assert_eq!(r["macs"], r["macs_after"]);
    let layers = r["layers"].as_array().unwrap();
    assert_eq!(
        layers.len(),
        3,
        "two convolutions, one linear layer (the classifier is kept)"
    );
    let saved: u64 = layers
        .iter()
        .map(|l| l["macs_before"].as_u64().unwrap() - l["macs_after"].as_u64().unwrap())
        .sum();
    assert_eq!(saved, before - after);
    // Refit and alternating on the calibration images never worsen a layer's output error.
    for l in layers.iter().filter(|l| !l["rank"].is_null()) {
        let refit = &l["refit"];
        assert!(
            refit["error_after"].as_f64() <= refit["error_before"].as_f64(),
            "{l}"
        );
    }
    let eval = json(&slimnet(&["eval", on, "--data", d, "--json"]));
    assert_eq!(eval["evaluation"]["accuracy"], r["accuracy"]);
    let inspect = json(&slimnet(&["inspect", on, "--json"]));
    assert_eq!(inspect["macs"], r["macs"], "{inspect}");

    let e = slimnet(&["decompose", mn, "-o", on, "--rank", "3", "--energy", "0.9"]);
    assert!(!e.status.success());
    let e = slimnet(&["decompose", mn, "-o", on, "--method", "tucker", "--data", d]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("unknown --method"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn scheme1_replaces_convolutions_by_three_layers_and_include_last_adds_the_classifier() {
    let dir = scratch("decompose-scheme1");
    let data = fixtures();
    let d = data.to_str().unwrap();
    let model = dir.join("lenet5.model");
    let mn = model.to_str().unwrap();
    ok(&slimnet(&[
        "train", "--model", "lenet5", "--epochs", "1", "--limit", "200", "--data", d, "-o", mn,
    ]));
    let out = dir.join("lenet5-s1.slim");
    let on = out.to_str().unwrap();
    let run = |extra: &[&str]| {
        let base = [
            "decompose",
            mn,
            "-o",
            on,
            "--method",
            "separable1",
            "--rank",
            "2",
            "--calibration",
            "16",
            "--limit",
            "200",
            "--data",
            d,
            "--json",
        ];
        json(&slimnet(&[&base[..], extra].concat()))
    };
    let r = run(&[]);
    let layers = r["layers"].as_array().unwrap();
    let schemes: Vec<&str> = layers
        .iter()
        .map(|l| l["scheme"].as_str().unwrap())
        .collect();
    assert_eq!(
        schemes,
        ["separable_basis", "separable_basis", "low_rank"],
        "{r}"
    );
    assert_eq!(r["method"], "separable_basis");
    let inspect = json(&slimnet(&["inspect", on, "--json"]));
    assert_eq!(inspect["macs"], r["macs"], "{inspect}");
    assert!(r["conv_macs_after"].as_u64() < r["conv_macs_before"].as_u64());
    std::fs::remove_file(&out).ok();
    let r = run(&["--include-last"]);
    assert_eq!(r["layers"].as_array().unwrap().len(), 4, "{r}");
    std::fs::remove_dir_all(&dir).ok();
}
