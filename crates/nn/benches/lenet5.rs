//! LeNet-5 (Caffe variant) end to end: batch-256 inference throughput (images/s), batch-1
//! latency, and one training step at batch 64 (forward, softmax cross-entropy, backward,
//! plain SGD update written inline), from which an epoch time (60000/64 = 938 steps) is
//! extrapolated in docs/BENCHMARKS.md.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nn::loss::softmax_cross_entropy;
use nn::{Mode, Model};
use tensor_core::Tensor;
use tensor_core::rng::Rng;

fn images(rng: &mut Rng, n: usize) -> Tensor {
    Tensor::new(
        &[n, 1, 28, 28],
        (0..n * 784).map(|_| rng.uniform()).collect(),
    )
    .unwrap()
}

fn model() -> Model {
    nn::zoo::build("lenet5", &mut Rng::seed_from_u64(0)).unwrap()
}

fn inference(c: &mut Criterion) {
    let mut g = c.benchmark_group("lenet5 inference (elements=images)");
    for batch in [1usize, 256] {
        let mut m = model();
        let x = images(&mut Rng::seed_from_u64(1), batch);
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(BenchmarkId::new("eval", batch), |b| {
            b.iter(|| black_box(m.forward(black_box(&x), Mode::Eval).unwrap()))
        });
    }
    g.finish();
}

fn train_step(c: &mut Criterion) {
    let batch = 64;
    let mut m = model();
    let mut rng = Rng::seed_from_u64(2);
    let x = images(&mut rng, batch);
    let labels: Vec<usize> = (0..batch).map(|_| rng.below(10)).collect();
    let lr = 0.01;
    let mut g = c.benchmark_group("lenet5 train step (elements=images)");
    g.throughput(Throughput::Elements(batch as u64));
    g.bench_function(BenchmarkId::new("sgd_step", batch), |b| {
        b.iter(|| {
            m.zero_grad();
            let logits = m.forward(black_box(&x), Mode::Train).unwrap();
            let (loss, grad) = softmax_cross_entropy(&logits, &labels).unwrap();
            m.backward(&grad).unwrap();
            for layer in m.layers.iter_mut() {
                for p in layer.params_mut() {
                    p.value.add_scaled(-lr, p.grad).unwrap();
                }
            }
            black_box(loss)
        })
    });
    g.finish();
}

criterion_group!(benches, inference, train_step);
criterion_main!(benches);
