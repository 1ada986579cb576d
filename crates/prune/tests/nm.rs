//! N:M masks: every group of M consecutive weights of a row keeps exactly N (min(N, length)
//! for a shorter tail), the largest by magnitude; a 2:4-pruned model stored in sparse layers
//! computes what the masked dense model computes.

use nn::{LayerPath, Mode};
use proptest::prelude::*;
use prune::{NmPattern, nm_mask, nm_masks};
use tensor_core::Tensor;
use tensor_core::rng::Rng;
use tensor_core::testing::assert_close;

proptest! {
    #[test]
    fn every_group_keeps_its_n_largest(
        rows in 1usize..5,
        row_len in 0usize..23,
        m in 1usize..9,
        n_raw in 1usize..9,
        seed in any::<u64>(),
    ) {
        let n = 1 + (n_raw - 1) % m;
        let pattern = NmPattern::new(n, m).unwrap();
        let mut rng = Rng::seed_from_u64(seed);
        // Small integers make ties common, the case tie-breaking must get right.
        let w: Vec<f32> = (0..rows * row_len).map(|_| (rng.uniform() * 7.0).floor() - 3.0).collect();
        let mask = nm_mask(&w, rows, pattern).unwrap();
        prop_assert_eq!(mask.len(), w.len());
        for r in 0..rows {
            for start in (0..row_len).step_by(m) {
                let g: Vec<usize> = (r * row_len + start..r * row_len + (start + m).min(row_len)).collect();
                let kept: Vec<usize> = g.iter().copied().filter(|&i| mask.keeps(i)).collect();
                prop_assert_eq!(kept.len(), n.min(g.len()), "seed {} row {} group at {}", seed, r, start);
                let min_kept = kept.iter().map(|&i| w[i].abs()).fold(f32::MAX, f32::min);
                for &i in g.iter().filter(|&&i| !mask.keeps(i)) {
                    prop_assert!(w[i].abs() <= min_kept, "seed {}: dropped {} > kept {}", seed, w[i], min_kept);
                }
            }
        }
    }
}

#[test]
fn a_two_four_lenet5_runs_sparse_and_equals_the_masked_dense_model() {
    let mut rng = Rng::seed_from_u64(21);
    let mut model = nn::zoo::build("lenet5", &mut rng).unwrap();
    let masks = nm_masks(&model, NmPattern::default()).unwrap();
    // Rows of conv1 are 25 long (six groups of 4 and a tail of 1 kept whole): 13 of 25.
    let d = masks.densities();
    assert!((d[0].1 - 13.0 / 25.0).abs() < 1e-9, "{d:?}");
    for (_, density) in &d[1..] {
        assert_eq!(*density, 0.5);
    }
    masks.apply(&mut model).unwrap();
    let x = Tensor::new(
        &[2, 1, 28, 28],
        (0..2 * 784).map(|_| rng.uniform()).collect(),
    )
    .unwrap();
    let dense = model.forward(&x, Mode::Eval).unwrap();
    assert_eq!(prune::sparsify(&mut model, 1.0).unwrap(), 4);
    assert_eq!(
        model.layer(&LayerPath::top(5)).unwrap().kind(),
        "sparse_linear"
    );
    let sparse = model.forward(&x, Mode::Eval).unwrap();
    assert_close(sparse.data(), dense.data(), 1e-4, 1e-5);
}
