//! Test and bench helpers: comparisons with stated tolerances, the process's CPU clock, tensors
//! made element by element, and skips that say so.

/// Asserts `|a - b| <= atol + rtol * |b|` elementwise, reporting the worst element.
///
/// Panics (it is a test helper) with the index, both values and the tolerances.
#[track_caller]
pub fn assert_close(actual: &[f32], expected: &[f32], rtol: f32, atol: f32) {
    assert_eq!(actual.len(), expected.len(), "assert_close: lengths differ");
    let mut worst: Option<(usize, f32)> = None;
    for (i, (&a, &b)) in actual.iter().zip(expected).enumerate() {
        let err = (a - b).abs();
        let tol = atol + rtol * b.abs();
        // Written so that a NaN error counts as a failure.
        if err.is_nan() || err > tol {
            let excess = if err.is_nan() {
                f32::INFINITY
            } else {
                err - tol
            };
            if worst.is_none_or(|(_, e)| excess > e) {
                worst = Some((i, excess));
            }
        }
    }
    if let Some((i, _)) = worst {
        panic!(
            "assert_close failed at index {i}: actual {} expected {} (rtol {rtol}, atol {atol})",
            actual[i], expected[i]
        );
    }
}

/// Largest relative error `|a - b| / max(|b|, floor)` over the elements.
pub fn max_rel_error(actual: &[f32], expected: &[f32], floor: f32) -> f32 {
    actual
        .iter()
        .zip(expected)
        .map(|(&a, &b)| (a - b).abs() / b.abs().max(floor))
        .fold(0.0, f32::max)
}

/// CPU time of the whole process (every thread) so far: Linux's `CLOCK_PROCESS_CPUTIME_ID`.
/// The benches that report work per CPU-second read it (a machine shared with other jobs slows
/// their wall clock, not this one).
///
/// Panics (it is a bench helper) if the clock cannot be read.
pub fn process_cpu_time() -> std::time::Duration {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    unsafe extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is Linux's.
    let rc = unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
    std::time::Duration::new(ts.sec as u64, ts.nsec as u32)
}

/// A tensor of `dims` whose elements `f` makes, in order.
pub fn tensor_from_fn(dims: &[usize], mut f: impl FnMut() -> f32) -> crate::Tensor {
    let len = dims.iter().product();
    crate::Tensor::new(dims, (0..len).map(|_| f()).collect()).expect("dims and length agree")
}

/// Whether this CPU lacks `path`; if so, prints that the test of `what` is skipped, and why,
/// so that no path is skipped silently.
pub fn skip_without(path: crate::dispatch::F32Path, what: &str) -> bool {
    use crate::dispatch::KernelPath;
    let lacks = !path.is_supported();
    if lacks {
        eprintln!("skipped: {what} (CPU lacks {})", path.needs());
    }
    lacks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_within_tolerance() {
        assert_close(&[1.0, 2.0], &[1.0 + 1e-7, 2.0], 1e-6, 0.0);
    }

    #[test]
    #[should_panic(expected = "index 1")]
    fn fails_outside_tolerance() {
        assert_close(&[1.0, 2.1], &[1.0, 2.0], 1e-3, 0.0);
    }

    #[test]
    #[should_panic]
    fn nan_fails() {
        assert_close(&[f32::NAN], &[1.0], 1.0, 1.0);
    }
}
