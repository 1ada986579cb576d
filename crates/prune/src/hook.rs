//! MaskHook: the Trainer hook that keeps pruned weights at zero through retraining.

use nn::trainer::StepContext;
use nn::{Model, TrainHook};

use crate::model_mask::ModelMask;

/// Retraining with a fixed mask (Han et al., 2015, section 3.2: prune, then retrain the
/// remaining connections).
///
/// `after_backward` zeroes the gradients of pruned weights, so plain SGD leaves them alone;
/// `after_step` re-zeroes the pruned weights themselves, because momentum, Adam's moments or
/// weight decay can move a weight whose current gradient is zero.
#[derive(Clone, Debug)]
pub struct MaskHook {
    /// The masks held fixed.
    pub mask: ModelMask,
}

impl MaskHook {
    /// A hook holding `mask` fixed.
    pub fn new(mask: ModelMask) -> Self {
        Self { mask }
    }
}

impl TrainHook for MaskHook {
    fn after_backward(&mut self, model: &mut Model, _ctx: &StepContext<'_>) -> nn::Result<()> {
        Ok(self.mask.apply_to_grads(model)?)
    }

    fn after_step(&mut self, model: &mut Model, _ctx: &StepContext<'_>) -> nn::Result<()> {
        Ok(self.mask.apply(model)?)
    }
}
