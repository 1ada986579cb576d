//! slimnet: makes trained neural networks cheap to run.
//!
//! This facade re-exports the workspace crates so that an application can depend on one
//! package. Each crate is usable alone; see `docs/ARCHITECTURE.md` for the map.
#![warn(missing_docs)]

pub use decompose;
pub use distill;
pub use huffman_codec;
pub use nn;
pub use pipeline;
pub use prune;
pub use quant;
pub use share;
pub use tensor_core;
pub use xnor_kernels;
