//! Progress bars on stderr (hidden when stderr is not a terminal or output is JSON).

use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The global `--quiet`.
static QUIET: AtomicBool = AtomicBool::new(false);

/// Sets the global `--quiet` (before any bar is made).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether `--quiet` was given: progress lines are not printed.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Prints a progress line (`data: ...`, an epoch's result) on stderr unless `--quiet`.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {
        if !$crate::progress::quiet() {
            eprintln!($($arg)*);
        }
    };
}

/// A bar of `len` steps with a message slot; hidden when `quiet` or `--quiet`.
pub fn bar(len: u64, quiet: bool) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if quiet || self::quiet() {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb
}

/// Prints a progress line above `pb`: through the bar when it is drawn, straight to stderr
/// when it is hidden because stderr is not a terminal (a log file still gets one line per
/// epoch as it ends), and not at all under `--quiet` or JSON output.
pub fn line(pb: &ProgressBar, quiet: bool, msg: impl AsRef<str>) {
    if quiet || self::quiet() {
        return;
    }
    if pb.is_hidden() {
        eprintln!("{}", msg.as_ref());
    } else {
        pb.println(msg);
    }
}

/// The observer of a training run on `pb`: the bar follows the steps and shows the epoch and
/// loss, and each finished epoch prints `epoch_line(p)` (when it gives one) through [`line`].
pub fn training<'a>(
    pb: &'a ProgressBar,
    quiet: bool,
    epoch_line: impl Fn(&nn::trainer::Progress) -> Option<String> + 'a,
) -> impl FnMut(&nn::trainer::Progress) + 'a {
    move |p| {
        pb.set_position(p.global_step as u64);
        pb.set_message(format!("epoch {} loss {:.4}", p.epoch + 1, p.loss));
        if p.epoch_done
            && let Some(msg) = epoch_line(p)
        {
            line(pb, quiet, msg);
        }
    }
}
