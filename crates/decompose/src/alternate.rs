//! Alternating minimisation of a factored pair's output reconstruction error on real
//! activations: the second layer by exact least squares ([`refit_second`]), then the first
//! factor's weights (every one of its layers) by a few Adam steps on `||pair(x) - t||^2 / ||t||^2` through the layers' own backward
//! passes, and again.
//!
//! The error is linear least squares in either factor with the other fixed; the second
//! factor's problem is small (one weight row per output over `r kw` or `r` inputs) and is
//! solved exactly, the first's couples every output and is descended instead, as Jaderberg
//! et al. (2014, §3.2) optimise their filter reconstruction with gradient steps. The best
//! pair seen (lowest error on the calibration batch) is kept, so a round never makes the
//! pair worse than the SVD + refit it started from.

use nn::Mode;
use serde::Serialize;
use tensor_core::Tensor;

use crate::error::Result;
use crate::factor::FactoredPair;
use crate::refit::{RefitParams, refit_second};

/// Options of [`alternate`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AlternateParams {
    /// Rounds of (first-factor steps, second-factor refit); 0 leaves the pair as refit.
    pub rounds: usize,
    /// Adam steps on the first factor per round.
    pub steps: usize,
    /// Adam's step size relative to the root mean square of the first factor's weights.
    pub lr: f32,
}

impl Default for AlternateParams {
    /// No rounds; 10 steps of relative size 0.01 per round when enabled.
    fn default() -> Self {
        Self {
            rounds: 0,
            steps: 10,
            lr: 0.01,
        }
    }
}

/// The output error of a pair before and after alternating.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct AlternateReport {
    /// `||pair(x) - t||^2 / ||t||^2` after the first refit, over the whole batch.
    pub error_before: f64,
    /// ... after the rounds (the best pair seen).
    pub error_after: f64,
    /// Rounds run.
    pub rounds: usize,
}

/// `||pair(x) - t||^2 / ||t||^2` over every value.
pub fn output_error(pair: &mut FactoredPair, input: &Tensor, target: &Tensor) -> Result<f64> {
    let y = pair.forward(input, Mode::Eval)?;
    Ok(relative(y.data(), target.data()))
}

fn relative(y: &[f32], t: &[f32]) -> f64 {
    let num: f64 = y
        .iter()
        .zip(t)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum();
    let den: f64 = t.iter().map(|&b| (b as f64).powi(2)).sum();
    if den > 0.0 { num / den } else { num }
}

/// The weights of every layer, to restore the best pair.
fn snapshot(pair: &FactoredPair) -> Vec<Vec<f32>> {
    pair.layers()
        .flat_map(|l| l.params().into_iter().map(|p| p.value.data().to_vec()))
        .collect()
}

fn restore(pair: &mut FactoredPair, saved: &[Vec<f32>]) {
    let mut it = saved.iter();
    let second = std::iter::once(&mut pair.second);
    for l in pair.first.iter_mut().chain(second) {
        for p in l.params_mut() {
            if let Some(v) = it.next() {
                p.value.data_mut().copy_from_slice(v);
            }
        }
    }
}

/// Alternates `params.rounds` times: Adam steps on the first layer's weight, then the
/// second layer refit by least squares; keeps the best pair. `pair` should come refit
/// already (its error then is `error_before`).
pub fn alternate(
    pair: &mut FactoredPair,
    input: &Tensor,
    target: &Tensor,
    refit: &RefitParams,
    params: &AlternateParams,
) -> Result<AlternateReport> {
    let error_before = output_error(pair, input, target)?;
    let mut best = (error_before, snapshot(pair));
    let den: f64 = target.data().iter().map(|&b| (b as f64).powi(2)).sum();
    let scale = if den > 0.0 { (2.0 / den) as f32 } else { 2.0 };
    // Adam's moments, one pair per weight of the first factor's layers.
    let mut m: Vec<Vec<f32>> = pair
        .first
        .iter()
        .filter_map(|l| weight_len(l.as_ref()))
        .map(|n| vec![0.0; n])
        .collect();
    let mut v = m.clone();
    let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-12f32);
    let mut t = 0i32;
    for _ in 0..params.rounds {
        for _ in 0..params.steps {
            for l in &mut pair.first {
                l.zero_grad();
            }
            pair.second.zero_grad();
            let y = pair.forward(input, Mode::Train)?;
            let gy: Vec<f32> = y
                .data()
                .iter()
                .zip(target.data())
                .map(|(&a, &b)| scale * (a - b))
                .collect();
            let gz = pair.second.backward(&Tensor::new(y.dims(), gy)?)?;
            pair.backward_first(&gz)?;
            t += 1;
            let weights = pair
                .first
                .iter_mut()
                .filter_map(|l| l.params_mut().into_iter().find(|p| p.name == "weight"));
            for ((p, m), v) in weights.zip(&mut m).zip(&mut v) {
                let w = p.value.data_mut();
                let rms = (w.iter().map(|x| x * x).sum::<f32>() / w.len().max(1) as f32).sqrt();
                let lr = params.lr * rms.max(f32::MIN_POSITIVE);
                let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
                for (((wi, &g), mi), vi) in w
                    .iter_mut()
                    .zip(p.grad.data())
                    .zip(m.iter_mut())
                    .zip(v.iter_mut())
                {
                    *mi = b1 * *mi + (1.0 - b1) * g;
                    *vi = b2 * *vi + (1.0 - b2) * g * g;
                    *wi -= lr * (*mi / c1) / ((*vi / c2).sqrt() + eps);
                }
            }
        }
        for l in &mut pair.first {
            l.clear_cache();
        }
        pair.second.clear_cache();
        refit_second(pair, input, target, refit)?;
        let e = output_error(pair, input, target)?;
        if e < best.0 {
            best = (e, snapshot(pair));
        }
    }
    restore(pair, &best.1);
    Ok(AlternateReport {
        error_before,
        error_after: best.0,
        rounds: params.rounds,
    })
}

/// Values of a layer's weight, if it has one.
fn weight_len(layer: &dyn nn::Layer) -> Option<usize> {
    layer
        .params()
        .iter()
        .find(|p| p.name == "weight")
        .map(|p| p.value.numel())
}
