//! Quantization: representing weights and activations with few bits.
//!
//! **Not yet filled.** This crate will hold: affine int8 and intN quantization per tensor
//! and per channel, `q = clamp(round(x / scale) + zero_point)`; calibration (min-max,
//! percentile, MSE, KL divergence); int8 GEMM and conv kernels (AVX-512 VNNI with a
//! portable twin that matches bit for bit); fake quantization with the straight-through
//! estimator as a Trainer hook.
#![warn(missing_docs)]
