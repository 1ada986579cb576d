//! Elementwise operators: `Add`/`Sub`/`Mul`/`Div` (folded, joined or applied with a
//! constant), `Sum` of any number of values, the activations `Relu`/`Sigmoid`/`Tanh`, the
//! piecewise-linear `Clip`/`HardSigmoid`/`HardSwish`, and `Softmax`/`LogSoftmax`.

use tensor_core::Tensor;

use super::super::fold::{Ct, Dim, axis};
use super::super::import::{Attrs, Importer, Rt, Value, unsupported};
use super::super::proto::NodeProto;
use super::super::spec::Op;
use crate::error::Result;
use crate::layers::onnx_ops::{ArithOp, HardKind, Merge};

impl Importer {
    pub(super) fn binary(&mut self, node: &NodeProto, op: &str) -> Result<Value> {
        let x = self.req(node, 0)?;
        let y = self.req(node, 1)?;
        match (x, y) {
            (Value::F(a), Value::F(b)) => {
                let f: fn(f32, f32) -> f32 = match op {
                    "Add" => |a, b| a + b,
                    "Sub" => |a, b| a - b,
                    "Mul" => |a, b| a * b,
                    _ => |a, b| a / b,
                };
                Ok(Value::F(a.zip_with(&b, |p, q| Ok(f(*p, *q)))?))
            }
            (Value::I(a), Value::I(b)) => {
                let out = a.zip_with(&b, |p, q| match (p, q) {
                    (Dim::K(p), Dim::K(q)) => {
                        let r = match op {
                            "Add" => p.checked_add(*q),
                            "Sub" => p.checked_sub(*q),
                            "Mul" => p.checked_mul(*q),
                            _ => p.checked_div(*q),
                        };
                        r.map(Dim::K)
                            .ok_or_else(|| unsupported(format!("integer {op} of {p} and {q}")))
                    }
                    _ => Err(unsupported(format!("{op} involving the batch size"))),
                })?;
                Ok(Value::I(out))
            }
            (Value::Rt(a), Value::Rt(b)) => {
                let (merge, extra) = match op {
                    "Add" => (Merge::Add, vec![None, None]),
                    "Mul" => (Merge::Mul, vec![None, None]),
                    "Sub" => (
                        Merge::Add,
                        vec![
                            None,
                            Some(Op::Arith(ArithOp::Mul, Tensor::new(&[], vec![-1.0])?)),
                        ],
                    ),
                    _ => return Err(unsupported("division of two computed values")),
                };
                Ok(Value::Rt(self.join(vec![a, b], merge, extra)?))
            }
            (Value::Rt(r), c) => {
                let c = self.const_f(node, 1).or_else(|_| match c {
                    Value::F(c) => Ok(c),
                    _ => Err(unsupported("constant operand")),
                })?;
                let name = node.input[0].clone();
                match op {
                    "Add" => self.add_const(r, &name, c),
                    "Sub" => {
                        let neg = Ct::new(c.dims.clone(), c.v.iter().map(|x| -x).collect())?;
                        self.add_const(r, &name, neg)
                    }
                    "Mul" => Ok(Value::Rt(self.arith(&r, ArithOp::Mul, c)?)),
                    _ => {
                        let inv = Ct::new(c.dims.clone(), c.v.iter().map(|x| 1.0 / x).collect())?;
                        Ok(Value::Rt(self.arith(&r, ArithOp::Mul, inv)?))
                    }
                }
            }
            (_, Value::Rt(r)) => {
                let c = self.const_f(node, 0)?;
                let name = node.input[1].clone();
                match op {
                    "Add" => self.add_const(r, &name, c),
                    "Mul" => Ok(Value::Rt(self.arith(&r, ArithOp::Mul, c)?)),
                    "Sub" => {
                        let neg = self.arith(&r, ArithOp::Mul, Ct::new(vec![], vec![-1.0])?)?;
                        Ok(Value::Rt(self.arith(&neg, ArithOp::Add, c)?))
                    }
                    _ => Err(unsupported("dividing a constant by a computed value")),
                }
            }
            _ => Err(unsupported(format!(
                "{op} of an integer and a float constant"
            ))),
        }
    }

    /// `x op c` as a layer; the constant's leading unit dimensions beyond the value's rank
    /// are dropped.
    pub(super) fn arith(&mut self, r: &Rt, op: ArithOp, c: Ct<f32>) -> Result<Rt> {
        let mut dims = c.dims.clone();
        while dims.len() > r.dims.len() && dims.first() == Some(&1) {
            dims.remove(0);
        }
        let t = Tensor::new(&dims, c.v)?;
        self.push(r, Op::Arith(op, t))
    }

    /// `x + c`, folded into the bias of a preceding linear or convolution layer when the
    /// constant is per output feature.
    pub(super) fn add_const(&mut self, r: Rt, name: &str, c: Ct<f32>) -> Result<Value> {
        let rank = r.dims.len();
        let channels = r.dims.get(1).copied().unwrap_or(0);
        // Per-channel vector of the constant, if it is one.
        let per_channel = |c: &Ct<f32>| -> Option<Vec<f32>> {
            let mut d = c.dims.clone();
            while d.first() == Some(&1) && d.len() > 1 {
                d.remove(0);
            }
            let n = c.v.len();
            if n == 1 {
                return Some(vec![c.v[0]; channels]);
            }
            let ok = if rank == 2 {
                d == [channels]
            } else {
                d.len() == rank - 1 && d[0] == channels && d[1..].iter().all(|&x| x == 1)
            };
            ok.then(|| c.v.clone())
        };
        if c.dims.len() <= rank
            && let Some(bias_add) = per_channel(&c)
            && let Some(tip) = self.tip(&r, name)
        {
            match tip {
                Op::Linear { bias, .. } if rank == 2 => {
                    bias.iter_mut().zip(&bias_add).for_each(|(b, a)| *b += a);
                    return Ok(Value::Rt(r));
                }
                Op::Conv { bias, .. } => {
                    bias.iter_mut().zip(&bias_add).for_each(|(b, a)| *b += a);
                    return Ok(Value::Rt(r));
                }
                _ => {}
            }
        }
        Ok(Value::Rt(self.arith(&r, ArithOp::Add, c)?))
    }

    /// `Relu`, `Sigmoid` or `Tanh` of a computed value.
    pub(super) fn activation(&mut self, node: &NodeProto, op: &str) -> Result<Value> {
        let x = self.rt(node, 0)?;
        let o = match op {
            "Relu" => Op::Relu,
            "Sigmoid" => Op::Sigmoid,
            _ => Op::Tanh,
        };
        Ok(Value::Rt(self.push(&x, o)?))
    }

    /// A piecewise-linear activation: folded on a constant, else a layer.
    pub(super) fn hard(&mut self, node: &NodeProto, k: HardKind) -> Result<Value> {
        match self.req(node, 0)? {
            Value::Rt(x) => Ok(Value::Rt(self.push(&x, Op::Hard(k))?)),
            Value::F(c) => Ok(Value::F(Ct::new(
                c.dims.clone(),
                c.v.iter().map(|&v| k.apply(v)).collect(),
            )?)),
            Value::I(_) => Err(unsupported("an integer input")),
        }
    }

    /// `Clip` with bounds from attributes (opset < 11) or constant inputs 1 and 2 (either
    /// may be absent: no bound).
    pub(super) fn clip(&mut self, node: &NodeProto, a: &Attrs<'_>) -> Result<Value> {
        let bound = |i: usize, attr: &str, none: f32| -> Result<f32> {
            let v = if self.opset < 11 {
                a.get(attr).map(|_| a.f(attr, none)).transpose()?
            } else {
                match self.value(node, i)? {
                    None => None,
                    Some(_) => {
                        let c = self.const_f(node, i)?;
                        if c.v.len() != 1 {
                            return Err(unsupported(format!(
                                "input {i} ({attr}) of shape {:?}: the bound must be a scalar",
                                c.dims
                            )));
                        }
                        Some(c.v[0])
                    }
                }
            };
            match v {
                Some(x) if x.is_nan() => Err(unsupported(format!("{attr} bound is NaN"))),
                // An infinite bound is no bound; the layer stores finite values.
                Some(x) if x.is_infinite() => Ok(none),
                Some(x) => Ok(x),
                None => Ok(none),
            }
        };
        let min = bound(1, "min", f32::MIN)?;
        let max = bound(2, "max", f32::MAX)?;
        if min > max {
            // ONNX: every output is max when min > max; a layer of that is not worth having.
            return Err(unsupported(format!("min {min} > max {max}")));
        }
        self.hard(node, HardKind::Clip { min, max })
    }

    /// `Sum` of any number of values: computed values are joined by one addition block;
    /// constants are folded.
    pub(super) fn sum(&mut self, node: &NodeProto) -> Result<Value> {
        let vals = match self.variadic(node)? {
            Ok(rts) if rts.len() == 1 => return self.alias(node),
            Ok(rts) => {
                let extra = rts.iter().map(|_| None).collect();
                return Ok(Value::Rt(self.join(rts, Merge::Add, extra)?));
            }
            Err(vals) => vals,
        };
        let mut acc: Option<Ct<f32>> = None;
        for (i, v) in vals.iter().enumerate() {
            let c = match v {
                Value::F(c) => c.clone(),
                Value::I(_) => self.const_f(node, i)?,
                Value::Rt(_) => {
                    return Err(unsupported(
                        "summing computed values with constants (only all-computed or \
                         all-constant inputs are supported)",
                    ));
                }
            };
            acc = Some(match acc {
                None => c,
                Some(a) => a.zip_with(&c, |p, q| Ok(p + q))?,
            });
        }
        Ok(Value::F(acc.ok_or_else(|| unsupported("no inputs"))?))
    }

    /// `Softmax` or `LogSoftmax` along a non-batch axis, with the semantics of the opset.
    pub(super) fn softmax(&mut self, node: &NodeProto, a: &Attrs<'_>, op: &str) -> Result<Value> {
        let coerce = self.opset < 13;
        let ax = a.i("axis", if coerce { 1 } else { -1 })?;
        let x = self.rt(node, 0)?;
        let resolved = axis(ax, x.dims.len(), op)?;
        if resolved == 0 {
            return Err(unsupported(format!(
                "attribute axis={ax} normalizes across the batch"
            )));
        }
        Ok(Value::Rt(self.push(
            &x,
            Op::Softmax {
                axis: resolved as isize,
                coerce,
                log: op == "LogSoftmax",
            },
        )?))
    }
}
