//! Structured pruning: L1-norm filter and channel pruning (Li et al., 2017) that removes
//! filters physically, so the result is a smaller dense model with fewer multiply-accumulates.
//!
//! [`prune_filters`] removes from chosen `conv2d`/`linear` layers the output filters (units)
//! with the smallest L1 norms, together with the matching channels of every layer reading
//! them: BatchNorm channels, the next convolution's input channels, through Flatten the
//! `H*W` columns per channel of the next linear layer, and through Parallel branches
//! (channel concatenations shift by offsets; a residual sum is a typed error naming the
//! layers). [`filter_candidates`] lists which layers can be pruned, [`uniform_fraction_for_macs`]
//! finds the uniform fraction that meets a MAC target, and [`retrain`] retrains with Han's
//! dropout adjustment. N:M masks live in [`crate::nm`] and share [`StructuredError`].

mod error;
mod filters;
mod flow;
mod retrain;
mod shrink;

pub use error::{StructuredError, StructuredResult};
pub use filters::{
    FilterCandidates, FilterChange, FilterReport, filter_candidates, filter_l1_norms,
    filters_to_keep, kept_count, prune_filters, remove_filters, uniform_fraction_for_macs,
    uniform_plan,
};
pub use retrain::{Retrained, retrain};
