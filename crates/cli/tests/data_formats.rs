//! `--data` in any format interop reads (issue 13): a spec trained on `.npy` data of another
//! shape, its preprocessing kept in the model, and a clear error for data a model cannot take.

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
    // Resized to 8x8 they fit; what fails then is the class count (10 labels, 2 outputs).
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
        !err.contains("do not fit a model") && err.contains("[100, 10]"),
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
