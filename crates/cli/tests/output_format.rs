//! Every command that writes a model picks the format from `-o`'s extension, or refuses
//! before any work (issue 14).

mod common;

use std::path::{Path, PathBuf};

use common::{fixtures, ok, scratch, slimnet};

fn onnx_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/onnx/cnn_bn_ts_op13.onnx")
}

fn head(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()[..16].to_vec()
}

fn is_native(p: &Path) -> bool {
    pipeline::container::is_container(&head(p)) || head(p).starts_with(b"SLIMNETM")
}

fn is_safetensors(p: &Path) -> bool {
    head(p)[8] == b'{'
}

#[test]
fn import_and_export_write_the_format_of_the_extension() {
    let dir = scratch("outfmt-import");
    let src = onnx_fixture();
    let src = src.to_str().unwrap();
    let onnx = dir.join("n.onnx");
    ok(&slimnet(&["import", src, "-o", onnx.to_str().unwrap()]));
    // ONNX, not native bytes under a .onnx name: it loads as ONNX (field 1, ir_version).
    assert!(
        !is_native(&onnx) && head(&onnx)[0] == 0x08,
        "{:?}",
        head(&onnx)
    );
    let st = dir.join("n.safetensors");
    ok(&slimnet(&["import", src, "-o", st.to_str().unwrap()]));
    assert!(is_safetensors(&st));
    let slim = dir.join("n.slim");
    ok(&slimnet(&[
        "import",
        onnx.to_str().unwrap(),
        "-o",
        slim.to_str().unwrap(),
    ]));
    assert!(is_native(&slim));
    // An unknown extension: the native format, with a note on stderr.
    let bin = dir.join("n.bin");
    let out = slimnet(&[
        "export",
        slim.to_str().unwrap(),
        "-o",
        bin.to_str().unwrap(),
    ]);
    ok(&out);
    assert!(is_native(&bin));
    assert!(String::from_utf8_lossy(&out.stderr).contains("writing the native format"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn train_writes_the_format_of_the_extension() {
    let dir = scratch("outfmt-train");
    let d = fixtures();
    for (name, check) in [
        (
            "t.onnx",
            (|p: &Path| !is_native(p) && head(p)[0] == 0x08) as fn(&Path) -> bool,
        ),
        ("t.safetensors", is_safetensors),
        ("t.slim", is_native),
    ] {
        let out = dir.join(name);
        ok(&slimnet(&[
            "train",
            "--model",
            "mlp:784-8-10",
            "--epochs",
            "1",
            "--limit",
            "64",
            "--data",
            d.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]));
        assert!(check(&out), "{name}: {:?}", head(&out));
        // Every written format loads back without --arch (safetensors records it).
        ok(&slimnet(&["inspect", out.to_str().unwrap()]));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn compressing_commands_refuse_onnx_and_safetensors_before_any_work() {
    let dir = scratch("outfmt-refuse");
    let src = onnx_fixture();
    let src = src.to_str().unwrap();
    for cmd in ["prune", "share", "compress", "quantize", "binarize"] {
        for ext in ["onnx", "safetensors"] {
            let out_path = dir.join(format!("{cmd}.{ext}"));
            // No --data: the refusal comes before the data would be loaded.
            let out = slimnet(&[
                cmd,
                src,
                "--data",
                "/nonexistent-data-dir",
                "-o",
                out_path.to_str().unwrap(),
            ]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{cmd} -o .{ext}: {err}");
            assert!(err.contains("cannot hold"), "{cmd} -o .{ext}: {err}");
            assert_eq!(err.trim().lines().count(), 1, "{err}");
            assert!(!out_path.exists());
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
