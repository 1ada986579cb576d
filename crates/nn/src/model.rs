//! Model: a sequence of layers with a declared per-sample input shape.

use rayon::prelude::*;
use tensor_core::conv::ConvEpilogue;
use tensor_core::gemm::PAR_MIN_FLOP;
use tensor_core::{Shape, Tensor};

use crate::error::{NnError, Result};
use crate::layer::{Layer, Mode, ParamMut, ParamRef};
use crate::layers::{BatchNorm2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU};

pub use crate::path::LayerPath;

/// One row of a model summary (`slimnet inspect`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LayerSummary {
    /// Position in the model.
    pub index: usize,
    /// Layer kind.
    pub kind: String,
    /// Output shape for one sample (batch dimension 1 included).
    pub output_shape: Vec<usize>,
    /// Parameter count.
    pub params: usize,
    /// Bytes the parameters occupy as stored.
    pub bytes: usize,
    /// Multiply-accumulates for one sample.
    pub macs: u64,
}

/// What [`Model::rewrite`] calls on each layer: `Some(new)` replaces it.
pub type LayerRewrite<'a> =
    dyn FnMut(&LayerPath, &dyn Layer) -> Result<Option<Box<dyn Layer>>> + 'a;

/// A sequential model: layers applied in order.
///
/// Design: sequential is the one topology the zoo and the Deep Compression experiments need;
/// a graph (DAG) model for residual networks is a separate type when an importer needs one
/// (see docs/ARCHITECTURE.md).
#[derive(Debug)]
pub struct Model {
    /// A name (zoo name, or the file it came from).
    pub name: String,
    /// Shape of one sample without the batch dimension (`[1, 28, 28]` for Fashion-MNIST CNNs,
    /// `[784]` for MLPs).
    pub input_shape: Vec<usize>,
    /// The layers, in order.
    pub layers: Vec<Box<dyn Layer>>,
}

impl Model {
    /// A model from its layers.
    pub fn new(
        name: impl Into<String>,
        input_shape: &[usize],
        layers: Vec<Box<dyn Layer>>,
    ) -> Self {
        Self {
            name: name.into(),
            input_shape: input_shape.to_vec(),
            layers,
        }
    }

    /// The batch input shape for `batch` samples.
    pub fn batch_shape(&self, batch: usize) -> Result<Shape> {
        let mut dims = vec![batch];
        dims.extend_from_slice(&self.input_shape);
        Ok(Shape::new(&dims)?)
    }

    /// Runs every layer in order. In `Mode::Train` layers cache what `backward` needs.
    pub fn forward(&mut self, input: &Tensor, mode: Mode) -> Result<Tensor> {
        self.forward_chunked(input, mode, None)
    }

    /// [`Model::forward`] in [`Mode::Eval`] with the leading per-sample layers run in chunks of at
    /// most `chunk` images (`forward` picks the size, see [`EVAL_CHUNK_BYTES`]). The result is the
    /// same for every `chunk`: this is for measuring the chunk size (`examples/eval_chunks`).
    pub fn forward_eval_chunked(&mut self, input: &Tensor, chunk: usize) -> Result<Tensor> {
        self.forward_chunked(input, Mode::Eval, Some(chunk))
    }

    /// Checks that `input` is `[batch, input_shape...]`; the error names the model (and
    /// `context`, when not empty, after it).
    pub(crate) fn check_input(&self, input: &Tensor, context: &str) -> Result<()> {
        if input.dims().get(1..) == Some(&self.input_shape[..]) {
            return Ok(());
        }
        Err(NnError::BadInput {
            layer: format!("model {}{context}", self.name),
            input: input.shape().clone(),
            reason: format!("expected [batch, {:?}]", self.input_shape),
        })
    }

    fn forward_chunked(
        &mut self,
        input: &Tensor,
        mode: Mode,
        chunk: Option<usize>,
    ) -> Result<Tensor> {
        self.check_input(input, "")?;
        let mut x: Option<Tensor> = None;
        let mut i = 0;
        if mode == Mode::Eval {
            // From two images per thread on, the leading per-sample layers run in chunks,
            // one thread each; fewer images go layer by layer (a single image's
            // convolutions split over two threads).
            let prefix = chunk_prefix(&self.layers);
            let n = input.dims()[0];
            if prefix > 0 && n >= 2 && n >= 2 * rayon::current_num_threads() {
                x = Some(forward_in_chunks(&self.layers[..prefix], input, chunk)?);
                i = prefix;
            }
        }
        while i < self.layers.len() {
            let xin = x.as_ref().unwrap_or(input);
            let (y, used) = if mode == Mode::Eval {
                fused_eval_step(&mut self.layers[i..], xin)?
            } else {
                (self.layers[i].forward(xin, mode)?, 1)
            };
            x = Some(y);
            i += used;
        }
        Ok(x.unwrap_or_else(|| input.clone()))
    }

    /// Back-propagates through every layer in reverse; returns the input gradient.
    pub fn backward(&mut self, grad_output: &Tensor) -> Result<Tensor> {
        let mut g: Option<Tensor> = None;
        for layer in self.layers.iter_mut().rev() {
            let next = layer.backward(g.as_ref().unwrap_or(grad_output))?;
            g = Some(next);
        }
        Ok(g.unwrap_or_else(|| grad_output.clone()))
    }

    /// Whether `backward` must produce the gradient with respect to the model's input. When
    /// not (training on data), the layers up to and including the first one with parameters
    /// are told to skip their input gradient (see [`Layer::set_input_grad_needed`]), and the
    /// gradient `backward` returns is zeros.
    pub fn set_input_grad_needed(&mut self, needed: bool) {
        for layer in self.layers.iter_mut() {
            layer.set_input_grad_needed(needed);
            if layer.param_count() > 0 {
                break;
            }
        }
    }

    /// Zeroes every parameter gradient.
    pub fn zero_grad(&mut self) {
        self.layers.iter_mut().for_each(|l| l.zero_grad());
    }

    /// Drops every cached activation.
    pub fn clear_cache(&mut self) {
        self.layers.iter_mut().for_each(|l| l.clear_cache());
    }

    /// Total parameter count.
    pub fn param_count(&self) -> usize {
        self.layers.iter().map(|l| l.param_count()).sum()
    }

    /// Total bytes of parameters as stored.
    pub fn stored_bytes(&self) -> usize {
        self.layers.iter().map(|l| l.stored_bytes()).sum()
    }

    /// Per-layer shapes, parameters, bytes and multiply-accumulates for one sample.
    pub fn summary(&self) -> Result<Vec<LayerSummary>> {
        let mut shape = self.batch_shape(1)?;
        let mut rows = Vec::with_capacity(self.layers.len());
        for (index, layer) in self.layers.iter().enumerate() {
            let macs = layer.macs(&shape)?;
            let out = layer.output_shape(&shape)?;
            rows.push(LayerSummary {
                index,
                kind: layer.kind().to_string(),
                output_shape: out.dims().to_vec(),
                params: layer.param_count(),
                bytes: layer.stored_bytes(),
                macs,
            });
            shape = out;
        }
        Ok(rows)
    }

    /// The output shape of one sample, batch dimension left out (`[10]` for a classifier of
    /// ten classes).
    pub fn output_dims(&self) -> Result<Vec<usize>> {
        let mut shape = self.batch_shape(1)?;
        for layer in &self.layers {
            shape = layer.output_shape(&shape)?;
        }
        Ok(shape.dims()[1..].to_vec())
    }

    /// Multiply-accumulates for one sample.
    pub fn macs_per_sample(&self) -> Result<u64> {
        Ok(self.summary()?.iter().map(|r| r.macs).sum())
    }

    /// Calls `f` on every layer with its path, in order, a container before its nested layers
    /// (pre-order: `0`, `1`, `1/0/0`, `1/0/1`, `1/1/0`, `2`, ...).
    pub fn visit(&self, f: &mut dyn FnMut(&LayerPath, &dyn Layer)) {
        fn walk(
            seq: &[Box<dyn Layer>],
            parent: Option<(&LayerPath, usize)>,
            f: &mut dyn FnMut(&LayerPath, &dyn Layer),
        ) {
            for (i, layer) in seq.iter().enumerate() {
                let path = LayerPath::at(parent, i);
                f(&path, layer.as_ref());
                for (b, branch) in layer.branches().iter().enumerate() {
                    walk(branch, Some((&path, b)), f);
                }
            }
        }
        walk(&self.layers, None, f);
    }

    /// Calls `f` on every layer with its path, mutably, in the order of [`Model::visit`];
    /// stops at the first error.
    pub fn visit_mut(
        &mut self,
        f: &mut dyn FnMut(&LayerPath, &mut dyn Layer) -> Result<()>,
    ) -> Result<()> {
        fn walk(
            seq: &mut [Box<dyn Layer>],
            parent: Option<(&LayerPath, usize)>,
            f: &mut dyn FnMut(&LayerPath, &mut dyn Layer) -> Result<()>,
        ) -> Result<()> {
            for (i, layer) in seq.iter_mut().enumerate() {
                let path = LayerPath::at(parent, i);
                f(&path, layer.as_mut())?;
                for (b, branch) in layer.branches_mut().iter_mut().enumerate() {
                    walk(branch, Some((&path, b)), f)?;
                }
            }
            Ok(())
        }
        walk(&mut self.layers, None, f)
    }

    /// The path of every layer, in the order of [`Model::visit`].
    pub fn paths(&self) -> Vec<LayerPath> {
        let mut out = Vec::new();
        self.visit(&mut |p, _| out.push(p.clone()));
        out
    }

    /// The layer at `path`, if any.
    pub fn layer(&self, path: &LayerPath) -> Option<&dyn Layer> {
        let (seq, i) = self.sequence(path)?;
        seq.get(i).map(|l| l.as_ref())
    }

    /// The layer at `path`, mutable, if any.
    pub fn layer_mut(&mut self, path: &LayerPath) -> Option<&mut Box<dyn Layer>> {
        let (seq, i) = self.sequence_mut(path)?;
        seq.get_mut(i)
    }

    /// Replaces the layer at `path` by `with` (one layer, or several: a low-rank factorization
    /// puts two where there was one), returning the layer removed. Layers after `path` in the
    /// same sequence move by `with.len() - 1` positions; paths taken before the call must be
    /// taken again. Errors: no layer at `path`.
    pub fn replace(
        &mut self,
        path: &LayerPath,
        with: Vec<Box<dyn Layer>>,
    ) -> Result<Box<dyn Layer>> {
        let name = self.name.clone();
        let missing = || NnError::Config(format!("model {name}: no layer at path {path}"));
        let seq = self.sequence_vec_mut(path).ok_or_else(missing)?;
        let i = path.index();
        if i >= seq.len() {
            return Err(missing());
        }
        let mut removed: Vec<Box<dyn Layer>> = seq.splice(i..=i, with).collect();
        removed.pop().ok_or_else(missing)
    }

    /// Replaces every layer for which `f` returns a new one (a compressed twin, a densified
    /// layer), branches included; returns how many were replaced. All replacements are built
    /// before the model is touched, so on error it is unchanged. `f` sees each layer in the
    /// order of [`Model::visit`]; a replaced container's nested layers are still visited
    /// (their replacements are applied inside the old container, which is then dropped: do
    /// not replace both).
    pub fn rewrite(&mut self, f: &mut LayerRewrite<'_>) -> Result<usize> {
        let mut replacements = Vec::new();
        let mut err = None;
        self.visit(&mut |path, layer| {
            if err.is_some() {
                return;
            }
            match f(path, layer) {
                Ok(Some(new)) => replacements.push((path.clone(), new)),
                Ok(None) => {}
                Err(e) => err = Some(e),
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        let n = replacements.len();
        for (path, layer) in replacements {
            self.replace(&path, vec![layer])?;
        }
        Ok(n)
    }

    /// Every parameter (read-only) of every layer, nested ones included, with its layer's path.
    pub fn named_params(&self) -> Vec<(LayerPath, ParamRef<'_>)> {
        fn walk<'a>(
            seq: &'a [Box<dyn Layer>],
            parent: Option<(&LayerPath, usize)>,
            out: &mut Vec<(LayerPath, ParamRef<'a>)>,
        ) {
            for (i, layer) in seq.iter().enumerate() {
                let path = LayerPath::at(parent, i);
                for p in layer.params() {
                    out.push((path.clone(), p));
                }
                for (b, branch) in layer.branches().iter().enumerate() {
                    walk(branch, Some((&path, b)), out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.layers, None, &mut out);
        out
    }

    /// Every trainable parameter of every layer, nested ones included, with its layer's path:
    /// what optimizers and hooks key their per-parameter state by. A container owns no
    /// parameter (see [`Layer::branches`]), so its nested layers are visited instead.
    pub fn named_params_mut(&mut self) -> Vec<(LayerPath, ParamMut<'_>)> {
        fn walk<'a>(
            seq: &'a mut [Box<dyn Layer>],
            parent: Option<(&LayerPath, usize)>,
            out: &mut Vec<(LayerPath, ParamMut<'a>)>,
        ) {
            for (i, layer) in seq.iter_mut().enumerate() {
                let path = LayerPath::at(parent, i);
                if layer.branches().is_empty() {
                    for p in layer.params_mut() {
                        out.push((path.clone(), p));
                    }
                } else {
                    for (b, branch) in layer.branches_mut().iter_mut().enumerate() {
                        walk(branch, Some((&path, b)), out);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(&mut self.layers, None, &mut out);
        out
    }

    /// The sequence holding the layer at `path`, and its index there.
    fn sequence(&self, path: &LayerPath) -> Option<(&[Box<dyn Layer>], usize)> {
        let mut seq: &[Box<dyn Layer>] = &self.layers;
        for (layer, branch) in path.steps() {
            seq = seq.get(layer)?.branches().get(branch)?;
        }
        Some((seq, path.index()))
    }

    /// The sequence holding the layer at `path`, mutable, and its index there.
    fn sequence_mut(&mut self, path: &LayerPath) -> Option<(&mut Vec<Box<dyn Layer>>, usize)> {
        let i = path.index();
        self.sequence_vec_mut(path).map(|s| (s, i))
    }

    fn sequence_vec_mut(&mut self, path: &LayerPath) -> Option<&mut Vec<Box<dyn Layer>>> {
        let mut seq: &mut Vec<Box<dyn Layer>> = &mut self.layers;
        for (layer, branch) in path.steps() {
            seq = seq.get_mut(layer)?.branches_mut().get_mut(branch)?;
        }
        Some(seq)
    }
}

/// The most images per chunk of the inference fast path over a model's leading per-sample
/// layers ([`forward_in_chunks`]; `Model::forward` sizes its chunks by
/// [`EVAL_CHUNK_BYTES`]): each chunk runs every layer of the prefix on one thread, its
/// activations staying in that core's caches (32 cnn-teacher images: 3.2 MB after conv1,
/// against 25 MB for a batch of 256), and the chunks run in parallel.
/// Session 12 (chunks in turn, each layer forking over the chunk's images) measured chunk 8
/// / 32 / 64 on the 2-core Xeon, batch 256, 2 threads, quiet (`slimnet bench --seconds 2`,
/// images/s): cnn-teacher 6,422 / 7,324 / 7,164, lenet5 36,170 / 39,456 / 38,035, the wide
/// teacher 2,059 / 2,174 / 1,865.
pub const EVAL_CHUNK: usize = 32;

/// Bytes of activations a chunk of [`forward_in_chunks`] should hold at its largest step
/// (input and output of a layer, a convolution with its fused ReLU / pool counting once) when
/// `Model::forward` sizes the chunks: half the 2 MB L2 of a core of the reference Xeon, the
/// rest left to weights and the padded image. The chunk is this over the bytes per image,
/// between [`EVAL_CHUNK_MIN`] and [`EVAL_CHUNK`]: 8 images for cnn-teacher (125 KB per image at
/// conv2) and the wide teacher, 32 for lenet5 (15 KB) and lenet300. Measured under load
/// (session 13, docs/BENCHMARKS.md, `examples/eval_chunks`): cnn-teacher batch 256 on two
/// threads 2,220 images/s with 8-image chunks against 1,918 with 32, level on one thread;
/// lenet5 and lenet300 best at 32.
pub const EVAL_CHUNK_BYTES: usize = 1 << 20;

/// The fewest images per chunk `Model::forward` picks (see [`EVAL_CHUNK_BYTES`]).
pub const EVAL_CHUNK_MIN: usize = 8;

/// A layer that may run in the chunk-parallel prefix ([`forward_in_chunks`]): a dense layer
/// that computes each sample on its own at inference, with an inference path through a
/// shared reference. The one list of them: [`chunkable`] asks it and [`serial_eval_step`]
/// dispatches on it.
enum Chunked<'a> {
    Conv(&'a Conv2d),
    BatchNorm(&'a BatchNorm2d),
    ReLU(&'a ReLU),
    MaxPool(&'a MaxPool2d),
    Flatten,
    Dropout,
    Linear(&'a Linear),
}

impl<'a> Chunked<'a> {
    /// `layer` as a chunkable layer, or `None`.
    fn of(layer: &'a dyn Layer) -> Option<Self> {
        let a = layer.as_any();
        if let Some(l) = a.downcast_ref::<Conv2d>() {
            Some(Self::Conv(l))
        } else if let Some(l) = a.downcast_ref::<BatchNorm2d>() {
            Some(Self::BatchNorm(l))
        } else if let Some(l) = a.downcast_ref::<ReLU>() {
            Some(Self::ReLU(l))
        } else if let Some(l) = a.downcast_ref::<MaxPool2d>() {
            Some(Self::MaxPool(l))
        } else if a.is::<Flatten>() {
            Some(Self::Flatten)
        } else if a.is::<Dropout>() {
            Some(Self::Dropout)
        } else {
            a.downcast_ref::<Linear>().map(Self::Linear)
        }
    }
}

/// Whether `layer` may run in the chunk-parallel prefix (see [`Chunked`]).
fn chunkable(layer: &dyn Layer) -> bool {
    Chunked::of(layer).is_some()
}

/// How many leading layers are [`chunkable`] (every layer of the zoo's models).
fn chunk_prefix(layers: &[Box<dyn Layer>]) -> usize {
    layers.iter().take_while(|l| chunkable(l.as_ref())).count()
}

/// Runs `layers` (a [`chunk_prefix`]) on `x` in chunks of at most `chunk` images (`None`: by
/// [`EVAL_CHUNK_BYTES`]), the chunks
/// in parallel on the current rayon pool, each chunk through every layer on one thread
/// ([`serial_eval_step`] inside [`tensor_core::serial::run`]: the convolutions and linear
/// layers do not fork again) and into its slice of the output: one fork/join per batch
/// instead of one per layer and chunk, and no thread waits for the other between layers.
/// The number of chunks is rounded up to a multiple of the pool's threads (33 images on two
/// threads: 17 + 16, not 32 + 1), each of two images at least; a batch of fewer than
/// [`PAR_MIN_FLOP`] runs on the calling thread in one chunk. Every image is computed on its own by the same kernels, so the
/// result is the same bits whatever the chunking and thread count.
fn forward_in_chunks(
    layers: &[Box<dyn Layer>],
    x: &Tensor,
    chunk: Option<usize>,
) -> Result<Tensor> {
    let n = x.dims()[0];
    let mut shape = x.shape().clone();
    let mut macs = 0u64;
    // The largest input + output of one step (a convolution with its fused epilogue counts
    // once), in floats for the whole batch.
    let mut peak = 0;
    let mut i = 0;
    while i < layers.len() {
        let used = match layers[i].as_any().downcast_ref::<Conv2d>() {
            Some(_) => conv_epilogue(&layers[i + 1..]).1,
            None => 1,
        };
        let before = shape.numel();
        for l in &layers[i..i + used] {
            macs = macs.saturating_add(l.macs(&shape)?);
            shape = l.output_shape(&shape)?;
            // Packed here once, not by each thread's first chunk.
            if let Some(conv) = l.as_any().downcast_ref::<Conv2d>() {
                conv.prepare_inference()?;
            } else if let Some(linear) = l.as_any().downcast_ref::<Linear>() {
                linear.prepare_inference()?;
            }
        }
        peak = peak.max(before + shape.numel());
        i += used;
    }
    let chunk = chunk.unwrap_or_else(|| {
        let per_image = 4 * peak / n.max(1);
        (EVAL_CHUNK_BYTES / per_image.max(1)).clamp(EVAL_CHUNK_MIN, EVAL_CHUNK)
    });
    let mut out = Tensor::zeros(shape);
    let (per_in, per_out) = (x.numel() / n.max(1), out.numel() / n.max(1));
    let threads = rayon::current_num_threads().max(1);
    let small = macs.saturating_mul(2) < PAR_MIN_FLOP as u64;
    if n == 0 || per_in == 0 || per_out == 0 || (small && threads > 1) {
        return tensor_core::serial::run(|| forward_serial(layers, x.clone()));
    }
    // Sizes differ by one at most, and are two images at least: a linear layer computes a
    // single row by its GEMV, whose sums run in another order than its tiles'.
    let chunks = n
        .div_ceil(chunk.max(2))
        .next_multiple_of(threads)
        .min(n / 2)
        .max(1);
    let mut parts = Vec::with_capacity(chunks);
    let (mut xs, mut ys) = (x.data(), out.data_mut());
    for i in 0..chunks {
        let m = (i + 1) * n / chunks - i * n / chunks;
        let (xc, xr) = xs.split_at(m * per_in);
        let (yc, yr) = std::mem::take(&mut ys).split_at_mut(m * per_out);
        parts.push((m, xc, yc));
        (xs, ys) = (xr, yr);
    }
    parts
        .into_par_iter()
        .try_for_each(|(m, xi, yo)| -> Result<()> {
            let mut dims = x.dims().to_vec();
            dims[0] = m;
            let xc = Tensor::new(&dims, xi.to_vec())?;
            let y = tensor_core::serial::run(|| forward_serial(layers, xc))?;
            yo.copy_from_slice(y.data());
            Ok(())
        })?;
    Ok(out)
}

/// `layers` (a [`chunk_prefix`]) on `x`, one fused step ([`serial_eval_step`]) after another.
fn forward_serial(layers: &[Box<dyn Layer>], x: Tensor) -> Result<Tensor> {
    let mut y = x;
    let mut i = 0;
    while i < layers.len() {
        let (next, used) = serial_eval_step(&layers[i..], &y)?;
        y = next;
        i += used;
    }
    Ok(y)
}

/// The epilogue a convolution followed by `rest` fuses (ReLU, then a 2x2 max pool, each when
/// the next layer is one) and the number of layers that covers, the convolution included.
fn conv_epilogue(rest: &[Box<dyn Layer>]) -> (ConvEpilogue, usize) {
    let mut epi = ConvEpilogue::default();
    let mut used = 1;
    if rest.first().is_some_and(|l| l.as_any().is::<ReLU>()) {
        epi.relu = true;
        used += 1;
    }
    let pool2 = rest.get(used - 1).is_some_and(|l| {
        l.as_any()
            .downcast_ref::<MaxPool2d>()
            .is_some_and(|m| *m.params() == ConvEpilogue::pool_params())
    });
    if pool2 {
        epi.max_pool_2x2 = true;
        used += 1;
    }
    (epi, used)
}

/// One step of [`forward_in_chunks`]: `layers[0]` (see [`chunkable`]) with what it fuses
/// (a convolution's epilogue, a linear layer's ReLU), through shared references; returns the
/// output and the number of layers consumed.
fn serial_eval_step(layers: &[Box<dyn Layer>], x: &Tensor) -> Result<(Tensor, usize)> {
    let Some(layer) = Chunked::of(layers[0].as_ref()) else {
        return Err(NnError::Unsupported(format!(
            "layer {} in a chunked inference prefix (conv2d, batchnorm2d, relu, maxpool2d, \
             flatten, dropout and linear only)",
            layers[0].kind()
        )));
    };
    Ok(match layer {
        Chunked::Conv(conv) => {
            let (epi, used) = conv_epilogue(&layers[1..]);
            (conv.forward_fused(x, epi)?, used)
        }
        Chunked::Linear(linear) => match layers.get(1).is_some_and(|l| l.as_any().is::<ReLU>()) {
            true => (linear.forward_relu(x)?, 2),
            false => (linear.infer(x)?, 1),
        },
        Chunked::Flatten => {
            let out = layers[0].output_shape(x.shape())?;
            (x.clone().reshape(out.dims())?, 1)
        }
        // The identity at inference.
        Chunked::Dropout => (x.clone(), 1),
        Chunked::ReLU(relu) => (relu.infer(x), 1),
        Chunked::BatchNorm(bn) => (bn.infer(x)?, 1),
        Chunked::MaxPool(pool) => (pool.infer(x)?, 1),
    })
}

/// The inference fast path: runs `layers[0]` on `x`, fusing the layers after it into the same
/// pass where a kernel can (conv2d + ReLU + 2x2 max pool, conv2d + 2x2 max pool, linear +
/// ReLU), and returns the output with the number of layers consumed. The fused kernels
/// compute what the layers compute one by one (tested below against the layers run one
/// by one), without the intermediate tensors: at batch 256 a cnn-teacher ReLU alone copied
/// 25 MB.
/// A layer that runs a chain of its successors itself ([`Layer::forward_eval_chain`]) is
/// asked first.
fn fused_eval_step(layers: &mut [Box<dyn Layer>], x: &Tensor) -> Result<(Tensor, usize)> {
    let is_relu = |l: Option<&Box<dyn Layer>>| l.is_some_and(|l| l.as_any().is::<ReLU>());
    let (first, rest) = layers.split_at_mut(1);
    let layer = &mut first[0];
    if let Some((y, used)) = layer.forward_eval_chain(rest, x)? {
        return Ok((y, used.max(1)));
    }
    if let Some(conv) = layer.as_any().downcast_ref::<Conv2d>() {
        let (epi, used) = conv_epilogue(rest);
        return Ok((conv.forward_fused(x, epi)?, used));
    }
    if let Some(linear) = layer.as_any().downcast_ref::<Linear>()
        && is_relu(rest.first())
    {
        return Ok((linear.forward_relu(x)?, 2));
    }
    Ok((layer.forward(x, Mode::Eval)?, 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tensor_core::rng::Rng;
    use tensor_core::testing::assert_close;

    fn images(rng: &mut Rng, n: usize) -> Tensor {
        Tensor::new(
            &[n, 1, 28, 28],
            (0..n * 784).map(|_| rng.uniform()).collect(),
        )
        .unwrap()
    }

    /// Layer by layer, no fusion.
    fn unfused(m: &mut Model, x: &Tensor) -> Tensor {
        let mut y = x.clone();
        for l in m.layers.iter_mut() {
            y = l.forward(&y, Mode::Eval).unwrap();
        }
        y
    }

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    #[test]
    fn fused_eval_matches_layer_by_layer_on_the_zoo() {
        let mut rng = Rng::seed_from_u64(4);
        for name in crate::zoo::NAMES {
            let mut m = crate::zoo::build(name, &mut rng).unwrap();
            crate::layers::fold_batchnorms(&mut m).unwrap();
            for n in [1, 3, 33, 257] {
                let x = images(&mut rng, n);
                let plain = unfused(&mut m, &x);
                // The fused epilogues add the bias after the max (exact) and apply the same
                // ReLU: only the summation order of the kernels may differ, and it does not;
                // the chunks of the prefix, on one thread or two, compute each image alone.
                for threads in [1, 2] {
                    let fused = pool(threads).install(|| m.forward(&x, Mode::Eval)).unwrap();
                    assert_eq!(
                        fused.data(),
                        plain.data(),
                        "{name} batch {n} threads {threads}"
                    );
                }
                if *name != "cnn-teacher" && n < 100 {
                    // (The teacher's dropout is active in training mode.)
                    let train = m.forward(&x, Mode::Train).unwrap();
                    assert_close(train.data(), plain.data(), 1e-5, 1e-5);
                }
            }
        }
    }

    #[test]
    fn chunk_size_and_thread_count_do_not_change_the_prefix_bits() {
        let mut rng = Rng::seed_from_u64(6);
        for (name, fold) in crate::zoo::NAMES
            .iter()
            .flat_map(|n| [(n, true), (n, false)])
        {
            let mut m = crate::zoo::build(name, &mut rng).unwrap();
            if fold {
                crate::layers::fold_batchnorms(&mut m).unwrap();
            } else {
                // BatchNorm2d in the prefix as training leaves it, with running statistics
                // that are not the identity.
                for l in m.layers.iter_mut() {
                    if let Some(bn) = l.as_any_mut().downcast_mut::<BatchNorm2d>() {
                        let c = bn.num_features();
                        let mean: Vec<f32> = (0..c).map(|_| rng.normal()).collect();
                        let var: Vec<f32> = (0..c).map(|_| 0.5 + rng.uniform()).collect();
                        bn.set_buffer("running_mean", &mean).unwrap();
                        bn.set_buffer("running_var", &var).unwrap();
                    }
                }
            }
            let prefix = chunk_prefix(&m.layers);
            assert_eq!(prefix, m.layers.len(), "{name}: the whole model is chunked");
            let x = images(&mut rng, 37);
            // The prefix layer by layer, unfused, each on the whole batch.
            let mut want = x.clone();
            for l in m.layers[..prefix].iter_mut() {
                want = l.forward(&want, Mode::Eval).unwrap();
            }
            for threads in [1, 2, 3] {
                for chunk in [1, 5, 32, 64] {
                    let got = pool(threads)
                        .install(|| forward_in_chunks(&m.layers[..prefix], &x, Some(chunk)))
                        .unwrap();
                    assert_eq!(got.dims(), want.dims());
                    assert_eq!(
                        got.data(),
                        want.data(),
                        "{name} (BatchNorm folded: {fold}) chunk {chunk} threads {threads}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_bad_input_to_the_chunked_prefix_is_an_error() {
        let mut rng = Rng::seed_from_u64(8);
        let m = crate::zoo::build("lenet5", &mut rng).unwrap();
        // 12x12 images (the model's declared [1, 28, 28] is checked by `forward`, not here):
        // conv1 and the pool leave 4x4, too small for conv2's 5x5 window.
        let x = Tensor::zeros_dims(&[4, 1, 12, 12]).unwrap();
        let e = forward_in_chunks(&m.layers[..chunk_prefix(&m.layers)], &x, None).unwrap_err();
        assert!(e.to_string().contains("conv2d"), "{e}");
    }

    #[test]
    fn writing_weights_drops_the_inference_packing() {
        let mut rng = Rng::seed_from_u64(5);
        let mut m = crate::zoo::build("lenet5", &mut rng).unwrap();
        let x = images(&mut rng, 2);
        let before = m.forward(&x, Mode::Eval).unwrap();
        for (_, p) in m.named_params_mut() {
            p.value.data_mut().iter_mut().for_each(|v| *v *= 0.5);
        }
        let after = m.forward(&x, Mode::Eval).unwrap();
        assert_ne!(before.data(), after.data());
        // A fresh model from the halved weights computes the same as the repacked one.
        let mut fresh = Model::new("copy", &m.input_shape, Vec::new());
        for l in &m.layers {
            let r = l.record().unwrap();
            fresh
                .layers
                .push(crate::LayerRegistry::nn().build(&r).unwrap());
        }
        assert_eq!(fresh.forward(&x, Mode::Eval).unwrap().data(), after.data());
    }
}
