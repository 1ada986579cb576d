//! Naive references of the lookup kernels: rebuild the dense matrix, then a triple loop.

use tensor_core::gemm::{GemmParams, gemm_reference};

use super::SharedMatrix;
use crate::error::Result;

/// `Y = X W^T` with `W` rebuilt dense from the codebook (`X` `[batch, cols]`, `Y`
/// `[batch, rows]`), each dot product summed in f64 by `tensor_core`'s reference GEMM.
///
/// Errors: `x` not `batch * cols` long.
pub fn forward(m: &SharedMatrix, batch: usize, x: &[f32]) -> Result<Vec<f32>> {
    let w = m.to_dense();
    let mut y = vec![0.0f32; batch * m.rows()];
    gemm_reference(
        batch,
        m.rows(),
        m.cols(),
        x,
        &w,
        &mut y,
        &GemmParams::with_trans(false, true),
    )?;
    Ok(y)
}
