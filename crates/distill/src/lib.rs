//! Knowledge distillation: training a small student on a large teacher's soft targets
//! (Hinton, Vinyals, Dean, 2015).
//!
//! - [`distillation_loss`]: `alpha * T^2 * KL(softmax(z_t/T) || softmax(z_s/T)) +
//!   (1 - alpha) * CE(y, softmax(z_s))` and its gradient, tested against a float64 reference,
//!   finite differences and the logit-matching limit.
//! - [`Distillation`]: that loss as an [`nn::trainer::Objective`], so any training loop built
//!   on nn's Trainer (retraining after pruning, sharing or quantization included) learns from
//!   a teacher instead of labels alone.
//!
//! ```
//! use distill::{DistillParams, Distillation};
//! # fn main() -> nn::Result<()> {
//! let mut rng = tensor_core::rng::Rng::seed_from_u64(1);
//! let teacher = nn::zoo::build("lenet300", &mut rng)?;
//! let objective = Distillation::new(teacher, DistillParams { temperature: 4.0, alpha: 0.9 })?;
//! let trainer = nn::Trainer::new(nn::TrainConfig::default()).with_objective(Box::new(objective));
//! # let _ = trainer;
//! # Ok(())
//! # }
//! ```
//!
//! The teacher's logits are cached per image, so an epoch over images already seen costs no
//! teacher pass.
//!
//! Also: an ensemble of teachers ([`Distillation::ensemble`], mean logits), a linear schedule
//! of alpha and temperature over training ([`Anneal`]), and the cached logits as a file
//! ([`Distillation::cache_bytes`], [`Distillation::load_cache`]) so a sweep runs its teacher
//! once. Teacher chains (teacher -> assistant -> student) and the transfer sets are
//! `slimnet distill`'s (`--assistant`, `--transfer`).
#![warn(missing_docs)]

mod cache;
pub mod loss;
mod objective;

pub use loss::{DistillParams, distillation_loss, logit_matching_loss};
pub use objective::{Anneal, Distillation, Target};
