//! Hostile input: every `HuffError` variant is reached by a test here or in the unit tests
//! (`CapTooSmall` and `SymbolNotInCode` live in `roundtrip.rs` and `encode.rs`), and no
//! truncation or bit flip of valid blocks panics.

use huffman_codec::{
    CanonicalCode, DecodeLimits, Decoder, EncodeParams, Encoder, HuffError, compress, compress_u8,
    decompress, decompress_u8, histogram_u8, segment_bounds,
};

fn limits() -> DecodeLimits {
    DecodeLimits::default()
}

fn leb(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

/// A one-stream Huffman block assembled by hand from its fields.
fn block(n: u64, table: &[u8], stream: &[u8]) -> Vec<u8> {
    let mut b = vec![0x48, 2];
    b.extend(leb(n));
    b.extend_from_slice(table);
    b.extend(leb(stream.len() as u64));
    b.extend_from_slice(stream);
    b
}

/// Table of a 3-symbol alphabet with lengths 1, 2, 2 (codes 0, 10, 11), max_len 2.
const TABLE_122: [u8; 5] = [2, 0, 2, 0x21, 0x02];

#[test]
fn hand_built_block_decodes() {
    // Symbols 1, 2, 0: bits 1,0 1,1 0 LSB first = 0b0000_1101.
    assert_eq!(
        decompress(&block(3, &TABLE_122, &[0b0000_1101]), &limits()),
        Ok(vec![1, 2, 0])
    );
}

#[test]
fn kraft_sum_not_exact() {
    // Lengths 1, 2, 0: sum 3/4 (incomplete).
    let t = [2, 0, 2, 0x21, 0x00];
    assert_eq!(
        decompress(&block(1, &t, &[0]), &limits()),
        Err(HuffError::KraftSumNotExact {
            numerator: 3,
            cap: 2
        })
    );
    // Lengths 1, 1, 1: sum 3/2 (oversubscribed).
    let t = [2, 0, 2, 0x11, 0x01];
    assert_eq!(
        decompress(&block(1, &t, &[0]), &limits()),
        Err(HuffError::KraftSumNotExact {
            numerator: 6,
            cap: 2
        })
    );
    // A single symbol of length 1 (sum 1/2) is not a code either.
    assert_eq!(
        CanonicalCode::from_lengths(vec![0, 1], 11),
        Err(HuffError::KraftSumNotExact {
            numerator: 1 << 10,
            cap: 11
        })
    );
}

#[test]
fn lengths_above_the_cap() {
    // Declared max_len 2, symbol 1 has length 3.
    let t = [2, 0, 2, 0x31, 0x03];
    assert_eq!(
        decompress(&block(1, &t, &[0]), &limits()),
        Err(HuffError::LengthAboveCap {
            symbol: 1,
            length: 3,
            cap: 2
        })
    );
    // The caller's cap is lower than the declared one.
    let strict = DecodeLimits {
        max_code_len: 1,
        ..limits()
    };
    assert_eq!(
        decompress(&block(3, &TABLE_122, &[0b0000_1101]), &strict),
        Err(HuffError::LengthAboveCap {
            symbol: 1,
            length: 2,
            cap: 1
        })
    );
    assert_eq!(
        CanonicalCode::from_lengths(vec![1, 2, 3, 3], 2),
        Err(HuffError::LengthAboveCap {
            symbol: 2,
            length: 3,
            cap: 2
        })
    );
}

#[test]
fn invalid_max_code_len() {
    for bad in [0u8, 16, 255] {
        let t = [2, 0, bad, 0x21, 0x02];
        assert_eq!(
            decompress(&block(3, &t, &[0b0000_1101]), &limits()),
            Err(HuffError::InvalidMaxCodeLen {
                op: "read table",
                max_len: bad
            })
        );
        let params = EncodeParams {
            max_code_len: bad,
            ..EncodeParams::default()
        };
        assert!(matches!(
            compress(&[1, 2, 3], &params),
            Err(HuffError::InvalidMaxCodeLen { .. })
        ));
        assert!(matches!(
            CanonicalCode::from_lengths(vec![1, 1], bad),
            Err(HuffError::InvalidMaxCodeLen { .. })
        ));
    }
}

#[test]
fn corrupt_tables() {
    // Zero run of 3 (digit nibble 2) in an alphabet of 3 after one length: past the end.
    let t = [2, 0, 2, 0x01, 0x02];
    assert!(matches!(
        decompress(&block(1, &t, &[0]), &limits()),
        Err(HuffError::CorruptTable {
            reason: "zero run goes past the declared alphabet",
            ..
        })
    ));
    // Zero run with seven continuation digits.
    let t = [2, 0, 2, 0x80, 0x88, 0x88, 0x88];
    assert!(matches!(
        decompress(&block(1, &t, &[0]), &limits()),
        Err(HuffError::CorruptTable {
            reason: "zero run longer than 6 digits",
            ..
        })
    ));
    // Odd nibble count with a non-zero padding nibble.
    let t = [2, 0, 2, 0x21, 0xF2];
    assert!(matches!(
        decompress(&block(3, &t, &[0b0000_1101]), &limits()),
        Err(HuffError::CorruptTable {
            reason: "padding nibble is not zero",
            ..
        })
    ));
    // Table cut short.
    assert!(matches!(
        CanonicalCode::read_table(&[2, 0, 2, 0x21], &limits()),
        Err(HuffError::Truncated {
            what: "code table",
            ..
        })
    ));
    assert!(matches!(
        CanonicalCode::read_table(&[2, 0], &limits()),
        Err(HuffError::Truncated {
            what: "code table header",
            ..
        })
    ));
}

#[test]
fn alphabet_too_large() {
    let small = DecodeLimits {
        max_alphabet: 2,
        ..limits()
    };
    assert_eq!(
        decompress(&block(3, &TABLE_122, &[0b0000_1101]), &small),
        Err(HuffError::AlphabetTooLarge {
            op: "read table",
            size: 3,
            max: 2
        })
    );
    assert!(matches!(
        CanonicalCode::from_lengths(vec![0; 65_537], 15),
        Err(HuffError::AlphabetTooLarge { .. })
    ));
    assert!(matches!(
        CanonicalCode::from_frequencies(&[0, 0, 0], 11),
        Err(HuffError::NoSymbols { .. })
    ));
}

#[test]
fn header_errors() {
    let good = compress_u8(b"hello, hello, hello", &EncodeParams::default()).unwrap();
    let mut bad = good.clone();
    bad[0] = 0x28;
    assert_eq!(
        decompress(&bad, &limits()),
        Err(HuffError::BadMagic { found: 0x28 })
    );
    let mut bad = good.clone();
    bad[1] = 4;
    assert_eq!(
        decompress(&bad, &limits()),
        Err(HuffError::UnknownBlockKind { kind: 4 })
    );
    assert!(matches!(
        decompress(&[0x48], &limits()),
        Err(HuffError::Truncated {
            what: "block header",
            ..
        })
    ));
    let mut bad = vec![0x48, 2];
    bad.extend([0xFF; 10]);
    assert_eq!(
        decompress(&bad, &limits()),
        Err(HuffError::BadVarint {
            what: "symbol count"
        })
    );
    let mut bad = good.clone();
    bad.push(0);
    assert_eq!(
        decompress(&bad, &limits()),
        Err(HuffError::TrailingBytes {
            expected: good.len() as u64,
            actual: good.len() as u64 + 1
        })
    );
    assert!(matches!(
        decompress(&[0x48, 0, 0], &limits()),
        Err(HuffError::TrailingBytes { .. })
    ));
    assert!(matches!(
        decompress(&[0x48, 1, 5, 7], &limits()),
        Err(HuffError::Truncated {
            what: "run symbol",
            ..
        })
    ));
}

#[test]
fn declared_sizes_beyond_the_callers_limit() {
    let data = [1u16, 2, 3, 4].repeat(100);
    let b = compress(&data, &EncodeParams::default()).unwrap();
    let tight = DecodeLimits {
        max_symbols: 399,
        ..limits()
    };
    assert_eq!(
        decompress(&b, &tight),
        Err(HuffError::SymbolCountAboveLimit {
            declared: 400,
            limit: 399
        })
    );
    // A run block can declare anything; the limit still holds before allocation.
    let mut run = vec![0x48, 1];
    run.extend(leb(u64::MAX));
    run.extend([0, 0]);
    assert!(matches!(
        decompress(&run, &limits()),
        Err(HuffError::SymbolCountAboveLimit { .. })
    ));
    // Within the limit but more symbols than the payload can hold: refused before allocation.
    let huge = block(1 << 40, &TABLE_122, &[0b0000_1101]);
    let loose = DecodeLimits {
        max_symbols: u64::MAX,
        ..limits()
    };
    assert_eq!(
        decompress(&huge, &loose),
        Err(HuffError::StreamOverrun {
            stream: 0,
            bits_needed: 1 << 40,
            bits_available: 8
        })
    );
}

#[test]
fn truncated_streams_and_sizes() {
    // Stream size larger than the bytes that follow.
    let mut b = vec![0x48, 2, 3];
    b.extend_from_slice(&TABLE_122);
    b.extend([5, 0b0000_1101]);
    assert_eq!(
        decompress(&b, &limits()),
        Err(HuffError::Truncated {
            what: "streams",
            needed: 5,
            available: 1
        })
    );
    // Declared 7 symbols: 8 bits can hold 8 one-bit codes, but 1, 2, 0, 0, 0, 0, 0 would
    // need 9 bits; the decoder runs into the zero fill and reports the overrun afterwards.
    assert_eq!(
        decompress(&block(7, &TABLE_122, &[0b0000_1101]), &limits()),
        Err(HuffError::StreamOverrun {
            stream: 0,
            bits_needed: 9,
            bits_available: 8
        })
    );
}

#[test]
fn streams_not_consumed_exactly() {
    // Three symbols use one byte; the stream has two.
    assert_eq!(
        decompress(&block(3, &TABLE_122, &[0b0000_1101, 0]), &limits()),
        Err(HuffError::StreamNotConsumed {
            stream: 0,
            used_bytes: 1,
            declared_bytes: 2
        })
    );
    // Padding bits set after the last code (5 bits used).
    assert_eq!(
        decompress(&block(3, &TABLE_122, &[0b1000_1101]), &limits()),
        Err(HuffError::NonZeroPadding { stream: 0 })
    );
    // Four streams, parts level: damage stream 3 only.
    let data: Vec<u8> = (0..4001u32).map(|i| (i * i % 7) as u8).collect();
    let code = CanonicalCode::from_frequencies(&histogram_u8(&data), 11).unwrap();
    let mut four = Vec::new();
    let sizes = Encoder::new(&code)
        .encode_four_u8(&data, &mut four)
        .unwrap();
    let (a, b, c) = (
        sizes[0],
        sizes[0] + sizes[1],
        sizes[0] + sizes[1] + sizes[2],
    );
    let mut last = four[c..].to_vec();
    let decoder = Decoder::new(&code);
    let mut out = vec![0u8; data.len()];
    let mut decode = |last: &[u8]| {
        decoder.decode_four_u8([&four[..a], &four[a..b], &four[b..c], last], &mut out)
    };
    assert_eq!(decode(&last), Ok(()));
    last.push(0);
    assert_eq!(
        decode(&last),
        Err(HuffError::StreamNotConsumed {
            stream: 3,
            used_bytes: sizes[3] as u64,
            declared_bytes: sizes[3] as u64 + 1
        })
    );
    last.pop();
    let (s3, e3) = segment_bounds(data.len(), 3);
    let bits = code.cost_bits(&histogram_u8(&data[s3..e3]));
    assert_ne!(bits % 8, 0, "test data must leave padding in stream 3");
    *last.last_mut().unwrap() |= 0x80;
    assert_eq!(decode(&last), Err(HuffError::NonZeroPadding { stream: 3 }));
}

#[test]
fn u8_output_needs_a_byte_alphabet() {
    let b = compress(&[1, 300, 1, 300], &EncodeParams::default()).unwrap();
    assert_eq!(
        decompress_u8(&b, &limits()),
        Err(HuffError::AlphabetTooLargeForU8 { alphabet_size: 301 })
    );
    let run = compress(&[300; 5], &EncodeParams::default()).unwrap();
    assert_eq!(
        decompress_u8(&run, &limits()),
        Err(HuffError::AlphabetTooLargeForU8 { alphabet_size: 301 })
    );
    let code = CanonicalCode::from_frequencies(&[1; 300], 11).unwrap();
    let mut out = [0u8; 4];
    assert_eq!(
        Decoder::new(&code).decode_stream_u8(&[0; 8], &mut out),
        Err(HuffError::AlphabetTooLargeForU8 { alphabet_size: 300 })
    );
}

#[test]
fn every_error_message_names_its_values() {
    let e = HuffError::StreamNotConsumed {
        stream: 2,
        used_bytes: 10,
        declared_bytes: 12,
    };
    assert_eq!(e.to_string(), "decode stream 2: symbols use 10 bytes of 12");
    let e: Box<dyn std::error::Error> = Box::new(HuffError::BadMagic { found: 0 });
    assert!(e.to_string().contains("0x00"));
}

/// Every prefix and every single-bit flip of a few valid blocks decodes to Ok or a typed
/// error: no panic, and never more symbols than declared.
#[test]
fn truncations_and_bit_flips_never_panic() {
    let mut blocks = Vec::new();
    let text = b"the quick brown fox jumps over the lazy dog; ".repeat(40);
    blocks.push(compress_u8(&text, &EncodeParams::default()).unwrap());
    blocks.push(compress_u8(&text[..200], &EncodeParams::default()).unwrap());
    let wide: Vec<u16> = (0..3000u32).map(|i| ((i * 7919) % 1500) as u16).collect();
    let params = EncodeParams {
        max_code_len: 15,
        ..EncodeParams::default()
    };
    blocks.push(compress(&wide, &params).unwrap());
    for b in &blocks {
        for cut in 0..b.len() {
            assert!(decompress(&b[..cut], &limits()).is_err());
            let _ = decompress_u8(&b[..cut], &limits());
        }
        for bit in 0..b.len() * 8 {
            let mut m = b.clone();
            m[bit / 8] ^= 1 << (bit % 8);
            if let Ok(v) = decompress(&m, &limits()) {
                assert!(v.len() as u64 <= limits().max_symbols);
            }
            let _ = decompress_u8(&m, &limits());
        }
    }
}
