//! Per-thread scratch buffers, reused across kernel calls so hot paths neither allocate nor
//! touch fresh pages.

use std::cell::RefCell;

std::thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on `len` floats of this thread's scratch (contents unspecified: callers write
/// before they read). A re-entrant call (a rayon worker running another kernel while it
/// waits) gets a fresh allocation.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut v) => {
            if v.len() < len {
                v.resize(len, 0.0);
            }
            f(&mut v[..len])
        }
        Err(_) => f(&mut vec![0.0; len]),
    })
}
