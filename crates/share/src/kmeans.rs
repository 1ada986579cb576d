//! 1-D k-means (Lloyd's algorithm) over the weights of one layer.
//!
//! Deep Compression (Han, Mao, Dally, ICLR 2016), section 3.1: the `n` weights
//! `W = {w_1..w_n}` of a layer are partitioned into `k` clusters `C = {c_1..c_k}` minimising
//! the within-cluster sum of squares
//!
//! ```text
//! argmin_C  sum_{i=1..k} sum_{w in c_i} |w - c_i|^2        (equation 1)
//! ```
//!
//! Lloyd's algorithm alternates an assignment step (each value to its nearest centroid) and
//! an update step (each centroid to the mean of its members); neither step can increase the
//! objective, so [`Clustering::history`] is non-increasing. In one dimension the nearest
//! centroid is found by binary search in the sorted centroids (`O(n log k)` per iteration).
//!
//! Section 3.2 compares three initialisations ([`Init`]); linear initialisation, centroids
//! evenly spaced between the smallest and the largest weight, worked best, because it keeps
//! centroids on the rare large weights that matter most. A cluster that ends an assignment
//! step empty keeps its centroid (so linear initialisation may leave unused codes, as in the
//! paper).
//!
//! When `k` is at least the number of distinct values, the optimum is known: each distinct
//! value is its own centroid (objective 0), and [`kmeans`] returns it directly, with fewer
//! than `k` centroids.

use tensor_core::rng::Rng;

use crate::error::{Result, ShareError};

/// How the centroids start (Deep Compression, section 3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Init {
    /// Evenly spaced between min and max: `c_j = min + (max - min) * j / (k - 1)` (the
    /// paper's best).
    #[default]
    Linear,
    /// Evenly spaced in the CDF: `c_j` = the `(j + 1/2) / k` quantile of the values.
    Density,
    /// Forgy: `k` values drawn at random from the data (without replacement when `k <= n`).
    Random {
        /// Seed of the draw.
        seed: u64,
    },
}

/// Options of [`kmeans`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KMeansParams {
    /// Initialisation. Default [`Init::Linear`].
    pub init: Init,
    /// Most update steps. Default 300: on 3,000 normal values with k = 32, Lloyd converged
    /// (no assignment changed) after 31-84 steps from linear, 61-128 from density and 63-160
    /// from random initialisation (5 seeds each, measured for this default).
    pub max_iterations: usize,
}

impl Default for KMeansParams {
    fn default() -> Self {
        Self {
            init: Init::Linear,
            max_iterations: 300,
        }
    }
}

/// The shared values of a layer: code `j` stands for `centroids[j]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Codebook {
    /// The centroids (f32 rounding of the f64 means k-means computes).
    pub centroids: Vec<f32>,
}

impl Codebook {
    /// Number of centroids.
    pub fn len(&self) -> usize {
        self.centroids.len()
    }

    /// Whether the codebook is empty.
    pub fn is_empty(&self) -> bool {
        self.centroids.is_empty()
    }

    /// The index of the centroid nearest `value` (lowest index on ties; `None` if empty).
    /// A linear scan, valid for any centroid order.
    pub fn nearest(&self, value: f32) -> Option<usize> {
        let mut best: Option<(usize, f32)> = None;
        for (j, &c) in self.centroids.iter().enumerate() {
            let d = (value - c).abs();
            if best.is_none_or(|(_, bd)| d < bd) {
                best = Some((j, d));
            }
        }
        best.map(|(j, _)| j)
    }
}

/// The result of [`kmeans`].
#[derive(Clone, Debug, PartialEq)]
pub struct Clustering {
    /// The centroids, sorted ascending.
    pub codebook: Codebook,
    /// The cluster of every input value (an index into the codebook), nearest by the f64
    /// centroids.
    pub assignments: Vec<u32>,
    /// The final objective, `sum_i (w_i - c_{a(i)})^2`, in f64.
    pub objective: f64,
    /// The objective after every assignment step, first to last (non-increasing).
    pub history: Vec<f64>,
    /// Update steps run.
    pub iterations: usize,
    /// Whether an assignment step changed nothing (false: stopped at `max_iterations`).
    pub converged: bool,
}

/// Clusters `values` into at most `k` clusters (module docs: Lloyd's algorithm, equation 1
/// of Deep Compression).
///
/// Errors: `values` empty; `k == 0`; a value that is not finite.
pub fn kmeans(values: &[f32], k: usize, params: &KMeansParams) -> Result<Clustering> {
    const OP: &str = "kmeans";
    if values.is_empty() {
        return Err(ShareError::Empty { op: OP });
    }
    if k == 0 {
        return Err(ShareError::InvalidK { op: OP, k });
    }
    if let Some(index) = values.iter().position(|v| !v.is_finite()) {
        return Err(ShareError::NonFinite {
            op: OP,
            index,
            value: values[index],
        });
    }
    let mut sorted: Vec<f32> = values.to_vec();
    sorted.sort_by(f32::total_cmp);
    let mut distinct = sorted.clone();
    distinct.dedup_by(|a, b| a == b);
    if distinct.len() <= k {
        // Known optimum: every distinct value is a centroid.
        let centroids: Vec<f64> = distinct.iter().map(|&v| v as f64).collect();
        let mut assignments = vec![0u32; values.len()];
        let objective = assign(values, &centroids, &mut assignments).1;
        return Ok(Clustering {
            codebook: Codebook {
                centroids: distinct,
            },
            assignments,
            objective,
            history: vec![objective],
            iterations: 0,
            converged: true,
        });
    }
    let mut centroids = initial_centroids(&sorted, k, params.init);
    centroids.sort_by(f64::total_cmp);
    let mut assignments = vec![u32::MAX; values.len()];
    let mut history = Vec::new();
    let mut iterations = 0;
    let mut converged = false;
    let mut sum = vec![0.0f64; k];
    let mut count = vec![0usize; k];
    loop {
        let (changed, objective) = assign(values, &centroids, &mut assignments);
        history.push(objective);
        if !changed {
            converged = true;
            break;
        }
        if iterations == params.max_iterations {
            break;
        }
        // Update: each non-empty cluster's centroid moves to the mean of its members.
        sum.fill(0.0);
        count.fill(0);
        for (&v, &a) in values.iter().zip(&assignments) {
            sum[a as usize] += v as f64;
            count[a as usize] += 1;
        }
        for j in 0..k {
            if count[j] > 0 {
                centroids[j] = sum[j] / count[j] as f64;
            }
        }
        // Means of non-empty clusters stay ordered (1-D clusters are intervals); an empty
        // cluster's centroid may now be out of place. The assignment step needs them sorted.
        centroids.sort_by(f64::total_cmp);
        iterations += 1;
    }
    let objective = *history.last().unwrap_or(&0.0);
    Ok(Clustering {
        codebook: Codebook {
            centroids: centroids.iter().map(|&c| c as f32).collect(),
        },
        assignments,
        objective,
        history,
        iterations,
        converged,
    })
}

/// Starting centroids (unsorted for `Random`). `sorted` is the sorted data, `k >= 1`.
fn initial_centroids(sorted: &[f32], k: usize, init: Init) -> Vec<f64> {
    let n = sorted.len();
    let (lo, hi) = (sorted[0] as f64, sorted[n - 1] as f64);
    match init {
        Init::Linear if k == 1 => vec![(lo + hi) / 2.0],
        Init::Linear => (0..k)
            .map(|j| lo + (hi - lo) * j as f64 / (k - 1) as f64)
            .collect(),
        Init::Density => (0..k)
            .map(|j| {
                let q = ((j as f64 + 0.5) / k as f64 * n as f64) as usize;
                sorted[q.min(n - 1)] as f64
            })
            .collect(),
        Init::Random { seed } => {
            let mut rng = Rng::seed_from_u64(seed);
            if k <= n {
                // Partial Fisher-Yates: the first k positions of a random permutation.
                let mut idx: Vec<usize> = (0..n).collect();
                for j in 0..k {
                    let r = j + rng.below(n - j);
                    idx.swap(j, r);
                }
                idx[..k].iter().map(|&i| sorted[i] as f64).collect()
            } else {
                (0..k).map(|_| sorted[rng.below(n)] as f64).collect()
            }
        }
    }
}

/// Assignment step: each value to its nearest centroid (`centroids` sorted; lower index on
/// ties). Returns whether any assignment changed, and the objective.
fn assign(values: &[f32], centroids: &[f64], assignments: &mut [u32]) -> (bool, f64) {
    let k = centroids.len();
    let mut changed = false;
    let mut objective = 0.0f64;
    for (&v, a) in values.iter().zip(assignments.iter_mut()) {
        let v = v as f64;
        let p = centroids.partition_point(|&c| c < v);
        let best = if p == 0 {
            0
        } else if p == k || v - centroids[p - 1] <= centroids[p] - v {
            p - 1
        } else {
            p
        };
        let d = v - centroids[best];
        objective += d * d;
        if *a != best as u32 {
            *a = best as u32;
            changed = true;
        }
    }
    (changed, objective)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            for init in [Init::Linear, Init::Density, Init::Random { seed }] {
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
}
