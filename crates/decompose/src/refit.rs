//! Data-driven refinement of a factored pair: the second layer refit by least squares so
//! that the pair reproduces the original layer's outputs on real activations.
//!
//! With the first layer fixed, the pair's output is linear in the second layer's weight and
//! bias: for every output position, `y = W2 a + b` where `a` is the position's patch of the
//! first layer's output (a column of im2col, or the intermediate features of a linear pair).
//! Minimizing `sum ||W2 a + b - t||^2` over sampled positions, `t` the original layer's
//! output there, is ordinary least squares; it is solved by the normal equations
//! `(Ã Ãᵀ + λ I) [W2 b]ᵀ = Ã Tᵀ` (`Ã` the patches with a row of ones for the bias), in f64,
//! by Cholesky. This is the output-reconstruction objective of Jaderberg et al. (2014,
//! §3.2) and Zhang et al. (2016, §3.2), with the first factor kept from the SVD.

use faer::Mat;
use faer::Side;
use faer::linalg::solvers::Solve;
use nn::layers::{Conv2d, Linear};
use nn::{Layer, Mode};
use serde::Serialize;
use tensor_core::Tensor;
use tensor_core::conv::{ConvGeometry, im2col};
use tensor_core::rng::Rng;

use crate::error::{DecomposeError, Result};
use crate::factor::FactoredPair;

/// Options of [`refit_second`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RefitParams {
    /// At most this many output positions (columns) enter the least squares; more are
    /// sampled at random without replacement.
    pub max_columns: usize,
    /// Ridge `λ` relative to the mean diagonal of `Ã Ãᵀ` (keeps the solve well posed when
    /// an intermediate channel is dead on the sample).
    pub ridge: f64,
    /// Seed of the column sample.
    pub seed: u64,
}

impl Default for RefitParams {
    /// 32,768 columns, ridge 1e-6, seed 0.
    fn default() -> Self {
        Self {
            max_columns: 32_768,
            ridge: 1e-6,
            seed: 0,
        }
    }
}

/// Relative output error `||pair(x) - t||^2 / ||t||^2` on the sampled positions, before and
/// after a refit.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct RefitReport {
    /// With the SVD's second factor.
    pub error_before: f64,
    /// With the refit second factor.
    pub error_after: f64,
    /// Positions used.
    pub columns: usize,
}

/// The least-squares problem of a refit: patches `a` (`[k, p]` row-major, `k` weights per
/// output) and targets `t` (`[n, p]`), one column per output position.
struct Problem {
    a: Vec<f32>,
    t: Vec<f32>,
    k: usize,
    n: usize,
    p: usize,
}

/// The patches the second layer of `pair` sees for `input` and the original outputs
/// `target` laid out alike.
fn patches_and_targets(
    pair: &mut FactoredPair,
    input: &Tensor,
    target: &Tensor,
) -> Result<Problem> {
    const OP: &str = "refit";
    let z = pair.forward_first(input, Mode::Eval)?;
    let bad = |what: String| DecomposeError::BadActivations { op: OP, what };
    if let Some(lin) = pair.second.as_any().downcast_ref::<Linear>() {
        let (b, k, n) = (z.dims()[0], lin.in_features(), lin.out_features());
        if target.dims() != [b, n] {
            return Err(bad(format!("target {} for [{b}, {n}]", target.shape())));
        }
        let a = transpose(z.data(), b, k);
        let t = transpose(target.data(), b, n);
        return Ok(Problem { a, t, k, n, p: b });
    }
    if let Some(conv) = pair.second.as_any().downcast_ref::<Conv2d>() {
        let p = *conv.params();
        let geo = ConvGeometry::new(&p, z.shape())?;
        let out = p.output_dims(z.shape())?;
        if target.dims() != out {
            return Err(bad(format!("target {} for {out:?}", target.shape())));
        }
        let (b, n, pos) = (out[0], out[1], out[2] * out[3]);
        let k = p.patch_len();
        let mut col = vec![0.0f32; k * b * pos];
        im2col(&geo, z.data(), 0..b, 0, 0.0, &mut col)?;
        // target [B, N, pos] -> [N, B*pos]
        let mut t = vec![0.0f32; n * b * pos];
        for (bi, img) in target.data().chunks_exact(n * pos).enumerate() {
            for (ni, plane) in img.chunks_exact(pos).enumerate() {
                t[ni * b * pos + bi * pos..ni * b * pos + (bi + 1) * pos].copy_from_slice(plane);
            }
        }
        return Ok(Problem {
            a: col,
            t,
            k,
            n,
            p: b * pos,
        });
    }
    Err(bad(format!(
        "the second layer is a {}, not linear or conv2d",
        pair.second.kind()
    )))
}

/// `[rows, cols]` row-major transposed.
fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0f32; a.len()];
    for i in 0..rows {
        for j in 0..cols {
            t[j * rows + i] = a[i * cols + j];
        }
    }
    t
}

/// Refits the second layer of `pair` so that `pair(input)` reproduces `target` (the original
/// layer's output on `input`) in the least-squares sense; the bias too when the layer has
/// one. Errors: activations of the wrong shape, or singular normal equations.
pub fn refit_second(
    pair: &mut FactoredPair,
    input: &Tensor,
    target: &Tensor,
    params: &RefitParams,
) -> Result<RefitReport> {
    let Problem { a, t, k, n, p } = patches_and_targets(pair, input, target)?;
    // Columns to use.
    let mut cols: Vec<usize> = (0..p).collect();
    if p > params.max_columns {
        Rng::seed_from_u64(params.seed).shuffle(&mut cols);
        cols.truncate(params.max_columns);
        cols.sort_unstable();
    }
    let has_bias = pair.second.params().iter().any(|q| q.name == "bias");
    let k1 = k + has_bias as usize;
    let m = cols.len();
    let am = Mat::<f64>::from_fn(k1, m, |i, j| {
        if i < k {
            a[i * p + cols[j]] as f64
        } else {
            1.0
        }
    });
    let tm = Mat::<f64>::from_fn(n, m, |i, j| t[i * p + cols[j]] as f64);
    let current = current_weights(pair.second.as_ref(), n, k, has_bias);
    let error_before = relative_error(&current, &am, &tm);
    let mut g = &am * am.transpose();
    let mean_diag = (0..k1).map(|i| g[(i, i)]).sum::<f64>() / k1 as f64;
    let lambda = params.ridge * mean_diag.max(f64::MIN_POSITIVE);
    for i in 0..k1 {
        g[(i, i)] += lambda;
    }
    let rhs = &am * tm.transpose();
    let llt = g.llt(Side::Lower).map_err(|_| DecomposeError::Singular {
        op: "refit",
        size: k1,
    })?;
    let sol = llt.solve(&rhs); // [k1, n]: row i is weight i of every output
    let fitted = Mat::<f64>::from_fn(n, k1, |i, j| sol[(j, i)]);
    let error_after = relative_error(&fitted, &am, &tm);
    if !error_after.is_finite() || error_after > error_before {
        // Rounding on a near-singular sample: keep the SVD's factor.
        return Ok(RefitReport {
            error_before,
            error_after: error_before,
            columns: m,
        });
    }
    for q in pair.second.params_mut() {
        let v = q.value.data_mut();
        match q.name {
            "weight" => {
                for (idx, w) in v.iter_mut().enumerate() {
                    *w = fitted[(idx / k, idx % k)] as f32;
                }
            }
            "bias" => {
                for (i, b) in v.iter_mut().enumerate() {
                    *b = fitted[(i, k)] as f32;
                }
            }
            _ => {}
        }
    }
    Ok(RefitReport {
        error_before,
        error_after,
        columns: m,
    })
}

/// The second layer's weight (and bias) as an `n x k1` matrix.
fn current_weights(layer: &dyn Layer, n: usize, k: usize, has_bias: bool) -> Mat<f64> {
    let ps = layer.params();
    let find = |name: &str| ps.iter().find(|q| q.name == name).map(|q| q.value.data());
    let w = find("weight").unwrap_or(&[]);
    let b = find("bias");
    Mat::<f64>::from_fn(n, k + has_bias as usize, |i, j| {
        if j < k {
            w.get(i * k + j).copied().unwrap_or(0.0) as f64
        } else {
            b.and_then(|b| b.get(i)).copied().unwrap_or(0.0) as f64
        }
    })
}

/// `||w a - t||^2 / ||t||^2` (0 when `t` is zero and matched).
fn relative_error(w: &Mat<f64>, a: &Mat<f64>, t: &Mat<f64>) -> f64 {
    let d = w * a - t;
    let num = d.norm_l2().powi(2);
    let den = t.norm_l2().powi(2);
    if den > 0.0 { num / den } else { num }
}
