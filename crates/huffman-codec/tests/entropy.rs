//! Mean code length against Shannon entropy, and saving over fixed-width storage, on the real
//! Deep Compression streams of the pruned, shared lenet300 and lenet5 (`fixtures/streams/`,
//! see `streams/mod.rs`). Run with `--nocapture` for the table.

mod streams;

use huffman_codec::{
    CanonicalCode, DEFAULT_MAX_CODE_LEN, DecodeLimits, EncodeParams, compress_u8, decompress_u8,
    histogram_u8,
};

#[test]
fn mean_code_length_within_two_percent_of_entropy() {
    println!(
        "| stream | symbols | alphabet | entropy (bits) | mean code length (bits) | ratio | fixed-width bytes | block bytes | saving |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut totals: Vec<(String, usize, usize)> = Vec::new();
    for s in streams::all_streams() {
        assert!(!s.symbols.is_empty(), "{}: empty stream", s.name);
        let h = streams::entropy_bits(&s.symbols);
        let freqs = histogram_u8(&s.symbols);
        let code =
            CanonicalCode::from_frequencies(&freqs[..s.alphabet], DEFAULT_MAX_CODE_LEN).unwrap();
        let mean = code.cost_bits(&freqs) as f64 / s.symbols.len() as f64;
        let fixed_bits = s.alphabet.trailing_zeros() as usize;
        let fixed_bytes = (s.symbols.len() * fixed_bits).div_ceil(8);
        let block = compress_u8(&s.symbols, &EncodeParams::default()).unwrap();
        assert_eq!(
            decompress_u8(&block, &DecodeLimits::default()).unwrap(),
            s.symbols
        );
        let saving = 1.0 - block.len() as f64 / fixed_bytes as f64;
        println!(
            "| {} | {} | {} | {:.4} | {:.4} | {:.4} | {} | {} | {:.1}% |",
            s.name,
            s.symbols.len(),
            s.alphabet,
            h,
            mean,
            mean / h,
            fixed_bytes,
            block.len(),
            100.0 * saving
        );
        assert!(
            mean <= 1.02 * h,
            "{}: mean code length {mean:.4} is more than 2% above the entropy {h:.4}",
            s.name
        );
        assert!(
            block.len() < fixed_bytes,
            "{}: the Huffman block ({} bytes) saves nothing over fixed width ({fixed_bytes})",
            s.name,
            block.len()
        );
        let model = s.name.split('.').next().unwrap_or("").to_string();
        match totals.iter_mut().find(|t| t.0 == model) {
            Some(t) => {
                t.1 += fixed_bytes;
                t.2 += block.len();
            }
            None => totals.push((model, fixed_bytes, block.len())),
        }
    }
    println!();
    for (model, fixed, block) in totals {
        println!(
            "{model}: indices and gaps together {fixed} -> {block} bytes ({:.1}% saved)",
            100.0 * (1.0 - block as f64 / fixed as f64)
        );
    }
}
