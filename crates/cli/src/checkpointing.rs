//! Checkpoints of the training inside compressing commands: `--checkpoint-every N`,
//! `--checkpoint PATH`, `--resume CKPT`, `--stop-after-epochs N`, and a Ctrl-C or SIGTERM
//! during their training writes a checkpoint at the next step. `distill`, `binarize` and
//! `quantize --qat-epochs` train once ([`Resumable::fit`]); `prune`, `share`, `decompose` and `compress` train in
//! phases made inside the technique crates (rounds, stages), checkpointed as an
//! [`nn::trainer::Session`] ([`Resumable::run_phases`]).
//!
//! The checkpoint is `nn::io::checkpoint`'s (docs/FORMAT.md § Training checkpoints): the
//! weights being trained, the optimizer, the position, the generators and the states of the
//! training hooks and of the objective (`TrainHook::state`, `Objective::state`). Its `args`
//! section records the command and its options (everything but the output, the checkpoint
//! options and the output style); a resume must give the same ones, so it finishes the run
//! the checkpoint began, bit for bit (tests: `crates/cli/tests/checkpoint.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nn::trainer::{FitControl, FitOutcome, Progress, TrainConfig, TrainReport, Trainer};

/// The checkpoint options of a compressing command.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CheckpointArgs {
    /// Write a training checkpoint every N epochs (of each training phase: a pruning round, a
    /// recipe stage; see --checkpoint). A Ctrl-C or SIGTERM during the command always writes
    /// one at the next training step.
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<usize>,
    /// Where checkpoints go [default: OUTPUT.ckpt, the -o path with `.ckpt` appended].
    #[arg(long, value_name = "PATH")]
    pub checkpoint: Option<PathBuf>,
    /// Continue the training a checkpoint saved: give the command line of the run that wrote
    /// it, plus --resume. The model written is the one an uninterrupted run writes, bit for bit.
    #[arg(long, value_name = "CKPT")]
    pub resume: Option<PathBuf>,
    /// Stop once N epochs of the training (all its phases together) are complete, writing the
    /// checkpoint as an interruption does (continue with --resume).
    #[arg(long, value_name = "N")]
    pub stop_after_epochs: Option<usize>,
}

/// The `args` map of a run: the command's name and its options' values, one entry per
/// option (`Debug` of the parsed options, split at the top-level fields).
pub fn run_map(command: &str, options: &impl std::fmt::Debug) -> BTreeMap<String, String> {
    let text = format!("{options:#?}");
    let mut map = BTreeMap::from([("command".to_string(), command.to_string())]);
    // `{:#?}` puts each top-level field on its own line, indented by four spaces; nested
    // values continue on deeper-indented lines and belong to the field above them.
    let mut key = String::new();
    for line in text.lines().skip(1) {
        match line.strip_prefix("    ") {
            Some(rest) if !rest.starts_with(' ') && rest.contains(": ") => {
                let (k, v) = rest.split_once(": ").unwrap_or((rest, ""));
                key = k.to_string();
                map.insert(key.clone(), v.trim_end_matches(',').to_string());
            }
            _ if !key.is_empty() => {
                if let Some(v) = map.get_mut(&key) {
                    v.push(' ');
                    v.push_str(line.trim());
                }
            }
            _ => {}
        }
    }
    map
}

/// The command line of a run, for its checkpoints: the command's name and options (its
/// output, checkpoint options and output style left out) and its checkpoint options.
pub struct RunKey {
    /// [`run_map`]'s map.
    pub run: BTreeMap<String, String>,
    /// `--checkpoint-every`, `--checkpoint`, `--resume`, `--stop-after-epochs`.
    pub ckpt: CheckpointArgs,
}

impl RunKey {
    /// The [`Resumable`] of a run writing `output` from the files `inputs`, which the key
    /// fingerprints (the same command line on another model file is another run).
    pub fn resumable(mut self, output: &Path, inputs: &[&Path]) -> Result<Resumable> {
        let files: Vec<PathBuf> = inputs.iter().map(|p| p.to_path_buf()).collect();
        self.run.insert(
            "input_fingerprint".into(),
            format!("{:016x}", crate::commands::fingerprint(&files)?),
        );
        Resumable::new(self.ckpt, self.run, output, inputs)
    }
}

/// The [`RunKey`] of a command's `args`: `parts` reaches its output, checkpoint options and
/// data options, which the key leaves out (the output style too).
pub fn run_key<A: Clone + std::fmt::Debug>(
    command: &str,
    args: &A,
    parts: impl Fn(
        &mut A,
    ) -> (
        &mut PathBuf,
        &mut CheckpointArgs,
        &mut crate::commands::TrainDataArgs,
    ),
) -> RunKey {
    let mut key = args.clone();
    let (output, ckpt, common) = parts(&mut key);
    *output = PathBuf::new();
    let ckpt = std::mem::take(ckpt);
    common.json = false;
    RunKey {
        run: run_map(command, &key),
        ckpt,
    }
}

/// The checkpoint path of a run writing `output`: `--checkpoint`, or `output` with `.ckpt`
/// appended.
pub fn checkpoint_path(args: &CheckpointArgs, output: &Path) -> PathBuf {
    args.checkpoint.clone().unwrap_or_else(|| {
        let mut s = output.as_os_str().to_owned();
        s.push(".ckpt");
        PathBuf::from(s)
    })
}

/// A training that checkpoints: where it writes, what it records, where it resumes.
pub struct Resumable {
    /// The checkpoint options.
    pub args: CheckpointArgs,
    /// Where checkpoints are written.
    pub path: PathBuf,
    /// The run's `args` map ([`run_map`]).
    pub run: BTreeMap<String, String>,
}

impl Resumable {
    /// Checks, before any work, that the checkpoint path can be written and is none of
    /// `inputs` (resuming from the checkpoint path itself is allowed: it is read first).
    pub fn new(
        args: CheckpointArgs,
        run: BTreeMap<String, String>,
        output: &Path,
        inputs: &[&Path],
    ) -> Result<Self> {
        if args.checkpoint_every == Some(0) || args.stop_after_epochs == Some(0) {
            bail!("--checkpoint-every and --stop-after-epochs take at least 1 epoch");
        }
        let path = checkpoint_path(&args, output);
        if args.resume.as_deref() != Some(path.as_path()) {
            let mut all = inputs.to_vec();
            all.push(output);
            all.extend(args.resume.as_deref());
            super::commands::check_output(&path, &all)?;
        }
        Ok(Self { args, path, run })
    }

    /// The checkpoint of `--resume`, refused unless it was written by this command line.
    fn read_matching(&self) -> Result<Option<nn::io::checkpoint::Checkpoint>> {
        let Some(path) = &self.args.resume else {
            return Ok(None);
        };
        let ck = nn::io::checkpoint::read(path, &pipeline::registry())?;
        let differ: Vec<String> = self
            .run
            .iter()
            .filter(|(k, v)| ck.args.get(*k) != Some(*v))
            .map(|(k, v)| match ck.args.get(k) {
                Some(saved) => format!("{k} {v} (checkpoint: {saved})"),
                None => format!("{k} {v} (not in the checkpoint)"),
            })
            .collect();
        if !differ.is_empty() {
            bail!(
                "{}: --resume needs the command line of the run that wrote it; this one differs \
                 in {}",
                path.display(),
                differ.join(", ")
            );
        }
        Ok(Some(ck))
    }

    /// The checkpoint of `--resume`, refused unless it was written by this command line and
    /// `config`.
    pub fn load(&self, config: &TrainConfig) -> Result<Option<nn::io::checkpoint::Checkpoint>> {
        let Some(ck) = self.read_matching()? else {
            return Ok(None);
        };
        let path = self.path_of_resume();
        if ck.recipe != *config {
            bail!(
                "{}: --resume: the checkpoint's training settings differ from this run's",
                path.display()
            );
        }
        crate::note!(
            "resuming {} at epoch {} step {} of {} epochs",
            path.display(),
            ck.state.epoch + 1,
            ck.state.step_in_epoch,
            config.epochs
        );
        Ok(Some(ck))
    }

    /// The `--resume` path (empty when there is none).
    fn path_of_resume(&self) -> &Path {
        self.args.resume.as_deref().unwrap_or(Path::new(""))
    }

    /// Runs `work`, a command's whole training in several phases (every `Trainer::fit` it
    /// makes, in order: iterative pruning rounds, recipe stages, a retraining inside a
    /// technique), as an [`nn::trainer::Session`]: phases finished before `--resume`'s
    /// checkpoint are replayed from it, the one it stopped in continues, checkpoints are
    /// written as the options say, and a Ctrl-C or SIGTERM anywhere in `work` stops the
    /// training at its next step with a checkpoint. `Some(result)` when `work` ran to its
    /// end; `None` when it stopped and its checkpoint was written (an interrupted process
    /// then exits with code 130).
    pub fn run_phases<T>(&self, work: impl FnOnce() -> Result<T>) -> Result<Option<T>> {
        let resume = self.read_matching()?;
        let (path, run) = (self.path.clone(), self.run.clone());
        let sink = move |c: &nn::trainer::SessionCheckpoint<'_>| -> nn::Result<()> {
            nn::io::checkpoint::write_with_phases(
                &path, &run, c.config, c.state, c.model, c.finished,
            )?;
            crate::note!(
                "checkpoint at training phase {}, epoch {} step {}: {}",
                c.finished.len() + 1,
                c.state.epoch + 1,
                c.state.step_in_epoch,
                path.display()
            );
            Ok(())
        };
        let mut session = nn::trainer::Session::new(
            pipeline::registry(),
            self.args.checkpoint_every,
            self.args.stop_after_epochs,
            Box::new(crate::interrupt::requested),
            Box::new(sink),
        );
        if let Some(ck) = resume {
            crate::note!(
                "resuming {}: {} finished training phases, then phase {} at epoch {} step {}",
                self.path_of_resume().display(),
                ck.phases.len(),
                ck.phases.len() + 1,
                ck.state.epoch + 1,
                ck.state.step_in_epoch
            );
            session = session.resuming(
                ck.phases,
                nn::trainer::InProgress {
                    config: ck.recipe,
                    state: ck.state,
                    model: ck.model,
                },
            );
        }
        crate::interrupt::defer();
        let (out, session) = session.run(work)?;
        if let Some(stop) = session.stopped() {
            eprintln!(
                "stopped at training phase {}, epoch {} step {}: checkpoint {}; continue with the \
                 same command and --resume {}",
                stop.phase + 1,
                stop.epoch + 1,
                stop.step_in_epoch,
                self.path.display(),
                self.path.display()
            );
            crate::interrupt::undefer();
            return Ok(None);
        }
        crate::interrupt::undefer();
        out.map(Some)
    }

    /// Trains `model` with `trainer`, checkpointing as the options say and continuing from
    /// `resume` (the state of [`Resumable::load`]'s checkpoint, whose weights `model` holds).
    /// `Some(report)` when every epoch ran; `None` when the run stopped and its checkpoint
    /// was written (an interrupted process then exits with code 130).
    #[allow(clippy::too_many_arguments)]
    pub fn fit(
        &self,
        trainer: &mut Trainer,
        model: &mut nn::Model,
        data: (&nn::Dataset, Option<&nn::Dataset>),
        resume: Option<nn::trainer::TrainState>,
        on_progress: &mut dyn FnMut(&Progress),
        note: &dyn Fn(String),
    ) -> Result<Option<TrainReport>> {
        let config = trainer.config().clone();
        let write = |m: &nn::Model, st: &nn::trainer::TrainState| -> nn::Result<u64> {
            nn::io::checkpoint::write(&self.path, &self.run, &config, st, m)
        };
        let mut control = FitControl {
            resume,
            checkpoint_every: self.args.checkpoint_every,
            stop_after_epochs: self.args.stop_after_epochs,
            should_stop: Box::new(crate::interrupt::requested),
            on_checkpoint: Box::new(|m, st| {
                write(m, st)?;
                note(format!(
                    "checkpoint after epoch {}: {}",
                    st.epoch,
                    self.path.display()
                ));
                Ok(())
            }),
        };
        crate::interrupt::defer();
        let outcome = trainer.fit_controlled(model, data.0, data.1, on_progress, &mut control);
        drop(control);
        match outcome {
            Err(e) => {
                crate::interrupt::undefer();
                Err(e.into())
            }
            Ok(FitOutcome::Finished(report)) => {
                crate::interrupt::undefer();
                Ok(Some(report))
            }
            Ok(FitOutcome::Stopped { state, .. }) => {
                write(model, &state)
                    .with_context(|| format!("writing checkpoint {}", self.path.display()))?;
                eprintln!(
                    "stopped at epoch {} step {}: checkpoint {}; continue with the same command \
                     and --resume {}",
                    state.epoch + 1,
                    state.step_in_epoch,
                    self.path.display(),
                    self.path.display()
                );
                crate::interrupt::undefer();
                Ok(None)
            }
        }
    }
}
