//! Decomposing a whole model: which layers are factored, at which ranks, the data-driven
//! refit of each pair, the replacement of one layer by two (three for scheme 1) through the
//! model walk, and the
//! per-layer accounting of multiply-accumulates and parameters before and after.

use nn::layers::{Conv2d, Linear};
use nn::{LayerPath, Model};
use serde::Serialize;
use tensor_core::Tensor;

use crate::alternate::{AlternateParams, AlternateReport, alternate};
use crate::capture::capture_inputs;
use crate::error::{DecomposeError, Result};
use crate::factor::{Factorization, Scheme};
use crate::rank::RankRule;
use crate::refit::{RefitParams, RefitReport, refit_second};
use crate::select::ranks_for_macs;
use crate::shapes::input_shapes;

/// Which layers are factored, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Linear layers only, by truncated SVD.
    Svd,
    /// Linear layers by SVD, convolutions with `kh, kw > 1` by Jaderberg's scheme 2.
    Separable,
    /// Linear layers by SVD, convolutions by channel decomposition (conv then 1x1 conv).
    Channel,
    /// Linear layers by SVD, convolutions with `kh, kw > 1` by Jaderberg's scheme 1
    /// (separable basis filters per input channel, combined by a 1x1 convolution).
    SeparableBasis,
}

impl Method {
    /// Parses `svd`, `separable` (scheme 2), `separable1` (scheme 1; also `scheme1`) or
    /// `channel`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "svd" => Some(Method::Svd),
            "separable" | "scheme2" => Some(Method::Separable),
            "separable1" | "scheme1" => Some(Method::SeparableBasis),
            "channel" => Some(Method::Channel),
            _ => None,
        }
    }
}

/// How ranks are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Selection {
    /// Each layer by the same rule; a layer whose factored pair would not need fewer
    /// multiply-accumulates than itself is kept.
    PerLayer(RankRule),
    /// The whole model at most this fraction (in `(0, 1]`) of its multiply-accumulates,
    /// ranks chosen greedily ([`crate::select::ranks_for_macs`]).
    ModelMacs(f64),
}

/// Options of [`decompose`].
#[derive(Clone, Debug, PartialEq)]
pub struct DecomposeParams {
    /// Which layers, and how.
    pub method: Method,
    /// Only the layers at these paths (of those `method` factors); all when `None`.
    pub layers: Option<Vec<LayerPath>>,
    /// Also factor the model's last factorable layer (the classifier, whose loss costs the
    /// most accuracy); when `false` it is kept unless named in `layers`.
    pub include_last: bool,
    /// How ranks are chosen.
    pub selection: Selection,
    /// Refit options for the data-driven step (used when calibration data is given).
    pub refit: RefitParams,
    /// Alternating rounds after the refit (used when calibration data is given).
    pub alternate: AlternateParams,
}

impl Default for DecomposeParams {
    /// SVD of the linear layers but the last keeping 95% of each one's energy; default refit
    /// options.
    fn default() -> Self {
        Self {
            method: Method::Svd,
            layers: None,
            include_last: false,
            selection: Selection::PerLayer(RankRule::Energy(0.95)),
            refit: RefitParams::default(),
            alternate: AlternateParams::default(),
        }
    }
}

/// One factorable layer of a model.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Its path before any replacement.
    pub path: LayerPath,
    /// Its factorization.
    pub factorization: Factorization,
}

/// What happened to one candidate layer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerReport {
    /// Path in the input model.
    pub path: String,
    /// Kind of the original layer.
    pub kind: String,
    /// The scheme.
    pub scheme: Scheme,
    /// The rank chosen, or none when the layer was kept.
    pub rank: Option<usize>,
    /// The largest rank.
    pub max_rank: usize,
    /// Fraction of the weight's energy the rank keeps (1 when kept).
    pub kept_energy: f64,
    /// `||W - W_r||_F^2 / ||W||_F^2` before any refit (0 when kept).
    pub weight_error: f64,
    /// Multiply-accumulates per sample of the original.
    pub macs_before: u64,
    /// Multiply-accumulates per sample of what replaced it.
    pub macs_after: u64,
    /// Parameters of the original.
    pub params_before: usize,
    /// Parameters of what replaced it.
    pub params_after: usize,
    /// The data-driven refit, when calibration data was given.
    pub refit: Option<RefitReport>,
    /// The alternating rounds after it, when asked for.
    pub alternate: Option<AlternateReport>,
}

/// The outcome of [`decompose`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DecomposeReport {
    /// One entry per candidate layer, in model order.
    pub layers: Vec<LayerReport>,
    /// Multiply-accumulates per sample of the model before.
    pub macs_before: u64,
    /// ... and after.
    pub macs_after: u64,
    /// Parameters of the model before.
    pub params_before: usize,
    /// ... and after.
    pub params_after: usize,
}

/// Every layer `method` factors, with its factorization, in model order (branches
/// included). Grouped convolutions and, for the separable schemes, kernels with a side of 1
/// are left out.
pub fn candidates(model: &Model, method: Method) -> Result<Vec<Candidate>> {
    let mut out = Vec::new();
    for (path, shape) in input_shapes(model)? {
        let Some(layer) = model.layer(&path) else {
            continue;
        };
        let any = layer.as_any();
        let factorization = if let Some(l) = any.downcast_ref::<Linear>() {
            Factorization::linear(l)?
        } else if let Some(c) = any.downcast_ref::<Conv2d>() {
            let p = c.params();
            let scheme = match method {
                Method::Svd => continue,
                Method::Separable if p.kernel.0 > 1 && p.kernel.1 > 1 => Scheme::Separable,
                Method::SeparableBasis if p.kernel.0 > 1 && p.kernel.1 > 1 => {
                    Scheme::SeparableBasis
                }
                Method::Separable | Method::SeparableBasis => continue,
                Method::Channel => Scheme::Channel,
            };
            if p.groups != 1 {
                continue;
            }
            Factorization::conv(c, scheme, &shape).map_err(|e| with_path(e, &path))?
        } else {
            continue;
        };
        out.push(Candidate {
            path,
            factorization,
        });
    }
    Ok(out)
}

fn with_path(e: DecomposeError, at: &LayerPath) -> DecomposeError {
    match e {
        DecomposeError::Unsupported {
            op, kind, reason, ..
        } => DecomposeError::Unsupported {
            op,
            path: at.to_string(),
            kind,
            reason,
        },
        other => other,
    }
}

/// The rank of each candidate under `selection` (`None`: kept).
pub fn choose_ranks(
    model: &Model,
    candidates: &[Candidate],
    selection: Selection,
) -> Result<Vec<Option<usize>>> {
    match selection {
        Selection::PerLayer(rule) => {
            rule.validate()?;
            Ok(candidates
                .iter()
                .map(|c| {
                    let f = &c.factorization;
                    let r = rule.rank(f.spectrum(), f.macs_before(), &|r| f.macs_at(r));
                    (f.macs_at(r) < f.macs_before()).then_some(r)
                })
                .collect())
        }
        Selection::ModelMacs(frac) => {
            if !(frac > 0.0 && frac <= 1.0) {
                return Err(DecomposeError::InvalidFraction {
                    op: "choose ranks",
                    what: "mac target",
                    value: frac,
                    range: "(0, 1]",
                });
            }
            let total = model.macs_per_sample()?;
            let fs: Vec<&Factorization> = candidates.iter().map(|c| &c.factorization).collect();
            ranks_for_macs(&fs, total, (frac * total as f64) as u64)
        }
    }
}

/// Factors `model`'s layers as `params` says, in place: each chosen layer becomes its pair
/// (inside `Parallel` branches too); the last factorable layer is kept unless
/// `params.include_last` or `params.layers` names it. With `calibration` (a batch shaped for the model), each
/// pair's second layer is refit to the original layer's outputs on it ([`refit_second`]).
pub fn decompose(
    model: &mut Model,
    params: &DecomposeParams,
    calibration: Option<&Tensor>,
) -> Result<DecomposeReport> {
    let mut cands = candidates(model, params.method)?;
    if let Some(only) = &params.layers {
        if let Some(p) = only.iter().find(|p| !cands.iter().any(|c| &c.path == *p)) {
            return Err(DecomposeError::Unsupported {
                op: "decompose",
                path: p.to_string(),
                kind: model
                    .layer(p)
                    .map_or("missing".into(), |l| l.kind().to_string()),
                reason: format!("not a layer the {:?} method factors", params.method),
            });
        }
        cands.retain(|c| only.contains(&c.path));
    } else if !params.include_last {
        cands.pop();
    }
    let ranks = choose_ranks(model, &cands, params.selection)?;
    apply(
        model,
        &cands,
        &ranks,
        calibration,
        &params.refit,
        &params.alternate,
    )
}

/// Replaces each candidate whose rank is `Some` by its pair (refit on `calibration` when
/// given) and reports every candidate.
pub fn apply(
    model: &mut Model,
    cands: &[Candidate],
    ranks: &[Option<usize>],
    calibration: Option<&Tensor>,
    refit: &RefitParams,
    alternating: &AlternateParams,
) -> Result<DecomposeReport> {
    let macs_before = model.macs_per_sample()?;
    let params_before = model.param_count();
    let chosen: Vec<(&Candidate, usize)> = cands
        .iter()
        .zip(ranks)
        .filter_map(|(c, r)| r.map(|r| (c, r)))
        .collect();
    let inputs = match calibration {
        Some(batch) => {
            let paths: Vec<LayerPath> = chosen.iter().map(|(c, _)| c.path.clone()).collect();
            Some(capture_inputs(model, &paths, batch)?)
        }
        None => None,
    };
    // Build every pair first (so an error leaves the model unchanged), refit on the
    // original layers' outputs.
    let mut pairs = Vec::with_capacity(chosen.len());
    let mut refits = Vec::with_capacity(chosen.len());
    for (i, (c, r)) in chosen.iter().enumerate() {
        let mut pair = c.factorization.pair(*r)?;
        let report = match &inputs {
            Some(xs) => {
                let layer = model.layer_mut(&c.path).ok_or_else(|| missing(&c.path))?;
                let target = layer.forward(&xs[i], nn::Mode::Eval)?;
                let r = refit_second(&mut pair, &xs[i], &target, refit)?;
                let a = if alternating.rounds > 0 {
                    Some(alternate(&mut pair, &xs[i], &target, refit, alternating)?)
                } else {
                    None
                };
                Some((r, a))
            }
            None => None,
        };
        pairs.push(pair);
        refits.push(report);
    }
    // Replace from the last path to the first: a replacement shifts only later siblings.
    for ((c, _), pair) in chosen.iter().zip(pairs).rev() {
        model.replace(&c.path, pair.into_layers())?;
    }
    let mut refit_iter = refits.into_iter();
    let layers = cands
        .iter()
        .zip(ranks)
        .map(|(c, r)| {
            let f = &c.factorization;
            let (kept_energy, weight_error, macs_after, params_after, data) = match *r {
                Some(r) => {
                    let total = f.total_energy();
                    let err = if total > 0.0 {
                        f.discarded_energy(r) / total
                    } else {
                        0.0
                    };
                    (
                        f.kept_energy(r),
                        err,
                        f.macs_at(r),
                        f.params_at(r),
                        refit_iter.next().flatten(),
                    )
                }
                None => (1.0, 0.0, f.macs_before(), f.params_before(), None),
            };
            LayerReport {
                path: c.path.to_string(),
                kind: if f.scheme() == Scheme::LowRank {
                    "linear".into()
                } else {
                    "conv2d".into()
                },
                scheme: f.scheme(),
                rank: *r,
                max_rank: f.max_rank(),
                kept_energy,
                weight_error,
                macs_before: f.macs_before(),
                macs_after,
                params_before: f.params_before(),
                params_after,
                refit: data.map(|d| d.0),
                alternate: data.and_then(|d| d.1),
            }
        })
        .collect();
    Ok(DecomposeReport {
        layers,
        macs_before,
        macs_after: model.macs_per_sample()?,
        params_before,
        params_after: model.param_count(),
    })
}

fn missing(p: &LayerPath) -> DecomposeError {
    DecomposeError::BadActivations {
        op: "decompose",
        what: format!("no layer at {p}"),
    }
}
