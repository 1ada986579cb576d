//! Direct-loop convolution, forward and backward (f64 accumulation): the references the
//! im2col kernels are tested against.

use super::geometry::ConvGeometry;
use super::{Conv2dGrads, Conv2dParams};
use crate::error::TensorError;
use crate::tensor::Tensor;

/// Direct-loop convolution (f64 accumulation), the reference for [`super::conv2d_forward`].
#[doc(hidden)]
pub fn conv2d_forward_reference(
    input: &Tensor,
    weight: &Tensor,
    bias: Option<&[f32]>,
    p: &Conv2dParams,
) -> Result<Tensor, TensorError> {
    let (geo, mut y) = ConvGeometry::forward(p, input, weight, bias)?;
    let (x, w) = (input.data(), weight.data());
    let out = y.data_mut();
    for n in 0..geo.n {
        for o in 0..geo.o {
            let g = o / geo.og;
            for oy in 0..geo.oh {
                for ox in 0..geo.ow {
                    let mut acc = bias.map_or(0.0, |b| b[o] as f64);
                    for_each_tap(&geo, n, g, oy, ox, |c, ki, kj, xi| {
                        let wi = ((o * geo.cg + c) * geo.kh + ki) * geo.kw + kj;
                        acc += w[wi] as f64 * x[xi] as f64;
                    });
                    out[((n * geo.o + o) * geo.oh + oy) * geo.ow + ox] = acc as f32;
                }
            }
        }
    }
    Ok(y)
}

/// Direct-loop backward (f64 accumulation), the reference for [`super::conv2d_backward`].
#[doc(hidden)]
pub fn conv2d_grads_reference(
    input: &Tensor,
    weight: &Tensor,
    grad_output: &Tensor,
    p: &Conv2dParams,
) -> Result<Conv2dGrads, TensorError> {
    let geo = ConvGeometry::with_weight(p, input.shape(), weight.shape())?;
    let (x, w, gy) = (input.data(), weight.data(), grad_output.data());
    let mut gi = vec![0.0f64; x.len()];
    let mut gw = vec![0.0f64; w.len()];
    let mut gb = vec![0.0f64; geo.o];
    for n in 0..geo.n {
        for o in 0..geo.o {
            let g = o / geo.og;
            for oy in 0..geo.oh {
                for ox in 0..geo.ow {
                    let gv = gy[((n * geo.o + o) * geo.oh + oy) * geo.ow + ox] as f64;
                    gb[o] += gv;
                    for_each_tap(&geo, n, g, oy, ox, |c, ki, kj, xi| {
                        let wi = ((o * geo.cg + c) * geo.kh + ki) * geo.kw + kj;
                        gw[wi] += gv * x[xi] as f64;
                        gi[xi] += gv * w[wi] as f64;
                    });
                }
            }
        }
    }
    let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
    Ok(Conv2dGrads {
        input: Tensor::from_vec(input.shape().clone(), f(gi))?,
        weight: Tensor::from_vec(weight.shape().clone(), f(gw))?,
        bias: Tensor::new(&[geo.o], f(gb))?,
    })
}

/// Calls `f(c, ki, kj, input_index)` for every in-bounds tap of output `(n, g, oy, ox)`.
fn for_each_tap(
    geo: &ConvGeometry,
    n: usize,
    g: usize,
    oy: usize,
    ox: usize,
    mut f: impl FnMut(usize, usize, usize, usize),
) {
    for c in 0..geo.cg {
        for ki in 0..geo.kh {
            let iy = (oy * geo.sh + ki * geo.dh) as isize - geo.pt as isize;
            if iy < 0 || iy as usize >= geo.h {
                continue;
            }
            for kj in 0..geo.kw {
                let ix = (ox * geo.sw + kj * geo.dw) as isize - geo.pl as isize;
                if ix < 0 || ix as usize >= geo.w {
                    continue;
                }
                let xi = ((n * geo.c + g * geo.cg + c) * geo.h + iy as usize) * geo.w + ix as usize;
                f(c, ki, kj, xi);
            }
        }
    }
}
