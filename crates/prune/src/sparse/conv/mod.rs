//! Sparse 2-D convolution: a pruned conv weight `[O, C/groups * kh * kw]` in CSR applied to
//! NCHW images without densifying it.
//!
//! Same convolution as `tensor_core::conv` (PyTorch/ONNX cross-correlation, groups,
//! four-sided zero padding, stride, dilation): the dense weight `[O, C/groups, kh, kw]`
//! flattened row-major per output channel is exactly the CSR matrix's row, column
//! `(c * kh + ki) * kw + kj`. Two paths:
//! - [`direct`] (horizontal stride 1, the common case): each nonzero `w[o, c, ki, kj]` adds
//!   `w` times a shifted window of the (padded) input plane `c` to output plane `o`, rows of
//!   `OW` contiguous values, so no im2col matrix is built (Park et al., "Faster CNNs with
//!   Direct Sparse Convolutions", ICLR 2017);
//! - `im2col` (any stride): the sparse rows times each image's im2col matrix
//!   `[C/groups * kh * kw, OH * OW]`, through the spmm core.
//!
//! Measured on the 2-core EPYC (loaded machine, criterion), lenet5.conv2 at 90% sparsity:
//! the im2col path spent 44% of its 81 us at batch 1 building the 500 x 64 column matrix
//! (short copies of 8 floats) and 12% in the product; the direct path took 14.7 us (batch
//! 1) and 1.1 ms (batch 64, against 4.5 ms for im2col).

mod direct;
mod im2col;

use std::ops::Range;

use tensor_core::conv::{Conv2dParams, ConvGeometry};
use tensor_core::{Shape, Tensor};

use super::csr::{ColIndices, Csr};
use super::partition::{PAR_MIN_MACS, run_pieces};
use super::{SparseParams, simd_for, threads_for};
use crate::error::{PruneError, Result};

/// Forward convolution with a sparse weight: `input [N, C, H, W]`, `weight` the CSR matrix
/// `[O, C/groups * kh * kw]`, optional `bias [O]` -> `[N, O, OH, OW]`.
///
/// Images are spread over threads (several images), or one image's output channels are
/// split by nonzeros (batch 1), when `nnz * OH * OW * N >= PAR_MIN_MACS`. Each output sums
/// its terms in the weight row's column order in f32, so it matches the dense direct-loop
/// `tensor_core::conv::conv2d_forward_reference` on `weight.to_dense()` within the rounding
/// of an `nnz(o)`-term sum.
///
/// Errors: invalid geometry or input shape ([`PruneError::Tensor`]); a weight that is not
/// `[O, C/groups * kh * kw]` ([`PruneError::ConvWeightShape`]); a bias of the wrong length;
/// an unsupported tier.
pub fn sparse_conv2d(
    input: &Tensor,
    weight: &Csr,
    bias: Option<&[f32]>,
    p: &Conv2dParams,
    sp: &SparseParams,
) -> Result<Tensor> {
    const OP: &str = "sparse_conv2d";
    let [n, o, oh, ow] = p.output_dims(input.shape())?;
    let patch = p.patch_len();
    if weight.rows() != o || weight.cols() != patch {
        return Err(PruneError::ConvWeightShape {
            op: OP,
            rows: weight.rows(),
            cols: weight.cols(),
            expected_rows: o,
            expected_cols: patch,
        });
    }
    if let Some(b) = bias
        && b.len() != o
    {
        return Err(PruneError::LengthMismatch {
            op: OP,
            what: "bias".into(),
            got: b.len(),
            expected: o,
        });
    }
    let simd = simd_for(OP, sp.tier)?;
    let mut y = Tensor::zeros_dims(&[n, o, oh, ow])?;
    let plane = oh * ow;
    if n == 0 || plane == 0 {
        return Ok(y);
    }
    let geo = Geo::new(p, input.shape(), (oh, ow))?;
    let path = Path::choose(&geo, weight);
    let work = weight.nnz().saturating_mul(plane).saturating_mul(n);
    let threads = threads_for(sp, work, PAR_MIN_MACS);
    let x = input.data();
    let per_image = o * plane;
    // The first error of any thread (only the im2col path can report one).
    let failed = std::sync::Mutex::new(None);
    let run = |images: Range<usize>, out: &mut [f32], parts: usize| {
        for (img, yi) in images.zip(out.chunks_exact_mut(per_image)) {
            for g in 0..geo.groups {
                let rows = g * geo.og..(g + 1) * geo.og;
                let yg = &mut yi[rows.start * plane..rows.end * plane];
                match &path {
                    Path::Direct(offsets) => {
                        direct::group(&geo, weight, offsets, x, img, g, yg, simd, parts)
                    }
                    Path::Im2col => {
                        if let Err(e) = im2col::group(&geo, weight, x, img, g, yg, simd, parts)
                            && let Ok(mut f) = failed.lock()
                        {
                            f.get_or_insert(e);
                        }
                    }
                }
            }
        }
    };
    if threads > 1 && n > 1 {
        // Contiguous runs of images, one per thread.
        let per = n.div_ceil(threads);
        let pieces = y
            .data_mut()
            .chunks_mut(per * per_image)
            .enumerate()
            .map(|(i, out)| (i * per..i * per + out.len() / per_image, out))
            .collect();
        run_pieces(pieces, |images, out| run(images, out, 1));
    } else {
        run(0..n, y.data_mut(), threads);
    }
    if let Some(e) = failed.into_inner().ok().flatten() {
        return Err(e.into());
    }
    if let Some(b) = bias {
        for (i, pl) in y.data_mut().chunks_exact_mut(plane).enumerate() {
            let v = b[i % o];
            pl.iter_mut().for_each(|x| *x += v);
        }
    }
    Ok(y)
}

/// Which kernel a call runs.
enum Path {
    /// [`direct`], with each nonzero's offset into a padded input group (parallel to the
    /// weight's values).
    Direct(Vec<u32>),
    /// [`im2col`].
    Im2col,
}

impl Path {
    /// Direct when the horizontal stride is 1 and every offset into a padded group fits
    /// `u32`; im2col otherwise.
    fn choose(geo: &Geo, weight: &Csr) -> Self {
        let group_len = geo.cg as u64 * geo.hp as u64 * geo.wp as u64;
        if geo.sw != 1 || group_len > u32::MAX as u64 {
            return Path::Im2col;
        }
        // Offset of patch column (c, ki, kj): (c * Hp + ki * dh) * Wp + kj * dw.
        let mut table = Vec::with_capacity(geo.cg * geo.kh * geo.kw);
        for c in 0..geo.cg {
            for ki in 0..geo.kh {
                for kj in 0..geo.kw {
                    table.push(((c * geo.hp + ki * geo.dh) * geo.wp + kj * geo.dw) as u32);
                }
            }
        }
        // Columns are < patch = table.len() (Csr invariant, shape checked by the caller).
        let offsets = match weight.col_idx() {
            ColIndices::U16(ci) => ci.iter().map(|&c| table[c as usize]).collect(),
            ColIndices::U32(ci) => ci.iter().map(|&c| table[c as usize]).collect(),
        };
        Path::Direct(offsets)
    }
}

/// The geometry of one call, with the output size already checked.
struct Geo {
    c: usize,
    h: usize,
    w: usize,
    groups: usize,
    cg: usize,
    og: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    dh: usize,
    dw: usize,
    pt: usize,
    pl: usize,
    /// Padded input height `H + top + bottom`.
    hp: usize,
    /// Padded input width `W + left + right`.
    wp: usize,
    oh: usize,
    ow: usize,
    /// The same geometry as tensor-core's im2col takes it.
    conv: ConvGeometry,
}

impl Geo {
    /// From validated parameters (`p.output_dims` succeeded on `input = [N, C, H, W]`).
    fn new(p: &Conv2dParams, input: &Shape, (oh, ow): (usize, usize)) -> Result<Self> {
        let dims = input.dims();
        let pad = p.padding;
        Ok(Self {
            c: dims[1],
            h: dims[2],
            w: dims[3],
            groups: p.groups,
            cg: p.in_channels / p.groups,
            og: p.out_channels / p.groups,
            kh: p.kernel.0,
            kw: p.kernel.1,
            sh: p.stride.0,
            sw: p.stride.1,
            dh: p.dilation.0,
            dw: p.dilation.1,
            pt: pad.top,
            pl: pad.left,
            hp: dims[2] + pad.top + pad.bottom,
            wp: dims[3] + pad.left + pad.right,
            oh,
            ow,
            conv: ConvGeometry::new(p, input)?,
        })
    }

    /// Whether any side is padded.
    fn padded(&self) -> bool {
        self.hp != self.h || self.wp != self.w
    }

    /// The input planes of image `img`, group `g`: `[Cg, H, W]`.
    fn group_input<'a>(&self, x: &'a [f32], img: usize, g: usize) -> &'a [f32] {
        let plane = self.h * self.w;
        let start = (img * self.c + g * self.cg) * plane;
        &x[start..start + self.cg * plane]
    }
}
