//! Starting centroids of k-means: linear, density (CDF), random (Forgy) and k-means++.
//!
//! Deep Compression, section 3.2, compares the first three; k-means++ (Arthur and
//! Vassilvitskii, SODA 2007) draws each new centroid with probability proportional to
//! `D(x)^2`, the squared distance from `x` to the nearest centroid chosen so far.
//!
//! Every function here works on the *sorted* data. k-means++ uses it: in one dimension the
//! values a new centroid `c` brings closer are exactly the cell of `c` (an interval around
//! it), so after each draw only that interval of `D^2` is updated, scanning outwards from
//! `c` until a value does not improve; sums of `D^2` per block of [`BLOCK`] values make each
//! draw `O(n / BLOCK + BLOCK)`. On 16M values with k = 32 this is two passes over the data
//! instead of 2k.

use std::collections::HashMap;

use tensor_core::rng::Rng;

use super::Init;

/// Values per block of `D^2` sums in k-means++.
const BLOCK: usize = 1024;

/// Starting centroids (unsorted for the random inits). `sorted` is the sorted data with
/// more than `k` distinct values, `k >= 1`.
pub(super) fn initial_centroids(sorted: &[f32], k: usize, init: Init) -> Vec<f64> {
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
        Init::Random { seed } => forgy(sorted, k, seed),
        Init::KMeansPlusPlus { seed } => kmeans_plus_plus(sorted, k, seed),
    }
}

/// Forgy: `k` values drawn without replacement (`k <= n` here), by a partial Fisher-Yates
/// shuffle whose swaps are kept in a map (`O(k)` memory instead of an `n`-long permutation).
fn forgy(sorted: &[f32], k: usize, seed: u64) -> Vec<f64> {
    let n = sorted.len();
    let mut rng = Rng::seed_from_u64(seed);
    let mut swapped: HashMap<usize, usize> = HashMap::with_capacity(2 * k);
    let mut out = Vec::with_capacity(k);
    for j in 0..k.min(n) {
        let r = j + rng.below(n - j);
        let at_r = *swapped.get(&r).unwrap_or(&r);
        let at_j = *swapped.get(&j).unwrap_or(&j);
        swapped.insert(r, at_j);
        out.push(sorted[at_r] as f64);
    }
    out
}

/// Uniform in `[0, 1)` with 53 bits.
fn uniform_f64(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// k-means++ over sorted data with more than `k` distinct values: the first centroid
/// uniform, each next one drawn with probability `D(x)^2 / sum D^2`.
fn kmeans_plus_plus(sorted: &[f32], k: usize, seed: u64) -> Vec<f64> {
    let n = sorted.len();
    let mut rng = Rng::seed_from_u64(seed);
    let first = sorted[rng.below(n)] as f64;
    let mut centroids = vec![first];
    // D^2 rounded to f32 (rounding keeps the order, so the outward scans stay exact).
    let mut d2: Vec<f32> = sorted
        .iter()
        .map(|&v| ((v as f64 - first) * (v as f64 - first)) as f32)
        .collect();
    let mut block_sums: Vec<f64> = d2.chunks(BLOCK).map(block_sum).collect();
    while centroids.len() < k {
        let total: f64 = block_sums.iter().sum();
        let i = match draw(&d2, &block_sums, total * uniform_f64(&mut rng)) {
            Some(i) => i,
            // Every D^2 underflowed to 0: fall back to a uniform draw.
            None => rng.below(n),
        };
        let c = sorted[i] as f64;
        centroids.push(c);
        let closer = |d2: &[f32], j: usize| {
            let d = sorted[j] as f64 - c;
            let d = (d * d) as f32;
            (d < d2[j]).then_some(d)
        };
        // The cell of c: scan right, then left, while D^2 improves.
        let mut hi = i;
        while hi < n {
            match closer(&d2, hi) {
                Some(d) => d2[hi] = d,
                None if hi == i => {}
                None => break,
            }
            hi += 1;
        }
        let mut lo = i;
        while lo > 0 {
            match closer(&d2, lo - 1) {
                Some(d) => d2[lo - 1] = d,
                None => break,
            }
            lo -= 1;
        }
        for b in lo / BLOCK..hi.div_ceil(BLOCK).min(block_sums.len()) {
            let end = ((b + 1) * BLOCK).min(n);
            block_sums[b] = block_sum(&d2[b * BLOCK..end]);
        }
    }
    centroids
}

fn block_sum(d2: &[f32]) -> f64 {
    d2.iter().map(|&d| d as f64).sum()
}

/// The first index whose cumulative `D^2` exceeds `r` (`None` if none does: zero total or
/// rounding at the very end, where the last positive entry is returned instead).
fn draw(d2: &[f32], block_sums: &[f64], r: f64) -> Option<usize> {
    let mut acc = 0.0f64;
    let mut last_positive = None;
    for (b, &s) in block_sums.iter().enumerate() {
        if s > 0.0 {
            last_positive = Some(b);
        }
        if acc + s > r && s > 0.0 {
            for (j, &d) in d2[b * BLOCK..].iter().take(BLOCK).enumerate() {
                acc += d as f64;
                if acc > r && d > 0.0 {
                    return Some(b * BLOCK + j);
                }
            }
            // Rounding: the block's entries summed one by one fell short of `r`; take the
            // block's last positive entry.
            return last_positive_in(d2, b);
        }
        acc += s;
    }
    last_positive.and_then(|b| last_positive_in(d2, b))
}

fn last_positive_in(d2: &[f32], b: usize) -> Option<usize> {
    let end = ((b + 1) * BLOCK).min(d2.len());
    (b * BLOCK..end).rev().find(|&j| d2[j] > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Naive k-means++: full passes, for comparison with the cell-scanning version.
    fn naive_plus_plus(sorted: &[f32], k: usize, seed: u64) -> Vec<f64> {
        let n = sorted.len();
        let mut rng = Rng::seed_from_u64(seed);
        let mut centroids = vec![sorted[rng.below(n)] as f64];
        while centroids.len() < k {
            let d2: Vec<f32> = sorted
                .iter()
                .map(|&v| {
                    centroids
                        .iter()
                        .map(|&c| ((v as f64 - c) * (v as f64 - c)) as f32)
                        .fold(f32::INFINITY, f32::min)
                })
                .collect();
            let sums: Vec<f64> = d2.chunks(BLOCK).map(block_sum).collect();
            let total: f64 = sums.iter().sum();
            let i = draw(&d2, &sums, total * uniform_f64(&mut rng)).unwrap_or(0);
            centroids.push(sorted[i] as f64);
        }
        centroids
    }

    #[test]
    fn cell_scan_equals_full_passes() {
        for seed in 0..6 {
            let mut rng = Rng::seed_from_u64(100 + seed);
            let n = 500 + 1700 * seed as usize;
            let mut v: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
            v.sort_by(f32::total_cmp);
            for k in [2, 7, 31] {
                assert_eq!(
                    kmeans_plus_plus(&v, k, seed),
                    naive_plus_plus(&v, k, seed),
                    "seed {seed}, n {n}, k {k}"
                );
            }
        }
    }

    #[test]
    fn plus_plus_picks_distinct_data_values() {
        let v: Vec<f32> = (0..100).map(|i| (i / 10) as f32).collect(); // 10 distinct
        for seed in 0..20 {
            let mut c = kmeans_plus_plus(&v, 9, seed);
            c.sort_by(f64::total_cmp);
            c.dedup();
            assert_eq!(c.len(), 9, "seed {seed}: a value drawn twice");
        }
    }

    #[test]
    fn forgy_draws_without_replacement() {
        let v: Vec<f32> = (0..50).map(|i| i as f32).collect();
        for seed in 0..20 {
            let mut c = forgy(&v, 50, seed);
            c.sort_by(f64::total_cmp);
            assert_eq!(c, (0..50).map(|i| i as f64).collect::<Vec<_>>());
        }
    }
}
