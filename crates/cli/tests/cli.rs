//! End-to-end tests of the `slimnet` binary on the committed Fashion-MNIST slice.

mod common;

use common::{fixtures, ok, scratch, slimnet};
use std::path::{Path, PathBuf};

#[test]
fn train_inspect_eval_export_import_run() {
    let dir = scratch("e2e");
    let data = fixtures();
    let model = dir.join("lenet300.model");
    let m = model.to_str().unwrap();
    let d = data.to_str().unwrap();
    let train = ok(&slimnet(&[
        "train", "--model", "lenet300", "--epochs", "1", "--limit", "3000", "--data", d, "--seed",
        "7", "--json", "-o", m,
    ]));
    let report: serde_json::Value = serde_json::from_str(&train).unwrap();
    let acc = report["test"]["accuracy"].as_f64().unwrap();
    assert!(
        acc > 0.6,
        "one epoch on 3,000 images should pass 60%: {acc}"
    );
    assert_eq!(report["params"], 266_610);

    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&slimnet(&["inspect", m, "--json"]))).unwrap();
    assert_eq!(inspect["params"], 266_610);
    assert_eq!(inspect["macs"], 266_200);

    let eval: serde_json::Value =
        serde_json::from_str(&ok(&slimnet(&["eval", m, "--data", d, "--json"]))).unwrap();
    assert_eq!(
        eval["evaluation"]["accuracy"], report["test"]["accuracy"],
        "eval must reproduce train's figure"
    );

    let onnx = dir.join("lenet300.onnx");
    ok(&slimnet(&["export", m, "-o", onnx.to_str().unwrap()]));
    let back = dir.join("back.model");
    ok(&slimnet(&[
        "import",
        onnx.to_str().unwrap(),
        "-o",
        back.to_str().unwrap(),
    ]));
    let eval_back: serde_json::Value = serde_json::from_str(&ok(&slimnet(&[
        "eval",
        back.to_str().unwrap(),
        "--data",
        d,
        "--json",
    ])))
    .unwrap();
    assert_eq!(
        eval_back["evaluation"]["accuracy"],
        report["test"]["accuracy"]
    );

    // run: a .npy batch through the native and the ONNX model gives the same logits.
    let x = tensor_core::Tensor::new(
        &[3, 1, 28, 28],
        (0..3 * 784).map(|i| (i % 255) as f32 / 255.0).collect(),
    )
    .unwrap();
    let xp = dir.join("x.npy");
    nn::io::npy::write_npy(&xp, &x).unwrap();
    let (y1, y2) = (dir.join("y1.npy"), dir.join("y2.npy"));
    ok(&slimnet(&[
        "run",
        m,
        "--input",
        xp.to_str().unwrap(),
        "-o",
        y1.to_str().unwrap(),
    ]));
    ok(&slimnet(&[
        "run",
        onnx.to_str().unwrap(),
        "--input",
        xp.to_str().unwrap(),
        "-o",
        y2.to_str().unwrap(),
    ]));
    let (a, b) = (
        nn::io::npy::read_npy(&y1).unwrap(),
        nn::io::npy::read_npy(&y2).unwrap(),
    );
    assert_eq!(a.dims(), &[3, 10]);
    assert_eq!(a.data(), b.data());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn same_seed_same_model_file() {
    let dir = scratch("seed");
    let d = fixtures();
    let run = |name: &str| {
        let p = dir.join(name);
        ok(&slimnet(&[
            "train",
            "--model",
            "lenet300",
            "--epochs",
            "1",
            "--limit",
            "1000",
            "--data",
            d.to_str().unwrap(),
            "--seed",
            "3",
            "--json",
            "-o",
            p.to_str().unwrap(),
        ]));
        std::fs::read(p).unwrap()
    };
    assert_eq!(run("a.model"), run("b.model"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_inputs_fail_cleanly_without_output() {
    let dir = scratch("bad");
    let junk = dir.join("junk.model");
    std::fs::write(&junk, b"SLIMNETM\x01\x00\x00\x00garbage").unwrap();
    let out = slimnet(&["inspect", junk.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("junk.model") && err.starts_with("error:"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let target = dir.join("never.model");
    let out = slimnet(&[
        "import",
        junk.to_str().unwrap(),
        "-o",
        target.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(!target.exists(), "no output file on failure");

    let out = slimnet(&[
        "train",
        "--model",
        "resnet50",
        "--data",
        dir.to_str().unwrap(),
        "-o",
        target.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A small residual CNN for 28x28 images: conv, a Parallel block `relu(conv(x)) + x`, pool,
/// linear. Saved natively and exported to ONNX, it is fine-tuned by `slimnet train --model FILE`.
fn residual_cnn(path: &Path) {
    use nn::layers::{
        Conv2d, Conv2dParams, Flatten, Linear, MaxPool2d, Merge, Padding, Parallel, Pool2dParams,
        ReLU,
    };
    let mut rng = tensor_core::rng::Rng::seed_from_u64(4);
    let branch: Vec<Box<dyn nn::Layer>> = vec![
        Box::new(
            Conv2d::new(
                Conv2dParams::new(4, 4, (3, 3)).with_padding(Padding::symmetric(1)),
                &mut rng,
            )
            .unwrap(),
        ),
        Box::new(ReLU::new()),
    ];
    let model = nn::Model::new(
        "residual-cnn",
        &[1, 28, 28],
        vec![
            Box::new(
                Conv2d::new(
                    Conv2dParams::new(1, 4, (3, 3)).with_padding(Padding::symmetric(1)),
                    &mut rng,
                )
                .unwrap(),
            ),
            Box::new(ReLU::new()),
            Box::new(Parallel::new(vec![branch, vec![]], Merge::Add).unwrap()),
            Box::new(MaxPool2d::new(Pool2dParams::new((4, 4)).with_stride((4, 4))).unwrap()),
            Box::new(Flatten::new()),
            Box::new(Linear::new(4 * 7 * 7, 10, &mut rng).unwrap()),
        ],
    );
    nn::io::native::save(&model, path).unwrap();
}

#[test]
fn train_fine_tunes_a_residual_model_from_a_native_or_onnx_file() {
    let dir = scratch("finetune");
    let d = fixtures();
    let d = d.to_str().unwrap();
    let native = dir.join("residual.model");
    residual_cnn(&native);
    let onnx = dir.join("residual.onnx");
    ok(&slimnet(&[
        "export",
        native.to_str().unwrap(),
        "-o",
        onnx.to_str().unwrap(),
    ]));
    for (input, extra) in [
        (
            &native,
            vec!["--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9"],
        ),
        (&onnx, vec!["--optimizer", "adam", "--lr", "0.003"]),
    ] {
        let out = dir.join("tuned.model");
        let mut args = vec![
            "train",
            "--model",
            input.to_str().unwrap(),
            "--epochs",
            "1",
            "--limit",
            "4000",
            "--data",
            d,
            "--json",
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        let report: serde_json::Value = serde_json::from_str(&ok(&slimnet(&args))).unwrap();
        let acc = report["test"]["accuracy"].as_f64().unwrap();
        assert!(
            acc > 0.55,
            "{}: one epoch of fine-tuning reached only {acc}",
            input.display()
        );
        let inspect: serde_json::Value =
            serde_json::from_str(&ok(&slimnet(&["inspect", out.to_str().unwrap(), "--json"])))
                .unwrap();
        assert_eq!(inspect["layers"][2]["kind"], "parallel");
    }
    let bad = slimnet(&[
        "train",
        "--model",
        native.to_str().unwrap(),
        "--optimizer",
        "adam",
        "--momentum",
        "0.5",
        "--data",
        d,
        "-o",
        dir.join("x.model").to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--momentum applies to sgd"));
}

/// A compressed kind defined outside nn (prune's `sparse_linear`) inside a Parallel branch:
/// every command reads it through `pipeline::registry()`.
#[test]
fn a_compressed_layer_inside_a_branch_goes_through_every_command() {
    use nn::layers::{Flatten, Linear, Merge, Parallel, ReLU};
    let dir = scratch("sparse-branch");
    let d = fixtures();
    let d = d.to_str().unwrap();
    let mut rng = tensor_core::rng::Rng::seed_from_u64(9);
    let mut fc = Linear::new(64, 64, &mut rng).unwrap();
    for p in nn::Layer::params_mut(&mut fc) {
        if p.name == "weight" {
            p.value
                .data_mut()
                .iter_mut()
                .enumerate()
                .for_each(|(i, v)| {
                    if i % 5 != 0 {
                        *v = 0.0
                    }
                });
        }
    }
    let sparse = prune::SparseLinear::from_linear(&fc, 5).unwrap();
    let branch: Vec<Box<dyn nn::Layer>> = vec![Box::new(sparse), Box::new(ReLU::new())];
    let model = nn::Model::new(
        "sparse-residual",
        &[1, 28, 28],
        vec![
            Box::new(Flatten::new()),
            Box::new(Linear::new(784, 64, &mut rng).unwrap()),
            Box::new(Parallel::new(vec![branch, vec![]], Merge::Add).unwrap()),
            Box::new(Linear::new(64, 10, &mut rng).unwrap()),
        ],
    );
    let m = dir.join("sparse.model");
    nn::io::native::save(&model, &m).unwrap();
    let m = m.to_str().unwrap();

    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&slimnet(&["inspect", m, "--json"]))).unwrap();
    assert_eq!(inspect["layers"][2]["kind"], "parallel");
    let eval: serde_json::Value =
        serde_json::from_str(&ok(&slimnet(&["eval", m, "--data", d, "--json"]))).unwrap();
    assert!(eval["evaluation"]["accuracy"].as_f64().is_some());

    // Fine-tuning trains the kept weights of the sparse layer in place.
    let tuned = dir.join("tuned.model");
    let report: serde_json::Value = serde_json::from_str(&ok(&slimnet(&[
        "train",
        "--model",
        m,
        "--epochs",
        "1",
        "--limit",
        "3000",
        "--optimizer",
        "adam",
        "--lr",
        "0.002",
        "--data",
        d,
        "--json",
        "-o",
        tuned.to_str().unwrap(),
    ])))
    .unwrap();
    assert!(
        report["test"]["accuracy"].as_f64().unwrap() > 0.6,
        "{report}"
    );
    let back = pipeline::load(&tuned, None).unwrap();
    let mut kinds = Vec::new();
    back.visit(&mut |p, l| kinds.push(format!("{p}:{}", l.kind())));
    assert!(
        kinds.contains(&"2/0/0:sparse_linear".to_string()),
        "{kinds:?}"
    );

    // run: NumPy in, NumPy out.
    let x = dir.join("x.npy");
    nn::io::npy::write_npy(
        &x,
        &tensor_core::Tensor::zeros_dims(&[2, 1, 28, 28]).unwrap(),
    )
    .unwrap();
    let y = dir.join("y.npy");
    ok(&slimnet(&[
        "run",
        m,
        "--input",
        x.to_str().unwrap(),
        "-o",
        y.to_str().unwrap(),
    ]));
    assert_eq!(nn::io::npy::read_npy(&y).unwrap().dims(), &[2, 10]);

    // Formats that cannot carry the compressed weights say so and write nothing.
    for ext in ["onnx", "safetensors"] {
        let out = dir.join(format!("sparse.{ext}"));
        let r = slimnet(&["export", m, "-o", out.to_str().unwrap()]);
        assert!(!r.status.success());
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(
            err.contains("2/0/0") || err.contains("sparse_linear"),
            "{ext}: {err}"
        );
        assert!(!out.exists(), "{ext}: half-written output");
    }
}

/// lenet300 trained one epoch on 3,000 images of the slice, saved in `dir`.
fn small_lenet300(dir: &Path, data: &str) -> PathBuf {
    let dense = dir.join("dense.model");
    ok(&slimnet(&[
        "train",
        "--model",
        "lenet300",
        "--epochs",
        "1",
        "--limit",
        "3000",
        "--data",
        data,
        "-o",
        dense.to_str().unwrap(),
    ]));
    dense
}

#[test]
fn prune_writes_a_smaller_sparse_model_that_every_command_reads() {
    let dir = scratch("prune");
    let d = fixtures();
    let d = d.to_str().unwrap();
    let dense = small_lenet300(&dir, d);
    for (method, schedule) in [
        ("global", "agp"),
        ("layer-std", "iterative"),
        ("layer-std", "oneshot"),
    ] {
        let out = dir.join(format!("{method}-{schedule}.model"));
        let o = out.to_str().unwrap();
        let report: serde_json::Value = serde_json::from_str(&ok(&slimnet(&[
            "prune",
            dense.to_str().unwrap(),
            "-o",
            o,
            "--method",
            method,
            "--ratio",
            "10",
            "--schedule",
            schedule,
            "--retrain-epochs",
            "1",
            "--limit",
            "2000",
            "--data",
            d,
            "--json",
        ])))
        .unwrap();
        let nonzero = report["nonzero_params"].as_u64().unwrap() as f64;
        let params = report["params"].as_u64().unwrap() as f64;
        // 10x fewer weights (biases are kept).
        assert!(nonzero < params / 8.0, "{method}/{schedule}: {report}");
        assert!(report["ratio"].as_f64().unwrap() > 6.0, "{report}");
        let file_bytes = std::fs::metadata(&out).unwrap().len();
        assert_eq!(report["file_bytes"], file_bytes);
        // eval reproduces the accuracy the report states.
        let eval: serde_json::Value =
            serde_json::from_str(&ok(&slimnet(&["eval", o, "--data", d, "--json"]))).unwrap();
        assert_eq!(eval["evaluation"]["accuracy"], report["accuracy"]);
        let inspect: serde_json::Value =
            serde_json::from_str(&ok(&slimnet(&["inspect", o, "--json"]))).unwrap();
        assert_eq!(inspect["layers"][1]["kind"], "sparse_linear");
    }
    let bad = slimnet(&[
        "prune",
        dense.to_str().unwrap(),
        "-o",
        dir.join("x.model").to_str().unwrap(),
        "--method",
        "magic",
        "--data",
        d,
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown --method"));
}

#[test]
fn share_writes_codebook_layers_that_eval_reproduces() {
    let dir = scratch("share");
    let d = fixtures();
    let d = d.to_str().unwrap();
    let dense = small_lenet300(&dir, d);
    let out = dir.join("shared.model");
    let o = out.to_str().unwrap();
    let report: serde_json::Value = serde_json::from_str(&ok(&slimnet(&[
        "share",
        dense.to_str().unwrap(),
        "-o",
        o,
        "--bits-fc",
        "4",
        "--init",
        "kmeans++",
        "--finetune-epochs",
        "1",
        "--limit",
        "1000",
        "--data",
        d,
        "--json",
    ])))
    .unwrap();
    // 4-bit codes: about 8x smaller than f32 weights, codebooks and biases included.
    assert!(report["ratio"].as_f64().unwrap() > 6.0, "{report}");
    let loss =
        report["baseline"]["accuracy"].as_f64().unwrap() - report["accuracy"].as_f64().unwrap();
    assert!(loss < 0.05, "{report}");
    assert_eq!(report["layers"][0]["codebook"], 16);
    let eval: serde_json::Value =
        serde_json::from_str(&ok(&slimnet(&["eval", o, "--data", d, "--json"]))).unwrap();
    assert_eq!(eval["evaluation"]["accuracy"], report["accuracy"]);
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&slimnet(&["inspect", o, "--json"]))).unwrap();
    assert_eq!(inspect["layers"][1]["kind"], "shared_linear");
    let bad = slimnet(&[
        "share",
        dense.to_str().unwrap(),
        "-o",
        o,
        "--bits-fc",
        "9",
        "--data",
        d,
    ]);
    assert!(!bad.status.success());
}

#[test]
fn a_closed_stdout_pipe_ends_the_command_quietly() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let model = fixtures().join("onnx/lenet_ts_op13.onnx");
    let mut child = Command::new(env!("CARGO_BIN_EXE_slimnet"))
        .args(["inspect", model.to_str().unwrap(), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running slimnet");
    // The reader goes away before the first byte is read, as `| head -0` does.
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(status.code(), Some(101), "{stderr}");
}
