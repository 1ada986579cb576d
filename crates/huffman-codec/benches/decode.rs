//! Decode throughput of 8-bit symbols, in bytes of decoded output per second.

mod support;

use support::BenchClock;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use huffman_codec::{
    CanonicalCode, DEFAULT_MAX_CODE_LEN, DecodeLimits, Decoder, EncodeParams, Encoder, compress_u8,
    decompress_u8, histogram_u8,
};
use std::hint::black_box;

fn decode(c: &mut Criterion<BenchClock>) {
    let mut g = c.benchmark_group("decode");
    for (name, data) in support::large_inputs() {
        g.throughput(Throughput::Bytes(data.len() as u64));
        // Block level: header parse, table build, allocation and the four-stream loop.
        let block = compress_u8(&data, &EncodeParams::default()).unwrap();
        g.bench_function(format!("block/{name}"), |b| {
            b.iter(|| decompress_u8(black_box(&block), &DecodeLimits::default()).unwrap())
        });
        // Hot loop only: four streams into a preallocated buffer with a prebuilt table.
        let code =
            CanonicalCode::from_frequencies(&histogram_u8(&data), DEFAULT_MAX_CODE_LEN).unwrap();
        let mut four = Vec::new();
        let sizes = Encoder::new(&code)
            .encode_four_u8(&data, &mut four)
            .unwrap();
        let (a, b2, c2) = (
            sizes[0],
            sizes[0] + sizes[1],
            sizes[0] + sizes[1] + sizes[2],
        );
        let parts = [&four[..a], &four[a..b2], &four[b2..c2], &four[c2..]];
        let decoder = Decoder::new(&code);
        let mut out = vec![0u8; data.len()];
        g.bench_function(format!("four_streams/{name}"), |b| {
            b.iter(|| decoder.decode_four_u8(black_box(parts), &mut out).unwrap())
        });
        let mut one = Vec::new();
        Encoder::new(&code)
            .encode_stream_u8(&data, &mut one)
            .unwrap();
        g.bench_function(format!("one_stream/{name}"), |b| {
            b.iter(|| decoder.decode_stream_u8(black_box(&one), &mut out).unwrap())
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = support::throughput_config();
    targets = decode
}
criterion_main!(benches);
