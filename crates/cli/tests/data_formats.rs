//! `--data` in any format interop reads (issue 13): a spec trained on `.npy` data of another
//! shape, its preprocessing kept in the model, a model of more than 256 classes trained and
//! evaluated, and a clear error for data a model cannot take.

mod common;

use std::path::Path;

use common::{fixtures, ok, scratch, slimnet};
use tensor_core::Tensor;

/// Two separable classes of 8x8 images (bright top half, bright bottom half) with noise.
fn write_split(dir: &Path, split: &str, n: usize, seed: u64) {
    let mut rng = tensor_core::rng::Rng::seed_from_u64(seed);
    let mut px = Vec::with_capacity(n * 64);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let class = (i % 2) as i64;
        for r in 0..8 {
            let bright = (r < 4) == (class == 0);
            for _ in 0..8 {
                let base = if bright { 0.7 } else { 0.2 };
                px.push(base + 0.2 * rng.uniform());
            }
        }
        labels.push(class);
    }
    let x = Tensor::new(&[n, 8, 8], px).unwrap();
    nn::io::npy::write_npy(dir.join(format!("x_{split}.npy")), &x).unwrap();
    std::fs::write(
        dir.join(format!("y_{split}.npy")),
        nn::io::npy::npy_bytes_i64(&[n], &labels),
    )
    .unwrap();
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).unwrap()
}

#[test]
fn a_spec_trains_on_npy_data_and_keeps_its_preprocessing() {
    let dir = scratch("data-formats");
    let data = dir.join("npy");
    std::fs::create_dir_all(&data).unwrap();
    write_split(&data, "train", 256, 1);
    write_split(&data, "test", 64, 2);
    let model = dir.join("m.model");
    let (d, m) = (data.to_str().unwrap(), model.to_str().unwrap());
    let trained = json(&slimnet(&[
        "--quiet",
        "train",
        "--model",
        "cnn:4",
        "--data",
        d,
        "--epochs",
        "8",
        "--batch-size",
        "16",
        "--lr",
        "0.01",
        "--normalize",
        "mean=0.5:std=0.25",
        "--json",
        "-o",
        m,
    ]));
    let acc = trained["test"]["accuracy"].as_f64().unwrap();
    assert!(acc >= 0.95, "separable classes: test accuracy {acc}");
    assert!(
        trained["data"].as_str().unwrap().contains(".npy pair"),
        "{trained}"
    );
    // eval reapplies the normalization stored in the model: the same accuracy.
    let eval = json(&slimnet(&["--quiet", "eval", m, "--data", d, "--json"]));
    assert_eq!(eval["evaluation"]["accuracy"].as_f64().unwrap(), acc);
    // An explicit, different normalization overrides it (and changes the logits).
    let other = json(&slimnet(&[
        "--quiet",
        "eval",
        m,
        "--data",
        d,
        "--json",
        "--normalize",
        "mean=0:std=1",
    ]));
    assert_ne!(other["evaluation"]["loss"], eval["evaluation"]["loss"]);
    // Fashion-MNIST's 28x28 images do not fit the 8x8 model: the error names both shapes.
    let f = fixtures();
    let out = slimnet(&["eval", m, "--data", f.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("[1, 28, 28]") && err.contains("[1, 8, 8]"),
        "{err}"
    );
    // Resized to 8x8 they fit; what fails then is the class count (10 labels, 2 outputs):
    // the first test label, 9, has no class in the model.
    let out = slimnet(&[
        "eval",
        m,
        "--data",
        f.to_str().unwrap(),
        "--resize",
        "8x8",
        "--limit",
        "100",
    ]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !err.contains("do not fit a model")
            && err.contains("label 9 of sample 0 has no class")
            && err.contains("2 classes"),
        "{err}"
    );
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error")).count(),
        1,
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_image_folder_shows_its_progress_unless_quiet() {
    let dir = scratch("folder-progress");
    let data = dir.join("folder");
    // 2 classes of 20 8x8 PNGs: bright top half, bright bottom half.
    for class in 0..2u8 {
        let c = data.join(format!("class{class}"));
        std::fs::create_dir_all(&c).unwrap();
        for i in 0..20u8 {
            let px: Vec<u8> = (0..64u8)
                .map(|p| {
                    if (p < 32) == (class == 0) {
                        200 - i
                    } else {
                        40 + i
                    }
                })
                .collect();
            let img = image::GrayImage::from_raw(8, 8, px).unwrap();
            img.save(c.join(format!("{i:02}.png"))).unwrap();
        }
    }
    let model = dir.join("m.model");
    let (d, m) = (data.to_str().unwrap(), model.to_str().unwrap());
    let out = slimnet(&[
        "train",
        "--model",
        "mlp:64-2",
        "--data",
        d,
        "--test-split",
        "0.25",
        "--epochs",
        "1",
        "-o",
        m,
    ]);
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("reading ")).collect();
    assert!(
        lines.first().is_some_and(|l| l.ends_with(": 0/40 images")),
        "{err}"
    );
    assert!(
        lines.last().is_some_and(|l| l.ends_with(": 40/40 images")),
        "{err}"
    );
    assert!(lines.iter().all(|l| l.contains("folder")), "{err}");
    assert_eq!(lines.len(), 11, "the start and each tenth: {err}");
    // --quiet: the same read, no progress.
    let out = slimnet(&["--quiet", "eval", m, "--data", d]);
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("reading "), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `n` samples of `classes` classes as 1 x 15 x 20 images (300 pixels): sample `i` is of
/// class `i % classes` and lights pixel `class % 300` over a seeded noise floor.
fn write_many_classes(dir: &Path, split: &str, n: usize, classes: usize, seed: u64) {
    let mut rng = tensor_core::rng::Rng::seed_from_u64(seed);
    let mut px = Vec::with_capacity(n * 300);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let class = i % classes;
        px.extend((0..300).map(|p| {
            if p == class % 300 {
                0.9
            } else {
                0.02 * rng.uniform()
            }
        }));
        labels.push(class as i64);
    }
    let x = Tensor::new(&[n, 15, 20], px).unwrap();
    nn::io::npy::write_npy(dir.join(format!("x_{split}.npy")), &x).unwrap();
    std::fs::write(
        dir.join(format!("y_{split}.npy")),
        nn::io::npy::npy_bytes_i64(&[n], &labels),
    )
    .unwrap();
}

#[test]
fn a_model_of_300_classes_trains_and_evaluates_and_a_label_past_its_classes_is_refused() {
    let dir = scratch("many-classes");
    let data = dir.join("npy300");
    std::fs::create_dir_all(&data).unwrap();
    write_many_classes(&data, "train", 900, 300, 1);
    write_many_classes(&data, "test", 300, 300, 2);
    let model = dir.join("m300.model");
    let (d, m) = (data.to_str().unwrap(), model.to_str().unwrap());
    let trained = json(&slimnet(&[
        "--quiet",
        "train",
        "--model",
        "mlp:300-300",
        "--data",
        d,
        "--epochs",
        "10",
        "--batch-size",
        "32",
        "--lr",
        "0.05",
        "--json",
        "-o",
        m,
    ]));
    let acc = trained["test"]["accuracy"].as_f64().unwrap();
    assert!(acc >= 0.9, "one lit pixel per class: test accuracy {acc}");
    let eval = json(&slimnet(&["--quiet", "eval", m, "--data", d, "--json"]));
    let e = &eval["evaluation"];
    assert_eq!(e["accuracy"].as_f64().unwrap(), acc);
    assert_eq!(e["samples"].as_u64(), Some(300));
    assert_eq!(e["confusion"].as_array().map(Vec::len), Some(300));
    // Classes 256..299 are predicted as themselves (labels wider than a byte).
    let confusion = e["confusion"].as_array().unwrap();
    let right_high: u64 = (256..300).map(|c| confusion[c][c].as_u64().unwrap()).sum();
    assert!(right_high >= 40, "{right_high} of the 44 classes past 255");
    // A test set holding classes 0..=99 only still evaluates against the 300 outputs.
    let few = dir.join("npy100");
    std::fs::create_dir_all(&few).unwrap();
    write_many_classes(&few, "train", 100, 100, 3);
    write_many_classes(&few, "test", 100, 100, 4);
    ok(&slimnet(&[
        "--quiet",
        "eval",
        m,
        "--data",
        few.to_str().unwrap(),
    ]));
    // Labels up to 309: 300 has no class in the model; one error line names it and where.
    let more = dir.join("npy310");
    std::fs::create_dir_all(&more).unwrap();
    write_many_classes(&more, "train", 310, 310, 5);
    write_many_classes(&more, "test", 310, 310, 6);
    let out = slimnet(&["--quiet", "eval", m, "--data", more.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("label 300 of sample 300 has no class in the model")
            && err.contains("300 classes")
            && err.contains("npy310"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
