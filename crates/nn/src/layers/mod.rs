//! The layers of nn, one file each, and [`register`], which adds their kinds to a
//! [`LayerRegistry`].
//!
//! Every layer here implements [`Layer`]: `forward` caches what `backward` needs only in
//! [`crate::Mode::Train`]; `backward` returns the input gradient and accumulates parameter
//! gradients; `record` / `from_record` convert to and from a [`LayerRecord`]. Kind names are
//! lower-case: `linear`, `conv2d`, `maxpool2d`, `avgpool2d`, `globalavgpool`, `relu`,
//! `sigmoid`, `tanh`, `flatten`, `dropout`, `batchnorm2d`; the piecewise-linear `clip`,
//! `hard_sigmoid`, `hard_swish`; the straight-through layers `sign` and
//! `fake_quantize`; the graph operators of [`onnx_ops`] and `parallel`.

#[macro_use]
mod elementwise;

pub mod avgpool2d;
pub mod batchnorm2d;
mod broadcast;
pub mod const_elementwise;
pub mod conv2d;
pub mod dropout;
pub mod fake_quantize;
pub mod flatten;
pub mod fold;
pub mod global_avg_pool;
pub mod hard_activation;
pub mod linear;
pub mod maxpool2d;
pub mod onnx_ops;
pub mod pad;
pub mod parallel;
mod params;
pub mod relu;
pub mod reshape;
pub mod sigmoid;
pub mod sign;
pub mod softmax;
mod straight_through;
pub mod tanh;
pub mod transpose;

pub use avgpool2d::AvgPool2d;
pub use batchnorm2d::BatchNorm2d;
pub use const_elementwise::{ArithOp, ConstElementwise};
pub use conv2d::Conv2d;
pub use dropout::Dropout;
pub use fake_quantize::FakeQuantize;
pub use flatten::Flatten;
pub use fold::{fold_batchnorm, fold_batchnorms};
pub use global_avg_pool::GlobalAvgPool;
pub use hard_activation::{HardActivation, HardKind};
pub use linear::Linear;
pub use maxpool2d::MaxPool2d;
pub use pad::Pad;
pub use parallel::{Merge, Parallel};
pub use relu::ReLU;
pub use reshape::Reshape;
pub use sigmoid::Sigmoid;
pub use sign::Sign;
pub use softmax::Softmax;
pub use tanh::Tanh;
pub use tensor_core::conv::{Conv2dParams, Padding};
pub use tensor_core::pool::Pool2dParams;
pub use transpose::Transpose;

use tensor_core::{Shape, Tensor};

use crate::error::{NnError, Result};
use crate::layer::Layer;
use crate::record::LayerRecord;
use crate::registry::LayerRegistry;

/// Registers every layer kind of nn: the dense layers, the graph operators of imported ONNX
/// models ([`onnx_ops`]), [`Parallel`] (whose branches rebuild through the registry they are
/// given) and the straight-through layers ([`Sign`], [`FakeQuantize`]). Each constructor
/// validates every attribute and every tensor shape against the attributes: a corrupt record
/// gives [`crate::NnError::Corrupt`] naming the kind and the attribute or tensor, never a panic.
pub fn register(registry: &mut LayerRegistry) -> Result<()> {
    crate::register_kinds! { registry;
        "linear" => Linear,
        "conv2d" => Conv2d,
        "maxpool2d" => MaxPool2d,
        "avgpool2d" => AvgPool2d,
        "globalavgpool" => GlobalAvgPool,
        "relu" => ReLU,
        "sigmoid" => Sigmoid,
        "tanh" => Tanh,
        "flatten" => Flatten,
        "dropout" => Dropout,
        "batchnorm2d" => BatchNorm2d,
        "sign" => Sign,
        "fake_quantize" => FakeQuantize,
    }
    onnx_ops::register(registry)
}

/// Overwrites the non-trainable buffer `name` of `layer` (BatchNorm2d's `running_mean` and
/// `running_var`) with `values`: what weight loaders use for tensors `params_mut` does not
/// expose.
pub fn set_buffer(layer: &mut dyn Layer, name: &str, values: &[f32]) -> Result<()> {
    let kind = layer.kind();
    if let Some(bn) = layer.as_any_mut().downcast_mut::<BatchNorm2d>() {
        return bn.set_buffer(name, values);
    }
    Err(NnError::Config(format!(
        "layer `{kind}` has no buffer named `{name}`"
    )))
}

/// Largest channel, feature or kernel count accepted from a record (2^24): a bound that
/// keeps every product of record attributes far from overflow; real networks stay far below.
pub(crate) const MAX_DIM: usize = 1 << 24;

/// The `BadInput` error of `layer` for `input`.
pub(crate) fn bad_input(layer: &str, input: &Shape, reason: impl Into<String>) -> NnError {
    NnError::BadInput {
        layer: layer.to_string(),
        input: input.clone(),
        reason: reason.into(),
    }
}

/// The `NoForwardCache` error of `layer`.
pub(crate) fn no_cache(layer: &str) -> NnError {
    NnError::NoForwardCache {
        layer: layer.to_string(),
    }
}

/// Checks that `grad` has the dimensions `want` (the cached forward output's).
pub(crate) fn check_grad(layer: &str, grad: &Tensor, want: &[usize]) -> Result<()> {
    if grad.dims() != want {
        return Err(bad_input(
            layer,
            grad.shape(),
            format!("gradient must have the forward output's shape {want:?}"),
        ));
    }
    Ok(())
}

/// A record's `usize` pair attribute (`[a, b]`), each in `[min, MAX_DIM]`.
pub(crate) fn pair_attr(rec: &LayerRecord, name: &str, min: usize) -> Result<(usize, usize)> {
    let v = rec.usizes_in(name, 2, min, MAX_DIM)?;
    Ok((v[0], v[1]))
}

/// A record's ONNX-ordered `pads` attribute `[top, left, bottom, right]`.
pub(crate) fn pads_attr(rec: &LayerRecord) -> Result<Padding> {
    let v = rec.usizes_in("pads", 4, 0, MAX_DIM)?;
    Ok(Padding::from_onnx([v[0], v[1], v[2], v[3]]))
}

/// Pooling geometry from a record's `kernel`, `stride`, `pads`, `dilation`, `ceil_mode`.
pub(crate) fn pool_params_from_record(rec: &LayerRecord) -> Result<Pool2dParams> {
    let p = Pool2dParams {
        kernel: pair_attr(rec, "kernel", 1)?,
        stride: pair_attr(rec, "stride", 1)?,
        padding: pads_attr(rec)?,
        dilation: pair_attr(rec, "dilation", 1)?,
        ceil_mode: rec.usize_in("ceil_mode", 0, 1)? == 1,
    };
    p.validate()
        .map_err(|e| rec.corrupt("attributes", e.to_string()))?;
    Ok(p)
}

/// The output shape of a pooling layer of `kind` on `input`, a geometry error as `BadInput`.
pub(crate) fn pool_output_shape(kind: &str, p: &Pool2dParams, input: &Shape) -> Result<Shape> {
    let d = p
        .output_dims(input)
        .map_err(|e| bad_input(kind, input, e.to_string()))?;
    Ok(Shape::new(&d)?)
}

/// The record of a pooling layer of `kind` (attributes only).
pub(crate) fn pool_record(kind: &str, p: &Pool2dParams) -> LayerRecord {
    LayerRecord::new(kind)
        .with_ints("kernel", &pair_ints(p.kernel))
        .with_ints("stride", &pair_ints(p.stride))
        .with_ints("pads", &pads_ints(p.padding))
        .with_ints("dilation", &pair_ints(p.dilation))
        .with_int("ceil_mode", p.ceil_mode as i64)
}

/// A `usize` pair as record integers.
pub(crate) fn pair_ints(p: (usize, usize)) -> [i64; 2] {
    [p.0 as i64, p.1 as i64]
}

/// Padding as record integers in ONNX order.
pub(crate) fn pads_ints(p: Padding) -> [i64; 4] {
    p.to_onnx().map(|v| v as i64)
}

/// Largest dimension, axis or pad a graph-operator record may hold.
const MAX_RECORD_SIZE: usize = 1 << 32;

/// A record's list of sizes `name` (dimensions, axes, pads): at most 64 values, each in
/// `[0, 2^32]`.
pub(crate) fn record_sizes(rec: &LayerRecord, name: &str) -> Result<Vec<usize>> {
    let v = rec.ints(name)?;
    if v.len() > 64 {
        return Err(rec.corrupt(format!("attribute `{name}`"), format!("{} values", v.len())));
    }
    v.iter()
        .map(|&x| {
            usize::try_from(x)
                .ok()
                .filter(|&u| u <= MAX_RECORD_SIZE)
                .ok_or_else(|| rec.corrupt(format!("attribute `{name}`"), format!("value {x}")))
        })
        .collect()
}

/// A `Shape` of `dims`, its error converted to [`NnError`].
pub(crate) fn shape_of(dims: &[usize]) -> Result<Shape> {
    Ok(Shape::new(dims)?)
}

/// `usize` values as record integers.
pub(crate) fn to_i64(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&x| x as i64).collect()
}

/// Uniform initialisation in `[-bound, bound)` (PyTorch's `kaiming_uniform_(a = sqrt(5))`
/// for weights and its bias rule both reduce to `bound = 1 / sqrt(fan_in)`).
pub(crate) fn uniform_tensor(
    dims: &[usize],
    bound: f32,
    rng: &mut tensor_core::rng::Rng,
) -> Result<Tensor> {
    let shape = Shape::new(dims)?;
    let data = (0..shape.numel())
        .map(|_| rng.uniform_range(-bound, bound))
        .collect();
    Ok(Tensor::from_vec(shape, data)?)
}

#[cfg(test)]
mod tests;
