//! conv2d forward and backward on LeNet-5's two convolutions (batch 64 and 256), plus the
//! per-image-parallel forward that blocked im2col was measured against (throughput in
//! images, `Elements(batch)`); and the forward of every cnn-teacher, wide-teacher and lenet5
//! convolution on each f32 path (direct AVX2 kernel, portable im2col + GEMM) at batch 1 and
//! 256, with throughput in FLOP (`Elements(2 * MACs)`: criterion's "elem/s" reads as FLOP/s),
//! to set against the peaks this bench prints first, measured by loops of 12 independent
//! 256-bit and 512-bit FMAs (`fma_peak`: 32 and 64 f32 FLOP per cycle per core at the clock
//! the cores run each width at; session 11 printed 64 FLOP/cycle at the nominal
//! /proc/cpuinfo clock instead, 166 GFLOP/s where the 512-bit loop measures ~213).
//!
//! `cargo bench -p tensor-core --bench conv -- layers` runs the per-layer group only.
//!
//! `cargo bench -p tensor-core --bench conv -- fused` (session 11) times the fused forward as
//! inference runs it: each cnn-teacher and lenet5 layer with its own epilogue (bias + ReLU,
//! and the 2x2 max pool where the model pools), at batch 1 and 64, on every f32 path this
//! CPU has (portable, avx2-fma, avx512f side by side), throughput in FLOP; it prints the
//! measured peaks of both vector widths first.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tensor_core::Tensor;
use tensor_core::conv::{
    Conv2dGradOut, Conv2dParams, ConvEpilogue, PackedConvWeights, Padding, conv2d_backward,
    conv2d_forward, conv2d_forward_fused_with, conv2d_forward_per_image,
};
use tensor_core::dispatch::F32Path;
use tensor_core::rng::Rng;

mod fma_peak;
use fma_peak::measured_peak;

fn rand_tensor(rng: &mut Rng, dims: &[usize]) -> Tensor {
    let n = dims.iter().product();
    Tensor::new(dims, (0..n).map(|_| rng.normal()).collect()).unwrap()
}

fn bench_layer(c: &mut Criterion, name: &str, p: Conv2dParams, hw: usize) {
    let mut g = c.benchmark_group(format!("conv2d {name} (elements=images)"));
    for batch in [64, 256] {
        let mut rng = Rng::seed_from_u64(2);
        let x = rand_tensor(&mut rng, &[batch, p.in_channels, hw, hw]);
        let w = rand_tensor(&mut rng, &p.weight_dims());
        let b: Vec<f32> = (0..p.out_channels).map(|_| rng.normal()).collect();
        let y = conv2d_forward(&x, &w, Some(&b), &p).unwrap();
        let gy = rand_tensor(&mut rng, y.dims());
        let mut gx = Tensor::zeros(x.shape().clone());
        let mut gw = Tensor::zeros(w.shape().clone());
        let mut gb = vec![0.0f32; p.out_channels];
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(BenchmarkId::new("forward", batch), |bench| {
            bench.iter(|| black_box(conv2d_forward(black_box(&x), &w, Some(&b), &p).unwrap()))
        });
        g.bench_function(BenchmarkId::new("forward_per_image", batch), |bench| {
            bench.iter(|| {
                black_box(conv2d_forward_per_image(black_box(&x), &w, Some(&b), &p).unwrap())
            })
        });
        g.bench_function(BenchmarkId::new("backward", batch), |bench| {
            bench.iter(|| {
                conv2d_backward(
                    black_box(&x),
                    &w,
                    &gy,
                    &p,
                    Conv2dGradOut {
                        input: Some(gx.data_mut()),
                        weight: gw.data_mut(),
                        bias: Some(&mut gb),
                    },
                )
                .unwrap();
                black_box(&gw);
            })
        });
    }
    g.finish();
}

fn lenet5(c: &mut Criterion) {
    bench_layer(c, "lenet5.conv1", Conv2dParams::new(1, 20, (5, 5)), 28);
    bench_layer(c, "lenet5.conv2", Conv2dParams::new(20, 50, (5, 5)), 12);
}

/// Every convolution of the zoo's CNNs: (name, params, input side).
fn zoo_layers() -> Vec<(&'static str, Conv2dParams, usize)> {
    let same = |c, o| Conv2dParams::new(c, o, (3, 3)).with_padding(Padding::symmetric(1));
    vec![
        ("lenet5.conv1", Conv2dParams::new(1, 20, (5, 5)), 28),
        ("lenet5.conv2", Conv2dParams::new(20, 50, (5, 5)), 12),
        ("cnn-teacher.conv1", same(1, 32), 28),
        ("cnn-teacher.conv2", same(32, 32), 28),
        ("cnn-teacher.conv3", same(32, 64), 14),
        ("cnn-teacher.conv4", same(64, 64), 14),
        ("wide-teacher.conv2", same(64, 64), 28),
        ("wide-teacher.conv4", same(128, 128), 14),
    ]
}

/// Prints the measured per-core peaks (256-bit and 512-bit FMA loops) and their sum over
/// the rayon threads.
fn print_peaks() {
    let threads = rayon::current_num_threads() as f64;
    for bits in [256, 512] {
        if let Some(peak) = measured_peak(bits) {
            println!(
                "# {bits}-bit peak on {threads} threads: {:.1} GFLOP/s",
                peak * threads
            );
        }
    }
}

/// Random input (`batch` images of side `hw`), weight, bias and packed weight of `p`.
fn layer_inputs(
    p: &Conv2dParams,
    hw: usize,
    batch: usize,
    seed: u64,
) -> (Tensor, Tensor, Vec<f32>, PackedConvWeights) {
    let mut rng = Rng::seed_from_u64(seed);
    let x = rand_tensor(&mut rng, &[batch, p.in_channels, hw, hw]);
    let w = rand_tensor(&mut rng, &p.weight_dims());
    let b = (0..p.out_channels).map(|_| rng.normal()).collect();
    let packed = PackedConvWeights::pack(w.data(), p).unwrap();
    (x, w, b, packed)
}

fn layers(c: &mut Criterion) {
    print_peaks();
    for (name, p, hw) in zoo_layers() {
        let mut g = c.benchmark_group(format!("layers {name} (elements=FLOP)"));
        for batch in [1usize, 256] {
            let (x, w, b, packed) = layer_inputs(&p, hw, batch, 3);
            let flop = 2 * p.macs(x.shape()).unwrap();
            g.throughput(Throughput::Elements(flop));
            if batch > 1 {
                g.sample_size(10);
            }
            for path in F32Path::supported() {
                let id = BenchmarkId::new(path.name(), batch);
                g.bench_function(id, |bench| {
                    bench.iter(|| {
                        let epi = ConvEpilogue::default();
                        black_box(
                            conv2d_forward_fused_with(
                                path,
                                &x,
                                &w,
                                Some(&packed),
                                Some(&b),
                                &p,
                                epi,
                            )
                            .unwrap(),
                        )
                    })
                });
            }
        }
        g.finish();
    }
}

/// The cnn-teacher and lenet5 layers with the epilogue each has in its model: (name, params,
/// input side, pooled).
fn fused_layers() -> Vec<(&'static str, Conv2dParams, usize, bool)> {
    let same = |c, o| Conv2dParams::new(c, o, (3, 3)).with_padding(Padding::symmetric(1));
    vec![
        ("cnn-teacher.conv1", same(1, 32), 28, false),
        ("cnn-teacher.conv2+pool", same(32, 32), 28, true),
        ("cnn-teacher.conv3", same(32, 64), 14, false),
        ("cnn-teacher.conv4+pool", same(64, 64), 14, true),
        (
            "lenet5.conv1+pool",
            Conv2dParams::new(1, 20, (5, 5)),
            28,
            true,
        ),
        (
            "lenet5.conv2+pool",
            Conv2dParams::new(20, 50, (5, 5)),
            12,
            true,
        ),
    ]
}

fn fused(c: &mut Criterion) {
    print_peaks();
    for (name, p, hw, pool) in fused_layers() {
        let mut g = c.benchmark_group(format!("fused {name} (elements=FLOP)"));
        g.warm_up_time(std::time::Duration::from_secs(1));
        g.measurement_time(std::time::Duration::from_secs(2));
        for batch in [1usize, 64] {
            let (x, w, b, packed) = layer_inputs(&p, hw, batch, 4);
            let epi = ConvEpilogue {
                relu: true,
                max_pool_2x2: pool,
            };
            g.throughput(Throughput::Elements(2 * p.macs(x.shape()).unwrap()));
            for path in F32Path::supported() {
                g.bench_function(BenchmarkId::new(path.name(), batch), |bench| {
                    bench.iter(|| {
                        let y = conv2d_forward_fused_with(
                            path,
                            black_box(&x),
                            &w,
                            Some(&packed),
                            Some(&b),
                            &p,
                            epi,
                        );
                        black_box(y.unwrap())
                    })
                });
            }
        }
        g.finish();
    }
}

criterion_group!(benches, lenet5, layers, fused);
criterion_main!(benches);
