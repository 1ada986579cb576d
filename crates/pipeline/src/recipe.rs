//! Recipes: a compression pipeline as data, a list of stages run in order (JSON or TOML),
//! with built-in presets.
//!
//! A stage names a technique and its settings; every setting has the default a user of
//! Deep Compression would expect, so a recipe file lists only what it changes:
//!
//! ```
//! let recipe = pipeline::recipe::Recipe::from_toml(r#"
//!     name = "mine"
//!     [[stages]]
//!     stage = "prune"
//!     method = "global"
//!     ratio = 10.0
//!     [stages.retrain]
//!     epochs = 5
//!     [[stages]]
//!     stage = "share"
//!     bits_fc = 4
//! "#, "mine.toml").unwrap();
//! assert_eq!(recipe.stages.len(), 2);
//! assert_eq!(recipe, pipeline::recipe::Recipe::from_json(&recipe.to_json(), "x").unwrap());
//! ```
//!
//! [`preset`] holds the built-in recipes (`deep-compression`; `int8`, `xnor`, `low-rank` and
//! `distill` join as those crates land).

use std::path::Path;

use nn::{NnError, Result};
use serde::{Deserialize, Serialize};

/// A compression recipe: stages applied in order, then the container written with
/// Huffman-coded payloads (unless `huffman` is false).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Name, recorded in the written file's metadata.
    pub name: String,
    /// The stages, in order.
    pub stages: Vec<Stage>,
    /// Huffman-code the container's integer payloads where smaller (Deep Compression's last
    /// stage). Default true.
    #[serde(default = "yes")]
    pub huffman: bool,
}

fn yes() -> bool {
    true
}

/// One stage of a recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "kebab-case")]
pub enum Stage {
    /// Pruning with retraining (prune crate).
    Prune(PruneStage),
    /// k-means weight sharing with centroid fine-tuning (share crate).
    Share(ShareStage),
}

impl Stage {
    /// A one-line description, for logs and reports.
    pub fn describe(&self) -> String {
        match self {
            Stage::Prune(p) => {
                let target = match (p.ratio, p.sparsity, p.quality) {
                    (Some(r), _, _) => format!(" {r}x"),
                    (_, Some(s), _) => format!(" sparsity {s}"),
                    (_, _, Some(q)) => format!(" quality {q}"),
                    _ => String::new(),
                };
                let teacher = p
                    .teacher
                    .as_ref()
                    .map(|t| format!(", distilled from {}", t.model))
                    .unwrap_or_default();
                format!(
                    "prune {}{target} ({}, {} epochs, lr {}{teacher})",
                    p.method.name(),
                    p.schedule.name(),
                    p.retrain.epochs,
                    p.retrain.lr
                )
            }
            Stage::Share(s) => format!(
                "share {} bits fc / {} bits conv ({} init, {} fine-tuning epochs, lr {}{})",
                s.bits_fc,
                s.bits_conv,
                s.init.name(),
                s.finetune.epochs,
                s.finetune.lr,
                s.teacher
                    .as_ref()
                    .map(|t| format!(", distilled from {}", t.model))
                    .unwrap_or_default()
            ),
        }
    }
}

/// How weights are chosen for removal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PruneMethod {
    /// One magnitude threshold over all layers.
    #[default]
    Global,
    /// Per layer: threshold `quality * std(W)` (Han et al. 2015), or the same sparsity in
    /// every layer.
    LayerStd,
    /// Per-layer sparsities from a sensitivity scan on training images (one shared
    /// accuracy-drop budget, set to reach the target ratio).
    Sensitivity,
    /// L1-norm filter pruning (Li et al. 2017): a smaller dense model; `ratio` is the MAC
    /// ratio.
    Filters,
    /// N:M semi-structured (`nm`, default 2:4).
    Nm,
}

impl PruneMethod {
    /// The recipe spelling.
    pub fn name(self) -> &'static str {
        match self {
            PruneMethod::Global => "global",
            PruneMethod::LayerStd => "layer-std",
            PruneMethod::Sensitivity => "sensitivity",
            PruneMethod::Filters => "filters",
            PruneMethod::Nm => "nm",
        }
    }
}

/// When weights are removed during retraining.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PruneSchedule {
    /// Everything at once, then retrain.
    OneShot,
    /// `rounds` prune/retrain rounds with geometrically growing sparsity.
    Iterative,
    /// Zhu and Gupta's polynomial schedule over the retraining.
    #[default]
    Agp,
}

impl PruneSchedule {
    /// The recipe spelling.
    pub fn name(self) -> &'static str {
        match self {
            PruneSchedule::OneShot => "one-shot",
            PruneSchedule::Iterative => "iterative",
            PruneSchedule::Agp => "agp",
        }
    }
}

/// Learning-rate schedule of a retraining.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LrSchedule {
    /// From `lr` down to 0 over the whole retraining.
    #[default]
    Cosine,
    /// `lr` throughout.
    Constant,
}

/// A retraining run (Adam, batch 64).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retrain {
    /// Epochs over the training set (the whole budget of a schedule).
    pub epochs: usize,
    /// Adam's learning rate.
    pub lr: f32,
    /// Its schedule.
    pub lr_schedule: LrSchedule,
    /// Random flips and 2-pixel shifts of the training images.
    pub augment: bool,
    /// Samples per step.
    pub batch_size: usize,
}

impl Default for Retrain {
    fn default() -> Self {
        Self {
            epochs: 2,
            lr: 1e-4,
            lr_schedule: LrSchedule::Cosine,
            augment: false,
            batch_size: 64,
        }
    }
}

impl Retrain {
    /// The Trainer's configuration for this retraining.
    pub fn config(&self, seed: u64) -> nn::trainer::TrainConfig {
        nn::trainer::TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            optimizer: nn::optim::OptimizerConfig::adam(self.lr),
            schedule: match self.lr_schedule {
                LrSchedule::Cosine => nn::schedule::Schedule::Cosine {
                    warmup_steps: 0,
                    min_lr: 0.0,
                },
                LrSchedule::Constant => nn::schedule::Schedule::Constant,
            },
            seed,
            augment: self.augment.then(nn::data::Augment::default),
            ..nn::trainer::TrainConfig::default()
        }
    }
}

/// Retraining from a teacher's soft targets (Hinton et al. 2015).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Teacher {
    /// `input` (the model the recipe started from) or a model file.
    pub model: String,
    /// Softmax temperature.
    #[serde(default = "default_temperature")]
    pub temperature: f32,
    /// Weight of the soft targets against the labels.
    #[serde(default = "default_alpha")]
    pub alpha: f32,
}

fn default_temperature() -> f32 {
    4.0
}

fn default_alpha() -> f32 {
    0.9
}

impl Teacher {
    /// The recipe's input model as teacher, at the default temperature and weight.
    pub fn input() -> Self {
        Self {
            model: INPUT_TEACHER.into(),
            temperature: default_temperature(),
            alpha: default_alpha(),
        }
    }

    /// The distillation parameters.
    pub fn params(&self) -> distill::DistillParams {
        distill::DistillParams {
            temperature: self.temperature,
            alpha: self.alpha,
        }
    }
}

/// The teacher name meaning the recipe's input model.
pub const INPUT_TEACHER: &str = "input";

/// A pruning stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneStage {
    /// Criterion.
    #[serde(default)]
    pub method: PruneMethod,
    /// Compression ratio of the weights (sparsity `1 - 1/ratio`; for filters, the MAC ratio).
    #[serde(default)]
    pub ratio: Option<f64>,
    /// Fraction of weights to remove (instead of `ratio`).
    #[serde(default)]
    pub sparsity: Option<f64>,
    /// Quality parameter of `layer-std` (threshold `quality * std(W)`).
    #[serde(default)]
    pub quality: Option<f64>,
    /// The N:M pattern of `nm`.
    #[serde(default = "default_nm")]
    pub nm: String,
    /// Schedule.
    #[serde(default)]
    pub schedule: PruneSchedule,
    /// Rounds of the iterative schedule.
    #[serde(default = "default_rounds")]
    pub rounds: usize,
    /// The retraining.
    #[serde(default)]
    pub retrain: Retrain,
    /// Distil from a teacher while retraining.
    #[serde(default)]
    pub teacher: Option<Teacher>,
}

fn default_nm() -> String {
    "2:4".into()
}

fn default_rounds() -> usize {
    3
}

impl Default for PruneStage {
    fn default() -> Self {
        Self {
            method: PruneMethod::Global,
            ratio: None,
            sparsity: None,
            quality: None,
            nm: default_nm(),
            schedule: PruneSchedule::Agp,
            rounds: default_rounds(),
            retrain: Retrain::default(),
            teacher: None,
        }
    }
}

/// Centroid initialisation of a sharing stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ShareInit {
    /// Evenly spaced between min and max (Han et al.'s best).
    #[default]
    Linear,
    /// Evenly spaced in the CDF.
    Density,
    /// Forgy (seeded).
    Random,
    /// k-means++ (seeded).
    #[serde(rename = "kmeans++")]
    KMeansPlusPlus,
}

impl ShareInit {
    /// The recipe spelling.
    pub fn name(self) -> &'static str {
        match self {
            ShareInit::Linear => "linear",
            ShareInit::Density => "density",
            ShareInit::Random => "random",
            ShareInit::KMeansPlusPlus => "kmeans++",
        }
    }

    /// share's initialisation, seeded.
    pub fn init(self, seed: u64) -> share::Init {
        match self {
            ShareInit::Linear => share::Init::Linear,
            ShareInit::Density => share::Init::Density,
            ShareInit::Random => share::Init::Random { seed },
            ShareInit::KMeansPlusPlus => share::Init::KMeansPlusPlus { seed },
        }
    }
}

/// A weight-sharing stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareStage {
    /// Code width of fully connected layers (1..=8).
    #[serde(default = "default_bits_fc")]
    pub bits_fc: u32,
    /// Code width of convolutions (1..=8).
    #[serde(default = "default_bits_conv")]
    pub bits_conv: u32,
    /// Centroid initialisation.
    #[serde(default)]
    pub init: ShareInit,
    /// Centroid fine-tuning (0 epochs: none).
    #[serde(default = "default_finetune")]
    pub finetune: Retrain,
    /// Layers with fewer nonzero weights than this fraction are stored sparse + shared.
    #[serde(default = "default_sparse_below")]
    pub sparse_below: f64,
    /// Fine-tune the centroids from this teacher's soft targets instead of the labels alone.
    #[serde(default)]
    pub teacher: Option<Teacher>,
}

fn default_bits_fc() -> u32 {
    5
}

fn default_bits_conv() -> u32 {
    8
}

fn default_finetune() -> Retrain {
    Retrain {
        epochs: 1,
        ..Retrain::default()
    }
}

fn default_sparse_below() -> f64 {
    0.5
}

impl Default for ShareStage {
    fn default() -> Self {
        Self {
            bits_fc: default_bits_fc(),
            bits_conv: default_bits_conv(),
            init: ShareInit::Linear,
            finetune: default_finetune(),
            sparse_below: default_sparse_below(),
            teacher: None,
        }
    }
}

/// Names of the built-in recipes.
pub const PRESETS: &[&str] = &["deep-compression", "deep-compression-labels", "prune"];

/// A built-in recipe:
///
/// - `deep-compression`: global magnitude pruning to 14x on Zhu and Gupta's schedule, 30
///   epochs retrained from the input model's soft targets (Adam 1e-3, cosine), then k-means
///   sharing at 5 bits for fc and 6 for conv layers with one epoch of centroid fine-tuning,
///   then Huffman coding (docs/BENCHMARKS.md measures why each choice).
/// - `deep-compression-labels`: the same retrained from the labels alone (Han et al.'s
///   recipe without distillation).
/// - `prune`: the pruning stage alone.
pub fn preset(name: &str) -> Option<Recipe> {
    let prune = PruneStage {
        method: PruneMethod::Global,
        ratio: Some(14.0),
        schedule: PruneSchedule::Agp,
        retrain: Retrain {
            epochs: 30,
            lr: 1e-3,
            ..Retrain::default()
        },
        teacher: Some(Teacher::input()),
        ..PruneStage::default()
    };
    // 6-bit conv codebooks: lenet5's conv-bits table (docs/BENCHMARKS.md) loses nothing at 6
    // bits, and an 8-bit codebook (256 f32 centroids) outweighs the codes of a small pruned
    // conv layer (conv1 keeps about 200 weights).
    let share = Stage::Share(ShareStage {
        bits_conv: 6,
        ..ShareStage::default()
    });
    let stages = match name {
        "deep-compression" => vec![Stage::Prune(prune), share],
        "deep-compression-labels" => vec![
            Stage::Prune(PruneStage {
                teacher: None,
                ..prune
            }),
            share,
        ],
        "prune" => vec![Stage::Prune(prune)],
        _ => return None,
    };
    Some(Recipe {
        name: name.into(),
        stages,
        huffman: true,
    })
}

fn recipe_error(source: &str, reason: impl std::fmt::Display) -> NnError {
    NnError::Config(format!("recipe {source}: {reason}"))
}

impl Recipe {
    /// Parses a JSON recipe; `source` names it in errors.
    pub fn from_json(text: &str, source: &str) -> Result<Self> {
        let r: Self = serde_json::from_str(text).map_err(|e| recipe_error(source, e))?;
        r.validate(source)?;
        Ok(r)
    }

    /// Parses a TOML recipe; `source` names it in errors.
    pub fn from_toml(text: &str, source: &str) -> Result<Self> {
        let r: Self = toml::from_str(text).map_err(|e| recipe_error(source, e))?;
        r.validate(source)?;
        Ok(r)
    }

    /// The recipe as pretty JSON (what the container's metadata records).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// A preset by name, else a `.toml` or `.json` file.
    pub fn resolve(name_or_path: &str) -> Result<Self> {
        if let Some(r) = preset(name_or_path) {
            return Ok(r);
        }
        let path = Path::new(name_or_path);
        if !path.exists() {
            return Err(NnError::Config(format!(
                "recipe {name_or_path:?} is neither a preset ({}) nor a file",
                PRESETS.join(", ")
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| NnError::io(path, e))?;
        if path.extension().is_some_and(|e| e == "toml") {
            Self::from_toml(&text, name_or_path)
        } else {
            Self::from_json(&text, name_or_path)
        }
    }

    /// Checks every setting's range, naming the stage.
    pub fn validate(&self, source: &str) -> Result<()> {
        if self.stages.is_empty() {
            return Err(recipe_error(source, "no stages"));
        }
        for (i, s) in self.stages.iter().enumerate() {
            let bad = |reason: String| recipe_error(source, format!("stage {i}: {reason}"));
            match s {
                Stage::Prune(p) => {
                    let targets = [p.ratio.is_some(), p.sparsity.is_some(), p.quality.is_some()]
                        .iter()
                        .filter(|&&t| t)
                        .count();
                    if targets > 1 {
                        return Err(bad("give one of ratio, sparsity and quality".into()));
                    }
                    if let Some(r) = p.ratio
                        && !(r.is_finite() && r >= 1.0)
                    {
                        return Err(bad(format!("ratio {r} must be >= 1")));
                    }
                    if let Some(s) = p.sparsity
                        && !(0.0..1.0).contains(&s)
                    {
                        return Err(bad(format!("sparsity {s} must be in [0, 1)")));
                    }
                    if p.quality.is_some() && p.method != PruneMethod::LayerStd {
                        return Err(bad("quality is for method layer-std".into()));
                    }
                    if matches!(p.method, PruneMethod::Global | PruneMethod::Sensitivity)
                        && targets == 0
                    {
                        return Err(bad(format!(
                            "method {} needs ratio or sparsity",
                            p.method.name()
                        )));
                    }
                    if p.method == PruneMethod::Nm {
                        p.nm.parse::<prune::NmPattern>()
                            .map_err(|e| bad(e.to_string()))?;
                    }
                    if p.schedule == PruneSchedule::Iterative && p.rounds == 0 {
                        return Err(bad("iterative schedule with 0 rounds".into()));
                    }
                    check_retrain(&p.retrain).map_err(bad)?;
                    if let Some(t) = &p.teacher {
                        if matches!(p.method, PruneMethod::Filters | PruneMethod::Nm) {
                            return Err(bad(format!(
                                "method {} retrains from the labels; a teacher is for global, \
                                 layer-std and sensitivity",
                                p.method.name()
                            )));
                        }
                        t.params().validate().map_err(|e| bad(e.to_string()))?;
                    }
                }
                Stage::Share(s) => {
                    if i + 1 < self.stages.len() {
                        return Err(recipe_error(
                            source,
                            format!(
                                "stage {} follows a share stage; sharing must come last",
                                i + 1
                            ),
                        ));
                    }
                    for (what, b) in [("bits_fc", s.bits_fc), ("bits_conv", s.bits_conv)] {
                        if !(1..=8).contains(&b) {
                            return Err(bad(format!("{what} {b} must be in 1..=8")));
                        }
                    }
                    if !(0.0..=1.0).contains(&s.sparse_below) {
                        return Err(bad(format!(
                            "sparse_below {} must be in [0, 1]",
                            s.sparse_below
                        )));
                    }
                    if let Some(t) = &s.teacher {
                        t.params().validate().map_err(|e| bad(e.to_string()))?;
                    }
                    check_retrain(&s.finetune).map_err(bad)?;
                }
            }
        }
        Ok(())
    }
}

fn check_retrain(r: &Retrain) -> std::result::Result<(), String> {
    if !(r.lr.is_finite() && r.lr > 0.0) {
        return Err(format!("learning rate {} must be finite and > 0", r.lr));
    }
    if r.batch_size == 0 {
        return Err("batch size 0".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_round_trip_through_json_and_toml() {
        for name in PRESETS {
            let r = preset(name).unwrap();
            r.validate(name).unwrap();
            assert_eq!(Recipe::from_json(&r.to_json(), name).unwrap(), r);
            let toml = toml::to_string(&r).unwrap();
            assert_eq!(Recipe::from_toml(&toml, name).unwrap(), r, "{toml}");
        }
        assert!(preset("no-such").is_none());
    }

    #[test]
    fn defaults_fill_what_a_recipe_leaves_out() {
        let r = Recipe::from_json(
            r#"{"name":"x","stages":[{"stage":"prune","ratio":4},{"stage":"share"}]}"#,
            "x.json",
        )
        .unwrap();
        assert!(r.huffman);
        let Stage::Prune(p) = &r.stages[0] else {
            panic!()
        };
        assert_eq!(p.method, PruneMethod::Global);
        assert_eq!(p.schedule, PruneSchedule::Agp);
        assert_eq!(p.retrain, Retrain::default());
        assert_eq!(r.stages[1], Stage::Share(ShareStage::default()));
    }

    #[test]
    fn bad_recipes_name_the_stage_and_setting() {
        let cases = [
            (r#"{"name":"x","stages":[]}"#, "no stages"),
            (
                r#"{"name":"x","stages":[{"stage":"prune"}]}"#,
                "stage 0: method global needs ratio",
            ),
            (
                r#"{"name":"x","stages":[{"stage":"share","bits_fc":9}]}"#,
                "stage 0: bits_fc 9",
            ),
            (
                r#"{"name":"x","stages":[{"stage":"prune","ratio":0.5}]}"#,
                "ratio 0.5",
            ),
            (
                r#"{"name":"x","stages":[{"stage":"prune","ratio":2,"sparsity":0.5}]}"#,
                "one of ratio",
            ),
            (
                r#"{"name":"x","stages":[{"stage":"prune","ratio":2,"retrain":{"lr":-1}}]}"#,
                "learning rate -1",
            ),
            (
                r#"{"name":"x","stages":[{"stage":"prune","method":"nm","nm":"5:4"}]}"#,
                "stage 0",
            ),
            (
                r#"{"name":"x","stages":[{"stage":"quantum"}]}"#,
                "unknown variant `quantum`",
            ),
            (
                r#"{"name":"x","stages":[{"stage":"share","bitz":3}]}"#,
                "unknown field `bitz`",
            ),
        ];
        for (text, want) in cases {
            let e = Recipe::from_json(text, "r.json").unwrap_err().to_string();
            assert!(e.contains("r.json") && e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn resolve_reads_presets_and_files() {
        assert_eq!(
            Recipe::resolve("deep-compression").unwrap(),
            preset("deep-compression").unwrap()
        );
        let dir = std::env::temp_dir().join(format!("slimnet-recipe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let r = preset("prune").unwrap();
        let t = dir.join("r.toml");
        std::fs::write(&t, toml::to_string(&r).unwrap()).unwrap();
        assert_eq!(Recipe::resolve(t.to_str().unwrap()).unwrap(), r);
        let j = dir.join("r.json");
        std::fs::write(&j, r.to_json()).unwrap();
        assert_eq!(Recipe::resolve(j.to_str().unwrap()).unwrap(), r);
        let e = Recipe::resolve("nope").unwrap_err().to_string();
        assert!(e.contains("neither a preset"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
