//! `SLIMNET_KERNEL` end to end: this test binary re-runs itself with the variable set and
//! reads back what the child selected and how many warnings it printed.

use std::process::Command;

use tensor_core::dispatch::{
    Capabilities, F32Path, Int8Path, KernelPath, Level, PopcountPath, capabilities,
};

const CHILD: &str = "child_prints_its_selection";
const MARK: &str = "SELECTED ";

/// Run by the parent only (`--ignored --exact`): prints the selection on one line.
#[test]
#[ignore = "run by selection_follows_slimnet_kernel in a child process"]
fn child_prints_its_selection() {
    println!(
        "{MARK}{} {} {}",
        F32Path::selected().name(),
        Int8Path::selected().name(),
        PopcountPath::selected().name()
    );
    // A second look must not warn again.
    let _ = tensor_core::dispatch::report();
}

/// Runs the child with `SLIMNET_KERNEL=value` (unset for `None`): its selection, and the
/// number of slimnet warnings on its stderr.
fn run_child(value: Option<&str>) -> (String, usize) {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new(exe);
    cmd.args([
        "--ignored",
        "--exact",
        CHILD,
        "--nocapture",
        "--test-threads=1",
    ]);
    match value {
        Some(v) => cmd.env("SLIMNET_KERNEL", v),
        None => cmd.env_remove("SLIMNET_KERNEL"),
    };
    let out = cmd.output().expect("run the child test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    let selected = stdout
        .lines()
        .find_map(|l| l.split_once(MARK).map(|(_, s)| s))
        .unwrap_or_else(|| panic!("no selection line in:\n{stdout}"))
        .to_string();
    let warnings = stderr.matches("slimnet: SLIMNET_KERNEL").count();
    (selected, warnings)
}

fn expected(ceiling: Level, caps: &Capabilities) -> String {
    format!(
        "{} {} {}",
        F32Path::best_within(ceiling, caps).name(),
        Int8Path::best_within(ceiling, caps).name(),
        PopcountPath::best_within(ceiling, caps).name()
    )
}

#[test]
fn selection_follows_slimnet_kernel() {
    let caps = capabilities();
    let best = expected(Level::Avx512, caps);
    eprintln!("{}", tensor_core::dispatch::report());

    assert_eq!(run_child(None), (best.clone(), 0), "unset");
    assert_eq!(
        run_child(Some("portable")),
        ("portable portable portable".to_string(), 0)
    );
    assert_eq!(run_child(Some("bogus")), (best.clone(), 1), "unknown value");

    let has = |level| {
        F32Path::supported().iter().any(|p| p.level() == level)
            || Int8Path::supported().iter().any(|p| p.level() == level)
            || PopcountPath::supported().iter().any(|p| p.level() == level)
    };
    for level in [Level::Avx2, Level::Avx512] {
        let (selected, warnings) = run_child(Some(level.name()));
        if has(level) {
            assert_eq!(
                (selected, warnings),
                (expected(level, caps), 0),
                "{level:?}"
            );
        } else {
            eprintln!(
                "SLIMNET_KERNEL={}: this CPU has no such path; checking the warning instead",
                level.name()
            );
            assert_eq!((selected, warnings), (best.clone(), 1), "{level:?}");
        }
    }
}
