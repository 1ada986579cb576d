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
//! - [`structured`]: L1-norm filter and channel pruning (Li et al., 2017) that removes filters
//!   physically with the matching channels downstream (BatchNorm, next conv, the columns of a
//!   linear layer after Flatten, Parallel branches), leaving a smaller dense model:
//!
//! ```
//! use nn::LayerPath;
//! let mut rng = tensor_core::rng::Rng::seed_from_u64(1);
//! let mut model = nn::zoo::build("cnn-teacher", &mut rng)?;
//! let layers = prune::filter_candidates(&model).prunable; // every conv and the hidden fc
//! let plan: Vec<(LayerPath, f64)> = layers.iter().map(|p| (p.clone(), 0.3)).collect();
//! let report = prune::prune_filters(&mut model, &plan)?; // 30% of the filters of each
//! assert!(2 * report.macs_after < report.macs_before + report.macs_before / 10);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//! - [`nm`]: N:M semi-structured masks (2:4 by default), stored through the sparse layers.
//! - [`dropout`]: Han et al.'s dropout adjustment `D_r = D_o sqrt(C_ir / C_io)` before each
//!   retraining.
//!
//! **Not yet filled:** sensitivity scans.
//!
//! What it is not for: choosing densities (a recipe's job) or weight sharing (the `share`
//! crate).
#![warn(missing_docs)]

pub mod criteria;
pub mod dropout;
mod error;
mod hook;
pub mod layers;
mod mask;
mod model_mask;
pub mod nm;
pub mod relative_index;
pub mod schedule;
pub mod sensitivity;
pub mod sparse;
pub mod structured;

pub use dropout::{DropoutAdjustment, han_dropout_rate};
pub use error::{PruneError, Result};
pub use hook::MaskHook;
pub use layers::{SparseConv2d, SparseLinear, register, sparsify};
pub use mask::Mask;
pub use model_mask::{ModelMask, is_prunable, prunable_layers};
pub use nm::{NmPattern, nm_mask, nm_masks};
pub use relative_index::RelativeIndexed;
pub use schedule::{
    Criterion, PruneReport, Schedule, global_magnitude, prune_model, prune_model_with,
};
pub use sensitivity::{Sensitivity, scan as sensitivity_scan};
pub use sparse::{Csr, SellCs, SparseParams, sparse_conv2d, spmm, spmv, spmv_sell};
pub use structured::{FilterReport, StructuredError, filter_candidates, prune_filters};
