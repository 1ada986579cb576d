//! Portable lookup kernels: plain Rust, the tier every SIMD kernel is tested against.
//!
//! The codebook is a 256-entry table, so indexing it by a byte needs no bounds check.

use super::MAX_CENTROIDS;

/// Lanes of independent partial sums (breaks the add dependency chain; fixed, so the
/// result does not depend on the machine).
const LANES: usize = 8;

/// `sum_i table[codes[i]] * x[i]`: look the weight up, then multiply-add (`codes` and `x`
/// of one length).
pub(super) fn dot_lookup(table: &[f32; MAX_CENTROIDS], codes: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let codes_l = codes.chunks_exact(LANES);
    let x_l = x.chunks_exact(LANES);
    let (codes_rest, x_rest) = (codes_l.remainder(), x_l.remainder());
    for (c, xv) in codes_l.zip(x_l) {
        for l in 0..LANES {
            acc[l] += table[c[l] as usize] * xv[l];
        }
    }
    for (&c, &xv) in codes_rest.iter().zip(x_rest) {
        acc[0] += table[c as usize] * xv;
    }
    reduce(&acc)
}

/// `sum_k c_k * (sum_{i: codes[i] = k} x[i])`: Deep Compression's order, one multiply per
/// centroid. `sums` is scratch of 256 entries.
pub(super) fn dot_sum_per_centroid(
    table: &[f32; MAX_CENTROIDS],
    k: usize,
    codes: &[u8],
    x: &[f32],
    sums: &mut [f32; MAX_CENTROIDS],
) -> f32 {
    sums.fill(0.0);
    for (&c, &xv) in codes.iter().zip(x) {
        sums[c as usize] += xv;
    }
    table
        .iter()
        .zip(sums.iter())
        .take(k)
        .map(|(&c, &s)| c * s)
        .sum()
}

/// `w[i] = table[codes[i]]`.
pub(super) fn decode(table: &[f32; MAX_CENTROIDS], codes: &[u8], w: &mut [f32]) {
    for (w, &c) in w.iter_mut().zip(codes) {
        *w = table[c as usize];
    }
}

/// Pairwise sum of the lanes, in a fixed order.
fn reduce(acc: &[f32; LANES]) -> f32 {
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}
