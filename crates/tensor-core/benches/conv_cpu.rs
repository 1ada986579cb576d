//! Per-layer GFLOP/s of the fused forward convolution per second of CPU time, for a machine
//! shared with other jobs: wall-clock throughput there measures the share of the cores this
//! process got, while FLOP per CPU-second (the process's `CLOCK_PROCESS_CPUTIME_ID`) measures
//! the kernel (up to cache and SMT interference from the neighbours).
//!
//! `cargo bench -p tensor-core --bench conv_cpu [-- FILTER]` prints first the FMA clock (a
//! tight loop of 10 independent 256-bit FMAs: FMAs per CPU-second / 2 FMA units, the clock
//! the cores actually run vector code at, boost included) and the per-core peak it implies
//! (32 f32 FLOP per cycle with AVX2 + FMA), then one line per layer, batch and f32 path: wall
//! and CPU GFLOP/s, and the CPU figure as a share of that peak. Run it with
//! `RAYON_NUM_THREADS=1` for one core (CPU GFLOP/s then reads directly against the per-core
//! peak); with 2 threads the CPU figure is per core-second too.

use std::time::{Duration, Instant};

use tensor_core::Tensor;
use tensor_core::conv::{
    Conv2dParams, ConvEpilogue, PackedConvWeights, Padding, conv2d_forward_fused_with,
};
use tensor_core::dispatch::F32Path;
use tensor_core::rng::Rng;

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

unsafe extern "C" {
    fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
}

/// CPU time of the whole process (every thread), in seconds.
fn cpu_seconds() -> f64 {
    const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is Linux's.
    let rc = unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
    ts.sec as f64 + ts.nsec as f64 * 1e-9
}

/// 256-bit FMAs per CPU-second in a loop of 10 independent accumulators (enough to cover
/// the 4-cycle latency of two FMA pipes), or `None` without AVX2 + FMA.
fn fma_per_cpu_second() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if F32Path::Avx2Fma.is_supported() {
        let iters: u64 = 50_000_000;
        let mut best = 0.0f64;
        for _ in 0..3 {
            let t0 = cpu_seconds();
            let mut n = iters;
            // SAFETY: AVX2 + FMA are present (checked above); the asm only touches the named
            // registers and `n`.
            unsafe {
                std::arch::asm!(
                    "vxorps ymm0, ymm0, ymm0", "vxorps ymm1, ymm1, ymm1",
                    "vxorps ymm2, ymm2, ymm2", "vxorps ymm3, ymm3, ymm3",
                    "vxorps ymm4, ymm4, ymm4", "vxorps ymm5, ymm5, ymm5",
                    "vxorps ymm6, ymm6, ymm6", "vxorps ymm7, ymm7, ymm7",
                    "vxorps ymm8, ymm8, ymm8", "vxorps ymm9, ymm9, ymm9",
                    "vxorps ymm14, ymm14, ymm14", "vxorps ymm15, ymm15, ymm15",
                    "2:",
                    "vfmadd231ps ymm0, ymm14, ymm15", "vfmadd231ps ymm1, ymm14, ymm15",
                    "vfmadd231ps ymm2, ymm14, ymm15", "vfmadd231ps ymm3, ymm14, ymm15",
                    "vfmadd231ps ymm4, ymm14, ymm15", "vfmadd231ps ymm5, ymm14, ymm15",
                    "vfmadd231ps ymm6, ymm14, ymm15", "vfmadd231ps ymm7, ymm14, ymm15",
                    "vfmadd231ps ymm8, ymm14, ymm15", "vfmadd231ps ymm9, ymm14, ymm15",
                    "dec {n}",
                    "jnz 2b",
                    n = inout(reg) n,
                    out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _,
                    out("ymm4") _, out("ymm5") _, out("ymm6") _, out("ymm7") _,
                    out("ymm8") _, out("ymm9") _, out("ymm14") _, out("ymm15") _,
                    options(nostack),
                );
            }
            let _ = n;
            best = best.max(iters as f64 * 10.0 / (cpu_seconds() - t0));
        }
        return Some(best);
    }
    None
}

fn rand_tensor(rng: &mut Rng, dims: &[usize]) -> Tensor {
    let n = dims.iter().product();
    Tensor::new(dims, (0..n).map(|_| rng.normal()).collect()).unwrap()
}

/// Every convolution of the zoo's CNNs with the epilogue the model fuses into it: (name,
/// params, input side, epilogue).
fn zoo_layers() -> Vec<(&'static str, Conv2dParams, usize, ConvEpilogue)> {
    let same = |c, o| Conv2dParams::new(c, o, (3, 3)).with_padding(Padding::symmetric(1));
    let relu = ConvEpilogue {
        relu: true,
        max_pool_2x2: false,
    };
    let pool = ConvEpilogue {
        relu: true,
        max_pool_2x2: true,
    };
    vec![
        ("lenet5.conv1", Conv2dParams::new(1, 20, (5, 5)), 28, pool),
        ("lenet5.conv2", Conv2dParams::new(20, 50, (5, 5)), 12, pool),
        ("cnn-teacher.conv1", same(1, 32), 28, relu),
        ("cnn-teacher.conv2", same(32, 32), 28, pool),
        ("cnn-teacher.conv3", same(32, 64), 14, relu),
        ("cnn-teacher.conv4", same(64, 64), 14, pool),
        ("wide-teacher.conv1", same(1, 64), 28, relu),
        ("wide-teacher.conv2", same(64, 64), 28, pool),
        ("wide-teacher.conv3", same(64, 128), 14, relu),
        ("wide-teacher.conv4", same(128, 128), 14, pool),
    ]
}

fn main() {
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    let threads = rayon::current_num_threads();
    println!(
        "# {threads} rayon thread(s); load: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let peak = fma_per_cpu_second().map(|fma| {
        let ghz = fma / 2.0 / 1e9;
        println!(
            "# FMA loop: {:.2} G 256-bit FMA per CPU-second = {ghz:.2} GHz at 2 FMA/cycle; \
             peak {:.1} GFLOP/s per core",
            fma / 1e9,
            fma * 16.0 / 1e9
        );
        fma * 16.0 / 1e9
    });
    println!(
        "{:<20} {:>5} {:<9} {:>10} {:>10} {:>10} {:>7}",
        "layer", "batch", "path", "ms/call", "wall GF/s", "cpu GF/s", "% peak"
    );
    for (name, p, hw, epi) in zoo_layers() {
        if !name.contains(&filter) {
            continue;
        }
        for batch in [1usize, 256] {
            let mut rng = Rng::seed_from_u64(3);
            let x = rand_tensor(&mut rng, &[batch, p.in_channels, hw, hw]);
            let w = rand_tensor(&mut rng, &p.weight_dims());
            let b: Vec<f32> = (0..p.out_channels).map(|_| rng.normal()).collect();
            let packed = PackedConvWeights::pack(w.data(), &p).unwrap();
            let flop = 2.0 * p.macs(x.shape()).unwrap() as f64;
            for path in F32Path::supported() {
                let run = || {
                    conv2d_forward_fused_with(path, &x, &w, Some(&packed), Some(&b), &p, epi)
                        .unwrap()
                };
                std::hint::black_box(run());
                let (mut calls, t0, c0) = (0u32, Instant::now(), cpu_seconds());
                while calls < 3 || t0.elapsed() < Duration::from_millis(600) {
                    std::hint::black_box(run());
                    calls += 1;
                }
                let wall = t0.elapsed().as_secs_f64() / calls as f64;
                let cpu = (cpu_seconds() - c0) / calls as f64;
                let share = peak.map_or(String::from("-"), |pk| {
                    format!("{:.0}%", 100.0 * flop / cpu / 1e9 / pk)
                });
                println!(
                    "{name:<20} {batch:>5} {:<9} {:>10.3} {:>10.1} {:>10.1} {share:>7}",
                    path.name(),
                    wall * 1e3,
                    flop / wall / 1e9,
                    flop / cpu / 1e9
                );
            }
        }
    }
}
