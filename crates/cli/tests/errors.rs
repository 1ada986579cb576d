//! Precise, one-line errors (issue 14, "Errors").

mod common;

use common::{scratch, slimnet};

fn err_of(args: &[&str]) -> String {
    let out = slimnet(args);
    assert_eq!(out.status.code(), Some(1), "{args:?}");
    let e = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(e.lines().count(), 1, "{e}");
    e
}

#[test]
fn an_empty_model_file_is_called_empty_and_paths_appear_once() {
    let dir = scratch("errors-empty");
    let p = dir.join("empty.model");
    std::fs::write(&p, b"").unwrap();
    let ps = p.to_str().unwrap();
    let e = err_of(&["inspect", ps]);
    assert!(e.contains("empty"), "{e}");
    assert_eq!(e.matches(ps).count(), 1, "the path once: {e}");
    let missing = dir.join("missing.model");
    let ms = missing.to_str().unwrap();
    let e = err_of(&["eval", ms]);
    assert_eq!(e.matches(ms).count(), 1, "the path once: {e}");
    assert_eq!(e.matches("os error").count(), 1, "the OS error once: {e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_truncated_safetensors_file_names_the_tensor() {
    let dir = scratch("errors-st");
    let m = dir.join("m.safetensors");
    let d = common::fixtures();
    common::ok(&slimnet(&[
        "train",
        "--model",
        "mlp:784-8-10",
        "--epochs",
        "1",
        "--limit",
        "32",
        "--data",
        d.to_str().unwrap(),
        "-o",
        m.to_str().unwrap(),
    ]));
    let bytes = std::fs::read(&m).unwrap();
    let cut = dir.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 20]).unwrap();
    let e = err_of(&["inspect", cut.to_str().unwrap(), "--arch", "mlp:784-8-10"]);
    assert!(e.contains("tensor fc") && e.contains("exceed"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Test images of another size than the model takes (corpus case `idx-wrong-rows`): the
/// error names the images file and both shapes, not only the model.
#[test]
fn idx_images_of_the_wrong_size_name_the_images_file_and_shape() {
    let dir = scratch("errors-idx-rows");
    let fx = common::fixtures();
    let m = dir.join("m.model");
    common::ok(&slimnet(&[
        "train",
        "--model",
        "mlp:784-8-10",
        "--epochs",
        "1",
        "--limit",
        "32",
        "--data",
        fx.to_str().unwrap(),
        "-o",
        m.to_str().unwrap(),
    ]));
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for f in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"] {
        std::fs::copy(fx.join(f), data.join(f)).unwrap();
    }
    let n = 20u32;
    let mut images = [0x803u32, n, 27, 28]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect::<Vec<u8>>();
    images.extend(std::iter::repeat_n(7u8, (n * 27 * 28) as usize));
    let mut labels = [0x801u32, n]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect::<Vec<u8>>();
    labels.extend((0..n).map(|i| (i % 10) as u8));
    std::fs::write(data.join("t10k-images-idx3-ubyte"), images).unwrap();
    std::fs::write(data.join("t10k-labels-idx1-ubyte"), labels).unwrap();
    let e = err_of(&[
        "eval",
        m.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(
        e.contains("t10k-images-idx3-ubyte") && e.contains("[1, 27, 28]"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
