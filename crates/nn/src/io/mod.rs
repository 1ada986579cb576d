//! Model I/O: the native model file, and importers/exporters of other formats.

pub mod any;
pub mod atomic;
pub mod checkpoint;
pub mod native;
pub mod npy;
pub mod onnx;
pub mod safetensors;

pub use any::{ModelFormat, load_any, load_any_with};
