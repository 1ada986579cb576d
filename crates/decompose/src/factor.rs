//! One layer's factorization: the SVD of its weight, reshaped as the scheme needs (or, for
//! Jaderberg's scheme 1, its per-channel separable bases), and the layers that replace it at
//! a chosen rank.
//!
//! Four schemes; the first three are the SVD of the weight seen as a matrix `M` with
//! `M_r = left x right`:
//! - **Low-rank linear** (Denton et al., 2014, §3.2; Xue et al., 2013): `W [out, in] ≈
//!   left [out, r] x right [r, in]`, so `y = W x + b` becomes `Linear(in -> r, no bias)`
//!   then `Linear(r -> out, b)`: `r (in + out)` MACs instead of `in * out`.
//! - **Separable, Jaderberg et al.'s scheme 2** (2014, §3.1.2): a `kh x 1` convolution into
//!   `r` intermediate channels, then a `1 x kw` convolution to the `N` outputs. With
//!   `M[(c, p), (q, n)] = W[n, c, p, q]` (`(C kh) x (kw N)`), the vertical filters are
//!   `V[c', c, p] = left[(c, p), c']` and the horizontal ones `H[n, c', q] = right[c', (q, n)]`,
//!   so `sum_c' H[n, c', q] V[c', c, p] = M_r[(c, p), (q, n)]`. Vertical stride, dilation
//!   and padding go to the first layer, horizontal ones to the second; the first has no bias
//!   (its zero padding then equals the original's). MACs per output position fall from
//!   `N C kh kw` to about `r (C kh + N kw)`.
//! - **Channel decomposition** (the 1x1 bottleneck of Network-in-Network and GoogLeNet, as a
//!   factorization: Zhang et al., 2016, §3): `M = W [N, C kh kw]`; a `kh x kw` convolution
//!   into `r` channels (`right` as `[r, C, kh, kw]`, the original geometry), then a 1x1
//!   convolution (`left` as `[N, r, 1, 1]`): `r (C kh kw + N)` MACs per position.
//! - **Separable basis, Jaderberg et al.'s scheme 1** (2014, §3.1.1, after Rigamonti et al.,
//!   2013): `r = M` separable basis filters per input channel, three layers (a `kh x 1` and a
//!   `1 x kw` depthwise convolution, then a 1x1 one); see `separable_basis`. About
//!   `M C (kh + kw + N)` MACs per position.
//!
//! In all four the squared Frobenius error of the weight is the discarded energy
//! `sum_{i > r} s_i^2` of the factorization's spectrum.

use nn::layers::{Conv2d, Linear};
use nn::{Layer, Mode};
use serde::Serialize;
use tensor_core::conv::{Conv2dParams, Padding};
use tensor_core::{Shape, Tensor};

use crate::error::{DecomposeError, Result};
use crate::separable_basis::{SeparableBasis, scheme1_params, scheme1_params_per_rank};
use crate::svd::{Svd, kept_fraction};

/// How a layer is factored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// A linear layer as two linear layers.
    LowRank,
    /// A convolution as a `kh x 1` then a `1 x kw` convolution (Jaderberg's scheme 2).
    Separable,
    /// A convolution as a convolution into fewer channels then a 1x1 convolution.
    Channel,
    /// A convolution as `M` separable basis filters per input channel (`kh x 1` then
    /// `1 x kw` depthwise convolutions) combined by a 1x1 convolution (Jaderberg's scheme 1).
    SeparableBasis,
}

impl Scheme {
    /// The scheme's name as reports print it.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::LowRank => "low_rank",
            Scheme::Separable => "separable",
            Scheme::Channel => "channel",
            Scheme::SeparableBasis => "separable_basis",
        }
    }
}

/// The layer being factored, as much of it as the factors need.
#[derive(Clone, Debug)]
enum Original {
    Linear { inf: usize, outf: usize },
    Conv { params: Conv2dParams },
}

/// How the weight was factored: one matrix SVD, or scheme 1's per-channel bases.
#[derive(Clone, Debug)]
enum Fit {
    Matrix(Svd),
    Basis(SeparableBasis),
}

/// A layer's weight factored, ready to give its replacement layers at any rank.
#[derive(Clone, Debug)]
pub struct Factorization {
    scheme: Scheme,
    fit: Fit,
    /// Weights of the original (its bias apart).
    weights_before: usize,
    original: Original,
    bias: Option<Tensor>,
    /// Multiply-accumulates of the original for one sample.
    macs_before: u64,
    /// Multiply-accumulates of the pair, per unit of rank, for one sample.
    macs_per_rank: u64,
    /// Weights of the pair per unit of rank.
    params_per_rank: u64,
}

/// The layers that replace one, and the rank between them: the first factor (one layer,
/// or for scheme 1 the vertical then the horizontal depthwise convolution) and the second,
/// which a refit adjusts.
#[derive(Debug)]
pub struct FactoredPair {
    /// Applied first, in order (no bias); never empty.
    pub first: Vec<Box<dyn Layer>>,
    /// Applied last (the original's bias).
    pub second: Box<dyn Layer>,
    /// The rank (intermediate features or channels; basis filters per channel for scheme 1).
    pub rank: usize,
}

impl FactoredPair {
    /// The first factor's output: what the second layer sees.
    pub fn forward_first(&mut self, input: &Tensor, mode: Mode) -> Result<Tensor> {
        let mut z = input.clone();
        for l in &mut self.first {
            z = l.forward(&z, mode)?;
        }
        Ok(z)
    }

    /// The whole replacement's output.
    pub fn forward(&mut self, input: &Tensor, mode: Mode) -> Result<Tensor> {
        let z = self.forward_first(input, mode)?;
        Ok(self.second.forward(&z, mode)?)
    }

    /// Back-propagates the gradient of the second layer's input through the first factor
    /// (after a `Train` forward), accumulating its layers' gradients.
    pub fn backward_first(&mut self, grad: &Tensor) -> Result<Tensor> {
        let mut g = grad.clone();
        for l in self.first.iter_mut().rev() {
            g = l.backward(&g)?;
        }
        Ok(g)
    }

    /// Multiply-accumulates for inputs of `input`, as the layers count them.
    pub fn macs(&self, input: &Shape) -> Result<u64> {
        let mut shape = input.clone();
        let mut total = 0;
        for l in self.layers() {
            total += l.macs(&shape)?;
            shape = l.output_shape(&shape)?;
        }
        Ok(total)
    }

    /// Parameters of all the layers.
    pub fn param_count(&self) -> usize {
        self.layers().map(|l| l.param_count()).sum()
    }

    /// Every layer in order.
    pub fn layers(&self) -> impl Iterator<Item = &dyn Layer> {
        self.first
            .iter()
            .map(|l| l.as_ref())
            .chain(std::iter::once(self.second.as_ref()))
    }

    /// Every layer in order, owned (what replaces the original in the model).
    pub fn into_layers(self) -> Vec<Box<dyn Layer>> {
        let mut v = self.first;
        v.push(self.second);
        v
    }
}

impl Factorization {
    /// Factors a linear layer `W [out, in]`.
    pub fn linear(layer: &Linear) -> Result<Self> {
        let (inf, outf) = (layer.in_features(), layer.out_features());
        let svd = Svd::of(layer.weight().data(), outf, inf)?;
        Ok(Self {
            scheme: Scheme::LowRank,
            fit: Fit::Matrix(svd),
            weights_before: inf * outf,
            original: Original::Linear { inf, outf },
            bias: layer.bias().cloned(),
            macs_before: (inf * outf) as u64,
            macs_per_rank: (inf + outf) as u64,
            params_per_rank: (inf + outf) as u64,
        })
    }

    /// Factors a convolution by `scheme` (`Separable`, `Channel` or `SeparableBasis`) for
    /// inputs of `input`
    /// (`[1, C, H, W]`). Errors: a grouped convolution, or a scheme that does not apply.
    pub fn conv(layer: &Conv2d, scheme: Scheme, input: &Shape) -> Result<Self> {
        let p = *layer.params();
        let unsupported = |reason: &str| DecomposeError::Unsupported {
            op: "factor convolution",
            path: String::new(),
            kind: "conv2d".into(),
            reason: reason.into(),
        };
        if p.groups != 1 {
            return Err(unsupported("grouped convolutions are not factored"));
        }
        let (n, c, (kh, kw)) = (p.out_channels, p.in_channels, p.kernel);
        let w = layer.weight().data();
        let macs_before = p.macs(input)?;
        let (fit, macs_per_rank, params_per_rank) = match scheme {
            Scheme::Separable => {
                // M[(c, p), (q, n)] = W[n, c, p, q].
                let (rows, cols) = (c * kh, kw * n);
                let mut m = vec![0.0f32; rows * cols];
                for (i, &v) in w.iter().enumerate() {
                    let (q, rest) = (i % kw, i / kw);
                    let (pp, rest) = (rest % kh, rest / kh);
                    let (cc, nn) = (rest % c, rest / c);
                    m[(cc * kh + pp) * cols + q * n + nn] = v;
                }
                let svd = Svd::of(&m, rows, cols)?;
                let (first, second) = separable_params(&p, 1);
                let per_rank = chain_macs(&[first, second], input)?;
                (Fit::Matrix(svd), per_rank, (c * kh + n * kw) as u64)
            }
            Scheme::Channel => {
                let svd = Svd::of(w, n, c * kh * kw)?;
                let (first, second) = channel_params(&p, 1);
                let per_rank = chain_macs(&[first, second], input)?;
                (Fit::Matrix(svd), per_rank, (c * kh * kw + n) as u64)
            }
            Scheme::SeparableBasis => {
                let basis = SeparableBasis::fit(&p, w)?;
                let per_rank = chain_macs(&scheme1_params(&p, 1), input)?;
                (Fit::Basis(basis), per_rank, scheme1_params_per_rank(&p))
            }
            Scheme::LowRank => return Err(unsupported("low rank is for linear layers")),
        };
        Ok(Self {
            scheme,
            fit,
            weights_before: w.len(),
            original: Original::Conv { params: p },
            bias: layer.bias().cloned(),
            macs_before,
            macs_per_rank,
            params_per_rank,
        })
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The SVD of the reshaped weight (`None` for scheme 1, which has per-channel bases).
    pub fn svd(&self) -> Option<&Svd> {
        match &self.fit {
            Fit::Matrix(svd) => Some(svd),
            Fit::Basis(_) => None,
        }
    }

    /// The spectrum the rank rules read: `s_1 >= s_2 >= ...` with `sum_{i <= r} s_i^2` the
    /// energy rank `r` keeps (the singular values for the SVD schemes).
    pub fn spectrum(&self) -> &[f64] {
        match &self.fit {
            Fit::Matrix(svd) => svd.singular_values(),
            Fit::Basis(b) => b.spectrum(),
        }
    }

    /// The largest rank.
    pub fn max_rank(&self) -> usize {
        self.spectrum().len()
    }

    /// `||W||_F^2`.
    pub fn total_energy(&self) -> f64 {
        self.spectrum().iter().map(|s| s * s).sum()
    }

    /// `||W - W_r||_F^2`, the energy rank `r` discards.
    pub fn discarded_energy(&self, r: usize) -> f64 {
        self.spectrum().iter().skip(r).map(|s| s * s).sum()
    }

    /// The fraction of the energy rank `r` keeps (1 for a zero weight).
    pub fn kept_energy(&self, r: usize) -> f64 {
        kept_fraction(self.spectrum(), r)
    }

    /// The weight `W_r` the layers at rank `r` compute, in the original layer's layout
    /// (`[out, in]` or `[N, C, kh, kw]`). Errors: `r` outside `1..=max_rank`.
    pub fn weight_at(&self, r: usize) -> Result<Tensor> {
        let data = match (&self.fit, &self.original) {
            (Fit::Basis(b), _) => b.weight_at(r)?,
            (Fit::Matrix(svd), Original::Linear { .. }) => {
                svd.factors(r)?.product(svd.rows(), svd.cols())
            }
            (Fit::Matrix(svd), Original::Conv { params }) => {
                let m = svd.factors(r)?.product(svd.rows(), svd.cols());
                if self.scheme != Scheme::Separable {
                    m
                } else {
                    // M[(c, p), (q, n)] = W[n, c, p, q].
                    let (n, c, (kh, kw)) = (params.out_channels, params.in_channels, params.kernel);
                    let mut w = vec![0.0f32; m.len()];
                    for (i, v) in w.iter_mut().enumerate() {
                        let (q, rest) = (i % kw, i / kw);
                        let (pp, rest) = (rest % kh, rest / kh);
                        let (cc, nn) = (rest % c, rest / c);
                        *v = m[(cc * kh + pp) * (kw * n) + q * n + nn];
                    }
                    w
                }
            }
        };
        let dims = match &self.original {
            Original::Linear { inf, outf } => vec![*outf, *inf],
            Original::Conv { params } => params.weight_dims().to_vec(),
        };
        Ok(Tensor::new(&dims, data)?)
    }

    /// Multiply-accumulates of the original layer for one sample.
    pub fn macs_before(&self) -> u64 {
        self.macs_before
    }

    /// Multiply-accumulates of the factored pair at rank `r` for one sample.
    pub fn macs_at(&self, r: usize) -> u64 {
        self.macs_per_rank * r as u64
    }

    /// Parameters of the original layer.
    pub fn params_before(&self) -> usize {
        self.weights_before + self.bias_len()
    }

    /// Parameters of the factored pair at rank `r` (the bias moves to the second layer).
    pub fn params_at(&self, r: usize) -> usize {
        self.params_per_rank as usize * r + self.bias_len()
    }

    /// The largest rank at which the pair needs fewer MACs than the original (0: none).
    pub fn break_even_rank(&self) -> usize {
        let max = self.max_rank();
        (1..=max)
            .rev()
            .find(|&r| self.macs_at(r) < self.macs_before)
            .unwrap_or(0)
    }

    fn bias_len(&self) -> usize {
        self.bias.as_ref().map_or(0, |b| b.numel())
    }

    /// The replacement layers at rank `r` (in `1..=max_rank`).
    pub fn pair(&self, r: usize) -> Result<FactoredPair> {
        let svd = match &self.fit {
            Fit::Matrix(svd) => svd,
            Fit::Basis(b) => {
                let [vertical, horizontal, combine] = b.layers(r, self.bias.clone())?;
                return Ok(FactoredPair {
                    first: vec![Box::new(vertical), Box::new(horizontal)],
                    second: Box::new(combine),
                    rank: r,
                });
            }
        };
        let f = svd.factors(r)?;
        let (first, second): (Box<dyn Layer>, Box<dyn Layer>) = match (&self.original, self.scheme)
        {
            (Original::Linear { inf, outf }, _) => (
                Box::new(Linear::from_parts(Tensor::new(&[r, *inf], f.right)?, None)?),
                Box::new(Linear::from_parts(
                    Tensor::new(&[*outf, r], f.left)?,
                    self.bias.clone(),
                )?),
            ),
            (Original::Conv { params }, Scheme::Separable) => {
                let (c, n, (kh, kw)) = (params.in_channels, params.out_channels, params.kernel);
                let (p1, p2) = separable_params(params, r);
                // V[c', c, p, 0] = left[(c, p), c'];  H[n, c', 0, q] = right[c', (q, n)].
                let mut v = vec![0.0f32; r * c * kh];
                for cp in 0..c * kh {
                    for k in 0..r {
                        v[k * c * kh + cp] = f.left[cp * r + k];
                    }
                }
                let mut h = vec![0.0f32; n * r * kw];
                for k in 0..r {
                    for q in 0..kw {
                        for nn in 0..n {
                            h[(nn * r + k) * kw + q] = f.right[k * kw * n + q * n + nn];
                        }
                    }
                }
                (
                    Box::new(Conv2d::from_parts(
                        p1,
                        Tensor::new(&p1.weight_dims(), v)?,
                        None,
                    )?),
                    Box::new(Conv2d::from_parts(
                        p2,
                        Tensor::new(&p2.weight_dims(), h)?,
                        self.bias.clone(),
                    )?),
                )
            }
            (Original::Conv { params }, _) => {
                let (p1, p2) = channel_params(params, r);
                (
                    Box::new(Conv2d::from_parts(
                        p1,
                        Tensor::new(&p1.weight_dims(), f.right)?,
                        None,
                    )?),
                    Box::new(Conv2d::from_parts(
                        p2,
                        Tensor::new(&p2.weight_dims(), f.left)?,
                        self.bias.clone(),
                    )?),
                )
            }
        };
        Ok(FactoredPair {
            first: vec![first],
            second,
            rank: r,
        })
    }
}

/// Multiply-accumulates of convolutions `ps` applied in turn to inputs of `input`.
fn chain_macs(ps: &[Conv2dParams], input: &Shape) -> Result<u64> {
    let mut shape = input.clone();
    let mut total = 0;
    for p in ps {
        total += p.macs(&shape)?;
        shape = Shape::new(&p.output_dims(&shape)?)?;
    }
    Ok(total)
}

/// The geometries of Jaderberg's scheme 2 at rank `r`: vertical stride, dilation and padding
/// on the `kh x 1` layer, horizontal ones on the `1 x kw` layer.
fn separable_params(p: &Conv2dParams, r: usize) -> (Conv2dParams, Conv2dParams) {
    (
        vertical_part(p, p.in_channels, r),
        horizontal_part(p, r, p.out_channels),
    )
}

/// The `kh x 1` half of convolution `p` from `cin` to `cout` channels: its vertical stride,
/// dilation and padding (groups 1; set them for a depthwise one).
pub(crate) fn vertical_part(p: &Conv2dParams, cin: usize, cout: usize) -> Conv2dParams {
    Conv2dParams::new(cin, cout, (p.kernel.0, 1))
        .with_stride((p.stride.0, 1))
        .with_dilation((p.dilation.0, 1))
        .with_padding(Padding {
            top: p.padding.top,
            bottom: p.padding.bottom,
            left: 0,
            right: 0,
        })
}

/// The `1 x kw` half of convolution `p` from `cin` to `cout` channels: its horizontal
/// stride, dilation and padding.
pub(crate) fn horizontal_part(p: &Conv2dParams, cin: usize, cout: usize) -> Conv2dParams {
    Conv2dParams::new(cin, cout, (1, p.kernel.1))
        .with_stride((1, p.stride.1))
        .with_dilation((1, p.dilation.1))
        .with_padding(Padding {
            top: 0,
            bottom: 0,
            left: p.padding.left,
            right: p.padding.right,
        })
}

/// The geometries of the channel decomposition at rank `r`: the original geometry into `r`
/// channels, then a 1x1 convolution.
fn channel_params(p: &Conv2dParams, r: usize) -> (Conv2dParams, Conv2dParams) {
    let first = Conv2dParams {
        out_channels: r,
        ..*p
    };
    (first, Conv2dParams::new(r, p.out_channels, (1, 1)))
}
