//! Hostile bytes into every decoder entry point: must return Ok or a typed error, never panic,
//! never allocate beyond the limits. Whatever decodes must survive a re-encode round trip.
//! Mode byte: bit 0 clear = raw block; `..01` = raw table + streams (parts API); `..11` =
//! a valid block built from the input, then corrupted by edits the input lists.
#![no_main]

use huffman_codec::{
    CanonicalCode, DecodeLimits, Decoder, EncodeParams, compress, decompress, decompress_u8,
    segment_bounds,
};
use libfuzzer_sys::fuzz_target;

const LIMITS: DecodeLimits = DecodeLimits {
    max_symbols: 1 << 20,
    max_alphabet: 1 << 16,
    max_code_len: 15,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 3 == 3 {
        // Near-valid blocks: compress the input's symbols, then apply the edits listed in its
        // last bytes (position, xor) so that the decoder sees corrupt blocks whose header
        // mostly parses, reaching the checks after the table and after the hot loop.
        let edits = (mode >> 2) as usize % 8;
        let Some(split) = rest.len().checked_sub(3 * edits) else {
            return;
        };
        let (symbols, edit_bytes) = rest.split_at(split);
        let params = EncodeParams {
            max_code_len: 11 + (mode >> 5) % 5,
            four_stream_min: if mode & 0x80 != 0 { 0 } else { 1024 },
        };
        let Ok(mut block) = huffman_codec::compress_u8(symbols, &params) else {
            return;
        };
        for e in edit_bytes.chunks_exact(3) {
            let at = u16::from_le_bytes([e[0], e[1]]) as usize;
            if !block.is_empty() {
                let len = block.len();
                block[at % len] ^= e[2];
            }
        }
        if let Ok(out) = decompress_u8(&block, &LIMITS) {
            assert!(out.len() as u64 <= LIMITS.max_symbols);
        }
        let _ = decompress(&block, &LIMITS);
        return;
    }
    if mode & 1 == 0 {
        // Block level, 16- and 8-bit outputs.
        if let Ok(symbols) = decompress(rest, &LIMITS) {
            assert!(symbols.len() as u64 <= LIMITS.max_symbols);
            let again = compress(&symbols, &EncodeParams::default()).expect("re-encode");
            assert_eq!(decompress(&again, &LIMITS).expect("re-decode"), symbols);
        }
        if let Ok(bytes) = decompress_u8(rest, &LIMITS) {
            assert!(bytes.len() as u64 <= LIMITS.max_symbols);
        }
        return;
    }
    // Parts level: a table, then a u16 symbol count, then one or four raw streams.
    let Ok((code, used)) = CanonicalCode::read_table(rest, &LIMITS) else {
        return;
    };
    let rest = &rest[used..];
    let Some((count, streams)) = rest.split_first_chunk::<2>() else {
        return;
    };
    let n = u16::from_le_bytes(*count) as usize;
    let decoder = Decoder::new(&code);
    let mut out16 = vec![0u16; n];
    let mut out8 = vec![0u8; n];
    if mode & 4 == 0 {
        let _ = decoder.decode_stream(streams, &mut out16);
        let _ = decoder.decode_stream_u8(streams, &mut out8);
    } else {
        // Split the bytes into four streams at positions derived from the input itself.
        let len = streams.len();
        let cut = |i: usize| segment_bounds(len, i).0;
        let parts = [
            &streams[..cut(1)],
            &streams[cut(1)..cut(2)],
            &streams[cut(2)..cut(3)],
            &streams[cut(3)..],
        ];
        let _ = decoder.decode_four(parts, &mut out16);
        let _ = decoder.decode_four_u8(parts, &mut out8);
    }
});
