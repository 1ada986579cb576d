//! Pruned + shared (Deep Compression's pruning then sharing, executed from the sparse codes:
//! [`SparseShared`]) against pruned alone (prune's f32 CSR kernels, `spmv` at batch 1,
//! `spmm` at batch 64), at 90% sparsity, 5-bit codes (k = 32), on lenet300.fc1 (300x784)
//! and a 4096x4096 layer, on the global rayon pool (both cores).
//!
//! Throughput is `Elements(batch * nnz)`: "elem/s" is stored multiply-adds per second.
//! Run briefly with
//! `cargo bench -p share --bench sparse_shared -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prune::{Csr, SparseParams, spmm, spmv};
use share::SparseShared;
use tensor_core::rng::Rng;

const SHAPES: [(&str, usize, usize); 2] = [("lenet300.fc1", 300, 784), ("4096x4096", 4096, 4096)];

/// 10% of the weights kept, each one of 31 nonzero centroids.
fn layer(rows: usize, cols: usize) -> (Csr, SparseShared) {
    let mut rng = Rng::seed_from_u64(1);
    let mut centroids: Vec<f32> = (0..32).map(|_| 0.05 * rng.normal()).collect();
    centroids[0] = 0.0;
    let codes: Vec<u8> = (0..rows * cols)
        .map(|_| {
            if rng.uniform() < 0.1 {
                1 + rng.below(31) as u8
            } else {
                0
            }
        })
        .collect();
    let shared = SparseShared::from_dense_codes(rows, cols, &centroids, &codes).unwrap();
    let csr = Csr::from_dense(rows, cols, &shared.to_dense()).unwrap();
    (csr, shared)
}

fn sparse_shared(c: &mut Criterion) {
    for (name, rows, cols) in SHAPES {
        let (csr, shared) = layer(rows, cols);
        let mut rng = Rng::seed_from_u64(2);
        for batch in [1usize, 64] {
            let x: Vec<f32> = (0..batch * cols).map(|_| rng.normal()).collect();
            let mut y = vec![0.0f32; batch * rows];
            let mut g = c.benchmark_group(format!("sparse_shared batch={batch} (elements=MAC)"));
            g.throughput(Throughput::Elements((batch * csr.nnz()) as u64));
            let p = SparseParams::default();
            g.bench_function(format!("{name}/sparse_f32_csr"), |b| {
                b.iter(|| {
                    if batch == 1 {
                        spmv(&csr, black_box(&x), None, &mut y, &p).unwrap();
                    } else {
                        spmm(&csr, black_box(&x), batch, None, &mut y, &p).unwrap();
                    }
                    black_box(&y);
                })
            });
            g.bench_function(format!("{name}/sparse_shared_codes"), |b| {
                b.iter(|| {
                    shared.forward(batch, black_box(&x), &mut y).unwrap();
                    black_box(&y);
                })
            });
            g.finish();
        }
    }
}

criterion_group!(benches, sparse_shared);
criterion_main!(benches);
