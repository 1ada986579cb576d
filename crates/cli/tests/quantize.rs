//! `slimnet quantize` end to end on the committed Fashion-MNIST slice: a briefly trained
//! lenet300 quantized to integer layers, its JSON keys, and the written file loaded back.

mod common;

use std::path::{Path, PathBuf};

use common::{fixtures, ok, scratch, slimnet};

/// lenet300 trained one epoch on 2,000 fixture images, in `dir`.
fn trained_lenet300(dir: &Path, data: &str) -> PathBuf {
    let model = dir.join("lenet300.model");
    ok(&slimnet(&[
        "train",
        "--model",
        "lenet300",
        "--epochs",
        "1",
        "--limit",
        "2000",
        "--data",
        data,
        "--seed",
        "3",
        "-o",
        model.to_str().unwrap(),
    ]));
    model
}

#[test]
fn quantize_writes_integer_layers_with_the_report_keys() {
    let dir = scratch("quantize");
    let d = fixtures();
    let d = d.to_str().unwrap();
    let model = trained_lenet300(&dir, d);
    let m = model.to_str().unwrap();
    let out = dir.join("q.slim");
    let o = out.to_str().unwrap();
    let report: serde_json::Value = serde_json::from_str(&ok(&slimnet(&[
        "quantize",
        m,
        "-o",
        o,
        "--per-channel",
        "--calibration",
        "percentile",
        "--calib-samples",
        "128",
        "--data",
        d,
        "--json",
    ])))
    .unwrap();
    for key in [
        "output",
        "file_bytes",
        "params",
        "nonzero_params",
        "macs",
        "accuracy",
        "ratio",
    ] {
        assert!(report.get(key).is_some(), "missing {key}: {report}");
    }
    let (acc, base) = (
        report["accuracy"].as_f64().unwrap(),
        report["baseline"]["accuracy"].as_f64().unwrap(),
    );
    assert!((acc - base).abs() < 0.02, "int8 {acc} vs float {base}");
    assert!(report["ratio"].as_f64().unwrap() > 3.5, "{report}");
    let layers = report["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    assert_eq!(layers[2]["float_output"], true);
    assert_eq!(report["calibration"], "percentile:99.99");

    let inspect = ok(&slimnet(&["inspect", o]));
    assert!(inspect.contains("quant_linear"), "{inspect}");
    let eval: serde_json::Value =
        serde_json::from_str(&ok(&slimnet(&["eval", o, "--data", d, "--json"]))).unwrap();
    assert_eq!(eval["evaluation"]["accuracy"], report["accuracy"]);

    // Integer layers export as QDQ ONNX (quant::onnx), not through nn's float exporter.
    let onnx = dir.join("q.onnx");
    ok(&slimnet(&["export", o, "-o", onnx.to_str().unwrap()]));
    let bytes = std::fs::read(&onnx).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("QuantizeLinear") && text.contains("DequantizeLinear"));

    // --teacher is the training objective: refused without --qat-epochs, before any work.
    let refused = slimnet(&["quantize", m, "-o", o, "--teacher", "self", "--data", d]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--qat-epochs"));
}

#[test]
fn quantize_with_qat_and_pow2_weights_reports_training_and_loads_back() {
    let dir = scratch("quantize-qat");
    let d = fixtures();
    let d = d.to_str().unwrap();
    let model = trained_lenet300(&dir, d);
    let m = model.to_str().unwrap();
    let out = dir.join("q4.slim");
    let o = out.to_str().unwrap();
    let report: serde_json::Value = serde_json::from_str(&ok(&slimnet(&[
        "quantize",
        m,
        "-o",
        o,
        "--weight-bits",
        "4",
        "--pow2",
        "--qat-epochs",
        "1",
        "--limit",
        "500",
        "--teacher",
        "self",
        "--calib-samples",
        "128",
        "--data",
        d,
        "--json",
    ])))
    .unwrap();
    let qat = &report["qat"];
    assert_eq!(qat["epochs"], 1, "{report}");
    assert_eq!(qat["teacher"], "self");
    assert_eq!(qat["epoch_accuracy"].as_array().unwrap().len(), 1);
    assert_eq!(report["pow2"], true);
    assert_eq!(report["per_channel"], true, "powers of two are per channel");
    let layers = report["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    assert!(
        layers
            .iter()
            .all(|l| l["pow2"] == true && l["weight_bits"] == 4)
    );
    // The integer model is within two points of the fake-quantized model it came from.
    let fq = qat["epoch_accuracy"][0].as_f64().unwrap();
    let acc = report["accuracy"].as_f64().unwrap();
    assert!(
        (acc - fq).abs() <= 0.02,
        "integer {acc} vs fake-quantized {fq}"
    );
    let eval: serde_json::Value =
        serde_json::from_str(&ok(&slimnet(&["eval", o, "--data", d, "--json"]))).unwrap();
    assert_eq!(eval["evaluation"]["accuracy"], report["accuracy"]);
}

#[test]
fn quantize_with_a_size_target_mixes_widths_within_it() {
    let dir = scratch("quantize-mixed");
    let d = fixtures();
    let d = d.to_str().unwrap();
    let model = trained_lenet300(&dir, d);
    let out = dir.join("mixed.slim");
    // lenet300's 266,200 weights at 8 bits pack to about 268 KB; ask for 200 KB.
    let target = 200_000u64;
    let report: serde_json::Value = serde_json::from_str(&ok(&slimnet(&[
        "quantize",
        model.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--per-channel",
        "--calib-samples",
        "64",
        "--sensitivity-samples",
        "200",
        "--target-bytes",
        &target.to_string(),
        "--data",
        d,
        "--json",
    ])))
    .unwrap();
    let mixed = &report["mixed"];
    assert!(mixed["packed_bytes"].as_u64().unwrap() <= target, "{mixed}");
    assert!(
        mixed["base_packed_bytes"].as_u64().unwrap() > target,
        "{mixed}"
    );
    let chosen: Vec<u64> = mixed["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["bits"].as_u64().unwrap())
        .collect();
    assert_eq!(chosen.len(), 3, "{mixed}");
    assert!(chosen.iter().any(|&b| b < 8), "{mixed}");
    // The layers of the report carry the chosen widths.
    let written: Vec<u64> = report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["weight_bits"].as_u64().unwrap())
        .collect();
    assert_eq!(written, chosen);
}
