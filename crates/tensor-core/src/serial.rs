//! Keeping tensor-core's kernels on the calling thread, for a caller that already runs one
//! piece of work per thread: nn's inference runs a batch in chunks, one chunk per rayon
//! worker through every layer of a model's convolutional prefix, and a kernel that forked
//! again inside a chunk (over its images, or splitting an image through [`duo`](crate::duo))
//! would only add fork/join traffic between threads that are busy already.
//!
//! Inside [`run`], [`threads`] is 1 on that thread, and the kernels that ask it stay on it:
//! the direct and Winograd convolutions of [`conv2d_forward_fused`](crate::conv::conv2d_forward_fused)
//! (no fork over images, no duo split of an image). Other kernels (im2col + GEMM, pooling)
//! still use the current rayon pool. Results do not depend on it: the kernels compute the
//! same bits whatever their thread split.

use std::cell::Cell;

std::thread_local! {
    /// Whether this thread is inside [`run`].
    static SERIAL: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the kernels it calls on this thread kept on it (see the module docs). The
/// previous state comes back when `f` returns or unwinds, so scopes nest.
pub fn run<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SERIAL.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SERIAL.with(|s| s.replace(true)));
    f()
}

/// The threads a kernel called from this thread may use: 1 inside [`run`], else the current
/// rayon pool's size.
pub fn threads() -> usize {
    if SERIAL.with(Cell::get) {
        1
    } else {
        rayon::current_num_threads()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_keeps_this_thread_serial_and_restores_it() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        pool.install(|| {
            assert_eq!(threads(), 3);
            run(|| {
                assert_eq!(threads(), 1);
                run(|| assert_eq!(threads(), 1));
                // Still serial after the inner scope.
                assert_eq!(threads(), 1);
                // Another thread is not in the scope.
                let other = std::thread::scope(|s| {
                    s.spawn(|| (threads(), rayon::current_num_threads()))
                        .join()
                        .unwrap()
                });
                assert_eq!(other.0, other.1);
            });
            assert_eq!(threads(), 3);
            let unwound = std::panic::catch_unwind(|| run(|| panic!("inside")));
            assert!(unwound.is_err());
            assert_eq!(threads(), 3, "restored on unwind");
        });
    }
}
