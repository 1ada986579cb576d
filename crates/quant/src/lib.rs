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
//! **Not yet filled:** calibration, quantized layers, quantization-aware training.
//!
//! What it is not for: weight sharing (non-uniform codebooks; the `share` crate) and binary
//! networks (`xnor-kernels`).
#![warn(missing_docs)]

pub mod affine;
mod error;
pub mod gemm;
mod params;
mod qtype;

pub use error::{QuantError, Result};
pub use params::{QuantParams, Symmetry, min_max, scale_zero_point};
pub use qtype::QuantType;
