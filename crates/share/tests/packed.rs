//! Packed codes: round trips over every width, the documented layout, and typed errors on
//! corrupt payloads (wrong length, nonzero padding, index >= k), never a panic.

use proptest::prelude::*;
use share::{PackedCodes, ShareError, SharedStorage};
use tensor_core::dispatch::F32Path;
use tensor_core::rng::Rng;

/// The tiers this CPU runs; says which are skipped.
fn tiers() -> Vec<F32Path> {
    let mut run = Vec::new();
    for t in [F32Path::Portable, F32Path::Avx2Fma, F32Path::Avx512F] {
        if t.is_supported() {
            run.push(t);
        } else {
            eprintln!("skipping tier {}: not supported by this CPU", t.name());
        }
    }
    run
}

/// Naive packer: one bit at a time, straight from the layout in the docs.
fn naive_pack(codes: &[u16], bits: u32) -> Vec<u8> {
    let mut out = vec![0u8; (codes.len() * bits as usize).div_ceil(8)];
    for (i, &c) in codes.iter().enumerate() {
        for t in 0..bits as usize {
            if c >> t & 1 == 1 {
                let s = i * bits as usize + t;
                out[s / 8] |= 1 << (s % 8);
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn pack_matches_layout_and_round_trips(
        bits in 1u32..=16,
        len in 0usize..300,
        seed in any::<u64>(),
    ) {
        let mut rng = Rng::seed_from_u64(seed);
        let codes: Vec<u16> = (0..len).map(|_| rng.below(1 << bits) as u16).collect();
        let p = PackedCodes::pack(&codes, bits).unwrap();
        let naive = naive_pack(&codes, bits);
        prop_assert_eq!(p.as_bytes(), naive.as_slice(), "seed {}", seed);
        prop_assert_eq!(p.as_bytes().len(), PackedCodes::byte_len(bits, len).unwrap());
        prop_assert_eq!(p.unpack(), codes.clone());
        for (i, &c) in codes.iter().enumerate() {
            prop_assert_eq!(p.get(i), Some(c));
        }
        prop_assert_eq!(p.get(len), None);
        let q = PackedCodes::from_parts(bits, len, p.as_bytes().to_vec(), 1 << bits).unwrap();
        prop_assert_eq!(&q, &p);
        if bits <= 8 {
            let bytes: Vec<u16> = p.unpack_u8().unwrap().iter().map(|&b| b as u16).collect();
            prop_assert_eq!(bytes, codes.clone());
            // Any sub-range decodes alike (the kernels decode one row at a time).
            let start = rng.below(len + 1);
            let mut part = vec![0u8; rng.below(len - start + 1)];
            for tier in tiers() {
                part.fill(0xEE);
                p.unpack_u8_into_with(tier, start, &mut part).unwrap();
                for (j, &b) in part.iter().enumerate() {
                    prop_assert_eq!(b as u16, codes[start + j], "tier {}, start {}", tier.name(), start);
                }
            }
        }
    }
}

#[test]
fn byte_eight_and_sixteen_are_plain_integers() {
    let p = PackedCodes::pack(&[7u8, 255, 0], 8).unwrap();
    assert_eq!(p.as_bytes(), &[7, 255, 0]);
    let p = PackedCodes::pack(&[0x1234u16, 0xFFFF], 16).unwrap();
    assert_eq!(p.as_bytes(), &[0x34, 0x12, 0xFF, 0xFF]);
    // Three bits: 5 | 1 << 3 | 7 << 6 = 0b1_1100_1101, spills one bit into byte 1.
    let p = PackedCodes::pack(&[5u8, 1, 7], 3).unwrap();
    assert_eq!(p.as_bytes(), &[0b1100_1101, 0b0000_0001]);
}

#[test]
fn errors_name_the_field_and_values() {
    let e = PackedCodes::pack(&[1u8, 32], 5).unwrap_err();
    assert_eq!(
        e.to_string(),
        "PackedCodes::pack: code 32 at position 1 is past the codebook of 32 centroids"
    );
    let e = PackedCodes::pack(&[1u8], 0).unwrap_err();
    assert_eq!(
        e.to_string(),
        "PackedCodes::pack: bits = 0, expected 1..=16"
    );
    let e = PackedCodes::from_parts(17, 1, vec![0; 3], 4).unwrap_err();
    assert_eq!(
        e.to_string(),
        "PackedCodes::from_parts: bits = 17, expected 1..=16"
    );
    // Wrong length: 10 codes of 5 bits need 7 bytes.
    let e = PackedCodes::from_parts(5, 10, vec![0; 6], 32).unwrap_err();
    assert_eq!(
        e.to_string(),
        "PackedCodes::from_parts: bytes has length 6, expected 7"
    );
    // Padding: 3 codes of 5 bits use 15 bits; bit 15 set.
    let e = PackedCodes::from_parts(5, 3, vec![0, 0x80], 32).unwrap_err();
    assert_eq!(
        e.to_string(),
        "PackedCodes::from_parts: padding bits of the last byte are 0x01, expected 0"
    );
    // Index >= k: code 31 at position 2 with k = 20.
    let good = PackedCodes::pack(&[1u8, 2, 31], 5).unwrap();
    let e = PackedCodes::from_parts(5, 3, good.as_bytes().to_vec(), 20).unwrap_err();
    assert_eq!(
        e.to_string(),
        "PackedCodes::from_parts: code 31 at position 2 is past the codebook of 20 centroids"
    );
    let e = PackedCodes::from_parts(5, usize::MAX, vec![], 32).unwrap_err();
    assert!(
        matches!(
            e,
            ShareError::TooLarge {
                what: "len * bits",
                ..
            }
        ),
        "{e}"
    );
    let e = PackedCodes::pack(&[300u16], 9)
        .unwrap()
        .unpack_u8()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "PackedCodes::unpack_u8_into: bits = 9, expected 1..=8"
    );
    let mut out = [0u8; 2];
    let e = good.unpack_u8_into(2, &mut out).unwrap_err();
    assert_eq!(
        e.to_string(),
        "PackedCodes::unpack_u8_into: start + out has length 4, expected 3"
    );
}

#[test]
fn every_truncation_and_flipped_byte_is_an_error_or_valid() {
    let mut rng = Rng::seed_from_u64(7);
    for bits in [1u32, 3, 5, 8, 11, 16] {
        let k = (1usize << bits) - 1; // as share_nonzeros: one code unused
        let codes: Vec<u16> = (0..37).map(|_| rng.below(k) as u16).collect();
        let bytes = PackedCodes::pack(&codes, bits).unwrap().into_bytes();
        for cut in 0..bytes.len() {
            let e = PackedCodes::from_parts(bits, codes.len(), bytes[..cut].to_vec(), k);
            assert!(
                matches!(e, Err(ShareError::LengthMismatch { what: "bytes", .. })),
                "bits {bits}, cut {cut}"
            );
        }
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xFF] {
                let mut b = bytes.clone();
                b[i] ^= flip;
                match PackedCodes::from_parts(bits, codes.len(), b, k) {
                    Ok(p) => assert!(p.unpack().iter().all(|&c| (c as usize) < k)),
                    Err(ShareError::CodeOutOfRange { len, .. }) => assert_eq!(len, k),
                    Err(ShareError::NonzeroPadding { .. }) => {}
                    Err(e) => panic!("bits {bits}, byte {i}: unexpected {e}"),
                }
            }
        }
    }
}

#[test]
fn storage_counts_the_packed_bytes() {
    let codes: Vec<u8> = (0..1000).map(|i| (i % 32) as u8).collect();
    let p = PackedCodes::pack(&codes, 5).unwrap();
    let s = SharedStorage::new(1000, 5, 32).unwrap();
    assert_eq!(s.index_bytes, p.as_bytes().len());
    assert_eq!(s.index_bytes, 625);
    assert_eq!(s.codebook_bytes, 128);
    assert_eq!(s.bytes(), 753);
    assert_eq!(s.dense_bytes(), 4000);
    // 1000 * 32 / (1000 * 5 + 32 * 32) = 5.312...; bytes: 4000 / 753 = 5.312... (no rounding
    // here: 5000 bits are whole bytes).
    assert!((s.theoretical_rate() - 32000.0 / 6024.0).abs() < 1e-12);
    assert!((s.actual_rate() - 4000.0 / 753.0).abs() < 1e-12);
    assert!((s.theoretical_rate() - s.actual_rate()).abs() < 1e-12);
}

#[test]
fn compression_rate_matches_the_paper() {
    // Deep Compression, figure 3: 16 weights, 4 centroids, 2-bit indices: 3.2.
    assert!((share::compression_rate(16, 2, 4, 32) - 3.2).abs() < 1e-12);
    // lenet300.fc1 with 5 bits: 235,200 * 32 / (235,200 * 5 + 32 * 32).
    let r = share::compression_rate(235_200, 5, 32, 32);
    assert!((r - 7_526_400.0 / 1_177_024.0).abs() < 1e-9, "{r}");
    assert!(share::compression_rate(0, 5, 0, 32).is_nan());
}

#[test]
fn unpack_fast_paths_match_one_at_a_time() {
    // Long enough for the 32-code AVX2 runs and the 8-code portable groups, from every
    // start offset within a group (unaligned heads) and with ragged tails.
    let mut rng = Rng::seed_from_u64(12);
    for bits in 1u32..=8 {
        let codes: Vec<u8> = (0..1000).map(|_| rng.below(1 << bits) as u8).collect();
        let p = PackedCodes::pack(&codes, bits).unwrap();
        for start in 0..9 {
            for len in [0, 7, 31, 32, 33, 200, 1000 - start] {
                for tier in tiers() {
                    let mut out = vec![0xEEu8; len];
                    p.unpack_u8_into_with(tier, start, &mut out).unwrap();
                    assert_eq!(
                        out,
                        codes[start..start + len],
                        "bits {bits}, start {start}, len {len}, tier {}",
                        tier.name()
                    );
                }
            }
        }
    }
}
