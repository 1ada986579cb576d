//! The round trip of a two-thread fork/join, `tensor_core::duo::join` against `rayon::join`,
//! and what it buys on batch-1 zoo convolutions.
//!
//! `cargo bench -p tensor-core --bench duo [-- FILTER]`. Group `fork_join`: one join inside
//! a 2-thread rayon pool whose first half waits until the second has started on the other
//! thread (so the second half always crosses threads: post, wake or notice, run, signal
//! back), timed after a gap of 0 (calls back to back), 100 us spent computing on the caller
//! (a layer the caller ran alone) or 2 ms asleep (the other thread parked). Group
//! `direct_b1`: the fused direct convolution of single images of zoo layers on 1 and 2
//! threads, splitting as `conv2d_forward_fused` decides (`DIRECT_PAR_MIN_MACS`).

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tensor_core::Tensor;
use tensor_core::conv::{
    Conv2dParams, ConvEpilogue, DIRECT_PAR_MIN_MACS, PackedConvWeights, Padding,
    conv2d_forward_fused,
};
use tensor_core::duo;
use tensor_core::gemm::{GemmParams, gemm};
use tensor_core::rng::Rng;

/// Gives up waiting for the other thread after this long (then the half runs here).
const PATIENCE: Duration = Duration::from_millis(50);

/// One fork/join by `join` whose halves run on two threads: the first half spins until the
/// second has started.
fn crossing_join(join: impl Fn(&(dyn Fn() + Sync), &(dyn Fn() + Sync))) {
    let started = AtomicBool::new(false);
    let t = Instant::now();
    join(
        &|| {
            let mut spins = 0u32;
            while !started.load(Ordering::Acquire) && t.elapsed() < PATIENCE {
                // Yield now and then, as `duo` does: a pure spin would hold the core the
                // other thread needs when both share one (on a loaded machine).
                spins += 1;
                if spins.is_multiple_of(64) {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
        },
        &|| started.store(true, Ordering::Release),
    );
}

fn duo_join(a: &(dyn Fn() + Sync), b: &(dyn Fn() + Sync)) {
    duo::join(a, b);
}

fn rayon_join(a: &(dyn Fn() + Sync), b: &(dyn Fn() + Sync)) {
    rayon::join(a, b);
}

/// Spins on this thread for `d` (a layer computed alone).
fn compute_for(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

fn fork_join(c: &mut Criterion) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("a pool of 2 threads");
    let mut g = c.benchmark_group("fork_join");
    let gaps: [(&str, Duration, bool); 3] = [
        ("back_to_back", Duration::ZERO, false),
        ("after_100us_compute", Duration::from_micros(100), false),
        ("after_2ms_sleep", Duration::from_millis(2), true),
    ];
    type Join = fn(&(dyn Fn() + Sync), &(dyn Fn() + Sync));
    let joins: [(&str, Join); 2] = [("duo", duo_join), ("rayon", rayon_join)];
    for (gap_name, gap, sleep) in gaps {
        if !gap.is_zero() {
            g.sample_size(10)
                .warm_up_time(Duration::from_millis(100))
                .measurement_time(Duration::from_millis(100));
        }
        for (name, join) in joins {
            g.bench_function(format!("{name}/{gap_name}"), |b| {
                b.iter_custom(|iters| {
                    pool.install(|| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            if sleep {
                                std::thread::sleep(gap);
                            } else {
                                compute_for(gap);
                            }
                            let t = Instant::now();
                            crossing_join(join);
                            total += t.elapsed();
                        }
                        total
                    })
                })
            });
        }
    }
    g.finish();
}

fn direct_b1(c: &mut Criterion) {
    let same = |i, o| Conv2dParams::new(i, o, (3, 3)).with_padding(Padding::symmetric(1));
    // (name, params, input side, pool): cnn-teacher conv2-4, its twice-as-wide twin, lenet5.
    let layers = [
        ("cnn-teacher.conv2", same(32, 32), 28, true),
        ("cnn-teacher.conv3", same(32, 64), 14, false),
        ("cnn-teacher.conv4", same(64, 64), 14, true),
        ("wide-teacher.conv2", same(64, 64), 28, true),
        ("wide-teacher.conv4", same(128, 128), 14, true),
        ("lenet5.conv2", Conv2dParams::new(20, 50, (5, 5)), 12, true),
    ];
    println!("DIRECT_PAR_MIN_MACS = {DIRECT_PAR_MIN_MACS}");
    let mut g = c.benchmark_group("direct_b1");
    let mut rng = Rng::seed_from_u64(5);
    for (name, p, hw, pool) in layers {
        let mut normal = |dims: &[usize]| {
            let len = dims.iter().product();
            Tensor::new(dims, (0..len).map(|_| rng.normal()).collect()).expect("dims")
        };
        let x = normal(&[1, p.in_channels, hw, hw]);
        let w = normal(&p.weight_dims());
        let packed = PackedConvWeights::pack(w.data(), &p).expect("weights");
        let epi = ConvEpilogue {
            relu: true,
            max_pool_2x2: pool,
        };
        let [_, o, oh, ow] = p.output_dims(x.shape()).expect("a valid layer");
        let macs = o * oh * ow * p.patch_len();
        for threads in [1, 2] {
            let tp = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("a pool");
            g.bench_function(format!("{name}/{macs}macs/{threads}t"), |b| {
                tp.install(|| {
                    b.iter(|| black_box(conv2d_forward_fused(&x, &w, Some(&packed), None, &p, epi)))
                })
            });
        }
    }
    g.finish();
}

/// Batch-1 linear layers as `nn::Linear` runs them (`y^T = W x^T`, one GEMM of `out x 1 x in`):
/// whole on one thread, and split in two halves of `W`'s rows by [`duo::join`] on two.
fn linear_b1(c: &mut Criterion) {
    let layers = [
        ("lenet5.fc1", 500, 800),
        ("cnn-teacher.fc1", 256, 3136),
        ("wide-teacher.fc1", 256, 6272),
    ];
    let mut g = c.benchmark_group("linear_b1");
    let mut rng = Rng::seed_from_u64(6);
    let one = GemmParams::default().threads(1);
    for (name, out, inf) in layers {
        let w: Vec<f32> = (0..out * inf).map(|_| rng.normal()).collect();
        let x: Vec<f32> = (0..inf).map(|_| rng.normal()).collect();
        let mut y = vec![0.0f32; out];
        g.bench_function(format!("{name}/whole/1t"), |b| {
            b.iter(|| gemm(out, 1, inf, &w, &x, &mut y, &one).expect("shapes"))
        });
        let tp = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("a pool");
        let half = out / 2;
        let (w0, w1) = w.split_at(half * inf);
        g.bench_function(format!("{name}/duo_halves/2t"), |b| {
            tp.install(|| {
                b.iter(|| {
                    let (y0, y1) = y.split_at_mut(half);
                    let (r0, r1) = duo::join(
                        || gemm(half, 1, inf, w0, &x, y0, &one),
                        || gemm(out - half, 1, inf, w1, &x, y1, &one),
                    );
                    r0.and(r1).expect("shapes")
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, fork_join, direct_b1, linear_b1);
criterion_main!(benches);
