//! Shared convolutions run from their codes: im2col, then the lookup GEMM of the codes
//! (dense [`SharedMatrix`] or sparse [`SparseShared`]) on the patches.
//!
//! The convolution is `tensor_core::conv`'s (PyTorch/ONNX cross-correlation, groups,
//! four-sided zero padding, stride, dilation). Its weight `[O, C/groups, kh, kw]`, flattened
//! per output channel, is the `[O, C/groups * kh * kw]` matrix of codes; for image `n` and
//! group `g`, `Y[n, group g] = W[group g rows] col` where `col` `[C/groups * kh * kw,
//! OH * OW]` is [`tensor_core::conv::im2col`]'s patch matrix. The product adds
//! `c[code] * col[tap, :]` row by row, so the f32 weight is never built (Deep Compression,
//! section 3: the layer runs from the codebook and the indices).

use std::ops::Range;

use rayon::prelude::*;
use tensor_core::conv::{Conv2dParams, ConvGeometry, im2col};
use tensor_core::dispatch::F32Path;
use tensor_core::{Shape, Tensor};

use crate::error::{Result, ShareError, check_len};
use crate::lookup::SharedMatrix;
use crate::sparse::SparseShared;

/// A matrix of codes that multiplies a dense right-hand side: `out += W[rows, :] B`.
pub trait CodeGemm: Sync {
    /// Rows (output channels).
    fn rows(&self) -> usize;
    /// Columns (patch length).
    fn cols(&self) -> usize;
    /// `out += W[rows, :] B`, `B` `[cols, n]`, `out` `[rows.len(), n]`, on `tier`.
    fn matmul_rows_with(
        &self,
        tier: F32Path,
        rows: Range<usize>,
        n: usize,
        b: &[f32],
        out: &mut [f32],
    ) -> Result<()>;
}

impl CodeGemm for SharedMatrix {
    fn rows(&self) -> usize {
        SharedMatrix::rows(self)
    }
    fn cols(&self) -> usize {
        SharedMatrix::cols(self)
    }
    fn matmul_rows_with(
        &self,
        tier: F32Path,
        rows: Range<usize>,
        n: usize,
        b: &[f32],
        out: &mut [f32],
    ) -> Result<()> {
        SharedMatrix::matmul_rows_with(self, tier, rows, n, b, out)
    }
}

impl CodeGemm for SparseShared {
    fn rows(&self) -> usize {
        SparseShared::rows(self)
    }
    fn cols(&self) -> usize {
        SparseShared::cols(self)
    }
    fn matmul_rows_with(
        &self,
        tier: F32Path,
        rows: Range<usize>,
        n: usize,
        b: &[f32],
        out: &mut [f32],
    ) -> Result<()> {
        SparseShared::matmul_rows_with(self, tier, rows, n, b, out)
    }
}

/// Forward convolution with a weight of codes: `input [N, C, H, W]`, `weight` the
/// `[O, C/groups * kh * kw]` code matrix, optional `bias [O]` -> `[N, O, OH, OW]`, on
/// `tier`. Images run in parallel (and, within one, rows of a large product).
///
/// Equals `tensor_core::conv::conv2d_forward_reference` on the dense weight the codes
/// stand for within the rounding of a `C/groups * kh * kw`-term f32 sum.
///
/// Errors: invalid geometry or input shape; a weight that is not `[O, C/groups * kh * kw]`
/// or a bias that is not `[O]` ([`ShareError::LengthMismatch`]); a tier this CPU lacks.
pub fn shared_conv2d<W: CodeGemm>(
    tier: F32Path,
    input: &Tensor,
    weight: &W,
    bias: Option<&[f32]>,
    p: &Conv2dParams,
) -> Result<Tensor> {
    const OP: &str = "shared_conv2d";
    let [n, o, oh, ow] = p.output_dims(input.shape())?;
    let patch = p.patch_len();
    check_len(OP, "weight rows", weight.rows(), o)?;
    check_len(OP, "weight cols", weight.cols(), patch)?;
    if let Some(b) = bias {
        check_len(OP, "bias", b.len(), o)?;
    }
    if !tier.is_supported() {
        return Err(ShareError::UnsupportedTier {
            op: OP,
            tier: tier.name(),
        });
    }
    let geo = ConvGeometry::new(p, input.shape())?;
    let mut y = Tensor::zeros(Shape::new(&[n, o, oh, ow])?);
    let plane = oh * ow;
    if n == 0 || plane == 0 || o == 0 {
        return Ok(y);
    }
    let og = o / p.groups;
    let x = input.data();
    let image = |col: &mut Vec<f32>, (img, yi): (usize, &mut [f32])| -> Result<()> {
        col.resize(patch * plane, 0.0);
        for g in 0..p.groups {
            im2col(&geo, x, img..img + 1, g, 0.0, col)?;
            let out = &mut yi[g * og * plane..(g + 1) * og * plane];
            if let Some(b) = bias {
                for (ch, plane_out) in out.chunks_exact_mut(plane).enumerate() {
                    plane_out.fill(b[g * og + ch]);
                }
            }
            weight.matmul_rows_with(tier, g * og..(g + 1) * og, plane, col, out)?;
        }
        Ok(())
    };
    let per_image = o * plane;
    if n > 1 && rayon::current_num_threads() > 1 {
        y.data_mut()
            .par_chunks_mut(per_image)
            .enumerate()
            .try_for_each_init(Vec::new, image)
    } else {
        let mut col = Vec::new();
        y.data_mut()
            .chunks_mut(per_image)
            .enumerate()
            .try_for_each(|item| image(&mut col, item))
    }?;
    Ok(y)
}
