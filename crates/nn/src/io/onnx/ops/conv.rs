//! `Conv` (a preceding zero `Pad` folded into its padding) and `BatchNormalization` (folded
//! into the preceding convolution or linear layer, else a scale and a shift).

use super::super::fold::Ct;
use super::super::import::{Attrs, Importer, Rt, Value, into_tensor, sizes, unsupported};
use super::super::proto::NodeProto;
use super::super::spec::{Op, Window};
use super::window;
use crate::error::Result;
use crate::layers::onnx_ops::ArithOp;

impl Importer {
    pub(super) fn conv(&mut self, node: &NodeProto, a: &Attrs<'_>) -> Result<Value> {
        let x = self.rt(node, 0)?;
        let w = self.take_f(node, 1)?;
        if x.dims.len() == 3 && w.dims.len() == 3 {
            return self.conv1d(node, a, x, w);
        }
        if x.dims.len() != 4 || w.dims.len() != 4 {
            return Err(unsupported(format!(
                "convolution of {:?} by kernel {:?}: only 1-D (NCW) and 2-D (NCHW) convolutions \
                 are supported",
                x.dims, w.dims
            )));
        }
        let kernel = [w.dims[2], w.dims[3]];
        if let Some(k) = a.ints("kernel_shape")?
            && sizes(&k, "kernel_shape", 1)? != kernel
        {
            return Err(unsupported(format!(
                "attribute kernel_shape={k:?} disagrees with the weight {:?}",
                w.dims
            )));
        }
        let (stride, dilation, pads) = window::geometry(a, kernel, [x.dims[2], x.dims[3]])?;
        let (groups, bias) = self.conv_groups_bias(node, a, w.dims[0])?;
        let mut window = Window {
            kernel,
            stride,
            pads,
            dilation,
            ceil: false,
        };
        // Fold a preceding zero Pad of the spatial dimensions into the convolution.
        let mut base = x.clone();
        let name = node.input[0].clone();
        if let Some(Op::Pad { begin, end, value }) = self.tip(&x, &name)
            && *value == 0.0
            && begin.len() == 4
            && begin[..2] == [0, 0]
            && end[..2] == [0, 0]
        {
            let (b, e) = (begin.clone(), end.clone());
            window.pads = [
                pads[0] + b[2],
                pads[1] + b[3],
                pads[2] + e[2],
                pads[3] + e[3],
            ];
            // The Pad layer is absorbed: continue from its input.
            let Some(n) = x.path.as_ref() else {
                unreachable!("tip() returned a layer, so the path is not empty")
            };
            self.arena[n.idx] = None;
            base = Rt {
                path: n.parent.clone(),
                dims: n
                    .parent
                    .as_ref()
                    .map_or_else(|| self.input_dims.clone(), |p| p.dims.clone()),
                fresh: false,
            };
        }
        Ok(Value::Rt(self.push(
            &base,
            Op::Conv {
                weight: into_tensor(w)?,
                bias,
                window,
                groups,
            },
        )?))
    }

    /// The `group` attribute and the bias (input 2, zeros if absent) of a convolution with
    /// `out` output channels.
    fn conv_groups_bias(
        &self,
        node: &NodeProto,
        a: &Attrs<'_>,
        out: usize,
    ) -> Result<(usize, Vec<f32>)> {
        let groups = a.i("group", 1)?;
        let groups = usize::try_from(groups)
            .ok()
            .filter(|&g| g >= 1)
            .ok_or_else(|| unsupported(format!("attribute group={groups}")))?;
        let bias = match self.value(node, 2)? {
            None => vec![0.0; out],
            Some(_) => {
                let b = self.const_f(node, 2)?;
                if b.v.len() != out {
                    return Err(unsupported(format!(
                        "bias of shape {:?} for {out} output channels",
                        b.dims
                    )));
                }
                b.v
            }
        };
        Ok((groups, bias))
    }

    /// A 1-D convolution (`[N, C, W]` by `[O, C/g, K]`, PyTorch's `Conv1d`) as a 2-D one
    /// over `[N, C, 1, W]` with a `1 x K` kernel, between two reshapes.
    fn conv1d(&mut self, node: &NodeProto, a: &Attrs<'_>, x: Rt, w: Ct<f32>) -> Result<Value> {
        let (c, len) = (x.dims[1], x.dims[2]);
        let k = w.dims[2];
        if let Some(ks) = a.ints("kernel_shape")?
            && sizes(&ks, "kernel_shape", 1)? != [k]
        {
            return Err(unsupported(format!(
                "attribute kernel_shape={ks:?} disagrees with the weight {:?}",
                w.dims
            )));
        }
        let (stride, dilation, pads) = window::geometry_1d(a, k, len)?;
        let (groups, bias) = self.conv_groups_bias(node, a, w.dims[0])?;
        let x4 = self.push(&x, Op::Reshape(vec![c, 1, len]))?;
        let w4 = Ct::new(vec![w.dims[0], w.dims[1], 1, k], w.v)?;
        let y = self.push(
            &x4,
            Op::Conv {
                weight: into_tensor(w4)?,
                bias,
                window: Window {
                    kernel: [1, k],
                    stride,
                    pads,
                    dilation,
                    ceil: false,
                },
                groups,
            },
        )?;
        let (o, wo) = (y.dims[1], y.dims[3]);
        Ok(Value::Rt(self.push(&y, Op::Reshape(vec![o, wo]))?))
    }

    pub(super) fn batchnorm(&mut self, node: &NodeProto, eps: f32) -> Result<Value> {
        let x = self.rt(node, 0)?;
        let p: Vec<Ct<f32>> = (1..5)
            .map(|i| self.const_f(node, i))
            .collect::<Result<_>>()?;
        let c = *x
            .dims
            .get(1)
            .ok_or_else(|| unsupported("BatchNormalization of a 1-D value"))?;
        if p.iter().any(|t| t.v.len() != c) {
            return Err(unsupported(format!(
                "scale/bias/mean/var of sizes {:?} for {c} channels",
                p.iter().map(|t| t.v.len()).collect::<Vec<_>>()
            )));
        }
        // y = (x - mean) / sqrt(var + eps) * scale + bias = x * s + t.
        let s: Vec<f32> = (0..c)
            .map(|i| (p[0].v[i] as f64 / (p[3].v[i] as f64 + eps as f64).sqrt()) as f32)
            .collect();
        let t: Vec<f32> = (0..c)
            .map(|i| (p[1].v[i] as f64 - p[2].v[i] as f64 * s[i] as f64) as f32)
            .collect();
        let name = node.input[0].clone();
        let rank = x.dims.len();
        // Folded into a preceding convolution or linear layer: W' = s W, b' = s b + t.
        let tip = self.tip(&x, &name).and_then(|tip| match tip {
            Op::Conv { weight, bias, .. } => Some((weight, bias)),
            Op::Linear { weight, bias } if rank == 2 => Some((weight, bias)),
            _ => None,
        });
        if let Some((weight, bias)) = tip {
            let per = weight.numel() / c.max(1);
            for (o, chunk) in weight.data_mut().chunks_exact_mut(per.max(1)).enumerate() {
                chunk.iter_mut().for_each(|w| *w *= s[o]);
            }
            for o in 0..c {
                bias[o] = bias[o] * s[o] + t[o];
            }
            return Ok(Value::Rt(x));
        }
        let mut dims = vec![c];
        dims.resize(rank - 1, 1);
        let m = self.arith(&x, ArithOp::Mul, Ct::new(dims.clone(), s)?)?;
        Ok(Value::Rt(self.arith(
            &m,
            ArithOp::Add,
            Ct::new(dims, t)?,
        )?))
    }
}
