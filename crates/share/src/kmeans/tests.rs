//! Unit tests of k-means: invariants of Lloyd, initialisations, determinism.

use super::*;
use tensor_core::rng::Rng;

fn normal(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::seed_from_u64(seed);
    (0..n).map(|_| 0.1 * rng.normal()).collect()
}

fn naive_objective(values: &[f32], c: &Clustering) -> f64 {
    values
        .iter()
        .zip(&c.assignments)
        .map(|(&v, &a)| (v as f64 - c.codebook.centroids[a as usize] as f64).powi(2))
        .sum()
}

#[test]
fn objective_never_increases() {
    for seed in 0..5 {
        let values = normal(3000, seed);
        for init in [
            Init::Linear,
            Init::Density,
            Init::Random { seed },
            Init::KMeansPlusPlus { seed },
        ] {
            let params = KMeansParams {
                init,
                ..KMeansParams::default()
            };
            let c = kmeans(&values, 32, &params).unwrap();
            for w in c.history.windows(2) {
                assert!(
                    w[1] <= w[0] * (1.0 + 1e-12),
                    "seed {seed}, {init:?}: objective rose {} -> {}",
                    w[0],
                    w[1]
                );
            }
            assert!(
                c.converged,
                "seed {seed}, {init:?}: {} iterations",
                c.iterations
            );
            let naive = naive_objective(&values, &c);
            assert!((naive - c.objective).abs() <= 1e-6 * c.objective.max(1e-12));
        }
    }
}

#[test]
fn converged_result_is_a_lloyd_fixed_point() {
    // Naive reference: every value is at its nearest centroid (brute force), and every
    // used centroid is the mean of its members.
    let values = normal(2000, 9);
    let c = kmeans(&values, 16, &KMeansParams::default()).unwrap();
    assert!(c.converged);
    let cent = &c.codebook.centroids;
    assert!(cent.windows(2).all(|w| w[0] <= w[1]), "sorted");
    for (&v, &a) in values.iter().zip(&c.assignments) {
        let d = (v - cent[a as usize]).abs();
        let best = cent
            .iter()
            .map(|&x| (v - x).abs())
            .fold(f32::INFINITY, f32::min);
        assert!(
            d <= best + 1e-6,
            "value {v}: assigned at {d}, nearest at {best}"
        );
    }
    for (j, &cj) in cent.iter().enumerate() {
        let members: Vec<f64> = values
            .iter()
            .zip(&c.assignments)
            .filter(|&(_, &a)| a as usize == j)
            .map(|(&v, _)| v as f64)
            .collect();
        if !members.is_empty() {
            let mean = members.iter().sum::<f64>() / members.len() as f64;
            assert!((mean - cj as f64).abs() < 1e-6, "centroid {j}");
        }
    }
}

#[test]
fn identical_value_clusters_are_exact() {
    let groups = [-1.5f32, -0.25, 0.0, 0.75, 3.0];
    let values: Vec<f32> = (0..100).map(|i| groups[(i * 7) % 5]).collect();
    let c = kmeans(&values, 5, &KMeansParams::default()).unwrap();
    assert_eq!(c.codebook.centroids, groups);
    assert_eq!(c.objective, 0.0);
    for (&v, &a) in values.iter().zip(&c.assignments) {
        assert_eq!(c.codebook.centroids[a as usize], v);
    }
}

#[test]
fn tight_separated_clusters_are_found_by_lloyd() {
    // k groups at evenly spaced means, jittered so distinct values exceed k (the Lloyd
    // path, not the shortcut): linear initialisation puts one centroid in each.
    let k = 8;
    let mut rng = Rng::seed_from_u64(4);
    let mut values = Vec::new();
    let mut truth = Vec::new();
    for i in 0..400 {
        let g = i % k;
        values.push(g as f32 + 0.01 * (rng.uniform() - 0.5));
        truth.push(g as u32);
    }
    let c = kmeans(&values, k, &KMeansParams::default()).unwrap();
    assert!(c.iterations > 0);
    assert_eq!(c.assignments, truth);
    for (j, &cj) in c.codebook.centroids.iter().enumerate() {
        assert!((cj - j as f32).abs() < 0.005, "centroid {j} = {cj}");
    }
}

#[test]
fn k_at_least_distinct_values_gives_zero_error() {
    let values = [0.5f32, 0.5, -2.0, 0.1, -2.0, 7.0];
    for k in [4, 5, 256] {
        let c = kmeans(&values, k, &KMeansParams::default()).unwrap();
        assert_eq!(c.objective, 0.0, "k = {k}");
        assert_eq!(c.codebook.len(), 4);
    }
    let c = kmeans(&[3.0; 10], 1, &KMeansParams::default()).unwrap();
    assert_eq!(
        (c.codebook.centroids.clone(), c.objective),
        (vec![3.0], 0.0)
    );
}

#[test]
fn k_one_is_the_mean() {
    let c = kmeans(&[1.0, 2.0, 6.0], 1, &KMeansParams::default()).unwrap();
    assert_eq!(c.codebook.centroids, vec![3.0]);
    assert_eq!(c.objective, 4.0 + 1.0 + 9.0);
}

#[test]
fn rejects_bad_input() {
    let p = KMeansParams::default();
    assert!(matches!(kmeans(&[], 4, &p), Err(ShareError::Empty { .. })));
    assert!(matches!(
        kmeans(&[1.0], 0, &p),
        Err(ShareError::InvalidK { .. })
    ));
    let e = kmeans(&[1.0, f32::INFINITY], 2, &p).unwrap_err();
    assert!(e.to_string().contains("value 1 is inf"), "{e}");
}

#[test]
fn codebook_nearest() {
    let cb = Codebook {
        centroids: vec![0.0, -1.0, 2.0],
    };
    assert_eq!(cb.nearest(-0.6), Some(1));
    assert_eq!(cb.nearest(1.0), Some(0)); // tie -> lower index
    assert_eq!(Codebook { centroids: vec![] }.nearest(1.0), None);
}

#[test]
fn same_seed_same_codebook_bits() {
    let values = normal(5000, 2);
    for init in [Init::Random { seed: 5 }, Init::KMeansPlusPlus { seed: 5 }] {
        let p = KMeansParams {
            init,
            ..KMeansParams::default()
        };
        let bits = |c: &Clustering| -> Vec<u32> {
            c.codebook.centroids.iter().map(|x| x.to_bits()).collect()
        };
        let (a, b) = (
            kmeans(&values, 10, &p).unwrap(),
            kmeans(&values, 10, &p).unwrap(),
        );
        assert_eq!(bits(&a), bits(&b), "{init:?}");
        assert_eq!(a, b, "{init:?}");
        // Another seed starts elsewhere (the codebooks may still meet at the same optimum).
        let other = KMeansParams {
            init: match init {
                Init::Random { .. } => Init::Random { seed: 6 },
                _ => Init::KMeansPlusPlus { seed: 6 },
            },
            max_iterations: 0,
        };
        let first = |p: &KMeansParams| kmeans(&values, 10, p).unwrap().history[0];
        let p0 = KMeansParams {
            max_iterations: 0,
            ..p
        };
        assert_ne!(
            first(&p0),
            first(&other),
            "{init:?}: seeds 5 and 6 start alike"
        );
    }
}

#[test]
fn large_input_matches_per_value_reference() {
    // Above the parallel threshold: the run-based step agrees with a per-value brute force
    // (nearest centroid) and the objective with a naive sum.
    let values = normal(300_000, 11);
    let c = kmeans(
        &values,
        31,
        &KMeansParams {
            init: Init::KMeansPlusPlus { seed: 3 },
            max_iterations: 40,
        },
    )
    .unwrap();
    let cent = &c.codebook.centroids;
    for (i, (&v, &a)) in values.iter().zip(&c.assignments).enumerate().step_by(7) {
        let d = (v - cent[a as usize]).abs();
        let best = cent
            .iter()
            .map(|&x| (v - x).abs())
            .fold(f32::INFINITY, f32::min);
        assert!(
            d <= best + 1e-6,
            "value {i} = {v}: at {d}, nearest at {best}"
        );
    }
    let naive = naive_objective(&values, &c);
    assert!(
        (naive - c.objective).abs() <= 1e-6 * c.objective,
        "{naive} vs {}",
        c.objective
    );
    for w in c.history.windows(2) {
        assert!(w[1] <= w[0] * (1.0 + 1e-12), "rose {} -> {}", w[0], w[1]);
    }
}

#[test]
fn same_seed_same_result() {
    let values = normal(500, 2);
    let p = KMeansParams {
        init: Init::Random { seed: 5 },
        ..KMeansParams::default()
    };
    assert_eq!(
        kmeans(&values, 10, &p).unwrap(),
        kmeans(&values, 10, &p).unwrap()
    );
}

#[test]
fn block_sums_match_direct_sums() {
    // Anchored block statistics against value-by-value sums, for runs that start and end
    // inside blocks, span whole blocks, or are empty.
    let mut values = normal(10_000, 13);
    values.sort_by(f32::total_cmp);
    let blocks = Blocks::new(&values);
    let bounds = [0, 0, 5, 1024, 1030, 4096, 4097, 9999, 10_000];
    let centroids = [-0.3, -0.2, -0.1, 0.0, 0.01, 0.1, 0.2, 0.3];
    let stats = run_stats(&values, &blocks, &bounds, &centroids);
    for j in 0..centroids.len() {
        let run = &values[bounds[j]..bounds[j + 1]];
        let sum: f64 = run.iter().map(|&v| v as f64).sum();
        let sq: f64 = run.iter().map(|&v| (v as f64 - centroids[j]).powi(2)).sum();
        assert!(
            (stats[j].sum - sum).abs() <= 1e-12 * (1.0 + sum.abs()),
            "run {j} sum"
        );
        assert!(
            (stats[j].squares - sq).abs() <= 1e-12 * sq.max(1e-300),
            "run {j} squares"
        );
    }
}
