//! The Trainer: the one training loop of slimnet, with hooks for compression-aware retraining.
//!
//! One step of [`Trainer::fit`], at global step `s` (counted from 0 over the run):
//! 1. the learning rate `schedule.lr_at(base_lr, s, steps_per_epoch, total_steps)` is set on
//!    the optimizer;
//! 2. gradients are zeroed; [`TrainHook::before_forward`] (every hook method gets a
//!    [`StepContext`]: step, epoch, steps per epoch, learning rate, the batch);
//! 3. forward in [`Mode::Train`](crate::Mode::Train), loss and its gradient from the [`Objective`] (softmax
//!    cross-entropy by default), a non-finite loss stops the run with an error naming the
//!    epoch and step; backward;
//! 4. [`TrainHook::after_backward`]; the optimizer step; [`TrainHook::after_step`].
//!
//! At the end of each epoch: [`TrainHook::on_epoch_end`], then (if configured and a test set
//! is given) an evaluation in [`Mode::Eval`](crate::Mode::Eval) wrapped in [`TrainHook::before_eval`] and
//! [`TrainHook::after_eval`], as every evaluation through [`Trainer::evaluate`] is.
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
use crate::loss::softmax_cross_entropy;
use crate::metrics::{Evaluation, evaluate, to_model_input};
use crate::model::Model;
use crate::optim::{OptimizerConfig, OptimizerState};
use crate::schedule::Schedule;

mod session;
mod step;

pub use session::{FinishedPhase, InProgress, Session, SessionCheckpoint, SessionSink, StopPoint};

/// Where the Trainer is when it calls a hook's per-step method.
#[derive(Clone, Copy, Debug)]
pub struct StepContext<'a> {
    /// Global step, from 0 over the run.
    pub step: usize,
    /// Epoch, from 0.
    pub epoch: usize,
    /// Step within the epoch, from 0.
    pub step_in_epoch: usize,
    /// Steps in one epoch (what the Trainer actually takes, `drop_last` included).
    pub steps_per_epoch: usize,
    /// Steps of the whole run.
    pub total_steps: usize,
    /// Learning rate of this step.
    pub lr: f32,
    /// The batch as the model sees it (after augmentation).
    pub inputs: &'a Tensor,
    /// The batch's class labels.
    pub labels: &'a [usize],
}

/// Where the Trainer is at the end of an epoch.
#[derive(Clone, Copy, Debug)]
pub struct EpochContext {
    /// The epoch that just ended, from 0.
    pub epoch: usize,
    /// Epochs of the run.
    pub epochs: usize,
    /// Steps in one epoch.
    pub steps_per_epoch: usize,
    /// Steps taken so far in the run.
    pub global_step: usize,
    /// Learning rate of the epoch's last step.
    pub lr: f32,
}

/// Code run by the Trainer around every step and every evaluation: the seam compression
/// techniques plug into.
///
/// Every method has a no-op default. How the techniques use them:
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
///   with the gradient computed at the quantized point. `before_eval` / `after_eval` do the
///   same around every evaluation, so a QAT or binary model is evaluated as quantized.
/// - `on_epoch_end`: iterative and gradual schedules (prune more, recluster) between epochs;
///   the context's step counts and learning rate drive them (Zhu and Gupta's polynomial
///   sparsity is a function of the step).
///
/// Hooks are `Any`, so after training [`Trainer::hook`] reads one back by its type (the
/// masks a pruning hook grew, the codebooks a sharing hook trained).
pub trait TrainHook: std::any::Any + Send {
    /// Before the forward pass of a step (gradients already zeroed).
    fn before_forward(&mut self, model: &mut Model, ctx: &StepContext<'_>) -> Result<()> {
        let _ = (model, ctx);
        Ok(())
    }

    /// After backward, before the optimizer reads the gradients.
    fn after_backward(&mut self, model: &mut Model, ctx: &StepContext<'_>) -> Result<()> {
        let _ = (model, ctx);
        Ok(())
    }

    /// After the optimizer updated the parameters.
    fn after_step(&mut self, model: &mut Model, ctx: &StepContext<'_>) -> Result<()> {
        let _ = (model, ctx);
        Ok(())
    }

    /// After the last step of an epoch, before its evaluation.
    fn on_epoch_end(&mut self, model: &mut Model, ctx: &EpochContext) -> Result<()> {
        let _ = (model, ctx);
        Ok(())
    }

    /// Before an evaluation (during training, and by [`Trainer::evaluate`]).
    fn before_eval(&mut self, model: &mut Model) -> Result<()> {
        let _ = model;
        Ok(())
    }

    /// After an evaluation, even a failed one (undo what `before_eval` did).
    fn after_eval(&mut self, model: &mut Model) -> Result<()> {
        let _ = model;
        Ok(())
    }

    /// The hook's own state at a step boundary, for a checkpoint (pruning masks, sharing
    /// codebooks, a schedule's position): `None` (the default) when it keeps nothing that the
    /// model's weights and the step do not already fix. [`Trainer::fit_controlled`] stores it
    /// in [`TrainState::hooks`] and hands it back to [`TrainHook::restore_state`] on resume.
    fn state(&self) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }

    /// Restores what [`TrainHook::state`] returned. The default refuses: a hook that saves
    /// no state has none to restore.
    fn restore_state(&mut self, bytes: &[u8]) -> Result<()> {
        Err(NnError::Config(format!(
            "train: resume: the checkpoint holds {} bytes of state for a training hook that \
             keeps none",
            bytes.len()
        )))
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

    /// The objective's own state at a step boundary, for a checkpoint (an annealed
    /// distillation's step): `None` (the default) when it keeps none. See
    /// [`TrainHook::state`].
    fn state(&self) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }

    /// Restores what [`Objective::state`] returned; the default refuses.
    fn restore_state(&mut self, bytes: &[u8]) -> Result<()> {
        Err(NnError::Config(format!(
            "train: resume: the checkpoint holds {} bytes of state for a training objective \
             that keeps none",
            bytes.len()
        )))
    }
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
    /// The optimizer steps one epoch of `samples` takes: `samples / batch_size` with
    /// `drop_last`, else rounded up (what progress displays must count).
    pub fn steps_per_epoch(&self, samples: usize) -> usize {
        let b = self.batch_size.max(1);
        if self.drop_last {
            samples / b
        } else {
            samples.div_ceil(b)
        }
    }

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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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

/// The outcome of [`Trainer::fit`] (serializable, for `--json` output and checkpoints).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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

/// Everything a run needs to continue where it stopped, bit for bit: the position (epoch,
/// step), the generators (data order at the start of the epoch, augmentation, each dropout
/// layer's mask stream), the epoch's running sums and the optimizer's per-parameter state.
/// The learning-rate schedule is a function of the global step, so the step is its position.
/// The weights themselves are the model's; `nn::io::checkpoint` stores both.
///
/// Hooks and the objective save their own state ([`TrainHook::state`],
/// [`Objective::state`]), kept here as opaque bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// The epoch to continue, from 0.
    pub epoch: usize,
    /// Steps of that epoch already taken.
    pub step_in_epoch: usize,
    /// Steps taken in the run.
    pub global_step: usize,
    /// Steps in one epoch (checked on resume: the data and batch size must match).
    pub steps_per_epoch: usize,
    /// Training samples (checked on resume).
    pub train_samples: usize,
    /// The data-order generator at the start of `epoch`, before its shuffle.
    pub shuffle_rng: [u64; 4],
    /// The augmentation generator.
    pub augment_rng: [u64; 4],
    /// Sum of the per-sample losses of `epoch` so far.
    pub loss_sum: f64,
    /// Correct training predictions of `epoch` so far.
    pub correct: usize,
    /// Samples of `epoch` so far.
    pub seen: usize,
    /// Learning rate of the last step.
    pub lr: f32,
    /// Each dropout layer's mask-stream generator, by layer path.
    pub dropout_rngs: Vec<(String, [u64; 4])>,
    /// The optimizer's per-parameter state.
    pub optimizer: OptimizerState,
    /// Each hook's [`TrainHook::state`], in the order the hooks were added (not serialized
    /// with the rest: `nn::io::checkpoint` keeps it in a section of its own).
    #[serde(skip)]
    pub hooks: Vec<Option<Vec<u8>>>,
    /// The objective's [`Objective::state`] (serialized like `hooks`).
    #[serde(skip)]
    pub objective: Option<Vec<u8>>,
}

/// What receives the model and the state at each periodic checkpoint.
pub type CheckpointSink<'a> = dyn FnMut(&Model, &TrainState) -> Result<()> + 'a;

/// How [`Trainer::fit_controlled`] checkpoints, resumes and stops.
pub struct FitControl<'a> {
    /// Continue from this state (the model must hold the weights saved with it).
    pub resume: Option<TrainState>,
    /// Call `on_checkpoint` after every this many epochs (not after the last).
    pub checkpoint_every: Option<usize>,
    /// Stop, as an interruption does, once this many epochs of the run are complete.
    pub stop_after_epochs: Option<usize>,
    /// Polled before every step: `true` stops the run at that step boundary.
    pub should_stop: Box<dyn Fn() -> bool + 'a>,
    /// Receives the model and the state to save at each periodic checkpoint.
    pub on_checkpoint: Box<CheckpointSink<'a>>,
}

impl Default for FitControl<'_> {
    /// A run from the start, never checkpointed or stopped: [`Trainer::fit`].
    fn default() -> Self {
        Self {
            resume: None,
            checkpoint_every: None,
            stop_after_epochs: None,
            should_stop: Box::new(|| false),
            on_checkpoint: Box::new(|_, _| Ok(())),
        }
    }
}

/// How [`Trainer::fit_controlled`] ended.
#[derive(Debug)]
pub enum FitOutcome {
    /// Every epoch ran.
    Finished(TrainReport),
    /// Stopped early (`should_stop` or `stop_after_epochs`): the epochs that completed in
    /// this call, and the state a resume continues from.
    Stopped {
        /// Epochs completed in this call.
        report: TrainReport,
        /// What a resume needs besides the model's weights.
        state: Box<TrainState>,
    },
}

/// Each dropout layer's generator state, by layer path.
fn dropout_states(model: &Model) -> Vec<(String, [u64; 4])> {
    let mut out = Vec::new();
    model.visit(&mut |path, layer| {
        if let Some(d) = layer.as_any().downcast_ref::<crate::layers::Dropout>() {
            out.push((path.to_string(), d.rng_state()));
        }
    });
    out
}

/// Restores [`dropout_states`]: every saved path must be a dropout layer of `model` and
/// every dropout layer must be saved.
fn restore_dropout_states(model: &mut Model, saved: &[(String, [u64; 4])]) -> Result<()> {
    let mut restored = 0;
    model.visit_mut(&mut |path, layer| {
        if let Some(d) = layer.as_any_mut().downcast_mut::<crate::layers::Dropout>() {
            let key = path.to_string();
            let (_, st) = saved.iter().find(|(p, _)| *p == key).ok_or_else(|| {
                NnError::Config(format!(
                    "train: resume: no saved generator for dropout layer {key}"
                ))
            })?;
            d.set_rng_state(*st)?;
            restored += 1;
        }
        Ok(())
    })?;
    if restored != saved.len() {
        return Err(NnError::Config(format!(
            "train: resume: {} saved dropout generators, the model has {restored} dropout layers",
            saved.len()
        )));
    }
    Ok(())
}

/// A generator from a saved state, refusing the all-zero state.
fn rng_from(state: [u64; 4], what: &str) -> Result<Rng> {
    Rng::from_state(state).ok_or_else(|| {
        NnError::Config(format!(
            "train: resume: the {what} generator state is all zero"
        ))
    })
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

    /// The first hook of type `H`, to read back what it gathered after training.
    pub fn hook<H: TrainHook>(&self) -> Option<&H> {
        self.hooks.iter().find_map(|h| {
            let any: &dyn std::any::Any = h.as_ref();
            any.downcast_ref::<H>()
        })
    }

    /// The first hook of type `H`, mutable.
    pub fn hook_mut<H: TrainHook>(&mut self) -> Option<&mut H> {
        self.hooks.iter_mut().find_map(|h| {
            let any: &mut dyn std::any::Any = h.as_mut();
            any.downcast_mut::<H>()
        })
    }

    /// Each hook's [`TrainHook::state`], in order.
    fn hook_states(&self) -> Result<Vec<Option<Vec<u8>>>> {
        self.hooks.iter().map(|h| h.state()).collect()
    }

    /// A saved state list must have one entry per hook.
    fn check_hook_count(&self, hooks: &[Option<Vec<u8>>]) -> Result<()> {
        if hooks.len() != self.hooks.len() {
            return Err(NnError::Config(format!(
                "train: resume: the checkpoint holds the state of {} training hooks, this run \
                 has {}",
                hooks.len(),
                self.hooks.len()
            )));
        }
        Ok(())
    }

    /// Restores the hooks' saved states (a replayed phase of a [`Session`]): one entry per
    /// hook; a hook without a saved state keeps its own.
    fn restore_hook_states(&mut self, hooks: &[Option<Vec<u8>>]) -> Result<()> {
        self.check_hook_count(hooks)?;
        for (h, saved) in self.hooks.iter_mut().zip(hooks) {
            if let Some(bytes) = saved {
                h.restore_state(bytes)?;
            }
        }
        Ok(())
    }

    /// Restores the hooks' and the objective's saved states: one entry per hook, and a
    /// state wherever the fresh hook (or objective) has one.
    fn restore_states(
        &mut self,
        hooks: &[Option<Vec<u8>>],
        objective: Option<&[u8]>,
    ) -> Result<()> {
        self.check_hook_count(hooks)?;
        let missing = |what: String| {
            NnError::Config(format!(
                "train: resume: the checkpoint holds no state for {what}, which keeps one"
            ))
        };
        for (i, (h, saved)) in self.hooks.iter_mut().zip(hooks).enumerate() {
            match saved {
                Some(bytes) => h.restore_state(bytes)?,
                None if h.state()?.is_some() => return Err(missing(format!("training hook {i}"))),
                None => {}
            }
        }
        match objective {
            Some(bytes) => self.objective.restore_state(bytes),
            None if self.objective.state()?.is_some() => {
                Err(missing("the training objective".into()))
            }
            None => Ok(()),
        }
    }

    /// Evaluates `model` on `data` through the hooks: `before_eval` of each hook, the
    /// evaluation in [`Mode::Eval`](crate::Mode::Eval), then `after_eval` of each hook in reverse order (run even
    /// when the evaluation failed). A quantization-aware or binary model is thus measured as
    /// it will run, not as its latent floats.
    pub fn evaluate(&mut self, model: &mut Model, data: &Dataset) -> Result<Evaluation> {
        evaluate_through(&mut self.hooks, model, data, self.config.eval_batch_size)
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
    /// Evaluations, during and after the run, go through the hooks ([`Trainer::evaluate`]).
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
        if let Some(mut session) = Session::take_active() {
            let out = session.fit(self, model, train, test, on_progress);
            session.put_back();
            return out;
        }
        match self.fit_controlled(model, train, test, on_progress, &mut FitControl::default())? {
            FitOutcome::Finished(report) | FitOutcome::Stopped { report, .. } => Ok(report),
        }
    }

    /// [`Trainer::fit`] with checkpoints: resumes from `control.resume`, hands the state to
    /// `control.on_checkpoint` every `checkpoint_every` epochs, and stops at the next step
    /// boundary once `should_stop` answers `true` (or after `stop_after_epochs` epochs),
    /// returning the state a resume needs (the hooks' and the objective's included). A
    /// resumed run gives the same weights, bit for bit, as one that never stopped (same data,
    /// configuration, hooks and objective).
    pub fn fit_controlled(
        &mut self,
        model: &mut Model,
        train: &Dataset,
        test: Option<&Dataset>,
        on_progress: &mut dyn FnMut(&Progress),
        control: &mut FitControl<'_>,
    ) -> Result<FitOutcome> {
        model.set_input_grad_needed(false);
        let result = self.fit_epochs(model, train, test, on_progress, control);
        model.set_input_grad_needed(true);
        result
    }

    /// The training loop of [`Trainer::fit_controlled`].
    fn fit_epochs(
        &mut self,
        model: &mut Model,
        train: &Dataset,
        test: Option<&Dataset>,
        on_progress: &mut dyn FnMut(&Progress),
        control: &mut FitControl<'_>,
    ) -> Result<FitOutcome> {
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
        let steps_per_epoch = cfg.steps_per_epoch(n);
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
        let (mut first_epoch, mut skip, mut sums) = (0, 0, (0.0f64, 0usize, 0usize));
        if let Some(st) = control.resume.take() {
            if st.steps_per_epoch != steps_per_epoch || st.train_samples != n {
                return Err(NnError::Config(format!(
                    "train: resume: the checkpoint was taken with {} training samples in {} \
                     steps per epoch, this run has {n} in {steps_per_epoch}",
                    st.train_samples, st.steps_per_epoch
                )));
            }
            if st.epoch >= cfg.epochs || st.step_in_epoch >= steps_per_epoch {
                return Err(NnError::Config(format!(
                    "train: resume: position epoch {} step {} is outside the run ({} epochs of \
                     {steps_per_epoch} steps)",
                    st.epoch, st.step_in_epoch, cfg.epochs
                )));
            }
            optimizer.load_state(model, &st.optimizer)?;
            restore_dropout_states(model, &st.dropout_rngs)?;
            self.restore_states(&st.hooks, st.objective.as_deref())?;
            shuffle_rng = rng_from(st.shuffle_rng, "data-order")?;
            augment_rng = rng_from(st.augment_rng, "augmentation")?;
            (first_epoch, skip, global_step, lr) =
                (st.epoch, st.step_in_epoch, st.global_step, st.lr);
            sums = (st.loss_sum, st.correct, st.seen);
        }
        for epoch in first_epoch..cfg.epochs {
            let epoch_start = Instant::now();
            let epoch_rng = shuffle_rng.state();
            order.iter_mut().enumerate().for_each(|(i, o)| *o = i);
            shuffle_rng.shuffle(&mut order);
            let (mut loss_sum, mut correct, mut seen) = std::mem::take(&mut sums);
            for (step, chunk) in order
                .chunks(cfg.batch_size)
                .take(steps_per_epoch)
                .enumerate()
                .skip(std::mem::take(&mut skip))
            {
                if (control.should_stop)() {
                    let state = TrainState {
                        epoch,
                        step_in_epoch: step,
                        global_step,
                        steps_per_epoch,
                        train_samples: n,
                        shuffle_rng: epoch_rng,
                        augment_rng: augment_rng.state(),
                        loss_sum,
                        correct,
                        seen,
                        lr,
                        dropout_rngs: dropout_states(model),
                        optimizer: optimizer.save_state()?,
                        hooks: self.hook_states()?,
                        objective: self.objective.state()?,
                    };
                    model.clear_cache();
                    report.steps = global_step;
                    report.total_seconds = run_start.elapsed().as_secs_f64();
                    return Ok(FitOutcome::Stopped {
                        report,
                        state: Box::new(state),
                    });
                }
                let (mut images, labels) = train.batch(chunk)?;
                if let Some(aug) = &cfg.augment {
                    augment_batch(&mut images, aug, &mut augment_rng)?;
                }
                let x = to_model_input(model, images)?;
                lr = cfg
                    .schedule
                    .lr_at(base_lr, global_step, steps_per_epoch, total_steps);
                optimizer.set_lr(lr);

                let ctx = StepContext {
                    step: global_step,
                    epoch,
                    step_in_epoch: step,
                    steps_per_epoch,
                    total_steps,
                    lr,
                    inputs: &x,
                    labels: &labels,
                };
                model.zero_grad();
                for h in self.hooks.iter_mut() {
                    h.before_forward(model, &ctx)?;
                }
                let logits = step::forward(model, &x)?;
                let (loss, grad) = self.objective.loss(&logits, &x, &labels)?;
                if !loss.is_finite() {
                    return Err(NnError::NonFiniteLoss {
                        loss,
                        epoch: epoch + 1,
                        epochs: cfg.epochs,
                        step: step + 1,
                        steps_per_epoch,
                        global_step,
                        lr,
                    });
                }
                step::backward(model, grad)?;
                for h in self.hooks.iter_mut() {
                    h.after_backward(model, &ctx)?;
                }
                optimizer.step(model)?;
                for h in self.hooks.iter_mut() {
                    h.after_step(model, &ctx)?;
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
            let ectx = EpochContext {
                epoch,
                epochs: cfg.epochs,
                steps_per_epoch,
                global_step,
                lr,
            };
            for h in self.hooks.iter_mut() {
                h.on_epoch_end(model, &ectx)?;
            }
            let last = epoch + 1 == cfg.epochs;
            let eval = match test {
                Some(t) if cfg.eval_every_epoch || last => {
                    model.clear_cache();
                    Some(evaluate_through(
                        &mut self.hooks,
                        model,
                        t,
                        cfg.eval_batch_size,
                    )?)
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
            let done = epoch + 1;
            let checkpoint = control
                .checkpoint_every
                .is_some_and(|k| k > 0 && done % k == 0);
            let stop = control.stop_after_epochs == Some(done);
            if done < cfg.epochs && (checkpoint || stop) {
                let state = TrainState {
                    epoch: done,
                    step_in_epoch: 0,
                    global_step,
                    steps_per_epoch,
                    train_samples: n,
                    shuffle_rng: shuffle_rng.state(),
                    augment_rng: augment_rng.state(),
                    loss_sum: 0.0,
                    correct: 0,
                    seen: 0,
                    lr,
                    dropout_rngs: dropout_states(model),
                    optimizer: optimizer.save_state()?,
                    hooks: self.hook_states()?,
                    objective: self.objective.state()?,
                };
                model.clear_cache();
                if checkpoint {
                    (control.on_checkpoint)(model, &state)?;
                }
                if stop {
                    report.steps = global_step;
                    report.total_seconds = run_start.elapsed().as_secs_f64();
                    return Ok(FitOutcome::Stopped {
                        report,
                        state: Box::new(state),
                    });
                }
            }
        }
        model.clear_cache();
        report.steps = global_step;
        report.total_seconds = run_start.elapsed().as_secs_f64();
        Ok(FitOutcome::Finished(report))
    }
}

/// `evaluate` wrapped in the hooks' `before_eval` and (reverse-order) `after_eval`.
fn evaluate_through(
    hooks: &mut [Box<dyn TrainHook>],
    model: &mut Model,
    data: &Dataset,
    batch: usize,
) -> Result<Evaluation> {
    let mut entered = 0;
    let mut result = Ok(());
    for h in hooks.iter_mut() {
        result = h.before_eval(model);
        if result.is_err() {
            break;
        }
        entered += 1;
    }
    let evaluation = result.and_then(|()| evaluate(model, data, batch));
    let mut undo = Ok(());
    for h in hooks[..entered].iter_mut().rev() {
        let r = h.after_eval(model);
        if undo.is_ok() {
            undo = r;
        }
    }
    let evaluation = evaluation?;
    undo?;
    Ok(evaluation)
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
