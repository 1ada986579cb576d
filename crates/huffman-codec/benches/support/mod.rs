//! Shared by the benches: the time source, and the bench inputs.
//!
//! The bench machine is shared (2 cores, other builds running), so wall-clock time measures the
//! scheduler as much as the code. By default these benches therefore time each iteration batch
//! by the benchmark thread's own CPU time (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`, ns
//! resolution; `/proc/thread-self/schedstat` only advances at scheduler ticks): the throughput
//! one dedicated core delivers. `HUFF_BENCH_CLOCK=wall` switches back to wall-clock time
//! (`std::time::Instant`), which equals it on an idle machine.
#![allow(dead_code)]

use criterion::Throughput;
use criterion::measurement::{Measurement, ValueFormatter};
use std::time::{Duration, Instant};

#[path = "../../tests/streams/mod.rs"]
pub mod streams;

/// Thread CPU time, or wall-clock time when `HUFF_BENCH_CLOCK=wall`.
pub struct BenchClock {
    wall: bool,
    origin: Instant,
}

/// The criterion settings of the decode and encode benches: the clock `HUFF_BENCH_CLOCK`
/// selects, 0.5 s warm-up, 30 samples over 2 s.
pub fn throughput_config() -> criterion::Criterion<BenchClock> {
    criterion::Criterion::default()
        .with_measurement(BenchClock::from_env())
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

impl BenchClock {
    pub fn from_env() -> Self {
        let wall = std::env::var("HUFF_BENCH_CLOCK").is_ok_and(|v| v == "wall");
        eprintln!(
            "bench clock: {}",
            if wall {
                "wall-clock"
            } else {
                "thread CPU time (CLOCK_THREAD_CPUTIME_ID)"
            }
        );
        Self {
            wall,
            origin: Instant::now(),
        }
    }

    fn now_ns(&self) -> u64 {
        if self.wall {
            return self.origin.elapsed().as_nanos() as u64;
        }
        thread_cpu_ns()
    }
}

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

// The C library std already links; no crate is needed for one call.
unsafe extern "C" {
    fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
}

/// Linux `CLOCK_THREAD_CPUTIME_ID`.
const CLOCK_THREAD_CPUTIME_ID: i32 = 3;

fn thread_cpu_ns() -> u64 {
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec (x86-64 Linux layout: two i64).
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Measurement for BenchClock {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        self.now_ns()
    }
    fn end(&self, start: u64) -> u64 {
        self.now_ns() - start
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &NsFormatter
    }
}

/// Nanoseconds as time; bytes per second in decimal GB/s or MB/s.
struct NsFormatter;

impl ValueFormatter for NsFormatter {
    fn scale_values(&self, ns: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if ns < 1e3 {
            (1.0, "ns")
        } else if ns < 1e6 {
            (1e-3, "µs")
        } else if ns < 1e9 {
            (1e-6, "ms")
        } else {
            (1e-9, "s")
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }

    fn scale_throughputs(&self, typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let units = match *t {
            Throughput::Bytes(b) | Throughput::BytesDecimal(b) => b as f64,
            Throughput::Elements(e) | Throughput::ElementsAndBytes { elements: e, .. } => e as f64,
            Throughput::Bits(b) => b as f64,
        };
        let per_second = units * 1e9 / typical;
        let (factor, unit) = if per_second >= 1e9 {
            (1e-9, "GB/s")
        } else {
            (1e-6, "MB/s")
        };
        values
            .iter_mut()
            .for_each(|v| *v = units * 1e9 / *v * factor);
        unit
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

/// The stand-in streams with more than 20,000 symbols, plus a 1 MiB resample for steady state.
pub fn large_inputs() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = streams::all_streams()
        .into_iter()
        .filter(|s| s.symbols.len() > 20_000)
        .map(|s| (s.name, s.symbols))
        .collect();
    v.push((
        "lenet5.fc.indices.x1MiB".into(),
        streams::large_stream(1 << 20, 1),
    ));
    v
}
