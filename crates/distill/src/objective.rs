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

/// A linear schedule of the target's weight and temperature over training: from the
/// target's own values at the first step to `alpha_end` and `temperature_end` at step
/// `steps` (and after).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Anneal {
    /// Optimizer steps over which the values move (epochs x steps per epoch).
    pub steps: usize,
    /// Weight of the teacher's term at the last step.
    pub alpha_end: f32,
    /// Temperature at the last step (soft targets only).
    pub temperature_end: f32,
}

/// The [`Objective`] that distills a teacher (or the mean logits of an ensemble of
/// teachers) into the model being trained.
pub struct Distillation {
    pub(crate) teachers: Vec<Model>,
    target: Target,
    anneal: Option<Anneal>,
    step: usize,
    pub(crate) cache: HashMap<u64, Box<[f32]>>,
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
        Self::ensemble(vec![teacher], target)
    }

    /// Distills from the mean logits of `teachers` (an ensemble, Hinton et al. section 3:
    /// averaging logits is the geometric mean of their softmax outputs) towards `target`.
    ///
    /// Errors: no teacher, or invalid parameters.
    pub fn ensemble(teachers: Vec<Model>, target: Target) -> Result<Self> {
        if teachers.is_empty() {
            return Err(NnError::Config("distillation: no teacher".into()));
        }
        validate(target)?;
        Ok(Self {
            teachers,
            target,
            anneal: None,
            step: 0,
            cache: HashMap::new(),
            caching: true,
            teacher_passes: 0,
        })
    }

    /// Moves alpha (and the temperature) linearly over training, as `anneal` says.
    ///
    /// Errors: the end values are invalid parameters, or `steps` is 0.
    pub fn anneal(mut self, anneal: Anneal) -> Result<Self> {
        if anneal.steps == 0 {
            return Err(NnError::Config("distillation: anneal over 0 steps".into()));
        }
        validate(self.at(anneal.steps, Some(anneal)))?;
        self.anneal = Some(anneal);
        Ok(self)
    }

    /// The target at optimizer step `step` under `anneal`.
    fn at(&self, step: usize, anneal: Option<Anneal>) -> Target {
        let Some(a) = anneal else {
            return self.target;
        };
        let f = step.min(a.steps) as f32 / a.steps as f32;
        let lerp = |from: f32, to: f32| from + (to - from) * f;
        match self.target {
            Target::Soft(p) => Target::Soft(DistillParams {
                temperature: lerp(p.temperature, a.temperature_end),
                alpha: lerp(p.alpha, a.alpha_end),
            }),
            Target::Logits { alpha } => Target::Logits {
                alpha: lerp(alpha, a.alpha_end),
            },
        }
    }

    /// Test accuracy of the teacher (of the ensemble's mean logits) on `data`, in batches of
    /// `batch_size`; their logits are cached like the transfer set's (a cache file then
    /// spares the next run this pass too).
    ///
    /// Errors: an empty dataset, a zero batch size, or a teacher's error.
    pub fn teacher_accuracy(&mut self, data: &nn::Dataset, batch_size: usize) -> Result<f64> {
        if data.is_empty() || batch_size == 0 {
            return Err(NnError::Config(
                "distillation: teacher accuracy needs images and a batch size >= 1".into(),
            ));
        }
        let passes = self.teacher_passes;
        let indices: Vec<usize> = (0..data.len()).collect();
        let mut correct = 0usize;
        let mut result = Ok(());
        for chunk in indices.chunks(batch_size) {
            let step = data.batch(chunk).and_then(|(images, labels)| {
                let x = nn::metrics::to_model_input(&self.teachers[0], images)?;
                let logits = self.teacher_logits(&x)?;
                for (p, t) in logits.argmax_rows()?.into_iter().zip(labels) {
                    correct += usize::from(p == t);
                }
                Ok(())
            });
            if step.is_err() {
                result = step;
                break;
            }
        }
        self.teacher_passes = passes;
        result?;
        Ok(correct as f64 / data.len() as f64)
    }

    /// Images whose teacher logits are cached.
    pub fn cached_images(&self) -> usize {
        self.cache.len()
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
        let mut logits = self.teachers[0].forward(inputs, Mode::Eval)?;
        if self.teachers.len() > 1 {
            let mut sum: Vec<f64> = logits.data().iter().map(|&v| v as f64).collect();
            for t in &mut self.teachers[1..] {
                let other = t.forward(inputs, Mode::Eval)?;
                if other.dims() != logits.dims() {
                    return Err(NnError::Config(format!(
                        "distillation: teachers' logits {:?} and {:?} differ in shape",
                        logits.dims(),
                        other.dims()
                    )));
                }
                sum.iter_mut()
                    .zip(other.data())
                    .for_each(|(s, &v)| *s += v as f64);
            }
            let n = self.teachers.len() as f64;
            logits = Tensor::new(
                logits.dims(),
                sum.into_iter().map(|s| (s / n) as f32).collect(),
            )?;
        }
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

/// Checks the parameters of `target`.
fn validate(target: Target) -> Result<()> {
    match target {
        Target::Soft(p) => p.validate(),
        Target::Logits { alpha } => DistillParams {
            temperature: 1.0,
            alpha,
        }
        .validate(),
    }
}

/// A 64-bit hash of an image's f32 bits (two words at a time through a multiply-xorshift
/// mix; not cryptographic).
pub(crate) fn image_hash(pixels: &[f32]) -> u64 {
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
        let target = self.at(self.step, self.anneal);
        self.step += 1;
        match target {
            Target::Soft(p) => distillation_loss(logits, &teacher, labels, p),
            Target::Logits { alpha } => logit_matching_loss(logits, &teacher, labels, alpha),
        }
    }

    /// The step an annealed target has reached (8 bytes, little-endian), for checkpoints;
    /// the cached logits are not state: they equal the teacher's, bit for bit.
    fn state(&self) -> Result<Option<Vec<u8>>> {
        Ok(Some((self.step as u64).to_le_bytes().to_vec()))
    }

    fn restore_state(&mut self, bytes: &[u8]) -> Result<()> {
        let step = <[u8; 8]>::try_from(bytes).map_err(|_| {
            NnError::Config(format!(
                "distillation: resume: a step of {} bytes (8 expected)",
                bytes.len()
            ))
        })?;
        self.step = usize::try_from(u64::from_le_bytes(step))
            .map_err(|_| NnError::Config("distillation: resume: step out of range".into()))?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tensor_core::rng::Rng;

    /// `b` random images of 1 x 28 x 28 from `seed`.
    pub(crate) fn batch(seed: u64, b: usize) -> Tensor {
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
    fn an_ensemble_distills_the_mean_of_its_teachers_logits() {
        let build = |seed| nn::zoo::build("lenet300", &mut Rng::seed_from_u64(seed)).unwrap();
        let params = DistillParams {
            temperature: 2.0,
            alpha: 0.7,
        };
        let mut d = Distillation::ensemble(vec![build(1), build(2)], Target::Soft(params)).unwrap();
        let x = batch(7, 4);
        let student =
            Tensor::new(&[4, 10], (0..40).map(|i| (i % 5) as f32 * 0.3).collect()).unwrap();
        let labels = [3, 1, 4, 1];
        let got = d.loss(&student, &x, &labels).unwrap();
        let (a, b) = (
            build(1).forward(&x, Mode::Eval).unwrap(),
            build(2).forward(&x, Mode::Eval).unwrap(),
        );
        let mean: Vec<f32> = a
            .data()
            .iter()
            .zip(b.data())
            .map(|(&p, &q)| ((p as f64 + q as f64) / 2.0) as f32)
            .collect();
        assert_ne!(a.data(), b.data());
        let want = distillation_loss(
            &student,
            &Tensor::new(&[4, 10], mean).unwrap(),
            &labels,
            params,
        )
        .unwrap();
        assert_eq!(want.0.to_bits(), got.0.to_bits());
        assert_eq!(want.1.data(), got.1.data());
        assert!(Distillation::ensemble(Vec::new(), Target::Soft(params)).is_err());
    }

    #[test]
    fn annealing_moves_alpha_and_temperature_linearly_then_holds() {
        let teacher = || nn::zoo::build("lenet300", &mut Rng::seed_from_u64(4)).unwrap();
        let start = DistillParams {
            temperature: 4.0,
            alpha: 0.9,
        };
        let anneal = Anneal {
            steps: 4,
            alpha_end: 0.1,
            temperature_end: 1.0,
        };
        let mut d = Distillation::new(teacher(), start)
            .unwrap()
            .anneal(anneal)
            .unwrap();
        let x = batch(8, 3);
        let student =
            Tensor::new(&[3, 10], (0..30).map(|i| (i % 4) as f32 * 0.2).collect()).unwrap();
        let labels = [0, 5, 9];
        let z_t = teacher().forward(&x, Mode::Eval).unwrap();
        for step in 0..6 {
            let f = (step.min(4) as f32) / 4.0;
            let p = DistillParams {
                temperature: 4.0 + (1.0 - 4.0) * f,
                alpha: 0.9 + (0.1 - 0.9) * f,
            };
            let want = distillation_loss(&student, &z_t, &labels, p).unwrap();
            let got = d.loss(&student, &x, &labels).unwrap();
            assert_eq!(want.0.to_bits(), got.0.to_bits(), "step {step}");
        }
        let bad = Anneal {
            alpha_end: 1.5,
            ..anneal
        };
        assert!(
            Distillation::new(teacher(), start)
                .unwrap()
                .anneal(bad)
                .is_err()
        );
        let zero = Anneal { steps: 0, ..anneal };
        assert!(
            Distillation::new(teacher(), start)
                .unwrap()
                .anneal(zero)
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
