//! The compressed layers of weight sharing, each run from its codebook and codes and stored
//! as Deep Compression stores it ([`stored`](self) module docs): [`SharedLinear`] and
//! [`SharedConv2d`] (dense `b`-bit codes), [`SparseSharedLinear`] and [`SparseSharedConv2d`]
//! (pruned and shared: relative index plus codes); [`register`] adds their kinds to a
//! layer registry, and [`layer_storage`] reports any of them item by item.

mod shared_conv2d;
mod shared_linear;
mod sparse_shared_conv2d;
mod sparse_shared_linear;
mod stored;

pub use shared_conv2d::SharedConv2d;
pub use shared_linear::SharedLinear;
pub use sparse_shared_conv2d::SparseSharedConv2d;
pub use sparse_shared_linear::SparseSharedLinear;

use nn::{Layer, LayerRegistry, NnError};
use tensor_core::conv::Conv2dParams;
use tensor_core::{Shape, Tensor};

use crate::lookup::SharedMatrix;
use crate::sparse::SparseShared;
use crate::storage::LayerStorage;

/// Registers `shared_linear`, `shared_conv2d`, `sparse_shared_linear` and
/// `sparse_shared_conv2d`.
pub fn register(registry: &mut LayerRegistry) -> nn::Result<()> {
    nn::register_kinds! { registry;
        "shared_linear" => SharedLinear,
        "shared_conv2d" => SharedConv2d,
        "sparse_shared_linear" => SparseSharedLinear,
        "sparse_shared_conv2d" => SparseSharedConv2d,
    }
    Ok(())
}

/// The storage of a shared layer of this crate (`None` for any other layer).
pub fn layer_storage(layer: &dyn Layer) -> Option<LayerStorage> {
    let any = layer.as_any();
    if let Some(l) = any.downcast_ref::<SharedLinear>() {
        Some(l.storage())
    } else if let Some(l) = any.downcast_ref::<SharedConv2d>() {
        Some(l.storage())
    } else if let Some(l) = any.downcast_ref::<SparseSharedLinear>() {
        Some(l.storage())
    } else {
        any.downcast_ref::<SparseSharedConv2d>()
            .map(|l| l.storage())
    }
}

/// Codes of 1..=8 bits, and a codebook that fits them.
fn check_bits(kind: &str, k: usize, bits: u32) -> nn::Result<()> {
    if !(1..=8).contains(&bits) || k > 1 << bits {
        return Err(NnError::Config(format!(
            "{kind}: {k} centroids do not fit {bits}-bit codes (1..=8 bits)"
        )));
    }
    Ok(())
}

fn check_shared(kind: &str, m: &SharedMatrix, bits: u32) -> nn::Result<()> {
    check_bits(kind, m.centroids().len(), bits)
}

fn check_sparse(kind: &str, m: &SparseShared, bits: u32) -> nn::Result<()> {
    check_bits(kind, m.centroids().len(), bits)
}

/// A `rows x cols` weight and a bias that fit the convolution `p`.
fn check_conv(
    kind: &str,
    p: &Conv2dParams,
    rows: usize,
    cols: usize,
    bias: &Option<Tensor>,
) -> nn::Result<()> {
    if rows != p.out_channels || cols != p.patch_len() {
        return Err(NnError::Config(format!(
            "{kind}: weight {rows} x {cols} for {p:?} (expected {} x {})",
            p.out_channels,
            p.patch_len()
        )));
    }
    if let Some(b) = bias
        && b.dims() != [p.out_channels]
    {
        return Err(NnError::Config(format!(
            "{kind}: bias {} for {} outputs",
            b.shape(),
            p.out_channels
        )));
    }
    Ok(())
}

fn conv_output_shape(kind: &str, p: &Conv2dParams, input: &Shape) -> nn::Result<Shape> {
    let d = p.output_dims(input).map_err(|e| NnError::BadInput {
        layer: kind.into(),
        input: input.clone(),
        reason: e.to_string(),
    })?;
    Ok(Shape::new(&d)?)
}

/// The output shape of a linear layer of kind `kind` whose code matrix is `rows x cols`:
/// `[batch, cols] -> [batch, rows]`.
fn linear_output_shape(kind: &str, rows: usize, cols: usize, input: &Shape) -> nn::Result<Shape> {
    match input.dims() {
        [n, c] if *c == cols => Ok(Shape::new(&[*n, rows])?),
        _ => Err(NnError::BadInput {
            layer: kind.into(),
            input: input.clone(),
            reason: format!("expected [batch, {cols}]"),
        }),
    }
}

/// The forward pass of a linear layer executed from codes: `product(batch, x, y)` writes
/// `y = x W^T` (W never built), then the bias is added to every row.
fn linear_forward(
    kind: &str,
    (rows, cols): (usize, usize),
    input: &Tensor,
    bias: Option<&Tensor>,
    product: impl FnOnce(usize, &[f32], &mut [f32]) -> nn::Result<()>,
) -> nn::Result<Tensor> {
    let out = linear_output_shape(kind, rows, cols, input.shape())?;
    let batch = out.dims()[0];
    let mut y = Tensor::zeros(out);
    product(batch, input.data(), y.data_mut())?;
    if let Some(b) = bias {
        for row in y.data_mut().chunks_exact_mut(b.numel().max(1)) {
            row.iter_mut().zip(b.data()).for_each(|(v, &c)| *v += c);
        }
    }
    Ok(y)
}
