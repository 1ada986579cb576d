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
            // Sent from this process (no `kill` to start first: the signal lands while the
            // line's work is still going on).
            let pid = libc::pid_t::try_from(child.id()).unwrap();
            // SAFETY: kill(2) on the child's pid, which is alive until `wait` reaps it below.
            let sent = unsafe { libc::kill(pid, libc::SIGINT) };
            assert_eq!(sent, 0, "kill -INT {pid}");
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

/// `slimnet ARGS -o OUT EXTRA` on the fixtures' first 300 training images.
pub fn on_fixtures(args: &[&str], out: &Path, extra: &[&str]) -> Output {
    let d = fixtures();
    let mut a: Vec<&str> = args.to_vec();
    a.extend(["--limit", "300", "--data", s(&d), "-o", s(out)]);
    a.extend_from_slice(extra);
    slimnet(&a)
}

/// A small MLP with two hidden layers trained for one epoch on the fixtures' first 300
/// training images, at `dir/teacher.model` (a teacher, and a model with a layer besides the
/// first and last for binarize, prune and share).
pub fn teacher(dir: &Path) -> PathBuf {
    let out = dir.join("teacher.model");
    let train = ["train", "--model", "mlp:784-32-32-10", "--epochs", "1"];
    ok(&on_fixtures(&train, &out, &[]));
    out
}
