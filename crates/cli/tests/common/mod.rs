//! Helpers shared by the `slimnet` binary's end-to-end tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
