//! `dot_u8i8` on every path this CPU runs, bit-exact against an i64 reference over the whole
//! value range (255 and -128 included, where a saturating `vpmaddubsw` would go wrong); paths
//! this CPU lacks are named as skipped.

use std::sync::Once;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use tensor_core::TensorError;
use tensor_core::dispatch::{Int8Path, report};
use tensor_core::int8::{MAX_DOT_U8I8_LEN, dot_u8i8, dot_u8i8_with};

/// Fixed seed: every run draws the same cases; proptest prints a failing input.
const SEED: u64 = 0xD07_0008;

fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(SEED),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Prints the dispatch report and the int8 paths that run and are skipped, once.
fn announce() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        eprintln!("{}", report());
        let names = |v: Vec<Int8Path>| v.iter().map(|p| p.name()).collect::<Vec<_>>();
        eprintln!(
            "dot_u8i8: testing paths {:?}; skipped (this CPU lacks them): {:?}",
            names(Int8Path::supported()),
            names(Int8Path::skipped())
        );
    });
}

/// The sum in i64, which no length here can overflow.
fn reference(a: &[u8], b: &[i8]) -> i64 {
    a.iter().zip(b).map(|(&x, &y)| x as i64 * y as i64).sum()
}

fn check_all_paths(a: &[u8], b: &[i8], context: &str) {
    let want = reference(a, b);
    for path in Int8Path::supported() {
        let got = dot_u8i8_with(path, a, b).map(i64::from);
        assert_eq!(
            got,
            Ok(want),
            "path {} len {} {context}",
            path.name(),
            a.len()
        );
    }
}

fn operands() -> impl Strategy<Value = (Vec<u8>, Vec<i8>)> {
    (0usize..=200).prop_flat_map(|n| (vec(any::<u8>(), n), vec(any::<i8>(), n)))
}

/// Values near the ends of both ranges, where saturation and sign-extension bugs live.
fn extreme_operands() -> impl Strategy<Value = (Vec<u8>, Vec<i8>)> {
    let u = prop::sample::select(vec![0u8, 1, 127, 128, 254, 255]);
    let i = prop::sample::select(vec![-128i8, -127, -1, 0, 1, 126, 127]);
    (0usize..=200).prop_flat_map(move |n| (vec(u.clone(), n), vec(i.clone(), n)))
}

proptest! {
    #![proptest_config(config(300))]
    #[test]
    fn every_path_matches_the_reference((a, b) in operands()) {
        announce();
        check_all_paths(&a, &b, "random values");
    }

    #[test]
    fn every_path_matches_at_the_extremes((a, b) in extreme_operands()) {
        announce();
        check_all_paths(&a, &b, "extreme values");
    }
}

#[test]
fn constant_extremes_at_every_length_to_200() {
    announce();
    for len in (0..=200).chain([255, 256, 257, 1000]) {
        for (u, i) in [(255u8, -128i8), (255, 127), (128, -128), (0, -128), (1, 1)] {
            let (a, b) = (vec![u; len], vec![i; len]);
            check_all_paths(&a, &b, &format!("all {u} x all {i}"));
        }
        // Alternating signs: lane partial sums cancel differently on every path.
        let a: Vec<u8> = (0..len)
            .map(|k| if k % 3 == 0 { 255 } else { 200 })
            .collect();
        let b: Vec<i8> = (0..len)
            .map(|k| if k % 2 == 0 { -128 } else { 127 })
            .collect();
        check_all_paths(&a, &b, "alternating");
    }
}

#[test]
fn longest_length_is_exact_and_one_more_is_refused() {
    announce();
    let n = MAX_DOT_U8I8_LEN;
    check_all_paths(&vec![255; n], &vec![-128; n], "longest, most negative");
    check_all_paths(&vec![255; n], &vec![127; n], "longest, most positive");
    let e = dot_u8i8(&vec![0; n + 1], &vec![0; n + 1]).unwrap_err();
    assert!(
        matches!(e, TensorError::InvalidArgument { op: "dot_u8i8", .. }),
        "{e}"
    );
    assert!(e.to_string().contains(&(n + 1).to_string()), "{e}");
}

#[test]
fn selected_entry_point_and_bad_calls() {
    announce();
    let a: Vec<u8> = (0..=255).collect();
    let b: Vec<i8> = (-128..=127).collect();
    assert_eq!(dot_u8i8(&a, &b).map(i64::from), Ok(reference(&a, &b)));
    let e = dot_u8i8(&[1, 2], &[1]).unwrap_err();
    assert_eq!(e.to_string(), "dot_u8i8: operand lengths differ (2 vs 1)");
    for path in Int8Path::skipped() {
        eprintln!(
            "dot_u8i8: {} refused on this CPU, as it must be",
            path.name()
        );
        let e = dot_u8i8_with(path, &[1], &[1]).unwrap_err();
        assert!(
            matches!(e, TensorError::UnsupportedPath { path: p, .. } if p == path.name()),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains(tensor_core::dispatch::KernelPath::needs(path)),
            "{e}"
        );
    }
}
