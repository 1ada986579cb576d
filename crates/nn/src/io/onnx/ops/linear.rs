//! Fully connected operators: `Gemm` and 2-D `MatMul` by a constant, as linear layers.

use super::super::import::{Attrs, Importer, Value, into_tensor, unsupported};
use super::super::proto::NodeProto;
use super::super::spec::Op;
use crate::error::Result;

impl Importer {
    pub(super) fn gemm(&mut self, node: &NodeProto, a: &Attrs<'_>) -> Result<Value> {
        let alpha = a.f("alpha", 1.0)?;
        let beta = a.f("beta", 1.0)?;
        let trans_a = a.i("transA", 0)?;
        let trans_b = a.i("transB", 0)?;
        if trans_a != 0 {
            return Err(unsupported(format!(
                "attribute transA={trans_a} transposes the batch into the features"
            )));
        }
        let x = self.rt(node, 0)?;
        let b = self.take_f(node, 1)?;
        if x.dims.len() != 2 || b.dims.len() != 2 {
            return Err(unsupported(format!(
                "Gemm of {:?} by {:?}: both must be 2-D",
                x.dims, b.dims
            )));
        }
        let mut w = if trans_b != 0 {
            b
        } else {
            b.transpose(&[1, 0])?
        };
        if alpha != 1.0 {
            w.v.iter_mut().for_each(|v| *v *= alpha);
        }
        let out = w.dims[0];
        let bias = match self.value(node, 2)? {
            None => vec![0.0; out],
            Some(_) => {
                let c = self.const_f(node, 2)?;
                let ok = c.v.len() == 1
                    || (c.v.len() == out && c.dims.last() == Some(&out) && c.dims.len() <= 2);
                if !ok {
                    return Err(unsupported(format!(
                        "bias C of shape {:?} is not per output feature ({out})",
                        c.dims
                    )));
                }
                if c.v.len() == 1 {
                    vec![beta * c.v[0]; out]
                } else {
                    c.v.iter().map(|v| beta * v).collect()
                }
            }
        };
        Ok(Value::Rt(self.push(
            &x,
            Op::Linear {
                weight: into_tensor(w)?,
                bias,
            },
        )?))
    }

    /// `[N, in] x [in, out]` by a constant weight: a linear layer without bias.
    pub(super) fn matmul(&mut self, node: &NodeProto) -> Result<Value> {
        let x = self.rt(node, 0)?;
        let w = self.take_f(node, 1)?;
        if x.dims.len() != 2 || w.dims.len() != 2 {
            return Err(unsupported(format!(
                "MatMul of {:?} by {:?}: only [N, in] x [in, out] is supported",
                x.dims, w.dims
            )));
        }
        let wt = w.transpose(&[1, 0])?;
        let out = wt.dims[0];
        Ok(Value::Rt(self.push(
            &x,
            Op::Linear {
                weight: into_tensor(wt)?,
                bias: vec![0.0; out],
            },
        )?))
    }
}
