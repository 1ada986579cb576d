//! Retraining after structured pruning: Han's dropout adjustment, then the Trainer, holding a
//! mask when there is one (N:M) or none (filter pruning leaves a smaller dense model).

use nn::trainer::{Progress, TrainReport, Trainer};
use nn::{Dataset, LayerPath, Model, TrainConfig};

use crate::dropout::DropoutAdjustment;
use crate::error::Result;
use crate::hook::MaskHook;
use crate::model_mask::ModelMask;

/// What [`retrain`] did.
#[derive(Clone, Debug)]
pub struct Retrained {
    /// The dropout rates set before retraining, `D_o sqrt(C_ir / C_io)`.
    pub dropout_rates: Vec<(LayerPath, f32)>,
    /// The Trainer's report (`None` for 0 epochs).
    pub report: Option<TrainReport>,
}

/// Sets the dropout rates of `model` from `dropout` (captured on the unpruned model) and
/// retrains it for `config.epochs` epochs on `train`, with `mask` held by a [`MaskHook`]
/// when given. 0 epochs only sets the rates (and applies the mask).
pub fn retrain(
    model: &mut Model,
    dropout: &DropoutAdjustment,
    mask: Option<ModelMask>,
    config: &TrainConfig,
    train: &Dataset,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<Retrained> {
    let dropout_rates = dropout.apply(model)?;
    if let Some(m) = &mask {
        m.apply(model)?;
    }
    if config.epochs == 0 {
        return Ok(Retrained {
            dropout_rates,
            report: None,
        });
    }
    let mut trainer = Trainer::new(config.clone());
    if let Some(m) = mask {
        trainer = trainer.with_hook(Box::new(MaskHook::new(m)));
    }
    let report = trainer.fit(model, train, None, on_progress)?;
    Ok(Retrained {
        dropout_rates,
        report: Some(report),
    })
}
