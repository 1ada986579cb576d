//! One module per subcommand, plus the options they share.

pub mod eval;
pub mod export;
pub mod import;
pub mod inspect;
pub mod prune;
pub mod run;
pub mod train;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

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

/// Loads a model in any supported format.
pub fn load_model(path: &Path, arch: Option<&str>) -> Result<nn::Model> {
    pipeline::load(path, arch).with_context(|| format!("loading model {}", path.display()))
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
