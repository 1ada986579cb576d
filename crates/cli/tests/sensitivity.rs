//! `slimnet sensitivity` and `slimnet prune --method sensitivity` on the committed slice.

mod common;

use common::{fixtures, ok, scratch, slimnet};

#[test]
fn sensitivity_scan_and_the_per_layer_targets_it_chooses() {
    let dir = scratch("sensitivity");
    let d = fixtures();
    let d = d.to_str().unwrap();
    let model = dir.join("l300.model");
    let m = model.to_str().unwrap();
    ok(&slimnet(&[
        "train", "--model", "lenet300", "--epochs", "1", "--limit", "2000", "--data", d, "-o", m,
    ]));

    let svg = dir.join("sens.svg");
    let out = ok(&slimnet(&[
        "sensitivity",
        m,
        "--sparsities",
        "0,0.5,0.9,0.99",
        "--samples",
        "1000",
        "--data",
        d,
        "--plot",
        svg.to_str().unwrap(),
        "--json",
    ]));
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let layers = r["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    assert_eq!(r["samples"], 1000);
    for l in layers {
        let acc: Vec<f64> = l["accuracy"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(acc.len(), 4);
        // Sparsity 0 is the unpruned model.
        assert_eq!(acc[0], r["baseline"].as_f64().unwrap());
    }
    // Removing 99% of the first layer alone must cost accuracy.
    let fc1: Vec<f64> = layers[0]["accuracy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(fc1[3] < fc1[0] - 0.05, "{fc1:?}");
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 3);

    // Per-layer targets from a scan reach the ratio overall, and differ between layers.
    let pruned = dir.join("pruned.model");
    let out = ok(&slimnet(&[
        "prune",
        m,
        "--method",
        "sensitivity",
        "--ratio",
        "10",
        "--retrain-epochs",
        "0",
        "--limit",
        "2000",
        "--data",
        d,
        "--json",
        "-o",
        pruned.to_str().unwrap(),
    ]));
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let densities: Vec<f64> = r["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["density"].as_f64().unwrap())
        .collect();
    let weights = [235_200.0, 30_000.0, 1_000.0];
    let kept: f64 = densities.iter().zip(weights).map(|(d, w)| d * w).sum();
    assert!(
        (kept / 266_200.0 - 0.1).abs() < 0.002,
        "kept {kept}: {densities:?}"
    );
    assert!(densities[0] < densities[2], "{densities:?}");
    std::fs::remove_dir_all(&dir).ok();
}
