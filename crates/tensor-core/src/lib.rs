//! tensor-core: the tensor type and CPU kernels every slimnet crate builds on.
//!
//! ```
//! use tensor_core::conv::{Conv2dParams, conv2d_forward};
//! use tensor_core::{Tensor, bits, dispatch};
//!
//! // A LeNet-5 first layer on one 28x28 image: 20 filters of 5x5.
//! let p = Conv2dParams::new(1, 20, (5, 5));
//! let x = Tensor::zeros_dims(&[1, 1, 28, 28])?;
//! let w = Tensor::zeros_dims(&p.weight_dims())?;
//! assert_eq!(conv2d_forward(&x, &w, None, &p)?.dims(), &[1, 20, 24, 24]);
//!
//! // A dispatched kernel: popcount of XOR on the best path this CPU has.
//! assert_eq!(bits::xor_popcount(&[0b1100], &[0b1010])?, 2);
//! println!("{}", dispatch::report());
//! # Ok::<(), tensor_core::TensorError>(())
//! ```
//!
//! What it is for: an owned, row-major f32 [`Tensor`] with a checked [`Shape`]; the dense
//! kernels of inference and training (GEMM through faer on all cores, conv2d forward and
//! backward by im2col + GEMM, max and average pooling, ReLU, softmax and log-softmax);
//! im2col over any element type ([`conv::im2col`]) for the int8 and binary convolutions of
//! other crates; run-time CPU feature dispatch per kernel family ([`dispatch`]) with the
//! first dispatched kernels ([`bits::xor_popcount`], [`int8::dot_u8i8`]); a seeded, portable
//! RNG ([`rng::Rng`]); a two-thread fork/join whose helper stays awake between the layers of
//! one inference ([`duo::join`]); a scope keeping the kernels on the calling thread
//! ([`serial::run`]); and test helpers ([`testing::assert_close`]).
//!
//! What it is not for: autograd, layers or models (those live in `nn`), nor whole compressed
//! kernels (sparse, int8, binary GEMMs: each lives in the crate of its technique, on top of
//! the dispatch and inner loops here).
#![warn(missing_docs)]

pub mod activation;
pub mod bits;
pub mod conv;
pub mod dispatch;
pub mod duo;
pub mod error;
pub mod gemm;
pub mod int8;
pub mod pool;
pub mod rng;
pub mod serial;
pub mod shape;
pub mod sparse;
pub mod tensor;
pub mod testing;

pub use error::TensorError;
pub use shape::Shape;
pub use tensor::{Tensor, par_zeroed_chunks, zeroed_vec};
