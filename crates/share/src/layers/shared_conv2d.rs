//! SharedConv2d: a convolution whose weights are codes into a codebook (Deep Compression,
//! section 3), executed from (codebook, codes) by im2col and the lookup GEMM.

use std::any::Any;

use nn::layers::Conv2d;
use nn::layers::conv2d::{conv2d_params_from_record, conv2d_params_record};
use nn::{Layer, LayerRecord, Mode, NnError};
use tensor_core::conv::Conv2dParams;
use tensor_core::dispatch::F32Path;
use tensor_core::{Shape, Tensor};

use super::stored;
use crate::conv::shared_conv2d;
use crate::kmeans::KMeansParams;
use crate::lookup::SharedMatrix;
use crate::shared::share_nonzeros;
use crate::storage::LayerStorage;

/// A convolution (stride, padding, dilation, groups as [`Conv2d`]) whose weight
/// `[O, C/groups, kh, kw]` is the `[O, C/groups * kh * kw]` matrix of byte codes of a
/// [`SharedMatrix`], run by [`shared_conv2d`] (im2col, then each code scales a row of
/// patches: the f32 weight is never built).
///
/// Stored (record kind `shared_conv2d`): the geometry attributes of `conv2d`
/// (`conv2d_params_record`), then the dense codes of the layers' stored form
/// (`bits`, `bias`, tensor `codebook`, payload `codes`, tensor `bias`). Bytes written:
/// `ceil(n * bits / 8) + 4 k (+ 4 O)`.
///
/// Inference only: `backward` is an error (fine-tune the centroids on the dense model with
/// the sharing hook, then convert).
#[derive(Clone, Debug)]
pub struct SharedConv2d {
    params: Conv2dParams,
    matrix: SharedMatrix,
    bits: u32,
    bias: Option<Tensor>,
}

impl SharedConv2d {
    /// The convolution of geometry `params` with weight `matrix` (`[O, C/groups * kh * kw]`),
    /// codes `bits` wide, and `bias` (`[O]`).
    pub fn new(
        params: Conv2dParams,
        matrix: SharedMatrix,
        bits: u32,
        bias: Option<Tensor>,
    ) -> nn::Result<Self> {
        params.validate()?;
        super::check_shared("shared_conv2d", &matrix, bits)?;
        super::check_conv(
            "shared_conv2d",
            &params,
            matrix.rows(),
            matrix.cols(),
            &bias,
        )?;
        Ok(Self {
            params,
            matrix,
            bits,
            bias,
        })
    }

    /// Shares a dense `Conv2d`'s weights in `bits` bits (1..=8; code 0 the exact zero).
    pub fn from_conv2d(c: &Conv2d, bits: u32, params: &KMeansParams) -> crate::Result<Self> {
        let p = *c.params();
        let shared = share_nonzeros(c.weight().data(), bits, params)?;
        let m = SharedMatrix::from_shared(p.out_channels, p.patch_len(), &shared)?;
        Ok(Self::new(p, m, bits, c.bias().cloned())?)
    }

    /// The dense `Conv2d` with the weights the codes stand for.
    pub fn to_conv2d(&self) -> nn::Result<Conv2d> {
        let w = Tensor::new(&self.params.weight_dims(), self.matrix.to_dense())?;
        Conv2d::from_parts(self.params, w, self.bias.clone())
    }

    /// Rebuilds the layer from its record (see the type docs), validating every field before
    /// anything sized by it is allocated.
    pub fn from_record(rec: &LayerRecord) -> nn::Result<Self> {
        rec.expect_kind("shared_conv2d")?;
        let params = conv2d_params_from_record(rec)?;
        let (matrix, bits, bias) =
            stored::read_dense(rec, params.out_channels, params.patch_len())?;
        Self::new(params, matrix, bits, bias).map_err(|e| rec.corrupt("attributes", e.to_string()))
    }

    /// The geometry.
    pub fn params(&self) -> &Conv2dParams {
        &self.params
    }

    /// The codes and codebook.
    pub fn matrix(&self) -> &SharedMatrix {
        &self.matrix
    }

    /// Code width in bits.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// The bytes of its stored form, item by item.
    pub fn storage(&self) -> LayerStorage {
        LayerStorage::dense(self.kind(), &self.matrix, self.bits, self.bias.as_ref())
    }
}

impl Layer for SharedConv2d {
    fn kind(&self) -> &'static str {
        "shared_conv2d"
    }

    fn output_shape(&self, input: &Shape) -> nn::Result<Shape> {
        super::conv_output_shape("shared_conv2d", &self.params, input)
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
            "shared_conv2d backward: fine-tune the centroids on the dense model (centroid \
             gradients, Deep Compression eq. 3), then convert"
                .into(),
        ))
    }

    /// Weights (one code each) plus the bias.
    fn param_count(&self) -> usize {
        self.matrix.rows() * self.matrix.cols() + self.bias.as_ref().map_or(0, |b| b.numel())
    }

    /// Packed codes, f32 codebook and bias, as written.
    fn stored_bytes(&self) -> usize {
        self.storage().bytes()
    }

    fn macs(&self, input: &Shape) -> nn::Result<u64> {
        let d = self.output_shape(input)?;
        let d = d.dims();
        Ok((d[0] * d[2] * d[3]) as u64 * (self.matrix.rows() * self.matrix.cols()) as u64)
    }

    fn record(&self) -> nn::Result<LayerRecord> {
        let rec = conv2d_params_record("shared_conv2d", &self.params);
        stored::write_dense(rec, &self.matrix, self.bits, self.bias.as_ref())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
