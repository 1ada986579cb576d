//! `slimnet distill`: a small student learns from a teacher file, its hard-label twin is
//! trained the same way on request, and `slimnet eval` reproduces the reported accuracy.

mod common;

use common::{fixtures, ok, scratch, slimnet};
use std::process::Output;

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).expect("one JSON document")
}

#[test]
fn a_student_learns_from_a_teacher_file_beside_its_twin() {
    let dir = scratch("distill");
    let data = fixtures();
    let d = data.to_str().unwrap();
    let teacher = dir.join("teacher.model");
    let tn = teacher.to_str().unwrap();
    ok(&slimnet(&[
        "train", "--model", "lenet300", "--epochs", "2", "--limit", "2000", "--data", d, "-o", tn,
    ]));
    let out = dir.join("student.slim");
    let on = out.to_str().unwrap();
    let r = json(&slimnet(&[
        "distill",
        "--teacher",
        tn,
        "--student",
        "mlp:784-30-10",
        "--epochs",
        "2",
        "--limit",
        "2000",
        "--data",
        d,
        "--twin",
        "--json",
        "-o",
        on,
    ]));
    assert_eq!(r["params"], 784 * 30 + 30 + 30 * 10 + 10);
    assert_eq!(r["baseline"]["dense_bytes"], 4 * 266_610);
    assert_eq!(r["baseline"]["accuracy"], r["teacher_accuracy"]);
    let (acc, twin) = (
        r["accuracy"].as_f64().unwrap(),
        r["twin_accuracy"].as_f64().unwrap(),
    );
    assert!(acc > 0.3 && twin > 0.3, "{r}");
    assert!(r["ratio"].as_f64().unwrap() > 10.0);
    let eval = json(&slimnet(&["eval", on, "--data", d, "--json"]));
    assert_eq!(eval["evaluation"]["accuracy"], r["accuracy"]);

    // Logit matching without labels: alpha is forced to 1.
    let r = json(&slimnet(&[
        "distill",
        "--teacher",
        tn,
        "--student",
        "mlp:784-30-10",
        "--logits",
        "--transfer",
        "unlabeled",
        "--epochs",
        "1",
        "--limit",
        "1000",
        "--data",
        d,
        "--json",
        "-o",
        on,
    ]));
    assert_eq!(r["target"], "logits");
    assert_eq!(r["alpha"], 1.0);
    assert!(r.get("twin_accuracy").is_none());

    for (args, want) in [
        (vec!["--transfer", "sideways"], "unknown --transfer"),
        (vec!["--alpha", "1.5"], "alpha 1.5"),
        (vec!["--student", "mlp:10-2"], "mlp:10-2"),
    ] {
        let mut all = vec!["distill", "--teacher", tn, "-o", on, "--data", d];
        all.extend(args);
        let o = slimnet(&all);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "{err}");
    }
}

/// Any model slimnet reads can teach: the same teacher exported to ONNX gives the same
/// teacher accuracy and, every other option equal, the same student to the last digit.
#[test]
fn a_teacher_imported_from_onnx_teaches_as_its_native_file_does() {
    let dir = scratch("distill-onnx-teacher");
    let data = fixtures();
    let d = data.to_str().unwrap();
    let native = dir.join("teacher.model");
    let onnx = dir.join("teacher.onnx");
    let (nn_, on_) = (native.to_str().unwrap(), onnx.to_str().unwrap());
    ok(&slimnet(&[
        "train", "--model", "lenet300", "--epochs", "1", "--limit", "1000", "--data", d, "-o", nn_,
    ]));
    ok(&slimnet(&["export", nn_, "-o", on_]));
    let student = |teacher: &str, out: &str| {
        let o = dir.join(out);
        json(&slimnet(&[
            "distill",
            "--teacher",
            teacher,
            "--student",
            "mlp:784-30-10",
            "--epochs",
            "1",
            "--limit",
            "1000",
            "--data",
            d,
            "--json",
            "-o",
            o.to_str().unwrap(),
        ]))
    };
    let (a, b) = (
        student(nn_, "from-native.slim"),
        student(on_, "from-onnx.slim"),
    );
    assert_eq!(a["teacher_accuracy"], b["teacher_accuracy"], "{a}\n{b}");
    assert!(a["teacher_accuracy"].as_f64().unwrap() > 0.3, "{a}");
    assert_eq!(a["accuracy"], b["accuracy"], "{a}\n{b}");
    assert_eq!(b["teachers"][0], on_);
}
