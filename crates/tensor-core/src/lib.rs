//! tensor-core: the tensor type and CPU kernels every slimnet crate builds on.
//!
//! What it is for: an owned, row-major f32 [`Tensor`] with a checked [`Shape`]; the dense
//! kernels of inference and training (GEMM through faer on all cores, conv2d forward and
//! backward by im2col + GEMM, max and average pooling, ReLU, softmax and log-softmax);
//! run-time CPU feature dispatch shared by every SIMD kernel in the workspace
//! ([`dispatch`]); a seeded, portable RNG ([`rng::Rng`]); and test helpers
//! ([`testing::assert_close`]).
//!
//! What it is not for: autograd, layers or models (those live in `nn`), nor compressed
//! kernels (sparse, int8, binary: each lives in the crate of its technique).
#![warn(missing_docs)]

pub mod activation;
pub mod conv;
pub mod dispatch;
pub mod error;
pub mod gemm;
pub mod pool;
pub mod rng;
pub mod shape;
pub mod tensor;
pub mod testing;

pub use error::TensorError;
pub use shape::Shape;
pub use tensor::Tensor;
