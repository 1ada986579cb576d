//! f32 GEMM through faer: a 1024-cube on one and two threads, and the GEMMs of LeNet-5's
//! layers (conv layers as their im2col GEMM) at batch 64 and 256.
//!
//! Throughput is reported as `Elements(2*m*n*k)`: criterion's "elem/s" is FLOP/s here.
//!
//! `linear_layers`: the inference of linear layers `act(x W^T + b)` (lenet300 fc1-3, lenet5
//! fc1, cnn-teacher fc1, batch 1 and 256) by the packed-weight kernel with its fused epilogue
//! (`packed`) beside what nn's `Linear` ran before it (`faer`: the faer GEMM, `W x^T` at
//! batch 1, then the bias and ReLU passes), on 1 thread and, at batch 256, 2 threads.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tensor_core::activation::relu_inplace;
use tensor_core::gemm::{GemmParams, LinearEpilogue, PackedLinear, gemm, linear_packed};
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

/// The previous inference of a linear layer: faer's product, then bias and ReLU passes.
fn faer_linear(
    x: &[f32],
    m: usize,
    w: &[f32],
    (n, k): (usize, usize),
    b: &[f32],
    y: &mut [f32],
    threads: usize,
) {
    let p = GemmParams::default().threads(threads);
    if m == 1 {
        gemm(n, 1, k, w, x, y, &p).unwrap();
    } else {
        let p = GemmParams::with_trans(false, true).threads(p.threads);
        gemm(m, n, k, x, w, y, &p).unwrap();
    }
    for row in y.chunks_exact_mut(n) {
        row.iter_mut().zip(b).for_each(|(v, &bv)| *v += bv);
        relu_inplace(row);
    }
}

fn linear_layers(c: &mut Criterion) {
    // (name, n = out, k = in) as the zoo models have them.
    let layers = [
        ("lenet300.fc1", 300, 784),
        ("lenet300.fc2", 100, 300),
        ("lenet300.fc3", 10, 100),
        ("lenet5.fc1", 500, 800),
        ("cnn-teacher.fc1", 256, 3136),
    ];
    let mut g = c.benchmark_group("linear_f32 (elements=FLOP)");
    g.warm_up_time(std::time::Duration::from_secs(1));
    g.measurement_time(std::time::Duration::from_secs(2));
    for (name, n, k) in layers {
        let mut rng = Rng::seed_from_u64(2);
        let w = rand_vec(&mut rng, n * k);
        let b = rand_vec(&mut rng, n);
        let packed = PackedLinear::pack(&w, n, k).unwrap();
        for m in [1, 256] {
            let x = rand_vec(&mut rng, m * k);
            let mut y = vec![0.0f32; m * n];
            g.throughput(Throughput::Elements((2 * m * n * k) as u64));
            let threads: &[usize] = &[1, 2];
            for &t in threads {
                let id = format!("{name}/b{m}/t{t}");
                g.bench_function(BenchmarkId::new("packed", &id), |bench| {
                    let epi = LinearEpilogue {
                        bias: Some(&b),
                        relu: true,
                    };
                    bench.iter(|| {
                        linear_packed(black_box(&x), m, &packed, epi, &mut y, t).unwrap();
                        black_box(&y);
                    })
                });
                g.bench_function(BenchmarkId::new("faer", &id), |bench| {
                    bench.iter(|| {
                        faer_linear(black_box(&x), m, &w, (n, k), &b, &mut y, t);
                        black_box(&y);
                    })
                });
            }
        }
    }
    g.finish();
}

/// lenet5 fc1's three training products at batch 128 (measure only: training still runs faer),
/// each by faer beside the packed kernel *including* its per-step packing: forward
/// `y = x W^T` (pack `W`), `dx = g W` (pack `W` given transposed), `dW = g^T x` (transpose `g`
/// into `X`, pack `x` given transposed).
fn lenet5_fc1_training(c: &mut Criterion) {
    let (b, out, inp) = (128, 500, 800);
    let mut rng = Rng::seed_from_u64(3);
    let w = rand_vec(&mut rng, out * inp);
    let x = rand_vec(&mut rng, b * inp);
    let mut g = c.benchmark_group("lenet5.fc1 training products, batch 128 (elements=FLOP)");
    g.warm_up_time(std::time::Duration::from_secs(1));
    g.measurement_time(std::time::Duration::from_secs(2));
    g.throughput(Throughput::Elements((2 * b * out * inp) as u64));
    let epi = LinearEpilogue::default();
    let p1 = GemmParams::default().threads(1);
    let grad = rand_vec(&mut Rng::seed_from_u64(4), b * out);
    let mut y = vec![0.0f32; b * out];
    g.bench_function("forward/faer", |bench| {
        let p = GemmParams::with_trans(false, true).threads(1);
        bench.iter(|| gemm(b, out, inp, black_box(&x), &w, &mut y, &p).unwrap())
    });
    g.bench_function("forward/packed", |bench| {
        bench.iter(|| {
            let pw = PackedLinear::pack(black_box(&w), out, inp).unwrap();
            linear_packed(&x, b, &pw, epi, &mut y, 1).unwrap()
        })
    });
    let mut dx = vec![0.0f32; b * inp];
    g.bench_function("dx = g W/faer", |bench| {
        bench.iter(|| gemm(b, inp, out, black_box(&grad), &w, &mut dx, &p1).unwrap())
    });
    g.bench_function("dx = g W/packed", |bench| {
        bench.iter(|| {
            let pw = PackedLinear::pack_transposed(black_box(&w), out, inp).unwrap();
            linear_packed(&grad, b, &pw, epi, &mut dx, 1).unwrap()
        })
    });
    let mut dw = vec![0.0f32; out * inp];
    g.bench_function("dW = g^T x/faer", |bench| {
        let p = GemmParams::with_trans(true, false).threads(1);
        bench.iter(|| gemm(out, inp, b, black_box(&grad), &x, &mut dw, &p).unwrap())
    });
    g.bench_function("dW = g^T x/packed", |bench| {
        let mut gt = vec![0.0f32; out * b];
        bench.iter(|| {
            for (i, row) in black_box(&grad).chunks_exact(out).enumerate() {
                for (o, &v) in row.iter().enumerate() {
                    gt[o * b + i] = v;
                }
            }
            let px = PackedLinear::pack_transposed(&x, b, inp).unwrap();
            linear_packed(&gt, out, &px, epi, &mut dw, 1).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, square, lenet5, linear_layers, lenet5_fc1_training);
criterion_main!(benches);
