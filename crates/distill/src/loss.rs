//! The distillation loss of Hinton, Vinyals and Dean (2015), section 2, with its gradient
//! with respect to the student's logits:
//!
//! `L = alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T)) + (1 - alpha) * CE(y, softmax(z_s))`
//!
//! averaged over the batch. The soft term's gradient is `alpha * T * (p_s - p_t) / B` (the
//! `T^2` keeps its magnitude comparable across temperatures, as the paper advises); at high
//! temperature, for zero-mean logits, it approaches `alpha * (z_s - z_t) / (N B)`, logit
//! matching (the paper's eq. 3 limit).

use nn::loss::softmax_cross_entropy;
use nn::{NnError, Result};
use tensor_core::Tensor;

/// Temperature and mixing weight of the soft-target term.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DistillParams {
    /// Softmax temperature `T > 0` of both teacher and student in the soft term.
    pub temperature: f32,
    /// Weight `alpha` in `[0, 1]` of the soft term (`1 - alpha` on the hard labels).
    pub alpha: f32,
}

impl Default for DistillParams {
    fn default() -> Self {
        Self {
            temperature: 4.0,
            alpha: 0.9,
        }
    }
}

impl DistillParams {
    /// Checks `T > 0` and `alpha` in `[0, 1]`, both finite.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(NnError::Config(format!(
                "distillation: temperature {} must be finite and > 0",
                self.temperature
            )));
        }
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(NnError::Config(format!(
                "distillation: alpha {} must be in [0, 1]",
                self.alpha
            )));
        }
        Ok(())
    }
}

/// Errors unless `student` and `teacher` are both `[batch, classes]` of one shape.
fn same_logits(op: &str, student: &Tensor, teacher: &Tensor) -> Result<()> {
    if student.dims() != teacher.dims() || student.dims().len() != 2 {
        return Err(NnError::BadInput {
            layer: op.into(),
            input: student.shape().clone(),
            reason: format!(
                "student logits {:?} and teacher logits {:?} must both be [batch, classes]",
                student.dims(),
                teacher.dims()
            ),
        });
    }
    Ok(())
}

/// Softmax of `row / t` in f64 (max-subtracted).
fn soft(row: &[f32], t: f64) -> Vec<f64> {
    let m = row
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64 / t));
    let e: Vec<f64> = row.iter().map(|&v| (v as f64 / t - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

/// The mean distillation loss of a batch and its gradient with respect to `student`
/// (`[B, N]` logits each; `labels` the hard classes).
///
/// Errors: invalid parameters, shapes that differ, or labels that do not fit.
pub fn distillation_loss(
    student: &Tensor,
    teacher: &Tensor,
    labels: &[usize],
    params: DistillParams,
) -> Result<(f32, Tensor)> {
    params.validate()?;
    same_logits("distillation_loss", student, teacher)?;
    let (hard_loss, hard_grad) = softmax_cross_entropy(student, labels)?;
    let (b, n) = (student.dims()[0], student.dims()[1]);
    let (t, alpha) = (params.temperature as f64, params.alpha as f64);
    let mut grad = hard_grad.data().to_vec();
    let mut kl = 0.0f64;
    for ((gs, zs), zt) in grad
        .chunks_exact_mut(n)
        .zip(student.data().chunks_exact(n))
        .zip(teacher.data().chunks_exact(n))
    {
        let ps = soft(zs, t);
        let pt = soft(zt, t);
        for k in 0..n {
            if pt[k] > 0.0 {
                kl += pt[k] * (pt[k].ln() - ps[k].max(f64::MIN_POSITIVE).ln());
            }
            let soft_grad = t * (ps[k] - pt[k]) / b as f64;
            gs[k] = (alpha * soft_grad + (1.0 - alpha) * gs[k] as f64) as f32;
        }
    }
    let loss = alpha * t * t * kl / b as f64 + (1.0 - alpha) * hard_loss as f64;
    Ok((
        loss as f32,
        Tensor::from_vec(student.shape().clone(), grad)?,
    ))
}

/// Logit matching (Bucilua et al. 2006; Hinton et al.'s high-temperature limit) mixed with the
/// hard labels: `L = alpha * sum (z_s - z_t)^2 / (2 N B) + (1 - alpha) * CE(y, softmax(z_s))`,
/// with gradient `alpha * (z_s - z_t) / (N B)` plus the labels' term. At high temperature and
/// for zero-mean logits, [`distillation_loss`]'s gradient approaches this one.
///
/// Errors: `alpha` outside `[0, 1]`, shapes that differ, or labels that do not fit.
pub fn logit_matching_loss(
    student: &Tensor,
    teacher: &Tensor,
    labels: &[usize],
    alpha: f32,
) -> Result<(f32, Tensor)> {
    DistillParams {
        temperature: 1.0,
        alpha,
    }
    .validate()?;
    same_logits("logit_matching_loss", student, teacher)?;
    let (hard_loss, hard_grad) = softmax_cross_entropy(student, labels)?;
    let (b, n) = (student.dims()[0], student.dims()[1]);
    let scale = 1.0 / (n * b).max(1) as f64;
    let alpha = alpha as f64;
    let mut squared = 0.0f64;
    let grad: Vec<f32> = hard_grad
        .data()
        .iter()
        .zip(student.data().iter().zip(teacher.data()))
        .map(|(&g, (&zs, &zt))| {
            let d = zs as f64 - zt as f64;
            squared += d * d;
            (alpha * d * scale + (1.0 - alpha) * g as f64) as f32
        })
        .collect();
    let loss = alpha * 0.5 * squared * scale + (1.0 - alpha) * hard_loss as f64;
    Ok((
        loss as f32,
        Tensor::from_vec(student.shape().clone(), grad)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tensor_core::rng::Rng;

    fn logits(rng: &mut Rng, b: usize, n: usize, scale: f32) -> Tensor {
        let v: Vec<f32> = (0..b * n)
            .map(|_| scale * (rng.next_u64() as f32 / u64::MAX as f32 - 0.5))
            .collect();
        Tensor::from_vec(tensor_core::Shape::new(&[b, n]).unwrap(), v).unwrap()
    }

    /// The loss in f64 straight from its definition.
    fn reference(zs: &[f32], zt: &[f32], labels: &[usize], n: usize, p: DistillParams) -> f64 {
        let (t, a) = (p.temperature as f64, p.alpha as f64);
        let b = labels.len();
        let mut total = 0.0;
        for i in 0..b {
            let s = &zs[i * n..(i + 1) * n];
            let ps = soft(s, t);
            let pt = soft(&zt[i * n..(i + 1) * n], t);
            let kl: f64 = (0..n).map(|k| pt[k] * (pt[k] / ps[k]).ln()).sum();
            let p1 = soft(s, 1.0);
            total += a * t * t * kl - (1.0 - a) * p1[labels[i]].ln();
        }
        total / b as f64
    }

    #[test]
    fn loss_and_gradient_match_a_float64_reference_and_finite_differences() {
        let mut rng = Rng::seed_from_u64(7);
        for &(t, alpha) in &[(1.0f32, 0.5f32), (4.0, 0.9), (2.0, 0.0), (8.0, 1.0)] {
            let p = DistillParams {
                temperature: t,
                alpha,
            };
            let (b, n) = (3, 5);
            let zs = logits(&mut rng, b, n, 4.0);
            let zt = logits(&mut rng, b, n, 6.0);
            let labels = [0, 3, 4];
            let (loss, grad) = distillation_loss(&zs, &zt, &labels, p).unwrap();
            let want = reference(zs.data(), zt.data(), &labels, n, p);
            assert!(
                (loss as f64 - want).abs() < 1e-5 * want.abs().max(1.0),
                "{loss} {want}"
            );
            let h = 1e-3f64;
            for j in 0..b * n {
                let mut plus = zs.data().to_vec();
                let mut minus = zs.data().to_vec();
                plus[j] += h as f32;
                minus[j] -= h as f32;
                let fd = (reference(&plus, zt.data(), &labels, n, p)
                    - reference(&minus, zt.data(), &labels, n, p))
                    / (2.0 * h);
                let g = grad.data()[j] as f64;
                assert!(
                    (g - fd).abs() < 2e-3 * fd.abs().max(0.05),
                    "T {t} alpha {alpha} j {j}: {g} vs {fd}"
                );
            }
        }
    }

    #[test]
    fn at_high_temperature_the_gradient_approaches_logit_matching() {
        let mut rng = Rng::seed_from_u64(3);
        let (b, n) = (2, 10);
        let centre = |t: Tensor| {
            let mut v = t.data().to_vec();
            for row in v.chunks_exact_mut(n) {
                let m = row.iter().sum::<f32>() / n as f32;
                row.iter_mut().for_each(|x| *x -= m);
            }
            Tensor::from_vec(t.shape().clone(), v).unwrap()
        };
        let zs = centre(logits(&mut rng, b, n, 2.0));
        let zt = centre(logits(&mut rng, b, n, 2.0));
        let p = DistillParams {
            temperature: 200.0,
            alpha: 1.0,
        };
        let (_, grad) = distillation_loss(&zs, &zt, &[0, 1], p).unwrap();
        for j in 0..b * n {
            let matching = (zs.data()[j] - zt.data()[j]) / (n * b) as f32;
            assert!(
                (grad.data()[j] - matching).abs() < 0.02 * matching.abs().max(1e-2),
                "{j}"
            );
        }
    }

    #[test]
    fn bad_parameters_and_shapes_are_errors() {
        let mut rng = Rng::seed_from_u64(1);
        let a = logits(&mut rng, 2, 3, 1.0);
        let c = logits(&mut rng, 2, 4, 1.0);
        let p = DistillParams::default();
        assert!(distillation_loss(&a, &c, &[0, 1], p).is_err());
        for bad in [
            DistillParams {
                temperature: 0.0,
                alpha: 0.5,
            },
            DistillParams {
                temperature: f32::NAN,
                alpha: 0.5,
            },
            DistillParams {
                temperature: 1.0,
                alpha: 1.5,
            },
        ] {
            assert!(distillation_loss(&a, &a, &[0, 1], bad).is_err());
        }
    }

    #[test]
    fn logit_matching_matches_finite_differences_and_the_high_temperature_limit() {
        let mut rng = Rng::seed_from_u64(9);
        let (b, n) = (4, 10);
        let zs = logits(&mut rng, b, n, 4.0);
        let zt = logits(&mut rng, b, n, 4.0);
        let labels = [1, 3, 5, 7];
        for alpha in [0.0f32, 0.5, 1.0] {
            let (_, g) = logit_matching_loss(&zs, &zt, &labels, alpha).unwrap();
            for i in [0, 7, 23, 39] {
                let h = 1e-2f32;
                let mut up = zs.data().to_vec();
                up[i] += h;
                let mut down = zs.data().to_vec();
                down[i] -= h;
                let at = |v: Vec<f32>| {
                    let t = Tensor::from_vec(zs.shape().clone(), v).unwrap();
                    logit_matching_loss(&t, &zt, &labels, alpha).unwrap().0 as f64
                };
                let fd = (at(up) - at(down)) / (2.0 * h as f64);
                assert!(
                    (fd - g.data()[i] as f64).abs() < 2e-3,
                    "alpha {alpha} i {i}: {fd} vs {}",
                    g.data()[i]
                );
            }
        }
        // Zero-mean logits at T = 200: the soft term's gradient (its T^2 factor included)
        // approaches logit matching's.
        let centre = |t: &Tensor| {
            let mut v = t.data().to_vec();
            for row in v.chunks_exact_mut(n) {
                let m = row.iter().sum::<f32>() / n as f32;
                row.iter_mut().for_each(|x| *x -= m);
            }
            Tensor::from_vec(t.shape().clone(), v).unwrap()
        };
        let (zs, zt) = (centre(&zs), centre(&zt));
        let p = DistillParams {
            temperature: 200.0,
            alpha: 1.0,
        };
        let (_, soft) = distillation_loss(&zs, &zt, &labels, p).unwrap();
        let (_, lm) = logit_matching_loss(&zs, &zt, &labels, 1.0).unwrap();
        for (s, l) in soft.data().iter().zip(lm.data()) {
            assert!((s - l).abs() < 1e-2 * l.abs().max(1e-2), "{s} vs {l}");
        }
        assert!(logit_matching_loss(&zs, &zt, &labels, 1.5).is_err());
    }
}
