//! SharedLinear: a fully connected layer whose weights are codes into a codebook (Deep
//! Compression, section 3), executed from (codebook, codes) without rebuilding the dense matrix.

use std::any::Any;

use nn::layers::Linear;
use nn::{Layer, LayerRecord, Mode, NnError};
use tensor_core::{Shape, Tensor};

use super::stored;
use crate::kmeans::KMeansParams;
use crate::lookup::SharedMatrix;
use crate::shared::{SharedWeights, share_nonzeros};
use crate::storage::LayerStorage;

/// Largest feature count a record may declare (2^24).
const MAX_FEATURES: usize = 1 << 24;

/// `y = x W^T + b` with `W [out, in]` given by `codebook[codes]`, run by
/// [`SharedMatrix::forward`] (codes unpacked to bytes once, at load).
///
/// Stored (record kind `shared_linear`): attributes `in_features`, `out_features`, `bits`
/// (code width, 1..=8), `bias` in {0, 1}; tensor `codebook` `[k]` (`k <= 2^bits`); payload
/// `codes`, the `in * out` codes packed LSB-first in `bits` bits
/// ([`crate::PackedCodes`]: `ceil(n * bits / 8)` bytes, zero padding, every code `< k`); tensor
/// `bias` `[out]`. Bytes written: `ceil(n * bits / 8) + 4 k (+ 4 out)`, Deep Compression's
/// `n log2(k) + k * 32` bits.
///
/// Inference only: `backward` is an error (fine-tune the centroids on the dense model with
/// the sharing hook, then convert).
#[derive(Clone, Debug)]
pub struct SharedLinear {
    matrix: SharedMatrix,
    bits: u32,
    bias: Option<Tensor>,
}

impl SharedLinear {
    /// The layer of `matrix` (`[out, in]`), codes `bits` wide, and `bias`.
    pub fn new(matrix: SharedMatrix, bits: u32, bias: Option<Tensor>) -> nn::Result<Self> {
        super::check_shared("shared_linear", &matrix, bits)?;
        if let Some(b) = &bias
            && b.dims() != [matrix.rows()]
        {
            return Err(NnError::Config(format!(
                "shared_linear: bias {} for {} outputs",
                b.shape(),
                matrix.rows()
            )));
        }
        Ok(Self { matrix, bits, bias })
    }

    /// Shares a dense `Linear`'s weights in `bits` bits ([`share_nonzeros`]: code 0 is the
    /// exact zero of pruned weights, the other codes k-means centroids of the nonzeros).
    pub fn from_linear(l: &Linear, bits: u32, params: &KMeansParams) -> crate::Result<Self> {
        let shared: SharedWeights = share_nonzeros(l.weight().data(), bits, params)?;
        let m = SharedMatrix::from_shared(l.out_features(), l.in_features(), &shared)?;
        Ok(Self::new(m, bits, l.bias().cloned())?)
    }

    /// The dense `Linear` with the weights the codes stand for.
    pub fn to_linear(&self) -> nn::Result<Linear> {
        let w = Tensor::new(
            &[self.matrix.rows(), self.matrix.cols()],
            self.matrix.to_dense(),
        )?;
        Linear::from_parts(w, self.bias.clone())
    }

    /// Rebuilds the layer from its record (see the type docs), validating every field before
    /// anything sized by it is allocated.
    pub fn from_record(rec: &LayerRecord) -> nn::Result<Self> {
        rec.expect_kind("shared_linear")?;
        let cols = rec.usize_in("in_features", 1, MAX_FEATURES)?;
        let rows = rec.usize_in("out_features", 1, MAX_FEATURES)?;
        let (matrix, bits, bias) = stored::read_dense(rec, rows, cols)?;
        Self::new(matrix, bits, bias).map_err(|e| rec.corrupt("attributes", e.to_string()))
    }

    /// The codes and codebook.
    pub fn matrix(&self) -> &SharedMatrix {
        &self.matrix
    }

    /// The bytes of its stored form, item by item.
    pub fn storage(&self) -> LayerStorage {
        LayerStorage::dense(self.kind(), &self.matrix, self.bits, self.bias.as_ref())
    }

    /// The codebook.
    pub fn centroids(&self) -> &[f32] {
        self.matrix.centroids()
    }

    /// Code width in bits.
    pub fn bits(&self) -> u32 {
        self.bits
    }
}

impl Layer for SharedLinear {
    fn kind(&self) -> &'static str {
        "shared_linear"
    }

    fn output_shape(&self, input: &Shape) -> nn::Result<Shape> {
        super::linear_output_shape(
            "shared_linear",
            self.matrix.rows(),
            self.matrix.cols(),
            input,
        )
    }

    fn forward(&mut self, input: &Tensor, _mode: Mode) -> nn::Result<Tensor> {
        let m = &self.matrix;
        super::linear_forward(
            "shared_linear",
            (m.rows(), m.cols()),
            input,
            self.bias.as_ref(),
            |batch, x, y| Ok(m.forward(batch, x, y)?),
        )
    }

    fn backward(&mut self, _grad_output: &Tensor) -> nn::Result<Tensor> {
        Err(NnError::Unsupported(
            "shared_linear backward: fine-tune the centroids on the dense model (centroid \
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
        let out = self.output_shape(input)?;
        Ok((out.dims()[0] * self.matrix.rows() * self.matrix.cols()) as u64)
    }

    fn record(&self) -> nn::Result<LayerRecord> {
        let rec = LayerRecord::new("shared_linear")
            .with_int("in_features", self.matrix.cols() as i64)
            .with_int("out_features", self.matrix.rows() as i64);
        stored::write_dense(rec, &self.matrix, self.bits, self.bias.as_ref())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
