//! SparseConv2d: a pruned convolution that runs from its CSR form (the weight as the matrix
//! `[out, in/groups * kh * kw]` applied to image patches).

use std::any::Any;

use nn::layers::Conv2d;
use nn::layers::conv2d::{conv2d_params_from_record, conv2d_params_record};
use nn::{Layer, LayerRecord, Mode, NnError};
use tensor_core::conv::Conv2dParams;
use tensor_core::{Shape, Tensor};

use super::stored;
use crate::sparse::{Csr, SparseParams, sparse_conv2d};

/// A convolution (stride, padding, dilation, groups as [`Conv2d`]) whose weight is held as
/// CSR and run by [`sparse_conv2d`].
///
/// Stored as Deep Compression's relative index with 8-bit gaps by default: record kind
/// `sparse_conv2d`, the geometry attributes of `conv2d`, `index_bits`, `entries`, `bias`;
/// payload `gaps`; tensors `values` and `bias`.
///
/// Inference only: `backward` is an error (retrain the masked dense model, then convert).
#[derive(Clone, Debug)]
pub struct SparseConv2d {
    params: Conv2dParams,
    csr: Csr,
    index_bits: u32,
    bias: Option<Tensor>,
    stored_bytes: usize,
}

impl SparseConv2d {
    /// The sparse convolution of geometry `params` with weight `csr` (`[out, patch]`).
    pub fn new(
        params: Conv2dParams,
        csr: Csr,
        bias: Option<Tensor>,
        index_bits: u32,
    ) -> nn::Result<Self> {
        params.validate()?;
        if csr.rows() != params.out_channels || csr.cols() != params.patch_len() {
            return Err(NnError::Config(format!(
                "sparse_conv2d: weight {} x {} for {params:?} (expected {} x {})",
                csr.rows(),
                csr.cols(),
                params.out_channels,
                params.patch_len()
            )));
        }
        if let Some(b) = &bias
            && b.dims() != [params.out_channels]
        {
            return Err(NnError::Config(format!(
                "sparse_conv2d: bias {} for {} outputs",
                b.shape(),
                params.out_channels
            )));
        }
        let ri = csr.to_relative_index(index_bits).map_err(NnError::from)?;
        let stored_bytes = ri.stored_bytes() + bias.as_ref().map_or(0, |b| 4 * b.numel());
        Ok(Self {
            params,
            csr,
            index_bits,
            bias,
            stored_bytes,
        })
    }

    /// The sparse twin of a dense (pruned) `Conv2d`.
    pub fn from_conv2d(c: &Conv2d, index_bits: u32) -> crate::Result<Self> {
        let p = *c.params();
        let csr = Csr::from_dense(p.out_channels, p.patch_len(), c.weight().data())?;
        Ok(Self::new(p, csr, c.bias().cloned(), index_bits)?)
    }

    /// The dense `Conv2d` with the same weights.
    pub fn to_conv2d(&self) -> nn::Result<Conv2d> {
        let w = Tensor::new(&self.params.weight_dims(), self.csr.to_dense())?;
        Conv2d::from_parts(self.params, w, self.bias.clone())
    }

    /// Rebuilds the layer from its record (see the type docs), validating every field.
    pub fn from_record(rec: &LayerRecord) -> nn::Result<Self> {
        rec.expect_kind("sparse_conv2d")?;
        let params = conv2d_params_from_record(rec)?;
        let (csr, bits, bias) = stored::read(rec, params.out_channels, params.patch_len())?;
        Self::new(params, csr, bias, bits)
    }

    /// Kept fraction of the weights.
    pub fn density(&self) -> f64 {
        self.csr.density()
    }
}

impl Layer for SparseConv2d {
    fn kind(&self) -> &'static str {
        "sparse_conv2d"
    }

    fn output_shape(&self, input: &Shape) -> nn::Result<Shape> {
        let d = self
            .params
            .output_dims(input)
            .map_err(|e| NnError::BadInput {
                layer: "sparse_conv2d".into(),
                input: input.clone(),
                reason: e.to_string(),
            })?;
        Ok(Shape::new(&d)?)
    }

    fn forward(&mut self, input: &Tensor, _mode: Mode) -> nn::Result<Tensor> {
        self.output_shape(input.shape())?;
        Ok(sparse_conv2d(
            input,
            &self.csr,
            self.bias.as_ref().map(|b| b.data()),
            &self.params,
            &SparseParams::default(),
        )?)
    }

    fn backward(&mut self, _grad_output: &Tensor) -> nn::Result<Tensor> {
        Err(NnError::Unsupported(
            "sparse_conv2d backward: retrain the masked dense conv2d (prune::MaskHook), then \
             convert it with prune::sparsify"
                .into(),
        ))
    }

    fn param_count(&self) -> usize {
        self.csr.nnz() + self.bias.as_ref().map_or(0, |b| b.numel())
    }

    /// Bytes of the relative-index form as written, bias included.
    fn stored_bytes(&self) -> usize {
        self.stored_bytes
    }

    fn macs(&self, input: &Shape) -> nn::Result<u64> {
        let d = self.output_shape(input)?;
        let d = d.dims();
        Ok((d[0] * d[2] * d[3]) as u64 * self.csr.nnz() as u64)
    }

    fn record(&self) -> nn::Result<LayerRecord> {
        let rec = conv2d_params_record("sparse_conv2d", &self.params);
        stored::write(rec, &self.csr, self.index_bits, self.bias.as_ref())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
