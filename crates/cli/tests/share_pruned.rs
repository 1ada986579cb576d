//! `slimnet prune` (one-shot, no retraining) -> `slimnet share` -> `slimnet eval`: the
//! shared file holds Deep Compression's sparse + shared layers, is smaller than the pruned
//! file, and eval reproduces the accuracy share reported.

mod common;

use common::{fixtures, ok, scratch, slimnet};
use std::path::Path;
use std::process::Output;

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).expect("one JSON document")
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

#[test]
fn pruned_then_shared_is_smaller_and_eval_reproduces_it() {
    let dir = scratch("share-pruned");
    let data = fixtures();
    let d = data.to_str().unwrap();
    let (dense, pruned, shared) = (
        dir.join("dense.model"),
        dir.join("pruned.model"),
        dir.join("shared.model"),
    );
    let (dn, pn, sn) = (
        dense.to_str().unwrap(),
        pruned.to_str().unwrap(),
        shared.to_str().unwrap(),
    );
    ok(&slimnet(&[
        "train", "--model", "lenet300", "--epochs", "1", "--limit", "2000", "--data", d, "-o", dn,
    ]));
    ok(&slimnet(&[
        "prune",
        dn,
        "-o",
        pn,
        "--ratio",
        "12",
        "--schedule",
        "oneshot",
        "--retrain-epochs",
        "0",
        "--limit",
        "500",
        "--data",
        d,
    ]));
    let report = json(&slimnet(&[
        "share",
        pn,
        "-o",
        sn,
        "--bits-fc",
        "5",
        "--finetune-epochs",
        "1",
        "--limit",
        "500",
        "--data",
        d,
        "--json",
    ]));
    assert_eq!(report["file_bytes"], size(&shared));
    assert!(
        size(&shared) * 2 < size(&pruned),
        "shared {} bytes, pruned {} bytes",
        size(&shared),
        size(&pruned)
    );
    let layers = report["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3, "{report}");
    for l in layers {
        assert_eq!(l["kind"], "sparse_shared_linear", "{l}");
        assert_eq!(
            (l["bits"].as_u64(), l["index_bits"].as_u64()),
            (Some(5), Some(5))
        );
        assert!(l["k"].as_u64().unwrap() <= 32);
        assert!(l["rate"].as_f64().unwrap() > 4.0, "{l}");
    }
    // The file is the per-layer bytes, Huffman-coded by the container where that is
    // smaller, plus headers: never more than the raw bytes and a few KB of headers.
    let layer_bytes: u64 = layers.iter().map(|l| l["bytes"].as_u64().unwrap()).sum();
    assert!(
        size(&shared) < layer_bytes + 4096,
        "{layer_bytes} of {}",
        size(&shared)
    );
    let eval = json(&slimnet(&["eval", sn, "--data", d, "--json"]));
    assert_eq!(eval["evaluation"]["accuracy"], report["accuracy"]);
    let inspect = json(&slimnet(&["inspect", sn, "--json"]));
    assert_eq!(inspect["layers"][1]["kind"], "sparse_shared_linear");
    assert_eq!(inspect["shared"][0]["bits"], 5);
    assert_eq!(inspect["shared"][0]["codebook"], layers[0]["k"]);
    assert_eq!(inspect["shared"][0]["path"], "1");
    assert_eq!(inspect["file_bytes"], size(&shared));
    std::fs::remove_dir_all(&dir).ok();
}
