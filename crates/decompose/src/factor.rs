//! One layer's factorization: the SVD of its weight, reshaped as the scheme needs, and the
//! pair of ordinary nn layers that replaces it at a chosen rank.
//!
//! Three schemes, each the SVD of the weight seen as a matrix `M` with `M_r = left x right`:
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
//!
//! In all three the squared Frobenius error of the weight is the discarded energy
//! `sum_{i > r} s_i^2`.

use nn::Layer;
use nn::layers::{Conv2d, Linear};
use serde::Serialize;
use tensor_core::conv::{Conv2dParams, Padding};
use tensor_core::{Shape, Tensor};

use crate::error::{DecomposeError, Result};
use crate::svd::Svd;

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
}

impl Scheme {
    /// The scheme's name as reports print it.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::LowRank => "low_rank",
            Scheme::Separable => "separable",
            Scheme::Channel => "channel",
        }
    }
}

/// The layer being factored, as much of it as the factors need.
#[derive(Clone, Debug)]
enum Original {
    Linear { inf: usize, outf: usize },
    Conv { params: Conv2dParams },
}

/// A layer's weight factored by SVD, ready to give its replacement pair at any rank.
#[derive(Clone, Debug)]
pub struct Factorization {
    scheme: Scheme,
    svd: Svd,
    original: Original,
    bias: Option<Tensor>,
    /// Multiply-accumulates of the original for one sample.
    macs_before: u64,
    /// Multiply-accumulates of the pair, per unit of rank, for one sample.
    macs_per_rank: u64,
    /// Weights of the pair per unit of rank.
    params_per_rank: u64,
}

/// The two layers that replace one, and the rank between them.
#[derive(Debug)]
pub struct FactoredPair {
    /// Applied first (no bias).
    pub first: Box<dyn Layer>,
    /// Applied second (the original's bias).
    pub second: Box<dyn Layer>,
    /// The intermediate width (features or channels).
    pub rank: usize,
}

impl Factorization {
    /// Factors a linear layer `W [out, in]`.
    pub fn linear(layer: &Linear) -> Result<Self> {
        let (inf, outf) = (layer.in_features(), layer.out_features());
        let svd = Svd::of(layer.weight().data(), outf, inf)?;
        Ok(Self {
            scheme: Scheme::LowRank,
            svd,
            original: Original::Linear { inf, outf },
            bias: layer.bias().cloned(),
            macs_before: (inf * outf) as u64,
            macs_per_rank: (inf + outf) as u64,
            params_per_rank: (inf + outf) as u64,
        })
    }

    /// Factors a convolution by `scheme` (`Separable` or `Channel`) for inputs of `input`
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
        let (svd, macs_per_rank, params_per_rank) = match scheme {
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
                let mid = Shape::new(&first.output_dims(input)?)?;
                let per_rank = first.macs(input)? + second.macs(&mid)?;
                (svd, per_rank, (c * kh + n * kw) as u64)
            }
            Scheme::Channel => {
                let svd = Svd::of(w, n, c * kh * kw)?;
                let (first, second) = channel_params(&p, 1);
                let mid = Shape::new(&first.output_dims(input)?)?;
                let per_rank = first.macs(input)? + second.macs(&mid)?;
                (svd, per_rank, (c * kh * kw + n) as u64)
            }
            Scheme::LowRank => return Err(unsupported("low rank is for linear layers")),
        };
        Ok(Self {
            scheme,
            svd,
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

    /// The SVD of the reshaped weight.
    pub fn svd(&self) -> &Svd {
        &self.svd
    }

    /// The largest rank.
    pub fn max_rank(&self) -> usize {
        self.svd.max_rank()
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
        self.svd.rows() * self.svd.cols() + self.bias_len()
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

    /// The pair of layers at rank `r` (in `1..=max_rank`).
    pub fn pair(&self, r: usize) -> Result<FactoredPair> {
        let f = self.svd.factors(r)?;
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
            first,
            second,
            rank: r,
        })
    }
}

/// The geometries of Jaderberg's scheme 2 at rank `r`: vertical stride, dilation and padding
/// on the `kh x 1` layer, horizontal ones on the `1 x kw` layer.
fn separable_params(p: &Conv2dParams, r: usize) -> (Conv2dParams, Conv2dParams) {
    let (kh, kw) = p.kernel;
    let vertical = Conv2dParams::new(p.in_channels, r, (kh, 1))
        .with_stride((p.stride.0, 1))
        .with_dilation((p.dilation.0, 1))
        .with_padding(Padding {
            top: p.padding.top,
            bottom: p.padding.bottom,
            left: 0,
            right: 0,
        });
    let horizontal = Conv2dParams::new(r, p.out_channels, (1, kw))
        .with_stride((1, p.stride.1))
        .with_dilation((1, p.dilation.1))
        .with_padding(Padding {
            top: 0,
            bottom: 0,
            left: p.padding.left,
            right: p.padding.right,
        });
    (vertical, horizontal)
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
