//! Binary networks on XNOR-popcount kernels: BinaryConnect / binary-weight networks, BNN and
//! XNOR-Net (Courbariaux et al., 2015; Hubara et al., 2016; Rastegari et al., 2016).
//!
//! ```
//! use xnor_kernels::{PackedRows, binary_gemm};
//!
//! // Two rows of A and three rows of B, each of depth K = 70 (two words, 58 padding bits).
//! let a: Vec<f32> = (0..140).map(|i| if i % 3 == 0 { -1.0 } else { 1.0 }).collect();
//! let b: Vec<f32> = (0..210).map(|i| if i % 5 == 0 { -1.0 } else { 0.5 }).collect();
//! let (pa, pb) = (PackedRows::pack(&a, 2, 70)?, PackedRows::pack(&b, 3, 70)?);
//! let mut c = vec![0i32; 6];
//! binary_gemm(&pa, &pb, &mut c)?;
//! // C[m][n] = K - 2 popcount(A_m ^ B_n) is the dot product of the signs.
//! let sign = |x: f32| if x < 0.0 { -1 } else { 1 };
//! let dot: i32 = (0..70).map(|k| sign(a[k]) * sign(b[70 + k])).sum();
//! assert_eq!(c[1], dot);
//! # Ok::<(), xnor_kernels::XnorError>(())
//! ```
//!
//! The bit convention, written once: values in {+1, -1} pack LSB-first into `u64` words,
//! **bit 1 = -1**, padding bits past the true depth `K` are 0, and `K` is kept apart from the
//! padded depth (`64 * ceil(K / 64)`). The dot product of two packed rows over the true depth
//! is `K - 2 * popcount(a ^ b)` (XNOR-Net, section 3.2); padding adds nothing since `0 ^ 0 = 0`.
//!
//! What it holds:
//! - [`PackedRows`] (module [`pack`]): packing of f32 signs, validated loading of stored
//!   words, a bitvec view and builder, unpacking.
//! - [`binary_gemm`] (module [`gemm`]): `C = A B^T` on packed rows, register-blocked tiles,
//!   cache panels and rayon over both cores; paths `portable`, `avx2` (nibble-table
//!   `vpshufb` popcount) and `avx512-vpopcntdq`, chosen at run time through
//!   [`tensor_core::dispatch::PopcountPath`], and `amx-int8` (±1 bytes on AMX tiles, for
//!   products of at least [`AMX_MIN_SIDE`] rows a side where the CPU and OS allow it,
//!   [`AmxUse`]); all bit-exact with [`binary_gemm_reference`].
//! - [`binary_conv2d`] (module [`conv`]): channels-last sign packing, binary im2col into
//!   packed rows (`(ki, kj, c)` bit order), the binary GEMM, and an exact zero-padding
//!   correction, so the result equals the f32 conv of `sign(x)` and `sign(w)`.
//! - Layers ([`register`]): [`BinaryLinear`] and [`BinaryConv2d`] in three [`BinaryMode`]s:
//!   BWN (binary weights `alpha_o sign(W_o)`, `alpha_o = mean |W_o|` per output filter, real
//!   inputs), XNOR-Net (binary weights with `alpha_o` and binary inputs, XNOR-popcount
//!   kernels) and BNN (binary weights and inputs, no scale); stored as packed `u64` words and
//!   f32 scales.
//! - Training ([`BinarizeHook`], a Trainer hook): latent f32 weights, `alpha sign(W)` in the
//!   forward and backward passes, gradients straight through where `|W| <= 1`, latent weights
//!   clipped to `[-1, 1]`; [`binarize_model`] chooses the layers (first and last kept in full
//!   precision by default) and, for binary inputs, places nn's `sign` layer with XNOR-Net's
//!   block order; [`to_binary_layers`] converts to the packed layers.
//!
//! - XNOR-Net's input scale `K` (module [`input_scale`]): the mean `|x|` over channels, box
//!   filtered over the receptive field, multiplying the binary dot products; a flag of the
//!   packed XNOR layers, trained through [`InputScaled`] ([`binarize_model_with`]).
//!
//! What it is not for: multi-bit quantization (the `quant` crate).
#![warn(missing_docs)]

mod binarize;
pub mod conv;
mod error;
pub mod gemm;
pub mod input_scale;
pub mod layers;
pub mod pack;

pub use binarize::{
    BinarizeHook, binarize_model, binarize_model_with, binary_targets, to_binary_layers,
};
pub use conv::{
    BinaryConvGeometry, BinaryConvWeights, binary_conv2d, binary_im2col, pack_channels_last,
    padding_correction,
};
pub use error::{Result, XnorError};
pub use gemm::{
    AMX_MIN_SIDE, AMX_NEEDS, AMX_PATH_NAME, AmxUse, BinaryGemmParams, amx_usable, binary_gemm,
    binary_gemm_reference, binary_gemm_with,
};
pub use input_scale::{conv_input_scale, linear_input_scale};
pub use layers::{BinaryConv2d, BinaryLinear, BinaryMode, InputScaled, register};
pub use pack::{PackedRows, pack_signs, words_for};
