//! Pooling: `MaxPool`, `AveragePool` (2-D, and 1-D through a `1 x k` window), and `ReduceMean` over all spatial axes (global
//! average pooling).

use super::super::fold::axis;
use super::super::import::{Attrs, Importer, Value, pair, sizes, unsupported};
use super::super::proto::NodeProto;
use super::super::spec::{Op, Window};
use super::window;
use crate::error::Result;

impl Importer {
    pub(super) fn pool(&mut self, node: &NodeProto, a: &Attrs<'_>, max: bool) -> Result<Value> {
        let x = self.rt(node, 0)?;
        let ks = a
            .ints("kernel_shape")?
            .ok_or_else(|| unsupported("attribute kernel_shape is required"))?;
        // 1-D pooling (NCW) runs as 2-D pooling over [N, C, 1, W] between two reshapes.
        let one_d = x.dims.len() == 3;
        if !one_d && x.dims.len() != 4 {
            return Err(unsupported(format!(
                "pooling of {:?}: only 1-D (NCW) and 2-D (NCHW) pooling is supported",
                x.dims
            )));
        }
        let (x, kernel, (stride, dilation, pads)) = if one_d {
            let k = match sizes(&ks, "kernel_shape", 1)?[..] {
                [k] => k,
                _ => {
                    return Err(unsupported(format!(
                        "attribute kernel_shape={ks:?} for 1-D pooling"
                    )));
                }
            };
            let g = window::geometry_1d(a, k, x.dims[2])?;
            let x4 = self.push(&x, Op::Reshape(vec![x.dims[1], 1, x.dims[2]]))?;
            (x4, [1, k], g)
        } else {
            let kernel = pair(Some(ks), "kernel_shape", 1)?;
            let g = window::geometry(a, kernel, [x.dims[2], x.dims[3]])?;
            (x, kernel, g)
        };
        let window = Window {
            kernel,
            stride,
            pads,
            dilation,
            ceil: a.i("ceil_mode", 0)? != 0,
        };
        let op = if max {
            Op::MaxPool(window)
        } else {
            if dilation != [1, 1] {
                return Err(unsupported(format!(
                    "attribute dilations={dilation:?} for average pooling"
                )));
            }
            Op::AvgPool {
                window,
                count_include_pad: a.i("count_include_pad", 0)? != 0,
            }
        };
        let y = self.push(&x, op)?;
        if one_d {
            let (c, w) = (y.dims[1], y.dims[3]);
            return Ok(Value::Rt(self.push(&y, Op::Reshape(vec![c, w]))?));
        }
        Ok(Value::Rt(y))
    }

    pub(super) fn reduce_mean(&mut self, node: &NodeProto, a: &Attrs<'_>) -> Result<Value> {
        let x = self.rt(node, 0)?;
        let axes = if self.opset < 18 {
            a.ints("axes")?
        } else {
            self.value(node, 1)?
                .map(|_| self.const_i(node, 1))
                .transpose()?
        };
        let rank = x.dims.len();
        let mut ax: Vec<usize> = axes
            .ok_or_else(|| unsupported("ReduceMean over all axes (including the batch)"))?
            .iter()
            .map(|&v| axis(v, rank, "ReduceMean"))
            .collect::<Result<_>>()?;
        ax.sort_unstable();
        ax.dedup();
        let spatial: Vec<usize> = (2..rank).collect();
        if rank < 3 || ax != spatial {
            return Err(unsupported(format!(
                "ReduceMean over axes {ax:?} of shape {:?}: only the mean over all spatial axes \
                 (global average pooling) is supported",
                x.dims
            )));
        }
        let g = self.push(&x, Op::GlobalAvgPool)?;
        if a.i("keepdims", 1)? == 0 {
            return self.per_sample_reshape(&g, vec![x.dims[1]]);
        }
        Ok(Value::Rt(g))
    }
}
