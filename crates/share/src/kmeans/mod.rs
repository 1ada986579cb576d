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
//! objective, so [`Clustering::history`] is non-increasing.
//!
//! # One dimension makes it cheap
//! The data are sorted once. With sorted centroids, the values nearest centroid `j` form a
//! contiguous run of the sorted data, so an assignment step is `k - 1` binary searches for
//! the run boundaries (`O(k log n log k)`), not `n` searches, and it changed nothing exactly
//! when no boundary moved. The update and the objective need, per run, the sum of its
//! values and of their squared distances to its centroid. Those come from statistics of
//! fixed blocks of `BLOCK` (256) sorted values, computed once: each block keeps its first value
//! `a` as an anchor and `sum (v - a)`, `sum (v - a)^2`, so that
//! `sum (v - c)^2 = sum (v - a)^2 + 2 (a - c) sum (v - a) + m (a - c)^2` over its `m`
//! values. The anchor is the smallest value of the block, so no term dwarfs the result
//! (plain prefix sums of `v^2` would cancel catastrophically near convergence). A run sums
//! its whole blocks that way and its two partial ends value by value: `O(n / BLOCK + k
//! BLOCK)` per step instead of `O(n)` (`BLOCK = 256`: about 80k terms for 16M values and
//! k = 32), always in the same order. The original order is
//! visited once at the end, to give every value its cluster.
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

use rayon::prelude::*;

use crate::error::{Result, ShareError, check_finite};

mod init;
mod sort;
#[cfg(test)]
mod tests;

/// How the centroids start (Deep Compression, section 3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Init {
    /// Evenly spaced between min and max: `c_j = min + (max - min) * j / (k - 1)` (the
    /// paper's best).
    #[default]
    Linear,
    /// Evenly spaced in the CDF: `c_j` = the `(j + 1/2) / k` quantile of the values.
    Density,
    /// Forgy: `k` distinct positions of the data drawn at random.
    Random {
        /// Seed of the draw.
        seed: u64,
    },
    /// k-means++ (Arthur and Vassilvitskii, 2007): the first centroid a uniformly drawn
    /// value, each next one a value drawn with probability `D(x)^2 / sum_y D(y)^2`, where
    /// `D(x)` is the distance from `x` to the nearest centroid drawn so far.
    KMeansPlusPlus {
        /// Seed of the draws.
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
    /// from random initialisation (5 seeds each, measured for this default). Large layers
    /// converge slowly: 16M normal values with k = 32 took 2,971 steps from linear
    /// initialisation, and stopping at 300 left the objective 1.3% above the fixed point
    /// (steps are cheap here, `O(n / 256 + 256 k)`: raise this for large layers).
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
    check_finite(OP, values)?;
    let mut sorted: Vec<f32> = values.to_vec();
    sort::sort_total(&mut sorted);
    if let Some(distinct) = distinct_at_most(&sorted, k) {
        // Known optimum: every distinct value is a centroid.
        let centroids: Vec<f64> = distinct.iter().map(|&v| v as f64).collect();
        let bounds = run_boundaries(&sorted, &centroids);
        let assignments = assign_all(values, &sorted, &bounds);
        let objective = objective_of(values, &assignments, &centroids);
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
    let mut centroids = init::initial_centroids(&sorted, k, params.init);
    centroids.sort_by(f64::total_cmp);
    let mut history = Vec::new();
    let mut iterations = 0;
    let mut converged = false;
    let mut previous: Option<Vec<usize>> = None;
    let blocks = Blocks::new(&sorted);
    let bounds = loop {
        let bounds = run_boundaries(&sorted, &centroids);
        let stats = run_stats(&sorted, &blocks, &bounds, &centroids);
        history.push(stats.iter().map(|s| s.squares).sum());
        if previous.as_ref() == Some(&bounds) {
            converged = true;
            break bounds;
        }
        if iterations == params.max_iterations {
            break bounds;
        }
        // Update: each non-empty cluster's centroid moves to the mean of its members.
        for (j, s) in stats.iter().enumerate() {
            let count = bounds[j + 1] - bounds[j];
            if count > 0 {
                centroids[j] = s.sum / count as f64;
            }
        }
        // Means of non-empty clusters stay ordered (their runs are); an empty cluster's
        // centroid may now be out of place. The assignment step needs them sorted.
        centroids.sort_by(f64::total_cmp);
        previous = Some(bounds);
        iterations += 1;
    };
    let assignments = assign_all(values, &sorted, &bounds);
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

/// The distinct values of `sorted` if there are at most `k` of them.
fn distinct_at_most(sorted: &[f32], k: usize) -> Option<Vec<f32>> {
    let mut distinct: Vec<f32> = Vec::new();
    for &v in sorted {
        if distinct.last() != Some(&v) {
            if distinct.len() == k {
                return None;
            }
            distinct.push(v);
        }
    }
    Some(distinct)
}

/// The index of the nearest of the sorted `centroids` to `v`: binary search, the lower of
/// the two neighbours on a tie. Non-decreasing in `v` (both distances are monotone).
fn nearest_sorted(v: f64, centroids: &[f64]) -> usize {
    let p = centroids.partition_point(|&c| c < v);
    if p == 0 {
        0
    } else if p == centroids.len() || v - centroids[p - 1] <= centroids[p] - v {
        p - 1
    } else {
        p
    }
}

/// Assignment step on the sorted data: `bounds[j]..bounds[j + 1]` is the run of values
/// nearest centroid `j` (`k + 1` entries, from 0 to `n`).
fn run_boundaries(sorted: &[f32], centroids: &[f64]) -> Vec<usize> {
    let k = centroids.len();
    let mut bounds = Vec::with_capacity(k + 1);
    bounds.push(0);
    for j in 1..k {
        bounds.push(sorted.partition_point(|&v| nearest_sorted(v as f64, centroids) < j));
    }
    bounds.push(sorted.len());
    bounds
}

/// Sum and squared distance to the centroid of one cluster's run.
#[derive(Clone, Copy, Default)]
struct RunStats {
    sum: f64,
    squares: f64,
}

/// Sorted values per block of [`Blocks`].
const BLOCK: usize = 256;

/// Anchored sums of every whole block of [`BLOCK`] sorted values (module docs).
struct Blocks {
    /// First (smallest) value of each block.
    anchor: Vec<f64>,
    /// `sum (v - anchor)` per block.
    s1: Vec<f64>,
    /// `sum (v - anchor)^2` per block.
    s2: Vec<f64>,
}

impl Blocks {
    fn new(sorted: &[f32]) -> Self {
        let stats: Vec<(f64, f64, f64)> = sorted
            .par_chunks_exact(BLOCK)
            .map(|b| {
                let a = b[0] as f64;
                let s = chunk_stats(b, a);
                (a, s.sum - BLOCK as f64 * a, s.squares)
            })
            .collect();
        Self {
            anchor: stats.iter().map(|s| s.0).collect(),
            s1: stats.iter().map(|s| s.1).collect(),
            s2: stats.iter().map(|s| s.2).collect(),
        }
    }
}

/// Sums of every run and of its squared distances to its centroid, in f64: whole blocks
/// from their anchored sums, the ends value by value.
fn run_stats(
    sorted: &[f32],
    blocks: &Blocks,
    bounds: &[usize],
    centroids: &[f64],
) -> Vec<RunStats> {
    let m = BLOCK as f64;
    (0..centroids.len())
        .map(|j| {
            let (s, e, c) = (bounds[j], bounds[j + 1], centroids[j]);
            let (first, last) = (s.div_ceil(BLOCK), e / BLOCK);
            if first >= last {
                return chunk_stats(&sorted[s..e], c);
            }
            let mut st = chunk_stats(&sorted[s..first * BLOCK], c);
            for b in first..last {
                let (a, s1, s2) = (blocks.anchor[b], blocks.s1[b], blocks.s2[b]);
                let d = a - c;
                st.sum += m * a + s1;
                st.squares += s2 + 2.0 * d * s1 + m * d * d;
            }
            let end = chunk_stats(&sorted[last * BLOCK..e], c);
            RunStats {
                sum: st.sum + end.sum,
                squares: st.squares + end.squares,
            }
        })
        .collect()
}

/// [`RunStats`] of consecutive values, four lanes at a time (the compiler vectorises fixed
/// lanes; it may not reorder one float sum).
fn chunk_stats(values: &[f32], c: f64) -> RunStats {
    let mut sum = [0.0f64; 4];
    let mut squares = [0.0f64; 4];
    let lanes = values.chunks_exact(4);
    let rest = lanes.remainder();
    for quad in lanes {
        for l in 0..4 {
            let v = quad[l] as f64;
            sum[l] += v;
            squares[l] += (v - c) * (v - c);
        }
    }
    for &v in rest {
        let v = v as f64;
        sum[0] += v;
        squares[0] += (v - c) * (v - c);
    }
    RunStats {
        sum: (sum[0] + sum[1]) + (sum[2] + sum[3]),
        squares: (squares[0] + squares[1]) + (squares[2] + squares[3]),
    }
}

/// Values per parallel task of [`assign_all`].
const CHUNK: usize = 1 << 16;

/// The cluster of every value, in the original order, from the runs of the last assignment
/// step: run `j` starts at the sorted value `t_j`, and since the nearest centroid is
/// non-decreasing in the value, a value's cluster is the number of run starts `t_j <= v`
/// (`j >= 1`, non-empty tails only). A count over at most 64 starts vectorises; more are
/// binary-searched. Parallel; each value is independent.
fn assign_all(values: &[f32], sorted: &[f32], bounds: &[usize]) -> Vec<u32> {
    let n = sorted.len();
    let starts: Vec<f32> = bounds[1..bounds.len() - 1]
        .iter()
        .take_while(|&&b| b < n)
        .map(|&b| sorted[b])
        .collect();
    let cluster = |v: f32| -> u32 {
        if starts.len() <= 64 {
            starts.iter().map(|&t| (t <= v) as u32).sum()
        } else {
            starts.partition_point(|&t| t <= v) as u32
        }
    };
    let mut assignments = vec![0u32; values.len()];
    assignments
        .par_chunks_mut(CHUNK)
        .zip(values.par_chunks(CHUNK))
        .for_each(|(a, v)| {
            for (a, &v) in a.iter_mut().zip(v) {
                *a = cluster(v);
            }
        });
    assignments
}

/// `sum_i (v_i - c_{a(i)})^2` in f64.
fn objective_of(values: &[f32], assignments: &[u32], centroids: &[f64]) -> f64 {
    values
        .iter()
        .zip(assignments)
        .map(|(&v, &a)| (v as f64 - centroids[a as usize]).powi(2))
        .sum()
}
