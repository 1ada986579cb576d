//! One entry point for every model file slimnet reads: ONNX, safetensors (with a zoo
//! architecture) or the native format, recognized by content first and extension second.

use std::path::Path;

use crate::error::{NnError, Result};
use crate::model::Model;
use crate::registry::LayerRegistry;

/// The model file formats [`load_any`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelFormat {
    /// slimnet's native file (magic `SLIMNETM`).
    Native,
    /// An ONNX protobuf (`.onnx`).
    Onnx,
    /// A safetensors file (`.safetensors`): weights only, the architecture comes from `--arch`.
    Safetensors,
}

impl ModelFormat {
    /// Recognizes a file from its first bytes, then its extension.
    ///
    /// The native magic is exact. safetensors starts with a little-endian u64 header length
    /// followed by `{`. ONNX has no magic: a file is taken as ONNX by its `.onnx` extension,
    /// or when it starts like a `ModelProto` (field 1 `ir_version` as a varint, tag byte 0x08).
    pub fn detect(path: &Path, head: &[u8]) -> Option<Self> {
        if head.starts_with(&crate::io::native::MAGIC) {
            return Some(ModelFormat::Native);
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase());
        match ext.as_deref() {
            Some("onnx") => return Some(ModelFormat::Onnx),
            Some("safetensors") => return Some(ModelFormat::Safetensors),
            _ => {}
        }
        if head.len() >= 9 && head[8] == b'{' {
            return Some(ModelFormat::Safetensors);
        }
        if head.first() == Some(&0x08) {
            return Some(ModelFormat::Onnx);
        }
        None
    }
}

/// The first 16 bytes of a model file (fewer if it is shorter): enough for
/// [`ModelFormat::detect`] and a container's magic. An empty file is an error.
pub fn read_head(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::with_capacity(16);
    std::fs::File::open(path)
        .and_then(|f| f.take(16).read_to_end(&mut head))
        .map_err(|e| NnError::io(path, e))?;
    if head.is_empty() {
        return Err(NnError::corrupt(
            path,
            "model file",
            "the file is empty (0 bytes)",
        ));
    }
    Ok(head)
}

/// Loads a model from `path` in any format slimnet reads: native, `.onnx`, or
/// `.safetensors` (the architecture is `arch`, or the one the file records in its `slimnet_arch`
/// metadata),
/// with nn's layer kinds ([`LayerRegistry::nn_default`]).
pub fn load_any(path: impl AsRef<Path>, arch: Option<&str>) -> Result<Model> {
    load_any_with(path, arch, LayerRegistry::nn_default())
}

/// [`load_any`] rebuilding native files' layers through `registry` (compressed layers need
/// their crate's kinds; ONNX and safetensors imports only produce nn's dense kinds).
pub fn load_any_with(
    path: impl AsRef<Path>,
    arch: Option<&str>,
    registry: &LayerRegistry,
) -> Result<Model> {
    let path = path.as_ref();
    let head = read_head(path)?;
    match ModelFormat::detect(path, &head) {
        Some(ModelFormat::Native) => crate::io::native::load_with(path, registry),
        Some(ModelFormat::Onnx) => crate::io::onnx::import(path),
        Some(ModelFormat::Safetensors) => {
            crate::io::safetensors::load_safetensors_inferred(path, arch)
        }
        None => Err(NnError::corrupt(
            path,
            "model file",
            "not a native slimnet model (SLIMNETM), ONNX (.onnx) or safetensors (.safetensors) file",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection() {
        let p = Path::new("m.bin");
        assert_eq!(
            ModelFormat::detect(p, b"SLIMNETM\x01"),
            Some(ModelFormat::Native)
        );
        assert_eq!(
            ModelFormat::detect(Path::new("a.ONNX"), b""),
            Some(ModelFormat::Onnx)
        );
        assert_eq!(
            ModelFormat::detect(p, b"\x08\x07\x12"),
            Some(ModelFormat::Onnx)
        );
        assert_eq!(
            ModelFormat::detect(p, b"\x10\0\0\0\0\0\0\0{\"a\""),
            Some(ModelFormat::Safetensors)
        );
        assert_eq!(ModelFormat::detect(p, b"hello"), None);
    }
}
