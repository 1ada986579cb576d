//! Reference training recipes of the zoo models: what `slimnet train` and `cargo xtask zoo`
//! use unless told otherwise.
//!
//! The MLP and LeNet recipes follow the PyTorch runs DESIGN.md quotes (Adam, cosine schedule);
//! cnn-teacher uses SGD with Nesterov momentum, weight decay and flip/shift augmentation, the
//! usual recipe for a BatchNorm CNN.

use crate::data::Dataset;
use crate::data::augment::Augment;
use crate::error::{NnError, Result};
use crate::metrics::Evaluation;
use crate::model::Model;
use crate::optim::OptimizerConfig;
use crate::schedule::Schedule;
use crate::trainer::{Progress, TrainConfig, TrainReport, Trainer};

/// The reference recipe of zoo model `name`.
pub fn reference_config(name: &str) -> Result<TrainConfig> {
    let cosine = Schedule::Cosine {
        warmup_steps: 0,
        min_lr: 0.0,
    };
    let config = match name {
        "lenet300" | "lenet5" => TrainConfig {
            epochs: if name == "lenet300" { 30 } else { 20 },
            batch_size: 128,
            optimizer: OptimizerConfig::adam(1e-3),
            schedule: cosine,
            ..TrainConfig::default()
        },
        "cnn-teacher" => TrainConfig {
            // 15 epochs reach 93.9% (docs/BENCHMARKS.md); each costs about 150 s on 2 cores.
            epochs: 15,
            batch_size: 128,
            optimizer: OptimizerConfig::Sgd {
                lr: 0.05,
                momentum: 0.9,
                nesterov: true,
                weight_decay: 5e-4,
            },
            schedule: Schedule::Cosine {
                warmup_steps: 200,
                min_lr: 0.0,
            },
            augment: Some(Augment::default()),
            drop_last: true,
            ..TrainConfig::default()
        },
        other => {
            return Err(NnError::Config(format!(
                "no reference recipe for model {other:?}"
            )));
        }
    };
    Ok(config)
}

/// Trains `model` with `config`, then readies it for inference and evaluates it as it will
/// be saved: caches dropped, BatchNorm folded into the preceding convolutions, accuracy and
/// confusion matrix on `test`. The one sequence `slimnet train` and `cargo xtask zoo` share.
pub fn train_for_inference(
    model: &mut Model,
    config: &TrainConfig,
    train: &Dataset,
    test: &Dataset,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<(TrainReport, Evaluation)> {
    train_for_inference_monitored(model, config, train, test, test, on_progress)
}

/// [`train_for_inference`] with the per-epoch accuracy measured on `monitor` (a validation
/// split, so that model selection never looks at the test set) and the final evaluation on
/// `test`.
pub fn train_for_inference_monitored(
    model: &mut Model,
    config: &TrainConfig,
    train: &Dataset,
    monitor: &Dataset,
    test: &Dataset,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<(TrainReport, Evaluation)> {
    let mut control = crate::trainer::FitControl::default();
    match train_for_inference_controlled(
        model,
        config,
        (train, monitor, test),
        on_progress,
        &mut control,
    )? {
        (crate::trainer::FitOutcome::Finished(report), Some(evaluation)) => {
            Ok((report, evaluation))
        }
        _ => Err(crate::error::NnError::Config(
            "train: a run without a stop condition stopped early".into(),
        )),
    }
}

/// [`train_for_inference_monitored`] with checkpoints, resumption and early stops
/// ([`Trainer::fit_controlled`]): the outcome, and the test evaluation of the folded model
/// when every epoch ran (`None` when the run stopped early, its BatchNorms left unfolded so
/// that a resume continues the same model).
pub fn train_for_inference_controlled(
    model: &mut Model,
    config: &TrainConfig,
    (train, monitor, test): (&Dataset, &Dataset, &Dataset),
    on_progress: &mut dyn FnMut(&Progress),
    control: &mut crate::trainer::FitControl<'_>,
) -> Result<(crate::trainer::FitOutcome, Option<Evaluation>)> {
    let mut trainer = Trainer::new(config.clone());
    let outcome = trainer.fit_controlled(model, train, Some(monitor), on_progress, control)?;
    if matches!(outcome, crate::trainer::FitOutcome::Stopped { .. }) {
        return Ok((outcome, None));
    }
    model.clear_cache();
    crate::layers::fold_batchnorms(model)?;
    let evaluation = trainer.evaluate(model, test)?;
    Ok((outcome, Some(evaluation)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_zoo_model_has_a_valid_recipe() {
        for name in crate::zoo::NAMES {
            reference_config(name).unwrap().validate().unwrap();
        }
        assert!(reference_config("resnet").is_err());
    }
}
