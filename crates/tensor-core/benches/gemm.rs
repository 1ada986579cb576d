//! f32 GEMM through faer: a 1024-cube on one and two threads, and the GEMMs of LeNet-5's
//! layers (conv layers as their im2col GEMM) at batch 64 and 256.
//!
//! Throughput is reported as `Elements(2*m*n*k)`: criterion's "elem/s" is FLOP/s here.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tensor_core::gemm::{GemmParams, gemm};
use tensor_core::rng::Rng;

fn rand_vec(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.normal()).collect()
}

/// Benchmarks `C[m, n] = op(A) op(B)` in group `group` under `name`.
#[allow(clippy::too_many_arguments)]
fn bench_shape(
    c: &mut Criterion,
    group: &str,
    name: &str,
    m: usize,
    n: usize,
    k: usize,
    params: GemmParams,
) {
    let mut rng = Rng::seed_from_u64(1);
    let a = rand_vec(&mut rng, m * k);
    let b = rand_vec(&mut rng, k * n);
    let mut out = vec![0.0f32; m * n];
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements((2 * m * n * k) as u64));
    g.bench_function(BenchmarkId::from_parameter(name), |bench| {
        bench.iter(|| {
            gemm(m, n, k, black_box(&a), black_box(&b), &mut out, &params).unwrap();
            black_box(&out);
        })
    });
    g.finish();
}

fn square(c: &mut Criterion) {
    for threads in [1, 2] {
        bench_shape(
            c,
            "gemm_f32 (elements=FLOP)",
            &format!("1024x1024x1024/threads={threads}"),
            1024,
            1024,
            1024,
            GemmParams::default().threads(threads),
        );
    }
}

fn lenet5(c: &mut Criterion) {
    for batch in [64, 256] {
        // conv1: W [20, 1*5*5] x col [25, B*24*24].
        let shapes = [
            (
                "lenet5.conv1.im2col",
                20,
                batch * 576,
                25,
                GemmParams::default(),
            ),
            // conv2: W [50, 20*5*5] x col [500, B*8*8].
            (
                "lenet5.conv2.im2col",
                50,
                batch * 64,
                500,
                GemmParams::default(),
            ),
            // fc1: x [B, 800] x W^T, W [500, 800].
            (
                "lenet5.fc1",
                batch,
                500,
                800,
                GemmParams::with_trans(false, true),
            ),
            // fc2: x [B, 500] x W^T, W [10, 500].
            (
                "lenet5.fc2",
                batch,
                10,
                500,
                GemmParams::with_trans(false, true),
            ),
        ];
        for (name, m, n, k, p) in shapes {
            bench_shape(
                c,
                "gemm_f32 lenet5 (elements=FLOP)",
                &format!("{name}/batch={batch}"),
                m,
                n,
                k,
                p,
            );
        }
    }
}

criterion_group!(benches, square, lenet5);
criterion_main!(benches);
