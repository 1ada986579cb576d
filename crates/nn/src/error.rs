//! The error type of nn: each variant names the operation or file and the offending values.

use tensor_core::{Shape, TensorError};

/// Errors raised by layers, models, training, datasets and model I/O.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// A tensor kernel failed (shape mismatch, invalid argument, ...).
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// A layer received an input it cannot take.
    #[error("{layer}: input shape {input} does not fit ({reason})")]
    BadInput {
        /// The layer (kind and index or name).
        layer: String,
        /// The input shape received.
        input: Shape,
        /// What was expected.
        reason: String,
    },
    /// `backward` called without a preceding training-mode `forward`.
    #[error(
        "{layer}: backward called without a cached forward pass (forward in Mode::Train first)"
    )]
    NoForwardCache {
        /// The layer.
        layer: String,
    },
    /// An I/O failure, with the path involved. (The OS error is part of the message, not a
    /// `source`, so that a report printing the error chain says it once.)
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        error: std::io::Error,
    },
    /// A file whose content is malformed: names the file, where, and what.
    #[error("{path}: corrupt {what}: {reason}")]
    Corrupt {
        /// The file (or a description of the source).
        path: String,
        /// What was being read (IDX header, model record, ONNX initializer, ...).
        what: String,
        /// What is wrong, with the values.
        reason: String,
    },
    /// A model construct slimnet does not support (an ONNX op, an attribute, an architecture).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// An invalid configuration value (learning rate, batch size, name of a zoo model, ...).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Training diverged: the loss of a step is NaN or infinite.
    #[error(
        "train: loss became {loss} at epoch {epoch} of {epochs}, step {step} of \
         {steps_per_epoch} (global step {global_step}, learning rate {lr}): lower the learning \
         rate or check the data"
    )]
    NonFiniteLoss {
        /// The loss value.
        loss: f32,
        /// Epoch, from 1.
        epoch: usize,
        /// Epochs of the run.
        epochs: usize,
        /// Step within the epoch, from 1.
        step: usize,
        /// Steps per epoch.
        steps_per_epoch: usize,
        /// Steps completed before this one.
        global_step: usize,
        /// Learning rate of the step.
        lr: f32,
    },
    /// A NaN or an infinity where only finite values make sense: a weight of a model, a value
    /// of an input array. Names the tensor and the first offending element.
    #[error(
        "{what}: element {index} is {value} (non-finite); fix the file, or pass \
         --allow-nonfinite to go on with a warning"
    )]
    NonFinite {
        /// The tensor: a layer path and parameter name, or an input file.
        what: String,
        /// Flat index of the first non-finite element.
        index: usize,
        /// Its value (NaN, inf or -inf).
        value: f32,
    },
    /// Per-parameter optimizer state whose shape no longer matches its parameter (a layer was
    /// replaced under a running optimizer), or a gradient of the wrong shape.
    #[error("{0}")]
    OptimizerState(Box<StateMismatch>),
    /// Training stopped on request (an interruption, `--stop-after-epochs`) inside a
    /// checkpointing [`crate::trainer::Session`], its checkpoint written: not a failure, the
    /// command ends there and a resume continues.
    #[error("training stopped at phase {phase}, epoch {epoch}, step {step} (checkpoint written)")]
    Stopped {
        /// The training phase, from 1.
        phase: usize,
        /// The epoch of that phase, from 1.
        epoch: usize,
        /// Steps of that epoch already taken.
        step: usize,
    },
    /// An error of a crate built on nn (a technique's hook, objective or compressed layer),
    /// kept whole so that callers can downcast it ([`NnError::external`]).
    #[error(transparent)]
    External(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl NnError {
    /// Wraps the error of a crate built on nn without flattening it to a string: technique
    /// crates implement `From<TheirError> for NnError` with this (returning the inner
    /// [`NnError`] unchanged when their error only wraps one), so a hook's error reaches the
    /// Trainer's caller whole, and `std::error::Error::source` or downcasting recovers it.
    pub fn external(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        NnError::External(Box::new(e))
    }

    /// The wrapped error of a crate built on nn, if this is one and of type `E`.
    pub fn downcast_external<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            NnError::External(e) => e.downcast_ref::<E>(),
            _ => None,
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        NnError::Io {
            path: path.as_ref().display().to_string(),
            error: source,
        }
    }

    /// A corrupt-content error on `path`.
    pub fn corrupt(
        path: impl AsRef<std::path::Path>,
        what: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        NnError::Corrupt {
            path: path.as_ref().display().to_string(),
            what: what.into(),
            reason: reason.into(),
        }
    }
}

/// What [`NnError::OptimizerState`] reports (boxed: it is the largest error).
#[derive(Debug, thiserror::Error)]
#[error(
    "{optimizer}: layer {path} parameter `{param}`: {what} has shape {found} but the parameter \
     has shape {expected} (call reset after replacing a layer)"
)]
pub struct StateMismatch {
    /// The optimizer (`sgd`, `adam`).
    pub optimizer: &'static str,
    /// The layer's path.
    pub path: String,
    /// The parameter's name.
    pub param: String,
    /// `state` or `gradient`.
    pub what: &'static str,
    /// The shape found.
    pub found: Shape,
    /// The parameter's shape.
    pub expected: Shape,
}

/// Result alias of this crate.
pub type Result<T, E = NnError> = std::result::Result<T, E>;
