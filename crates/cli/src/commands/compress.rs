//! `slimnet compress MODEL --recipe NAME|FILE -o OUT.slim`: runs a compression recipe (a
//! preset such as `deep-compression`, or a TOML/JSON file) stage by stage, logging each
//! stage's accuracy and size, and writes the `.slim` container atomically with the per-layer
//! table and energy estimate as its report. `slimnet prune` and `slimnet share` are its
//! one-stage forms.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use nn::trainer::Progress;
use pipeline::compress::{Compressor, Data, Observer, StageReport};
use pipeline::recipe::{Recipe, Stage};
use pipeline::report::CompressReport;

use super::{Baseline, ModelArgs, TrainDataArgs, Written, print_json};
use crate::checkpointing::{CheckpointArgs, RunKey, run_key};
use crate::progress;

/// Arguments of `slimnet compress`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// A built-in recipe (deep-compression, deep-compression-labels, prune) or a .toml/.json
    /// recipe file.
    #[arg(long, default_value = "deep-compression")]
    recipe: String,
    /// Output container.
    #[arg(short, long)]
    output: PathBuf,
    /// Also write the report as Markdown here.
    #[arg(long)]
    report: Option<PathBuf>,
    #[command(flatten)]
    common: TrainDataArgs,
    /// Checkpoints of the recipe's training (every stage's, in order).
    #[command(flatten)]
    ckpt: CheckpointArgs,
}

/// A progress bar per stage on stderr, and a line per finished stage.
pub struct Bars {
    quiet: bool,
    bar: Option<ProgressBar>,
}

impl Bars {
    /// Bars hidden when `quiet` (JSON output); stage lines still go to stderr.
    pub fn new(quiet: bool) -> Self {
        Self { quiet, bar: None }
    }
}

impl Observer for Bars {
    fn stage_started(&mut self, index: usize, stage: &Stage, steps: u64) {
        crate::note!("stage {index}: {}", stage.describe());
        let pb = progress::bar(steps, self.quiet);
        pb.set_prefix(format!("stage {index}"));
        self.bar = Some(pb);
    }

    fn progress(&mut self, p: &Progress) {
        if let Some(pb) = &self.bar
            && !p.epoch_done
        {
            pb.inc(1);
            pb.set_message(format!("loss {:.4}", p.loss));
        }
    }

    fn stage_finished(&mut self, r: &StageReport) {
        if let Some(pb) = self.bar.take() {
            pb.finish_and_clear();
        }
        crate::note!(
            "stage {}: accuracy {:.2}%, {} bytes ({:.1}x), {} nonzero parameters, {:.0} s",
            r.index,
            100.0 * r.accuracy,
            r.file_bytes,
            r.ratio,
            r.nonzero_params,
            r.seconds
        );
    }

    fn note(&mut self, message: &str) {
        match &self.bar {
            Some(pb) => progress::line(pb, false, message),
            None => crate::note!("{message}"),
        }
    }
}

/// A recipe run on a model file and written: the report, and the command-line figures
/// every writing command reports.
pub struct Outcome {
    /// What the run measured.
    pub report: CompressReport,
    /// DESIGN.md § Command line keys.
    pub written: Written,
}

/// Runs `recipe` on `model` and writes the container to `output` atomically; its training
/// (every stage's, in order) is checkpointed as `key` says. `None`: the training stopped at
/// a checkpoint (an interruption, `--stop-after-epochs`), nothing written.
pub fn run_recipe(
    model: &ModelArgs,
    recipe: Recipe,
    output: &Path,
    common: &TrainDataArgs,
    key: RunKey,
) -> Result<Option<Outcome>> {
    super::check_model_output(
        output,
        &[&model.model],
        super::Writes::Compressed("the compressed layers of a recipe's .slim container"),
        None,
    )?;
    let mut key = key;
    // A recipe file may change between two runs of one command line.
    key.run
        .insert("recipe_resolved".into(), serde_json::to_string(&recipe)?);
    let resumable = key.resumable(output, &[&model.model])?;
    let input = model.load()?;
    let (train, test) = common.load()?;
    let source = model.model.display().to_string();
    let mut c = Compressor::new(input, recipe, common.seed, &source)?;
    let data = Data {
        train: &train,
        test: &test,
    };
    let accuracy = c.accuracy_before(&data)?;
    crate::note!("input {source}: accuracy {:.2}%", 100.0 * accuracy);
    let Some(out) = resumable.run_phases(|| {
        c.run_stages(&data, &mut Bars::new(common.json))?;
        Ok(c.finish(&data)?)
    })?
    else {
        return Ok(None);
    };
    nn::io::atomic::write_atomic(output, &out.bytes)
        .with_context(|| format!("writing {}", output.display()))?;
    let r = &out.report;
    let written = Written {
        output: output.display().to_string(),
        file_bytes: r.file_bytes,
        params: r.params,
        nonzero_params: r.nonzero_params,
        macs: r.macs_after,
        accuracy: r.accuracy_after,
        baseline: Baseline {
            accuracy: r.accuracy_before,
            file_bytes: std::fs::metadata(&model.model)?.len(),
            dense_bytes: r.dense_bytes,
        },
        ratio: r.ratio,
    };
    Ok(Some(Outcome {
        report: out.report,
        written,
    }))
}

#[derive(serde::Serialize)]
struct Json<'a> {
    #[serde(flatten)]
    written: &'a Written,
    recipe: &'a Recipe,
    stages: &'a [StageReport],
    layers: &'a [pipeline::report::LayerRow],
    energy: &'a pipeline::report::energy::EnergyReport,
    macs_before: u64,
    source_hash: &'a str,
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let recipe = Recipe::resolve(&args.recipe)?;
    let Some(out) = run_recipe(
        &args.model,
        recipe,
        &args.output,
        &args.common,
        run_key("compress", &args, |a| {
            (&mut a.output, &mut a.ckpt, &mut a.common)
        }),
    )?
    else {
        return Ok(());
    };
    let r = &out.report;
    let md = r.markdown(
        &format!("slimnet compress {}", args.model.model.display()),
        &format!(
            "`slimnet compress {} --recipe {} --seed {}`",
            args.model.model.display(),
            args.recipe,
            args.common.seed
        ),
    );
    if let Some(p) = &args.report {
        nn::io::atomic::write_atomic(p, md.as_bytes())?;
    }
    if args.common.json {
        return print_json(&Json {
            written: &out.written,
            recipe: &r.recipe,
            stages: &r.stages,
            layers: &r.layers,
            energy: &r.energy,
            macs_before: r.macs_before,
            source_hash: &r.source_hash,
        });
    }
    println!("{md}");
    println!(
        "compressed {} with {}: accuracy {:.2}% (was {:.2}%), {} bytes ({:.1}x smaller than {} \
         bytes of f32), {:.1}x less energy per inference (estimate), saved {}",
        args.model.model.display(),
        r.recipe.name,
        100.0 * r.accuracy_after,
        100.0 * r.accuracy_before,
        r.file_bytes,
        r.ratio,
        r.dense_bytes,
        r.energy.ratio,
        out.written.output
    );
    Ok(())
}
