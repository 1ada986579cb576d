//! Chains of quantized layers run on u8 codes: a `quantize` layer or a quantized layer whose
//! output codes are exactly the next quantized layer's input codes (same scale, zero point and
//! width) hands them over as u8 in the layout the next layer reads, instead of an f32 tensor
//! of codes in `[N, C, H, W]` that the next layer checks, converts and transposes again.
//!
//! - convolution -> convolution: the requantization epilogue writes each output position's
//!   `O` codes contiguously into the next convolution's channels-last buffer, inside its
//!   padding (padding bytes = its input zero point), so the next layer's patches are read in
//!   place with no transposition;
//! - convolution -> (flatten) -> linear: the codes go in `[O, PH, PW]` order (the flatten
//!   order) into the linear layer's input row;
//! - linear -> linear: the codes go into the next layer's input rows;
//! - `quantize` -> first layer: real values are quantized (ONNX QuantizeLinear) straight into
//!   that layer's layout.
//!
//! Dropout (the identity at inference) may sit anywhere between, a flatten between a
//! convolution or `quantize` and a linear layer. 2x2 max pooling is already fused into the
//! convolution (on the raw sums). The codes are the same integers the layers compute one by
//! one (tested: bit-exact), so a chain's output equals theirs exactly.
//!
//! Batches: the convolutions of a chain run image by image (two images per task on rayon's
//! threads for batches of at least two images per thread, else one image at a time split
//! into bands of rows as [`QuantConv2d`] does), so an image's codes stay in cache from one
//! layer to the next; the linear layers then run on the whole batch's rows.

use nn::layers::{Dropout, Flatten};
use nn::{Layer, NnError};
use rayon::prelude::*;
use tensor_core::dispatch::{Int8Path, KernelPath};
use tensor_core::{Shape, Tensor};

use super::boundary::Quantize;
use super::core::QuantOutput;
use super::quant_conv2d::Geometry;
use super::sink::{Shared, Sink};
use super::{QuantConv2d, QuantLinear};
use crate::affine::quantize_value;
use crate::gemm::{gemm_u7i8_requantized, gemm_u7i8_with, padded_depth};
use crate::params::QuantParams;

/// Images per task when a batch is spread over threads by image.
const IMAGES_PER_TASK: usize = 2;

/// A quantized layer of a chain.
#[derive(Clone, Copy)]
enum Stage<'a> {
    Conv(&'a QuantConv2d),
    Linear(&'a QuantLinear),
}

impl<'a> Stage<'a> {
    fn of(l: &'a dyn Layer) -> Option<Self> {
        let a = l.as_any();
        a.downcast_ref::<QuantConv2d>()
            .map(Stage::Conv)
            .or_else(|| a.downcast_ref::<QuantLinear>().map(Stage::Linear))
    }

    fn input(self) -> &'a QuantParams {
        match self {
            Stage::Conv(c) => c.core().input(),
            Stage::Linear(l) => l.core().input(),
        }
    }

    fn output(self) -> &'a QuantOutput {
        match self {
            Stage::Conv(c) => c.core().output(),
            Stage::Linear(l) => l.core().output(),
        }
    }
}

/// A planned chain: an optional leading `quantize`, convolutions, then linear layers.
struct Chain<'a> {
    quantize: Option<&'a Quantize>,
    convs: Vec<&'a QuantConv2d>,
    linears: Vec<&'a QuantLinear>,
    /// The layers it spans (the first one included).
    layers: Vec<&'a dyn Layer>,
}

impl<'a> Chain<'a> {
    /// The longest chain starting at `layers[0]`, or `None` when it would hold a single layer.
    fn plan(layers: &[&'a dyn Layer]) -> Option<Self> {
        let first = *layers.first()?;
        let quantize = first.as_any().downcast_ref::<Quantize>();
        let mut stages: Vec<Stage<'a>> = Vec::new();
        let mut codes: Option<&QuantParams> = quantize.map(Quantize::params);
        let mut flattened = false;
        let mut end = 1;
        if quantize.is_none() {
            let s = Stage::of(first)?;
            codes = match s.output() {
                QuantOutput::Codes(p) => Some(p),
                QuantOutput::Float => None,
            };
            stages.push(s);
        }
        let mut i = 1;
        while let (Some(p), Some(&l)) = (codes, layers.get(i)) {
            let a = l.as_any();
            let after_conv_or_input = matches!(stages.last(), None | Some(Stage::Conv(_)));
            if a.is::<Dropout>() {
                i += 1;
                continue;
            }
            if a.is::<Flatten>() && !flattened && after_conv_or_input {
                flattened = true;
                i += 1;
                continue;
            }
            let Some(s) = Stage::of(l) else { break };
            let fits = match s {
                Stage::Conv(_) => !flattened && after_conv_or_input,
                Stage::Linear(_) => true,
            };
            if !fits || s.input() != p {
                break;
            }
            codes = match s.output() {
                QuantOutput::Codes(p) => Some(p),
                QuantOutput::Float => None,
            };
            stages.push(s);
            i += 1;
            end = i;
        }
        let links = stages.len() + usize::from(quantize.is_some());
        if links < 2 {
            return None;
        }
        let mut convs = Vec::new();
        let mut linears = Vec::new();
        for s in stages {
            match s {
                Stage::Conv(c) => convs.push(c),
                Stage::Linear(l) => linears.push(l),
            }
        }
        Some(Self {
            quantize,
            convs,
            linears,
            layers: layers[..end].to_vec(),
        })
    }

    /// The chain's output on `path`: what its layers compute one by one.
    fn forward_with(&self, path: Int8Path, input: &Tensor) -> nn::Result<Tensor> {
        path.require("quantized chain")?;
        let mut shape = input.shape().clone();
        let mut shapes = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            shape = l.output_shape(&shape)?;
            shapes.push(shape.clone());
        }
        let n = input.dims()[0];
        if self.convs.is_empty() {
            let k = self.linears[0].core().packed().k();
            let kp = padded_depth(k);
            let mut rows = vec![0u8; n * kp];
            for (row, x) in rows.chunks_exact_mut(kp).zip(input.data().chunks_exact(k)) {
                self.codes_of(x, &mut row[..k])?;
            }
            return self.linear_layers(path, rows, n, &shape);
        }
        let geoms = self.geometries(input.shape())?;
        let image_in = input.dims()[1..].iter().product::<usize>();
        let last = &geoms[geoms.len() - 1];
        let image_out = last.o * last.ph * last.pw;
        let threads = rayon::current_num_threads();
        let by_image = threads > 1 && n >= 2 * threads;
        let run = |y: Sink, x: &[f32], split: bool| self.conv_image(path, &geoms, x, y, split);
        if self.linears.is_empty() {
            let mut out = vec![0f32; n * image_out];
            if by_image {
                out.par_chunks_mut(IMAGES_PER_TASK * image_out)
                    .zip(input.data().par_chunks(IMAGES_PER_TASK * image_in))
                    .try_for_each(|(y, x)| {
                        for (y, x) in y.chunks_exact_mut(image_out).zip(x.chunks(image_in)) {
                            run(Sink::Planes(Shared::new(y)), x, false)?;
                        }
                        Ok::<_, NnError>(())
                    })?;
            } else {
                for (y, x) in out
                    .chunks_exact_mut(image_out.max(1))
                    .zip(input.data().chunks(image_in.max(1)))
                {
                    run(Sink::Planes(Shared::new(y)), x, true)?;
                }
            }
            return Ok(Tensor::new(shape.dims(), out)?);
        }
        let kp = padded_depth(self.linears[0].core().packed().k());
        let mut rows = vec![0u8; n * kp];
        if by_image {
            rows.par_chunks_mut(IMAGES_PER_TASK * kp)
                .zip(input.data().par_chunks(IMAGES_PER_TASK * image_in))
                .try_for_each(|(y, x)| {
                    for (y, x) in y.chunks_exact_mut(kp).zip(x.chunks(image_in)) {
                        run(Sink::CodePlanes(Shared::new(&mut y[..image_out])), x, false)?;
                    }
                    Ok::<_, NnError>(())
                })?;
        } else {
            for (y, x) in rows
                .chunks_exact_mut(kp.max(1))
                .zip(input.data().chunks(image_in.max(1)))
            {
                run(Sink::CodePlanes(Shared::new(&mut y[..image_out])), x, true)?;
            }
        }
        self.linear_layers(path, rows, n, &shape)
    }

    /// Each convolution's sizes, its input shape propagated from `input`.
    fn geometries(&self, input: &Shape) -> nn::Result<Vec<Geometry>> {
        let mut shape = input.clone();
        let mut out = Vec::with_capacity(self.convs.len());
        for c in &self.convs {
            out.push(c.geometry(&shape)?);
            shape = c.output_shape(&shape)?;
        }
        Ok(out)
    }

    /// `x` (the chain's real input with a leading `quantize`, else the first layer's f32
    /// codes) as u8 codes: QuantizeLinear, or the codes checked.
    fn codes_of(&self, x: &[f32], dst: &mut [u8]) -> nn::Result<()> {
        match self.quantize {
            Some(q) => {
                let p = q.params();
                let (s, z, t) = (p.scales()[0], p.zero_points()[0], p.qtype());
                for (d, &v) in dst.iter_mut().zip(x) {
                    // In 0..=127: the chain's first layer takes these very parameters.
                    *d = quantize_value(v, s, z, t) as u8;
                }
                Ok(())
            }
            None => match (self.convs.first(), self.linears.first()) {
                (Some(c), _) => c.core().codes_to_u8("quant_conv2d", x, dst),
                (None, Some(l)) => l.core().codes_to_u8("quant_linear", x, dst),
                (None, None) => Ok(()),
            },
        }
    }

    /// One image through the convolutions: `x` in, the last one's output into `last`.
    fn conv_image(
        &self,
        path: Int8Path,
        geoms: &[Geometry],
        x: &[f32],
        last: Sink,
        split: bool,
    ) -> nn::Result<()> {
        with_buffers(|b| {
            b.codes.resize(x.len(), 0);
            self.codes_of(x, &mut b.codes)?;
            self.convs[0].place_channels_last(&geoms[0], &b.codes, &mut b.images[0]);
            for (i, (conv, g)) in self.convs.iter().zip(geoms).enumerate() {
                let [cur, next] = &mut b.images;
                let (cur, next) = if i % 2 == 0 { (cur, next) } else { (next, cur) };
                let sink = match (self.convs.get(i + 1), geoms.get(i + 1)) {
                    (Some(nc), Some(ng)) => {
                        nc.blank_input(ng, next);
                        Sink::ChannelsLast(Shared::new(next), nc.frame(ng))
                    }
                    _ => last,
                };
                conv.image(path, g, cur, sink, split)?;
            }
            Ok(())
        })
    }

    /// The linear layers on the batch's input rows (`n` rows of the first one's padded depth).
    fn linear_layers(
        &self,
        path: Int8Path,
        mut rows: Vec<u8>,
        n: usize,
        shape: &Shape,
    ) -> nn::Result<Tensor> {
        let mut out = Vec::new();
        for (i, l) in self.linears.iter().enumerate() {
            let (k, o) = (l.core().packed().k(), l.core().packed().n());
            match (self.linears.get(i + 1), l.core().output()) {
                (Some(next), QuantOutput::Codes(p)) => {
                    // Requantized in the GEMM's epilogue into the next layer's rows.
                    let kp = padded_depth(next.core().packed().k());
                    let mut next_rows = vec![0u8; n * kp];
                    let requant = l.core().requant(p);
                    let w = l.core().packed();
                    gemm_u7i8_requantized(
                        path,
                        &rows,
                        padded_depth(k),
                        n,
                        w,
                        &requant,
                        &mut next_rows,
                        kp,
                    )?;
                    rows = next_rows;
                }
                _ => {
                    let mut c = vec![0i32; n * o];
                    gemm_u7i8_with(path, &rows, padded_depth(k), n, l.core().packed(), &mut c)?;
                    out = vec![0f32; n * o];
                    for (dst, raw) in out.chunks_exact_mut(o).zip(c.chunks_exact(o)) {
                        l.core().finish_row(raw, dst);
                    }
                }
            }
        }
        Ok(Tensor::new(shape.dims(), out)?)
    }
}

/// A thread's chain buffers: the f32 input's codes and two channels-last images (the
/// current convolution's input and the next one's, swapped layer by layer).
#[derive(Default)]
struct Buffers {
    codes: Vec<u8>,
    images: [Vec<u8>; 2],
}

thread_local! {
    static BUFFERS: std::cell::RefCell<Buffers> = std::cell::RefCell::default();
}

/// Runs `f` on this thread's [`Buffers`] (taken out for the call).
fn with_buffers<T>(f: impl FnOnce(&mut Buffers) -> T) -> T {
    let mut b = BUFFERS.with(|c| c.take());
    let out = f(&mut b);
    BUFFERS.with(|c| c.replace(b));
    out
}

/// Runs the chain of quantized layers that starts at `layers[0]` on `path`, in inference:
/// `Some((output, layers used))`, or `None` when `layers[0]` starts no chain of at least two
/// layers (see the module documentation) or the input is empty. The output equals running
/// the same layers one by one.
pub fn forward_chain_with(
    path: Int8Path,
    layers: &[&dyn Layer],
    input: &Tensor,
) -> nn::Result<Option<(Tensor, usize)>> {
    if input.data().is_empty() {
        return Ok(None);
    }
    match Chain::plan(layers) {
        Some(chain) => Ok(Some((chain.forward_with(path, input)?, chain.layers.len()))),
        None => Ok(None),
    }
}

/// [`Layer::forward_eval_chain`] of the quantized layers: the chain from `first` over `next`
/// on the selected path.
pub(crate) fn forward_eval_chain(
    first: &dyn Layer,
    next: &[Box<dyn Layer>],
    input: &Tensor,
) -> nn::Result<Option<(Tensor, usize)>> {
    let mut layers: Vec<&dyn Layer> = Vec::with_capacity(next.len() + 1);
    layers.push(first);
    layers.extend(next.iter().map(|l| l.as_ref()));
    forward_chain_with(Int8Path::selected(), &layers, input)
}
