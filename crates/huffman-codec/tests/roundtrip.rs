//! Exact round trip, block level and parts level, under seeded property tests and edge cases.

use huffman_codec::{
    CanonicalCode, DecodeLimits, Decoder, EncodeParams, Encoder, HuffError, MAX_CODE_LEN, compress,
    compress_u8, decompress, decompress_u8, histogram, segment_bounds,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

/// Fixed seed: every run draws the same cases. Proptest prints the failing input on failure.
const SEED: u64 = 0x5EED_4AFF;

fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(SEED),
        failure_persistence: None,
        ..Config::default()
    }
}

/// How test data is drawn from a seed.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// Uniform over `0..alphabet`.
    Uniform,
    /// Geometric-like: symbol `k` with probability about `(1 - q) q^k`.
    Skewed,
    /// Runs of one symbol, run lengths up to 5,000.
    Runs,
    /// Only symbols `a` and `b` (possibly equal).
    Two,
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn make(shape: Shape, alphabet: usize, n: usize, seed: u64) -> Vec<u16> {
    let mut st = seed;
    let a = alphabet as u64;
    match shape {
        Shape::Uniform => (0..n).map(|_| (splitmix(&mut st) % a) as u16).collect(),
        Shape::Skewed => {
            let q = 0.3 + 0.69 * (splitmix(&mut st) % 1000) as f64 / 1000.0;
            (0..n)
                .map(|_| {
                    let u = (splitmix(&mut st) >> 11) as f64 / (1u64 << 53) as f64;
                    let k = ((1.0 - u).ln() / q.ln()) as u64;
                    k.min(a - 1) as u16
                })
                .collect()
        }
        Shape::Runs => {
            let mut v = Vec::with_capacity(n);
            while v.len() < n {
                let s = (splitmix(&mut st) % a) as u16;
                let len = (splitmix(&mut st) % 5000 + 1) as usize;
                v.extend(std::iter::repeat_n(s, len.min(n - v.len())));
            }
            v
        }
        Shape::Two => {
            let x = (splitmix(&mut st) % a) as u16;
            let y = (splitmix(&mut st) % a) as u16;
            (0..n)
                .map(|_| {
                    if splitmix(&mut st).is_multiple_of(4) {
                        y
                    } else {
                        x
                    }
                })
                .collect()
        }
    }
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Uniform),
        Just(Shape::Skewed),
        Just(Shape::Runs),
        Just(Shape::Two)
    ]
}

/// Sizes around the interesting edges: 0..=20, the four-stream split, and large.
fn size() -> impl Strategy<Value = usize> {
    prop_oneof![0usize..=20, 1000usize..1100, 0usize..20_000]
}

fn alphabet() -> impl Strategy<Value = usize> {
    prop_oneof![1usize..=3, 1usize..=256, 1usize..=65_536]
}

fn params() -> impl Strategy<Value = EncodeParams> {
    (
        1u8..=MAX_CODE_LEN,
        prop_oneof![Just(0usize), Just(1), Just(1024), Just(usize::MAX)],
    )
        .prop_map(|(max_code_len, four_stream_min)| EncodeParams {
            max_code_len,
            four_stream_min,
        })
}

fn limits() -> DecodeLimits {
    DecodeLimits::default()
}

proptest! {
    #![proptest_config(config(400))]

    #[test]
    fn block_round_trip_u16(shape in shape(), alphabet in alphabet(), n in size(),
                            seed in any::<u64>(), params in params()) {
        let data = make(shape, alphabet, n, seed);
        let block = compress(&data, &params).unwrap();
        prop_assert_eq!(decompress(&block, &limits()).unwrap(), data.clone());
        if data.iter().all(|&s| s < 256) {
            let bytes: Vec<u8> = data.iter().map(|&s| s as u8).collect();
            prop_assert_eq!(decompress_u8(&block, &limits()).unwrap(), bytes);
        }
    }

    #[test]
    fn block_round_trip_u8(shape in shape(), alphabet in 1usize..=256, n in size(),
                           seed in any::<u64>(), params in params()) {
        let data: Vec<u8> = make(shape, alphabet, n, seed).iter().map(|&s| s as u8).collect();
        let block = compress_u8(&data, &params).unwrap();
        prop_assert_eq!(decompress_u8(&block, &limits()).unwrap(), data.clone());
        // The 16-bit decoder reads the same block.
        let wide: Vec<u16> = data.iter().map(|&s| s as u16).collect();
        prop_assert_eq!(decompress(&block, &limits()).unwrap(), wide);
    }

    /// Parts level: a code built on one sample, with unused symbols, codes another sample from
    /// the same alphabet; the table round-trips; caps 1..=15 all hold.
    #[test]
    fn parts_round_trip(shape in shape(), alphabet in 2usize..=4096, n in size(),
                        seed in any::<u64>(), cap in 1u8..=MAX_CODE_LEN) {
        let data = make(shape, alphabet, n, seed);
        // Every symbol gets a count of at least 1 so that any data over the alphabet codes.
        let mut freqs = histogram(&data);
        freqs.resize(alphabet, 0);
        freqs.iter_mut().for_each(|f| *f += 1);
        let cap = cap.max((usize::BITS - (alphabet - 1).leading_zeros()) as u8);
        prop_assume!(cap <= MAX_CODE_LEN);
        let code = CanonicalCode::from_frequencies(&freqs, cap).unwrap();
        prop_assert!(code.max_len() <= cap);
        let mut table = Vec::new();
        code.write_table(&mut table);
        let (back, used) = CanonicalCode::read_table(&table, &limits()).unwrap();
        prop_assert_eq!(&back, &code);
        prop_assert_eq!(used, table.len());

        let (enc, dec) = (Encoder::new(&code), Decoder::new(&code));
        let mut one = Vec::new();
        let size = enc.encode_stream(&data, &mut one).unwrap();
        prop_assert_eq!(size as u64, code.cost_bits(&histogram(&data)).div_ceil(8));
        let mut out = vec![0u16; data.len()];
        dec.decode_stream(&one, &mut out).unwrap();
        prop_assert_eq!(&out, &data);

        let mut four = Vec::new();
        let sizes = enc.encode_four(&data, &mut four).unwrap();
        let mut parts = [&four[..0]; 4];
        let mut at = 0;
        for (p, &s) in parts.iter_mut().zip(&sizes) {
            *p = &four[at..at + s];
            at += s;
        }
        let mut out = vec![0u16; data.len()];
        dec.decode_four(parts, &mut out).unwrap();
        prop_assert_eq!(&out, &data);
        if alphabet <= 256 {
            let bytes: Vec<u8> = data.iter().map(|&s| s as u8).collect();
            let mut out8 = vec![0u8; data.len()];
            dec.decode_four_u8(parts, &mut out8).unwrap();
            prop_assert_eq!(&out8, &bytes);
            let mut four8 = Vec::new();
            prop_assert_eq!(enc.encode_four_u8(&bytes, &mut four8).unwrap(), sizes);
            prop_assert_eq!(&four8, &four);
        }
    }
}

#[test]
fn zero_one_and_two_symbols() {
    for data in [
        vec![],
        vec![7u16],
        vec![7u16; 100_000],
        vec![3, 9],
        vec![0, 65_535, 0],
    ] {
        let block = compress(&data, &EncodeParams::default()).unwrap();
        assert_eq!(decompress(&block, &limits()).unwrap(), data);
    }
    // Empty: 2 bytes. One value: run block, no payload, whatever the count.
    assert_eq!(
        compress(&[], &EncodeParams::default()).unwrap(),
        vec![0x48, 0]
    );
    assert_eq!(
        compress_u8(&[5; 100_000], &EncodeParams::default())
            .unwrap()
            .len(),
        2 + 3 + 2
    );
    // Two values: one bit each.
    let data: Vec<u8> = (0..8000).map(|i| (i % 3 == 0) as u8).collect();
    let block = compress_u8(&data, &EncodeParams::default()).unwrap();
    assert!(block.len() < 1000 + 20, "{}", block.len());
}

#[test]
fn full_16_bit_alphabet_with_32768_symbols_used() {
    // 2^15 distinct symbols need the full cap of 15; the default cap is raised automatically.
    let data: Vec<u16> = (0..1u32 << 17).map(|i| ((i * 2) % 65_536) as u16).collect();
    let block = compress(&data, &EncodeParams::default()).unwrap();
    assert_eq!(decompress(&block, &limits()).unwrap(), data);
    // 2^15 + 1 distinct symbols cannot be coded within 15 bits.
    let too_many: Vec<u16> = (0..=1u16 << 15).collect();
    assert_eq!(
        compress(&too_many, &EncodeParams::default()),
        Err(HuffError::CapTooSmall {
            cap: 15,
            used_symbols: 32_769
        })
    );
}

#[test]
fn segments_of_tiny_inputs_may_be_empty() {
    assert_eq!(segment_bounds(5, 3), (5, 5));
    let params = EncodeParams {
        four_stream_min: 0,
        ..EncodeParams::default()
    };
    for n in 0..12 {
        let data: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
        let block = compress_u8(&data, &params).unwrap();
        assert_eq!(decompress_u8(&block, &limits()).unwrap(), data);
    }
}
