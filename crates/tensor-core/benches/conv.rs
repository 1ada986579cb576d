//! conv2d forward and backward on LeNet-5's two convolutions (batch 64 and 256), plus the
//! per-image-parallel forward that blocked im2col was measured against.
//!
//! Throughput is images (`Elements(batch)`).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tensor_core::Tensor;
use tensor_core::conv::{
    Conv2dGradOut, Conv2dParams, conv2d_backward, conv2d_forward, conv2d_forward_per_image,
};
use tensor_core::rng::Rng;

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

criterion_group!(benches, lenet5);
criterion_main!(benches);
