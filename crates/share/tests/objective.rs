//! Property test: k-means never increases its objective, its assignments are nearest
//! centroids, and `k >= distinct values` gives zero error, over random data, k and every
//! initialisation (linear, density, Forgy, k-means++).

use proptest::prelude::*;
use share::{Init, KMeansParams, kmeans};

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn lloyd_invariants(
        values in prop::collection::vec(-100i32..100, 1..300),
        k in 1usize..40,
        init in 0u8..4,
        seed in any::<u64>(),
    ) {
        // Small integers scaled: many ties and repeated values, exact in f32.
        let values: Vec<f32> = values.iter().map(|&v| v as f32 / 8.0).collect();
        let init = match init {
            0 => Init::Linear,
            1 => Init::Density,
            2 => Init::Random { seed },
            _ => Init::KMeansPlusPlus { seed },
        };
        let c = kmeans(&values, k, &KMeansParams { init, ..KMeansParams::default() }).unwrap();
        for w in c.history.windows(2) {
            prop_assert!(w[1] <= w[0] * (1.0 + 1e-12) + 1e-12, "rose {} -> {}", w[0], w[1]);
        }
        prop_assert!(c.codebook.len() <= k);
        let cent = &c.codebook.centroids;
        for (&v, &a) in values.iter().zip(&c.assignments) {
            let d = (v - cent[a as usize]).abs();
            let best = cent.iter().map(|&x| (v - x).abs()).fold(f32::INFINITY, f32::min);
            prop_assert!(d <= best + 1e-5);
        }
        let mut distinct = values.clone();
        distinct.sort_by(f32::total_cmp);
        distinct.dedup();
        if k >= distinct.len() {
            prop_assert_eq!(c.objective, 0.0);
        }
    }
}
