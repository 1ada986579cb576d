//! Jaderberg et al.'s scheme 1 (2014, §3.1.1): every input channel's `kh x kw` filter slices
//! approximated by linear combinations of `M` separable basis filters of that channel, the
//! per-filter rank-`K` sums of vertical and horizontal 1-D filters of Rigamonti et al.
//! (2013) shared across the `N` filters.
//!
//! The convolution `y_n = sum_c x_c * W[n, c]` becomes
//! `y_n = sum_c sum_m a[n, c, m] (x_c * v_{c,m} * h_{c,m})`, three ordinary layers:
//! a `kh x 1` depthwise convolution (`groups = C`, `C M` outputs: the vertical filters
//! `v_{c,m}`), a `1 x kw` depthwise convolution (`groups = C M`: the horizontal filters
//! `h_{c,m}`) and a 1x1 convolution `C M -> N` (the coefficients `a`, with the original
//! bias). Vertical stride, dilation and padding go to the first layer, horizontal ones to
//! the second; neither has a bias, so their zero padding equals the original's.
//!
//! The basis is fitted to minimise the filter reconstruction error (Jaderberg's first
//! optimisation) by a truncated higher-order SVD of each channel's filters (De Lathauwer et
//! al., 2000; a Tucker-2 decomposition of the spatial modes): with `U_c` (`kh x kh`) the
//! left singular vectors of the `kh x (N kw)` unfolding of `W[:, c]` and `V_c` (`kw x kw`)
//! those of the `kw x (N kh)` one, the separable filters `u_i v_jᵀ` form an orthonormal basis
//! of the `kh x kw` slices, `W[n, c] = sum_{i,j} G[n, c, i, j] u_i v_jᵀ` exactly with
//! `G = U_cᵀ W[n, c] V_c`. The `M` pairs `(i, j)` of largest energy `sum_n G[n, c, i, j]^2`
//! make the basis; by orthonormality the coefficients are the projections and the squared
//! Frobenius error is exactly the discarded energy, so the rank-`M` layer is exact at
//! `M = kh kw` and its error falls monotonically with `M`. The 1x1 coefficients are then refit
//! on real activations like every second factor ([`crate::refit_second`]).
//!
//! The spectrum reported for rank selection is `s_m = sqrt(sum_c e_{c,(m)})`, `e_{c,(m)}`
//! channel `c`'s `m`-th largest energy: non-increasing, and `sum_{m <= M} s_m^2` is the energy
//! the rank-`M` basis keeps, so the energy and greedy MAC-target rules apply unchanged.

use faer::Mat;
use nn::layers::Conv2d;
use tensor_core::Tensor;
use tensor_core::conv::Conv2dParams;

use crate::error::{DecomposeError, Result};
use crate::factor::{horizontal_part, vertical_part};

/// One channel's separable basis: the orthonormal vertical and horizontal filters and the
/// basis pairs in order of energy.
#[derive(Clone, Debug)]
struct ChannelBasis {
    /// `U_c`, `[kh, kh]` row-major: column `i` is the vertical filter `u_i`.
    u: Vec<f64>,
    /// `V_c`, `[kw, kw]` row-major: column `j` is the horizontal filter `v_j`.
    v: Vec<f64>,
    /// The core `G[n, i, j]`, `[N, kh, kw]`.
    core: Vec<f64>,
    /// Every pair `(i, j)` with its energy, largest first.
    order: Vec<(usize, usize, f64)>,
}

/// A convolution's filters on per-channel separable bases, ready to give the three layers of
/// scheme 1 at any number `M` of basis filters per channel.
#[derive(Clone, Debug)]
pub(crate) struct SeparableBasis {
    params: Conv2dParams,
    channels: Vec<ChannelBasis>,
    /// `s_m`, non-increasing, `kh kw` of them.
    spectrum: Vec<f64>,
}

/// The full left singular vectors of the `rows x cols` matrix `a`, `[rows, rows]` row-major.
fn left_vectors(a: Mat<f64>, op: &'static str) -> Result<Vec<f64>> {
    let (rows, cols) = (a.nrows(), a.ncols());
    let svd = a
        .svd()
        .map_err(|_| DecomposeError::SvdFailed { op, rows, cols })?;
    let u = svd.U();
    Ok((0..rows * rows).map(|k| u[(k / rows, k % rows)]).collect())
}

impl SeparableBasis {
    /// Fits the per-channel bases of the weight `w` (`[N, C, kh, kw]`) of a convolution `p`
    /// (`groups == 1`). Errors: a non-finite weight, an SVD that does not converge.
    pub(crate) fn fit(p: &Conv2dParams, w: &[f32]) -> Result<Self> {
        const OP: &str = "separable basis";
        let (n, c, (kh, kw)) = (p.out_channels, p.in_channels, p.kernel);
        if w.len() != n * c * kh * kw {
            return Err(DecomposeError::BadActivations {
                op: OP,
                what: format!("{} weights for [{n}, {c}, {kh}, {kw}]", w.len()),
            });
        }
        if let Some((index, &value)) = w.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(DecomposeError::NonFinite {
                op: OP,
                index,
                value,
            });
        }
        let at = |nn: usize, cc: usize, pp: usize, q: usize| {
            w[((nn * c + cc) * kh + pp) * kw + q] as f64
        };
        let mut channels = Vec::with_capacity(c);
        for cc in 0..c {
            // Mode unfoldings: vertical [kh, N kw], horizontal [kw, N kh].
            let vert = Mat::<f64>::from_fn(kh, n * kw, |pp, j| at(j / kw, cc, pp, j % kw));
            let horiz = Mat::<f64>::from_fn(kw, n * kh, |q, j| at(j / kh, cc, j % kh, q));
            let u = left_vectors(vert, OP)?;
            let v = left_vectors(horiz, OP)?;
            // G[n, i, j] = sum_{p, q} U[p, i] W[n, c, p, q] V[q, j].
            let mut core = vec![0.0f64; n * kh * kw];
            for nn in 0..n {
                for i in 0..kh {
                    for j in 0..kw {
                        let mut s = 0.0;
                        for pp in 0..kh {
                            for q in 0..kw {
                                s += u[pp * kh + i] * at(nn, cc, pp, q) * v[q * kw + j];
                            }
                        }
                        core[(nn * kh + i) * kw + j] = s;
                    }
                }
            }
            let mut order: Vec<(usize, usize, f64)> = (0..kh * kw)
                .map(|ij| {
                    let (i, j) = (ij / kw, ij % kw);
                    let e = (0..n).map(|nn| core[(nn * kh + i) * kw + j].powi(2)).sum();
                    (i, j, e)
                })
                .collect();
            // Largest energy first; ties in index order, so the fit is deterministic.
            order.sort_by(|a, b| b.2.total_cmp(&a.2));
            channels.push(ChannelBasis { u, v, core, order });
        }
        let spectrum = (0..kh * kw)
            .map(|m| channels.iter().map(|ch| ch.order[m].2).sum::<f64>().sqrt())
            .collect();
        Ok(Self {
            params: *p,
            channels,
            spectrum,
        })
    }

    /// `s_m` for `m = 1..=kh kw` (see the module documentation).
    pub(crate) fn spectrum(&self) -> &[f64] {
        &self.spectrum
    }

    /// The largest `M`: `kh kw`.
    pub(crate) fn max_rank(&self) -> usize {
        self.spectrum.len()
    }

    fn check_rank(&self, m: usize, op: &'static str) -> Result<()> {
        if m == 0 || m > self.max_rank() {
            return Err(DecomposeError::InvalidRank {
                op,
                rank: m,
                max: self.max_rank(),
            });
        }
        Ok(())
    }

    /// The rank-`M` approximation of the weight, `[N, C, kh, kw]` in the original layout.
    pub(crate) fn weight_at(&self, m: usize) -> Result<Vec<f32>> {
        self.check_rank(m, "separable basis weight")?;
        let p = &self.params;
        let (n, c, (kh, kw)) = (p.out_channels, p.in_channels, p.kernel);
        let mut w = vec![0.0f64; n * c * kh * kw];
        for (cc, ch) in self.channels.iter().enumerate() {
            for &(i, j, _) in &ch.order[..m] {
                for nn in 0..n {
                    let g = ch.core[(nn * kh + i) * kw + j];
                    for pp in 0..kh {
                        for q in 0..kw {
                            w[((nn * c + cc) * kh + pp) * kw + q] +=
                                g * ch.u[pp * kh + i] * ch.v[q * kw + j];
                        }
                    }
                }
            }
        }
        Ok(w.into_iter().map(|v| v as f32).collect())
    }

    /// The three layers at `M` basis filters per channel: vertical depthwise, horizontal
    /// depthwise, 1x1 combination (with `bias`). Errors: `M` outside `1..=kh kw`.
    pub(crate) fn layers(&self, m: usize, bias: Option<Tensor>) -> Result<[Conv2d; 3]> {
        self.check_rank(m, "separable basis layers")?;
        let p = &self.params;
        let (n, c, (kh, kw)) = (p.out_channels, p.in_channels, p.kernel);
        let [p1, p2, p3] = scheme1_params(p, m);
        let (mut vert, mut horiz) = (vec![0.0f32; c * m * kh], vec![0.0f32; c * m * kw]);
        let mut coef = vec![0.0f32; n * c * m];
        for (cc, ch) in self.channels.iter().enumerate() {
            for (k, &(i, j, _)) in ch.order[..m].iter().enumerate() {
                let o = cc * m + k;
                for pp in 0..kh {
                    vert[o * kh + pp] = ch.u[pp * kh + i] as f32;
                }
                for q in 0..kw {
                    horiz[o * kw + q] = ch.v[q * kw + j] as f32;
                }
                for nn in 0..n {
                    coef[nn * c * m + o] = ch.core[(nn * kh + i) * kw + j] as f32;
                }
            }
        }
        Ok([
            Conv2d::from_parts(p1, Tensor::new(&p1.weight_dims(), vert)?, None)?,
            Conv2d::from_parts(p2, Tensor::new(&p2.weight_dims(), horiz)?, None)?,
            Conv2d::from_parts(p3, Tensor::new(&p3.weight_dims(), coef)?, bias)?,
        ])
    }
}

/// The geometries of scheme 1 at `m` basis filters per channel: the `kh x 1` depthwise
/// convolution `C -> C m` (vertical stride, dilation, padding), the `1 x kw` depthwise one
/// (horizontal ones) and the 1x1 convolution `C m -> N`.
pub(crate) fn scheme1_params(p: &Conv2dParams, m: usize) -> [Conv2dParams; 3] {
    let cm = p.in_channels * m;
    [
        vertical_part(p, p.in_channels, cm).with_groups(p.in_channels),
        horizontal_part(p, cm, cm).with_groups(cm),
        Conv2dParams::new(cm, p.out_channels, (1, 1)),
    ]
}

/// Parameters of the three layers per basis filter per channel (weights only).
pub(crate) fn scheme1_params_per_rank(p: &Conv2dParams) -> u64 {
    (p.in_channels * (p.kernel.0 + p.kernel.1 + p.out_channels)) as u64
}
