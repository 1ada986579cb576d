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
//! [`recipe`] describes a compression pipeline as data (JSON or TOML, with built-in
//! presets such as `deep-compression`); [`compress`] runs one, stage by stage, and
//! [`report`] measures the result: per-layer table, stages, energy estimate.
#![warn(missing_docs)]

pub mod chart;
pub mod compress;
pub mod container;
pub mod recipe;
pub mod report;

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
    quant::register(&mut registry)?;
    xnor_kernels::register(&mut registry)?;
    Ok(registry)
}

/// Loads a model in any format slimnet reads (the `.slim` container, older native files,
/// `.onnx`, `.safetensors` with `arch`), rebuilding its layers through [`registry`], so
/// compressed layers run as they are stored.
pub fn load(path: impl AsRef<Path>, arch: Option<&str>) -> nn::Result<Model> {
    let path = path.as_ref();
    match load_container_record(path)? {
        Some(record) => record.into_model_with(&registry()),
        None => nn::io::load_any_with(path, arch, &registry()),
    }
}

/// Whether the file at `path` starts like a container.
fn is_container_file(path: &Path) -> nn::Result<bool> {
    use std::io::Read;
    let mut head = [0u8; 12];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| nn::NnError::io(path, e))?;
    Ok(container::is_container(&head[..n]))
}

/// The record of a container file, or `None` when `path` is not a container.
fn load_container_record(path: &Path) -> nn::Result<Option<nn::io::native::ModelRecord>> {
    if !is_container_file(path)? {
        return Ok(None);
    }
    let bytes = std::fs::read(path).map_err(|e| nn::NnError::io(path, e))?;
    container::decode(&bytes, &path.display().to_string()).map(Some)
}

/// The record (layers and metadata) of any native file: container or older version.
pub fn load_record(path: impl AsRef<Path>) -> nn::Result<nn::io::native::ModelRecord> {
    let path = path.as_ref();
    match load_container_record(path)? {
        Some(r) => Ok(r),
        None => nn::io::native::load_record(path),
    }
}

/// The metadata of any native file: of a container read from its model section alone (not
/// its layers), of an older version from its record.
pub fn load_metadata(
    path: impl AsRef<Path>,
) -> nn::Result<std::collections::BTreeMap<String, String>> {
    let path = path.as_ref();
    if is_container_file(path)? {
        container::read_metadata(path)
    } else {
        nn::io::native::load_record(path).map(|r| r.metadata)
    }
}

/// Writes `model` with `metadata` as a `.slim` container, atomically (a temporary file
/// renamed into place: never a half-written output) and streamed, one layer's record at a
/// time ([`container::stream::save_model`]). Returns the bytes written.
pub fn save(
    model: &Model,
    metadata: std::collections::BTreeMap<String, String>,
    options: &container::WriteOptions,
    path: impl AsRef<Path>,
) -> nn::Result<u64> {
    container::stream::save_model(model, &metadata, options, path.as_ref())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_kind_once() {
        let r = super::try_registry().unwrap();
        assert!(r.kinds().len() > nn::LayerRegistry::nn().kinds().len());
        assert!(r.contains("sparse_linear") && r.contains("sparse_conv2d"));
        assert!(r.contains("shared_linear"));
        assert!(r.contains("binary_linear") && r.contains("binary_conv2d"));
    }
}
