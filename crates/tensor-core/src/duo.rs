//! A fork/join for two threads whose second thread stays awake between calls, for splitting
//! one small job (a batch-1 layer of 20-200 us) over two cores.
//!
//! [`join`]`(a, b)` runs `a` on the calling thread and `b` on a persistent helper thread, and
//! returns both results once both halves are done. After a job the helper spins
//! ([`std::hint::spin_loop`]) for [`SPIN`] waiting for the next one, then parks: the
//! consecutive layers of one inference find it awake, and an idle process costs nothing.
//!
//! Why not `rayon::join`: a rayon worker that has gone to sleep is woken through a futex, and
//! on the 2-core Xeon that round trip cost ~15 us per fork/join (session 11), as much as a
//! third of a cnn-teacher layer at batch 1; rayon's workers also fall asleep between the
//! layers of one inference. See `benches/duo.rs` for both costs measured side by side.
//!
//! Guarantees:
//! - Sound: `join` returns (or unwinds) only after `b` has finished or has been taken back,
//!   so `b` may borrow from the caller's stack like `std::thread::scope`.
//! - Panic-safe: a panic in either half is caught and re-raised in the caller once both
//!   halves are settled (the first half's panic wins); the helper survives it.
//! - Never a deadlock, never oversubscription: when `rayon::current_num_threads()` is 1, when
//!   the helper is busy with another caller's job (two concurrent or nested `join`s), or when
//!   the helper could not be spawned, both halves run on the caller, `a` then `b`.
//! - No wait on a late helper: if the helper has not picked `b` up by the time `a` is done
//!   (it was asleep, or descheduled), the caller takes `b` back and runs it itself.
//!
//! There is one helper per process: the primitive serves two threads, the count the zoo's
//! batch-1 runs ask for; more threads still get two-way splits.

use std::cell::UnsafeCell;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// How long the helper spins for the next job after finishing one before it parks: longer
/// than the gap between two layers of one inference (a few us), short enough that an idle
/// process stops burning a core at once.
pub const SPIN: Duration = Duration::from_micros(200);

/// Spins between two `sched_yield`s of a thread waiting on the other (~2-3 us on the Xeon).
///
/// A waiting thread that only spins is harmful when the two threads share one core (the
/// scheduler puts the helper beside the caller when another process holds the other core):
/// measured on the 2-core Xeon under load average 6, a round trip whose waits spun without
/// yielding took a median 203 us (the helper's whole [`SPIN`]) instead of 0.4 us.
const SPINS_PER_YIELD: u32 = 64;

/// The job posted for the helper, null when none. Written by the caller holding [`BUSY`]; the
/// helper takes a job by swapping in null, the caller takes it back by the same exchange, so
/// exactly one of them runs it.
static SLOT: AtomicPtr<JobHeader> = AtomicPtr::new(ptr::null_mut());
/// Held by one caller from posting a job to settling it: one [`join`] at a time.
static BUSY: AtomicBool = AtomicBool::new(false);
/// Set by the helper before it parks (and rechecks [`SLOT`]): a caller posting a job then
/// unparks it.
static SLEEPING: AtomicBool = AtomicBool::new(false);
/// The helper thread, spawned on first use (`None` if spawning failed).
static HELPER: OnceLock<Option<Thread>> = OnceLock::new();

/// The type-erased head of a [`StackJob`]: how to run it from a pointer.
#[repr(C)]
struct JobHeader {
    execute: unsafe fn(*const JobHeader),
}

/// A job living on the caller's stack: the closure, its result and the completion flag.
#[repr(C)]
struct StackJob<F, R> {
    header: JobHeader,
    f: UnsafeCell<Option<F>>,
    result: UnsafeCell<Option<thread::Result<R>>>,
    done: AtomicBool,
}

impl<F: FnOnce() -> R, R> StackJob<F, R> {
    fn new(f: F) -> Self {
        Self {
            header: JobHeader {
                execute: Self::execute,
            },
            f: UnsafeCell::new(Some(f)),
            result: UnsafeCell::new(None),
            done: AtomicBool::new(false),
        }
    }

    /// Runs the job on the helper and publishes its result.
    ///
    /// # Safety
    /// `head` points to the header of a live `StackJob<F, R>` that this thread alone has taken
    /// from [`SLOT`]; its owner does not touch `f` or `result` until `done` is set, and may
    /// free the job as soon as it is.
    unsafe fn execute(head: *const JobHeader) {
        let job = head.cast::<Self>();
        // SAFETY: per the contract, the job is live and these cells are ours until `done`.
        unsafe {
            if let Some(f) = (*(*job).f.get()).take() {
                *(*job).result.get() = Some(panic::catch_unwind(AssertUnwindSafe(f)));
            }
            // The last access: the owner may free the job once it sees the flag.
            (*job).done.store(true, Ordering::Release);
        }
    }
}

/// Runs `a` on this thread and `b` on the helper thread (see the module docs), returning
/// both results; `b` may borrow from the caller. Runs both here, `a` first, when
/// `rayon::current_num_threads()` is 1 or the helper is busy.
///
/// ```
/// let (mut lo, mut hi) = (vec![0u32; 4], vec![0u32; 4]);
/// let (x, y) = tensor_core::duo::join(
///     || { lo.fill(1); lo.len() },
///     || { hi.fill(2); hi.len() },
/// );
/// assert_eq!((x, y, lo[0], hi[3]), (4, 4, 1, 2));
/// ```
pub fn join<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA,
    B: FnOnce() -> RB + Send,
    RB: Send,
{
    if rayon::current_num_threads() < 2 {
        return (a(), b());
    }
    let Some(helper) = helper() else {
        return (a(), b());
    };
    if BUSY
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return (a(), b());
    }
    let job = StackJob::new(b);
    let head = ptr::from_ref(&job.header).cast_mut();
    // SeqCst pairs with the helper's `SLEEPING` store and `SLOT` recheck before it parks:
    // either it sees the job, or this thread sees it asleep and unparks it.
    SLOT.store(head, Ordering::SeqCst);
    if SLEEPING.load(Ordering::SeqCst) {
        helper.unpark();
    }
    let ra = panic::catch_unwind(AssertUnwindSafe(a));
    let rb = if SLOT
        .compare_exchange(head, ptr::null_mut(), Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
    {
        // The helper never saw the job: run it here (unless `a` panicked).
        match (&ra, job.f.into_inner()) {
            (Ok(_), Some(f)) => Some(panic::catch_unwind(AssertUnwindSafe(f))),
            _ => None,
        }
    } else {
        wait_done(&job.done);
        job.result.into_inner()
    };
    BUSY.store(false, Ordering::Release);
    match (ra, rb) {
        (Ok(ra), Some(Ok(rb))) => (ra, rb),
        (Err(p), _) | (_, Some(Err(p))) => panic::resume_unwind(p),
        // The helper always stores a result before `done`, and `a` succeeded above.
        (Ok(_), None) => unreachable!("duo: the helper finished without a result"),
    }
}

/// Whether a [`join`] from this thread would use the helper now (two or more threads asked
/// for, the helper running and idle). A hint: another caller may take the helper first.
pub fn helper_available() -> bool {
    rayon::current_num_threads() >= 2 && helper().is_some() && !BUSY.load(Ordering::Relaxed)
}

/// Waits for the helper's `done` flag: spins, yielding the core every [`SPINS_PER_YIELD`].
fn wait_done(done: &AtomicBool) {
    let mut spins = 0u32;
    while !done.load(Ordering::Acquire) {
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(SPINS_PER_YIELD) {
            thread::yield_now();
        }
    }
}

/// The helper thread, spawned on the first call.
fn helper() -> Option<&'static Thread> {
    HELPER
        .get_or_init(|| {
            thread::Builder::new()
                .name("slimnet-duo".into())
                .spawn(helper_loop)
                .ok()
                .map(|h| h.thread().clone())
        })
        .as_ref()
}

/// The helper's life: take a job, run it, repeat.
fn helper_loop() {
    loop {
        let head = next_job();
        // SAFETY: `next_job` swapped the pointer out of `SLOT`, so this thread alone owns the
        // job; its caller blocks in `join` until `done` is set.
        unsafe { ((*head).execute)(head) };
    }
}

/// Takes the next job from [`SLOT`]: spins for [`SPIN`] (yielding now and then, see
/// [`SPINS_PER_YIELD`]), then parks until a caller posts one.
fn next_job() -> *const JobHeader {
    loop {
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            if !SLOT.load(Ordering::Relaxed).is_null() {
                let head = SLOT.swap(ptr::null_mut(), Ordering::Acquire);
                if !head.is_null() {
                    return head;
                }
            }
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(SPINS_PER_YIELD) {
                if start.elapsed() >= SPIN {
                    break;
                }
                thread::yield_now();
            }
        }
        SLEEPING.store(true, Ordering::SeqCst);
        let head = SLOT.swap(ptr::null_mut(), Ordering::SeqCst);
        if head.is_null() {
            thread::park();
        }
        SLEEPING.store(false, Ordering::Relaxed);
        if !head.is_null() {
            return head;
        }
        // Woken (by a caller that may have taken its job back, or spuriously): spin again.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    /// The tests of this module one at a time (they share the process's one helper).
    fn serial() -> std::sync::MutexGuard<'static, ()> {
        static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        SERIAL.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Both halves write disjoint borrowed halves of one buffer, many times in a row, with
    /// pauses that let the helper fall asleep between some of them.
    #[test]
    fn halves_write_borrowed_data_and_return_results() {
        let _serial = serial();
        pool(2).install(|| {
            let mut v = vec![0u64; 1000];
            for round in 0..2000u64 {
                let (lo, hi) = v.split_at_mut(300);
                let (sa, sb) = join(
                    || {
                        lo.iter_mut().for_each(|x| *x += round);
                        lo.iter().sum::<u64>()
                    },
                    || {
                        hi.iter_mut().for_each(|x| *x += 2 * round);
                        hi.iter().sum::<u64>()
                    },
                );
                let t = round * (round + 1) / 2;
                assert_eq!((sa, sb), (300 * t, 700 * 2 * t), "round {round}");
                if round % 500 == 0 {
                    thread::sleep(SPIN * 3);
                }
            }
        });
    }

    /// On two threads the second half runs on the helper at least sometimes (it is awake
    /// right after a job); on one thread always on the caller. Other tests of this process
    /// may hold the one helper at any moment (their joins then run on their callers, and so
    /// may ours), so the two-thread half tries for up to 3 s before it concludes.
    #[test]
    fn second_half_runs_on_the_helper_only_with_two_threads() {
        let _serial = serial();
        // Halves long enough that the awake helper takes `b` before the caller, done with
        // `a`, would take it back.
        let busy = || {
            let t = Instant::now();
            while t.elapsed() < Duration::from_micros(20) {}
            thread::current().id()
        };
        pool(1).install(|| {
            let me = thread::current().id();
            for _ in 0..200 {
                assert_eq!(
                    join(busy, busy),
                    (me, me),
                    "one thread: every half on the caller"
                );
            }
        });
        let helper_ran = pool(2).install(|| {
            let me = thread::current().id();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(3) {
                if join(busy, busy).1 != me {
                    return true;
                }
            }
            false
        });
        assert!(helper_ran, "two threads: the helper ran no half in 3 s");
    }

    /// A panic in either half reaches the caller, and the helper keeps serving afterwards.
    #[test]
    fn panics_are_reraised_in_the_caller() {
        let _serial = serial();
        pool(2).install(|| {
            for round in 0..50 {
                let r = panic::catch_unwind(|| join(|| 1, || -> i32 { panic!("b {round}") }));
                let msg = r.unwrap_err();
                assert_eq!(msg.downcast_ref::<String>().unwrap(), &format!("b {round}"));
                let r = panic::catch_unwind(|| join(|| -> i32 { panic!("a") }, || 2));
                assert_eq!(*r.unwrap_err().downcast_ref::<&str>().unwrap(), "a");
                assert_eq!(join(|| 3, || 4), (3, 4));
            }
        });
    }

    /// Nested and concurrent calls fall back to running on the caller and never hang.
    #[test]
    fn nested_and_concurrent_calls_complete() {
        let _serial = serial();
        let total = AtomicUsize::new(0);
        pool(2).install(|| {
            rayon::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|_| {
                        for _ in 0..300 {
                            let ((a, b), (c, d)) = join(|| join(|| 1, || 2), || join(|| 3, || 4));
                            total.fetch_add(a + b + c + d, Ordering::Relaxed);
                        }
                    });
                }
            });
        });
        assert_eq!(total.into_inner(), 4 * 300 * 10);
    }
}
