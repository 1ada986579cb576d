//! Weight sharing: tying the weights of a layer to a small codebook of centroids
//! (Deep Compression, section 3).
//!
//! **Not yet filled.** This crate will hold: per-layer 1-D k-means with linear, density
//! and random initialisation; centroid fine-tuning, where each centroid moves by the summed
//! gradient of its members (a Trainer hook); lookup kernels that run a shared layer from
//! its index matrix and codebook without re-densifying.
#![warn(missing_docs)]
