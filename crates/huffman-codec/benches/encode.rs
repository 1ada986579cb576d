//! Encode throughput of 8-bit symbols, in bytes of input per second.

mod support;

use support::BenchClock;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use huffman_codec::{
    CanonicalCode, DEFAULT_MAX_CODE_LEN, EncodeParams, Encoder, compress_u8, histogram_u8,
};
use std::hint::black_box;

fn encode(c: &mut Criterion<BenchClock>) {
    let mut g = c.benchmark_group("encode");
    for (name, data) in support::large_inputs() {
        g.throughput(Throughput::Bytes(data.len() as u64));
        // Block level: histograms, code construction, table, four streams.
        g.bench_function(format!("block/{name}"), |b| {
            b.iter(|| compress_u8(black_box(&data), &EncodeParams::default()).unwrap())
        });
        // Streams only, with a prebuilt code.
        let code =
            CanonicalCode::from_frequencies(&histogram_u8(&data), DEFAULT_MAX_CODE_LEN).unwrap();
        let encoder = Encoder::new(&code);
        let mut out = Vec::with_capacity(data.len());
        g.bench_function(format!("four_streams/{name}"), |b| {
            b.iter(|| {
                out.clear();
                encoder.encode_four_u8(black_box(&data), &mut out).unwrap()
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = support::throughput_config();
    targets = encode
}
criterion_main!(benches);
