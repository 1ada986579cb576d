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
