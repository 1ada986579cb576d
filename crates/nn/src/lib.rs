//! nn: layers, models and training for slimnet.
//!
//! What it is for: the [`Layer`] trait that dense and compressed layers share; the dense
//! layers (Linear, Conv2d, pooling, ReLU, Flatten, Dropout, BatchNorm2d); a sequential
//! [`Model`]; cross-entropy; SGD with momentum and Adam with learning-rate schedules; a
//! Trainer whose per-step parameter hooks are the seam pruning masks, centroid sharing and
//! straight-through quantizers plug into; evaluation; Fashion-MNIST (IDX) loading; the
//! model zoo; and model I/O (native file, ONNX, safetensors).
//!
//! What it is not for: compression itself (each technique is its own crate above this one).
#![warn(missing_docs)]

pub mod data;
pub mod error;
pub mod finite;
pub mod io;
pub mod layer;
pub mod layers;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod path;
pub mod payload;
pub mod recipes;
pub mod record;
pub mod registry;
pub mod schedule;
pub mod trainer;
pub mod zoo;

pub use data::Dataset;
pub use error::{NnError, Result};
pub use layer::{Layer, Mode, ParamMut, ParamRef};
pub use model::{LayerPath, LayerSummary, Model};
pub use payload::{Payload, PayloadData};
pub use record::{AttrValue, LayerRecord};
pub use registry::LayerRegistry;
pub use trainer::{StepContext, TrainConfig, TrainHook, Trainer};
