//! XNOR-Net's input scale `K` (Rastegari et al. 2016, section 3.2): the binary dot product
//! `sign(X)^T sign(W)` approximates `X^T W` better when scaled by the mean absolute value of
//! the input it replaced.
//!
//! - Convolution: `A = sum_c |I_c| / c` (per image and pixel), and `K = A * k` with the box
//!   filter `k` of `kh x kw` taps of `1 / (kh kw)`, at the convolution's stride, padding
//!   (zeros: a padded tap adds 0 to the mean) and dilation; `K` has one value per image and
//!   output position, shared by all output channels ([`conv_input_scale`]).
//! - Fully connected: one patch is the whole input, so `K = mean |x|` per sample
//!   ([`linear_input_scale`]).
//!
//! The output then becomes `alpha_o K (sign(x) . sign(W_o)) + b_o`. In training `K` is a
//! constant of the backward pass (no gradient flows through it), as in the authors' code and
//! most re-implementations; the gradient reaches the input through `sign` only
//! (straight-through, [`crate::InputScaled`]).

use tensor_core::conv::{Conv2dParams, conv2d_forward};
use tensor_core::{Shape, Tensor};

use crate::error::{Result, XnorError};

/// `K [N, OH*OW]` of an input `[N, C, H, W]` for the convolution `p` (module docs).
pub fn conv_input_scale(input: &Tensor, p: &Conv2dParams) -> Result<Vec<f32>> {
    let [n, c, h, w] = match input.dims() {
        &[n, c, h, w] if c == p.in_channels => [n, c, h, w],
        _ => {
            return Err(XnorError::InvalidArgument {
                op: "conv_input_scale",
                reason: format!(
                    "input {} for a convolution of {} input channels",
                    input.shape(),
                    p.in_channels
                ),
            });
        }
    };
    let plane = h * w;
    let mut a = vec![0.0f32; n * plane];
    for (dst, img) in a
        .chunks_exact_mut(plane.max(1))
        .zip(input.data().chunks_exact((c * plane).max(1)))
    {
        for channel in img.chunks_exact(plane.max(1)) {
            dst.iter_mut().zip(channel).for_each(|(s, v)| *s += v.abs());
        }
        dst.iter_mut().for_each(|s| *s /= c as f32);
    }
    let a = Tensor::new(&[n, 1, h, w], a)?;
    let box_params = Conv2dParams {
        in_channels: 1,
        out_channels: 1,
        groups: 1,
        ..*p
    };
    let taps = p.kernel.0 * p.kernel.1;
    let k = Tensor::new(
        &[1, 1, p.kernel.0, p.kernel.1],
        vec![1.0 / taps as f32; taps],
    )?;
    Ok(conv2d_forward(&a, &k, None, &box_params)?.into_vec())
}

/// `K [N]` of an input `[N, in]`: the mean `|x|` of each sample (module docs).
pub fn linear_input_scale(input: &Tensor) -> Result<Vec<f32>> {
    let (n, k) = match input.dims() {
        &[n, k] => (n, k),
        _ => {
            return Err(XnorError::InvalidArgument {
                op: "linear_input_scale",
                reason: format!("input {} is not [batch, features]", input.shape()),
            });
        }
    };
    Ok((0..n)
        .map(|b| {
            input.data()[b * k..(b + 1) * k]
                .iter()
                .map(|v| v.abs())
                .sum::<f32>()
                / k as f32
        })
        .collect())
}

/// `K` of `input` for a layer's `params` shape: [`conv_input_scale`] when `conv` is given,
/// else [`linear_input_scale`]; one value per sample and output position.
pub(crate) fn input_scale(input: &Tensor, conv: Option<&Conv2dParams>) -> Result<Vec<f32>> {
    match conv {
        Some(p) => conv_input_scale(input, p),
        None => linear_input_scale(input),
    }
}

/// Multiplies `y` (`[N, O, inner]`, row-major) by `k` (`[N, inner]`), broadcast over `O`.
pub(crate) fn scale_by(y: &mut [f32], k: &[f32], shape: &Shape) -> Result<()> {
    let d = shape.dims();
    let (n, o) = (d[0], d.get(1).copied().unwrap_or(1));
    let inner: usize = d.iter().skip(2).product();
    if y.len() != n * o * inner || k.len() != n * inner {
        return Err(XnorError::LengthMismatch {
            op: "input scale",
            what: "K",
            got: k.len(),
            expected: n * inner,
        });
    }
    for (ys, ks) in y
        .chunks_exact_mut((o * inner).max(1))
        .zip(k.chunks_exact(inner.max(1)))
    {
        for yf in ys.chunks_exact_mut(inner.max(1)) {
            yf.iter_mut().zip(ks).for_each(|(v, &s)| *v *= s);
        }
    }
    Ok(())
}
