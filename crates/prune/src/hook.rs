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

    /// The masks (layer path and keep flags), for a training checkpoint.
    fn state(&self) -> nn::Result<Option<Vec<u8>>> {
        mask_state(&self.mask).map(Some)
    }

    /// Restores [`TrainHook::state`]'s masks (checked against the weights when applied).
    fn restore_state(&mut self, bytes: &[u8]) -> nn::Result<()> {
        self.mask = mask_from_state(bytes)?;
        Ok(())
    }
}

/// `mask` as checkpoint bytes (layer path and keep flags): the state of every hook holding
/// a mask.
pub(crate) fn mask_state(mask: &ModelMask) -> nn::Result<Vec<u8>> {
    let masks: Vec<(String, &[bool])> = (mask.layers.iter())
        .map(|(path, m)| (path.to_string(), m.as_slice()))
        .collect();
    nn::io::native::encode_value(&masks, "pruning masks")
}

/// The mask [`mask_state`] wrote.
pub(crate) fn mask_from_state(bytes: &[u8]) -> nn::Result<ModelMask> {
    let masks: Vec<(String, Vec<bool>)> =
        nn::io::native::decode_value(bytes, "checkpoint", "pruning masks")?;
    let mut layers = std::collections::BTreeMap::new();
    for (path, keep) in masks {
        layers.insert(
            nn::LayerPath::parse(&path)?,
            crate::mask::Mask::from_keep(keep),
        );
    }
    Ok(ModelMask { layers })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_state_round_trips_and_refuses_garbage() {
        let mut rng = tensor_core::rng::Rng::seed_from_u64(3);
        let model = nn::zoo::build_spec("mlp:784-8-10", &mut rng).unwrap();
        let mask = ModelMask::by_density(&model, &[0.3, 0.6]).unwrap();
        let hook = MaskHook::new(mask.clone());
        let bytes = hook.state().unwrap().unwrap();
        let mut back = MaskHook::new(ModelMask::default());
        back.restore_state(&bytes).unwrap();
        assert_eq!(back.mask, mask);
        assert!(back.restore_state(&bytes[..bytes.len() / 2]).is_err());
    }
}
