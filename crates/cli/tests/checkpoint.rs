//! Training checkpoints: `--checkpoint-every`, `--stop-after-epochs`, `--resume`, and a
//! Ctrl-C during training (issue 14).

mod common;

use std::path::Path;

use common::{bytes, fixtures, interrupt_at_line, no_debris, ok, scratch, slimnet};

/// `slimnet train RUN ARGS -o out` on the fixture data.
fn train(run: &[&str], extra: &[&str], out: &Path) -> std::process::Output {
    let d = fixtures();
    let mut all = vec!["train"];
    all.extend_from_slice(run);
    all.extend_from_slice(extra);
    all.extend_from_slice(&["--data", d.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    slimnet(&all)
}

fn resume(ckpt: &Path, out: &Path) -> std::process::Output {
    let d = fixtures();
    slimnet(&[
        "train",
        "--resume",
        ckpt.to_str().unwrap(),
        "--data",
        d.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ])
}

#[test]
fn one_epoch_plus_resume_equals_two_straight() {
    let dir = scratch("ckpt-resume");
    // Adam (moments and step counts in the checkpoint), cosine schedule over both epochs.
    let run = [
        "--model",
        "lenet300",
        "--epochs",
        "2",
        "--limit",
        "300",
        "--batch-size",
        "64",
    ];
    let straight = dir.join("straight.model");
    ok(&train(&run, &[], &straight));

    let sliced = dir.join("sliced.model");
    let out = train(&run, &["--stop-after-epochs", "1"], &sliced);
    ok(&out);
    let ckpt = dir.join("sliced.model.ckpt");
    assert!(
        ckpt.exists() && !sliced.exists(),
        "the stop writes only the checkpoint"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(ckpt.to_str().unwrap()), "path printed: {err}");
    ok(&resume(&ckpt, &sliced));
    assert!(bytes(&straight) == bytes(&sliced), "resumed weights differ");

    // A periodic checkpoint is the same state: resuming it gives the same model again.
    let periodic = dir.join("periodic.model");
    let every = dir.join("every.ckpt");
    ok(&train(
        &run,
        &[
            "--checkpoint-every",
            "1",
            "--checkpoint",
            every.to_str().unwrap(),
        ],
        &periodic,
    ));
    assert!(bytes(&straight) == bytes(&periodic));
    let again = dir.join("again.model");
    ok(&resume(&every, &again));
    assert!(bytes(&straight) == bytes(&again));

    // The recipe belongs to the checkpoint: overriding it is refused before any work.
    let out = slimnet(&[
        "train",
        "--resume",
        every.to_str().unwrap(),
        "--epochs",
        "5",
        "-o",
        dir.join("x.model").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("drop --epochs"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_corrupt_checkpoint_is_a_one_line_error_naming_it() {
    let dir = scratch("ckpt-corrupt");
    let run = [
        "--model",
        "mlp:784-16-10",
        "--epochs",
        "2",
        "--limit",
        "128",
    ];
    let m = dir.join("m.model");
    ok(&train(&run, &["--stop-after-epochs", "1"], &m));
    let ckpt = dir.join("m.model.ckpt");
    let good = bytes(&ckpt);
    for (name, data) in [
        ("empty", Vec::new()),
        ("truncated", good[..good.len() / 2].to_vec()),
        (
            "not-a-checkpoint",
            b"hello world, not a checkpoint".to_vec(),
        ),
    ] {
        let p = dir.join(format!("{name}.ckpt"));
        std::fs::write(&p, &data).unwrap();
        let out = resume(&p, &dir.join("r.model"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{name}: {err}");
        assert!(err.contains(p.to_str().unwrap()), "{name}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sigint_during_training_writes_a_checkpoint_that_resumes_exactly() {
    let dir = scratch("ckpt-sigint");
    // Epochs long enough (batch 32) to be interrupted in the middle of the run; the
    // per-epoch accuracy on a small validation split keeps each epoch short.
    let run = [
        "--model",
        "lenet300",
        "--epochs",
        "12",
        "--limit",
        "2000",
        "--val-split",
        "0.1",
        "--batch-size",
        "32",
    ];
    let straight = dir.join("straight.model");
    ok(&train(&run, &[], &straight));

    let target = dir.join("int.model");
    let d = fixtures();
    let mut all = vec!["train"];
    all.extend_from_slice(&run);
    all.extend_from_slice(&[
        "--data",
        d.to_str().unwrap(),
        "-o",
        target.to_str().unwrap(),
    ]);
    // Interrupt once the first epoch has ended.
    let (status, log) = interrupt_at_line(&all, "epoch");
    assert_eq!(status.code(), Some(130), "{log}");
    let ckpt = dir.join("int.model.ckpt");
    assert!(ckpt.exists(), "{log}");
    assert!(!target.exists(), "no model from an interrupted run");
    assert!(log.contains(ckpt.to_str().unwrap()), "{log}");
    no_debris(&dir);

    ok(&resume(&ckpt, &target));
    assert!(bytes(&straight) == bytes(&target), "resumed weights differ");
    std::fs::remove_dir_all(&dir).unwrap();
}
