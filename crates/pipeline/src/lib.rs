//! Orchestration: the layer registry of every technique, and (to come) the `.slim`
//! container's recipes and reports.
//!
//! [`registry`] composes nn's layer kinds with each technique crate's `register`, so a tool
//! that loads models through [`load`] runs every representation (dense, sparse, shared,
//! int8, binary, low-rank) a file may hold.
//!
//! ```
//! let registry = pipeline::registry();
//! assert!(registry.contains("linear") && registry.contains("parallel"));
//! ```
//!
//! [`chart`] draws the line charts of reports (sensitivity curves, accuracy against
//! compression) as SVG.
//!
//! **Not yet filled:** recipes that chain prune → share → Huffman and the other techniques;
//! per-layer reports of sizes as actually written and multiply-accumulates.
#![warn(missing_docs)]

pub mod chart;

use std::path::Path;

use nn::{LayerRegistry, Model};

/// Every layer kind slimnet knows: nn's own, then each technique crate's.
///
/// Built on each call (a few map insertions); a duplicate kind across crates is a programming
/// error that the `every_kind_once` test catches, so this cannot fail at run time.
pub fn registry() -> LayerRegistry {
    try_registry().unwrap_or_else(|_| LayerRegistry::nn())
}

/// [`registry`], reporting a kind claimed by two crates.
pub fn try_registry() -> nn::Result<LayerRegistry> {
    // Technique crates add their `register` here as their compressed layers land.
    let mut registry = LayerRegistry::nn();
    prune::register(&mut registry)?;
    share::register(&mut registry)?;
    Ok(registry)
}

/// Loads a model in any format slimnet reads (native, `.onnx`, `.safetensors` with `arch`),
/// rebuilding its layers through [`registry`].
pub fn load(path: impl AsRef<Path>, arch: Option<&str>) -> nn::Result<Model> {
    nn::io::load_any_with(path, arch, &registry())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_kind_once() {
        let r = super::try_registry().unwrap();
        assert!(r.kinds().len() > nn::LayerRegistry::nn().kinds().len());
        assert!(r.contains("sparse_linear") && r.contains("sparse_conv2d"));
        assert!(r.contains("shared_linear"));
    }
}
