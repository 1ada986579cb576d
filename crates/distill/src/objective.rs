//! Distillation through the Trainer's objective seam: the teacher runs on each batch as the
//! student saw it (augmentation included), and the student learns from its soft targets.

use nn::trainer::Objective;
use nn::{Mode, Model, Result};
use tensor_core::Tensor;

use crate::loss::{DistillParams, distillation_loss};

/// The [`Objective`] that distills `teacher` into the model being trained.
pub struct Distillation {
    teacher: Model,
    params: DistillParams,
}

impl Distillation {
    /// Distills from `teacher` (any model with the student's input and output shapes).
    ///
    /// Errors: invalid parameters.
    pub fn new(teacher: Model, params: DistillParams) -> Result<Self> {
        params.validate()?;
        Ok(Self { teacher, params })
    }
}

impl Objective for Distillation {
    fn loss(
        &mut self,
        logits: &Tensor,
        inputs: &Tensor,
        labels: &[usize],
    ) -> Result<(f32, Tensor)> {
        let teacher = self.teacher.forward(inputs, Mode::Eval)?;
        distillation_loss(logits, &teacher, labels, self.params)
    }
}
