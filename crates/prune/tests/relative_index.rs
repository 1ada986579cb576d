//! Property test: relative-index encoding round-trips over random masks and field widths,
//! and every stored gap fits its field.

use proptest::prelude::*;
use prune::RelativeIndexed;

/// Dense vectors with runs of zeros around the field boundaries: each run is drawn near
/// `0`, `2^bits - 1`, `2^bits` or a multiple of it, so exact-fit, one-filler and
/// many-filler cases all occur; the vector may start with a nonzero or not.
fn dense_and_bits() -> impl Strategy<Value = (Vec<u16>, u32)> {
    (1u32..=9)
        .prop_flat_map(|bits| {
            let cap = 1usize << bits;
            let run = prop_oneof![
                0usize..3,
                (cap - 2)..(cap + 2),
                (2 * cap - 1)..(2 * cap + 2),
                0usize..(3 * cap),
            ];
            (
                prop::collection::vec((run, 1u16..300), 0..40),
                0usize..(2 * cap),
                Just(bits),
            )
        })
        .prop_map(|(runs, tail, bits)| {
            let mut d = Vec::new();
            for (zeros, v) in runs {
                d.extend(std::iter::repeat_n(0u16, zeros));
                d.push(v);
            }
            d.extend(std::iter::repeat_n(0u16, tail));
            (d, bits)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn round_trip((dense, bits) in dense_and_bits()) {
        let r = RelativeIndexed::encode(&dense, bits).unwrap();
        let max = (1u32 << bits) - 1;
        prop_assert!(r.gaps.iter().all(|&g| g as u32 <= max));
        let nonzeros = dense.iter().filter(|&&v| v != 0).count();
        prop_assert_eq!(r.entries() - r.fillers(), nonzeros);
        // The fewest fillers that work: one per full (max + 1)-position stretch of a run
        // longer than max.
        let mut expected_fillers = 0usize;
        let mut zeros = 0usize;
        for &v in &dense {
            if v == 0 {
                zeros += 1;
            } else {
                expected_fillers += zeros / (max as usize + 1);
                zeros = 0;
            }
        }
        prop_assert_eq!(r.fillers(), expected_fillers);
        prop_assert_eq!(r.decode().unwrap(), dense);
    }

    #[test]
    fn round_trip_f32(keep in prop::collection::vec(any::<bool>(), 0..600), bits in 1u32..=16) {
        let dense: Vec<f32> = keep
            .iter()
            .enumerate()
            .map(|(i, &k)| if k { i as f32 + 0.5 } else { 0.0 })
            .collect();
        let r = RelativeIndexed::encode(&dense, bits).unwrap();
        prop_assert_eq!(r.decode().unwrap(), dense);
    }
}
