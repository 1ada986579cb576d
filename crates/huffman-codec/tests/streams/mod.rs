//! Deterministic stand-ins for the streams Deep Compression entropy-codes: k-means indices of
//! pruned weights and relative-index gaps, for lenet300 and lenet5 (shared by tests and benches).
//!
//! Until the `prune` and `share` crates exist, the weights are drawn, not trained: He-normal
//! (std = sqrt(2 / fan_in)), pruned by magnitude to the per-layer densities Han et al. report
//! for these models (Deep Compression, ICLR 2016, tables 2 and 3), then shared by 1-D k-means
//! with linear initialization, 32 clusters (5-bit) for fully connected and 256 (8-bit) for conv
//! layers. Gaps follow the paper's relative index: the number of zeros skipped before each kept
//! weight, at most `cap - 1` (cap = 2^5 for fc, 2^8 for conv); a longer gap emits filler
//! entries of `cap - 1` (each standing for a stored zero) until the rest fits.
#![allow(dead_code)]

/// One layer of a reference model: name, weight count, fan-in, kept fraction, conv or fc.
pub struct Layer {
    pub name: &'static str,
    pub weights: usize,
    pub fan_in: usize,
    pub density: f64,
    pub conv: bool,
}

pub const LENET300: [Layer; 3] = [
    layer("fc1", 784 * 300, 784, 0.08, false),
    layer("fc2", 300 * 100, 300, 0.09, false),
    layer("fc3", 100 * 10, 100, 0.26, false),
];

pub const LENET5: [Layer; 4] = [
    layer("conv1", 20 * 25, 25, 0.66, true),
    layer("conv2", 50 * 20 * 25, 500, 0.12, true),
    layer("fc1", 800 * 500, 800, 0.08, false),
    layer("fc2", 500 * 10, 500, 0.19, false),
];

const fn layer(
    name: &'static str,
    weights: usize,
    fan_in: usize,
    density: f64,
    conv: bool,
) -> Layer {
    Layer {
        name,
        weights,
        fan_in,
        density,
        conv,
    }
}

/// A named symbol stream and its alphabet size.
pub struct Stream {
    pub name: String,
    pub symbols: Vec<u8>,
    pub alphabet: usize,
}

/// SplitMix64: small, seedable, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// 1-D k-means (Lloyd) with linear initialization between min and max; returns the cluster
/// index of every value.
fn kmeans_indices(values: &[f64], k: usize, iterations: usize) -> Vec<u8> {
    let (lo, hi) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let mut centroids: Vec<f64> = (0..k)
        .map(|i| lo + (hi - lo) * i as f64 / (k - 1) as f64)
        .collect();
    let mut assign = vec![0u8; values.len()];
    for _ in 0..iterations {
        let mut sum = vec![0.0; k];
        let mut count = vec![0usize; k];
        for (a, &v) in assign.iter_mut().zip(values) {
            // Centroids stay sorted, so the nearest is found by binary search.
            let p = centroids.partition_point(|&c| c < v);
            let best = if p == 0 {
                0
            } else if p == k || (v - centroids[p - 1]) <= (centroids[p] - v) {
                p - 1
            } else {
                p
            };
            *a = best as u8;
            sum[best] += v;
            count[best] += 1;
        }
        for i in 0..k {
            if count[i] > 0 {
                centroids[i] = sum[i] / count[i] as f64;
            }
        }
        centroids.sort_by(f64::total_cmp);
    }
    assign
}

/// Kept positions of a magnitude-pruned layer, with their weights.
fn pruned_layer(l: &Layer, rng: &mut Rng) -> (Vec<usize>, Vec<f64>) {
    let std = (2.0 / l.fan_in as f64).sqrt();
    let w: Vec<f64> = (0..l.weights).map(|_| rng.normal() * std).collect();
    let mut mags: Vec<f64> = w.iter().map(|x| x.abs()).collect();
    let keep = ((l.weights as f64) * l.density).round() as usize;
    let cut = l.weights - keep;
    mags.select_nth_unstable_by(cut, f64::total_cmp);
    let threshold = mags[cut];
    let kept: Vec<usize> = (0..l.weights)
        .filter(|&i| w[i].abs() >= threshold)
        .collect();
    let values = kept.iter().map(|&i| w[i]).collect();
    (kept, values)
}

/// Relative-index gaps of sorted positions, with fillers, capped at `cap`.
fn gaps(positions: &[usize], cap: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(positions.len() * 11 / 10);
    let mut next = 0usize;
    for &p in positions {
        let mut skip = p - next;
        while skip >= cap {
            out.push((cap - 1) as u8);
            skip -= cap;
        }
        out.push(skip as u8);
        next = p + 1;
    }
    out
}

/// Index and gap streams of a model, grouped by layer kind (fc, conv): at most four streams.
pub fn model_streams(model: &str, layers: &[Layer], seed: u64) -> Vec<Stream> {
    let mut rng = Rng::new(seed);
    let mut out: Vec<Stream> = Vec::new();
    for conv in [true, false] {
        let (bits, gap_cap) = if conv { (8, 1 << 8) } else { (5, 1 << 5) };
        let kind = if conv { "conv" } else { "fc" };
        let mut idx = Vec::new();
        let mut gap = Vec::new();
        for l in layers.iter().filter(|l| l.conv == conv) {
            let (positions, values) = pruned_layer(l, &mut rng);
            idx.extend(kmeans_indices(&values, 1 << bits, 20));
            gap.extend(gaps(&positions, gap_cap));
        }
        if idx.is_empty() {
            continue;
        }
        out.push(Stream {
            name: format!("{model}.{kind}.indices"),
            symbols: idx,
            alphabet: 1 << bits,
        });
        out.push(Stream {
            name: format!("{model}.{kind}.gaps"),
            symbols: gap,
            alphabet: gap_cap,
        });
    }
    out
}

/// Every stand-in stream of both reference models.
pub fn all_streams() -> Vec<Stream> {
    let mut s = model_streams("lenet300", &LENET300, 300);
    s.extend(model_streams("lenet5", &LENET5, 5));
    s
}

/// A large 8-bit stream for steady-state throughput: lenet5's fc index distribution
/// (the largest real stream) resampled to `n` symbols.
pub fn large_stream(n: usize, seed: u64) -> Vec<u8> {
    let base = &model_streams("lenet5", &LENET5, 5)[2].symbols;
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| base[(rng.next_u64() % base.len() as u64) as usize])
        .collect()
}

/// Empirical Shannon entropy in bits per symbol: `-sum p log2 p`.
pub fn entropy_bits(symbols: &[u8]) -> f64 {
    let mut counts = [0u64; 256];
    for &s in symbols {
        counts[s as usize] += 1;
    }
    let n = symbols.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}
