//! Filter decomposition: cutting multiply-accumulates by factoring weights.
//!
//! **Not yet filled.** This crate will hold: SVD low-rank linear layers (`W ≈ U_r S_r V_rᵀ`
//! through faer's thin SVD); separable rank-K convolutions (Jaderberg et al., 2014) and
//! channel-decomposed convolutions; the accuracy/MAC trade-off per layer.
#![warn(missing_docs)]
