//! Weight sharing: tying the weights of a layer to a small codebook of centroids
//! (Deep Compression, Han, Mao, Dally, ICLR 2016, section 3), storing the cluster indices in
//! `b` bits, and running the shared layer from (codebook, indices) without rebuilding it.
//!
//! ```
//! use share::{KMeansParams, PackedCodes, SharedMatrix, SharedStorage, share_nonzeros};
//! use tensor_core::rng::Rng;
//!
//! // A pruned 20x30 fully connected layer (weight [out, in]).
//! let mut rng = Rng::seed_from_u64(1);
//! let w: Vec<f32> = (0..600)
//!     .map(|i| if i % 3 == 0 { rng.normal() } else { 0.0 })
//!     .collect();
//! // 5-bit sharing (the paper's fc default): code 0 is the reserved zero, 31 k-means
//! // centroids (linear initialisation) for the nonzero weights.
//! let shared = share_nonzeros(&w, 5, &KMeansParams::default())?;
//! // Stored: 600 five-bit codes and the f32 codebook.
//! let packed = PackedCodes::pack(&shared.codes, 5)?;
//! let storage = SharedStorage::new(600, 5, shared.codebook.len())?;
//! assert_eq!(packed.as_bytes().len(), storage.index_bytes); // 375 bytes
//! assert!(storage.actual_rate() > 4.0); // against 2400 dense bytes
//! // Run y = W x from the codes.
//! let layer = SharedMatrix::from_packed(20, 30, &shared.codebook.centroids, &packed)?;
//! let x = vec![1.0f32; 30];
//! let mut y = vec![0.0f32; 20];
//! layer.gemv(&x, &mut y)?;
//! let dense = shared.reconstruct()?;
//! let expected: f32 = dense[..30].iter().sum();
//! assert!((y[0] - expected).abs() <= 1e-5 * (1.0 + expected.abs()));
//! # Ok::<(), share::ShareError>(())
//! ```
//!
//! What it holds:
//! - [`kmeans()`] (module [`mod@kmeans`]): 1-D k-means minimising the within-cluster sum of
//!   squares (Deep Compression, equation 1) with linear (the paper's best, the default),
//!   density (CDF), random (Forgy) and k-means++ initialisation ([`Init`]), deterministic
//!   under a seed; sorted runs make a Lloyd step cost `O(n / 256 + 256 k)` after one sort.
//! - [`share_nonzeros`] and [`share_layer`]: a pruned layer's weights as `bits`-bit codes
//!   into a codebook whose code 0 is reserved for 0.0 (pruned weights stay exactly zero and
//!   are not clustered) and whose other `2^bits - 1` codes are k-means centroids.
//! - [`finetune`]: centroid gradients (equation 3: the sum of the members' gradients),
//!   an SGD step and the rewrite of members from the codebook, which a training hook calls.
//! - [`PackedCodes`]: indices packed LSB-first, `ceil(n b / 8)` bytes, validated on load.
//! - [`SharedStorage`] and [`compression_rate`]: `n b` bits of indices plus `32 k` of
//!   codebook, the paper's rate next to the bytes.
//! - [`SharedMatrix`] (module [`lookup`]): the lookup GEMV and GEMM of a shared linear
//!   layer, portable and AVX2 (a conv weight `[out, in, kh, kw]` is the `[out, in*kh*kw]`
//!   matrix of its im2col GEMM); [`SparseShared`] (module [`sparse`]): compressed rows
//!   whose values are codes, from dense codes or from Deep Compression's relative indices
//!   (tensor-core's [`tensor_core::sparse`] gaps, shared with `prune`).
//! - [`shared_conv2d`] (module [`conv`]): im2col, then the lookup GEMM of dense or sparse
//!   codes on the patches, never building the f32 weight.
//! - Layers ([`register`]): [`SharedLinear`], [`SharedConv2d`] (packed `b`-bit codes and a
//!   codebook), [`SparseSharedLinear`], [`SparseSharedConv2d`] (Deep Compression's storage:
//!   relative-index gaps plus a code per entry); [`to_shared_layers`] converts a shared
//!   model, choosing the sparse form below half density; [`LayerStorage`] counts index bits,
//!   code bits and codebook next to the bytes written.
//!
//! What it is not for: pruning (the `prune` crate), entropy coding of the codes
//! (`huffman-codec`), or training through the shared layers (fine-tune the dense model
//! with [`ShareHook`], then convert).
#![warn(missing_docs)]

pub mod conv;
mod error;
pub mod finetune;
pub mod kmeans;
pub mod layers;
pub mod lookup;
mod model_share;
mod packed;
mod shared;
pub mod sparse;
mod storage;

pub use conv::{CodeGemm, shared_conv2d};
pub use error::{Result, ShareError};
pub use finetune::{centroid_grads, members_from_codebook, sgd_step};
pub use kmeans::{Clustering, Codebook, Init, KMeansParams, kmeans};
pub use layers::{
    SharedConv2d, SharedLinear, SparseSharedConv2d, SparseSharedLinear, layer_storage, register,
};
pub use lookup::{SharedMatrix, gemv_packed};
pub use model_share::{
    ModelShare, ShareHook, SharedForms, share_model, to_shared_layers, to_shared_layers_with,
};
pub use packed::PackedCodes;
pub use shared::{DEFAULT_CONV_BITS, DEFAULT_FC_BITS, SharedWeights, share_layer, share_nonzeros};
pub use sparse::{ColIndices, SparseShared};
pub use storage::{LayerStorage, SharedStorage, compression_rate};
