//! Running a [`Recipe`]: each stage in order on a working model, each logged with its
//! accuracy and the size the model would have if written then; at the end the container
//! image, evaluated as it will be read back, with the per-layer table and energy estimate of
//! [`crate::report`].
//!
//! The working model stays in dense layers holding exact zeros (pruning) and shared values
//! (sharing) until [`Compressor::finish`], which turns it into its stored form: sparse,
//! shared or sparse + shared layers, whichever each layer's density and codebook call for.
//!
//! ```no_run
//! # fn main() -> nn::Result<()> {
//! let (_, train, test) = nn::data::source::load(None)?;
//! let model = pipeline::load("lenet300.model", None)?;
//! let recipe = pipeline::recipe::preset("deep-compression").unwrap();
//! let data = pipeline::compress::Data { train: &train, test: &test };
//! let mut c = pipeline::compress::Compressor::new(model, recipe, 1, "lenet300.model")?;
//! c.run_stages(&data, &mut pipeline::compress::Quiet)?;
//! let out = c.finish(&data)?;
//! nn::io::atomic::write_atomic("lenet300.slim", &out.bytes)?;
//! println!("{:.1}x at {:.2}%", out.report.ratio, 100.0 * out.report.accuracy_after);
//! # Ok(())
//! # }
//! ```

mod prune_stage;
mod share_stage;

use std::collections::BTreeMap;
use std::time::Instant;

use nn::io::native::ModelRecord;
use nn::trainer::Progress;
use nn::{Dataset, Model, Result};
use serde::Serialize;

use crate::recipe::{INPUT_TEACHER, Recipe, Stage, Teacher};
use crate::report::{self, CompressReport};

pub use prune_stage::{DropoutRow, FilterRow, PruneDetail};
pub use share_stage::ShareDetail;

/// Layers at or below this density are stored sparse (relative index plus values) when no
/// codebook covers them; above it the dense form is smaller.
pub const SPARSE_AT_MOST: f64 = 0.75;

/// Training and test images of a run.
pub struct Data<'a> {
    /// Retraining images.
    pub train: &'a Dataset,
    /// Accuracy is measured on all of these.
    pub test: &'a Dataset,
}

/// What a caller sees of a run: stage boundaries, training progress, notes. Every method
/// has a no-op default.
pub trait Observer {
    /// Stage `index` begins; it will take about `steps` training steps (0: none).
    fn stage_started(&mut self, _index: usize, _stage: &Stage, _steps: u64) {}
    /// One training step or epoch end of the running stage.
    fn progress(&mut self, _p: &Progress) {}
    /// Stage finished, measured.
    fn stage_finished(&mut self, _report: &StageReport) {}
    /// A remark worth a line in the log (layers skipped, sensitivity choices).
    fn note(&mut self, _message: &str) {}
}

/// An [`Observer`] that ignores everything.
pub struct Quiet;

impl Observer for Quiet {}

/// One stage's outcome, measured on the model as it would be written after the stage.
#[derive(Clone, Debug, Serialize)]
pub struct StageReport {
    /// Position in the recipe.
    pub index: usize,
    /// The stage, described.
    pub stage: String,
    /// Test accuracy after the stage (fraction).
    pub accuracy: f64,
    /// Bytes of the container if written now.
    pub file_bytes: u64,
    /// Dense f32 bytes of the input model over `file_bytes`.
    pub ratio: f64,
    /// Nonzero parameters.
    pub nonzero_params: usize,
    /// Multiply-accumulates per image of the stored form.
    pub macs: u64,
    /// Wall-clock seconds of the stage.
    pub seconds: f64,
    /// What the stage did per layer.
    pub detail: StageDetail,
}

/// Per-layer outcome of a stage.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum StageDetail {
    /// A pruning stage.
    Prune(PruneDetail),
    /// A sharing stage.
    Share(ShareDetail),
}

/// The result of [`Compressor::finish`].
pub struct Compressed {
    /// The model as read back from `bytes`.
    pub model: Model,
    /// The container image to write.
    pub bytes: Vec<u8>,
    /// Everything measured.
    pub report: CompressReport,
}

/// A recipe running on one model.
pub struct Compressor {
    model: Model,
    input: ModelRecord,
    recipe: Recipe,
    seed: u64,
    source: String,
    source_hash: String,
    accuracy_before: Option<f64>,
    share: Option<(share::ModelShare, share::SharedForms)>,
    stages: Vec<StageReport>,
    started: Instant,
}

impl Compressor {
    /// Prepares `model` (read from `source`, which is hashed into the metadata) for `recipe`.
    /// Compressed layers of the input (a pruned `.slim`) go back to dense layers holding their
    /// zeros, so stages see one form.
    pub fn new(mut model: Model, recipe: Recipe, seed: u64, source: &str) -> Result<Self> {
        recipe.validate(&recipe.name)?;
        densify(&mut model)?;
        let source_hash = match std::fs::read(source) {
            Ok(bytes) => format!("fnv1a64:{:016x}", fnv1a64(&bytes)),
            Err(_) => "unknown (not a file)".into(),
        };
        Ok(Self {
            input: ModelRecord::from_model(&model, BTreeMap::new())?,
            model,
            recipe,
            seed,
            source: source.into(),
            source_hash,
            accuracy_before: None,
            share: None,
            stages: Vec::new(),
            started: Instant::now(),
        })
    }

    /// The working model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Test accuracy of the input model (measured once, on `data.test`).
    pub fn accuracy_before(&mut self, data: &Data) -> Result<f64> {
        if let Some(a) = self.accuracy_before {
            return Ok(a);
        }
        let mut m = self.input_model()?;
        let a = nn::metrics::evaluate(&mut m, data.test, 256)?.accuracy;
        self.accuracy_before = Some(a);
        Ok(a)
    }

    /// A fresh copy of the input model.
    pub fn input_model(&self) -> Result<Model> {
        self.input.clone().into_model_with(&crate::registry())
    }

    /// Runs every stage of the recipe.
    pub fn run_stages(&mut self, data: &Data, observer: &mut dyn Observer) -> Result<()> {
        self.accuracy_before(data)?;
        for i in 0..self.recipe.stages.len() {
            self.run_stage(i, data, observer)?;
        }
        Ok(())
    }

    fn run_stage(&mut self, index: usize, data: &Data, observer: &mut dyn Observer) -> Result<()> {
        // `new` validated the recipe: a share stage, if any, is the last.
        let stage = self.recipe.stages[index].clone();
        let t0 = Instant::now();
        let detail = match &stage {
            Stage::Prune(p) => {
                observer.stage_started(index, &stage, self.steps(&p.retrain, data));
                let teacher = p.teacher.clone();
                let input = &self.input;
                let mut objective = objective_factory(teacher, input, p.retrain.augment);
                StageDetail::Prune(prune_stage::run(
                    &mut self.model,
                    p,
                    self.seed,
                    data,
                    &mut objective,
                    observer,
                )?)
            }
            Stage::Share(s) => {
                observer.stage_started(index, &stage, self.steps(&s.finetune, data));
                let objective =
                    recovery_objective(s.teacher.as_ref(), &self.input, s.finetune.augment)?;
                let (detail, shared) =
                    share_stage::run(&mut self.model, s, self.seed, data, objective, observer)?;
                self.share = Some(shared);
                StageDetail::Share(detail)
            }
        };
        let mut stored = self.stored_copy()?;
        let accuracy = nn::metrics::evaluate(&mut stored, data.test, 256)?.accuracy;
        let file_bytes = self.encode(&stored, BTreeMap::new())?.len() as u64;
        let report = StageReport {
            index,
            stage: stage.describe(),
            accuracy,
            file_bytes,
            ratio: self.dense_bytes() as f64 / file_bytes.max(1) as f64,
            nonzero_params: nonzero_params(&self.model),
            macs: stored.macs_per_sample()?,
            seconds: t0.elapsed().as_secs_f64(),
            detail,
        };
        observer.stage_finished(&report);
        self.stages.push(report);
        Ok(())
    }

    /// Training steps `retrain` takes over `data.train`.
    fn steps(&self, retrain: &crate::recipe::Retrain, data: &Data) -> u64 {
        (retrain.config(self.seed).steps_per_epoch(data.train.len()) * retrain.epochs) as u64
    }

    /// 4 bytes per parameter of the input model.
    pub fn dense_bytes(&self) -> u64 {
        4 * self
            .input
            .layers
            .iter()
            .map(|l| l.tensors.iter().map(|(_, t)| t.numel() as u64).sum::<u64>())
            .sum::<u64>()
    }

    /// The working model in its stored form, leaving the working model as it is.
    fn stored_copy(&self) -> Result<Model> {
        let mut m = copy(&self.model)?;
        to_stored_form(&mut m, self.share.as_ref())?;
        Ok(m)
    }

    fn encode(&self, model: &Model, metadata: BTreeMap<String, String>) -> Result<Vec<u8>> {
        let record = ModelRecord::from_model(model, metadata)?;
        crate::container::encode(
            &record,
            &crate::container::WriteOptions {
                huffman: self.recipe.huffman,
            },
        )
    }

    /// The stored form of the working model as a container image, read back and evaluated
    /// (the accuracy the report states is the accuracy of the file), with the per-layer table
    /// and energy estimate.
    pub fn finish(mut self, data: &Data) -> Result<Compressed> {
        let accuracy_before = self.accuracy_before(data)?;
        let stored = self.stored_copy()?;
        let mut metadata = BTreeMap::new();
        metadata.insert(
            "recipe".into(),
            serde_json::to_string(&self.recipe).unwrap_or_default(),
        );
        metadata.insert("source_hash".into(), self.source_hash.clone());
        metadata.insert("accuracy_before".into(), format!("{accuracy_before}"));
        // The accuracy of the image itself is only known after reading it back; it is
        // measured on a first image, then written into the metadata of the final one (the
        // layers are identical, so the model read back is the same).
        let first = self.encode(&stored, metadata.clone())?;
        let mut model = crate::container::decode(&first, "the written image")?
            .into_model_with(&crate::registry())?;
        let accuracy_after = nn::metrics::evaluate(&mut model, data.test, 256)?.accuracy;
        metadata.insert("accuracy".into(), format!("{accuracy_after}"));
        let bytes = self.encode(&stored, metadata)?;
        let input = self.input_model()?;
        let layers = report::layer_rows(&input, &self.model, &model, &bytes)?;
        let dense_bytes = self.dense_bytes();
        let report = CompressReport {
            recipe: self.recipe.clone(),
            source: self.source.clone(),
            source_hash: self.source_hash.clone(),
            accuracy_before,
            accuracy_after,
            dense_bytes,
            file_bytes: bytes.len() as u64,
            ratio: dense_bytes as f64 / bytes.len().max(1) as f64,
            params: input.param_count(),
            nonzero_params: nonzero_params(&self.model),
            macs_before: input.macs_per_sample()?,
            macs_after: model.macs_per_sample()?,
            energy: report::energy::estimate(&input, dense_bytes, &model, bytes.len() as u64)?,
            stages: std::mem::take(&mut self.stages),
            layers,
            seconds: self.started.elapsed().as_secs_f64(),
        };
        Ok(Compressed {
            model,
            bytes,
            report,
        })
    }
}

/// The retraining objective of a stage: distillation from its teacher (built afresh for each
/// retraining run; its logits cached per image unless the images are augmented), else the
/// labels alone.
fn objective_factory<'a>(
    teacher: Option<Teacher>,
    input: &'a ModelRecord,
    augment: bool,
) -> impl FnMut() -> Result<Box<dyn nn::trainer::Objective>> + 'a {
    move || recovery_objective(teacher.as_ref(), input, augment)
}

/// The objective of a recovery stage (retraining, fine-tuning) after a technique changed the
/// model `input` describes: distillation from `teacher` (the model file it names, or `input`
/// itself for [`INPUT_TEACHER`]; its logits cached per image unless `augment`), else the
/// labels alone. Every command with a `--teacher` recovery option builds its objective here.
///
/// Errors: the teacher cannot be loaded, or its parameters are invalid.
pub fn recovery_objective(
    teacher: Option<&Teacher>,
    input: &ModelRecord,
    augment: bool,
) -> Result<Box<dyn nn::trainer::Objective>> {
    Ok(match teacher {
        Some(t) => {
            let model = if t.model == INPUT_TEACHER {
                input.clone().into_model_with(&crate::registry())?
            } else {
                crate::load(&t.model, None)?
            };
            Box::new(distill::Distillation::new(model, t.params())?.caching(!augment))
        }
        None => Box::new(nn::trainer::CrossEntropy),
    })
}

/// Turns the working model into its stored form: the shared layers of `share` (sparse +
/// shared below its density), else sparse layers where a layer is at most
/// [`SPARSE_AT_MOST`] dense.
pub fn to_stored_form(
    model: &mut Model,
    share: Option<&(share::ModelShare, share::SharedForms)>,
) -> Result<()> {
    match share {
        Some((s, forms)) => {
            share::to_shared_layers_with(model, s, forms)?;
        }
        None => {
            prune::sparsify(model, SPARSE_AT_MOST)?;
        }
    }
    Ok(())
}

/// Every compressed layer back to its dense twin: sparse layers to dense ones holding their
/// zeros, shared layers to the weights their codes stand for. What a recipe starts from (so a
/// pruned input can be pruned further or shared: code 0 stays the pruned zero), and what
/// `slimnet export --densify` writes. Returns the layers rewritten.
pub fn densify(model: &mut Model) -> Result<usize> {
    model.rewrite(&mut |_, layer| {
        let any = layer.as_any();
        let dense: Box<dyn nn::Layer> = if let Some(s) = any.downcast_ref::<prune::SparseLinear>() {
            Box::new(s.to_linear()?)
        } else if let Some(s) = any.downcast_ref::<prune::SparseConv2d>() {
            Box::new(s.to_conv2d()?)
        } else if let Some(s) = any.downcast_ref::<share::SharedLinear>() {
            Box::new(s.to_linear()?)
        } else if let Some(s) = any.downcast_ref::<share::SharedConv2d>() {
            Box::new(s.to_conv2d()?)
        } else if let Some(s) = any.downcast_ref::<share::SparseSharedLinear>() {
            Box::new(s.to_linear()?)
        } else if let Some(s) = any.downcast_ref::<share::SparseSharedConv2d>() {
            Box::new(s.to_conv2d()?)
        } else {
            return Ok(None);
        };
        Ok(Some(dense))
    })
}

/// A copy of `model` (through its record: layers are not `Clone`).
pub fn copy(model: &Model) -> Result<Model> {
    ModelRecord::from_model(model, BTreeMap::new())?.into_model_with(&crate::registry())
}

/// Nonzero parameters (weights and biases) of `model`.
pub fn nonzero_params(model: &Model) -> usize {
    model
        .named_params()
        .iter()
        .map(|(_, p)| p.value.data().iter().filter(|v| **v != 0.0).count())
        .sum()
}

/// 64-bit FNV-1a, the source model's fingerprint in the metadata.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests;
