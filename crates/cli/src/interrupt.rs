//! Ctrl-C and SIGTERM.
//!
//! By default an interruption lets a file write in progress finish (its target is then
//! whole), starts no other, and exits with the shell's code for SIGINT (130): no partial
//! file, no temporary left (`nn::io::atomic::stop_writes`). While training, [`defer`] turns
//! the first interruption into a request that the training loop answers at its next step
//! boundary by writing a checkpoint; a second one exits at once.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set while a command handles interruptions itself ([`defer`]).
static DEFERRED: AtomicBool = AtomicBool::new(false);

/// Set by the first interruption while [`DEFERRED`].
static REQUESTED: AtomicBool = AtomicBool::new(false);

/// The exit code of an interrupted run (128 + SIGINT).
pub const EXIT_CODE: i32 = 130;

/// Installs the handler (once, at start).
pub fn install() {
    let _ = ctrlc::set_handler(|| {
        if DEFERRED.load(Ordering::SeqCst) && !REQUESTED.swap(true, Ordering::SeqCst) {
            eprintln!(
                "interrupted: stopping at the next step to write a checkpoint (interrupt again \
                 to quit at once)"
            );
            return;
        }
        nn::io::atomic::stop_writes();
        eprintln!("interrupted");
        std::process::exit(EXIT_CODE);
    });
}

/// From now on the first interruption only sets [`requested`].
pub fn defer() {
    DEFERRED.store(true, Ordering::SeqCst);
}

/// Whether an interruption asked the running command to stop.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Ends [`defer`]: the next interruption exits at once again, and one that arrived while
/// deferred (after the training's last look) exits now, with the interruption's code.
pub fn undefer() {
    DEFERRED.store(false, Ordering::SeqCst);
    if REQUESTED.load(Ordering::SeqCst) {
        nn::io::atomic::stop_writes();
        eprintln!("interrupted");
        std::process::exit(EXIT_CODE);
    }
}
