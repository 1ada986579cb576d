//! Quantization: representing weights and activations with few-bit integers and running
//! them on integer kernels (Jacob et al., "Quantization and Training of Neural Networks for
//! Efficient Integer-Arithmetic-Only Inference", CVPR 2018; Krishnamoorthi, "Quantizing deep
//! convolutional networks for efficient inference", 2018).
//!
//! ```
//! use quant::{QuantParams, QuantType, Symmetry};
//!
//! let x = [-1.0f32, 0.0, 0.26, 3.0];
//! let p = QuantParams::from_range(QuantType::U8, Symmetry::Asymmetric, -1.0, 3.0)?;
//! let q = p.quantize(&x, &[4])?; // ONNX QuantizeLinear: round half to even, saturate
//! assert_eq!(q, [0, 64, 81, 255]);
//! let back = p.dequantize(&q, &[4])?; // ONNX DequantizeLinear
//! assert!(x.iter().zip(&back).all(|(a, b)| (a - b).abs() <= p.scales()[0] / 2.0));
//! # Ok::<(), quant::QuantError>(())
//! ```
//!
//! **Filled now:**
//! - [`QuantType`]: 2- to 8-bit signed and unsigned code types, including the reduced-range
//!   7-bit activations [`QuantType::U7`] the AVX2 kernels rely on.
//! - [`affine`]: ONNX QuantizeLinear / DequantizeLinear on one value,
//!   `q = saturate(round_half_even(x / scale) + zero_point)`, `x' = (q - zero_point) * scale`.
//! - [`QuantParams`]: scales and zero points per tensor or per channel, symmetric or
//!   asymmetric ([`Symmetry`]), from ranges or data; tested against golden vectors that
//!   ONNX's reference implementation and onnxruntime produced (`scripts/quant_golden.py`).
//!
//! - [`gemm`]: the integer GEMM `C = A W^T` (7-bit u8 activations x i8 weights -> exact i32):
//!   packed weight panels, a 4 x 16 register tile, row blocking, rayon over row blocks and
//!   panels; portable, AVX2 (`vpmaddubsw` + `vpmaddwd`), AVX-VNNI and AVX-512 VNNI paths
//!   chosen by [`tensor_core::dispatch::Int8Path`], equal bit for bit.
//!
//! - [`calibrate`]: activation ranges from a calibration set: min-max, percentile, MSE and
//!   KL divergence (entropy) over a 2048-bin histogram.
//! - [`layers`]: `quant_linear` and `quant_conv2d` (i8 weights per output channel, i32 bias,
//!   7-bit input codes, requantization into the next layer's codes with ReLU fused, or real
//!   values for the last layer), `quantize` and `dequantize`; [`register`] adds their kinds.
//! - [`quantize_model`]: post-training quantization of a model ([`QuantConfig`]), with one
//!   [`LayerReport`] per quantized layer.
//!
//! - [`qat`]: quantization-aware training: weight fake quantization through a Trainer hook
//!   ([`qat::QatHook`]), activation fake quantization with moving-average ranges
//!   ([`qat::EmaFakeQuantize`]), the straight-through estimator, then conversion to the same
//!   integer layers ([`qat::convert_qat`]).
//!
//! - [`weights`]: uniform or power-of-two ([`WeightScheme::Pow2`]) weight codes, shared by
//!   the conversion and quantization-aware training.
//! - [`onnx`]: export of a quantized model as QDQ ONNX that onnxruntime runs.
//!
//! - [`mixed`]: mixed precision: per-layer weight bit widths chosen from a sensitivity scan
//!   to meet a size ([`mixed::MixedTarget::Bytes`]) or accuracy
//!   ([`mixed::MixedTarget::MaxLoss`]) target.
//!
//! What it is not for: weight sharing (non-uniform codebooks; the `share` crate) and binary
//! networks (`xnor-kernels`).
#![warn(missing_docs)]

pub mod affine;
pub mod calibrate;
mod convert;
mod error;
pub mod gemm;
pub mod layers;
pub mod mixed;
pub mod onnx;
mod params;
pub mod qat;
mod qtype;
pub mod weights;

pub use convert::{
    LayerReport, QuantConfig, calibrate_ranges, convert_with_layer_bits, convert_with_ranges,
    quantize_model, quantized_layers,
};
pub use error::{QuantError, Result};
pub use layers::register;
pub use params::{QuantParams, Symmetry, min_max, scale_zero_point};
pub use qtype::QuantType;
pub use weights::{QuantizedWeight, WeightScheme};
