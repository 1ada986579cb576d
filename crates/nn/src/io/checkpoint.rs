//! Training checkpoints: the weights, the optimizer state and everything else a resumed run
//! needs to continue bit for bit ([`TrainState`]), with the recipe and the arguments of the
//! run that wrote it.
//!
//! File layout (version 3, all integers little-endian; docs/FORMAT.md § Training checkpoint):
//!
//! | bytes | content |
//! |---|---|
//! | 8 | magic `SLIMCKPT` |
//! | 4 | format version (3; version 2, without `phases`, and 1, without `hooks` either, are read too) |
//! | per section, in this order: `args`, `recipe`, `progress`, `optimizer`, `hooks`, `phases`, `model` | |
//! | 1 + n | section name: its length n, then n ASCII bytes (checked against the expected name) |
//! | 8 + len | section length, then the section bytes |
//! | 4 | CRC-32 of every byte before it |
//!
//! `args` holds the options of the command line that started the run (a map of strings); `recipe` the
//! [`TrainConfig`], `progress` the [`TrainState`] without its optimizer entries and hook
//! states (so a version-1 `progress` reads the same), `optimizer` those entries and `hooks` the states of the training hooks and of the
//! objective ([`crate::trainer::TrainHook::state`]), `phases` the training phases finished
//! before the one in progress ([`crate::trainer::FinishedPhase`]: a command whose training is
//! several runs, [`crate::trainer::Session`]; empty for one run), each encoded as the native format encodes values
//! ([`crate::io::native::encode_value`], bincode 2 with an allocation limit derived from the
//! section's length); `model` a native model file image ([`crate::io::native`]), the weights.
//!
//! Reading is bounded: every length is checked against the bytes that remain before anything
//! is sliced or allocated, and a corrupt or truncated checkpoint is an [`NnError::Corrupt`]
//! naming the file and the section (`checkpoint section \`progress\``).

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{NnError, Result};
use crate::model::Model;
use crate::optim::OptimizerState;
use crate::registry::LayerRegistry;
use crate::trainer::{FinishedPhase, TrainConfig, TrainState};

/// The first eight bytes of a checkpoint.
pub const MAGIC: [u8; 8] = *b"SLIMCKPT";

/// The version this code writes (it reads this one, 2 and 1).
pub const VERSION: u32 = 3;

/// The sections, in file order (version 2 lacks `phases`, version 1 `hooks` too).
const SECTIONS: [&str; 7] = [
    "args",
    "recipe",
    "progress",
    "optimizer",
    "hooks",
    "phases",
    "model",
];

/// The `hooks` section: the opaque states of the training hooks and the objective.
type HookStates = (Vec<Option<Vec<u8>>>, Option<Vec<u8>>);

/// A training checkpoint read back by [`read`].
pub struct Checkpoint {
    /// The arguments of the run that wrote it (option name to value).
    pub args: BTreeMap<String, String>,
    /// Its training configuration (epochs, batch size, optimizer, schedule, seed, ...).
    pub recipe: TrainConfig,
    /// Where the run stopped, with its generators and optimizer state.
    pub state: TrainState,
    /// The weights at that point.
    pub model: Model,
    /// The training phases finished before the one `state` is in (empty for one run).
    pub phases: Vec<FinishedPhase>,
}

/// The checkpoint file image of a run (see the module docs).
pub fn encode(
    args: &BTreeMap<String, String>,
    recipe: &TrainConfig,
    state: &TrainState,
    model: &Model,
) -> Result<Vec<u8>> {
    encode_with_phases(args, recipe, state, model, &[])
}

/// [`encode`] of a run in several phases, `phases` finished before the current one.
pub fn encode_with_phases(
    args: &BTreeMap<String, String>,
    recipe: &TrainConfig,
    state: &TrainState,
    model: &Model,
    phases: &[FinishedPhase],
) -> Result<Vec<u8>> {
    let mut progress = state.clone();
    let optimizer = std::mem::take(&mut progress.optimizer);
    let hooks: HookStates = (
        std::mem::take(&mut progress.hooks),
        progress.objective.take(),
    );
    let sections = [
        crate::io::native::encode_value(args, "checkpoint args")?,
        crate::io::native::encode_value(recipe, "checkpoint recipe")?,
        crate::io::native::encode_value(&progress, "checkpoint progress")?,
        crate::io::native::encode_value(&optimizer, "checkpoint optimizer")?,
        crate::io::native::encode_value(&hooks, "checkpoint hooks")?,
        crate::io::native::encode_value(&phases, "checkpoint phases")?,
        crate::io::native::to_bytes(model)?,
    ];
    let mut out = Vec::with_capacity(16 + sections.iter().map(|s| s.len() + 32).sum::<usize>());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    for (name, bytes) in SECTIONS.iter().zip(&sections) {
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    let crc = crate::io::native::crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Writes a checkpoint to `path` atomically ([`crate::io::atomic::write_atomic`]); returns
/// the bytes written.
pub fn write(
    path: impl AsRef<Path>,
    args: &BTreeMap<String, String>,
    recipe: &TrainConfig,
    state: &TrainState,
    model: &Model,
) -> Result<u64> {
    write_with_phases(path, args, recipe, state, model, &[])
}

/// [`write`] of a run in several phases ([`encode_with_phases`]).
pub fn write_with_phases(
    path: impl AsRef<Path>,
    args: &BTreeMap<String, String>,
    recipe: &TrainConfig,
    state: &TrainState,
    model: &Model,
    phases: &[FinishedPhase],
) -> Result<u64> {
    let bytes = encode_with_phases(args, recipe, state, model, phases)?;
    crate::io::atomic::write_atomic(path, &bytes)?;
    Ok(bytes.len() as u64)
}

/// Reads a checkpoint, rebuilding the model's layers through `registry`.
pub fn read(path: impl AsRef<Path>, registry: &LayerRegistry) -> Result<Checkpoint> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| NnError::io(path, e))?;
    decode(&bytes, &path.display().to_string(), registry)
}

/// Whether `head` starts like a checkpoint.
pub fn is_checkpoint(head: &[u8]) -> bool {
    head.starts_with(&MAGIC)
}

/// A reader of the sections of a checkpoint image, bounds-checked.
struct Sections<'a> {
    bytes: &'a [u8],
    pos: usize,
    source: &'a str,
}

impl<'a> Sections<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let left = self.bytes.len() - self.pos;
        if n > left {
            return Err(NnError::corrupt(
                self.source,
                what,
                format!("needs {n} bytes, {left} remain (truncated file?)"),
            ));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// The next section, which must be `name`.
    fn section(&mut self, name: &str) -> Result<&'a [u8]> {
        let what = format!("checkpoint section `{name}`");
        let len = self.take(1, &format!("{what} name length"))?[0] as usize;
        let found = self.take(len, &format!("{what} name"))?;
        if found != name.as_bytes() {
            return Err(NnError::corrupt(
                self.source,
                &what,
                format!(
                    "found section {:?} where `{name}` belongs",
                    String::from_utf8_lossy(found)
                ),
            ));
        }
        let len = u64::from_le_bytes(
            self.take(8, &format!("{what} length"))?
                .try_into()
                .unwrap_or([0; 8]),
        );
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        self.take(len, &what)
    }
}

/// Decodes a checkpoint image (see the module docs); `source` names it in errors.
pub fn decode(bytes: &[u8], source: &str, registry: &LayerRegistry) -> Result<Checkpoint> {
    let corrupt = |what: &str, reason: String| NnError::corrupt(source, what, reason);
    if bytes.is_empty() {
        return Err(corrupt("checkpoint", "the file is empty".into()));
    }
    if bytes.len() < MAGIC.len() + 4 + 4 || !is_checkpoint(bytes) {
        return Err(corrupt(
            "checkpoint header",
            format!(
                "not a slimnet training checkpoint (magic SLIMCKPT, at least 16 bytes; {} bytes)",
                bytes.len()
            ),
        ));
    }
    let (body, trailer) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes(trailer.try_into().unwrap_or([0; 4]));
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or([0; 4]));
    if !(1..=VERSION).contains(&version) {
        return Err(corrupt(
            "checkpoint version",
            format!("version {version}; this slimnet reads versions 1 to {VERSION}"),
        ));
    }
    let actual = crate::io::native::crc32(body);
    if stored != actual {
        return Err(corrupt(
            "checkpoint checksum",
            format!("CRC-32 {actual:#010x} of the contents, {stored:#010x} stored"),
        ));
    }
    let mut r = Sections {
        bytes: body,
        pos: 12,
        source,
    };
    let args: BTreeMap<String, String> =
        crate::io::native::decode_value(r.section("args")?, source, "checkpoint section `args`")?;
    let recipe: TrainConfig = crate::io::native::decode_value(
        r.section("recipe")?,
        source,
        "checkpoint section `recipe`",
    )?;
    recipe
        .validate()
        .map_err(|e| corrupt("checkpoint section `recipe`", e.to_string()))?;
    let mut state: TrainState = crate::io::native::decode_value(
        r.section("progress")?,
        source,
        "checkpoint section `progress`",
    )?;
    state.optimizer = crate::io::native::decode_value::<OptimizerState>(
        r.section("optimizer")?,
        source,
        "checkpoint section `optimizer`",
    )?;
    for p in &state.optimizer.params {
        let numel = p.dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if p.tensors.iter().any(|t| Some(t.len()) != numel) {
            return Err(corrupt(
                "checkpoint section `optimizer`",
                format!(
                    "parameter {}.{}: a state tensor's length differs from dimensions {:?}",
                    p.path, p.param, p.dims
                ),
            ));
        }
    }
    if version >= 2 {
        (state.hooks, state.objective) = crate::io::native::decode_value::<HookStates>(
            r.section("hooks")?,
            source,
            "checkpoint section `hooks`",
        )?;
    }
    let phases: Vec<FinishedPhase> = if version >= 3 {
        crate::io::native::decode_value(
            r.section("phases")?,
            source,
            "checkpoint section `phases`",
        )?
    } else {
        Vec::new()
    };
    for (i, p) in phases.iter().enumerate() {
        p.config.validate().map_err(|e| {
            corrupt(
                "checkpoint section `phases`",
                format!("phase {}: {e}", i + 1),
            )
        })?;
        // Read now, so that a corrupt end model names this file (a replay reads it again).
        let name = format!("{source} (model of phase {})", i + 1);
        crate::io::native::from_bytes_with(&p.model, &name, registry)?;
    }
    let model_bytes = r.section("model")?;
    if r.pos != body.len() {
        return Err(corrupt(
            "checkpoint",
            format!("{} bytes after the last section", body.len() - r.pos),
        ));
    }
    let model =
        crate::io::native::from_bytes_with(model_bytes, &format!("{source} (model)"), registry)?;
    Ok(Checkpoint {
        args,
        recipe,
        state,
        model,
        phases,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (BTreeMap<String, String>, TrainConfig, TrainState, Model) {
        let mut rng = tensor_core::rng::Rng::seed_from_u64(5);
        let model = crate::zoo::build_spec("mlp:784-8-10", &mut rng).unwrap();
        let args = BTreeMap::from([("model".to_string(), "mlp:784-8-10".to_string())]);
        let state = TrainState {
            epoch: 1,
            step_in_epoch: 2,
            global_step: 9,
            steps_per_epoch: 7,
            train_samples: 100,
            shuffle_rng: [1, 2, 3, 4],
            augment_rng: [5, 6, 7, 8],
            loss_sum: 1.5,
            correct: 3,
            seen: 20,
            lr: 0.01,
            dropout_rngs: vec![("1".into(), [9, 9, 9, 9])],
            optimizer: OptimizerState {
                optimizer: "adam".into(),
                params: vec![crate::optim::ParamState {
                    path: "0".into(),
                    param: "bias".into(),
                    dims: vec![2],
                    tensors: vec![vec![0.5, 1.0], vec![2.0, 3.0]],
                    steps: 9,
                }],
            },
            hooks: vec![None, Some(vec![1, 2, 3])],
            objective: Some(vec![7; 8]),
        };
        (args, TrainConfig::default(), state, model)
    }

    #[test]
    fn round_trip() {
        let (args, recipe, state, model) = sample();
        let bytes = encode(&args, &recipe, &state, &model).unwrap();
        let back = decode(&bytes, "t.ckpt", LayerRegistry::nn_default()).unwrap();
        assert_eq!(back.args, args);
        assert_eq!(back.recipe, recipe);
        assert_eq!(back.state, state);
        assert_eq!(
            crate::io::native::to_bytes(&back.model).unwrap(),
            crate::io::native::to_bytes(&model).unwrap()
        );
    }

    /// `image` rewritten as `version` wrote it: without the sections in `drop`.
    fn as_version(image: &[u8], version: u32, drop: &[&str]) -> Vec<u8> {
        let mut out = Vec::from(&image[..8]);
        out.extend_from_slice(&version.to_le_bytes());
        let mut pos = 12;
        while pos < image.len() - 4 {
            let name_len = image[pos] as usize;
            let at = pos + 1 + name_len;
            let len = u64::from_le_bytes(image[at..at + 8].try_into().unwrap()) as usize;
            let end = at + 8 + len;
            if !drop.iter().any(|d| d.as_bytes() == &image[pos + 1..at]) {
                out.extend_from_slice(&image[pos..end]);
            }
            pos = end;
        }
        let crc = crate::io::native::crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    #[test]
    fn a_version_1_file_reads_without_hook_states() {
        let (args, recipe, state, model) = sample();
        let v3 = encode(&args, &recipe, &state, &model).unwrap();
        let v1 = as_version(&v3, 1, &["hooks", "phases"]);
        let back = decode(&v1, "v1.ckpt", LayerRegistry::nn_default()).unwrap();
        assert_eq!((back.state.hooks.len(), back.state.objective), (0, None));
        assert_eq!(back.state.optimizer, state.optimizer);
        assert_eq!(back.state.global_step, state.global_step);
        // Version 2 has the hooks, not the phases.
        let v2 = as_version(&v3, 2, &["phases"]);
        let back = decode(&v2, "v2.ckpt", LayerRegistry::nn_default()).unwrap();
        assert_eq!((back.state, back.phases.len()), (state, 0));
        // A version-2 header over version-3 sections is refused, naming the section.
        let mixed = as_version(&v3, 2, &[]);
        let e = decode(&mixed, "m.ckpt", LayerRegistry::nn_default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("`model`"), "{e}");
    }

    #[test]
    fn finished_phases_round_trip() {
        let (args, recipe, state, model) = sample();
        let phase = FinishedPhase {
            config: TrainConfig {
                epochs: 2,
                ..TrainConfig::default()
            },
            report: crate::trainer::TrainReport {
                epochs: Vec::new(),
                steps: 14,
                total_seconds: 0.5,
            },
            hooks: vec![Some(vec![4, 5])],
            dropout_rngs: vec![("1".into(), [1, 1, 1, 1])],
            model: crate::io::native::to_bytes(&model).unwrap(),
        };
        let phases = vec![phase.clone(), phase];
        let bytes = encode_with_phases(&args, &recipe, &state, &model, &phases).unwrap();
        let back = decode(&bytes, "t.ckpt", LayerRegistry::nn_default()).unwrap();
        assert_eq!(back.phases, phases);
        assert_eq!(back.state, state);
        // A phase whose settings are invalid is refused, naming the phase.
        let mut bad = phases.clone();
        bad[1].config.batch_size = 0;
        let bytes = encode_with_phases(&args, &recipe, &state, &model, &bad).unwrap();
        let e = decode(&bytes, "t.ckpt", LayerRegistry::nn_default())
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("section `phases`") && e.contains("phase 2"),
            "{e}"
        );
    }

    #[test]
    fn every_truncation_and_flip_is_a_typed_error() {
        let (args, recipe, state, model) = sample();
        let bytes = encode(&args, &recipe, &state, &model).unwrap();
        let reg = LayerRegistry::nn_default();
        for cut in (0..bytes.len()).step_by(37) {
            let e = decode(&bytes[..cut], "t.ckpt", reg)
                .err()
                .expect("truncated accepted");
            assert!(matches!(e, NnError::Corrupt { .. }), "cut {cut}: {e}");
        }
        let mut flipped = bytes.clone();
        flipped[40] ^= 0x55;
        let e = decode(&flipped, "t.ckpt", reg).err().unwrap().to_string();
        assert!(e.contains("checksum"), "{e}");
    }

    #[test]
    fn a_bad_section_is_named() {
        let (args, recipe, mut state, model) = sample();
        // A state tensor of the wrong length: the optimizer section is named.
        state.optimizer.params[0].tensors[1].push(1.0);
        let bytes = encode(&args, &recipe, &state, &model).unwrap();
        let e = decode(&bytes, "t.ckpt", LayerRegistry::nn_default())
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("section `optimizer`") && e.contains("0.bias"),
            "{e}"
        );
        // A section length past the end, checksum made to match: named, no allocation.
        let (args, recipe, state, model) = sample();
        let mut bytes = encode(&args, &recipe, &state, &model).unwrap();
        let at = 12 + 1 + 4; // the `args` section's length field
        bytes[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let n = bytes.len() - 4;
        let crc = crate::io::native::crc32(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
        let e = decode(&bytes, "t.ckpt", LayerRegistry::nn_default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("section `args`") && e.contains("remain"), "{e}");
    }
}
