//! Binary conv2d (sign packing + binary im2col + XNOR-popcount GEMM + padding correction)
//! against tensor-core's f32 conv2d on cnn-teacher's layers, batch 1 and 64, all threads.
//!
//! Throughput is `Elements(MACs)`: criterion's "elem/s" is multiply-accumulates per second.
//! The binary figure includes packing the input's signs (what an XNOR layer pays per forward);
//! the weights are packed before timing (they are stored packed).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tensor_core::conv::{Conv2dParams, Padding, conv2d_forward};
use tensor_core::dispatch::PopcountPath;
use tensor_core::rng::Rng;
use tensor_core::{Shape, Tensor};
use xnor_kernels::{BinaryConvWeights, BinaryGemmParams, binary_conv2d};

/// `(name, in, out, side)`: 3x3, padding 1.
const LAYERS: [(&str, usize, usize, usize); 2] = [
    ("cnn-teacher.conv2 32->32@28x28", 32, 32, 28),
    ("cnn-teacher.conv4 64->64@14x14", 64, 64, 14),
];

fn versus_f32(c: &mut Criterion) {
    let mut rng = Rng::seed_from_u64(1);
    for (name, cin, cout, side) in LAYERS {
        let p = Conv2dParams::new(cin, cout, (3, 3)).with_padding(Padding::symmetric(1));
        let w: Vec<f32> = (0..cout * cin * 9).map(|_| rng.normal()).collect();
        let wt = Tensor::new(&p.weight_dims(), w.clone()).unwrap();
        let bw = BinaryConvWeights::pack(&p, &w).unwrap();
        for batch in [1, 64] {
            let x = Tensor::new(
                &[batch, cin, side, side],
                (0..batch * cin * side * side)
                    .map(|_| rng.normal())
                    .collect(),
            )
            .unwrap();
            let macs = p
                .macs(&Shape::new(&[batch, cin, side, side]).unwrap())
                .unwrap();
            let mut g = c.benchmark_group(format!("conv {name} batch {batch} (elements=MAC)"));
            g.throughput(Throughput::Elements(macs));
            g.bench_function("f32 im2col+faer", |bench| {
                bench.iter(|| black_box(conv2d_forward(black_box(&x), &wt, None, &p).unwrap()))
            });
            for path in PopcountPath::supported() {
                let gp = BinaryGemmParams::on(path);
                g.bench_function(BenchmarkId::new("binary", path.name()), |bench| {
                    bench.iter(|| black_box(binary_conv2d(black_box(&x), &bw, &gp).unwrap()))
                });
            }
            g.finish();
        }
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
