//! Helpers shared by the `slimnet` binary's end-to-end tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};

/// Runs the `slimnet` binary with `args`.
pub fn slimnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slimnet"))
        .args(args)
        .output()
        .expect("running slimnet")
}

/// The committed Fashion-MNIST slice.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/fashion-mnist")
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("slimnet-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The stdout of a successful run (the stderr in the failure message otherwise).
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// A file's bytes (the path in the panic message otherwise).
pub fn bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Asserts that `dir` holds no temporary file of an atomic write (`.tmp-`).
pub fn no_debris(dir: &Path) {
    let leftovers: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Runs `slimnet ARGS`, sends it SIGINT when a stderr line starts with `prefix`, and returns
/// its exit status and the whole stderr.
pub fn interrupt_at_line(args: &[&str], prefix: &str) -> (ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_slimnet"))
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.starts_with(prefix) {
            let sent = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(sent.success());
            break;
        }
    }
    for line in lines {
        log.push_str(&line.unwrap());
        log.push('\n');
    }
    (child.wait().unwrap(), log)
}

/// A path as the `&str` argument the command line takes.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A small MLP with two hidden layers trained for one epoch on the fixtures' first 300
/// training images, at `dir/teacher.model` (a teacher, and a model with a layer besides the
/// first and last for binarize, prune and share).
pub fn teacher(dir: &Path) -> PathBuf {
    let out = dir.join("teacher.model");
    let d = fixtures();
    ok(&slimnet(&[
        "train",
        "--model",
        "mlp:784-32-32-10",
        "--epochs",
        "1",
        "--limit",
        "300",
        "--data",
        s(&d),
        "-o",
        s(&out),
    ]));
    out
}
