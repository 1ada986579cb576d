//! One module per subcommand, plus the options they share.

pub mod bench;
pub mod binarize;
pub mod compress;
pub mod decompose;
pub mod distill;
pub mod eval;
pub mod export;
pub mod import;
pub mod inspect;
pub mod prune;
pub mod quantize;
pub mod run;
pub mod sensitivity;
pub mod share;
pub mod train;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};

/// Options shared by every command that reads a model.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// The model: native `.model`, `.onnx`, or `.safetensors` (with --arch).
    pub model: PathBuf,
    /// Zoo architecture the tensors of a safetensors file belong to (lenet300, lenet5, cnn-teacher).
    #[arg(long)]
    pub arch: Option<String>,
}

impl ModelArgs {
    /// Loads the model, whatever its format.
    pub fn load(&self) -> Result<nn::Model> {
        load_model(&self.model, self.arch.as_deref())
    }
}

/// The global `--allow-nonfinite`.
static ALLOW_NONFINITE: AtomicBool = AtomicBool::new(false);

/// Sets the global `--allow-nonfinite`.
pub fn set_allow_nonfinite(allow: bool) {
    ALLOW_NONFINITE.store(allow, Ordering::Relaxed);
}

/// A non-finite value found by `check`: an error, or with `--allow-nonfinite` a warning.
pub fn refuse_nonfinite(check: nn::Result<()>) -> Result<()> {
    match check {
        Err(e @ nn::NnError::NonFinite { .. }) if ALLOW_NONFINITE.load(Ordering::Relaxed) => {
            eprintln!("warning: {e}");
            Ok(())
        }
        other => Ok(other?),
    }
}

/// Model files from this size on get a progress line on stderr while they load.
const LARGE_MODEL_BYTES: u64 = 64 << 20;

/// Loads a model in any supported format, refusing NaN or infinite weights (see
/// [`refuse_nonfinite`]).
pub fn load_model(path: &Path, arch: Option<&str>) -> Result<nn::Model> {
    // A large model (an import of 100 MB takes seconds) says what it is doing on stderr.
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    let large = size >= LARGE_MODEL_BYTES;
    let started = std::time::Instant::now();
    if large {
        crate::note!("loading {} ({} MB) ...", path.display(), size >> 20);
    }
    // nn's errors name the file already: the context says only what was being done.
    let model = pipeline::load(path, arch).context("loading model")?;
    if large {
        crate::note!(
            "loaded {} ({} parameters) in {:.1} s",
            path.display(),
            model.param_count(),
            started.elapsed().as_secs_f64()
        );
    }
    refuse_nonfinite(nn::finite::check_model(&model))
        .with_context(|| format!("loading model {}", path.display()))?;
    Ok(model)
}

/// Checks before any work that `output` can be written and is none of `inputs`
/// (`nn::io::atomic::check_writable`).
pub fn check_output(output: &Path, inputs: &[&Path]) -> Result<()> {
    Ok(nn::io::atomic::check_writable(output, inputs)?)
}

/// A 64-bit FNV-1a fingerprint of the teacher files' bytes, in order: which teachers a
/// logits cache belongs to, which inputs a checkpoint's run read.
pub fn fingerprint(teachers: &[PathBuf]) -> Result<u64> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for t in teachers {
        let bytes = std::fs::read(t).with_context(|| format!("reading {}", t.display()))?;
        for b in bytes.iter().chain(b"\0") {
            h = (h ^ *b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    Ok(h)
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// How every command that reads data preprocesses and splits it (interop::data).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct DataOptArgs {
    /// Per-channel normalization applied to every image after loading,
    /// `mean=M1,M2,..:std=S1,S2,..` (default: the model file's `input.normalize` metadata).
    #[arg(long)]
    pub normalize: Option<String>,
    /// Resize every image to HxW, bilinear (default: the model file's `input.resize`).
    #[arg(long)]
    pub resize: Option<String>,
    /// For data holding one set (x/y arrays, a folder of class folders): the fraction held
    /// out as the test set, drawn with --seed (or 1).
    #[arg(long)]
    pub test_split: Option<f64>,
}

impl DataOptArgs {
    /// The loading options: the command line's transform, completed from `model`'s metadata.
    pub fn options(&self, model: Option<&Path>, seed: u64) -> Result<interop::DataOptions> {
        let given = interop::transform::Transform {
            resize: self.resize.as_deref().map(str::parse).transpose()?,
            normalize: self.normalize.as_deref().map(str::parse).transpose()?,
        };
        Ok(interop::DataOptions {
            transform: given.or(model_transform(model)?),
            test_split: self.test_split,
            seed,
            progress: Some(folder_progress),
        })
    }
}

/// An image folder's progress on stderr: a line per tenth of its images (silent with --quiet).
fn folder_progress(p: &interop::image_folder::FolderProgress<'_>) {
    crate::note!(
        "reading {}: {}/{} images",
        p.folder.display(),
        p.done,
        p.total
    );
}

/// The preprocessing stored in a native model file's metadata (none for other formats).
pub fn model_transform(model: Option<&Path>) -> Result<interop::transform::Transform> {
    let native = |p: &&Path| p.extension().is_some_and(|e| e == "model" || e == "slim");
    let Some(path) = model.filter(native) else {
        return Ok(Default::default());
    };
    // The model section alone: not a second copy of a large model's weights.
    let metadata = pipeline::load_metadata(path).context("reading model metadata")?;
    Ok(interop::transform::Transform::from_metadata(&metadata)?)
}

/// The data of `--data` (any interop format), shaped for `model` if given: `(source, train,
/// test)`.
pub fn load_data(
    data: Option<&Path>,
    options: &interop::DataOptions,
    model: Option<&nn::Model>,
) -> Result<(interop::Source, nn::Dataset, nn::Dataset)> {
    let (source, train, test) = interop::load(data, options)?;
    let (train, test) = match model {
        Some(m) => (
            fit_split(train, m, &source, data, Split::Train)?,
            fit_split(test, m, &source, data, Split::Test)?,
        ),
        None => (train, test),
    };
    Ok((source, train, test))
}

/// The test split of `--data`, shaped for `model`.
pub fn load_test_data(
    data: Option<&Path>,
    options: &interop::DataOptions,
    model: &nn::Model,
) -> Result<(interop::Source, nn::Dataset)> {
    let (source, test) = interop::load_test(data, options)?;
    let test = fit_split(test, model, &source, data, Split::Test)?;
    Ok((source, test))
}

pub use nn::data::idx::Split;

/// `d` shaped for `model`'s input, or an error naming the data and both shapes: for a
/// directory of IDX files the images file of `split` (whose shape is the one that does not
/// fit), else the data source. Its class count becomes the model's (the data's largest label
/// may be below the model's last class); a label the model has no class for is an error
/// naming it, its index and the data.
pub fn fit_split(
    d: nn::Dataset,
    model: &nn::Model,
    source: &interop::Source,
    data: Option<&Path>,
    split: Split,
) -> Result<nn::Dataset> {
    let mut name = source.to_string();
    if source.format == interop::Format::Idx && d.sample_shape() != model.input_shape.as_slice() {
        let dir = match data {
            Some(d) => Some(d.to_path_buf()),
            None => nn::data::source::locate(None).ok().map(|s| s.dir),
        };
        if let Some((images, _)) = dir.and_then(|d| nn::data::idx::split_files(&d, split).ok()) {
            name = images.display().to_string();
        }
    }
    let d = interop::transform::fit_to_model(d, &model.input_shape, &name)?;
    with_model_classes(d, model, &name)
}

/// `d` with the class count of `model`'s output (`[K]` logits), when the model has one;
/// an error naming the first label the model has no class for.
fn with_model_classes(d: nn::Dataset, model: &nn::Model, data: &str) -> Result<nn::Dataset> {
    let [classes] = model.output_dims()?[..] else {
        return Ok(d);
    };
    if let Some((i, l)) = d
        .labels
        .iter()
        .enumerate()
        .find(|&(_, &l)| usize::from(l) >= classes)
    {
        bail!(
            "{data}: label {l} of sample {i} has no class in the model, whose output has \
             {classes} classes (0..={})",
            classes.saturating_sub(1)
        );
    }
    if d.classes == classes {
        return Ok(d);
    }
    Ok(nn::Dataset::new(d.images, d.labels, classes)?)
}

/// Options of every command that compresses a model with (re)training on Fashion-MNIST.
#[derive(clap::Args, Debug, Clone)]
pub struct TrainDataArgs {
    /// Train on only the first N training images.
    #[arg(long)]
    pub limit: Option<usize>,
    /// The data: a directory of Fashion-MNIST IDX files (default), a .npz, a .npy pair, a
    /// CIFAR-10 directory or an image folder.
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub data_opts: DataOptArgs,
    /// Seed of shuffling and random initialisations.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Machine-readable output (DESIGN.md § Command line keys).
    #[arg(long)]
    pub json: bool,
}

impl TrainDataArgs {
    /// The training set (first `limit` images) and the test set, saying which data was used.
    pub fn load(&self) -> Result<(nn::Dataset, nn::Dataset)> {
        let opts = self.data_opts.options(None, self.seed)?;
        let (source, train, test) = load_data(self.data.as_deref(), &opts, None)?;
        crate::note!("data: {source}");
        let train = match self.limit {
            Some(n) => train.take(n)?,
            None => train,
        };
        Ok((train, test))
    }
}

/// `--teacher FILE|self [--temperature T] [--alpha A]`: the recovery stage (retraining,
/// fine-tuning) of a compressing command learns from a teacher's soft targets (Hinton et al.
/// 2015) instead of the labels alone.
#[derive(clap::Args, Debug, Clone)]
pub struct TeacherArgs {
    /// Recover from a teacher's soft targets instead of the labels alone: a model file, or
    /// `self` for the input model before the technique.
    #[arg(long)]
    pub teacher: Option<String>,
    /// Distillation temperature (with --teacher).
    #[arg(long, default_value_t = 4.0)]
    pub temperature: f32,
    /// Weight of the soft targets against the labels (with --teacher).
    #[arg(long, default_value_t = 0.9)]
    pub alpha: f32,
}

impl TeacherArgs {
    /// The recipe teacher the options name (`self`: the recipe's input model).
    pub fn teacher(&self) -> Option<pipeline::recipe::Teacher> {
        self.teacher.as_ref().map(|t| pipeline::recipe::Teacher {
            model: if t == "self" {
                pipeline::recipe::INPUT_TEACHER.to_string()
            } else {
                t.clone()
            },
            temperature: self.temperature,
            alpha: self.alpha,
        })
    }

    /// The recovery objective of a command that trains outside a recipe, `input` being the
    /// model before the technique ([`pipeline::compress::recovery_objective`]).
    pub fn objective(
        &self,
        input: &nn::Model,
        augment: bool,
    ) -> Result<Box<dyn nn::trainer::Objective>> {
        let teacher = self.teacher();
        if let Some(t) = &teacher {
            t.params().validate()?;
        }
        let record = nn::io::native::ModelRecord::from_model(input, Default::default())?;
        Ok(pipeline::compress::recovery_objective(
            teacher.as_ref(),
            &record,
            augment,
        )?)
    }
}

/// The input model of a compressing command, measured before the technique.
#[derive(serde::Serialize, Debug)]
pub struct Baseline {
    /// Test accuracy (fraction, all test images).
    pub accuracy: f64,
    /// Bytes of the input file.
    pub file_bytes: u64,
    /// 4 bytes per parameter.
    pub dense_bytes: u64,
}

impl Baseline {
    /// The input file `input` with `params` parameters (4 bytes each when dense), measured at
    /// `accuracy`.
    pub fn of(input: &Path, accuracy: f64, params: usize) -> Result<Self> {
        let file_bytes = std::fs::metadata(input)
            .with_context(|| format!("reading {}", input.display()))?
            .len();
        Ok(Self {
            accuracy,
            file_bytes,
            dense_bytes: 4 * params as u64,
        })
    }
}

/// What every command that writes a model reports (DESIGN.md § Command line).
#[derive(serde::Serialize, Debug)]
pub struct Written {
    /// The file written.
    pub output: String,
    /// Its size in bytes.
    pub file_bytes: u64,
    /// Parameters of the input model.
    pub params: usize,
    /// Nonzero weights and biases of the written model.
    pub nonzero_params: usize,
    /// Multiply-accumulates per image of the written model.
    pub macs: u64,
    /// Test accuracy of the written model.
    pub accuracy: f64,
    /// The input model.
    pub baseline: Baseline,
    /// `baseline.dense_bytes / file_bytes`.
    pub ratio: f64,
}

impl Written {
    /// The report of `model` written to `output` in `file_bytes` bytes at `accuracy`, with
    /// `params` and `nonzero_params` as the command counts them; `ratio` derived from `baseline`.
    pub fn new(
        output: &Path,
        file_bytes: u64,
        model: &nn::Model,
        (params, nonzero_params): (usize, usize),
        accuracy: f64,
        baseline: Baseline,
    ) -> Result<Self> {
        Ok(Self {
            output: output.display().to_string(),
            file_bytes,
            params,
            nonzero_params,
            macs: model.macs_per_sample()?,
            accuracy,
            ratio: baseline.dense_bytes as f64 / file_bytes.max(1) as f64,
            baseline,
        })
    }
}

/// The format a model is written in, chosen by the extension of `-o` (the README's
/// "Output formats"): `.onnx` ONNX, `.safetensors` safetensors, anything else the native
/// `.slim` container (`.slim` and `.model` by name; another extension gets a note).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// The `.slim` container: every layer kind, compressed ones included.
    Native,
    /// ONNX (opset 13): dense layers, and int8 layers as QuantizeLinear/DequantizeLinear.
    Onnx,
    /// safetensors with PyTorch names: dense linear, conv2d and batchnorm2d tensors only.
    Safetensors,
}

impl OutputFormat {
    /// The format `path`'s extension selects.
    pub fn of(path: &Path) -> Self {
        match extension(path).as_str() {
            "onnx" => OutputFormat::Onnx,
            "safetensors" => OutputFormat::Safetensors,
            _ => OutputFormat::Native,
        }
    }

    fn name(self) -> &'static str {
        match self {
            OutputFormat::Native => "the native format",
            OutputFormat::Onnx => "ONNX",
            OutputFormat::Safetensors => "safetensors",
        }
    }

    /// The file image of `model` in this format.
    fn encode(self, model: &nn::Model, metadata: Metadata) -> nn::Result<Vec<u8>> {
        match self {
            OutputFormat::Native => {
                let record = nn::io::native::ModelRecord::from_model(model, metadata)?;
                pipeline::container::encode(&record, &Default::default())
            }
            // Integer layers go out as QDQ (quant::onnx), everything else through nn's exporter.
            OutputFormat::Onnx if model.layers.iter().any(|l| l.kind().starts_with("quant")) => {
                quant::onnx::export_qdq_bytes(model).map_err(nn::NnError::from)
            }
            OutputFormat::Onnx => nn::io::onnx::export_bytes(model),
            OutputFormat::Safetensors => {
                nn::io::safetensors::safetensors_bytes(model, nn::io::safetensors::SaveDtype::F32)
            }
        }
    }
}

/// The lower-case extension of `path` (empty when it has none).
fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// What a command writes: dense layers (every format can hold them) or compressed layers
/// (named, for the error), which only the native format holds.
#[derive(Clone, Copy, Debug)]
pub enum Writes {
    /// Dense layers: the written model can be encoded as the input model can.
    Dense,
    /// Compressed layers (sparse, shared, int8, binary, low-rank ...).
    Compressed(&'static str),
}

/// Checks, before any work, that `output` can be written ([`check_output`]) and that its
/// extension's format can hold what the command `writes`; for a dense output, `input` (the
/// model as loaded, when the command has one) is encoded in that format as a trial, so a
/// compressed input bound for ONNX is refused before training. Returns the format.
pub fn check_model_output(
    output: &Path,
    inputs: &[&Path],
    writes: Writes,
    input: Option<&nn::Model>,
) -> Result<OutputFormat> {
    check_output(output, inputs)?;
    let format = OutputFormat::of(output);
    match (writes, format) {
        (_, OutputFormat::Native) => {
            let ext = extension(output);
            if ext != "slim" && ext != "model" {
                crate::note!(
                    "note: {}: extension {:?} is not .slim, .model, .onnx or .safetensors; \
                     writing the native format",
                    output.display(),
                    ext
                );
            }
        }
        (Writes::Compressed(what), f) => bail!(
            "output {}: this command writes {what}, which {} cannot hold; write .slim (and \
             `slimnet export --densify` for a dense {} copy)",
            output.display(),
            f.name(),
            f.name()
        ),
        (Writes::Dense, f) => {
            if let Some(model) = input {
                f.encode(model, Metadata::new()).map_err(|e| {
                    anyhow::anyhow!(
                        "output {}: the model cannot be written as {}: {e}",
                        output.display(),
                        f.name()
                    )
                })?;
            }
        }
    }
    Ok(format)
}

/// Model metadata (key to value), kept by the native format only.
pub type Metadata = std::collections::BTreeMap<String, String>;

/// Writes `model` in the format `output`'s extension selects ([`OutputFormat`]), atomically;
/// returns the bytes written. The one writer of every command that writes a model; the
/// native format is the `.slim` container, payloads Huffman-coded where smaller.
pub fn save_model(model: &nn::Model, metadata: Metadata, output: &Path) -> Result<u64> {
    let write = || -> nn::Result<u64> {
        let format = OutputFormat::of(output);
        if format == OutputFormat::Native {
            // Streamed, one layer's record at a time: no file image of a large model in memory.
            return pipeline::save(model, metadata, &Default::default(), output);
        }
        let bytes = format.encode(model, metadata)?;
        nn::io::atomic::write_atomic(output, &bytes)?;
        Ok(bytes.len() as u64)
    };
    write().with_context(|| format!("writing {}", output.display()))
}
