//! Filter decomposition: cutting multiply-accumulates by factoring weights.
//!
//! A layer's weight, seen as a matrix, is replaced by the product of two thinner ones from
//! its truncated SVD, and the layer by two ordinary nn layers holding those factors:
//! low-rank linear layers (Denton et al., 2014), separable convolutions by Jaderberg et
//! al.'s scheme 2 (2014: a `k x 1` convolution into `r` channels, then a `1 x k` one) and
//! scheme 1 (`M` separable basis filters per input channel, after Rigamonti et al., 2013:
//! `k x 1` and `1 x k` depthwise convolutions then a 1x1 one, three layers), and
//! channel decomposition (a convolution into `r` channels then a 1x1 convolution, the
//! bottleneck of Network-in-Network and GoogLeNet). Because the factors are plain `Linear`
//! and `Conv2d` layers, a decomposed model stores as its factors, runs on the dense
//! kernels, exports to ONNX with no new operator and fine-tunes with the ordinary Trainer.
//!
//! ```
//! use decompose::{DecomposeParams, Method, RankRule, Selection, decompose};
//! use tensor_core::rng::Rng;
//!
//! let mut model = nn::zoo::build("lenet300", &mut Rng::seed_from_u64(0))?;
//! let params = DecomposeParams {
//!     method: Method::Svd,
//!     selection: Selection::PerLayer(RankRule::Given(20)),
//!     ..DecomposeParams::default()
//! };
//! let report = decompose(&mut model, &params, None)?;
//! // fc1 (784 -> 300) became 784 -> 20 -> 300: 21,680 MACs instead of 235,200.
//! assert_eq!(report.layers[0].rank, Some(20));
//! assert_eq!(report.layers[0].macs_after, 20 * (784 + 300));
//! assert!(report.macs_after < report.macs_before);
//! # Ok::<(), decompose::DecomposeError>(())
//! ```
//!
//! By default the model's last factorable layer (its classifier) is kept
//! ([`DecomposeParams::include_last`]).
//!
//! What it is not: a training method for low-rank networks from scratch, nor a CP
//! decomposition; every factorization here is one matrix SVD (or, for scheme 1, a per-channel
//! Tucker-2 of the kernel's spatial modes), optionally followed by a least-squares refit of
//! the last factor on real activations ([`refit_second`]).
//!
//! Modules: `svd` (faer's thin SVD, the energy arithmetic), `rank` (rank rules), `factor`
//! (one layer's factorization and its replacement layers), `separable_basis` (scheme 1's
//! per-channel bases), `refit` (data-driven least squares),
//! `alternate` (alternating first-factor descent and second-factor refits),
//! `capture` (a layer's inputs on a batch, through the model walk), `select` (greedy ranks
//! for a whole-model MAC target), `shapes` (per-layer input shapes and MACs), and
//! `model_decompose` (the whole-model rewrite with its report).
#![warn(missing_docs)]

mod alternate;
mod capture;
mod error;
mod factor;
mod model_decompose;
mod rank;
mod refit;
mod select;
mod separable_basis;
mod shapes;
mod svd;

pub use alternate::{AlternateParams, AlternateReport, alternate, output_error};
pub use capture::capture_inputs;
pub use error::{DecomposeError, Result};
pub use factor::{FactoredPair, Factorization, Scheme};
pub use model_decompose::{
    Candidate, DecomposeParams, DecomposeReport, LayerReport, Method, Selection, apply, candidates,
    choose_ranks, decompose,
};
pub use rank::{RankRule, largest_rank_within, rank_by_energy};
pub use refit::{RefitParams, RefitReport, refit_second};
pub use select::ranks_for_macs;
pub use shapes::{input_shapes, macs_by_kind};
pub use svd::{Factors, Svd, kept_fraction};
