//! The Layer trait: the one interface dense and compressed layers share.

use std::any::Any;
use std::fmt::Debug;

use tensor_core::{Shape, Tensor};

use crate::error::Result;
use crate::record::LayerRecord;

/// Whether a forward pass is for training (cache activations, dropout on, batch statistics)
/// or for inference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Training: layers cache what `backward` needs; dropout and batch statistics are active.
    Train,
    /// Inference: no caches; dropout is the identity; BatchNorm uses running statistics.
    Eval,
}

/// Read access to one parameter.
#[derive(Debug)]
pub struct ParamRef<'a> {
    /// The parameter's name within its layer, in PyTorch's words (`weight`, `bias`,
    /// `running_mean`, ...).
    pub name: &'static str,
    /// The value.
    pub value: &'a Tensor,
}

/// Write access to one trainable parameter and its accumulated gradient: what optimizers and
/// Trainer hooks (pruning masks, centroid sharing, straight-through quantizers) act on.
#[derive(Debug)]
pub struct ParamMut<'a> {
    /// The parameter's name within its layer (`weight`, `bias`, ...).
    pub name: &'static str,
    /// The value.
    pub value: &'a mut Tensor,
    /// The gradient accumulated by `backward` since the last `zero_grad`.
    pub grad: &'a mut Tensor,
}

/// A layer of a network.
///
/// Contract (DESIGN.md): `forward` runs a batch (outermost dimension = batch); in
/// [`Mode::Train`] it caches what `backward` needs. `backward` takes the gradient of the
/// loss with respect to the output, returns the gradient with respect to the input, and
/// *accumulates* (adds to) the parameter gradients. Compressed representations (sparse,
/// shared, int8, binary, low-rank) implement this trait too, so a compressed model runs
/// without being re-densified; a layer that cannot train returns an error from `backward`.
pub trait Layer: Debug + Send + Sync {
    /// The layer kind, in the papers' words (`linear`, `conv2d`, `maxpool2d`, ...).
    fn kind(&self) -> &'static str;

    /// The output shape for a batch input of shape `input` (batch dimension included).
    fn output_shape(&self, input: &Shape) -> Result<Shape>;

    /// Runs the layer on a batch.
    fn forward(&mut self, input: &Tensor, mode: Mode) -> Result<Tensor>;

    /// Inference over this layer and some of the layers `next` after it in one step, for a
    /// layer that runs better together with its successors than one tensor at a time (the
    /// quantized layers keep their integer codes between them instead of materialising an
    /// f32 tensor per layer). Returns the output of the last layer it ran and how many
    /// layers that is (this one included), or `None` (the default) when it runs no chain;
    /// the model then calls [`Layer::forward`]. The output must equal running the same
    /// layers one by one in [`Mode::Eval`].
    fn forward_eval_chain(
        &mut self,
        _next: &mut [Box<dyn Layer>],
        _input: &Tensor,
    ) -> Result<Option<(Tensor, usize)>> {
        Ok(None)
    }

    /// Back-propagates `grad_output`; returns the input gradient, accumulates parameter
    /// gradients.
    fn backward(&mut self, grad_output: &Tensor) -> Result<Tensor>;

    /// [`Layer::forward`] on an input the caller gives away (a training loop passing each
    /// layer's output to the next): a layer that would copy its input (to cache it, or to
    /// transform it in place) keeps or reuses the buffer instead. Must return exactly what
    /// `forward(&input, mode)` returns and leave the same cache. Default: `forward`.
    fn forward_owned(&mut self, input: Tensor, mode: Mode) -> Result<Tensor> {
        self.forward(&input, mode)
    }

    /// [`Layer::backward`] on a gradient the caller gives away; the same result and the
    /// same accumulated parameter gradients. Default: `backward`.
    fn backward_owned(&mut self, grad_output: Tensor) -> Result<Tensor> {
        self.backward(&grad_output)
    }

    /// The layer's own parameters and buffers (read-only), trainable or not. A container
    /// ([`Layer::branches`]) owns none: its nested layers' parameters are reached through
    /// the model walk ([`crate::Model::visit`]), each under its own [`crate::LayerPath`].
    fn params(&self) -> Vec<ParamRef<'_>> {
        Vec::new()
    }

    /// The layer's own trainable parameters with their gradients (none for a container).
    fn params_mut(&mut self) -> Vec<ParamMut<'_>> {
        Vec::new()
    }

    /// The nested sequences of layers of a container (the branches of
    /// [`crate::layers::Parallel`]); empty for every other layer. The model walk descends
    /// through them, so a technique reaches and replaces nested layers by their path.
    fn branches(&self) -> &[Vec<Box<dyn Layer>>] {
        &[]
    }

    /// The nested sequences, mutable (see [`Layer::branches`]).
    fn branches_mut(&mut self) -> &mut [Vec<Box<dyn Layer>>] {
        &mut []
    }

    /// Number of stored parameters (trainable weights and biases; BatchNorm's running
    /// statistics are buffers and not counted, as PyTorch counts).
    fn param_count(&self) -> usize;

    /// Bytes the layer's parameters occupy in memory in their stored representation
    /// (4 per f32 weight for dense layers; indices, codebooks and bit-packed words included
    /// for compressed ones).
    fn stored_bytes(&self) -> usize {
        4 * self.param_count()
    }

    /// Multiply-accumulates for one forward pass of a batch of shape `input`.
    fn macs(&self, input: &Shape) -> Result<u64>;

    /// Sets every parameter gradient to zero.
    fn zero_grad(&mut self) {
        for p in self.params_mut() {
            p.grad.fill_zero();
        }
    }

    /// Drops cached activations (after training, to free memory).
    fn clear_cache(&mut self) {}

    /// Tells the layer whether `backward` must compute the input gradient. The first
    /// parametric layer of a model under training receives data, whose gradient nobody uses;
    /// layers with an expensive input gradient (Linear, Conv2d) then skip it and `backward`
    /// returns zeros of the input's shape. Default: needed, and ignored by layers for which
    /// the input gradient is cheap.
    fn set_input_grad_needed(&mut self, _needed: bool) {}

    /// The layer as a serializable record (kind, attributes, tensors): what model files, the
    /// `.slim` container and the ONNX importer store. The constructor registered for its
    /// kind in a [`crate::LayerRegistry`] rebuilds the layer from it; a layer that cannot be
    /// stored returns
    /// [`crate::NnError::Unsupported`].
    fn record(&self) -> Result<LayerRecord>;

    /// For downcasting (model I/O, fusing BatchNorm into a preceding conv, compression).
    fn as_any(&self) -> &dyn Any;

    /// For downcasting, mutable.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}
