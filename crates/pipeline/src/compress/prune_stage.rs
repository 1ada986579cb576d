//! The prune stage: magnitude pruning on a schedule (global, per-layer or
//! sensitivity-allocated), N:M masks, or L1 filter pruning, each retrained with its masks
//! held.

use nn::trainer::{Objective, Progress};
use nn::{LayerPath, Model, NnError, Result};
use prune::structured::{
    filter_candidates, prune_filters, retrain, uniform_fraction_for_macs, uniform_plan,
};
use prune::{Criterion, DropoutAdjustment, NmPattern, Schedule};
use serde::Serialize;

use super::{Data, Observer};
use crate::recipe::{PruneMethod, PruneSchedule, PruneStage};

/// What a prune stage did.
#[derive(Clone, Debug, Serialize, Default)]
pub struct PruneDetail {
    /// Kept fraction of the weights of each pruned layer.
    #[serde(rename = "layers")]
    pub densities: Vec<LayerDensity>,
    /// Filters (units) of each filter-pruned layer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<FilterRow>,
    /// Dropout rates set for retraining (Han et al., 2015, section 3.2).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropout: Vec<DropoutRow>,
}

/// A layer's kept fraction.
#[derive(Clone, Debug, Serialize)]
pub struct LayerDensity {
    /// Layer path.
    pub path: String,
    /// Kept fraction of its weights.
    pub density: f64,
}

/// Filters of one layer before and after.
#[derive(Clone, Debug, Serialize)]
pub struct FilterRow {
    /// Layer path.
    pub path: String,
    /// Filters before.
    pub before: usize,
    /// Filters kept.
    pub after: usize,
}

/// The dropout rate a layer was retrained with.
#[derive(Clone, Debug, Serialize)]
pub struct DropoutRow {
    /// Layer path.
    pub path: String,
    /// Rate.
    pub rate: f32,
}

type Factory<'a> = dyn FnMut() -> Result<Box<dyn Objective>> + 'a;

/// Runs `stage` on `model` (dense layers; pruned weights end exactly zero).
pub fn run(
    model: &mut Model,
    stage: &PruneStage,
    seed: u64,
    data: &Data,
    objective: &mut Factory<'_>,
    observer: &mut dyn Observer,
) -> Result<PruneDetail> {
    match stage.method {
        PruneMethod::Filters => filters(model, stage, seed, data, observer),
        PruneMethod::Nm => nm(model, stage, seed, data, observer),
        _ => magnitude(model, stage, seed, data, objective, observer),
    }
}

fn sparsity(stage: &PruneStage) -> Option<f64> {
    stage
        .sparsity
        .or(stage.ratio.map(|r| 1.0 - 1.0 / r.max(1.0)))
}

/// Training images a sensitivity scan measures accuracy on (the test set never chooses
/// per-layer targets).
pub const SCAN_IMAGES: usize = 10_000;

fn magnitude(
    model: &mut Model,
    stage: &PruneStage,
    seed: u64,
    data: &Data,
    objective: &mut Factory<'_>,
    observer: &mut dyn Observer,
) -> Result<PruneDetail> {
    let criterion = match (stage.method, stage.quality, sparsity(stage)) {
        (PruneMethod::LayerStd, Some(q), _) => Criterion::LayerQuality(q),
        (PruneMethod::LayerStd, None, Some(s)) => Criterion::LayerSparsity(s),
        (PruneMethod::LayerStd, None, None) => Criterion::LayerQuality(1.0),
        (PruneMethod::Global, _, Some(s)) => Criterion::GlobalSparsity(s),
        (PruneMethod::Sensitivity, _, Some(s)) => by_sensitivity(model, data, s, observer)?,
        (m, _, _) => {
            return Err(NnError::Config(format!(
                "prune method {} needs ratio or sparsity",
                m.name()
            )));
        }
    };
    let schedule = match stage.schedule {
        PruneSchedule::OneShot => Schedule::OneShot,
        PruneSchedule::Iterative => Schedule::Iterative {
            rounds: stage.rounds,
        },
        PruneSchedule::Agp => Schedule::Polynomial,
    };
    let config = stage.retrain.config(seed);
    let mut progress = |p: &Progress| observer.progress(p);
    let report = prune::prune_model_with(
        model,
        criterion,
        schedule,
        &config,
        data.train,
        stage.retrain.epochs,
        objective,
        &mut progress,
    )?;
    Ok(PruneDetail {
        densities: density_rows(&report.densities),
        ..PruneDetail::default()
    })
}

/// Per-layer sparsities from a sensitivity scan on training images, reaching sparsity `s`
/// overall with one shared accuracy-drop budget.
fn by_sensitivity(
    model: &mut Model,
    data: &Data,
    s: f64,
    observer: &mut dyn Observer,
) -> Result<Criterion> {
    let scan_set = data.train.take(SCAN_IMAGES.min(data.train.len()))?;
    let mut eval = |m: &mut Model| -> prune::Result<f64> {
        Ok(nn::metrics::evaluate(m, &scan_set, 500)?.accuracy)
    };
    let table =
        prune::sensitivity::scan(model, &prune::sensitivity::DEFAULT_SPARSITIES, &mut eval)?;
    let (chosen, budget) = table.sparsities_for_ratio(1.0 / (1.0 - s).max(1e-9))?;
    let q = prune::Sensitivity::quality_params(model, &chosen)?;
    for ((p, s), (_, q)) in chosen.iter().zip(&q) {
        observer.note(&format!(
            "sensitivity: layer {p} to sparsity {:.2}% (quality parameter {q:.3}); drop budget \
             {:.2} points on {} training images",
            100.0 * s,
            100.0 * budget,
            scan_set.len()
        ));
    }
    Ok(Criterion::PerLayerSparsity(chosen))
}

fn filters(
    model: &mut Model,
    stage: &PruneStage,
    seed: u64,
    data: &Data,
    observer: &mut dyn Observer,
) -> Result<PruneDetail> {
    let dropout = DropoutAdjustment::capture(model)?;
    let candidates = filter_candidates(model);
    for (p, e) in &candidates.skipped {
        observer.note(&format!("filters: layer {p} keeps its filters: {e}"));
    }
    let fraction = match stage.sparsity {
        Some(s) => s,
        None => uniform_fraction_for_macs(model, &candidates.prunable, stage.ratio.unwrap_or(2.0))?,
    };
    observer.note(&format!(
        "filters: removing {:.1}% of the filters of layers {}",
        100.0 * fraction,
        candidates
            .prunable
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let report = prune_filters(model, &uniform_plan(&candidates.prunable, fraction))?;
    let config = stage.retrain.config(seed);
    let mut progress = |p: &Progress| observer.progress(p);
    let retrained = retrain(model, &dropout, None, &config, data.train, &mut progress)?;
    Ok(PruneDetail {
        densities: report
            .layers
            .iter()
            .map(|c| LayerDensity {
                path: c.path.to_string(),
                density: c.after as f64 / c.before as f64,
            })
            .collect(),
        filters: report
            .layers
            .iter()
            .map(|c| FilterRow {
                path: c.path.to_string(),
                before: c.before,
                after: c.after,
            })
            .collect(),
        dropout: dropout_rows(&retrained.dropout_rates),
    })
}

fn nm(
    model: &mut Model,
    stage: &PruneStage,
    seed: u64,
    data: &Data,
    observer: &mut dyn Observer,
) -> Result<PruneDetail> {
    let pattern: NmPattern = stage.nm.parse()?;
    let dropout = DropoutAdjustment::capture(model)?;
    let mask = prune::nm_masks(model, pattern)?;
    let config = stage.retrain.config(seed);
    let mut progress = |p: &Progress| observer.progress(p);
    let retrained = retrain(
        model,
        &dropout,
        Some(mask.clone()),
        &config,
        data.train,
        &mut progress,
    )?;
    mask.apply(model)?;
    Ok(PruneDetail {
        densities: density_rows(&mask.densities()),
        filters: Vec::new(),
        dropout: dropout_rows(&retrained.dropout_rates),
    })
}

fn density_rows(d: &[(LayerPath, f64)]) -> Vec<LayerDensity> {
    d.iter()
        .map(|(p, d)| LayerDensity {
            path: p.to_string(),
            density: *d,
        })
        .collect()
}

fn dropout_rows(d: &[(LayerPath, f32)]) -> Vec<DropoutRow> {
    d.iter()
        .map(|(p, r)| DropoutRow {
            path: p.to_string(),
            rate: *r,
        })
        .collect()
}
