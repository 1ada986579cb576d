//! Centroid fine-tuning: the gradient of a shared centroid and the members it rewrites.
//!
//! Deep Compression, section 3.3 and figure 3: once weights are tied to centroids, the
//! loss is a function of the centroids, and the gradient of centroid `k` is the sum of the
//! gradients of its members,
//!
//! ```text
//! dL/dC_k = sum_{i,j} dL/dW_ij * 1(I_ij = k)        (equation 3)
//! ```
//!
//! where `I_ij` is the cluster index (code) of weight `W_ij`. After a centroid step every
//! member is set back to its centroid, so a member always equals its centroid exactly.
//!
//! Code 0 is the reserved zero of [`crate::SharedWeights`] (a pruned weight): its gradient is
//! reported as 0 and no step moves it, so pruned weights stay exactly zero.
//!
//! A training hook calls [`centroid_grads`] on the weight gradient, lets its optimizer step
//! the centroids (or calls [`sgd_step`]), then [`members_from_codebook`] to rewrite the
//! weights; [`crate::SharedWeights::fine_tune_step`] chains the three with plain SGD.

use crate::error::{Result, ShareError, check_len};

/// Per-centroid gradient (equation 3): entry `j` is the sum of `grads[i]` over the positions
/// `i` with `codes[i] == j`, summed in f64 (a cluster may hold millions of members); entry 0
/// (the reserved zero) is always 0.
///
/// Errors: `codes` and `grads` of different lengths; a code `>= k`.
pub fn centroid_grads<C: Copy + Into<usize>>(
    codes: &[C],
    grads: &[f32],
    k: usize,
) -> Result<Vec<f32>> {
    const OP: &str = "centroid_grads";
    check_len(OP, "grads", grads.len(), codes.len())?;
    let mut sums = vec![0.0f64; k];
    for (index, (&code, &g)) in codes.iter().zip(grads).enumerate() {
        let c: usize = code.into();
        match sums.get_mut(c) {
            Some(s) => *s += g as f64,
            None => return Err(out_of_range(OP, index, c, k)),
        }
    }
    if let Some(zero) = sums.first_mut() {
        *zero = 0.0;
    }
    Ok(sums.into_iter().map(|s| s as f32).collect())
}

/// Writes every member's value: `weights[i] = centroids[codes[i]]`.
///
/// Errors: `codes` and `weights` of different lengths; a code past `centroids`.
pub fn members_from_codebook<C: Copy + Into<usize>>(
    codes: &[C],
    centroids: &[f32],
    weights: &mut [f32],
) -> Result<()> {
    const OP: &str = "members_from_codebook";
    check_len(OP, "weights", weights.len(), codes.len())?;
    for (index, (&code, w)) in codes.iter().zip(weights.iter_mut()).enumerate() {
        let c: usize = code.into();
        *w = *centroids
            .get(c)
            .ok_or_else(|| out_of_range(OP, index, c, centroids.len()))?;
    }
    Ok(())
}

/// One plain SGD step on the centroids: `C_k -= learning_rate * dL/dC_k` for every `k >= 1`
/// (centroid 0, the reserved zero, never moves).
///
/// Errors: `grads` not as long as `centroids`.
pub fn sgd_step(centroids: &mut [f32], grads: &[f32], learning_rate: f32) -> Result<()> {
    check_len("sgd_step", "grads", grads.len(), centroids.len())?;
    for (c, &g) in centroids.iter_mut().zip(grads).skip(1) {
        *c -= learning_rate * g;
    }
    Ok(())
}

fn out_of_range(op: &'static str, index: usize, code: usize, len: usize) -> ShareError {
    ShareError::CodeOutOfRange {
        op,
        index,
        code: code as u32,
        len,
    }
}
