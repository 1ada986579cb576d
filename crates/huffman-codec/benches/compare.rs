//! huffman-codec beside zstd (levels 3 and 19) on the same streams: size (printed once per
//! stream) and speed (criterion, bytes of uncompressed symbols per second).
//!
//! The streams are the real ones of the pruned, shared lenet300 and lenet5
//! (`fixtures/streams/`, see `tests/streams/mod.rs`), plus `lenet5.fc.indices.x1MiB`, a
//! seeded resample of the real lenet5 fc indices to 1 MiB for steady-state speed. For the
//! size table alone, filter out every timed bench:
//! `cargo bench -p huffman-codec --bench compare -- sizes-only`.

mod support;

use support::{BenchClock, streams};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use huffman_codec::{DecodeLimits, EncodeParams, compress_u8, decompress_u8};
use std::hint::black_box;
use std::time::Duration;

fn inputs() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = streams::all_streams()
        .into_iter()
        .map(|s| (s.name, s.symbols))
        .collect();
    v.push((
        "lenet5.fc.indices.x1MiB".into(),
        streams::large_stream(1 << 20, 1),
    ));
    v
}

fn compare(c: &mut Criterion<BenchClock>) {
    eprintln!("| stream | symbols | entropy bound (bytes) | huffman-codec | zstd -3 | zstd -19 |");
    eprintln!("|---|---|---|---|---|---|");
    let mut g = c.benchmark_group("compare");
    for (name, data) in inputs() {
        let huff = compress_u8(&data, &EncodeParams::default()).unwrap();
        let z3 = zstd::bulk::compress(&data, 3).unwrap();
        let z19 = zstd::bulk::compress(&data, 19).unwrap();
        let bound = streams::entropy_bits(&data) * data.len() as f64 / 8.0;
        eprintln!(
            "| {name} | {} | {:.0} | {} | {} | {} |",
            data.len(),
            bound,
            huff.len(),
            z3.len(),
            z19.len()
        );
        if data.len() < 20_000 {
            continue; // sizes only for the small streams
        }
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function(format!("huffman-codec.encode/{name}"), |b| {
            b.iter(|| compress_u8(black_box(&data), &EncodeParams::default()).unwrap())
        });
        g.bench_function(format!("huffman-codec.decode/{name}"), |b| {
            b.iter(|| decompress_u8(black_box(&huff), &DecodeLimits::default()).unwrap())
        });
        for (level, z) in [(3, &z3), (19, &z19)] {
            g.bench_function(format!("zstd-{level}.encode/{name}"), |b| {
                b.iter(|| zstd::bulk::compress(black_box(&data), level).unwrap())
            });
            g.bench_function(format!("zstd-{level}.decode/{name}"), |b| {
                b.iter(|| zstd::bulk::decompress(black_box(z), data.len()).unwrap())
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .with_measurement(BenchClock::from_env())
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(10);
    targets = compare
}
criterion_main!(benches);
