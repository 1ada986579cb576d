//! `slimnet run MODEL --input x.npy -o y.npy`: inference on a NumPy array.
//!
//! Input convention: a float32 array `[N, ...]` whose trailing dimensions are the model's
//! input shape (NCHW for images: `[N, 1, 28, 28]` for the zoo models, pixels scaled to
//! [0, 1] as in training, no other normalization). Output: the model's raw outputs (logits
//! for the zoo models) as float32 `[N, classes]`; `--softmax` turns them into probabilities,
//! `--argmax` writes the predicted class per image as int64 `[N]`. Images go through the model
//! `--batch-size` at a time, so memory stays bounded by one batch's activations.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use tensor_core::Tensor;

use super::ModelArgs;

/// Arguments of `slimnet run`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Input: NumPy array, float32, `[N, ...]` matching the model's input (NCHW for images,
    /// pixels in [0, 1]).
    #[arg(long)]
    input: PathBuf,
    /// Output: NumPy array, float32 `[N, outputs]` (int64 `[N]` with --argmax).
    #[arg(short, long)]
    output: PathBuf,
    /// Images per forward pass.
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// Write softmax probabilities instead of logits.
    #[arg(long, conflicts_with = "argmax")]
    softmax: bool,
    /// Write the index of the largest output per image (int64) instead of logits.
    #[arg(long)]
    argmax: bool,
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    super::check_output(&args.output, &[&args.model.model, &args.input])?;
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let mut model = args.model.load()?;
    // nn's errors name the file already: the context says only what was being done.
    let x = nn::io::npy::read_npy(&args.input).context("reading the input")?;
    super::refuse_nonfinite(nn::finite::check_values(
        &format!("input {}", args.input.display()),
        x.data(),
    ))?;
    let mut y = forward_batched(&mut model, &x, args.batch_size)
        .with_context(|| format!("input {}", args.input.display()))?;
    let bytes = if args.argmax {
        let classes: Vec<i64> = y.argmax_rows()?.into_iter().map(|c| c as i64).collect();
        nn::io::npy::npy_bytes_i64(&[classes.len()], &classes)
    } else if args.softmax {
        let cols = y.dims()[1];
        tensor_core::activation::softmax_rows(y.data_mut(), cols);
        nn::io::npy::npy_bytes(&y)
    } else {
        nn::io::npy::npy_bytes(&y)
    };
    nn::io::atomic::write_atomic(&args.output, &bytes).context("writing the output")?;
    crate::note!(
        "{} {} -> {} {}",
        args.input.display(),
        x.shape(),
        args.output.display(),
        y_shape_text(&args, &y)
    );
    Ok(())
}

/// The model's outputs for every sample of `x`, `batch` samples per forward pass, as one
/// `[N, outputs]` tensor.
fn forward_batched(model: &mut nn::Model, x: &Tensor, batch: usize) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let Some((&n, sample_dims)) = dims.split_first() else {
        bail!("input: a scalar; expected [N, ...] samples");
    };
    if n == 0 {
        bail!("input: no samples (shape {})", x.shape());
    }
    let per_sample: usize = sample_dims.iter().product();
    let pb = crate::progress::bar(n as u64, false);
    pb.set_prefix("run");
    let mut out: Vec<f32> = Vec::new();
    let mut outputs = 0;
    for start in (0..n).step_by(batch) {
        let rows = batch.min(n - start);
        let mut shape = vec![rows];
        shape.extend_from_slice(sample_dims);
        let chunk = Tensor::new(
            &shape,
            x.data()[start * per_sample..(start + rows) * per_sample].to_vec(),
        )?;
        let y = model.forward(&chunk, nn::Mode::Eval)?;
        outputs = y.numel() / rows;
        if out.is_empty() {
            out.reserve(n * outputs);
        }
        out.extend_from_slice(y.data());
        pb.set_position((start + rows) as u64);
    }
    pb.finish_and_clear();
    Ok(Tensor::new(&[n, outputs], out)?)
}

fn y_shape_text(args: &Args, y: &Tensor) -> String {
    if args.argmax {
        format!("[{}] classes", y.dims()[0])
    } else {
        y.shape().to_string()
    }
}
