//! Knowledge distillation: training a small student on a large teacher's soft targets
//! (Hinton, Vinyals, Dean, 2015).
//!
//! **Not yet filled.** This crate will hold: the distillation loss
//! `α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1-α)·CE(y, softmax(z_s))` with its gradient,
//! logit matching (`½‖z_s - z_t‖²`, the high-temperature limit), and a teacher/student
//! training loop built on `nn`'s Trainer.
#![warn(missing_docs)]
