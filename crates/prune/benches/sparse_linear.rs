//! Sparse against dense (faer) fully connected and conv layers at 90% sparsity: spmv/spmm on
//! lenet300.fc1 (300 x 784) and a 4096 x 4096 layer at batch 1 and 64, sparse conv2d on
//! lenet5.conv2 (50 x 20 x 5 x 5 on a 12 x 12 input) at batch 1 and 64.
//!
//! The dense baselines call `tensor_core::gemm` the way nn's Linear does (`W [out x in] * x`
//! at batch 1, `X W^T` for a batch) and `tensor_core::conv::conv2d_forward`. The masks are
//! random (seeded), keeping each weight with probability 0.1. At batch 1, `sparse` is CSR
//! spmv, `sparse_sell` the SELL-C-σ layout built once from the same CSR matrix on the
//! dispatched tier (`sparse_sell_avx2`: its AVX2 kernel, where the dispatched tier is wider),
//! `sparse_sell_perm` column-block SELL, and `sparse_layer_*` the layout SparseLinear picks. Times only, no throughput: the
//! sparse and dense kernels do different amounts of arithmetic for the same layer.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use prune::sparse::{
    Batch1Layout, Csr, SellCs, SellPerm, SparseParams, sparse_conv2d, spmm, spmv, spmv_sell,
    spmv_sell_perm,
};
use tensor_core::Tensor;
use tensor_core::conv::{Conv2dParams, conv2d_forward};
use tensor_core::dispatch::F32Path;
use tensor_core::gemm::{GemmParams, gemm};
use tensor_core::rng::Rng;

const DENSITY: f32 = 0.1;

/// A `rows x cols` weight with each entry kept (normal) with probability [`DENSITY`].
fn masked(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let v = rng.normal();
            if rng.uniform() < DENSITY { v } else { 0.0 }
        })
        .collect()
}

fn normal(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.normal()).collect()
}

fn linear(c: &mut Criterion, name: &str, rows: usize, cols: usize) {
    let mut rng = Rng::seed_from_u64(7);
    let w = masked(&mut rng, rows * cols);
    let bias = normal(&mut rng, rows);
    let csr = Csr::from_dense(rows, cols, &w).expect("valid shape");
    let sell = SellCs::from_csr(&csr);
    let perm = SellPerm::from_csr(&csr);
    let layout = Batch1Layout::for_csr(&csr);
    for batch in [1usize, 64] {
        let x = normal(&mut rng, batch * cols);
        let mut y = vec![0.0f32; batch * rows];
        let mut g = c.benchmark_group(format!("sparse_linear/{name}/batch{batch}"));
        g.bench_function("dense_faer", |b| {
            b.iter(|| {
                if batch == 1 {
                    gemm(
                        rows,
                        1,
                        cols,
                        &w,
                        black_box(&x),
                        &mut y,
                        &GemmParams::default(),
                    )
                } else {
                    let p = GemmParams::with_trans(false, true);
                    gemm(batch, rows, cols, black_box(&x), &w, &mut y, &p)
                }
                .expect("lengths match");
                for row in y.chunks_exact_mut(rows) {
                    row.iter_mut().zip(&bias).for_each(|(v, &bv)| *v += bv);
                }
                black_box(&y);
            })
        });
        for threads in [1usize, 2] {
            let p = SparseParams::default().threads(threads);
            if batch == 1 {
                let id = BenchmarkId::new("sparse_sell", format!("threads={threads}"));
                g.bench_function(id, |b| {
                    b.iter(|| {
                        spmv_sell(&sell, black_box(&x), Some(&bias), &mut y, &p)
                            .expect("lengths match");
                        black_box(&y);
                    })
                });
                // The AVX2 SELL kernel beside the dispatched one (AVX-512 where the CPU has it).
                if threads == 1 && F32Path::Avx2Fma.is_supported() && p.tier != F32Path::Avx2Fma {
                    let pa = p.tier(F32Path::Avx2Fma);
                    g.bench_function("sparse_sell_avx2/threads=1", |b| {
                        b.iter(|| {
                            spmv_sell(&sell, black_box(&x), Some(&bias), &mut y, &pa)
                                .expect("lengths match");
                            black_box(&y);
                        })
                    });
                }
                let id = BenchmarkId::new("sparse_sell_perm", format!("threads={threads}"));
                g.bench_function(id, |b| {
                    b.iter(|| {
                        spmv_sell_perm(&perm, black_box(&x), Some(&bias), &mut y, &p)
                            .expect("lengths match");
                        black_box(&y);
                    })
                });
                let id = BenchmarkId::new(
                    format!("sparse_layer_{}", layout.name()),
                    format!("threads={threads}"),
                );
                g.bench_function(id, |b| {
                    b.iter(|| {
                        layout
                            .spmv(black_box(&x), Some(&bias), &mut y, &p)
                            .expect("lengths match");
                        black_box(&y);
                    })
                });
            }
            g.bench_function(
                BenchmarkId::new("sparse", format!("threads={threads}")),
                |b| {
                    b.iter(|| {
                        if batch == 1 {
                            spmv(&csr, black_box(&x), Some(&bias), &mut y, &p)
                        } else {
                            spmm(&csr, black_box(&x), batch, Some(&bias), &mut y, &p)
                        }
                        .expect("lengths match");
                        black_box(&y);
                    })
                },
            );
        }
        g.finish();
    }
}

fn fc(c: &mut Criterion) {
    linear(c, "lenet300.fc1", 300, 784);
    linear(c, "4096x4096", 4096, 4096);
}

fn conv(c: &mut Criterion) {
    let p = Conv2dParams::new(20, 50, (5, 5));
    let mut rng = Rng::seed_from_u64(9);
    let w = masked(&mut rng, 50 * 500);
    let bias = normal(&mut rng, 50);
    let csr = Csr::from_dense(50, 500, &w).expect("valid shape");
    let wt = Tensor::new(&[50, 20, 5, 5], w).expect("valid shape");
    for batch in [1usize, 64] {
        let x = Tensor::new(&[batch, 20, 12, 12], normal(&mut rng, batch * 20 * 144))
            .expect("valid shape");
        let mut g = c.benchmark_group(format!("sparse_conv/lenet5.conv2/batch{batch}"));
        g.bench_function("dense_im2col_faer", |b| {
            b.iter(|| black_box(conv2d_forward(black_box(&x), &wt, Some(&bias), &p)))
        });
        for threads in [1usize, 2] {
            let sp = SparseParams::default().threads(threads);
            g.bench_function(
                BenchmarkId::new("sparse", format!("threads={threads}")),
                |b| b.iter(|| black_box(sparse_conv2d(black_box(&x), &csr, Some(&bias), &p, &sp))),
            );
        }
        g.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = fc, conv
}
criterion_main!(benches);
