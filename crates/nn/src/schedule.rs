//! Learning-rate schedules: constant, step decay, and cosine annealing with linear warmup.
//!
//! A schedule scales the optimizer's base learning rate as a function of the global step
//! (counted from 0 over the whole run). The Trainer calls [`Schedule::lr_at`] before every
//! optimizer step, so schedules act per step; step decay is stated in epochs and converted
//! with the number of steps per epoch.
//!
//! Formulas, for base rate `lr0`, step `s`, total steps `S`:
//! - constant: `lr0`;
//! - step decay (`torch.optim.lr_scheduler.StepLR`): `lr0 * gamma^floor(epoch / every_epochs)`
//!   with `epoch = floor(s / steps_per_epoch)`;
//! - cosine annealing (Loshchilov and Hutter, "SGDR", 2017, without restarts) after `W`
//!   warmup steps: `min_lr + (lr0 - min_lr) * (1 + cos(pi * (s - W) / (S - W))) / 2`, and
//!   during warmup (Goyal et al., 2017) the linear ramp `lr0 * (s + 1) / W`.

use serde::{Deserialize, Serialize};

use crate::error::{NnError, Result};

/// A learning-rate schedule (serializable, for configs and reports).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// The base learning rate throughout.
    #[default]
    Constant,
    /// Multiply by `gamma` every `every_epochs` epochs.
    Step {
        /// Decay factor, in `(0, 1]` normally.
        gamma: f32,
        /// Epochs between decays, `>= 1`.
        every_epochs: usize,
    },
    /// Cosine annealing from the base rate down to `min_lr` at the last step, after an
    /// optional linear warmup of `warmup_steps` steps.
    Cosine {
        /// Steps of linear warmup (0 for none).
        warmup_steps: usize,
        /// The rate reached at the end of the run.
        min_lr: f32,
    },
}

impl Schedule {
    /// Checks the schedule's parameters.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Schedule::Constant => Ok(()),
            Schedule::Step {
                gamma,
                every_epochs,
            } => {
                if !(gamma.is_finite() && gamma > 0.0) {
                    return Err(NnError::Config(format!(
                        "step schedule: gamma {gamma} must be finite and > 0"
                    )));
                }
                if every_epochs == 0 {
                    return Err(NnError::Config(
                        "step schedule: every_epochs must be >= 1".into(),
                    ));
                }
                Ok(())
            }
            Schedule::Cosine { min_lr, .. } => {
                if !(min_lr.is_finite() && min_lr >= 0.0) {
                    return Err(NnError::Config(format!(
                        "cosine schedule: min_lr {min_lr} must be finite and >= 0"
                    )));
                }
                Ok(())
            }
        }
    }

    /// The learning rate at global step `step` (from 0) of a run of `total_steps` steps of
    /// which `steps_per_epoch` make one epoch, for base rate `base_lr`.
    ///
    /// Steps past `total_steps` keep the final rate; `steps_per_epoch == 0` counts every step
    /// as epoch 0.
    pub fn lr_at(
        &self,
        base_lr: f32,
        step: usize,
        steps_per_epoch: usize,
        total_steps: usize,
    ) -> f32 {
        match *self {
            Schedule::Constant => base_lr,
            Schedule::Step {
                gamma,
                every_epochs,
            } => {
                let epoch = step.checked_div(steps_per_epoch).unwrap_or(0);
                let decays = epoch / every_epochs.max(1);
                base_lr * gamma.powi(decays.min(i32::MAX as usize) as i32)
            }
            Schedule::Cosine {
                warmup_steps,
                min_lr,
            } => {
                if step < warmup_steps {
                    return base_lr * (step + 1) as f32 / warmup_steps as f32;
                }
                let span = total_steps.saturating_sub(warmup_steps);
                if span == 0 {
                    return min_lr;
                }
                let progress = ((step - warmup_steps) as f64 / span as f64).min(1.0);
                let cos = (1.0 + (std::f64::consts::PI * progress).cos()) / 2.0;
                (min_lr as f64 + (base_lr as f64 - min_lr as f64) * cos) as f32
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_is_constant() {
        let s = Schedule::Constant;
        assert_eq!(s.lr_at(0.1, 0, 10, 100), 0.1);
        assert_eq!(s.lr_at(0.1, 99, 10, 100), 0.1);
    }

    #[test]
    fn step_decays_at_epoch_boundaries() {
        let s = Schedule::Step {
            gamma: 0.5,
            every_epochs: 2,
        };
        s.validate().unwrap();
        // 10 steps per epoch: steps 0..20 are epochs 0-1, 20..40 epochs 2-3.
        assert_eq!(s.lr_at(0.8, 0, 10, 60), 0.8);
        assert_eq!(s.lr_at(0.8, 19, 10, 60), 0.8);
        assert_eq!(s.lr_at(0.8, 20, 10, 60), 0.4);
        assert_eq!(s.lr_at(0.8, 59, 10, 60), 0.2);
        assert_eq!(s.lr_at(0.8, 5, 0, 60), 0.8);
    }

    #[test]
    fn cosine_endpoints_and_midpoint() {
        let s = Schedule::Cosine {
            warmup_steps: 0,
            min_lr: 0.001,
        };
        assert_eq!(s.lr_at(0.1, 0, 10, 100), 0.1);
        assert!((s.lr_at(0.1, 50, 10, 100) - 0.0505).abs() < 1e-6);
        assert!((s.lr_at(0.1, 100, 10, 100) - 0.001).abs() < 1e-7);
        assert!((s.lr_at(0.1, 1000, 10, 100) - 0.001).abs() < 1e-7);
        // Monotonically non-increasing.
        let lrs: Vec<f32> = (0..=100).map(|i| s.lr_at(0.1, i, 10, 100)).collect();
        assert!(lrs.windows(2).all(|w| w[1] <= w[0]));
    }

    #[test]
    fn cosine_warmup_ramps_linearly_to_base() {
        let s = Schedule::Cosine {
            warmup_steps: 4,
            min_lr: 0.0,
        };
        assert!((s.lr_at(1.0, 0, 10, 104) - 0.25).abs() < 1e-7);
        assert!((s.lr_at(1.0, 1, 10, 104) - 0.5).abs() < 1e-7);
        assert!((s.lr_at(1.0, 3, 10, 104) - 1.0).abs() < 1e-7);
        assert!((s.lr_at(1.0, 4, 10, 104) - 1.0).abs() < 1e-7);
        assert!(s.lr_at(1.0, 104, 10, 104).abs() < 1e-7);
        // Warmup longer than the run: no division by zero.
        assert_eq!(s.lr_at(1.0, 5, 10, 3), 0.0);
    }

    #[test]
    fn invalid_schedules_are_rejected() {
        assert!(
            Schedule::Step {
                gamma: 0.0,
                every_epochs: 1
            }
            .validate()
            .is_err()
        );
        assert!(
            Schedule::Step {
                gamma: 0.5,
                every_epochs: 0
            }
            .validate()
            .is_err()
        );
        assert!(
            Schedule::Cosine {
                warmup_steps: 0,
                min_lr: -1.0
            }
            .validate()
            .is_err()
        );
    }
}
