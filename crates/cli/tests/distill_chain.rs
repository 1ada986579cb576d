//! `slimnet distill` chains, ensembles and logits cache, and the `--teacher` recovery option
//! of share, binarize and decompose.

mod common;

use common::{fixtures, ok, scratch, slimnet};
use serde_json::Value;

fn json(args: &[&str]) -> Value {
    serde_json::from_str(&ok(&slimnet(args))).expect("one JSON document")
}

/// A lenet300 trained briefly on the fixture slice, in `dir`.
fn teacher(dir: &std::path::Path, d: &str) -> String {
    let t = dir.join("teacher.model").to_str().unwrap().to_string();
    ok(&slimnet(&[
        "train", "--model", "lenet300", "--epochs", "1", "--limit", "1000", "--data", d, "-o", &t,
    ]));
    t
}

/// `slimnet distill` of the `student` on 600 images at T 2, alpha 0.7, one epoch.
fn distill_student(student: &str, teachers: &[&str], out: &str, d: &str, extra: &[&str]) -> Value {
    let mut args = vec!["distill"];
    for t in teachers {
        args.extend(["--teacher", *t]);
    }
    args.extend([
        "--student",
        student,
        "--temperature",
        "2",
        "--alpha",
        "0.7",
        "--epochs",
        "1",
        "--limit",
        "600",
        "--data",
        d,
        "--json",
        "-o",
        out,
    ]);
    args.extend_from_slice(extra);
    json(&args)
}

/// A scratch directory, the fixture data directory and a teacher trained there.
fn setup(name: &str) -> (std::path::PathBuf, String, String) {
    let dir = scratch(name);
    let d = fixtures().to_str().unwrap().to_string();
    let t = teacher(&dir, &d);
    (dir, d, t)
}

fn distill(teachers: &[&str], out: &str, d: &str, extra: &[&str]) -> Value {
    distill_student("mlp:784-16-10", teachers, out, d, extra)
}

#[test]
fn a_chain_trains_the_assistant_first_then_the_student_from_it() {
    let (dir, d, t) = setup("distill-chain");
    let d = d.as_str();
    let out = dir.join("student.slim");
    let o = out.to_str().unwrap();
    let chain = distill(&[&t], o, d, &["--assistant", "mlp:784-48-10"]);
    assert_eq!(chain["assistant"], "mlp:784-48-10");
    let assistant_accuracy = chain["assistant_accuracy"].as_f64().unwrap();

    // The same two steps by hand: the assistant distilled from the teacher (same settings
    // and seed), saved, then the student distilled from that file.
    let a = dir.join("assistant.slim");
    let an = a.to_str().unwrap();
    let first = distill_student("mlp:784-48-10", &[&t], an, d, &[]);
    assert_eq!(first["accuracy"].as_f64().unwrap(), assistant_accuracy);
    let out2 = dir.join("student2.slim");
    let second = distill(&[an], out2.to_str().unwrap(), d, &[]);
    assert_eq!(second["accuracy"], chain["accuracy"], "{chain} vs {second}");
    assert_eq!(chain["teacher_accuracy"], first["teacher_accuracy"]);
    // A file as assistant is used as it is: its accuracy is the file's.
    let out3 = dir.join("student3.slim");
    let given = distill(&[&t], out3.to_str().unwrap(), d, &["--assistant", an]);
    assert_eq!(given["assistant_accuracy"], first["accuracy"]);
    assert_eq!(given["accuracy"], chain["accuracy"]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_ensemble_of_one_teacher_twice_is_that_teacher_and_the_cache_file_replays_it() {
    let (dir, d, t) = setup("distill-ensemble");
    let d = d.as_str();
    let o = dir.join("s.slim");
    let o = o.to_str().unwrap();
    let single = distill(&[&t], o, d, &[]);
    let twice = distill(&[&t, &t], o, d, &[]);
    assert_eq!(twice["teachers"].as_array().unwrap().len(), 2);
    assert_eq!(twice["accuracy"], single["accuracy"]);
    assert_eq!(twice["teacher_accuracy"], single["teacher_accuracy"]);

    // Two different teachers: the ensemble's accuracy is its own, reported as the teacher's.
    let other = dir.join("other.model");
    let on = other.to_str().unwrap();
    ok(&slimnet(&[
        "train",
        "--model",
        "mlp:784-32-10",
        "--epochs",
        "1",
        "--limit",
        "500",
        "--data",
        d,
        "-o",
        on,
    ]));
    let pair = distill(&[&t, on], o, d, &[]);
    assert_ne!(pair["accuracy"], single["accuracy"]);

    let cache = dir.join("t.logits");
    let c = cache.to_str().unwrap();
    let first = distill(&[&t], o, d, &["--teacher-cache", c]);
    assert_eq!(first["cached_logits"], 0);
    assert!(cache.exists());
    let replay = distill(&[&t], o, d, &["--teacher-cache", c]);
    assert!(replay["cached_logits"].as_u64().unwrap() >= 600, "{replay}");
    assert_eq!(replay["accuracy"], single["accuracy"]);
    assert_eq!(replay["teacher_accuracy"], single["teacher_accuracy"]);
    // Another teacher's cache is refused, naming the file.
    let wrong = slimnet(&[
        "distill",
        "--teacher",
        on,
        "--student",
        "mlp:784-16-10",
        "--teacher-cache",
        c,
        "--epochs",
        "1",
        "--limit",
        "100",
        "--data",
        d,
        "-o",
        o,
    ]);
    assert!(!wrong.status.success());
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        err.contains("t.logits") && err.contains("not this one"),
        "{err}"
    );

    // Annealing is reported and changes the result.
    let annealed = distill(
        &[&t],
        o,
        d,
        &["--alpha-end", "0.1", "--temperature-end", "1"],
    );
    assert_eq!(annealed["alpha_end"], 0.1);
    assert_ne!(annealed["accuracy"], single["accuracy"]);
    std::fs::remove_dir_all(&dir).ok();
}

/// Runs `command` with and without `--teacher self` (same seed and epochs): the JSON names
/// the teacher, and the result differs from the label-only run's.
fn recovers_from_a_teacher(dir: &std::path::Path, command: &[&str]) {
    let out = dir.join(format!("{}.slim", command[0]));
    let o = out.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = command.to_vec();
        args.extend(["--json", "-o", o]);
        args.extend_from_slice(extra);
        json(&args)
    };
    let labels = run(&[]);
    assert!(labels.get("teacher").is_none());
    let distilled = run(&["--teacher", "self", "--temperature", "2", "--alpha", "0.8"]);
    assert_eq!(distilled["teacher"], "self", "{}", command[0]);
    assert_ne!(
        distilled["accuracy"], labels["accuracy"],
        "{}: the teacher changed nothing",
        command[0]
    );
    let bad = slimnet(&[command, &["-o", o, "--teacher", "self", "--alpha", "3"]].concat());
    assert!(!bad.status.success(), "{}", command[0]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("alpha"));
}

#[test]
fn share_binarize_and_decompose_recover_from_a_teacher() {
    let (dir, d, t) = setup("distill-recovery");
    let d = d.as_str();
    let common = ["--limit", "300", "--data", d];
    for command in [
        format!("share {t} --bits-fc 2 --finetune-epochs 1 --lr 1e-3"),
        format!("binarize {t} --mode bwn --epochs 1"),
        format!("decompose {t} --rank 4 --finetune-epochs 1 --lr 1e-3"),
    ] {
        let args: Vec<&str> = command.split(' ').chain(common).collect();
        recovers_from_a_teacher(&dir, &args);
    }
    let scratch_self = slimnet(&[
        "binarize",
        "--model",
        "lenet300",
        "--teacher",
        "self",
        "--limit",
        "100",
        "--data",
        d,
        "-o",
        "/tmp/never.slim",
    ]);
    assert!(!scratch_self.status.success());
    assert!(String::from_utf8_lossy(&scratch_self.stderr).contains("--teacher self"));
    std::fs::remove_dir_all(&dir).ok();
}
