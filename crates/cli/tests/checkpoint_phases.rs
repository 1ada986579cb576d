//! Checkpoints of the commands whose training runs inside the technique crates, in phases
//! (issue 14): `prune` (the rounds of the iterative schedule, the gradual mask of agp),
//! `share`, `decompose --finetune-epochs` and `compress` (a recipe's stages) stop with `--stop-after-epochs` or a Ctrl-C and resume, through `--resume`, to the
//! file an uninterrupted run writes, bit for bit; a resume with another option is refused,
//! naming it.

mod common;

use std::path::Path;

use common::{bytes, fixtures, interrupt_at_line, no_debris, ok, s, scratch, slimnet, teacher};

use common::on_fixtures as run;

/// Runs `args` straight, then in pieces: `--stop-after-epochs` at each of `stops` in turn
/// (each a stop with its checkpoint and no output), each continuing the last with
/// `--resume`, then a last resume to the end; the pieces must write the straight run's bytes.
fn straight_equals_pieces(dir: &Path, name: &str, args: &[&str], stops: &[usize]) {
    let straight = dir.join(format!("{name}-straight.model"));
    ok(&run(args, &straight, &[]));
    let pieces = dir.join(format!("{name}-pieces.model"));
    let ckpt = dir.join(format!("{name}-pieces.model.ckpt"));
    for (i, stop) in stops.iter().enumerate() {
        let stop = stop.to_string();
        let mut extra = vec!["--stop-after-epochs", stop.as_str()];
        if i > 0 {
            extra.extend(["--resume", s(&ckpt)]);
        }
        let out = run(args, &pieces, &extra);
        let err = ok(&out);
        let err = format!("{err}{}", String::from_utf8_lossy(&out.stderr));
        assert!(
            ckpt.exists() && !pieces.exists(),
            "{name}, stop {stop}: {err}"
        );
        assert!(err.contains("--resume"), "{name}: {err}");
    }
    let out = run(args, &pieces, &["--resume", s(&ckpt)]);
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("resuming"),
        "{name}: the resume did not say so"
    );
    assert!(
        bytes(&straight) == bytes(&pieces),
        "{name}: the resumed run wrote other bytes than the straight one"
    );
    no_debris(dir);
}

/// A resume whose command line differs in `option` is refused in one error line naming it.
fn refused(dir: &Path, args: &[&str], ckpt_of: &[&str], differ: &[&str], option: &str) {
    let out = dir.join("refused.model");
    ok(&run(args, &out, ckpt_of));
    let ckpt = dir.join("refused.model.ckpt");
    assert!(ckpt.exists());
    let mut extra = differ.to_vec();
    extra.extend(["--resume", s(&ckpt)]);
    let other = run(args, &out, &extra);
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(!other.status.success() && err.contains(option), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error")).count(),
        1,
        "{err}"
    );
    assert!(!out.exists());
    std::fs::remove_file(&ckpt).unwrap();
}

#[test]
fn prune_resumes_every_schedule_bit_identically() {
    let dir = scratch("ckpt-phases-prune");
    let t = teacher(&dir);
    // Iterative, three rounds of one epoch: stopped at the end of the second round (two
    // rounds replayed from the checkpoint, the third trained on resume).
    let iterative = [
        "prune",
        s(&t),
        "--method",
        "global",
        "--sparsity",
        "0.8",
        "--schedule",
        "iterative",
        "--rounds",
        "3",
        "--retrain-epochs",
        "3",
        "--lr",
        "0.001",
    ];
    straight_equals_pieces(&dir, "iterative", &iterative, &[2]);
    // Stopped inside the first round, then at the second's end: resumed twice.
    straight_equals_pieces(&dir, "iterative-twice", &iterative, &[1, 2]);
    // agp: one run whose mask grows during it (the gradual hook's mask is checkpoint state).
    let agp = [
        "prune",
        s(&t),
        "--method",
        "global",
        "--sparsity",
        "0.8",
        "--schedule",
        "agp",
        "--retrain-epochs",
        "2",
    ];
    straight_equals_pieces(&dir, "agp", &agp, &[1]);
    // One shot.
    let oneshot = ["prune", s(&t), "--ratio", "4", "--retrain-epochs", "2"];
    straight_equals_pieces(&dir, "oneshot", &oneshot, &[1]);
    refused(
        &dir,
        &iterative,
        &["--stop-after-epochs", "1"],
        &["--augment"],
        "augment true (checkpoint: false)",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn share_and_decompose_resume_bit_identically() {
    let dir = scratch("ckpt-phases-tune");
    let t = teacher(&dir);
    let share = ["share", s(&t), "--finetune-epochs", "2", "--lr", "0.001"];
    straight_equals_pieces(&dir, "share", &share, &[1]);
    let decompose = [
        "decompose",
        s(&t),
        "--rank",
        "8",
        "--finetune-epochs",
        "2",
        "--batch-size",
        "32",
    ];
    straight_equals_pieces(&dir, "decompose", &decompose, &[1]);
    refused(
        &dir,
        &decompose,
        &["--stop-after-epochs", "1"],
        &["--alternate", "1"],
        "alternate 1 (checkpoint: 0)",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Iterative pruning in two rounds, then sharing with fine-tuning: three training phases.
const RECIPE: &str = r#"
name = "phases"

[[stages]]
stage = "prune"
method = "global"
sparsity = 0.8
schedule = "iterative"
rounds = 2
retrain = { epochs = 2, lr = 0.001 }

[[stages]]
stage = "share"
bits_fc = 5
finetune = { epochs = 2, lr = 0.001 }
"#;

#[test]
fn compress_resumes_across_its_stages_and_after_a_ctrl_c() {
    let dir = scratch("ckpt-phases-compress");
    let t = teacher(&dir);
    let recipe = dir.join("phases.toml");
    std::fs::write(&recipe, RECIPE).unwrap();
    let args = ["compress", s(&t), "--recipe", s(&recipe)];
    // Stopped after the first round, after the second (the share stage not begun), inside
    // the share stage's fine-tuning: three resumes, each replaying what came before.
    straight_equals_pieces(&dir, "compress", &args, &[1, 2, 3]);
    refused(
        &dir,
        &args,
        &["--stop-after-epochs", "1"],
        &["--seed", "2"],
        "seed: 2",
    );
    // A recipe file changed under the checkpoint is another run.
    ok(&run(
        &args,
        &dir.join("r.model"),
        &["--stop-after-epochs", "1"],
    ));
    std::fs::write(&recipe, RECIPE.replace("bits_fc = 5", "bits_fc = 4")).unwrap();
    let out = run(
        &args,
        &dir.join("r.model"),
        &["--resume", s(&dir.join("r.model.ckpt"))],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("recipe_resolved"),
        "{err}"
    );
    std::fs::write(&recipe, RECIPE).unwrap();

    // Ctrl-C as the share stage begins (its fine-tuning long enough for the signal to land
    // before it ends): the checkpoint holds the pruned model and both rounds; the resume
    // writes the straight run's file.
    let long = RECIPE.replace("finetune = { epochs = 2,", "finetune = { epochs = 40,");
    std::fs::write(&recipe, long).unwrap();
    let straight = dir.join("long-straight.model");
    ok(&run(&args, &straight, &[]));
    let target = dir.join("int.model");
    let d = fixtures();
    let a = [
        "compress",
        s(&t),
        "--recipe",
        s(&recipe),
        "--limit",
        "300",
        "--data",
        s(&d),
        "-o",
        s(&target),
    ];
    let (status, log) = interrupt_at_line(&a, "stage 1:");
    assert_eq!(status.code(), Some(130), "{log}");
    let ckpt = dir.join("int.model.ckpt");
    assert!(ckpt.exists() && !target.exists(), "{log}");
    assert!(log.contains("stopped at training phase 3"), "{log}");
    no_debris(&dir);
    let mut resumed = a.to_vec();
    resumed.extend(["--resume", s(&ckpt)]);
    ok(&slimnet(&resumed));
    assert!(
        bytes(&straight) == bytes(&target),
        "the run resumed after Ctrl-C wrote other bytes"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
