//! The dispatched inner loops on every path this CPU runs, as whole fully connected layers:
//! `xor_popcount` of one packed input against every packed weight row (binary layer) and
//! `dot_u8i8` of one u8 input against every i8 weight row (int8 layer), batch 1.
//!
//! Throughput is multiply-accumulates (`Elements(out * in)`): binary MACs for popcount
//! (one bit each), int8 MACs for the dot product. Paths this CPU lacks are printed as skipped.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tensor_core::bits::xor_popcount_with;
use tensor_core::dispatch::{Int8Path, PopcountPath, report};
use tensor_core::int8::dot_u8i8_with;
use tensor_core::rng::Rng;

/// (name, outputs, inputs) of real fully connected layers.
const LAYERS: [(&str, usize, usize); 3] = [
    ("lenet300.fc1", 300, 784),
    ("lenet5.fc1", 500, 800),
    ("cnn-teacher.fc1", 256, 3136),
];

fn popcount(c: &mut Criterion) {
    eprintln!("{}", report());
    for path in PopcountPath::skipped() {
        eprintln!(
            "xor_popcount: path {} skipped (this CPU lacks it)",
            path.name()
        );
    }
    let mut g = c.benchmark_group("xor_popcount layer (elements=binary MACs)");
    for (name, out, inp) in LAYERS {
        let words = inp.div_ceil(64);
        let mut rng = Rng::seed_from_u64(3);
        let w: Vec<u64> = (0..out * words).map(|_| rng.next_u64()).collect();
        let x: Vec<u64> = (0..words).map(|_| rng.next_u64()).collect();
        g.throughput(Throughput::Elements((out * inp) as u64));
        for path in PopcountPath::supported() {
            g.bench_function(BenchmarkId::new(name, path.name()), |b| {
                b.iter(|| {
                    let mut s = 0u32;
                    for row in w.chunks_exact(words) {
                        s = s.wrapping_add(xor_popcount_with(path, row, black_box(&x)).unwrap());
                    }
                    black_box(s)
                })
            });
        }
    }
    g.finish();
}

fn int8(c: &mut Criterion) {
    for path in Int8Path::skipped() {
        eprintln!("dot_u8i8: path {} skipped (this CPU lacks it)", path.name());
    }
    let mut g = c.benchmark_group("dot_u8i8 layer (elements=int8 MACs)");
    for (name, out, inp) in LAYERS {
        let mut rng = Rng::seed_from_u64(4);
        let w: Vec<i8> = (0..out * inp).map(|_| rng.next_u64() as i8).collect();
        let x: Vec<u8> = (0..inp).map(|_| rng.next_u64() as u8).collect();
        g.throughput(Throughput::Elements((out * inp) as u64));
        for path in Int8Path::supported() {
            g.bench_function(BenchmarkId::new(name, path.name()), |b| {
                b.iter(|| {
                    let mut s = 0i32;
                    for row in w.chunks_exact(inp) {
                        s = s.wrapping_add(dot_u8i8_with(path, black_box(&x), row).unwrap());
                    }
                    black_box(s)
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, popcount, int8);
criterion_main!(benches);
