//! ONNX import into a sequential [`Model`] and export of dense models, with the protobuf
//! messages declared through prost (no `protoc`, no hand-written wire parsing).
//!
//! Import ([`import`], [`import_bytes`]): parse with prost (the initializers' `raw_data`
//! read in place from the file buffer, see `wire`), validate every initializer
//! (checked `dims` product against [`tensor_core::shape::MAX_ELEMENTS`] and against the bytes
//! present, before any allocation sized by the file), fold constants (`Constant`,
//! `ConstantOfShape`, the `Shape -> Gather -> Concat -> Reshape` chains exporters write for
//! flatten, `Identity`, inference-mode `Dropout`), then walk the nodes building layers:
//! `MatMul` (+ `Add`) and `Gemm` (any `alpha`/`beta`/`transB`) become linear layers;
//! `Conv` (stride, 4-sided pads, `auto_pad`, dilation, groups, depthwise) a convolution, with
//! a following `BatchNormalization` folded into it and a preceding zero `Pad` merged into its
//! padding; `MaxPool`/`AveragePool` (pads, `ceil_mode`, `count_include_pad`),
//! `GlobalAveragePool` and a spatial `ReduceMean`; `Relu`, `Sigmoid`, `Tanh`, `Flatten`,
//! `Reshape`, `Transpose`, `Squeeze`/`Unsqueeze`, `Softmax`, `LogSoftmax` (with the opset < 13
//! axis semantics); `Clip` (ReLU6), `HardSigmoid`, `HardSwish`; `Conv`, `MaxPool` and
//! `AveragePool` over NCW (1-D, as a `1 x k` window); `Add`/`Sub`/`Mul`/`Div` by constants;
//! and `Add`/`Sub`/`Mul`/`Sum`/`Concat` of computed values (broadcasting, as a
//! squeeze-and-excitation gate), which close a fork: the branches become one
//! [`Parallel`](crate::layers::onnx_ops::Parallel) layer, so residual networks import into
//! the sequential model. A `Concat` whose leading inputs an earlier `Concat` already joined
//! reuses that value (DenseNet's growing concatenations become nested fork/joins). Opsets 1 to 23 of the default domain are read (exporters in use
//! write 7 to 21). Anything else is an [`NnError::Unsupported`] naming the node, the op and
//! the attribute.
//!
//! Export ([`export`], [`export_bytes`]): opset 13, one node per layer (`Gemm`, `Conv`,
//! `MaxPool`, `AveragePool`, `GlobalAveragePool`, `Relu`, `Sigmoid`, `Tanh`, `Flatten`,
//! `BatchNormalization`, `Softmax`, ...), weights as `raw_data` initializers, a symbolic batch
//! dimension. Compressed layers have no ONNX form yet and are refused by name.

mod build;
mod export;
pub(crate) mod fold;
mod import;
mod ops;
pub mod proto;
pub(crate) mod spec;
pub mod tensor;
pub(crate) mod wire;

use std::path::Path;

use crate::error::{NnError, Result};
use crate::model::Model;

pub use export::{EXPORT_OPSET, attr_int, attr_ints, export_model, value_info};
pub use import::{OPSETS, import_bytes, import_shared};

/// Largest element count of a tensor the importer computes itself (`ConstantOfShape`,
/// `Expand`, folded arithmetic); initializers are bounded by the file only.
pub fn fold_limit() -> usize {
    fold::MAX_FOLDED
}

/// Largest `.onnx` file read (2 GiB, protobuf's own message limit).
pub const MAX_FILE_BYTES: u64 = 2 << 30;

/// Reads and imports the ONNX model at `path`.
pub fn import(path: impl AsRef<Path>) -> Result<Model> {
    let path = path.as_ref();
    let len = std::fs::metadata(path)
        .map_err(|e| NnError::io(path, e))?
        .len();
    if len > MAX_FILE_BYTES {
        return Err(NnError::corrupt(
            path,
            "ONNX file",
            format!("{len} bytes exceeds the 2 GiB protobuf limit"),
        ));
    }
    // Owned by the importer, which reads the weights in place and frees the buffer before
    // building the layers (see `import_shared`).
    let bytes = std::fs::read(path).map_err(|e| NnError::io(path, e))?;
    import_shared(bytes.into(), &path.display().to_string())
}

/// The ONNX encoding of `model` (opset [`EXPORT_OPSET`]).
pub fn export_bytes(model: &Model) -> Result<Vec<u8>> {
    use prost::Message;
    Ok(export_model(model)?.encode_to_vec())
}

/// Writes `model` as an ONNX file.
pub fn export(model: &Model, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let bytes = export_bytes(model)?;
    crate::io::atomic::write_atomic(path, &bytes)
}
