//! Shared-weight linear layers against dense f32 (faer, called as nn's Linear calls it), at
//! batch 1 and 64, on lenet300.fc1 (300x784) and a 4096x4096 layer, 5-bit codes (k = 32);
//! the sparse + shared form at 10% density; and k-means on those layers' weights.
//!
//! Throughput is `Elements(batch * rows * cols)`: criterion's "elem/s" is multiply-adds
//! per second. Wall-clock time; `threads=1` runs inside a one-thread rayon pool (and faer
//! with `threads = 1`), `threads=2` on the global pool. Run briefly with
//! `cargo bench -p share --bench shared_linear -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use share::{Init, KMeansParams, PackedCodes, SharedMatrix, SparseShared, gemv_packed, kmeans};
use tensor_core::dispatch::F32Path;
use tensor_core::gemm::{GemmParams, gemm};
use tensor_core::rng::Rng;

const SHAPES: [(&str, usize, usize); 2] = [("lenet300.fc1", 300, 784), ("4096x4096", 4096, 4096)];
const BITS: u32 = 5;

struct Layer {
    dense: Vec<f32>,
    shared: SharedMatrix,
    packed: PackedCodes,
    sparse: SparseShared,
    sparse_dense: Vec<f32>,
}

/// Codes uniform over 32 centroids (0 is the reserved zero); the sparse twin keeps 10%.
fn layer(rows: usize, cols: usize) -> Layer {
    let mut rng = Rng::seed_from_u64(1);
    let k = 1usize << BITS;
    let mut centroids: Vec<f32> = (0..k).map(|_| 0.05 * rng.normal()).collect();
    centroids[0] = 0.0;
    let codes: Vec<u8> = (0..rows * cols).map(|_| rng.below(k) as u8).collect();
    let shared = SharedMatrix::new(rows, cols, &centroids, codes.clone()).unwrap();
    let sparse_codes: Vec<u8> = codes
        .iter()
        .map(|&c| if rng.uniform() < 0.1 { c.max(1) } else { 0 })
        .collect();
    let sparse = SparseShared::from_dense_codes(rows, cols, &centroids, &sparse_codes).unwrap();
    Layer {
        dense: shared.to_dense(),
        packed: PackedCodes::pack(&codes, BITS).unwrap(),
        sparse_dense: sparse.to_dense(),
        shared,
        sparse,
    }
}

/// nn's Linear: `W x` at batch 1, `X W^T` otherwise.
fn dense_forward(
    w: &[f32],
    rows: usize,
    cols: usize,
    batch: usize,
    x: &[f32],
    y: &mut [f32],
    threads: usize,
) {
    let p = GemmParams::default().threads(threads);
    if batch == 1 {
        gemm(rows, 1, cols, w, x, y, &p).unwrap();
    } else {
        gemm(
            batch,
            rows,
            cols,
            x,
            w,
            y,
            &GemmParams::with_trans(false, true).threads(threads),
        )
        .unwrap();
    }
}

fn pools() -> [(usize, rayon::ThreadPool); 2] {
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    [(1, pool(1)), (2, pool(2))]
}

fn shared_linear(c: &mut Criterion) {
    eprintln!(
        "kernel tier: {} (rayon threads {})",
        F32Path::selected().name(),
        rayon::current_num_threads()
    );
    let tier = F32Path::selected();
    for (name, rows, cols) in SHAPES {
        let l = layer(rows, cols);
        for batch in [1usize, 64] {
            let mut rng = Rng::seed_from_u64(2);
            let x: Vec<f32> = (0..batch * cols).map(|_| rng.uniform()).collect();
            let mut y = vec![0.0f32; batch * rows];
            let mut g = c.benchmark_group(format!("shared_linear batch={batch} (elements=MAC)"));
            g.throughput(Throughput::Elements((batch * rows * cols) as u64));
            for (threads, pool) in pools() {
                let id = |what: &str| format!("{name}/{what}/threads={threads}");
                g.bench_function(id("dense_f32"), |b| {
                    pool.install(|| {
                        b.iter(|| {
                            dense_forward(
                                &l.dense,
                                rows,
                                cols,
                                batch,
                                black_box(&x),
                                &mut y,
                                threads,
                            )
                        })
                    })
                });
                g.bench_function(id(&format!("shared_u8_{}", tier.name())), |b| {
                    pool.install(|| {
                        b.iter(|| {
                            l.shared
                                .forward_with(tier, batch, black_box(&x), &mut y)
                                .unwrap()
                        })
                    })
                });
                g.bench_function(id("sparse10_dense_f32"), |b| {
                    pool.install(|| {
                        b.iter(|| {
                            dense_forward(
                                &l.sparse_dense,
                                rows,
                                cols,
                                batch,
                                black_box(&x),
                                &mut y,
                                threads,
                            )
                        })
                    })
                });
                g.bench_function(id(&format!("sparse10_shared_{}", tier.name())), |b| {
                    pool.install(|| {
                        b.iter(|| {
                            l.sparse
                                .forward_with(tier, batch, black_box(&x), &mut y)
                                .unwrap()
                        })
                    })
                });
                if batch == 1 {
                    g.bench_function(id(&format!("shared_packed{BITS}_{}", tier.name())), |b| {
                        pool.install(|| {
                            b.iter(|| {
                                gemv_packed(
                                    tier,
                                    rows,
                                    cols,
                                    l.shared.centroids(),
                                    &l.packed,
                                    black_box(&x),
                                    &mut y,
                                )
                                .unwrap()
                            })
                        })
                    });
                }
            }
            // One-thread portable variants, for the choices recorded in lookup/mod.rs and
            // sparse/kernels.rs.
            let one = &pools()[0].1;
            g.bench_function(format!("{name}/shared_u8_portable/threads=1"), |b| {
                one.install(|| {
                    b.iter(|| {
                        l.shared
                            .forward_with(F32Path::Portable, batch, black_box(&x), &mut y)
                            .unwrap()
                    })
                })
            });
            g.bench_function(format!("{name}/sparse10_shared_portable/threads=1"), |b| {
                one.install(|| {
                    b.iter(|| {
                        l.sparse
                            .forward_with(F32Path::Portable, batch, black_box(&x), &mut y)
                            .unwrap()
                    })
                })
            });
            if batch == 1 {
                g.bench_function(
                    format!("{name}/shared_sum_per_centroid_portable/threads=1"),
                    |b| {
                        b.iter(|| {
                            l.shared
                                .gemv_sum_per_centroid(black_box(&x), &mut y)
                                .unwrap()
                        })
                    },
                );
            }
            g.finish();
        }
    }
}

fn kmeans_layers(c: &mut Criterion) {
    let mut g = c.benchmark_group("kmeans k=32 (elements=weights)");
    g.sample_size(10);
    for (name, rows, cols) in SHAPES {
        let mut rng = Rng::seed_from_u64(3);
        let w: Vec<f32> = (0..rows * cols).map(|_| 0.05 * rng.normal()).collect();
        g.throughput(Throughput::Elements(w.len() as u64));
        for (init_name, init) in [
            ("linear", Init::Linear),
            ("kmeans++", Init::KMeansPlusPlus { seed: 1 }),
        ] {
            let p = KMeansParams {
                init,
                ..KMeansParams::default()
            };
            let r = kmeans(&w, 32, &p).unwrap();
            eprintln!(
                "kmeans {name} {init_name}: {} iterations, converged {}, objective {:.6e}",
                r.iterations, r.converged, r.objective
            );
            g.bench_function(format!("{name}/{init_name}"), |b| {
                b.iter(|| kmeans(black_box(&w), 32, &p).unwrap())
            });
        }
    }
    g.finish();
}

criterion_group!(benches, shared_linear, kmeans_layers);
criterion_main!(benches);
