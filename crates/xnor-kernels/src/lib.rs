//! Binary networks: XNOR-Net and binary-weight networks (Rastegari et al., 2016).
//!
//! **Not yet filled.** This crate will hold: bit packing (LSB-first into `u64` words,
//! bit 1 = negative, padding bits 0); the XNOR-popcount dot product over true depth `K`,
//! `K - 2·popcount(a ^ b)`; binary GEMM and conv with AVX-512 VPOPCNTDQ and portable twins
//! that agree bit for bit; BWN and XNOR-Net layers with their scaling factors.
#![warn(missing_docs)]
