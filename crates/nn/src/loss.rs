//! Losses: softmax cross-entropy against class labels and against soft targets (distillation).
//!
//! Both losses are computed from the log-softmax (the log-sum-exp trick,
//! [`tensor_core::activation::log_softmax_rows`]), so that no `exp` overflows and no
//! `ln(0)` appears for large logits. Each returns the mean loss over the batch and the
//! gradient of that mean with respect to the logits, ready for [`crate::Model::backward`].
//!
//! Formulas, for logits `z` of one sample over `C` classes and a batch of `B` samples:
//! - hard labels: `L = -(1/B) sum_b log softmax(z_b)[y_b]`,
//!   `dL/dz_b = (softmax(z_b) - onehot(y_b)) / B`;
//! - soft targets `p` at temperature `T` (Hinton, Vinyals, Dean, "Distilling the Knowledge in
//!   a Neural Network", 2015): `L = -(1/B) sum_b sum_c p_bc log softmax(z_b / T)_c`,
//!   `dL/dz_b = (softmax(z_b / T) * sum_c p_bc - p_b) / (T B)`. Hinton et al. multiply the
//!   soft loss by `T^2` so that its gradient scale does not depend on `T`; that weighting is
//!   the caller's (the distillation objective's) choice and is not applied here.

use tensor_core::Tensor;
use tensor_core::activation::{log_softmax_rows, softmax_rows};

use crate::error::{NnError, Result};

/// Checks that `logits` is `[B, C]` with `B > 0` and `C > 0`; returns `(B, C)`.
fn batch_and_classes(op: &str, logits: &Tensor) -> Result<(usize, usize)> {
    match *logits.dims() {
        [b, c] if b > 0 && c > 0 => Ok((b, c)),
        _ => Err(NnError::BadInput {
            layer: op.to_string(),
            input: logits.shape().clone(),
            reason: "expected logits [batch > 0, classes > 0]".into(),
        }),
    }
}

/// Mean softmax cross-entropy of `logits` (`[B, C]`) against class indices `labels`
/// (`B` of them, each below `C`), and its gradient with respect to the logits.
///
/// Errors: logits not `[B > 0, C > 0]`, a label count other than `B`, or a label `>= C`
/// (naming its index and value).
pub fn softmax_cross_entropy(logits: &Tensor, labels: &[usize]) -> Result<(f32, Tensor)> {
    const OP: &str = "softmax_cross_entropy";
    let (b, c) = batch_and_classes(OP, logits)?;
    if labels.len() != b {
        return Err(NnError::BadInput {
            layer: OP.into(),
            input: logits.shape().clone(),
            reason: format!("{} labels for a batch of {b}", labels.len()),
        });
    }
    if let Some((i, &l)) = labels.iter().enumerate().find(|&(_, &l)| l >= c) {
        return Err(NnError::BadInput {
            layer: OP.into(),
            input: logits.shape().clone(),
            reason: format!("label {l} at batch index {i} is not below {c} classes"),
        });
    }
    let mut logp = logits.data().to_vec();
    log_softmax_rows(&mut logp, c);
    let inv_b = 1.0 / b as f32;
    let mut total = 0.0f64;
    let mut grad = logp;
    for (row, &label) in grad.chunks_exact_mut(c).zip(labels) {
        total -= row[label] as f64;
        for v in row.iter_mut() {
            *v = v.exp() * inv_b;
        }
        row[label] -= inv_b;
    }
    let grad = Tensor::from_vec(logits.shape().clone(), grad)?;
    Ok(((total / b as f64) as f32, grad))
}

/// Mean cross-entropy of `logits` (`[B, C]`) against soft target distributions
/// `target_probs` (`[B, C]`, rows normally summing to 1), and its gradient: the
/// temperature-1 case of [`soft_cross_entropy_with_temperature`].
pub fn soft_cross_entropy(logits: &Tensor, target_probs: &Tensor) -> Result<(f32, Tensor)> {
    soft_cross_entropy_with_temperature(logits, target_probs, 1.0)
}

/// Mean cross-entropy of `softmax(logits / temperature)` against soft targets
/// `target_probs` (`[B, C]`), and its gradient with respect to `logits` (the formula in the
/// module docs; the `T^2` factor of Hinton et al. is left to the caller).
///
/// The gradient is exact for targets that do not sum to 1 as well (it uses each row's sum).
/// Errors: shapes that differ or are not `[B > 0, C > 0]`, a temperature that is not finite
/// and positive, or a target that is negative or not finite.
pub fn soft_cross_entropy_with_temperature(
    logits: &Tensor,
    target_probs: &Tensor,
    temperature: f32,
) -> Result<(f32, Tensor)> {
    const OP: &str = "soft_cross_entropy";
    let (b, c) = batch_and_classes(OP, logits)?;
    if target_probs.shape() != logits.shape() {
        return Err(NnError::BadInput {
            layer: OP.into(),
            input: target_probs.shape().clone(),
            reason: format!(
                "target probabilities must have the logits' shape {}",
                logits.shape()
            ),
        });
    }
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(NnError::Config(format!(
            "{OP}: temperature {temperature} must be finite and positive"
        )));
    }
    if let Some((i, &p)) = target_probs
        .data()
        .iter()
        .enumerate()
        .find(|&(_, &p)| !(p.is_finite() && p >= 0.0))
    {
        return Err(NnError::BadInput {
            layer: OP.into(),
            input: target_probs.shape().clone(),
            reason: format!(
                "target probability {p} at row {}, class {} is negative or not finite",
                i / c,
                i % c
            ),
        });
    }
    let inv_t = 1.0 / temperature;
    let mut logq: Vec<f32> = logits.data().iter().map(|&z| z * inv_t).collect();
    log_softmax_rows(&mut logq, c);
    let scale = inv_t / b as f32;
    let mut total = 0.0f64;
    let mut grad = logq;
    for (row, p) in grad
        .chunks_exact_mut(c)
        .zip(target_probs.data().chunks_exact(c))
    {
        let mut mass = 0.0f32;
        for (&lq, &pc) in row.iter().zip(p) {
            // 0 * log q is 0 even where q underflows (lq = -inf is impossible after
            // log-softmax of finite logits, but a target of 0 must not contribute).
            if pc > 0.0 {
                total -= pc as f64 * lq as f64;
            }
            mass += pc;
        }
        for (g, &pc) in row.iter_mut().zip(p) {
            *g = (g.exp() * mass - pc) * scale;
        }
    }
    let grad = Tensor::from_vec(logits.shape().clone(), grad)?;
    Ok(((total / b as f64) as f32, grad))
}

/// Softmax of each row of `logits` (`[B, C]`) at `temperature`: `softmax(z / T)`, the soft
/// targets a teacher provides for distillation (Hinton et al., 2015).
pub fn softmax_with_temperature(logits: &Tensor, temperature: f32) -> Result<Tensor> {
    let (_, c) = batch_and_classes("softmax_with_temperature", logits)?;
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(NnError::Config(format!(
            "softmax_with_temperature: temperature {temperature} must be finite and positive"
        )));
    }
    let inv_t = 1.0 / temperature;
    let mut p: Vec<f32> = logits.data().iter().map(|&z| z * inv_t).collect();
    softmax_rows(&mut p, c);
    Ok(Tensor::from_vec(logits.shape().clone(), p)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tensor_core::rng::Rng;
    use tensor_core::testing::assert_close;

    fn random_logits(seed: u64, b: usize, c: usize, scale: f32) -> Tensor {
        let mut rng = Rng::seed_from_u64(seed);
        let data = (0..b * c).map(|_| rng.normal() * scale).collect();
        Tensor::new(&[b, c], data).unwrap()
    }

    /// Central finite differences of `f` at every logit, in f64 around f32 inputs.
    fn numeric_grad(logits: &Tensor, f: &dyn Fn(&Tensor) -> f32) -> Vec<f32> {
        let h = 1e-2f32;
        (0..logits.numel())
            .map(|i| {
                let mut plus = logits.clone();
                plus.data_mut()[i] += h;
                let mut minus = logits.clone();
                minus.data_mut()[i] -= h;
                ((f(&plus) as f64 - f(&minus) as f64) / (2.0 * h as f64)) as f32
            })
            .collect()
    }

    #[test]
    fn hard_loss_matches_naive_formula() {
        let logits = random_logits(1, 4, 5, 2.0);
        let labels = [0, 4, 2, 2];
        let (loss, _) = softmax_cross_entropy(&logits, &labels).unwrap();
        let mut want = 0.0f64;
        for (row, &l) in logits.data().chunks(5).zip(&labels) {
            let s: f64 = row.iter().map(|&v| (v as f64).exp()).sum();
            want -= (row[l] as f64).exp().ln() - s.ln();
        }
        want /= 4.0;
        assert!((loss as f64 - want).abs() < 1e-5, "{loss} vs {want}");
    }

    #[test]
    fn hard_gradient_matches_finite_differences() {
        let logits = random_logits(2, 3, 7, 1.5);
        let labels = [6, 0, 3];
        let (_, grad) = softmax_cross_entropy(&logits, &labels).unwrap();
        let num = numeric_grad(&logits, &|z| softmax_cross_entropy(z, &labels).unwrap().0);
        assert_close(grad.data(), &num, 1e-2, 2e-4);
    }

    #[test]
    fn hard_loss_is_stable_for_huge_logits() {
        let logits = Tensor::new(&[2, 3], vec![1e4, 0.0, -1e4, 500.0, 1000.0, 999.0]).unwrap();
        let (loss, grad) = softmax_cross_entropy(&logits, &[2, 1]).unwrap();
        assert!(loss.is_finite() && loss > 1e3, "loss {loss}");
        assert!(grad.data().iter().all(|g| g.is_finite()));
        // Each gradient row sums to zero (up to the f32 rounding of logits near 1000, whose
        // spacing is 6e-5).
        for row in grad.data().chunks(3) {
            let s: f32 = row.iter().sum();
            assert!(s.abs() < 1e-4, "row {row:?} sums to {s}");
        }
    }

    #[test]
    fn hard_loss_rejects_bad_labels_and_shapes() {
        let logits = random_logits(3, 2, 3, 1.0);
        let err = softmax_cross_entropy(&logits, &[0, 3])
            .unwrap_err()
            .to_string();
        assert!(err.contains("label 3 at batch index 1"), "{err}");
        assert!(softmax_cross_entropy(&logits, &[0]).is_err());
        let flat = Tensor::new(&[6], vec![0.0; 6]).unwrap();
        assert!(softmax_cross_entropy(&flat, &[0]).is_err());
        let empty = Tensor::zeros_dims(&[0, 3]).unwrap();
        assert!(softmax_cross_entropy(&empty, &[]).is_err());
    }

    #[test]
    fn soft_loss_equals_hard_loss_for_one_hot_targets() {
        let logits = random_logits(4, 3, 4, 1.0);
        let labels = [1, 3, 0];
        let mut onehot = vec![0.0; 12];
        for (i, &l) in labels.iter().enumerate() {
            onehot[i * 4 + l] = 1.0;
        }
        let targets = Tensor::new(&[3, 4], onehot).unwrap();
        let (hard, hg) = softmax_cross_entropy(&logits, &labels).unwrap();
        let (soft, sg) = soft_cross_entropy(&logits, &targets).unwrap();
        assert!((hard - soft).abs() < 1e-6);
        assert_close(sg.data(), hg.data(), 1e-5, 1e-7);
    }

    #[test]
    fn soft_gradient_matches_finite_differences_at_temperatures() {
        let logits = random_logits(5, 3, 6, 2.0);
        let teacher = random_logits(6, 3, 6, 3.0);
        for t in [1.0f32, 2.0, 4.0] {
            let targets = softmax_with_temperature(&teacher, t).unwrap();
            let (_, grad) = soft_cross_entropy_with_temperature(&logits, &targets, t).unwrap();
            let num = numeric_grad(&logits, &|z| {
                soft_cross_entropy_with_temperature(z, &targets, t)
                    .unwrap()
                    .0
            });
            assert_close(grad.data(), &num, 1e-2, 2e-4);
        }
        // Unnormalised targets: the gradient still matches.
        let targets = Tensor::full(logits.shape().clone(), 0.3);
        let (_, grad) = soft_cross_entropy(&logits, &targets).unwrap();
        let num = numeric_grad(&logits, &|z| soft_cross_entropy(z, &targets).unwrap().0);
        assert_close(grad.data(), &num, 1e-2, 2e-4);
    }

    #[test]
    fn soft_loss_is_minimised_by_matching_distribution() {
        // Cross-entropy H(p, q) >= H(p, p), with equality when q = p.
        let teacher = random_logits(7, 2, 5, 1.0);
        let p = softmax_with_temperature(&teacher, 1.0).unwrap();
        let (at_teacher, grad) = soft_cross_entropy(&teacher, &p).unwrap();
        assert!(grad.data().iter().all(|g| g.abs() < 1e-6));
        let other = random_logits(8, 2, 5, 1.0);
        let (at_other, _) = soft_cross_entropy(&other, &p).unwrap();
        assert!(at_other > at_teacher);
    }

    #[test]
    fn soft_loss_rejects_bad_input() {
        let logits = random_logits(9, 2, 3, 1.0);
        let wrong = Tensor::zeros_dims(&[2, 4]).unwrap();
        assert!(soft_cross_entropy(&logits, &wrong).is_err());
        let ok = Tensor::full(logits.shape().clone(), 1.0 / 3.0);
        assert!(soft_cross_entropy_with_temperature(&logits, &ok, 0.0).is_err());
        assert!(soft_cross_entropy_with_temperature(&logits, &ok, f32::NAN).is_err());
        let mut neg = ok.clone();
        neg.data_mut()[4] = -0.1;
        let err = soft_cross_entropy(&logits, &neg).unwrap_err().to_string();
        assert!(err.contains("row 1, class 1"), "{err}");
    }
}
