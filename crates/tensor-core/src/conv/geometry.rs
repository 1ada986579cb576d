//! The geometry of one convolution on one input shape ([`ConvGeometry`]), and the window
//! arithmetic im2col and col2im share.

use super::{Conv2dParams, check_bias};
use crate::error::TensorError;
use crate::shape::Shape;
use crate::tensor::Tensor;

/// Everything im2col and the kernels need, derived once from a [`Conv2dParams`] and the input
/// dims `[N, C, H, W]` (all checked: the window fits, the output size is valid).
///
/// Built by [`ConvGeometry::new`]; read through its accessors. The element type does not
/// enter: the same geometry drives im2col over f32, u8, i8 or packed bit words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub(super) n: usize,
    pub(super) c: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) o: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
    pub(super) groups: usize,
    pub(super) cg: usize,
    pub(super) og: usize,
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) sh: usize,
    pub(super) sw: usize,
    pub(super) dh: usize,
    pub(super) dw: usize,
    pub(super) pt: usize,
    pub(super) pl: usize,
}

impl ConvGeometry {
    /// The geometry of `p` on an input of shape `[N, C, H, W]`; errors as
    /// [`Conv2dParams::output_dims`] does.
    pub fn new(p: &Conv2dParams, input: &Shape) -> Result<Self, TensorError> {
        let [n, o, oh, ow] = p.output_dims(input)?;
        let d = input.dims();
        Ok(Self {
            n,
            c: d[1],
            h: d[2],
            w: d[3],
            o,
            oh,
            ow,
            groups: p.groups,
            cg: p.in_channels / p.groups,
            og: p.out_channels / p.groups,
            kh: p.kernel.0,
            kw: p.kernel.1,
            sh: p.stride.0,
            sw: p.stride.1,
            dh: p.dilation.0,
            dw: p.dilation.1,
            pt: p.padding.top,
            pl: p.padding.left,
        })
    }

    /// [`ConvGeometry::new`], also checking the weight's shape `[O, C/groups, kh, kw]`.
    pub(super) fn with_weight(
        p: &Conv2dParams,
        input: &Shape,
        weight: &Shape,
    ) -> Result<Self, TensorError> {
        let geo = Self::new(p, input)?;
        let wd = p.weight_dims();
        if weight.dims() != wd {
            return Err(TensorError::ShapeMismatch {
                op: "conv2d: weight",
                lhs: weight.clone(),
                rhs: Shape::new(&wd)?,
            });
        }
        Ok(geo)
    }

    /// The geometry of a forward pass, its bias checked, and the zeroed output
    /// `[N, O, OH, OW]`.
    pub(super) fn forward(
        p: &Conv2dParams,
        input: &Tensor,
        weight: &Tensor,
        bias: Option<&[f32]>,
    ) -> Result<(Self, Tensor), TensorError> {
        let geo = Self::with_weight(p, input.shape(), weight.shape())?;
        check_bias(bias, geo.o, "conv2d: bias")?;
        let y = Tensor::zeros_dims(&[geo.n, geo.o, geo.oh, geo.ow])?;
        Ok((geo, y))
    }

    /// The input dims `[N, C, H, W]`.
    pub fn input_dims(&self) -> [usize; 4] {
        [self.n, self.c, self.h, self.w]
    }

    /// The output dims `[N, O, OH, OW]`.
    pub fn output_dims(&self) -> [usize; 4] {
        [self.n, self.o, self.oh, self.ow]
    }

    /// Channel groups.
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// Rows of the column matrix: `C/groups * kh * kw` (the GEMM depth).
    pub fn patch_len(&self) -> usize {
        self.cg * self.kh * self.kw
    }

    /// Output positions per image, `OH * OW`.
    pub fn out_plane(&self) -> usize {
        self.oh * self.ow
    }

    /// Elements of one input image, `C * H * W`.
    pub fn image_len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Elements of the column matrix of `images` images, `patch_len * images * OH * OW`, or
    /// `None` if that overflows.
    pub fn col_len(&self, images: usize) -> Option<usize> {
        self.patch_len()
            .checked_mul(images)?
            .checked_mul(self.out_plane())
    }
}

/// The output indices `lo..hi` (within `0..out_len`) whose input coordinate
/// `i*stride + offset - pad` falls inside `0..in_len`.
#[inline]
pub(super) fn valid_range(
    out_len: usize,
    stride: usize,
    offset: usize,
    pad: usize,
    in_len: usize,
) -> (usize, usize) {
    // i*stride >= pad - offset
    let lo = if pad > offset {
        (pad - offset).div_ceil(stride)
    } else {
        0
    };
    // i*stride < in_len + pad - offset
    let hi = if in_len + pad > offset {
        (in_len + pad - offset).div_ceil(stride)
    } else {
        0
    };
    let hi = hi.min(out_len);
    (lo.min(hi), hi)
}
