//! ONNX window attributes shared by convolution and pooling: `strides`, `dilations`, and
//! `pads` / `auto_pad` resolution.

use super::super::import::{Attrs, pair, sizes, unsupported};
use crate::error::Result;

/// A window's `strides` and `dilations` (default 1) and its explicit `[t, l, b, r]` pads
/// (from `pads` or `auto_pad`) for a `kernel` over an input of `hw`.
pub(super) fn geometry(
    a: &Attrs<'_>,
    kernel: [usize; 2],
    hw: [usize; 2],
) -> Result<([usize; 2], [usize; 2], [usize; 4])> {
    let stride = pair(a.ints("strides")?, "strides", 1)?;
    let dilation = pair(a.ints("dilations")?, "dilations", 1)?;
    let mode = a.s("auto_pad")?.unwrap_or_default();
    let pads = auto_pads(&mode, a.ints("pads")?, hw, kernel, stride, dilation)?;
    Ok((stride, dilation, pads))
}

/// The geometry of a 1-D window (`kernel` over length `w`, attributes of length 1 and pads
/// `[begin, end]`) as the 2-D geometry of a `1 x kernel` window over `1 x w`.
pub(super) fn geometry_1d(
    a: &Attrs<'_>,
    kernel: usize,
    w: usize,
) -> Result<([usize; 2], [usize; 2], [usize; 4])> {
    let one = |name: &str| -> Result<usize> {
        match a.ints(name)? {
            None => Ok(1),
            Some(v) => {
                let s = sizes(&v, name, 1)?;
                match s[..] {
                    [x] => Ok(x),
                    _ => Err(unsupported(format!(
                        "attribute {name}={v:?} for a 1-D window (want one value)"
                    ))),
                }
            }
        }
    };
    let stride = [1, one("strides")?];
    let dilation = [1, one("dilations")?];
    let pads = match a.ints("pads")? {
        None => None,
        Some(p) => {
            let s = sizes(&p, "pads", 0)?;
            match s[..] {
                [b, e] => Some(vec![0, b as i64, 0, e as i64]),
                _ => {
                    return Err(unsupported(format!(
                        "attribute pads={p:?} for a 1-D window (want [begin, end])"
                    )));
                }
            }
        }
    };
    let mode = a.s("auto_pad")?.unwrap_or_default();
    let pads = auto_pads(&mode, pads, [1, w], [1, kernel], stride, dilation)?;
    Ok((stride, dilation, pads))
}

/// Resolves ONNX `auto_pad` into explicit `[t, l, b, r]` pads for input `[h, w]`.
fn auto_pads(
    mode: &str,
    pads: Option<Vec<i64>>,
    hw: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
) -> Result<[usize; 4]> {
    match mode {
        "" | "NOTSET" => match pads {
            None => Ok([0; 4]),
            Some(p) => {
                let s = sizes(&p, "pads", 0)?;
                if s.len() != 4 {
                    return Err(unsupported(format!(
                        "attribute pads={p:?}: only 2-D windows are supported"
                    )));
                }
                Ok([s[0], s[1], s[2], s[3]])
            }
        },
        "VALID" => Ok([0; 4]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut out = [0; 4];
            for i in 0..2 {
                let o = hw[i].div_ceil(stride[i]);
                let span = (kernel[i] - 1) * dilation[i] + 1;
                let total = ((o.max(1) - 1) * stride[i] + span).saturating_sub(hw[i]);
                let small = total / 2;
                let (b, e) = if mode == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                out[i] = b;
                out[i + 2] = e;
            }
            Ok(out)
        }
        other => Err(unsupported(format!(
            "attribute auto_pad='{other}' is not supported"
        ))),
    }
}
