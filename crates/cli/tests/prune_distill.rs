//! `slimnet prune --teacher`: retraining from the unpruned model's soft targets.

mod common;

use common::{fixtures, ok, scratch, slimnet};

#[test]
fn pruning_retrains_from_a_teacher_and_refuses_bad_parameters() {
    let dir = scratch("prune-distill");
    let d = fixtures();
    let d = d.to_str().unwrap();
    let model = dir.join("l300.slim");
    let m = model.to_str().unwrap();
    ok(&slimnet(&[
        "train", "--model", "lenet300", "--epochs", "1", "--limit", "2000", "--data", d, "-o", m,
    ]));
    let out = dir.join("pruned.slim");
    let o = out.to_str().unwrap();
    let prune = |extra: &[&str]| {
        let mut args = vec![
            "prune",
            m,
            "--method",
            "global",
            "--ratio",
            "5",
            "--retrain-epochs",
            "1",
            "--limit",
            "1000",
            "--data",
            d,
            "--json",
            "-o",
            o,
        ];
        args.extend_from_slice(extra);
        slimnet(&args)
    };
    let r: serde_json::Value =
        serde_json::from_str(&ok(&prune(&["--teacher", "self", "--temperature", "2"]))).unwrap();
    let acc = r["accuracy"].as_f64().unwrap();
    assert!(
        acc > 0.5,
        "distilled retraining kept the model working: {acc}"
    );
    let eval: serde_json::Value =
        serde_json::from_str(&ok(&slimnet(&["eval", o, "--data", d, "--json"]))).unwrap();
    assert_eq!(eval["evaluation"]["accuracy"], r["accuracy"]);

    std::fs::remove_file(&out).ok();
    let bad = prune(&["--teacher", "self", "--alpha", "2"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("alpha"));
    assert!(!out.exists(), "no output on error");
    let missing = prune(&["--teacher", "/nonexistent/teacher.slim"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("teacher.slim"));
    std::fs::remove_dir_all(&dir).ok();
}
