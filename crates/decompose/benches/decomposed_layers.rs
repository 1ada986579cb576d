//! Decomposed layers against the originals, forward in inference mode as `Model::forward`
//! runs them (nn's Linear and Conv2d on the dense kernels), at batch 1 and a larger batch:
//! lenet300.fc1 (784 -> 300) by SVD at rank 91 (what 90% energy keeps of the trained
//! model); lenet5.conv2 (20 -> 50, 5x5 on 12x12) and cnn-teacher.conv2 (32 -> 32, 3x3 pad 1
//! on 28x28) as separable (Jaderberg scheme 2), separable-basis (scheme 1: three layers, two
//! of them depthwise) and channel-decomposed replacements at the largest rank within 40% of
//! the layer's MACs. Each benchmark's name carries its MAC ratio, so the
//! time ratio reads beside it.
//!
//! Throughput is `Elements(batch * original MACs)`: criterion's "elem/s" is the original
//! layer's multiply-accumulates per second (effective, for the pairs). Wall-clock time on
//! the global rayon pool. Run briefly with
//! `cargo bench -p decompose --bench decomposed_layers -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use decompose::{Factorization, RankRule, Scheme};
use nn::layers::{Conv2d, Conv2dParams, Linear, Padding};
use nn::{Layer, Mode};
use tensor_core::rng::Rng;
use tensor_core::{Shape, Tensor};

fn rand_tensor(rng: &mut Rng, dims: &[usize]) -> Tensor {
    let n = dims.iter().product();
    Tensor::new(dims, (0..n).map(|_| rng.normal()).collect()).unwrap()
}

/// Times `layers` applied in order on `x`.
fn bench_chain(
    c: &mut Criterion,
    group: &str,
    name: &str,
    macs: u64,
    layers: &mut [Box<dyn Layer>],
    x: &Tensor,
) {
    let mut g = c.benchmark_group(group);
    g.sample_size(20);
    g.throughput(Throughput::Elements(macs * x.dims()[0] as u64));
    g.bench_function(BenchmarkId::new(name, x.dims()[0]), |b| {
        b.iter(|| {
            let mut y = x.clone();
            for l in layers.iter_mut() {
                y = l.forward(&y, Mode::Eval).unwrap();
            }
            black_box(y)
        })
    });
    g.finish();
}

fn pair_layers(f: &Factorization, r: usize) -> Vec<Box<dyn Layer>> {
    f.pair(r).unwrap().into_layers()
}

fn linear(c: &mut Criterion) {
    let mut rng = Rng::seed_from_u64(1);
    let lin = Linear::new(784, 300, &mut rng).unwrap();
    let f = Factorization::linear(&lin).unwrap();
    let r = 91;
    let ratio = f.macs_before() as f64 / f.macs_at(r) as f64;
    for batch in [1, 256] {
        let x = rand_tensor(&mut rng, &[batch, 784]);
        let group = "lenet300.fc1";
        bench_chain(
            c,
            group,
            "dense",
            f.macs_before(),
            &mut [Box::new(lin.clone())],
            &x,
        );
        let name = format!("svd rank {r} ({ratio:.2}x fewer MACs)");
        bench_chain(
            c,
            group,
            &name,
            f.macs_before(),
            &mut pair_layers(&f, r),
            &x,
        );
    }
}

fn convs(c: &mut Criterion) {
    let mut rng = Rng::seed_from_u64(2);
    let cases = [
        ("lenet5.conv2", Conv2dParams::new(20, 50, (5, 5)), 12, 64),
        (
            "cnn-teacher.conv2",
            Conv2dParams::new(32, 32, (3, 3)).with_padding(Padding::symmetric(1)),
            28,
            32,
        ),
    ];
    for (group, p, hw, big) in cases {
        let conv = Conv2d::new(p, &mut rng).unwrap();
        let one = Shape::new(&[1, p.in_channels, hw, hw]).unwrap();
        for batch in [1, big] {
            let x = rand_tensor(&mut rng, &[batch, p.in_channels, hw, hw]);
            let macs = p.macs(&one).unwrap();
            bench_chain(c, group, "dense", macs, &mut [Box::new(conv.clone())], &x);
            for scheme in [Scheme::Separable, Scheme::SeparableBasis, Scheme::Channel] {
                let f = Factorization::conv(&conv, scheme, &one).unwrap();
                let s = f.spectrum();
                let r = RankRule::Macs(0.4).rank(s, f.macs_before(), &|r| f.macs_at(r));
                let ratio = f.macs_before() as f64 / f.macs_at(r) as f64;
                let name = format!("{} rank {r} ({ratio:.2}x fewer MACs)", scheme.name());
                bench_chain(c, group, &name, macs, &mut pair_layers(&f, r), &x);
            }
        }
    }
}

criterion_group!(benches, linear, convs);
criterion_main!(benches);
