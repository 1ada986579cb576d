//! Checkpointing a command whose training is several runs of [`Trainer::fit`] made by code it
//! does not control: the rounds of an iterative pruning schedule, the stages of a recipe,
//! a retraining inside a technique crate. Each `fit` inside [`Session::run`] is a *phase*,
//! numbered in call order.
//!
//! While a session runs, every [`Trainer::fit`] of this thread goes through it:
//! - a phase that finished before the checkpoint the session resumes is *replayed*, not
//!   trained: the model becomes the one the phase ended with, the hooks get the states they
//!   ended with (masks, codebooks) and `fit` returns the phase's report, so the code around
//!   it (the next round's masks, the next stage) computes exactly what it computed before;
//! - the phase the checkpoint stopped in continues from the checkpoint's position;
//! - later phases train, with the session's `checkpoint_every` and `stop_after_epochs`
//!   (counted over all phases) and its stop request. A stop writes the checkpoint through the
//!   session's sink and makes `fit` fail with [`NnError::Stopped`], which the technique's code
//!   passes up to the command.
//!
//! The checkpoint ([`crate::io::checkpoint`], version 3) records the finished phases (their
//! settings, reports, hook states, dropout generators and end models) beside the state of
//! the phase in progress, so a resumed run writes what an uninterrupted one writes, bit for
//! bit, given the same command line.

use std::cell::RefCell;

use serde::{Deserialize, Serialize};

use super::{
    FitControl, FitOutcome, Progress, TrainConfig, TrainReport, TrainState, Trainer,
    dropout_states, restore_dropout_states,
};
use crate::data::Dataset;
use crate::error::{NnError, Result};
use crate::model::Model;
use crate::registry::LayerRegistry;

/// A phase that ran to its end: what a resume needs to replay it without training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FinishedPhase {
    /// Its training configuration (a resume must call the phase with the same one).
    pub config: TrainConfig,
    /// What its `fit` returned.
    pub report: TrainReport,
    /// Each hook's [`super::TrainHook::state`] at its end.
    pub hooks: Vec<Option<Vec<u8>>>,
    /// Each dropout layer's generator at its end, by layer path.
    pub dropout_rngs: Vec<(String, [u64; 4])>,
    /// The model at its end, as a native model file image.
    pub model: Vec<u8>,
}

/// Where a session stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StopPoint {
    /// The phase, from 0.
    pub phase: usize,
    /// The epoch of that phase to continue, from 0.
    pub epoch: usize,
    /// Steps of that epoch already taken.
    pub step_in_epoch: usize,
}

/// A phase in progress, as a checkpoint holds it: its configuration, its state and its
/// weights.
pub struct InProgress {
    /// The phase's training configuration.
    pub config: TrainConfig,
    /// Where it stopped.
    pub state: TrainState,
    /// The weights at that point.
    pub model: Model,
}

/// What the sink of a session receives: write it as a checkpoint.
pub struct SessionCheckpoint<'a> {
    /// The phases finished before the current one.
    pub finished: &'a [FinishedPhase],
    /// The current phase's configuration.
    pub config: &'a TrainConfig,
    /// Its state.
    pub state: &'a TrainState,
    /// The weights.
    pub model: &'a Model,
}

/// Receives each checkpoint of a session (periodic ones and the one a stop writes).
pub type SessionSink = dyn FnMut(&SessionCheckpoint<'_>) -> Result<()>;

/// The checkpointing of a multi-phase command (see the module docs).
pub struct Session {
    registry: LayerRegistry,
    replay: Vec<FinishedPhase>,
    resume: Option<InProgress>,
    finished: Vec<FinishedPhase>,
    checkpoint_every: Option<usize>,
    stop_after_epochs: Option<usize>,
    should_stop: Box<dyn Fn() -> bool>,
    sink: Box<SessionSink>,
    stopped: Option<StopPoint>,
    /// Whether the last phase was trained (not replayed) by this session.
    last_trained: bool,
}

thread_local! {
    static ACTIVE: RefCell<Option<Session>> = const { RefCell::new(None) };
}

impl Session {
    /// A session from the first phase: checkpoints every `checkpoint_every` epochs of each
    /// phase, stops once `stop_after_epochs` epochs of all phases together are complete or
    /// when `should_stop` says so; `sink` writes the checkpoints; replayed phases' models
    /// are rebuilt through `registry`.
    pub fn new(
        registry: LayerRegistry,
        checkpoint_every: Option<usize>,
        stop_after_epochs: Option<usize>,
        should_stop: Box<dyn Fn() -> bool>,
        sink: Box<SessionSink>,
    ) -> Self {
        Self {
            registry,
            replay: Vec::new(),
            resume: None,
            finished: Vec::new(),
            checkpoint_every,
            stop_after_epochs,
            should_stop,
            sink,
            stopped: None,
            last_trained: false,
        }
    }

    /// Continues a checkpoint: its finished phases are replayed, and the phase after them
    /// continues from `current`.
    pub fn resuming(mut self, finished: Vec<FinishedPhase>, current: InProgress) -> Self {
        self.replay = finished;
        self.resume = Some(current);
        self
    }

    /// Runs `work` with this session answering every [`Trainer::fit`] of the thread; gives
    /// back its result and the session (ask [`Session::stopped`]).
    ///
    /// Errors inside `work` pass through; a session already running on the thread makes
    /// this one an error.
    pub fn run<R>(self, work: impl FnOnce() -> R) -> Result<(R, Session)> {
        let busy = ACTIVE.with(|a| a.borrow().is_some());
        if busy {
            return Err(NnError::Config(
                "train: a checkpointing session is already running on this thread".into(),
            ));
        }
        ACTIVE.with(|a| *a.borrow_mut() = Some(self));
        let out = work();
        let session = ACTIVE.with(|a| a.borrow_mut().take()).ok_or_else(|| {
            NnError::Config("train: the checkpointing session was lost during its run".into())
        })?;
        Ok((out, session))
    }

    /// Where the run stopped, if it did (its checkpoint was written).
    pub fn stopped(&self) -> Option<StopPoint> {
        self.stopped
    }

    /// The phases finished so far, the replayed ones included.
    pub fn finished(&self) -> &[FinishedPhase] {
        &self.finished
    }

    /// The session of this thread, taken out while one `fit` runs through it.
    pub(super) fn take_active() -> Option<Session> {
        ACTIVE.with(|a| a.borrow_mut().take())
    }

    /// Puts the session back after the `fit`.
    pub(super) fn put_back(self) {
        ACTIVE.with(|a| *a.borrow_mut() = Some(self));
    }

    /// One [`Trainer::fit`] of the session: replayed, resumed or trained.
    pub(super) fn fit(
        &mut self,
        trainer: &mut Trainer,
        model: &mut Model,
        train: &Dataset,
        test: Option<&Dataset>,
        on_progress: &mut dyn FnMut(&Progress),
    ) -> Result<TrainReport> {
        let index = self.finished.len();
        if let Some(stop) = self.stopped {
            return Err(stopped_error(stop));
        }
        if let Some(done) = self.replay.get(index).cloned() {
            check_same(index, &done.config, trainer.config())?;
            let source = format!("checkpoint phase {} (model)", index + 1);
            *model = crate::io::native::from_bytes_with(&done.model, &source, &self.registry)?;
            restore_dropout_states(model, &done.dropout_rngs)?;
            trainer.restore_hook_states(&done.hooks)?;
            let report = done.report.clone();
            self.finished.push(done);
            self.last_trained = false;
            return Ok(report);
        }
        let mut resume = None;
        if let Some(current) = self.resume.take() {
            check_same(index, &current.config, trainer.config())?;
            *model = current.model;
            resume = Some(current.state);
        }
        let before: usize = self.finished.iter().map(|f| f.config.epochs).sum();
        // A stop point at this phase's start (the last phase ended exactly there) stops at
        // its first step; one inside it stops after that many of its epochs.
        let stop_here =
            resume.is_none() && self.last_trained && self.stop_after_epochs == Some(before);
        let stop_after = self
            .stop_after_epochs
            .and_then(|n| n.checked_sub(before))
            .filter(|&n| n > 0);
        let config = trainer.config().clone();
        let finished = &self.finished;
        let sink = &mut self.sink;
        let should_stop = &self.should_stop;
        let mut control = FitControl {
            resume,
            checkpoint_every: self.checkpoint_every,
            stop_after_epochs: stop_after,
            should_stop: Box::new(move || stop_here || should_stop()),
            on_checkpoint: Box::new(|m, st| {
                sink(&SessionCheckpoint {
                    finished,
                    config: &config,
                    state: st,
                    model: m,
                })
            }),
        };
        let outcome = trainer.fit_controlled(model, train, test, on_progress, &mut control)?;
        drop(control);
        match outcome {
            FitOutcome::Finished(report) => {
                self.finished.push(FinishedPhase {
                    config: trainer.config().clone(),
                    report: report.clone(),
                    hooks: trainer.hook_states()?,
                    dropout_rngs: dropout_states(model),
                    model: crate::io::native::to_bytes(model)?,
                });
                self.last_trained = true;
                Ok(report)
            }
            FitOutcome::Stopped { state, .. } => {
                (self.sink)(&SessionCheckpoint {
                    finished: &self.finished,
                    config: trainer.config(),
                    state: &state,
                    model,
                })?;
                let stop = StopPoint {
                    phase: index,
                    epoch: state.epoch,
                    step_in_epoch: state.step_in_epoch,
                };
                self.stopped = Some(stop);
                Err(stopped_error(stop))
            }
        }
    }
}

/// The error a stopped `fit` returns.
fn stopped_error(stop: StopPoint) -> NnError {
    NnError::Stopped {
        phase: stop.phase + 1,
        epoch: stop.epoch + 1,
        step: stop.step_in_epoch,
    }
}

/// A replayed or resumed phase must be called with the settings it was trained with.
fn check_same(index: usize, saved: &TrainConfig, now: &TrainConfig) -> Result<()> {
    if saved == now {
        return Ok(());
    }
    Err(NnError::Config(format!(
        "train: resume: training phase {} of the checkpoint ran with other settings than this \
         run's ({} epochs of batch {} at learning rate {} there, {} of batch {} at {} here)",
        index + 1,
        saved.epochs,
        saved.batch_size,
        saved.optimizer.lr(),
        now.epochs,
        now.batch_size,
        now.optimizer.lr()
    )))
}
