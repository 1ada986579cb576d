//! 2-D convolution (NCHW), forward and backward, by im2col + GEMM.
//!
//! The convolution of PyTorch and ONNX (a cross-correlation):
//! `y[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] *
//!  x[n, g*Cg + c, i*sh + p*dh - pad_top, j*sw + q*dw - pad_left]`
//! with `g = o / Og` the group of output channel `o`, `Cg = C / groups`, `Og = O / groups`,
//! weight `[O, Cg, kh, kw]`, zero padding (ONNX allows the four sides to differ) and the
//! output size `OH = (H + pad_top + pad_bottom - dh*(kh-1) - 1) / sh + 1`.
//!
//! im2col (Chellapilla et al., 2006) lays the receptive fields of a block of images out as
//! the columns of a `[Cg*kh*kw, B*OH*OW]` matrix, so that each group's convolution is one
//! GEMM `W_g [Og, Cg*kh*kw] x col`. The backward pass reuses the same matrix:
//! `dW_g += dY_g col^T`, `dcol = W_g^T dY_g`, then col2im scatters `dcol` back onto `dX`.
//! Images are processed in blocks ([`block_images`]) so the GEMM is wide enough for both
//! cores while the column buffer stays in cache-friendly bounds.
//!
//! [`im2col`] and [`col2im_add`] are public, with the column layout on [`im2col`]'s doc:
//! int8 and binary convolutions reuse im2col over their own element types (u8 padded with
//! the zero point, packed bit words), with a [`ConvGeometry`] built from the same
//! [`Conv2dParams`].
//!
//! Files: this one holds the parameters ([`Padding`], [`Conv2dParams`]) and the output-size
//! arithmetic; `geometry` the derived [`ConvGeometry`]; `im2col` im2col / col2im; `plan` the
//! blocking plan and scratch; `forward`, `backward` the kernels; `reference` the direct loops
//! they are tested against; `direct` the direct (im2col-free) AVX2 and AVX-512 kernels for
//! stride-1 convolutions and `fused` their dispatching entry [`conv2d_forward_fused`], which
//! also fuses bias, ReLU and a 2x2 max pool into the pass (the inference fast path);
//! `winograd` the Winograd F(2x2, 3x3) path that entry takes for 3x3 layers on AVX-512 F.

mod backward;
mod direct;
mod forward;
mod fused;
mod geometry;
mod im2col;
mod plan;
mod reference;
mod spatial;
mod weight_grad;
mod winograd;

pub use backward::{
    Conv2dGradOut, Conv2dGrads, DIRECT_INPUT_GRAD_MAX_PLANE_QUARTERS,
    DIRECT_INPUT_GRAD_MIN_CHANNELS, conv2d_backward, conv2d_grads, conv2d_input_grad_direct,
};
pub use direct::PackedConvWeights;
pub use forward::{conv2d_forward, conv2d_forward_per_image};
pub use fused::{
    ConvEpilogue, DIRECT_PAR_MIN_MACS, conv2d_forward_fused, conv2d_forward_fused_with,
    direct_applies,
};
pub use geometry::ConvGeometry;
pub use im2col::{col2im_add, im2col};
pub use plan::{COL_BLOCK_FLOATS, PER_IMAGE_MIN_PLANE, block_images};
pub use reference::{conv2d_forward_reference, conv2d_grads_reference};
#[cfg(test)]
use winograd::winograd_tolerance;
pub use winograd::{
    BLOCK_FLOATS, WINOGRAD_MIN_CHANNELS, WinogradMode, set_winograd_mode, winograd_applies,
    winograd_mode, winograd_variant,
};

use crate::error::TensorError;
use crate::shape::Shape;

/// Padding on each side of a 2-D input (ONNX `pads` may be asymmetric).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Padding {
    /// Rows added above.
    pub top: usize,
    /// Rows added below.
    pub bottom: usize,
    /// Columns added on the left.
    pub left: usize,
    /// Columns added on the right.
    pub right: usize,
}

impl Padding {
    /// The same padding `p` on all four sides (PyTorch's `padding=p`).
    pub fn symmetric(p: usize) -> Self {
        Self {
            top: p,
            bottom: p,
            left: p,
            right: p,
        }
    }

    /// From ONNX's `pads = [top, left, bottom, right]` order.
    pub fn from_onnx(pads: [usize; 4]) -> Self {
        Self {
            top: pads[0],
            left: pads[1],
            bottom: pads[2],
            right: pads[3],
        }
    }

    /// In ONNX's `[top, left, bottom, right]` order.
    pub fn to_onnx(self) -> [usize; 4] {
        [self.top, self.left, self.bottom, self.right]
    }
}

/// Output length of a sliding window along one axis, or `None` when the window (span
/// `dilation*(kernel-1)+1`) does not fit in the padded input or a value overflows.
/// `ceil` rounds up as ONNX `ceil_mode` / PyTorch do, dropping a last window that would start
/// in the end padding.
pub fn window_out_len(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad_begin: usize,
    pad_end: usize,
    ceil: bool,
) -> Option<usize> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return None;
    }
    let span = (kernel - 1).checked_mul(dilation)?.checked_add(1)?;
    let padded = input.checked_add(pad_begin)?.checked_add(pad_end)?;
    if padded < span {
        return None;
    }
    let mut n = if ceil {
        (padded - span).div_ceil(stride) + 1
    } else {
        (padded - span) / stride + 1
    };
    if ceil && n > 1 && (n - 1) * stride >= input + pad_begin {
        n -= 1;
    }
    Some(n)
}

/// [`window_out_len`] along both axes of an `h x w` input padded by `padding`: `(OH, OW)`,
/// or `None` when the window does not fit along either axis.
pub(crate) fn window_out_hw(
    (h, w): (usize, usize),
    kernel: (usize, usize),
    stride: (usize, usize),
    dilation: (usize, usize),
    padding: Padding,
    ceil: bool,
) -> Option<(usize, usize)> {
    let p = padding;
    let oh = window_out_len(h, kernel.0, stride.0, dilation.0, p.top, p.bottom, ceil)?;
    let ow = window_out_len(w, kernel.1, stride.1, dilation.1, p.left, p.right, ceil)?;
    Some((oh, ow))
}

/// The geometry of a 2-D convolution (PyTorch's `Conv2d` arguments, with four-sided
/// padding). Build with [`Conv2dParams::new`] and the builder methods; every kernel calls
/// [`Conv2dParams::validate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Conv2dParams {
    /// Input channels `C`.
    pub in_channels: usize,
    /// Output channels `O`.
    pub out_channels: usize,
    /// Kernel height and width.
    pub kernel: (usize, usize),
    /// Vertical and horizontal stride.
    pub stride: (usize, usize),
    /// Padding: zeros in the f32 convolution; [`im2col`] fills it with the caller's value.
    pub padding: Padding,
    /// Vertical and horizontal dilation.
    pub dilation: (usize, usize),
    /// Channel groups (`groups == in_channels` is a depthwise convolution).
    pub groups: usize,
}

impl Conv2dParams {
    /// `in_channels -> out_channels` with a `kernel` window, stride 1, no padding, no
    /// dilation, one group.
    pub fn new(in_channels: usize, out_channels: usize, kernel: (usize, usize)) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel,
            stride: (1, 1),
            padding: Padding::default(),
            dilation: (1, 1),
            groups: 1,
        }
    }

    /// With stride `(sh, sw)`.
    pub fn with_stride(self, stride: (usize, usize)) -> Self {
        Self { stride, ..self }
    }

    /// With padding.
    pub fn with_padding(self, padding: Padding) -> Self {
        Self { padding, ..self }
    }

    /// With dilation `(dh, dw)`.
    pub fn with_dilation(self, dilation: (usize, usize)) -> Self {
        Self { dilation, ..self }
    }

    /// With `groups` channel groups.
    pub fn with_groups(self, groups: usize) -> Self {
        Self { groups, ..self }
    }

    /// Checks that every value is positive where it must be and that channels divide by
    /// groups.
    pub fn validate(&self) -> Result<(), TensorError> {
        let bad = |reason: String| TensorError::InvalidArgument {
            op: "conv2d",
            reason,
        };
        if self.in_channels == 0 || self.out_channels == 0 {
            return Err(bad(format!(
                "channels must be positive ({} -> {})",
                self.in_channels, self.out_channels
            )));
        }
        if self.kernel.0 == 0 || self.kernel.1 == 0 {
            return Err(bad(format!("kernel {:?} has a zero side", self.kernel)));
        }
        if self.stride.0 == 0 || self.stride.1 == 0 {
            return Err(bad(format!("stride {:?} has a zero side", self.stride)));
        }
        if self.dilation.0 == 0 || self.dilation.1 == 0 {
            return Err(bad(format!("dilation {:?} has a zero side", self.dilation)));
        }
        if self.groups == 0
            || !self.in_channels.is_multiple_of(self.groups)
            || !self.out_channels.is_multiple_of(self.groups)
        {
            return Err(bad(format!(
                "groups {} must divide in_channels {} and out_channels {}",
                self.groups, self.in_channels, self.out_channels
            )));
        }
        Shape::new(&self.weight_dims())?;
        Ok(())
    }

    /// The weight's dimensions `[O, C/groups, kh, kw]`.
    pub fn weight_dims(&self) -> [usize; 4] {
        [
            self.out_channels,
            self.in_channels / self.groups.max(1),
            self.kernel.0,
            self.kernel.1,
        ]
    }

    /// Weights in one group's filter: `C/groups * kh * kw` (the GEMM depth).
    pub fn patch_len(&self) -> usize {
        (self.in_channels / self.groups.max(1)) * self.kernel.0 * self.kernel.1
    }

    /// The output spatial size for an input of `h x w`.
    pub fn output_hw(&self, h: usize, w: usize) -> Result<(usize, usize), TensorError> {
        let out = window_out_hw(
            (h, w),
            self.kernel,
            self.stride,
            self.dilation,
            self.padding,
            false,
        );
        match out {
            Some(hw) => Ok(hw),
            None => Err(TensorError::InvalidArgument {
                op: "conv2d",
                reason: format!(
                    "kernel {:?} with dilation {:?} does not fit input {h}x{w} padded by {:?}",
                    self.kernel, self.dilation, self.padding
                ),
            }),
        }
    }

    /// The output dimensions `[N, O, OH, OW]` for an input `[N, C, H, W]`, checking the
    /// rank and the channel count.
    pub fn output_dims(&self, input: &Shape) -> Result<[usize; 4], TensorError> {
        self.validate()?;
        if input.rank() != 4 {
            return Err(TensorError::RankMismatch {
                op: "conv2d",
                expected: 4,
                shape: input.clone(),
            });
        }
        let d = input.dims();
        if d[1] != self.in_channels {
            return Err(TensorError::InvalidArgument {
                op: "conv2d",
                reason: format!(
                    "input {input} has {} channels, the convolution expects {}",
                    d[1], self.in_channels
                ),
            });
        }
        let (oh, ow) = self.output_hw(d[2], d[3])?;
        Shape::new(&[d[0], self.out_channels, oh, ow])?;
        Ok([d[0], self.out_channels, oh, ow])
    }

    /// Multiply-accumulates of one forward pass on `input` (`N*O*OH*OW*Cg*kh*kw`).
    pub fn macs(&self, input: &Shape) -> Result<u64, TensorError> {
        let [n, o, oh, ow] = self.output_dims(input)?;
        Ok((n * o * oh * ow) as u64 * self.patch_len() as u64)
    }
}

/// Checks that `bias`, when present, has one value per output `o` (a convolution's channels, a
/// packed linear layer's features).
pub(crate) fn check_bias(
    bias: Option<&[f32]>,
    o: usize,
    op: &'static str,
) -> Result<(), TensorError> {
    if let Some(b) = bias
        && b.len() != o
    {
        return Err(TensorError::DataLength {
            op,
            len: b.len(),
            expected: o,
            shape: Shape::new(&[o])?,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
