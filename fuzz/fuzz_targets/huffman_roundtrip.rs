//! Arbitrary symbols and parameters: decode(encode(x)) == x at block and parts level, for the
//! 8-bit fast path and the 16-bit general path alike.
#![no_main]

use huffman_codec::{
    CanonicalCode, DecodeLimits, Decoder, EncodeParams, Encoder, compress, compress_u8, decompress,
    decompress_u8, histogram,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&[flags, cap], body)) = data.split_first_chunk::<2>().map(|(h, b)| (h, b)) else {
        return;
    };
    let params = EncodeParams {
        max_code_len: cap % 15 + 1,
        four_stream_min: [0, 1, 64, 1024][(flags & 3) as usize],
    };
    let limits = DecodeLimits::default();
    if flags & 4 == 0 {
        // Bytes: the 8-bit fast path (cap <= 11) or the general path (cap > 11).
        let block = compress_u8(body, &params).expect("compress_u8");
        assert_eq!(decompress_u8(&block, &limits).expect("decompress_u8"), body);
    } else {
        // 16-bit symbols, little-endian pairs, folded into alphabets from 300 symbols to the
        // full 65,536. Large alphabets cost O(alphabet) per run (tables, canonical codes), slow
        // under coverage instrumentation, so they get 1 input in 4.
        let modulus =
            [300u32, 300, 1000, 1000, 4096, 4096, 40_000, 65_536][(flags >> 3 & 7) as usize];
        let symbols: Vec<u16> = body
            .chunks_exact(2)
            .map(|c| (u16::from_le_bytes([c[0], c[1]]) as u32 % modulus) as u16)
            .collect();
        let block = match compress(&symbols, &params) {
            Ok(b) => b,
            // More than 2^15 distinct symbols cannot be coded; nothing else may fail.
            Err(huffman_codec::HuffError::CapTooSmall { .. }) => return,
            Err(e) => panic!("compress: {e}"),
        };
        assert_eq!(decompress(&block, &limits).expect("decompress"), symbols);

        // Parts level with the code built from the data.
        if let Ok(code) = CanonicalCode::from_frequencies(&histogram(&symbols), 15) {
            let mut table = Vec::new();
            code.write_table(&mut table);
            let (back, _) = CanonicalCode::read_table(&table, &limits).expect("table");
            assert_eq!(back, code);
            let mut four = Vec::new();
            let sizes = Encoder::new(&code)
                .encode_four(&symbols, &mut four)
                .expect("encode");
            let (a, b, c) = (
                sizes[0],
                sizes[0] + sizes[1],
                sizes[0] + sizes[1] + sizes[2],
            );
            let mut out = vec![0u16; symbols.len()];
            Decoder::new(&code)
                .decode_four([&four[..a], &four[a..b], &four[b..c], &four[c..]], &mut out)
                .expect("decode_four");
            assert_eq!(out, symbols);
        }
    }
});
