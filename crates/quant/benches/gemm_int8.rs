//! The int8 GEMM (reduced-range u8 x i8 -> i32, `quant::gemm`) against faer's f32 GEMM on the
//! same shapes: a 1024-cube and the layers of lenet5 and cnn-teacher at batch 64 (convs as
//! their im2col GEMM, one row per output position: `m = batch * positions`, `n = filters`,
//! `k = in_channels * kh * kw`).
//!
//! Each shape runs the f32 GEMM, the int8 GEMM with 8-bit weights and with 7-bit weights
//! (`int8-<path>-w7`, which the AVX2 path runs with two depth groups per widening), and the
//! int8 GEMM with its requantization epilogue (`int8-<path>-requant`: u8 codes out, what a
//! quantized layer hands the next one, as the f32 GEMM's output is what the next f32 layer
//! reads; on AVX-512 VNNI the i32 sums stay in registers).
//!
//! Throughput is `Elements(m*n*k)`: criterion's "elem/s" is multiply-accumulates per second
//! for both, so the ratio of the two lines of a shape is the speed-up. Threads: rayon's pool
//! (`RAYON_NUM_THREADS`); f32 uses the same pool through faer.
//!
//! `QUANT_BENCH_CLOCK=cpu` (Linux) measures the process's CPU time (`CLOCK_PROCESS_CPUTIME_ID`)
//! instead of wall time: on a loaded machine a time slice given to another process is then not
//! counted. With one thread it is the time the GEMM ran; with several, the CPU time of all of
//! them (the work, not the latency).

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_main};
use quant::gemm::{PackedWeights, Requant, gemm_u7i8_requantized, gemm_u7i8_with, padded_depth};
use tensor_core::dispatch::Int8Path;
use tensor_core::gemm::{GemmParams, gemm};
use tensor_core::rng::Rng;

const BATCH: usize = 64;

/// `(name, m, n, k)`.
fn shapes() -> Vec<(&'static str, usize, usize, usize)> {
    let b = BATCH;
    vec![
        ("1024^3", 1024, 1024, 1024),
        ("lenet5.conv1", b * 24 * 24, 20, 25),
        ("lenet5.conv2", b * 8 * 8, 50, 500),
        ("lenet5.fc1", b, 500, 800),
        ("lenet5.fc2", b, 10, 500),
        ("cnn-teacher.conv1", b * 28 * 28, 32, 9),
        ("cnn-teacher.conv2", b * 28 * 28, 32, 288),
        ("cnn-teacher.conv3", b * 14 * 14, 64, 288),
        ("cnn-teacher.conv4", b * 14 * 14, 64, 576),
        ("cnn-teacher.fc1", b, 256, 3136),
        ("cnn-teacher.fc2", b, 10, 256),
        // One image: the first convolutions' outputs stay in cache (at batch 64 both kernels
        // spend their time writing 6.4 MB of 4-byte results).
        ("lenet5.conv1.b1", 24 * 24, 20, 25),
        ("cnn-teacher.conv1.b1", 28 * 28, 32, 9),
    ]
}

/// Process CPU time as a criterion measurement (`QUANT_BENCH_CLOCK=cpu`).
struct CpuTime {
    /// Formats durations as wall time does.
    wall: WallTime,
}

/// The process's CPU time (Linux's `CLOCK_PROCESS_CPUTIME_ID`).
fn cpu_now() -> Duration {
    tensor_core::testing::process_cpu_time()
}

impl Measurement for CpuTime {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        cpu_now()
    }
    fn end(&self, start: Duration) -> Duration {
        cpu_now().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        self.wall.formatter()
    }
}

fn bench<M: Measurement>(c: &mut Criterion<M>) {
    let path = Int8Path::selected();
    let filter = std::env::var("QUANT_BENCH_SHAPES").ok();
    for (name, m, n, k) in shapes() {
        if let Some(f) = &filter
            && !f.split(',').any(|s| name.contains(s))
        {
            continue;
        }
        let mut rng = Rng::seed_from_u64(15);
        let af: Vec<f32> = (0..m * k).map(|_| rng.normal()).collect();
        let wf: Vec<f32> = (0..n * k).map(|_| rng.normal()).collect();
        // Activation rows padded to a multiple of 4 bytes, as a quantized layer's im2col
        // writes them.
        let kp = padded_depth(k);
        let a8: Vec<u8> = (0..m * kp).map(|_| (rng.next_u64() % 128) as u8).collect();
        let w8: Vec<i8> = (0..n * k).map(|_| rng.next_u64() as u8 as i8).collect();
        let packed = PackedWeights::pack(&w8, n, k).unwrap();
        // 7-bit weights (`--weight-bits 7`, onnxruntime's reduced range on x86 without VNNI):
        // the AVX2 kernel adds two `vpmaddubsw` results in i16 before widening.
        let w7: Vec<i8> = (0..n * k)
            .map(|_| (rng.next_u64() % 128) as i8 - 64)
            .collect();
        let packed7 = PackedWeights::pack(&w7, n, k).unwrap();
        let mut cf = vec![0f32; m * n];
        let mut c8 = vec![0i32; m * n];
        let mut codes = vec![0u8; m * n];
        // Offsets and multipliers of the size a layer has: sums of ~sqrt(k) * 64 * 74 map
        // onto the 7-bit codes.
        let offsets: Vec<i32> = (0..n)
            .map(|_| (rng.next_u64() % 2001) as i32 - 1000)
            .collect();
        let scale = 1.0 / (k.max(1) as f32).sqrt() / 2000.0;
        let multipliers: Vec<f32> = (0..n)
            .map(|_| scale * (0.5 + (rng.next_u64() % 1000) as f32 / 1000.0))
            .collect();
        let requant = Requant {
            offsets: &offsets,
            multipliers: &multipliers,
            zp: 10,
            lo: 10,
            hi: 127,
        };
        let mut g = c.benchmark_group("gemm int8 vs f32 (elements=MAC)");
        g.throughput(Throughput::Elements((m * n * k) as u64));
        g.sample_size(10);
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(2));
        let p = GemmParams::with_trans(false, true);
        g.bench_function(BenchmarkId::new("f32-faer", name), |bench| {
            bench.iter(|| {
                gemm(m, n, k, black_box(&af), black_box(&wf), &mut cf, &p).unwrap();
                black_box(&cf);
            })
        });
        g.bench_function(
            BenchmarkId::new(format!("int8-{}", path.name()), name),
            |bench| {
                bench.iter(|| {
                    gemm_u7i8_with(path, black_box(&a8), kp, m, &packed, &mut c8).unwrap();
                    black_box(&c8);
                })
            },
        );
        g.bench_function(
            BenchmarkId::new(format!("int8-{}-w7", path.name()), name),
            |bench| {
                bench.iter(|| {
                    gemm_u7i8_with(path, black_box(&a8), kp, m, &packed7, &mut c8).unwrap();
                    black_box(&c8);
                })
            },
        );
        g.bench_function(
            BenchmarkId::new(format!("int8-{}-requant", path.name()), name),
            |bench| {
                bench.iter(|| {
                    gemm_u7i8_requantized(
                        path,
                        black_box(&a8),
                        kp,
                        m,
                        &packed,
                        &requant,
                        &mut codes,
                        n,
                    )
                    .unwrap();
                    black_box(&codes);
                })
            },
        );
        g.finish();
    }
}

fn benches() {
    if std::env::var("QUANT_BENCH_CLOCK").as_deref() == Ok("cpu") {
        let mut c = Criterion::default()
            .with_measurement(CpuTime { wall: WallTime })
            .configure_from_args();
        bench(&mut c);
    } else {
        let mut c = Criterion::default().configure_from_args();
        bench(&mut c);
    }
}

criterion_main!(benches);
