//! The share stage: k-means codebooks per layer (code 0 the pruned zero), then centroid
//! fine-tuning through the sharing hook (Deep Compression, section 3).

use nn::trainer::{Objective, Progress, Trainer};
use nn::{Model, NnError, Result};
use serde::Serialize;

use super::{Data, Observer};
use crate::recipe::ShareStage;
use crate::report::{SharedRow, shared_rows};

/// What a share stage did.
#[derive(Clone, Debug, Serialize)]
pub struct ShareDetail {
    /// Test accuracy right after clustering, before fine-tuning.
    pub accuracy_before_finetune: f64,
    /// Storage of every shared layer (Deep Compression's accounting).
    pub layers: Vec<SharedRow>,
}

/// Shares `model`'s linear and conv2d weights as `stage` says and fine-tunes the centroids;
/// the model keeps dense layers holding the shared values; the fine-tuning learns from
/// `objective` (the labels, or a teacher). Returns the codebooks and forms the stored model
/// is built from.
pub fn run(
    model: &mut Model,
    stage: &ShareStage,
    seed: u64,
    data: &Data,
    objective: Box<dyn Objective>,
    observer: &mut dyn Observer,
) -> Result<(ShareDetail, (share::ModelShare, share::SharedForms))> {
    let kp = share::KMeansParams {
        init: stage.init.init(seed),
        ..share::KMeansParams::default()
    };
    let shared = share::share_model(model, stage.bits_fc, stage.bits_conv, &kp)?;
    let accuracy_before_finetune = nn::metrics::evaluate(model, data.test, 256)?.accuracy;
    let shared = if stage.finetune.epochs > 0 {
        let mut trainer = Trainer::new(stage.finetune.config(seed))
            .with_objective(objective)
            .with_hook(Box::new(share::ShareHook::new(shared)));
        let mut progress = |p: &Progress| observer.progress(p);
        trainer.fit(model, data.train, None, &mut progress)?;
        trainer
            .hook::<share::ShareHook>()
            .ok_or_else(|| NnError::Config("the sharing hook is gone after training".into()))?
            .share
            .clone()
    } else {
        shared
    };
    let forms = share::SharedForms {
        sparse_below_density: stage.sparse_below,
        ..share::SharedForms::default()
    };
    let mut stored = super::copy(model)?;
    share::to_shared_layers_with(&mut stored, &shared, &forms)?;
    Ok((
        ShareDetail {
            accuracy_before_finetune,
            layers: shared_rows(&stored),
        },
        (shared, forms),
    ))
}
