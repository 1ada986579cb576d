//! Pruning schedules: one-shot, iterative prune/retrain rounds (Han et al., 2015, section
//! 3.3), and gradual polynomial sparsity (Zhu and Gupta, 2017: `s_t = s_f + (s_i - s_f)
//! (1 - t/n)^3`, TF-MOT's `PolynomialDecay`), each retraining through the Trainer with the
//! mask held by a hook.

use nn::trainer::{Objective, StepContext, TrainReport, Trainer};
use nn::{Dataset, Model, TrainConfig, TrainHook};

use crate::error::{PruneError, Result};
use crate::mask::Mask;
use crate::model_mask::{ModelMask, prunable_layers, weight_of};

/// Which weights a pruning step removes.
#[derive(Clone, Debug, PartialEq)]
pub enum Criterion {
    /// Each layer by its own threshold `quality_param * std(W)` (Han et al., 2015).
    LayerQuality(f64),
    /// Each layer to the same sparsity (fraction of weights removed).
    LayerSparsity(f64),
    /// One magnitude threshold over all prunable layers, removing this fraction of all
    /// their weights (global magnitude pruning).
    GlobalSparsity(f64),
    /// Each listed layer to its own sparsity (for example chosen by a sensitivity scan,
    /// [`crate::sensitivity::Sensitivity::sparsities_for_ratio`]); unlisted layers are
    /// not pruned.
    PerLayerSparsity(Vec<(nn::LayerPath, f64)>),
}

impl Criterion {
    /// The same criterion at another sparsity (schedules step the sparsity; a quality
    /// parameter is scaled by `fraction` of its final value).
    fn at(&self, fraction: f64) -> Self {
        match self {
            Criterion::LayerQuality(q) => Criterion::LayerQuality(q * fraction),
            Criterion::LayerSparsity(s) => Criterion::LayerSparsity(s * fraction),
            Criterion::GlobalSparsity(s) => Criterion::GlobalSparsity(s * fraction),
            Criterion::PerLayerSparsity(v) => Criterion::PerLayerSparsity(
                v.iter().map(|(p, s)| (p.clone(), s * fraction)).collect(),
            ),
        }
    }

    /// The masks this criterion gives on `model` now.
    pub fn masks(&self, model: &Model) -> Result<ModelMask> {
        let n = prunable_layers(model).len();
        match *self {
            Criterion::LayerQuality(q) => ModelMask::by_quality(model, &vec![q; n]),
            Criterion::LayerSparsity(s) => {
                check_sparsity("LayerSparsity", s)?;
                ModelMask::by_density(model, &vec![1.0 - s; n])
            }
            Criterion::GlobalSparsity(s) => global_magnitude(model, s),
            Criterion::PerLayerSparsity(ref v) => {
                let mut layers = std::collections::BTreeMap::new();
                for (path, s) in v {
                    check_sparsity("PerLayerSparsity", *s)?;
                    let w = weight_of(model, path)?;
                    layers.insert(path.clone(), crate::criteria::mask_by_density(w, 1.0 - s)?);
                }
                Ok(ModelMask { layers })
            }
        }
    }
}

fn check_sparsity(op: &'static str, s: f64) -> Result<()> {
    if (0.0..=1.0).contains(&s) {
        Ok(())
    } else {
        Err(PruneError::InvalidDensity {
            op,
            density: 1.0 - s,
        })
    }
}

/// Masks removing the `sparsity` fraction of smallest-magnitude weights over all prunable
/// layers together (ties at the threshold are kept, so slightly fewer may go).
pub fn global_magnitude(model: &Model, sparsity: f64) -> Result<ModelMask> {
    check_sparsity("global_magnitude", sparsity)?;
    let paths = prunable_layers(model);
    let mut all: Vec<f32> = Vec::new();
    for p in &paths {
        all.extend(weight_of(model, p)?.iter().map(|w| w.abs()));
    }
    let remove = ((sparsity * all.len() as f64).round() as usize).min(all.len());
    let mut layers = std::collections::BTreeMap::new();
    if remove == 0 {
        for p in paths {
            let n = weight_of(model, &p)?.len();
            layers.insert(p, Mask::all(n));
        }
        return Ok(ModelMask { layers });
    }
    let (_, &mut threshold, _) = all.select_nth_unstable_by(remove - 1, f32::total_cmp);
    for p in paths {
        let w = weight_of(model, &p)?;
        layers.insert(
            p,
            Mask::from_keep(w.iter().map(|v| v.abs() > threshold).collect()),
        );
    }
    Ok(ModelMask { layers })
}

/// How the final sparsity is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Prune once, then retrain all epochs with the mask held.
    OneShot,
    /// `rounds` rounds, each pruning to `k/rounds` of the final target (weights already
    /// pruned stay pruned) and retraining `epochs/rounds` epochs (Han et al., 2015).
    Iterative {
        /// Number of prune/retrain rounds.
        rounds: usize,
    },
    /// Gradual pruning (Zhu and Gupta, 2017): re-masked every [`Ramp::frequency`] steps
    /// over the first two thirds of the training steps, the target following `s_t = s_f (1 -
    /// (1 - t/n)^3)`; the last third retrains at the final mask, whatever the budget (one
    /// epoch included).
    Polynomial,
}

/// What a schedule did.
#[derive(Clone, Debug)]
pub struct PruneReport {
    /// Kept fraction of each pruned layer at the end.
    pub densities: Vec<(nn::LayerPath, f64)>,
    /// The Trainer's report of each retraining run (one per round).
    pub retraining: Vec<TrainReport>,
    /// The final masks.
    pub mask: ModelMask,
}

/// Prunes `model` to `criterion` following `schedule`, retraining on `train` with `config`
/// (its `epochs` are the whole budget; 0 epochs means prune without retraining). Pruned
/// weights are exactly zero at the end.
pub fn prune_model(
    model: &mut Model,
    criterion: Criterion,
    schedule: Schedule,
    config: &TrainConfig,
    train: &Dataset,
    epochs: usize,
    on_progress: &mut dyn FnMut(&nn::trainer::Progress),
) -> Result<PruneReport> {
    prune_model_with(
        model,
        criterion,
        schedule,
        config,
        train,
        epochs,
        &mut || Ok(Box::new(nn::trainer::CrossEntropy)),
        on_progress,
    )
}

/// Builds the training objective of each retraining run (for example distillation from the
/// unpruned model instead of the labels alone).
pub type ObjectiveFactory<'a> = dyn FnMut() -> nn::Result<Box<dyn Objective>> + 'a;

/// [`prune_model`] retraining with the objective `objective` builds for each run.
#[allow(clippy::too_many_arguments)]
pub fn prune_model_with(
    model: &mut Model,
    criterion: Criterion,
    schedule: Schedule,
    config: &TrainConfig,
    train: &Dataset,
    epochs: usize,
    objective: &mut ObjectiveFactory<'_>,
    on_progress: &mut dyn FnMut(&nn::trainer::Progress),
) -> Result<PruneReport> {
    let mut retraining = Vec::new();
    // Han et al. (2015), section 3.2: each retraining lowers dropout to D_o sqrt(C_ir / C_io).
    let dropout = crate::dropout::DropoutAdjustment::capture(model)?;
    let mut retrain = |model: &mut Model,
                       hook: Box<dyn TrainHook>,
                       epochs: usize,
                       progress: &mut dyn FnMut(&nn::trainer::Progress)|
     -> Result<Option<TrainReport>> {
        if epochs == 0 {
            return Ok(None);
        }
        dropout.apply(model)?;
        let cfg = TrainConfig {
            epochs,
            ..config.clone()
        };
        let mut trainer = Trainer::new(cfg)
            .with_hook(hook)
            .with_objective(objective()?);
        Ok(Some(trainer.fit(model, train, None, progress)?))
    };
    let mask = match schedule {
        Schedule::OneShot => {
            let mask = criterion.masks(model)?;
            mask.apply(model)?;
            let hook = Box::new(crate::MaskHook::new(mask.clone()));
            retraining.extend(retrain(model, hook, epochs, on_progress)?);
            mask
        }
        Schedule::Iterative { rounds } => {
            let rounds = rounds.max(1);
            let mut mask = ModelMask::default();
            for k in 1..=rounds {
                mask = criterion.at(k as f64 / rounds as f64).masks(model)?;
                mask.apply(model)?;
                let e = epochs * k / rounds - epochs * (k - 1) / rounds;
                let hook = Box::new(crate::MaskHook::new(mask.clone()));
                retraining.extend(retrain(model, hook, e, on_progress)?);
            }
            mask
        }
        Schedule::Polynomial => {
            let mut hook = Gradual {
                mask: criterion.at(0.0).masks(model)?,
                dropout: dropout.clone(),
                criterion: criterion.clone(),
                ramp: None,
            };
            if epochs == 0 {
                hook.mask = criterion.masks(model)?;
                hook.mask.apply(model)?;
                hook.mask
            } else {
                let cfg = TrainConfig {
                    epochs,
                    ..config.clone()
                };
                let mut trainer = Trainer::new(cfg)
                    .with_hook(Box::new(hook))
                    .with_objective(objective()?);
                retraining.push(trainer.fit(model, train, None, on_progress)?);
                let hook = trainer.hook::<Gradual>().ok_or_else(|| {
                    PruneError::Nn(nn::NnError::Config("gradual hook lost".into()))
                })?;
                hook.mask.clone()
            }
        }
    };
    mask.apply(model)?;
    Ok(PruneReport {
        densities: mask.densities(),
        retraining,
        mask,
    })
}

/// Re-masks per epoch of [`Schedule::Polynomial`] (Zhu and Gupta prune every 100 to 1,000
/// steps; a tenth of an epoch is 94 steps of Fashion-MNIST at batch 64).
pub const REMASKS_PER_EPOCH: usize = 10;

/// When [`Schedule::Polynomial`] re-masks, in training steps: every `frequency` steps up to
/// `end`, about two thirds of the run, so that the final mask is reached with a third of the
/// budget left to retrain at it (Zhu and Gupta, 2017, section 3: `n` pruning steps of
/// `Δt`, then training at the final sparsity).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ramp {
    /// Steps between two re-masks.
    pub frequency: usize,
    /// The step count after which the final sparsity holds (`n Δt`).
    pub end: usize,
}

impl Ramp {
    /// The ramp of a run of `total_steps` steps, `steps_per_epoch` a epoch: it ends at
    /// `ceil(2 total / 3)` steps and re-masks [`REMASKS_PER_EPOCH`] times an epoch (at least
    /// every step of a run shorter than that).
    pub fn new(total_steps: usize, steps_per_epoch: usize) -> Self {
        Ramp {
            frequency: (steps_per_epoch / REMASKS_PER_EPOCH).max(1),
            end: (total_steps * 2).div_ceil(3).max(1),
        }
    }

    /// The fraction of the final sparsity to prune to once `done` steps are taken, or `None`
    /// when the mask holds: `1 - (1 - t/n)^3` (Zhu and Gupta, eq. 1, with `s_i = 0`) at every
    /// `frequency`-th step of the ramp and at its last.
    pub fn fraction_after(&self, done: usize) -> Option<f64> {
        if done == 0
            || done > self.end
            || (!done.is_multiple_of(self.frequency) && done != self.end)
        {
            return None;
        }
        let t = done as f64 / self.end as f64;
        Some(1.0 - (1.0 - t).powi(3))
    }
}

/// The hook of [`Schedule::Polynomial`]: re-masks along its [`Ramp`], holds the mask through
/// every step.
struct Gradual {
    criterion: Criterion,
    /// Set at the first step, when the run's length is known.
    ramp: Option<Ramp>,
    mask: ModelMask,
    dropout: crate::dropout::DropoutAdjustment,
}

impl TrainHook for Gradual {
    fn after_backward(&mut self, model: &mut Model, _ctx: &StepContext<'_>) -> nn::Result<()> {
        Ok(self.mask.apply_to_grads(model)?)
    }

    fn after_step(&mut self, model: &mut Model, ctx: &StepContext<'_>) -> nn::Result<()> {
        let ramp = *self
            .ramp
            .get_or_insert_with(|| Ramp::new(ctx.total_steps, ctx.steps_per_epoch));
        if let Some(fraction) = ramp.fraction_after(ctx.step + 1) {
            self.mask = self.criterion.at(fraction).masks(model)?;
            self.dropout.apply(model)?;
        }
        Ok(self.mask.apply(model)?)
    }

    /// The mask held now, for a training checkpoint (the ramp follows from the run's length
    /// again at the first resumed step).
    fn state(&self) -> nn::Result<Option<Vec<u8>>> {
        crate::hook::mask_state(&self.mask).map(Some)
    }

    fn restore_state(&mut self, bytes: &[u8]) -> nn::Result<()> {
        self.mask = crate::hook::mask_from_state(bytes)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tensor_core::rng::Rng;

    #[test]
    fn global_magnitude_removes_the_smallest_weights_over_all_layers() {
        let model = nn::zoo::build("lenet300", &mut Rng::seed_from_u64(4)).unwrap();
        let mask = global_magnitude(&model, 0.9).unwrap();
        let total: usize = mask.layers.values().map(|m| m.len()).sum();
        let kept: usize = mask.layers.values().map(|m| m.kept()).sum();
        assert!(
            (kept as f64 / total as f64 - 0.1).abs() < 1e-3,
            "{kept}/{total}"
        );
        // Every kept weight is at least as large as every removed one.
        let (mut min_kept, mut max_removed) = (f32::MAX, 0.0f32);
        for (path, m) in &mask.layers {
            for (i, w) in weight_of(&model, path).unwrap().iter().enumerate() {
                if m.keeps(i) {
                    min_kept = min_kept.min(w.abs());
                } else {
                    max_removed = max_removed.max(w.abs());
                }
            }
        }
        assert!(min_kept >= max_removed);
        // Layers differ: the per-layer sparsity follows each layer's magnitudes.
        let d = mask.densities();
        assert!(d.iter().any(|(_, x)| (x - d[0].1).abs() > 0.01), "{d:?}");
        assert!(global_magnitude(&model, 1.5).is_err());
        assert_eq!(
            global_magnitude(&model, 0.0)
                .unwrap()
                .densities()
                .iter()
                .map(|x| x.1)
                .sum::<f64>(),
            3.0
        );
    }

    /// Drives the gradual hook as the Trainer does over one epoch of `steps` steps and gives
    /// the kept fraction of all prunable weights after each step.
    fn densities_over_one_epoch(steps: usize) -> Vec<f64> {
        let mut model = nn::zoo::build("lenet300", &mut Rng::seed_from_u64(5)).unwrap();
        let criterion = Criterion::GlobalSparsity(0.9);
        let mut hook = Gradual {
            mask: criterion.at(0.0).masks(&model).unwrap(),
            dropout: crate::dropout::DropoutAdjustment::capture(&model).unwrap(),
            criterion,
            ramp: None,
        };
        let inputs = tensor_core::Tensor::zeros_dims(&[1, 784]).unwrap();
        (0..steps)
            .map(|step| {
                let ctx = StepContext {
                    step,
                    epoch: 0,
                    step_in_epoch: step,
                    steps_per_epoch: steps,
                    total_steps: steps,
                    lr: 1e-3,
                    inputs: &inputs,
                    labels: &[0],
                };
                hook.after_step(&mut model, &ctx).unwrap();
                let (kept, total) = hook
                    .mask
                    .layers
                    .values()
                    .fold((0, 0), |(k, t), m| (k + m.kept(), t + m.len()));
                kept as f64 / total as f64
            })
            .collect()
    }

    #[test]
    fn a_one_epoch_polynomial_schedule_retrains_a_third_of_it_at_the_final_mask() {
        // Zhu and Gupta re-mask every few steps; re-masking at epoch ends only (the session-7
        // schedule) reached the final sparsity after the last step of a one-epoch budget.
        let steps = 300;
        let d = densities_over_one_epoch(steps);
        let last = *d.last().unwrap();
        assert!((last - 0.1).abs() < 1e-4, "{last}");
        let first_final = d.iter().position(|&x| x == last).unwrap();
        assert_eq!(first_final + 1, Ramp::new(steps, steps).end, "{d:?}");
        assert!(steps - (first_final + 1) >= steps / 3 - 1, "{first_final}");
        // Sparsity only grows along the ramp, in REMASKS_PER_EPOCH-ish steps, then holds.
        assert!(d.windows(2).all(|w| w[1] <= w[0] + 1e-12));
        let changes = d.windows(2).filter(|w| w[1] != w[0]).count();
        assert!((3..=REMASKS_PER_EPOCH).contains(&changes), "{changes}");
        assert!(d[first_final..].iter().all(|&x| x == d[first_final]));
    }

    #[test]
    fn the_ramp_re_masks_at_its_frequency_and_ends_at_two_thirds() {
        let r = Ramp::new(30 * 938, 938);
        assert_eq!(
            r,
            Ramp {
                frequency: 93,
                end: 18_760
            }
        );
        assert_eq!(r.fraction_after(0), None);
        assert_eq!(r.fraction_after(92), None);
        assert!(r.fraction_after(93).unwrap() > 0.0);
        assert_eq!(r.fraction_after(r.end), Some(1.0));
        assert_eq!(r.fraction_after(r.end + 93), None);
        // Runs shorter than an epoch's tenth re-mask at every step; one step still ends.
        assert_eq!(
            Ramp::new(3, 3),
            Ramp {
                frequency: 1,
                end: 2
            }
        );
        assert_eq!(Ramp::new(1, 1).fraction_after(1), Some(1.0));
        // Concave: more than half of the sparsity in the first half of the ramp.
        let half = Ramp {
            frequency: 1,
            end: 100,
        }
        .fraction_after(50)
        .unwrap();
        assert!((half - 0.875).abs() < 1e-12, "{half}");
    }

    #[test]
    fn the_polynomial_ramp_reaches_the_final_sparsity() {
        // s_t = s_f (1 - (1 - t)^3): 0 at t = 0, s_f at t = 1, concave.
        let f = |t: f64| 1.0 - (1.0 - t).powi(3);
        assert_eq!(f(0.0), 0.0);
        assert_eq!(f(1.0), 1.0);
        assert!(f(0.5) > 0.5);
        assert_eq!(
            Criterion::GlobalSparsity(0.9).at(0.5),
            Criterion::GlobalSparsity(0.45)
        );
    }
}
