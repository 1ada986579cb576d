//! Pruning: removing the weights a network does not need (Han et al., "Learning both Weights
//! and Connections", 2015; Deep Compression, 2016).
//!
//! **Not yet filled.** This crate will hold: masks; criteria (per-layer threshold
//! `quality_param * std(W)`, global magnitude, L1 filter norms, N:M structured sparsity);
//! schedules (one-shot, iterative, polynomial/AGP); sensitivity scans; sparse formats
//! (CSR with relative indices, as Deep Compression stores them) and sparse kernels. A mask
//! plugs into `nn`'s Trainer as a parameter hook that keeps pruned weights at zero.
#![warn(missing_docs)]
