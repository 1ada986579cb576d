//! Binary GEMM (XNOR + popcount on packed rows) against faer's f32 GEMM on the same
//! `M, N, K`, K from 256 to 4096, both on all threads; and the binary kernel per path.
//!
//! Throughput is `Elements(M*N*K)`: criterion's "elem/s" is multiply-accumulates per second
//! (binary MACs for the binary kernel). The binary operands are packed before timing (weights
//! are stored packed; activations pay a packing pass, benched apart as `pack`). `binary/avx2`
//! is the default AVX2 kernel (nibble planes), `binary/avx2-table` the table tile on the
//! packed words, `binary/amx-int8` the AMX path (±1 bytes on tile registers; where the CPU
//! and OS have it, the default for these shapes), its expansion of the bits timed with it.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tensor_core::dispatch::PopcountPath;
use tensor_core::gemm::{GemmParams, gemm};
use tensor_core::rng::Rng;
use xnor_kernels::{
    AMX_NEEDS, AMX_PATH_NAME, AmxUse, BinaryGemmParams, PackedRows, amx_usable, binary_gemm_with,
};

fn rand_vec(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.normal()).collect()
}

/// `(name, M, N, K)`: square-ish products over the K range, and cnn-teacher's fc1 at batch
/// 256 (`[256, 3136] x [3136, 256]`).
const SHAPES: [(&str, usize, usize, usize); 5] = [
    ("256x512x256", 256, 512, 256),
    ("256x512x1024", 256, 512, 1024),
    ("256x512x2048", 256, 512, 2048),
    ("256x512x4096", 256, 512, 4096),
    ("cnn-teacher.fc1/b256", 256, 256, 3136),
];

fn versus_f32(c: &mut Criterion) {
    let mut rng = Rng::seed_from_u64(1);
    for (name, m, n, k) in SHAPES {
        let a = rand_vec(&mut rng, m * k);
        let b = rand_vec(&mut rng, n * k);
        let mut g = c.benchmark_group(format!("gemm {name} (elements=MAC)"));
        g.throughput(Throughput::Elements((m * n * k) as u64));
        let mut out = vec![0.0f32; m * n];
        let p = GemmParams::with_trans(false, true);
        g.bench_function("f32 faer", |bench| {
            bench.iter(|| {
                gemm(m, n, k, black_box(&a), black_box(&b), &mut out, &p).unwrap();
                black_box(&out);
            })
        });
        let (pa, pb) = (
            PackedRows::pack(&a, m, k).unwrap(),
            PackedRows::pack(&b, n, k).unwrap(),
        );
        let mut outi = vec![0i32; m * n];
        for path in PopcountPath::supported() {
            let bp = BinaryGemmParams::on(path);
            g.bench_function(BenchmarkId::new("binary", path.name()), |bench| {
                bench.iter(|| {
                    binary_gemm_with(black_box(&pa), black_box(&pb), &mut outi, &bp).unwrap();
                    black_box(&outi);
                })
            });
            if path == PopcountPath::Avx2 {
                // The table tile on the packed words (the kernel before nibble planes).
                let bt = bp.nibble_planes(false);
                g.bench_function("binary/avx2-table", |bench| {
                    bench.iter(|| {
                        binary_gemm_with(black_box(&pa), black_box(&pb), &mut outi, &bt).unwrap();
                        black_box(&outi);
                    })
                });
            }
        }
        if amx_usable() {
            // Every product on AMX tiles (the default for these shapes on such a CPU).
            let ba = BinaryGemmParams::default().amx(AmxUse::Always);
            g.bench_function(BenchmarkId::new("binary", AMX_PATH_NAME), |bench| {
                bench.iter(|| {
                    binary_gemm_with(black_box(&pa), black_box(&pb), &mut outi, &ba).unwrap();
                    black_box(&outi);
                })
            });
        } else {
            println!("skipped: binary/{AMX_PATH_NAME} (CPU or OS lacks {AMX_NEEDS})");
        }
        g.bench_function("pack A", |bench| {
            bench.iter(|| black_box(PackedRows::pack(black_box(&a), m, k).unwrap()))
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = versus_f32
}
criterion_main!(benches);
