//! Pruning: removing the weights a network does not need (Han et al., "Learning both Weights
//! and Connections", 2015; Deep Compression, 2016).
//!
//! This crate will hold: masks; criteria (per-layer threshold `quality_param * std(W)`,
//! global magnitude, L1 filter norms, N:M structured sparsity); schedules (one-shot,
//! iterative, polynomial/AGP); sensitivity scans; sparse formats (CSR with relative indices,
//! as Deep Compression stores them) and sparse kernels. A mask plugs into `nn`'s Trainer as a
//! parameter hook that keeps pruned weights at zero.
//!
//! **Filled now:**
//! - [`Mask`]: one keep bit per parameter.
//! - [`criteria`]: magnitude pruning of one layer by the threshold `quality_param * std(W)`
//!   (Han et al., 2015, section 3.3) or by a target density (keep the `round(density * n)`
//!   largest `|w|`).
//! - [`ModelMask`]: masks for the weights (not the biases) of every `linear` and `conv2d` layer
//!   of a [`nn::Model`], built per layer by either criterion, applied by zeroing; [`MaskHook`],
//!   the [`nn::TrainHook`] that keeps pruned weights at zero through retraining.
//! - [`RelativeIndexed`]: Deep Compression's sparse storage (section 2): each stored entry
//!   carries the distance to the previous one in `index_bits` bits, with filler zero entries
//!   when a run of zeros is too long for the field.
//!
//! - [`sparse`]: CSR ([`Csr`]) and conversions to and from the relative index with
//!   bit-packed gaps; sparse kernels ([`spmv`], [`spmv_sell`], [`spmm`], [`sparse_conv2d`])
//!   that run a pruned layer from its sparse form on both cores, each tested against a
//!   reference twin (see [`sparse`] for a runnable example).
//!
//! **Not yet filled:** global and structured criteria, schedules, sensitivity scans, the
//! sparse layers (nn `Layer` impls calling [`sparse`]'s kernels).
//!
//! What it is not for: choosing densities (a recipe's job) or weight sharing (the `share`
//! crate).
#![warn(missing_docs)]

pub mod criteria;
mod error;
mod hook;
pub mod layers;
mod mask;
mod model_mask;
pub mod relative_index;
pub mod schedule;
pub mod sensitivity;
pub mod sparse;

pub use error::{PruneError, Result};
pub use hook::MaskHook;
pub use layers::{SparseConv2d, SparseLinear, register, sparsify};
pub use mask::Mask;
pub use model_mask::{ModelMask, is_prunable, prunable_layers};
pub use relative_index::RelativeIndexed;
pub use schedule::{
    Criterion, PruneReport, Schedule, global_magnitude, prune_model, prune_model_with,
};
pub use sensitivity::{Sensitivity, scan as sensitivity_scan};
pub use sparse::{Csr, SellCs, SparseParams, sparse_conv2d, spmm, spmv, spmv_sell};
