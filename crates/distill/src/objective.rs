//! Distillation through the Trainer's objective seam: the teacher runs on each batch as the
//! student saw it (augmentation included), and the student learns from its soft targets.
//!
//! The teacher is fixed, so its logits for an image never change: they are cached, keyed by
//! a 64-bit hash of the image's bits, and a batch whose images were all seen before costs no
//! teacher forward pass (without augmentation, every epoch after the first). The cache holds
//! at most [`CACHE_IMAGES`] images; past that, new images are computed and not kept. Two
//! different images sharing a hash would share soft targets; over 60,000 images the chance
//! of any such pair is about 1e-10.

use std::collections::HashMap;

use nn::trainer::Objective;
use nn::{Mode, Model, NnError, Result};
use tensor_core::Tensor;

use crate::loss::{DistillParams, distillation_loss, logit_matching_loss};

/// Most images whose teacher logits are cached (60,000 Fashion-MNIST images of 10 classes
/// take 2.9 MB).
pub const CACHE_IMAGES: usize = 1 << 20;

/// What the student learns from the teacher's logits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// Soft targets at a temperature, mixed with the labels ([`distillation_loss`]).
    Soft(DistillParams),
    /// Squared error on the logits, weight `alpha` against the labels
    /// ([`logit_matching_loss`]).
    Logits {
        /// Weight of the logit term.
        alpha: f32,
    },
}

/// The [`Objective`] that distills `teacher` into the model being trained.
pub struct Distillation {
    teacher: Model,
    target: Target,
    cache: HashMap<u64, Box<[f32]>>,
    caching: bool,
    teacher_passes: usize,
}

impl Distillation {
    /// Distills from `teacher` (any model with the student's input and output shapes).
    ///
    /// Errors: invalid parameters.
    pub fn new(teacher: Model, params: DistillParams) -> Result<Self> {
        Self::with_target(teacher, Target::Soft(params))
    }

    /// Distills from `teacher` towards `target`.
    ///
    /// Errors: invalid parameters.
    pub fn with_target(teacher: Model, target: Target) -> Result<Self> {
        match target {
            Target::Soft(p) => p.validate()?,
            Target::Logits { alpha } => DistillParams {
                temperature: 1.0,
                alpha,
            }
            .validate()?,
        }
        Ok(Self {
            teacher,
            target,
            cache: HashMap::new(),
            caching: true,
            teacher_passes: 0,
        })
    }

    /// Keep the teacher's logits per image (the default), or compute them on every batch:
    /// for augmented transfer sets, whose images are never seen twice.
    pub fn caching(mut self, on: bool) -> Self {
        self.caching = on;
        self
    }

    /// Batches the teacher actually ran on (the others came from the cache).
    pub fn teacher_passes(&self) -> usize {
        self.teacher_passes
    }

    /// The teacher's logits for `inputs` (`[B, ...]`), from the cache when every image is in
    /// it.
    fn teacher_logits(&mut self, inputs: &Tensor) -> Result<Tensor> {
        let b = inputs.dims().first().copied().unwrap_or(0);
        let per = inputs.numel().checked_div(b).unwrap_or(0);
        let keys: Vec<u64> = if self.caching {
            inputs.data().chunks(per.max(1)).map(image_hash).collect()
        } else {
            Vec::new()
        };
        if self.caching && b > 0 && keys.iter().all(|k| self.cache.contains_key(k)) {
            let classes = self.cache[&keys[0]].len();
            let mut out = Vec::with_capacity(b * classes);
            for k in &keys {
                let row = &self.cache[k];
                if row.len() != classes {
                    return Err(NnError::Config(
                        "distillation: cached teacher logits of two widths".into(),
                    ));
                }
                out.extend_from_slice(row);
            }
            return Ok(Tensor::new(&[b, classes], out)?);
        }
        let logits = self.teacher.forward(inputs, Mode::Eval)?;
        self.teacher_passes += 1;
        let classes = logits.numel().checked_div(b).unwrap_or(0);
        for (k, row) in keys.iter().zip(logits.data().chunks(classes.max(1))) {
            if !self.caching || self.cache.len() >= CACHE_IMAGES {
                break;
            }
            self.cache.insert(*k, row.into());
        }
        Ok(logits)
    }
}

/// A 64-bit hash of an image's f32 bits (two words at a time through a multiply-xorshift
/// mix; not cryptographic).
fn image_hash(pixels: &[f32]) -> u64 {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15 ^ pixels.len() as u64;
    let mix = |h: u64, w: u64| {
        let x = (h ^ w).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        (x ^ (x >> 31)).wrapping_mul(0x94d0_49bb_1331_11eb)
    };
    let mut pairs = pixels.chunks_exact(2);
    for p in &mut pairs {
        h = mix(h, (p[0].to_bits() as u64) << 32 | p[1].to_bits() as u64);
    }
    for p in pairs.remainder() {
        h = mix(h, p.to_bits() as u64);
    }
    h ^ (h >> 29)
}

impl Objective for Distillation {
    fn loss(
        &mut self,
        logits: &Tensor,
        inputs: &Tensor,
        labels: &[usize],
    ) -> Result<(f32, Tensor)> {
        let teacher = self.teacher_logits(inputs)?;
        match self.target {
            Target::Soft(p) => distillation_loss(logits, &teacher, labels, p),
            Target::Logits { alpha } => logit_matching_loss(logits, &teacher, labels, alpha),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tensor_core::rng::Rng;

    fn batch(seed: u64, b: usize) -> Tensor {
        let mut rng = Rng::seed_from_u64(seed);
        Tensor::new(
            &[b, 1, 28, 28],
            (0..b * 784).map(|_| rng.uniform()).collect(),
        )
        .unwrap()
    }

    #[test]
    fn cached_soft_targets_equal_the_teachers_and_save_its_passes() {
        let mut rng = Rng::seed_from_u64(2);
        let teacher = nn::zoo::build("lenet300", &mut rng).unwrap();
        let mut reference = nn::zoo::build("lenet300", &mut Rng::seed_from_u64(2)).unwrap();
        let params = DistillParams {
            temperature: 4.0,
            alpha: 0.9,
        };
        let mut d = Distillation::new(teacher, params).unwrap();
        let student =
            Tensor::new(&[8, 10], (0..80).map(|i| (i % 7) as f32 * 0.1).collect()).unwrap();
        let labels = [0, 1, 2, 3, 4, 5, 6, 7];
        let (x, y) = (batch(1, 8), batch(2, 8));
        let first = d.loss(&student, &x, &labels).unwrap();
        assert_eq!(d.teacher_passes(), 1);
        d.loss(&student, &y, &labels).unwrap();
        assert_eq!(d.teacher_passes(), 2);
        // Seen before: from the cache, bit for bit what the teacher gives.
        let again = d.loss(&student, &x, &labels).unwrap();
        assert_eq!(d.teacher_passes(), 2);
        assert_eq!(first.0.to_bits(), again.0.to_bits());
        assert_eq!(first.1.data(), again.1.data());
        let want = distillation_loss(
            &student,
            &reference.forward(&x, Mode::Eval).unwrap(),
            &labels,
            params,
        )
        .unwrap();
        assert_eq!(want.0.to_bits(), again.0.to_bits());
        // A batch mixing seen and unseen images runs the teacher.
        let mixed = Tensor::new(
            &[8, 1, 28, 28],
            [&x.data()[..4 * 784], batch(3, 4).data()].concat(),
        )
        .unwrap();
        d.loss(&student, &mixed, &labels).unwrap();
        assert_eq!(d.teacher_passes(), 3);
    }

    #[test]
    fn without_the_cache_every_batch_runs_the_teacher() {
        let teacher = nn::zoo::build("lenet300", &mut Rng::seed_from_u64(2)).unwrap();
        let mut d = Distillation::with_target(teacher, Target::Logits { alpha: 1.0 })
            .unwrap()
            .caching(false);
        let student = Tensor::new(&[2, 10], vec![0.5; 20]).unwrap();
        let x = batch(1, 2);
        let a = d.loss(&student, &x, &[0, 1]).unwrap();
        let b = d.loss(&student, &x, &[0, 1]).unwrap();
        assert_eq!(d.teacher_passes(), 2);
        assert_eq!(a.0.to_bits(), b.0.to_bits());
        assert!(
            Distillation::with_target(
                nn::zoo::build("lenet300", &mut Rng::seed_from_u64(2)).unwrap(),
                Target::Logits { alpha: 2.0 }
            )
            .is_err()
        );
    }

    #[test]
    fn the_hash_sees_every_pixel() {
        let x = batch(5, 1);
        let h = image_hash(x.data());
        for i in [0, 1, 391, 783] {
            let mut y = x.data().to_vec();
            y[i] = f32::from_bits(y[i].to_bits() ^ 1);
            assert_ne!(image_hash(&y), h, "pixel {i}");
        }
        assert_ne!(image_hash(&x.data()[..783]), h);
    }
}
