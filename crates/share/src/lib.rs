//! Weight sharing: tying the weights of a layer to a small codebook of centroids
//! (Deep Compression, section 3).
//!
//! This crate will hold: per-layer 1-D k-means with linear, density and random
//! initialisation; centroid fine-tuning, where each centroid moves by the summed gradient of
//! its members (a Trainer hook); lookup kernels that run a shared layer from its index matrix
//! and codebook without re-densifying.
//!
//! **Filled now:**
//! - [`kmeans()`] (module [`mod@kmeans`]): 1-D k-means (Lloyd's algorithm) minimising the within-cluster sum of squares
//!   `sum_i (w_i - c_{a(i)})^2` (Deep Compression, equation 1), with linear (the paper's best),
//!   density and random (Forgy) initialisation ([`Init`]), returning a [`Codebook`] and the
//!   cluster index of every value.
//! - [`share_nonzeros`] and [`share_layer`]: the weights of a pruned layer as `bits`-bit codes
//!   into a codebook whose code 0 is reserved for the value 0.0 (pruned weights and the filler
//!   entries of relative-index storage) and whose other `2^bits - 1` codes are the k-means
//!   centroids of the nonzero weights.
//!
//! **Not yet filled:** centroid fine-tuning (the Trainer hook) and lookup kernels.
//!
//! What it is not for: pruning (the `prune` crate) or entropy coding of the codes
//! (`huffman-codec`).
#![warn(missing_docs)]

mod error;
pub mod kmeans;
mod shared;

pub use error::{Result, ShareError};
pub use kmeans::{Clustering, Codebook, Init, KMeansParams, kmeans};
pub use shared::{SharedWeights, share_layer, share_nonzeros};
