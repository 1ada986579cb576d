//! Constant `Pad` of a computed value (attributes before opset 11, inputs after).

use super::super::fold::axis;
use super::super::import::{Attrs, Importer, Value, sizes, unsupported};
use super::super::proto::NodeProto;
use super::super::spec::Op;
use crate::error::Result;

impl Importer {
    pub(super) fn pad(&mut self, node: &NodeProto, a: &Attrs<'_>) -> Result<Value> {
        let mode = a.s("mode")?.unwrap_or_else(|| "constant".into());
        if mode != "constant" {
            return Err(unsupported(format!(
                "attribute mode='{mode}' (only constant padding)"
            )));
        }
        let x = self.rt(node, 0)?;
        let rank = x.dims.len();
        let (pads, value, axes) = if self.opset < 11 {
            (
                a.ints("pads")?
                    .ok_or_else(|| unsupported("attribute pads is required"))?,
                a.f("value", 0.0)?,
                None,
            )
        } else {
            let value = match self.value(node, 2)? {
                None => 0.0,
                Some(_) => {
                    let c = self.const_f(node, 2)?;
                    *c.v.first()
                        .ok_or_else(|| unsupported("empty constant_value"))?
                }
            };
            let axes = self
                .value(node, 3)?
                .map(|_| self.const_i(node, 3))
                .transpose()?;
            (self.const_i(node, 1)?, value, axes)
        };
        let axes: Vec<usize> = match axes {
            Some(ax) => ax
                .iter()
                .map(|&v| axis(v, rank, "Pad"))
                .collect::<Result<_>>()?,
            None => (0..rank).collect(),
        };
        if pads.len() != 2 * axes.len() {
            return Err(unsupported(format!("pads {pads:?} for axes {axes:?}")));
        }
        let p = sizes(&pads, "pads", 0)
            .map_err(|_| unsupported(format!("negative pads {pads:?} (cropping)")))?;
        let mut begin = vec![0; rank];
        let mut end = vec![0; rank];
        for (k, &ax) in axes.iter().enumerate() {
            begin[ax] = p[k];
            end[ax] = p[k + axes.len()];
        }
        if begin[0] != 0 || end[0] != 0 {
            return Err(unsupported(format!("pads {pads:?} pad the batch")));
        }
        if begin.iter().chain(&end).all(|&v| v == 0) {
            return self.alias(node);
        }
        Ok(Value::Rt(self.push(&x, Op::Pad { begin, end, value })?))
    }
}
