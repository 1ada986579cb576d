//! Per-layer GFLOP/s of the fused forward convolution per second of CPU time, for a machine
//! shared with other jobs: wall-clock throughput there measures the share of the cores this
//! process got, while FLOP per CPU-second (the process's `CLOCK_PROCESS_CPUTIME_ID`) measures
//! the kernel (up to cache and SMT interference from the neighbours).
//!
//! `cargo bench -p tensor-core --bench conv_cpu [-- FILTER]` prints first the FMA clocks (tight
//! loops of 12 independent 256-bit, then 512-bit FMAs: FMAs per CPU-second / 2 FMA units, the
//! clock the cores actually run vector code of that width at, boost included) and the
//! per-core peaks they imply (32 f32 FLOP per cycle with AVX2 + FMA, 64 with AVX-512 F), then
//! one line per layer, batch and f32 path: wall and CPU GFLOP/s, and the CPU figure as a
//! share of that path's peak (avx2-fma against the 256-bit one; avx512f and portable, whose
//! GEMM runs 512-bit microkernels where it can, against the 512-bit one). Run it with
//! `RAYON_NUM_THREADS=1` for one core (CPU GFLOP/s then reads directly against the per-core
//! peak); with 2 threads the CPU figure is per core-second too.
//!
//! On AVX-512 F, a 3x3 layer Winograd applies to is timed three times: `direct` (the direct
//! kernel, Winograd switched off), `wino2x2` (F(2x2, 3x3)) and `wino4x4` (F(4x4, 3x3)); all report the direct convolution's
//! FLOP count over their time (effective GFLOP/s: Winograd does fewer multiplies), so `% peak`
//! above 100% is possible. Batches 1, 32 (the chunk nn's inference runs) and 256.

use std::time::{Duration, Instant};

use tensor_core::Tensor;
use tensor_core::conv::{
    Conv2dParams, ConvEpilogue, PackedConvWeights, Padding, WINOGRAD_MIN_CHANNELS, WinogradMode,
    conv2d_forward_fused_with, set_winograd_mode, winograd_applies,
};
use tensor_core::dispatch::F32Path;
use tensor_core::rng::Rng;

mod fma_peak;
use fma_peak::{cpu_seconds, measured_peak};

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
    let peak256 = measured_peak(256);
    let peak512 = measured_peak(512);
    // Each path against the peak of the widest FMA it may run: im2col + GEMM (faer's `gemm`
    // picks its AVX-512 microkernels where the CPU has them) and the AVX-512 path against the
    // 512-bit one, the AVX2 path against the 256-bit one.
    let peak_of = |path: F32Path| match path {
        F32Path::Avx2Fma => peak256,
        _ => peak512.or(peak256),
    };
    println!(
        "{:<20} {:>5} {:<9} {:>10} {:>10} {:>10} {:>7}",
        "layer", "batch", "path", "ms/call", "wall GF/s", "cpu GF/s", "% peak"
    );
    for (name, p, hw, epi) in zoo_layers() {
        if !name.contains(&filter) {
            continue;
        }
        for batch in [1usize, 32, 256] {
            let mut rng = Rng::seed_from_u64(3);
            let x = rand_tensor(&mut rng, &[batch, p.in_channels, hw, hw]);
            let w = rand_tensor(&mut rng, &p.weight_dims());
            let b: Vec<f32> = (0..p.out_channels).map(|_| rng.normal()).collect();
            let packed = PackedConvWeights::pack(w.data(), &p).unwrap();
            let flop = 2.0 * p.macs(x.shape()).unwrap() as f64;
            let wino = winograd_applies(&p) && p.in_channels >= WINOGRAD_MIN_CHANNELS;
            let mut runs: Vec<(&str, F32Path, WinogradMode)> = F32Path::supported()
                .into_iter()
                .map(|f| (f.name(), f, WinogradMode::Off))
                .collect();
            if wino && F32Path::Avx512F.is_supported() {
                for r in runs.iter_mut().filter(|r| r.1 == F32Path::Avx512F) {
                    r.0 = "direct";
                }
                runs.push(("wino2x2", F32Path::Avx512F, WinogradMode::F2x2));
                runs.push(("wino4x4", F32Path::Avx512F, WinogradMode::F4x4));
            }
            for (label, path, mode) in runs {
                set_winograd_mode(mode);
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
                let share = peak_of(path).map_or(String::from("-"), |pk| {
                    format!("{:.0}%", 100.0 * flop / cpu / 1e9 / pk)
                });
                println!(
                    "{name:<20} {batch:>5} {label:<9} {:>10.3} {:>10.1} {:>10.1} {share:>7}",
                    wall * 1e3,
                    flop / wall / 1e9,
                    flop / cpu / 1e9
                );
            }
        }
    }
}
