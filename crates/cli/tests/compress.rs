//! `slimnet compress` with a recipe file: one JSON document with every stage, the per-layer
//! table and the energy estimate; `slimnet eval` of the written file gives exactly the
//! accuracy reported; the ONNX export of the same model compresses the same way; a bad
//! recipe names itself and writes nothing.

mod common;

use common::{fixtures, ok, scratch, slimnet};
use std::process::Output;

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).expect("one JSON document")
}

const RECIPE: &str = r#"
name = "quick-deep-compression"

[[stages]]
stage = "prune"
method = "global"
ratio = 10.0
schedule = "agp"
teacher = { model = "input" }
retrain = { epochs = 1, lr = 0.001 }

[[stages]]
stage = "share"
bits_fc = 5
finetune = { epochs = 1 }
"#;

#[test]
fn a_recipe_file_runs_every_stage_and_eval_reproduces_the_report() {
    let dir = scratch("compress");
    let data = fixtures();
    let d = data.to_str().unwrap();
    let dense = dir.join("dense.model");
    let dn = dense.to_str().unwrap();
    ok(&slimnet(&[
        "train", "--model", "lenet300", "--epochs", "1", "--limit", "2000", "--data", d, "-o", dn,
    ]));
    let recipe = dir.join("quick.toml");
    std::fs::write(&recipe, RECIPE).unwrap();
    let rn = recipe.to_str().unwrap();
    let compress = |input: &str, out: &str| {
        json(&slimnet(&[
            "compress", input, "--recipe", rn, "-o", out, "--limit", "1000", "--data", d, "--json",
        ]))
    };
    let out = dir.join("dense.slim");
    let on = out.to_str().unwrap();
    let r = compress(dn, on);
    for key in [
        "output",
        "file_bytes",
        "params",
        "nonzero_params",
        "macs",
        "accuracy",
        "baseline",
        "ratio",
        "stages",
        "layers",
        "energy",
    ] {
        assert!(r.get(key).is_some(), "missing {key}: {r}");
    }
    assert_eq!(r["file_bytes"], std::fs::metadata(&out).unwrap().len());
    assert_eq!(r["params"], 266_610);
    assert_eq!(r["baseline"]["dense_bytes"], 4 * 266_610);
    let stages = r["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 2);
    assert!(
        stages[0]["stage"]
            .as_str()
            .unwrap()
            .starts_with("prune global 10x")
    );
    assert!(stages[1]["file_bytes"].as_u64() < stages[0]["file_bytes"].as_u64());
    assert!(r["ratio"].as_f64().unwrap() > 25.0, "{r}");
    let layers = r["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    assert_eq!(layers[0]["kind"], "sparse_shared_linear");
    assert_eq!(layers[0]["weight_bits"], 5);
    assert!(r["energy"]["ratio"].as_f64().unwrap() > 1.0);
    // The file's accuracy is the one reported, and its metadata records the recipe.
    let eval = json(&slimnet(&["eval", on, "--data", d, "--json"]));
    assert_eq!(eval["evaluation"]["accuracy"], r["accuracy"]);
    let inspect = json(&slimnet(&["inspect", on, "--json"]));
    assert_eq!(inspect["layers"][1]["kind"], "sparse_shared_linear");
    // inspect re-checks the per-layer bytes of the report and shows the recipe.
    assert_eq!(inspect["sections"][1]["bytes"], layers[0]["bytes"]);
    let names: Vec<&str> = inspect["sections"][1]["payloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["gaps", "codes"]);
    assert!(
        inspect["metadata"]["recipe"]
            .as_str()
            .unwrap()
            .contains("quick-deep-compression")
    );
    assert_eq!(
        inspect["metadata"]["accuracy"]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .unwrap(),
        r["accuracy"].as_f64().unwrap()
    );

    // Exported only when asked to densify; the dense twin keeps the accuracy.
    let dense_onnx = dir.join("densified.onnx");
    let refused = slimnet(&["export", on, "-o", dense_onnx.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--densify"));
    ok(&slimnet(&[
        "export",
        on,
        "--densify",
        "-o",
        dense_onnx.to_str().unwrap(),
    ]));
    let eval = json(&slimnet(&[
        "eval",
        dense_onnx.to_str().unwrap(),
        "--data",
        d,
        "--json",
    ]));
    assert_eq!(eval["evaluation"]["accuracy"], r["accuracy"]);

    // The same model through ONNX: the same recipe, the same file size class.
    let onnx = dir.join("dense.onnx");
    ok(&slimnet(&["export", dn, "-o", onnx.to_str().unwrap()]));
    let out2 = dir.join("onnx.slim");
    let r2 = compress(onnx.to_str().unwrap(), out2.to_str().unwrap());
    assert_eq!(r2["baseline"]["accuracy"], r["baseline"]["accuracy"]);
    assert_eq!(
        r2["accuracy"], r["accuracy"],
        "same weights, seed and recipe"
    );
    assert_eq!(r2["layers"], r["layers"]);
}

#[test]
fn a_bad_recipe_is_named_and_nothing_is_written() {
    let dir = scratch("compress-bad");
    let recipe = dir.join("bad.toml");
    std::fs::write(
        &recipe,
        "name = \"x\"\n[[stages]]\nstage = \"share\"\nbits_fc = 12\n",
    )
    .unwrap();
    let model = dir.join("m.model");
    let out = dir.join("out.slim");
    let data = fixtures();
    ok(&slimnet(&[
        "train",
        "--model",
        "lenet300",
        "--epochs",
        "1",
        "--limit",
        "10",
        "--data",
        data.to_str().unwrap(),
        "-o",
        model.to_str().unwrap(),
    ]));
    for (r, want) in [
        (recipe.to_str().unwrap(), "bits_fc 12"),
        ("no-such-recipe", "neither a preset"),
    ] {
        let o = slimnet(&[
            "compress",
            model.to_str().unwrap(),
            "--recipe",
            r,
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "{err}");
        assert!(!out.exists());
    }
    // A bad output is found before any work: no data loaded, no stage run, input untouched.
    let before = std::fs::read(&model).unwrap();
    for (o, want) in [
        (dir.join("missing/out.slim"), "does not exist"),
        (dir.clone(), "is a directory"),
        (model.clone(), "is an input"),
    ] {
        let r = slimnet(&[
            "compress",
            model.to_str().unwrap(),
            "--recipe",
            "deep-compression",
            "-o",
            o.to_str().unwrap(),
        ]);
        assert!(!r.status.success());
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(err.contains(want) && !err.contains("data:"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    assert_eq!(std::fs::read(&model).unwrap(), before);
    let r = slimnet(&[
        "train",
        "--model",
        "lenet300",
        "-o",
        dir.join("no/m.model").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && err.contains("does not exist") && !err.contains("data:"),
        "{err}"
    );
}
