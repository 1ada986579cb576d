//! SparseLinear: a pruned fully connected layer that runs from its CSR form (Han et al., 2015;
//! Deep Compression, section 6: sparse matrix-vector products at batch 1).

use std::any::Any;

use nn::layers::Linear;
use nn::{Layer, LayerRecord, Mode, NnError, ParamMut, ParamRef};
use tensor_core::{Shape, Tensor};

use super::stored;
use crate::sparse::{Batch1Layout, Csr, SparseParams, spmm};

/// `y = x W^T + b` with `W [out, in]` held as CSR (only the kept weights), run by the sparse
/// kernels: at batch 1 from a [`Batch1Layout`] (SELL-C-σ or column-block SELL, whichever
/// its cost model predicts faster for this layer), built from the CSR form at the first
/// batch-1 inference forward after loading or after a weight update; `spmm` for a batch; both cores
/// when the work pays.
///
/// Stored as Deep Compression's relative index (see `stored.rs`): record kind
/// `sparse_linear`, attributes `in_features`, `out_features`, `index_bits`, `entries`,
/// `bias`; payload `gaps` (packed gaps); tensors `values` and `bias`.
///
/// Trainable: the parameter `values` (one per kept weight) and `bias`; pruned weights have
/// no parameter, so they stay zero through retraining without a mask.
#[derive(Clone, Debug)]
pub struct SparseLinear {
    csr: Csr,
    index_bits: u32,
    /// The kept weights as the trainable parameter (copied into `csr` before a forward
    /// after any update through `params_mut`).
    values: Tensor,
    grad_values: Tensor,
    bias: Option<Tensor>,
    grad_bias: Option<Tensor>,
    dirty: bool,
    stored_bytes: usize,
    cache: Option<Tensor>,
    /// The batch-1 layout of `csr` (dropped when the values change).
    batch1: Option<Batch1Layout>,
}

impl SparseLinear {
    /// The sparse twin of `weight [out, in]` (zeros dropped) with `bias`, stored with
    /// `index_bits`-bit gaps.
    pub fn new(csr: Csr, bias: Option<Tensor>, index_bits: u32) -> nn::Result<Self> {
        if let Some(b) = &bias
            && b.dims() != [csr.rows()]
        {
            return Err(NnError::Config(format!(
                "sparse_linear: bias {} for {} outputs",
                b.shape(),
                csr.rows()
            )));
        }
        let ri = csr.to_relative_index(index_bits).map_err(NnError::from)?;
        let stored_bytes = ri.stored_bytes() + bias.as_ref().map_or(0, |b| 4 * b.numel());
        let values = Tensor::new(&[csr.nnz()], csr.values().to_vec())?;
        Ok(Self {
            grad_values: Tensor::zeros(values.shape().clone()),
            grad_bias: bias.as_ref().map(|b| Tensor::zeros(b.shape().clone())),
            csr,
            index_bits,
            values,
            bias,
            dirty: false,
            stored_bytes,
            cache: None,
            batch1: None,
        })
    }

    /// The sparse twin of a dense (pruned) `Linear`.
    pub fn from_linear(l: &Linear, index_bits: u32) -> crate::Result<Self> {
        let csr = Csr::from_dense(l.out_features(), l.in_features(), l.weight().data())?;
        Ok(Self::new(csr, l.bias().cloned(), index_bits)?)
    }

    /// The dense `Linear` with the same weights (zeros where pruned).
    pub fn to_linear(&self) -> nn::Result<Linear> {
        let w = Tensor::new(
            &[self.csr.rows(), self.csr.cols()],
            self.synced().to_dense(),
        )?;
        Linear::from_parts(w, self.bias.clone())
    }

    /// Rebuilds the layer from its record (see the type docs), validating every field.
    pub fn from_record(rec: &LayerRecord) -> nn::Result<Self> {
        rec.expect_kind("sparse_linear")?;
        let cols = rec.usize_in("in_features", 1, crate::sparse::MAX_SPARSE_DIM)?;
        let rows = rec.usize_in("out_features", 1, crate::sparse::MAX_SPARSE_DIM)?;
        let (csr, bits, bias) = stored::read(rec, rows, cols)?;
        Self::new(csr, bias, bits)
    }

    /// Kept fraction of the weights.
    pub fn density(&self) -> f64 {
        self.csr.density()
    }

    /// The weight in CSR form (with the latest trained values).
    pub fn csr(&self) -> Csr {
        self.synced()
    }

    fn synced(&self) -> Csr {
        let mut c = self.csr.clone();
        c.values_mut().copy_from_slice(self.values.data());
        c
    }

    fn sync(&mut self) {
        if self.dirty {
            self.csr.values_mut().copy_from_slice(self.values.data());
            self.dirty = false;
            self.batch1 = None;
        }
    }

    /// The batch-1 layout in use (built on the first call).
    pub fn batch1_layout(&mut self) -> &Batch1Layout {
        self.sync();
        self.batch1
            .get_or_insert_with(|| Batch1Layout::for_csr(&self.csr))
    }
}

impl Layer for SparseLinear {
    fn kind(&self) -> &'static str {
        "sparse_linear"
    }

    fn output_shape(&self, input: &Shape) -> nn::Result<Shape> {
        match input.dims() {
            [n, c] if *c == self.csr.cols() => Ok(Shape::new(&[*n, self.csr.rows()])?),
            _ => Err(NnError::BadInput {
                layer: "sparse_linear".into(),
                input: input.clone(),
                reason: format!("expected [batch, {}]", self.csr.cols()),
            }),
        }
    }

    fn forward(&mut self, input: &Tensor, mode: Mode) -> nn::Result<Tensor> {
        let out = self.output_shape(input.shape())?;
        self.sync();
        let batch = out.dims()[0];
        let mut y = Tensor::zeros(out);
        let bias = self.bias.as_ref().map(|b| b.data());
        let p = SparseParams::default();
        // Training steps change the values after every batch: they run CSR.
        if batch == 1 && mode != Mode::Train {
            let layout = self
                .batch1
                .get_or_insert_with(|| Batch1Layout::for_csr(&self.csr));
            layout.spmv(input.data(), bias, y.data_mut(), &p)?;
        } else {
            spmm(&self.csr, input.data(), batch, bias, y.data_mut(), &p)?;
        }
        if mode == Mode::Train {
            self.cache = Some(input.clone());
        }
        Ok(y)
    }

    /// `dx = g W`, `d values[k] = sum_b g[b, r] x[b, c]` for kept weight `k` at `(r, c)`,
    /// `d bias = sum_b g[b, :]`.
    fn backward(&mut self, grad_output: &Tensor) -> nn::Result<Tensor> {
        let x = self.cache.as_ref().ok_or_else(|| NnError::NoForwardCache {
            layer: "sparse_linear".into(),
        })?;
        let (rows, cols) = (self.csr.rows(), self.csr.cols());
        let batch = x.dims()[0];
        if grad_output.dims() != [batch, rows] {
            return Err(NnError::BadInput {
                layer: "sparse_linear".into(),
                input: grad_output.shape().clone(),
                reason: format!("gradient must be [{batch}, {rows}]"),
            });
        }
        let mut dx = Tensor::zeros(x.shape().clone());
        let (g, xd) = (grad_output.data(), x.data());
        let row_ptr = self.csr.row_ptr();
        let dv = self.grad_values.data_mut();
        let w = self.values.data();
        for r in 0..rows {
            for k in row_ptr[r] as usize..row_ptr[r + 1] as usize {
                let c = self.csr.col_idx().get(k).unwrap_or(0) as usize;
                let mut acc = 0.0f32;
                for b in 0..batch {
                    let gb = g[b * rows + r];
                    acc += gb * xd[b * cols + c];
                    dx.data_mut()[b * cols + c] += gb * w[k];
                }
                dv[k] += acc;
            }
        }
        if let Some(gb) = self.grad_bias.as_mut() {
            for b in 0..batch {
                for (d, &v) in gb.data_mut().iter_mut().zip(&g[b * rows..(b + 1) * rows]) {
                    *d += v;
                }
            }
        }
        Ok(dx)
    }

    fn params(&self) -> Vec<ParamRef<'_>> {
        let mut v = vec![ParamRef {
            name: "values",
            value: &self.values,
        }];
        if let Some(b) = &self.bias {
            v.push(ParamRef {
                name: "bias",
                value: b,
            });
        }
        v
    }

    fn params_mut(&mut self) -> Vec<ParamMut<'_>> {
        self.dirty = true;
        let mut v = vec![ParamMut {
            name: "values",
            value: &mut self.values,
            grad: &mut self.grad_values,
        }];
        if let (Some(b), Some(g)) = (self.bias.as_mut(), self.grad_bias.as_mut()) {
            v.push(ParamMut {
                name: "bias",
                value: b,
                grad: g,
            });
        }
        v
    }

    fn param_count(&self) -> usize {
        self.csr.nnz() + self.bias.as_ref().map_or(0, |b| b.numel())
    }

    /// Bytes of the relative-index form as written: packed gaps, one f32 per entry (fillers
    /// included), and the bias.
    fn stored_bytes(&self) -> usize {
        self.stored_bytes
    }

    fn macs(&self, input: &Shape) -> nn::Result<u64> {
        let out = self.output_shape(input)?;
        Ok(out.dims()[0] as u64 * self.csr.nnz() as u64)
    }

    fn clear_cache(&mut self) {
        self.cache = None;
    }

    fn record(&self) -> nn::Result<LayerRecord> {
        let rec = LayerRecord::new("sparse_linear")
            .with_int("in_features", self.csr.cols() as i64)
            .with_int("out_features", self.csr.rows() as i64);
        stored::write(rec, &self.synced(), self.index_bits, self.bias.as_ref())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
