//! SparseSharedLinear: a pruned and shared fully connected layer, stored as Deep
//! Compression stores it (relative index + codebook indices) and run from its sparse codes.

use std::any::Any;

use nn::layers::Linear;
use nn::{Layer, LayerRecord, Mode, NnError};
use tensor_core::{Shape, Tensor};

use super::stored;
use crate::sparse::SparseShared;
use crate::storage::LayerStorage;

/// Largest feature count a record may declare (2^24).
const MAX_FEATURES: usize = 1 << 24;

/// `y = x W^T + b` with the pruned `W [out, in]` held as [`SparseShared`] (compressed rows
/// of codes) and run by its kernels: the sparse lookup GEMV at batch 1, the sparse lookup
/// GEMM for a batch, on both cores for large layers.
///
/// Stored (record kind `sparse_shared_linear`): attributes `in_features`, `out_features`,
/// then the sparse codes of the layers' stored form: `bits`, `index_bits`, `entries`,
/// `bias`; payloads `gaps` (relative index, Deep Compression section 2) and `codes` (one
/// `bits`-bit cluster index per entry, fillers code 0, section 3); tensors `codebook` and
/// `bias`. Bytes written: `ceil(e * index_bits / 8) + ceil(e * bits / 8) + 4 k (+ 4 out)`
/// for `e` entries.
///
/// Inference only: `backward` is an error.
#[derive(Clone, Debug)]
pub struct SparseSharedLinear {
    matrix: SparseShared,
    bits: u32,
    index_bits: u32,
    bias: Option<Tensor>,
    storage: LayerStorage,
}

impl SparseSharedLinear {
    /// The layer of `matrix` (`[out, in]`), codes `bits` wide (1..=8), gaps `index_bits`
    /// wide (1..=16), and `bias`.
    pub fn new(
        matrix: SparseShared,
        bits: u32,
        index_bits: u32,
        bias: Option<Tensor>,
    ) -> nn::Result<Self> {
        super::check_sparse("sparse_shared_linear", &matrix, bits)?;
        if let Some(b) = &bias
            && b.dims() != [matrix.rows()]
        {
            return Err(NnError::Config(format!(
                "sparse_shared_linear: bias {} for {} outputs",
                b.shape(),
                matrix.rows()
            )));
        }
        let storage = LayerStorage::sparse(
            "sparse_shared_linear",
            &matrix,
            bits,
            index_bits,
            bias.as_ref(),
        )
        .map_err(NnError::from)?;
        Ok(Self {
            matrix,
            bits,
            index_bits,
            bias,
            storage,
        })
    }

    /// Rebuilds the layer from its record (see the type docs), validating every field before
    /// anything sized by it is allocated.
    pub fn from_record(rec: &LayerRecord) -> nn::Result<Self> {
        rec.expect_kind("sparse_shared_linear")?;
        let cols = rec.usize_in("in_features", 1, MAX_FEATURES)?;
        let rows = rec.usize_in("out_features", 1, MAX_FEATURES)?;
        let (m, bits, index_bits, bias) = stored::read_sparse(rec, rows, cols)?;
        Self::new(m, bits, index_bits, bias).map_err(|e| rec.corrupt("attributes", e.to_string()))
    }

    /// The sparse codes and codebook.
    pub fn matrix(&self) -> &SparseShared {
        &self.matrix
    }

    /// Code width in bits.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// The dense weight `[out, in]` the codes stand for, and the bias (for references).
    pub fn to_dense(&self) -> (Vec<f32>, Option<&Tensor>) {
        (self.matrix.to_dense(), self.bias.as_ref())
    }

    /// The dense `Linear` with the weights the codes stand for (zeros where pruned).
    pub fn to_linear(&self) -> nn::Result<Linear> {
        let w = Tensor::new(
            &[self.matrix.rows(), self.matrix.cols()],
            self.matrix.to_dense(),
        )?;
        Linear::from_parts(w, self.bias.clone())
    }

    /// The bytes of its stored form, item by item.
    pub fn storage(&self) -> LayerStorage {
        self.storage
    }
}

impl Layer for SparseSharedLinear {
    fn kind(&self) -> &'static str {
        "sparse_shared_linear"
    }

    fn output_shape(&self, input: &Shape) -> nn::Result<Shape> {
        super::linear_output_shape(
            "sparse_shared_linear",
            self.matrix.rows(),
            self.matrix.cols(),
            input,
        )
    }

    fn forward(&mut self, input: &Tensor, _mode: Mode) -> nn::Result<Tensor> {
        let m = &self.matrix;
        super::linear_forward(
            "sparse_shared_linear",
            (m.rows(), m.cols()),
            input,
            self.bias.as_ref(),
            |batch, x, y| Ok(m.forward(batch, x, y)?),
        )
    }

    fn backward(&mut self, _grad_output: &Tensor) -> nn::Result<Tensor> {
        Err(NnError::Unsupported(
            "sparse_shared_linear backward: fine-tune the centroids on the dense pruned model, \
             then convert"
                .into(),
        ))
    }

    /// Stored weights plus the bias.
    fn param_count(&self) -> usize {
        self.matrix.nnz() + self.bias.as_ref().map_or(0, |b| b.numel())
    }

    /// Packed gaps, packed codes, f32 codebook and bias, as written.
    fn stored_bytes(&self) -> usize {
        self.storage.bytes()
    }

    fn macs(&self, input: &Shape) -> nn::Result<u64> {
        let out = self.output_shape(input)?;
        Ok(out.dims()[0] as u64 * self.matrix.nnz() as u64)
    }

    fn record(&self) -> nn::Result<LayerRecord> {
        let rec = LayerRecord::new("sparse_shared_linear")
            .with_int("in_features", self.matrix.cols() as i64)
            .with_int("out_features", self.matrix.rows() as i64);
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
