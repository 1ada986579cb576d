//! SparseSharedConv2d: a pruned and shared convolution, stored as Deep Compression stores
//! it (relative index + codebook indices) and run from its sparse codes.

use std::any::Any;

use nn::layers::Conv2d;
use nn::layers::conv2d::{conv2d_params_from_record, conv2d_params_record};
use nn::{Layer, LayerRecord, Mode, NnError};
use tensor_core::conv::Conv2dParams;
use tensor_core::dispatch::F32Path;
use tensor_core::{Shape, Tensor};

use super::stored;
use crate::conv::shared_conv2d;
use crate::sparse::SparseShared;
use crate::storage::LayerStorage;

/// A convolution whose pruned weight `[O, C/groups * kh * kw]` is held as [`SparseShared`]
/// and run by [`shared_conv2d`] (im2col, then each stored entry scales a row of patches).
///
/// Stored (record kind `sparse_shared_conv2d`): the geometry attributes of `conv2d`, then
/// the sparse codes of the layers' stored form (`bits`, `index_bits` (8 by default for
/// conv, Deep Compression section 2), `entries`, `bias`; payloads `gaps` and `codes`;
/// tensors `codebook` and `bias`).
///
/// Inference only: `backward` is an error.
#[derive(Clone, Debug)]
pub struct SparseSharedConv2d {
    params: Conv2dParams,
    matrix: SparseShared,
    bits: u32,
    index_bits: u32,
    bias: Option<Tensor>,
    storage: LayerStorage,
}

impl SparseSharedConv2d {
    /// The convolution of geometry `params` with weight `matrix`, codes `bits` wide
    /// (1..=8), gaps `index_bits` wide (1..=16), and `bias` (`[O]`).
    pub fn new(
        params: Conv2dParams,
        matrix: SparseShared,
        bits: u32,
        index_bits: u32,
        bias: Option<Tensor>,
    ) -> nn::Result<Self> {
        params.validate()?;
        super::check_sparse("sparse_shared_conv2d", &matrix, bits)?;
        super::check_conv(
            "sparse_shared_conv2d",
            &params,
            matrix.rows(),
            matrix.cols(),
            &bias,
        )?;
        let storage = LayerStorage::sparse(
            "sparse_shared_conv2d",
            &matrix,
            bits,
            index_bits,
            bias.as_ref(),
        )
        .map_err(NnError::from)?;
        Ok(Self {
            params,
            matrix,
            bits,
            index_bits,
            bias,
            storage,
        })
    }

    /// Rebuilds the layer from its record (see the type docs), validating every field.
    pub fn from_record(rec: &LayerRecord) -> nn::Result<Self> {
        rec.expect_kind("sparse_shared_conv2d")?;
        let params = conv2d_params_from_record(rec)?;
        let (m, bits, index_bits, bias) =
            stored::read_sparse(rec, params.out_channels, params.patch_len())?;
        Self::new(params, m, bits, index_bits, bias)
            .map_err(|e| rec.corrupt("attributes", e.to_string()))
    }

    /// The dense `Conv2d` with the weights the codes stand for (zeros where pruned).
    pub fn to_conv2d(&self) -> nn::Result<Conv2d> {
        let w = Tensor::new(&self.params.weight_dims(), self.matrix.to_dense())?;
        Conv2d::from_parts(self.params, w, self.bias.clone())
    }

    /// The geometry.
    pub fn params(&self) -> &Conv2dParams {
        &self.params
    }

    /// The sparse codes and codebook.
    pub fn matrix(&self) -> &SparseShared {
        &self.matrix
    }

    /// Code width in bits.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// The bytes of its stored form, item by item.
    pub fn storage(&self) -> LayerStorage {
        self.storage
    }
}

impl Layer for SparseSharedConv2d {
    fn kind(&self) -> &'static str {
        "sparse_shared_conv2d"
    }

    fn output_shape(&self, input: &Shape) -> nn::Result<Shape> {
        super::conv_output_shape("sparse_shared_conv2d", &self.params, input)
    }

    fn forward(&mut self, input: &Tensor, _mode: Mode) -> nn::Result<Tensor> {
        self.output_shape(input.shape())?;
        Ok(shared_conv2d(
            F32Path::selected(),
            input,
            &self.matrix,
            self.bias.as_ref().map(|b| b.data()),
            &self.params,
        )?)
    }

    fn backward(&mut self, _grad_output: &Tensor) -> nn::Result<Tensor> {
        Err(NnError::Unsupported(
            "sparse_shared_conv2d backward: fine-tune the centroids on the dense pruned model, \
             then convert"
                .into(),
        ))
    }

    fn param_count(&self) -> usize {
        self.matrix.nnz() + self.bias.as_ref().map_or(0, |b| b.numel())
    }

    /// Packed gaps, packed codes, f32 codebook and bias, as written.
    fn stored_bytes(&self) -> usize {
        self.storage.bytes()
    }

    fn macs(&self, input: &Shape) -> nn::Result<u64> {
        let d = self.output_shape(input)?;
        let d = d.dims();
        Ok((d[0] * d[2] * d[3]) as u64 * self.matrix.nnz() as u64)
    }

    fn record(&self) -> nn::Result<LayerRecord> {
        let rec = conv2d_params_record("sparse_shared_conv2d", &self.params);
        stored::write_sparse(
            rec,
            &self.matrix,
            self.bits,
            self.index_bits,
            self.bias.as_ref(),
        )
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
