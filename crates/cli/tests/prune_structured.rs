//! `slimnet prune --method filters` writes a smaller dense model (fewer MACs, a smaller file)
//! that eval, inspect and ONNX export/import all read; `--method nm` writes 2:4 sparse
//! layers. Small models, a slice of the committed Fashion-MNIST fixtures.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nn::layers::{
    BatchNorm2d, Conv2d, Conv2dParams, Dropout, Flatten, Linear, MaxPool2d, Padding, ReLU,
};
use nn::{Layer, Model};
use tensor_core::rng::Rng;

fn slimnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slimnet"))
        .args(args)
        .output()
        .expect("running slimnet")
}

fn fixtures() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/fashion-mnist");
    p.to_str().unwrap().to_string()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("slimnet-struct-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A small teacher-shaped CNN: conv-BN-ReLU 8, pool, conv-BN-ReLU 16, pool, flatten,
/// fc 784-32, ReLU, dropout 0.5, fc 32-10.
fn small_cnn(path: &Path) {
    let mut rng = Rng::seed_from_u64(4);
    let conv = |cin, cout, rng: &mut Rng| -> Box<dyn Layer> {
        let p = Conv2dParams::new(cin, cout, (3, 3)).with_padding(Padding::symmetric(1));
        Box::new(Conv2d::new(p, rng).unwrap())
    };
    let layers: Vec<Box<dyn Layer>> = vec![
        conv(1, 8, &mut rng),
        Box::new(BatchNorm2d::new(8).unwrap()),
        Box::new(ReLU::new()),
        Box::new(MaxPool2d::square(2).unwrap()),
        conv(8, 16, &mut rng),
        Box::new(BatchNorm2d::new(16).unwrap()),
        Box::new(ReLU::new()),
        Box::new(MaxPool2d::square(2).unwrap()),
        Box::new(Flatten::new()),
        Box::new(Linear::new(16 * 49, 32, &mut rng).unwrap()),
        Box::new(ReLU::new()),
        Box::new(Dropout::new(0.5, 9).unwrap()),
        Box::new(Linear::new(32, 10, &mut rng).unwrap()),
    ];
    let model = Model::new("small-cnn", &[1, 28, 28], layers);
    nn::io::native::save(&model, path).unwrap();
}

#[test]
fn filter_pruning_halves_the_macs_and_the_file_and_exports_to_onnx() {
    let dir = scratch("filters");
    let d = fixtures();
    let dense = dir.join("cnn.model");
    small_cnn(&dense);
    let out = dir.join("filters.model");
    let o = out.to_str().unwrap();
    let report = json(&slimnet(&[
        "prune",
        dense.to_str().unwrap(),
        "-o",
        o,
        "--method",
        "filters",
        "--ratio",
        "2",
        "--retrain-epochs",
        "1",
        "--lr",
        "1e-3",
        "--limit",
        "256",
        "--data",
        &d,
        "--json",
    ]));
    let (macs, before) = (
        report["macs"].as_u64().unwrap(),
        report["macs_before"].as_u64().unwrap(),
    );
    assert!(2 * macs <= before && 2 * macs > before * 9 / 10, "{report}");
    let file_bytes = std::fs::metadata(&out).unwrap().len();
    assert_eq!(report["file_bytes"], file_bytes);
    assert!(2 * file_bytes < report["baseline"]["file_bytes"].as_u64().unwrap() * 11 / 10);
    let filters = report["filters"].as_array().unwrap();
    let paths: Vec<&str> = filters
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["0", "4", "9"],
        "the last layer keeps its 10 outputs"
    );
    let rate = report["dropout"][0]["rate"].as_f64().unwrap();
    assert!(
        rate < 0.5 && rate > 0.2,
        "Han's adjustment lowered dropout: {rate}"
    );

    let eval = json(&slimnet(&["eval", o, "--data", &d, "--json"]));
    assert_eq!(eval["evaluation"]["accuracy"], report["accuracy"]);
    let inspect = json(&slimnet(&["inspect", o, "--json"]));
    assert_eq!(inspect["macs"], report["macs"]);
    assert_eq!(inspect["layers"][0]["kind"], "conv2d", "plain dense layers");

    let onnx = dir.join("filters.onnx");
    let export = slimnet(&["export", o, "-o", onnx.to_str().unwrap()]);
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let eval_onnx = json(&slimnet(&[
        "eval",
        onnx.to_str().unwrap(),
        "--data",
        &d,
        "--json",
    ]));
    assert_eq!(eval_onnx["evaluation"]["accuracy"], report["accuracy"]);
}

#[test]
fn two_four_pruning_writes_sparse_layers_at_half_density() {
    let dir = scratch("nm");
    let d = fixtures();
    let dense = dir.join("lenet300.model");
    let model = nn::zoo::build("lenet300", &mut Rng::seed_from_u64(2)).unwrap();
    nn::io::native::save(&model, &dense).unwrap();
    let out = dir.join("nm.model");
    let o = out.to_str().unwrap();
    let report = json(&slimnet(&[
        "prune",
        dense.to_str().unwrap(),
        "-o",
        o,
        "--method",
        "nm",
        "--nm",
        "2:4",
        "--retrain-epochs",
        "1",
        "--limit",
        "256",
        "--data",
        &d,
        "--json",
    ]));
    for l in report["layers"].as_array().unwrap() {
        assert_eq!(l["density"], 0.5, "{report}");
    }
    let weights = 784 * 300 + 300 * 100 + 100 * 10;
    assert_eq!(report["nonzero_params"], weights / 2 + 410, "{report}");
    let inspect = json(&slimnet(&["inspect", o, "--json"]));
    assert_eq!(inspect["layers"][1]["kind"], "sparse_linear");
    let eval = json(&slimnet(&["eval", o, "--data", &d, "--json"]));
    assert_eq!(eval["evaluation"]["accuracy"], report["accuracy"]);
    let bad = slimnet(&[
        "prune",
        dense.to_str().unwrap(),
        "-o",
        o,
        "--method",
        "nm",
        "--nm",
        "4:2",
        "--data",
        &d,
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("4:2"));
}
