//! The SVD's invariants (reconstruction error = discarded energy, exact at full rank) and
//! the rank rules on constructed spectra.

use decompose::{RankRule, Svd, kept_fraction, largest_rank_within, rank_by_energy};
use proptest::prelude::*;
use tensor_core::rng::Rng;

fn random(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::seed_from_u64(seed);
    (0..rows * cols).map(|_| rng.normal()).collect()
}

/// `||a - b||_F^2` in f64.
fn sq_err(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum()
}

/// Checks, for every rank, `||A - A_r||_F^2 = sum_{i>r} s_i^2` within a tolerance scaled by
/// the size and the matrix's energy (f32 factors), and that the energies add up.
fn check_error_is_discarded_energy(rows: usize, cols: usize, seed: u64) {
    let a = random(rows, cols, seed);
    let svd = Svd::of(&a, rows, cols).unwrap();
    let total = svd.total_energy();
    let frob: f64 = a.iter().map(|&v| (v as f64).powi(2)).sum();
    assert!((total - frob).abs() <= 1e-9 * frob.max(1.0), "seed {seed}");
    let s = svd.singular_values();
    assert!(
        s.windows(2).all(|w| w[0] >= w[1]),
        "not sorted, seed {seed}"
    );
    // f32 rounding of the factors and of the product: about eps * sqrt(k) per entry.
    let tol = 1e-5 * (rows.max(cols) as f64) * frob.max(1.0);
    for r in 1..=svd.max_rank() {
        let f = svd.factors(r).unwrap();
        let err = sq_err(&a, &f.product(rows, cols));
        let discarded = svd.discarded_energy(r);
        assert!(
            (err - discarded).abs() <= tol,
            "{rows}x{cols} rank {r} seed {seed}: error {err} vs discarded {discarded}"
        );
    }
}

#[test]
fn reconstruction_error_equals_discarded_energy() {
    check_error_is_discarded_energy(30, 12, 1);
    check_error_is_discarded_energy(12, 30, 2);
    check_error_is_discarded_energy(17, 17, 3);
    check_error_is_discarded_energy(1, 9, 4);
}

#[test]
fn full_rank_reconstructs_within_a_size_scaled_tolerance() {
    for (rows, cols, seed) in [(300, 784, 5), (10, 500, 6), (96, 96, 7)] {
        let a = random(rows, cols, seed);
        let svd = Svd::of(&a, rows, cols).unwrap();
        let f = svd.factors(svd.max_rank()).unwrap();
        let back = f.product(rows, cols);
        let max = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let tol = 4.0 * f32::EPSILON * (rows.min(cols) as f32).sqrt() * max;
        for (i, (&x, &y)) in a.iter().zip(&back).enumerate() {
            assert!((x - y).abs() <= tol, "{rows}x{cols} entry {i}: {x} vs {y}");
        }
    }
}

#[test]
fn a_rank_two_matrix_has_two_nonzero_singular_values() {
    // A = u1 v1^T * 3 + u2 v2^T, built exactly.
    let (rows, cols) = (6, 5);
    let u = random(rows, 2, 8);
    let v = random(2, cols, 9);
    let a: Vec<f32> = (0..rows * cols)
        .map(|i| {
            let (r, c) = (i / cols, i % cols);
            3.0 * u[r * 2] * v[c] + u[r * 2 + 1] * v[cols + c]
        })
        .collect();
    let svd = Svd::of(&a, rows, cols).unwrap();
    let s = svd.singular_values();
    assert!(s[2] < 1e-5 * s[0], "{s:?}");
    assert!(svd.kept_energy(2) > 1.0 - 1e-9);
    let err = sq_err(&a, &svd.factors(2).unwrap().product(rows, cols));
    assert!(err < 1e-9 * svd.total_energy());
}

#[test]
fn bad_inputs_are_errors_naming_the_values() {
    let e = Svd::of(&[1.0, f32::NAN], 1, 2).unwrap_err();
    assert_eq!(e.to_string(), "svd: entry 1 is NaN, not finite");
    assert!(Svd::of(&[1.0; 5], 2, 3).is_err());
    let svd = Svd::of(&random(4, 3, 10), 4, 3).unwrap();
    let e = svd.factors(4).unwrap_err();
    assert_eq!(e.to_string(), "svd factors: rank 4 is outside 1..=3");
    assert!(svd.factors(0).is_err());
}

#[test]
fn ranks_by_energy_on_a_constructed_spectrum() {
    // Energies 16, 4, 1, 1 of 22: kept 0.727, 0.909, 0.955, 1.
    let s = [4.0, 2.0, 1.0, 1.0];
    assert_eq!(rank_by_energy(&s, 0.5), 1);
    assert_eq!(rank_by_energy(&s, 16.0 / 22.0), 1);
    assert_eq!(rank_by_energy(&s, 0.8), 2);
    assert_eq!(rank_by_energy(&s, 0.95), 3);
    assert_eq!(rank_by_energy(&s, 0.96), 4);
    assert_eq!(rank_by_energy(&s, 1.0), 4);
    assert!((kept_fraction(&s, 2) - 20.0 / 22.0).abs() < 1e-15);
    assert_eq!(kept_fraction(&[0.0, 0.0], 1), 1.0);
}

#[test]
fn ranks_by_mac_budget_on_a_linear_layer() {
    // fc1 of lenet300: 784 x 300 = 235,200 MACs; a rank-r pair needs r * 1084.
    let macs = |r: usize| r as u64 * 1084;
    let s = vec![1.0; 300];
    // 10% = 23,520: rank 21 needs 22,764, rank 22 needs 23,848.
    assert_eq!(RankRule::Macs(0.1).rank(&s, 235_200, &macs), 21);
    assert_eq!(largest_rank_within(300, 1084, &macs), 1);
    assert_eq!(
        largest_rank_within(300, 1083, &macs),
        1,
        "rank 1 even when over"
    );
    assert_eq!(largest_rank_within(300, u64::MAX, &macs), 300);
    assert_eq!(RankRule::Given(500).rank(&s, 235_200, &macs), 300);
    assert_eq!(RankRule::Given(7).rank(&s, 235_200, &macs), 7);
}

#[test]
fn rank_rules_validate_their_values() {
    assert!(RankRule::Given(0).validate().is_err());
    assert!(RankRule::Energy(0.0).validate().is_err());
    assert!(RankRule::Energy(1.01).validate().is_err());
    assert!(RankRule::Macs(f64::NAN).validate().is_err());
    assert_eq!(
        RankRule::Energy(1.5).validate().unwrap_err().to_string(),
        "rank rule: energy = 1.5 is outside (0, 1]"
    );
    assert!(RankRule::Energy(1.0).validate().is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn error_is_discarded_energy_over_edge_sizes(
        rows in 1usize..20, cols in 1usize..20, seed in any::<u64>()
    ) {
        check_error_is_discarded_energy(rows, cols, seed);
    }
}
