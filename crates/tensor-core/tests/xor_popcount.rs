//! `xor_popcount` on every path this CPU runs, bit-exact against the portable path and a
//! bit-by-bit count; paths this CPU lacks are named as skipped.

use std::sync::Once;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use tensor_core::TensorError;
use tensor_core::bits::{xor_popcount, xor_popcount_with};
use tensor_core::dispatch::{PopcountPath, report};
use tensor_core::rng::Rng;

/// Fixed seed: every run draws the same cases; proptest prints a failing input.
const SEED: u64 = 0xB175_0001;

fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(SEED),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Prints the dispatch report and the popcount paths that run and are skipped, once.
fn announce() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        eprintln!("{}", report());
        let names = |v: Vec<PopcountPath>| v.iter().map(|p| p.name()).collect::<Vec<_>>();
        eprintln!(
            "xor_popcount: testing paths {:?}; skipped (this CPU lacks them): {:?}",
            names(PopcountPath::supported()),
            names(PopcountPath::skipped())
        );
    });
}

/// Counts differing bits one at a time: independent of every path.
fn naive(a: &[u64], b: &[u64]) -> u32 {
    let mut n = 0;
    for (x, y) in a.iter().zip(b) {
        for bit in 0..64 {
            n += ((x >> bit) & 1 != (y >> bit) & 1) as u32;
        }
    }
    n
}

/// Words mixing the cases that break popcounts: random, all zeros, all ones, one bit, one byte.
fn words(rng: &mut Rng, len: usize) -> Vec<u64> {
    (0..len)
        .map(|_| match rng.below(5) {
            0 => 0,
            1 => u64::MAX,
            2 => 1 << rng.below(64),
            3 => 0xff << (8 * rng.below(8)),
            _ => rng.next_u64(),
        })
        .collect()
}

fn check_all_paths(a: &[u64], b: &[u64], context: &str) {
    let want = naive(a, b);
    for path in PopcountPath::supported() {
        let got = xor_popcount_with(path, a, b);
        assert_eq!(
            got,
            Ok(want),
            "path {} len {} {context}",
            path.name(),
            a.len()
        );
    }
}

proptest! {
    #![proptest_config(config(300))]
    #[test]
    fn every_path_matches_the_bit_count(len in 0usize..=70, seed in any::<u64>()) {
        announce();
        let mut rng = Rng::seed_from_u64(seed);
        let (a, b) = (words(&mut rng, len), words(&mut rng, len));
        check_all_paths(&a, &b, &format!("seed {seed}"));
    }
}

#[test]
fn every_length_to_70_and_across_the_byte_accumulator_flush() {
    announce();
    let mut rng = Rng::seed_from_u64(7);
    // The AVX2 path flushes its byte counters every 31 vectors (124 words); all-ones input
    // is the worst case for them (8 per byte per vector).
    let lengths = (0..=70).chain([123, 124, 125, 128, 248, 249, 1000, 4099]);
    for len in lengths {
        let ones = vec![u64::MAX; len];
        let zeros = vec![0u64; len];
        for path in PopcountPath::supported() {
            assert_eq!(
                xor_popcount_with(path, &ones, &zeros),
                Ok(64 * len as u32),
                "path {} all ones, len {len}",
                path.name()
            );
            assert_eq!(xor_popcount_with(path, &ones, &ones), Ok(0));
        }
        let (a, b) = (words(&mut rng, len), words(&mut rng, len));
        check_all_paths(&a, &b, "seed 7");
    }
}

#[test]
fn selected_entry_point_agrees() {
    announce();
    let mut rng = Rng::seed_from_u64(11);
    let (a, b) = (words(&mut rng, 37), words(&mut rng, 37));
    assert_eq!(xor_popcount(&a, &b), Ok(naive(&a, &b)));
}

#[test]
fn bad_calls_are_typed_errors() {
    announce();
    let e = xor_popcount(&[1, 2, 3], &[1, 2]).unwrap_err();
    assert_eq!(
        e,
        TensorError::LengthMismatch {
            op: "xor_popcount",
            lhs: 3,
            rhs: 2
        }
    );
    assert_eq!(
        e.to_string(),
        "xor_popcount: operand lengths differ (3 vs 2)"
    );
    for path in PopcountPath::skipped() {
        eprintln!(
            "xor_popcount: {} refused on this CPU, as it must be",
            path.name()
        );
        let e = xor_popcount_with(path, &[1], &[2]).unwrap_err();
        assert!(
            matches!(e, TensorError::UnsupportedPath { path: p, .. } if p == path.name()),
            "{e}"
        );
    }
}
