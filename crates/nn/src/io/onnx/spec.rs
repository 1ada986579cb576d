//! The importer's intermediate form: one [`Op`] per future layer, with the shape inference
//! the graph walk needs (ONNX formulas), before the layers are built.
//!
//! Keeping plain data until the end lets the importer fold patterns (MatMul + Add into one
//! linear layer, BatchNormalization into the preceding convolution, Pad into the following
//! convolution) by editing values instead of downcasting built layers.

use tensor_core::Tensor;

use crate::error::{NnError, Result};
use crate::layers::onnx_ops::{ArithOp, HardKind, Merge, broadcast_dims};

/// Spatial pooling and convolution geometry (2-D, NCHW).
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Strides.
    pub stride: [usize; 2],
    /// Padding: top, left, bottom, right (ONNX `pads` = `[t, l, b, r]`).
    pub pads: [usize; 4],
    /// Dilations.
    pub dilation: [usize; 2],
    /// ONNX `ceil_mode`: output size rounded up (windows starting in the end padding
    /// dropped, as PyTorch and onnxruntime do).
    pub ceil: bool,
}

impl Window {
    /// The output spatial size for input `[h, w]` (tensor-core's window arithmetic, the
    /// one the layers use).
    pub fn out_hw(&self, h: usize, w: usize) -> Result<[usize; 2]> {
        let mut out = [0; 2];
        for (i, &x) in [h, w].iter().enumerate() {
            out[i] = tensor_core::conv::window_out_len(
                x,
                self.kernel[i],
                self.stride[i],
                self.dilation[i],
                self.pads[i],
                self.pads[i + 2],
                self.ceil,
            )
            .ok_or_else(|| {
                NnError::Unsupported(format!(
                    "window {:?} (stride {:?}, dilation {:?}, pads {:?}) does not fit input {h}x{w}",
                    self.kernel, self.stride, self.dilation, self.pads
                ))
            })?;
        }
        Ok(out)
    }
}

/// One future layer.
#[derive(Debug)]
pub enum Op {
    /// `y = x W^T + b`, `weight` `[out, in]`.
    Linear {
        /// `[out, in]`.
        weight: Tensor,
        /// `[out]`.
        bias: Vec<f32>,
    },
    /// 2-D convolution, `weight` `[out, in/groups, kh, kw]`.
    Conv {
        /// The kernel.
        weight: Tensor,
        /// `[out]`.
        bias: Vec<f32>,
        /// Geometry (`ceil` unused).
        window: Window,
        /// Channel groups (depthwise: groups = in channels).
        groups: usize,
    },
    /// Max pooling (padding counts as -inf).
    MaxPool(Window),
    /// Average pooling.
    AvgPool {
        /// Geometry.
        window: Window,
        /// Whether padded zeros count in the divisor.
        count_include_pad: bool,
    },
    /// Mean over all spatial positions, keeping `[N, C, 1, 1]`.
    GlobalAvgPool,
    /// `max(x, 0)`.
    Relu,
    /// Logistic sigmoid.
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// Clip (ReLU6), hard sigmoid or hard swish.
    Hard(HardKind),
    /// `[N, ...] -> [N, prod(...)]`.
    Flatten,
    /// Per-sample reshape.
    Reshape(Vec<usize>),
    /// Permutation of the batched tensor's axes (`perm[0] == 0`).
    Transpose(Vec<usize>),
    /// (Log-)softmax.
    Softmax {
        /// Axis of the batched tensor.
        axis: isize,
        /// Opset < 13 semantics.
        coerce: bool,
        /// Log-softmax.
        log: bool,
    },
    /// `x + c` or `x * c`.
    Arith(ArithOp, Tensor),
    /// Constant padding of the batched tensor.
    Pad {
        /// Before each dimension.
        begin: Vec<usize>,
        /// After each dimension.
        end: Vec<usize>,
        /// Fill value.
        value: f32,
    },
    /// Fork/join block.
    Parallel {
        /// Branches.
        branches: Vec<Vec<Op>>,
        /// Merge.
        merge: Merge,
    },
}

fn need_rank(op: &str, d: &[usize], rank: usize) -> Result<()> {
    if d.len() != rank {
        return Err(NnError::Unsupported(format!(
            "{op} needs a rank-{rank} input, got shape {d:?}"
        )));
    }
    Ok(())
}

impl Op {
    /// Output dimensions for input dimensions `d` (batch included).
    pub fn out_dims(&self, d: &[usize]) -> Result<Vec<usize>> {
        Ok(match self {
            Op::Linear { weight, .. } => {
                need_rank("a linear layer", d, 2)?;
                let (o, i) = (weight.dims()[0], weight.dims()[1]);
                if d[1] != i {
                    return Err(NnError::Unsupported(format!(
                        "linear layer [{o}, {i}] applied to features of shape {d:?}"
                    )));
                }
                vec![d[0], o]
            }
            Op::Conv {
                weight,
                window,
                groups,
                ..
            } => {
                need_rank("a 2-D convolution", d, 4)?;
                let w = weight.dims();
                if d[1] != w[1] * groups || w[0] % groups != 0 {
                    return Err(NnError::Unsupported(format!(
                        "convolution weight {w:?} with {groups} groups applied to {d:?}"
                    )));
                }
                let [h, ww] = window.out_hw(d[2], d[3])?;
                vec![d[0], w[0], h, ww]
            }
            Op::MaxPool(window) | Op::AvgPool { window, .. } => {
                need_rank("2-D pooling", d, 4)?;
                let [h, w] = window.out_hw(d[2], d[3])?;
                vec![d[0], d[1], h, w]
            }
            Op::GlobalAvgPool => {
                if d.len() < 3 {
                    return Err(NnError::Unsupported(format!(
                        "global pooling of shape {d:?}"
                    )));
                }
                let mut o = d[..2].to_vec();
                o.resize(d.len(), 1);
                o
            }
            Op::Relu | Op::Sigmoid | Op::Tanh | Op::Hard(_) | Op::Softmax { .. } => d.to_vec(),
            Op::Flatten => vec![d[0], d[1..].iter().product()],
            Op::Reshape(t) => {
                let per: usize = d[1..].iter().product();
                if per != t.iter().product::<usize>() {
                    return Err(NnError::Unsupported(format!(
                        "reshape of {d:?} to [N, {t:?}]"
                    )));
                }
                let mut o = vec![d[0]];
                o.extend_from_slice(t);
                o
            }
            Op::Transpose(p) => {
                if p.len() != d.len() {
                    return Err(NnError::Unsupported(format!(
                        "transpose {p:?} of shape {d:?}"
                    )));
                }
                p.iter().map(|&i| d[i]).collect()
            }
            Op::Arith(_, c) => {
                let o = broadcast_dims("elementwise", d, c.dims())?;
                if o != d {
                    return Err(NnError::Unsupported(format!(
                        "constant {:?} broadcasts the value {d:?} to {o:?}",
                        c.dims()
                    )));
                }
                o
            }
            Op::Pad { begin, end, .. } => {
                if begin.len() != d.len() {
                    return Err(NnError::Unsupported(format!(
                        "pads for rank {} on shape {d:?}",
                        begin.len()
                    )));
                }
                let mut o = Vec::with_capacity(d.len());
                for i in 0..d.len() {
                    o.push(
                        d[i].checked_add(begin[i])
                            .and_then(|x| x.checked_add(end[i]))
                            .ok_or_else(|| NnError::Unsupported("pad overflows".into()))?,
                    );
                }
                o
            }
            Op::Parallel { branches, merge } => {
                let mut outs = Vec::with_capacity(branches.len());
                for b in branches {
                    let mut s = d.to_vec();
                    for op in b {
                        s = op.out_dims(&s)?;
                    }
                    outs.push(s);
                }
                let mut o = outs[0].clone();
                for s in &outs[1..] {
                    match merge {
                        Merge::Add | Merge::Mul => o = broadcast_dims("merge", &o, s)?,
                        Merge::Concat { axis } => {
                            let ok = s.len() == o.len()
                                && *axis < o.len()
                                && s.iter()
                                    .zip(&o)
                                    .enumerate()
                                    .all(|(i, (a, b))| i == *axis || a == b);
                            if !ok {
                                return Err(NnError::Unsupported(format!(
                                    "concat of shapes {o:?} and {s:?} on axis {axis}"
                                )));
                            }
                            o[*axis] += s[*axis];
                        }
                    }
                }
                o
            }
        })
    }
}
