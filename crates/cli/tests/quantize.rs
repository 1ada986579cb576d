//! `slimnet quantize` end to end on the committed Fashion-MNIST slice: a briefly trained
//! lenet300 quantized to integer layers, its JSON keys, and the written file loaded back.

mod common;

use common::{fixtures, ok, scratch, slimnet};

#[test]
fn quantize_writes_integer_layers_with_the_report_keys() {
    let dir = scratch("quantize");
    let d = fixtures();
    let d = d.to_str().unwrap();
    let model = dir.join("lenet300.model");
    let m = model.to_str().unwrap();
    ok(&slimnet(&[
        "train", "--model", "lenet300", "--epochs", "1", "--limit", "2000", "--data", d, "--seed",
        "3", "-o", m,
    ]));
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

    // Unimplemented options are refused by name, before any work.
    let refused = slimnet(&["quantize", m, "-o", o, "--qat-epochs", "2", "--data", d]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--qat-epochs"));
}
