//! im2col alone, on one thread, for LeNet-5's two convolutions: f32 (zero padding) and u8
//! (zero-point padding), blocks of 8 images.
//!
//! Throughput is column-matrix elements written (`Elements(patch * 8 * OH * OW)`).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tensor_core::Shape;
use tensor_core::conv::{Conv2dParams, ConvGeometry, im2col};

const IMAGES: usize = 8;

fn layer(c: &mut Criterion, name: &str, p: Conv2dParams, hw: usize) {
    let dims = [IMAGES, p.in_channels, hw, hw];
    let geo = ConvGeometry::new(&p, &Shape::new(&dims).unwrap()).unwrap();
    let len: usize = dims.iter().product();
    let xf: Vec<f32> = (0..len).map(|i| (i % 251) as f32).collect();
    let xu: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let col_len = geo.col_len(IMAGES).unwrap();
    let mut colf = vec![0.0f32; col_len];
    let mut colu = vec![0u8; col_len];
    let mut g = c.benchmark_group(format!("im2col {name} (elements=column entries)"));
    g.throughput(Throughput::Elements(col_len as u64));
    g.bench_function(BenchmarkId::new("f32", IMAGES), |b| {
        b.iter(|| im2col(&geo, black_box(&xf), 0..IMAGES, 0, 0.0, &mut colf).unwrap())
    });
    g.bench_function(BenchmarkId::new("u8", IMAGES), |b| {
        b.iter(|| im2col(&geo, black_box(&xu), 0..IMAGES, 0, 128, &mut colu).unwrap())
    });
    g.finish();
}

fn lenet5(c: &mut Criterion) {
    layer(c, "lenet5.conv1", Conv2dParams::new(1, 20, (5, 5)), 28);
    layer(c, "lenet5.conv2", Conv2dParams::new(20, 50, (5, 5)), 12);
}

criterion_group!(benches, lenet5);
criterion_main!(benches);
