//! The Trainer: the one training loop of slimnet, with hooks for compression-aware retraining.
//!
//! One step of [`Trainer::fit`], at global step `s` (counted from 0 over the run):
//! 1. the learning rate `schedule.lr_at(base_lr, s, steps_per_epoch, total_steps)` is set on
//!    the optimizer;
//! 2. gradients are zeroed; [`TrainHook::before_forward`];
//! 3. forward in [`Mode::Train`], loss and its gradient from the [`Objective`] (softmax
//!    cross-entropy by default), a non-finite loss stops the run with an error naming the
//!    epoch and step; backward;
//! 4. [`TrainHook::after_backward`]; the optimizer step; [`TrainHook::after_step`].
//!
//! At the end of each epoch: [`TrainHook::on_epoch_end`], then (if configured and a test set
//! is given) an evaluation in [`Mode::Eval`].
//!
//! Samples are shuffled every epoch and augmented (if configured) from generators forked off
//! `TrainConfig::seed`, so the same seed, model and data give the same weights bit for bit.
//!
//! Design: pruning, weight sharing, quantization-aware and binary training differ from plain
//! training only in what they do to parameters and gradients around the step, so they are
//! hooks on this loop (DESIGN.md, "Training hooks"), not copies of it; distillation differs
//! in the loss, so it is an [`Objective`].

use std::time::Instant;

use serde::{Deserialize, Serialize};
use tensor_core::Tensor;
use tensor_core::rng::Rng;

use crate::data::{Augment, Dataset, augment_batch};
use crate::error::{NnError, Result};
use crate::layer::Mode;
use crate::loss::softmax_cross_entropy;
use crate::metrics::{evaluate, to_model_input};
use crate::model::Model;
use crate::optim::OptimizerConfig;
use crate::schedule::Schedule;

/// Code run by the Trainer around every step: the seam compression techniques plug into.
///
/// Every method has a no-op default. `step` is the global step (from 0 over the run),
/// `epoch` the epoch index (from 0). How the techniques use them:
/// - **Pruning** (Han et al., 2015): `after_backward` multiplies each gradient by its mask so
///   pruned weights get no update, and `after_step` re-zeroes the masked weights (momentum or
///   weight decay could otherwise move them).
/// - **Weight sharing** (Deep Compression, Han et al., 2016): `after_backward` sums the
///   gradients of the members of each centroid (the centroid's gradient) and writes it back
///   to every member, and `after_step` snaps each weight to its centroid's updated value.
/// - **Fake quantization / binary training** (straight-through estimator, Bengio et al.,
///   2013; Courbariaux et al., 2016): `before_forward` swaps the full-precision weights for
///   their quantized values so forward and backward see quantized weights, and
///   `after_backward` swaps the full-precision weights back so the optimizer updates them
///   with the gradient computed at the quantized point.
/// - `on_epoch_end`: iterative schedules (prune more, recluster) between epochs.
pub trait TrainHook: Send {
    /// Before the forward pass of step `step` (gradients already zeroed).
    fn before_forward(&mut self, model: &mut Model, step: usize) -> Result<()> {
        let _ = (model, step);
        Ok(())
    }

    /// After backward, before the optimizer reads the gradients.
    fn after_backward(&mut self, model: &mut Model, step: usize) -> Result<()> {
        let _ = (model, step);
        Ok(())
    }

    /// After the optimizer updated the parameters.
    fn after_step(&mut self, model: &mut Model, step: usize) -> Result<()> {
        let _ = (model, step);
        Ok(())
    }

    /// After the last step of epoch `epoch`, before its evaluation.
    fn on_epoch_end(&mut self, model: &mut Model, epoch: usize) -> Result<()> {
        let _ = (model, epoch);
        Ok(())
    }
}

/// The training loss: maps the model's logits for a batch to the mean loss and its gradient
/// with respect to the logits.
///
/// The default is [`CrossEntropy`]; distillation supplies one that also runs a teacher on
/// `inputs` and matches its soft targets.
pub trait Objective: Send {
    /// Mean loss of the batch and `dLoss/dlogits`. `inputs` is the batch as the model saw it
    /// (after augmentation), `labels` the class indices.
    fn loss(&mut self, logits: &Tensor, inputs: &Tensor, labels: &[usize])
    -> Result<(f32, Tensor)>;
}

/// Softmax cross-entropy against the labels ([`softmax_cross_entropy`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct CrossEntropy;

impl Objective for CrossEntropy {
    fn loss(
        &mut self,
        logits: &Tensor,
        _inputs: &Tensor,
        labels: &[usize],
    ) -> Result<(f32, Tensor)> {
        softmax_cross_entropy(logits, labels)
    }
}

/// Training settings (serializable; missing fields take their defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Samples per optimizer step.
    pub batch_size: usize,
    /// The optimizer and its base learning rate.
    pub optimizer: OptimizerConfig,
    /// How the learning rate varies over the steps.
    pub schedule: Schedule,
    /// Seed of shuffling and augmentation.
    pub seed: u64,
    /// Random flips and shifts of each training batch, or none.
    pub augment: Option<Augment>,
    /// Evaluate on the test set (when one is given) after every epoch; otherwise only after
    /// the last.
    pub eval_every_epoch: bool,
    /// Batch size of evaluation.
    pub eval_batch_size: usize,
    /// Drop the last, smaller batch of each epoch (for layers whose batch statistics suffer
    /// from tiny batches).
    pub drop_last: bool,
}

impl Default for TrainConfig {
    /// 10 epochs of batch 64, SGD 0.05 with momentum 0.9, constant rate, seed 0, no
    /// augmentation, evaluation every epoch in batches of 256.
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 64,
            optimizer: OptimizerConfig::default(),
            schedule: Schedule::Constant,
            seed: 0,
            augment: None,
            eval_every_epoch: true,
            eval_batch_size: 256,
            drop_last: false,
        }
    }
}

impl TrainConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(NnError::Config("train: epochs must be >= 1".into()));
        }
        if self.batch_size == 0 || self.eval_batch_size == 0 {
            return Err(NnError::Config(format!(
                "train: batch sizes must be >= 1 (batch_size {}, eval_batch_size {})",
                self.batch_size, self.eval_batch_size
            )));
        }
        self.optimizer.validate()?;
        self.schedule.validate()
    }
}

/// What the Trainer reports to the progress callback: after every step, and once more at the
/// end of each epoch (`epoch_done`, with the test accuracy when evaluated).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Progress {
    /// Epoch index, from 0.
    pub epoch: usize,
    /// Number of epochs of the run.
    pub epochs: usize,
    /// Steps done in this epoch (1 after the first step).
    pub step: usize,
    /// Steps in one epoch.
    pub steps_per_epoch: usize,
    /// Steps done in the run.
    pub global_step: usize,
    /// Mean training loss of the epoch so far (per sample).
    pub loss: f32,
    /// Learning rate of the last step.
    pub lr: f32,
    /// Whether this report closes the epoch.
    pub epoch_done: bool,
    /// Test accuracy at the end of the epoch, when evaluated.
    pub test_accuracy: Option<f64>,
}

/// One epoch of a [`TrainReport`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EpochReport {
    /// Epoch index, from 0.
    pub epoch: usize,
    /// Mean training loss over the epoch's samples (weights changing during the epoch).
    pub train_loss: f64,
    /// Training accuracy over the epoch's samples, in training mode.
    pub train_accuracy: f64,
    /// Test-set accuracy after the epoch, when evaluated.
    pub test_accuracy: Option<f64>,
    /// Test-set mean loss after the epoch, when evaluated.
    pub test_loss: Option<f64>,
    /// Learning rate of the epoch's last step.
    pub lr: f32,
    /// Wall time of the epoch, evaluation included.
    pub seconds: f64,
}

/// The outcome of [`Trainer::fit`] (serializable, for `--json` output).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrainReport {
    /// One entry per epoch.
    pub epochs: Vec<EpochReport>,
    /// Optimizer steps taken.
    pub steps: usize,
    /// Wall time of the run.
    pub total_seconds: f64,
}

impl TrainReport {
    /// Test accuracy of the last evaluated epoch.
    pub fn final_test_accuracy(&self) -> Option<f64> {
        self.epochs.iter().rev().find_map(|e| e.test_accuracy)
    }
}

/// Runs training: a [`TrainConfig`], hooks, and an objective (see the module docs).
pub struct Trainer {
    config: TrainConfig,
    hooks: Vec<Box<dyn TrainHook>>,
    objective: Box<dyn Objective>,
}

impl Trainer {
    /// A trainer with no hooks and the cross-entropy objective.
    pub fn new(config: TrainConfig) -> Self {
        Self {
            config,
            hooks: Vec::new(),
            objective: Box::new(CrossEntropy),
        }
    }

    /// Adds a hook; hooks run in the order added.
    pub fn with_hook(mut self, hook: Box<dyn TrainHook>) -> Self {
        self.hooks.push(hook);
        self
    }

    /// Replaces the objective (distillation).
    pub fn with_objective(mut self, objective: Box<dyn Objective>) -> Self {
        self.objective = objective;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Removes and returns the hooks (to read state they gathered, such as masks).
    pub fn take_hooks(&mut self) -> Vec<Box<dyn TrainHook>> {
        std::mem::take(&mut self.hooks)
    }

    /// Trains `model` on `train`, evaluating on `test` after each epoch (or after the last,
    /// see [`TrainConfig::eval_every_epoch`]); calls `on_progress` after every step and at
    /// the end of every epoch.
    ///
    /// Errors: an invalid configuration, an empty training set, a test set whose class count
    /// differs, a non-finite loss (naming epoch and step), or any layer, hook or objective
    /// error. On error the model is left as the error found it (for a non-finite loss: the
    /// weights after the last completed step).
    ///
    /// The gradient with respect to the input images is never used, so the first
    /// parametric layer skips it during the run ([`Model::set_input_grad_needed`]).
    pub fn fit(
        &mut self,
        model: &mut Model,
        train: &Dataset,
        test: Option<&Dataset>,
        on_progress: &mut dyn FnMut(&Progress),
    ) -> Result<TrainReport> {
        model.set_input_grad_needed(false);
        let result = self.fit_epochs(model, train, test, on_progress);
        model.set_input_grad_needed(true);
        result
    }

    /// The training loop of [`Trainer::fit`].
    fn fit_epochs(
        &mut self,
        model: &mut Model,
        train: &Dataset,
        test: Option<&Dataset>,
        on_progress: &mut dyn FnMut(&Progress),
    ) -> Result<TrainReport> {
        let cfg = self.config.clone();
        cfg.validate()?;
        if train.is_empty() {
            return Err(NnError::Config("train: the training set is empty".into()));
        }
        if let Some(t) = test
            && t.classes != train.classes
        {
            return Err(NnError::Config(format!(
                "train: test set has {} classes, training set {}",
                t.classes, train.classes
            )));
        }
        let n = train.len();
        let steps_per_epoch = if cfg.drop_last {
            n / cfg.batch_size
        } else {
            n.div_ceil(cfg.batch_size)
        };
        if steps_per_epoch == 0 {
            return Err(NnError::Config(format!(
                "train: drop_last with batch size {} leaves no batch of {n} samples",
                cfg.batch_size
            )));
        }
        let total_steps = steps_per_epoch.saturating_mul(cfg.epochs);
        let base_lr = cfg.optimizer.lr();
        let mut optimizer = cfg.optimizer.build()?;
        let mut root = Rng::seed_from_u64(cfg.seed);
        let mut shuffle_rng = root.fork(0);
        let mut augment_rng = root.fork(1);

        let run_start = Instant::now();
        let mut report = TrainReport {
            epochs: Vec::with_capacity(cfg.epochs),
            steps: 0,
            total_seconds: 0.0,
        };
        let mut order: Vec<usize> = (0..n).collect();
        let mut global_step = 0usize;
        let mut lr = base_lr;
        for epoch in 0..cfg.epochs {
            let epoch_start = Instant::now();
            order.iter_mut().enumerate().for_each(|(i, o)| *o = i);
            shuffle_rng.shuffle(&mut order);
            let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
            for (step, chunk) in order
                .chunks(cfg.batch_size)
                .take(steps_per_epoch)
                .enumerate()
            {
                let (mut images, labels) = train.batch(chunk)?;
                if let Some(aug) = &cfg.augment {
                    augment_batch(&mut images, aug, &mut augment_rng)?;
                }
                let x = to_model_input(model, images)?;
                lr = cfg
                    .schedule
                    .lr_at(base_lr, global_step, steps_per_epoch, total_steps);
                optimizer.set_lr(lr);

                model.zero_grad();
                for h in self.hooks.iter_mut() {
                    h.before_forward(model, global_step)?;
                }
                let logits = model.forward(&x, Mode::Train)?;
                let (loss, grad) = self.objective.loss(&logits, &x, &labels)?;
                if !loss.is_finite() {
                    return Err(NnError::Config(format!(
                        "train: loss became {loss} at epoch {} of {}, step {} of {} \
                         (global step {global_step}, learning rate {lr}): lower the learning \
                         rate or check the data",
                        epoch + 1,
                        cfg.epochs,
                        step + 1,
                        steps_per_epoch
                    )));
                }
                model.backward(&grad)?;
                for h in self.hooks.iter_mut() {
                    h.after_backward(model, global_step)?;
                }
                optimizer.step(model)?;
                for h in self.hooks.iter_mut() {
                    h.after_step(model, global_step)?;
                }

                loss_sum += loss as f64 * labels.len() as f64;
                seen += labels.len();
                if let Ok(pred) = logits.argmax_rows() {
                    correct += pred.iter().zip(&labels).filter(|(p, t)| p == t).count();
                }
                global_step += 1;
                on_progress(&Progress {
                    epoch,
                    epochs: cfg.epochs,
                    step: step + 1,
                    steps_per_epoch,
                    global_step,
                    loss: (loss_sum / seen as f64) as f32,
                    lr,
                    epoch_done: false,
                    test_accuracy: None,
                });
            }
            for h in self.hooks.iter_mut() {
                h.on_epoch_end(model, epoch)?;
            }
            let last = epoch + 1 == cfg.epochs;
            let eval = match test {
                Some(t) if cfg.eval_every_epoch || last => {
                    model.clear_cache();
                    Some(evaluate(model, t, cfg.eval_batch_size)?)
                }
                _ => None,
            };
            let train_loss = loss_sum / seen.max(1) as f64;
            let test_accuracy = eval.as_ref().map(|e| e.accuracy);
            on_progress(&Progress {
                epoch,
                epochs: cfg.epochs,
                step: steps_per_epoch,
                steps_per_epoch,
                global_step,
                loss: train_loss as f32,
                lr,
                epoch_done: true,
                test_accuracy,
            });
            report.epochs.push(EpochReport {
                epoch,
                train_loss,
                train_accuracy: correct as f64 / seen.max(1) as f64,
                test_accuracy,
                test_loss: eval.as_ref().map(|e| e.loss),
                lr,
                seconds: epoch_start.elapsed().as_secs_f64(),
            });
        }
        model.clear_cache();
        report.steps = global_step;
        report.total_seconds = run_start.elapsed().as_secs_f64();
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid_and_bad_ones_are_not() {
        TrainConfig::default().validate().unwrap();
        for bad in [
            TrainConfig {
                epochs: 0,
                ..TrainConfig::default()
            },
            TrainConfig {
                batch_size: 0,
                ..TrainConfig::default()
            },
            TrainConfig {
                eval_batch_size: 0,
                ..TrainConfig::default()
            },
            TrainConfig {
                optimizer: OptimizerConfig::sgd(-0.1, 0.0),
                ..TrainConfig::default()
            },
            TrainConfig {
                schedule: Schedule::Step {
                    gamma: 0.5,
                    every_epochs: 0,
                },
                ..TrainConfig::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn config_serde_round_trip() {
        let cfg = TrainConfig {
            augment: Some(Augment::default()),
            schedule: Schedule::Cosine {
                warmup_steps: 10,
                min_lr: 1e-4,
            },
            optimizer: OptimizerConfig::adam(1e-3),
            ..TrainConfig::default()
        };
        let bytes = bincode::serde::encode_to_vec(&cfg, bincode::config::standard()).unwrap();
        let (back, _): (TrainConfig, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
        assert_eq!(back, cfg);
    }
}
