//! Datasets: labelled images in memory, batching, IDX files, augmentation.

use tensor_core::Tensor;

use crate::error::{NnError, Result};

pub mod augment;
pub mod idx;
pub mod source;

pub use augment::{Augment, augment_batch};
pub use idx::{FASHION_MNIST_CLASSES, FASHION_MNIST_LABELS, Split, load_fashion_mnist};
pub use source::{DataSource, SourceKind};

/// A class index. Two bytes: models with more than 256 classes (ImageNet's 1,000) are
/// evaluated and trained as any other; file formats that store bytes widen on reading.
pub type Label = u16;

/// The largest class count a [`Dataset`] holds (one more than the largest [`Label`]).
pub const MAX_CLASSES: usize = Label::MAX as usize + 1;

/// A labelled image set in memory: `images` is `[N, C, H, W]` with pixels scaled to [0, 1],
/// `labels[i]` the class of image `i` (a [`Label`]: up to 65,536 classes).
#[derive(Clone, Debug)]
pub struct Dataset {
    /// `[N, C, H, W]`, f32 in [0, 1].
    pub images: Tensor,
    /// One class index per image.
    pub labels: Vec<Label>,
    /// Number of classes.
    pub classes: usize,
}

impl Dataset {
    /// A dataset, checking that images and labels agree in count and labels are in range
    /// (labels of any unsigned type up to [`Label`]: IDX and CIFAR files store bytes).
    pub fn new<L: Into<Label>>(images: Tensor, labels: Vec<L>, classes: usize) -> Result<Self> {
        let labels: Vec<Label> = labels.into_iter().map(Into::into).collect();
        let n = images.dims().first().copied().unwrap_or(0);
        if images.dims().len() != 4 || n != labels.len() {
            return Err(NnError::Config(format!(
                "dataset: images {} and {} labels disagree (want [N, C, H, W] with N = labels)",
                images.shape(),
                labels.len()
            )));
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|&(_, &l)| l as usize >= classes)
        {
            return Err(NnError::Config(format!(
                "dataset: label {l} at index {i} is not below {classes} classes"
            )));
        }
        Ok(Self {
            images,
            labels,
            classes,
        })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the dataset is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Shape of one sample, `[C, H, W]`.
    pub fn sample_shape(&self) -> &[usize] {
        &self.images.dims()[1..]
    }

    /// Copies the samples at `indices` into a batch `[B, C, H, W]` with their labels.
    pub fn batch(&self, indices: &[usize]) -> Result<(Tensor, Vec<usize>)> {
        let per: usize = self.sample_shape().iter().product();
        let mut data = Vec::with_capacity(indices.len() * per);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            if i >= self.len() {
                return Err(NnError::Config(format!(
                    "dataset: index {i} out of range 0..{}",
                    self.len()
                )));
            }
            data.extend_from_slice(&self.images.data()[i * per..(i + 1) * per]);
            labels.push(self.labels[i] as usize);
        }
        let mut dims = vec![indices.len()];
        dims.extend_from_slice(self.sample_shape());
        Ok((Tensor::new(&dims, data)?, labels))
    }

    /// Number of samples of each class, indexed by label (length `classes`).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes];
        // Fields are public, so a label may exceed `classes`: such labels are not counted.
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(l as usize) {
                *c += 1;
            }
        }
        counts
    }

    /// The samples at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Result<Self> {
        let (images, labels) = self.batch(indices)?;
        Ok(Self {
            images,
            labels: labels.into_iter().map(|l| l as Label).collect(),
            classes: self.classes,
        })
    }

    /// A held-out validation set for model selection that never looks at the test set:
    /// `(train, validation)`, the validation set being `round(fraction * len)` samples drawn
    /// without replacement by a permutation seeded with `seed` (both keep the drawn order).
    ///
    /// Errors: `fraction` outside (0, 1), or a split that leaves either side empty.
    pub fn split_validation(&self, fraction: f64, seed: u64) -> Result<(Self, Self)> {
        if !(fraction > 0.0 && fraction < 1.0) {
            return Err(NnError::Config(format!(
                "validation split: fraction {fraction} is not in (0, 1)"
            )));
        }
        let n_val = (fraction * self.len() as f64).round() as usize;
        if n_val == 0 || n_val == self.len() {
            return Err(NnError::Config(format!(
                "validation split: {fraction} of {} samples leaves an empty side",
                self.len()
            )));
        }
        let mut order: Vec<usize> = (0..self.len()).collect();
        tensor_core::rng::Rng::seed_from_u64(seed).shuffle(&mut order);
        let (val, train) = order.split_at(n_val);
        Ok((self.subset(train)?, self.subset(val)?))
    }

    /// The first `n` samples (or all, if fewer).
    pub fn take(&self, n: usize) -> Result<Self> {
        let n = n.min(self.len());
        Ok(Self {
            images: self.images.slice_outer(0, n)?,
            labels: self.labels[..n].to_vec(),
            classes: self.classes,
        })
    }
}
