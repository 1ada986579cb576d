//! Constants and type conversion: `Constant`, `ConstantOfShape`, `Cast` and `CastLike`
//! (values folded at import time; a cast of a computed value must be to float).

use super::super::fold::{Ct, Dim};
use super::super::import::{Attrs, Importer, Value, const_to_value, ints_of, sizes, unsupported};
use super::super::proto::{NodeProto, attribute_type, data_type};
use super::super::tensor::decode;
use crate::error::Result;

impl Importer {
    pub(super) fn constant(&self, a: &Attrs<'_>) -> Result<Value> {
        if let Some(t) = a.t("value")? {
            return const_to_value(decode(t, &self.source, "Constant value")?);
        }
        if let Some(at) = a.get("value_float") {
            Attrs::check_type(at, attribute_type::FLOAT)?;
            return Ok(Value::F(Ct::new(vec![], vec![at.f])?));
        }
        if let Some(at) = a.get("value_floats") {
            Attrs::check_type(at, attribute_type::FLOATS)?;
            return Ok(Value::F(Ct::new(vec![at.floats.len()], at.floats.clone())?));
        }
        if let Some(at) = a.get("value_int") {
            Attrs::check_type(at, attribute_type::INT)?;
            return Ok(Value::I(Ct::new(vec![], vec![Dim::K(at.i)])?));
        }
        if let Some(v) = a.ints("value_ints")? {
            return Ok(Value::I(Ct::new(
                vec![v.len()],
                v.into_iter().map(Dim::K).collect(),
            )?));
        }
        Err(unsupported("no value attribute"))
    }

    /// A constant tensor of the shape in input 1 filled with attribute `value` (default 0).
    pub(super) fn constant_of_shape(&self, node: &NodeProto, a: &Attrs<'_>) -> Result<Value> {
        let shape = sizes(&self.const_i(node, 0)?, "shape input", 0)?;
        let fill = match a.t("value")? {
            None => Value::F(Ct::full(vec![], 0.0)?),
            Some(t) => const_to_value(decode(t, &self.source, "ConstantOfShape value")?)?,
        };
        Ok(match fill {
            Value::F(c) if c.v.len() == 1 => Value::F(Ct::full(shape, c.v[0])?),
            Value::I(c) if c.v.len() == 1 => Value::I(Ct::full(shape, c.v[0])?),
            _ => return Err(unsupported("attribute value must hold one element")),
        })
    }

    pub(super) fn cast(&mut self, node: &NodeProto, to: i32) -> Result<Value> {
        let float = matches!(
            to,
            data_type::FLOAT | data_type::DOUBLE | data_type::FLOAT16 | data_type::BFLOAT16
        );
        let int = matches!(
            to,
            data_type::INT64
                | data_type::INT32
                | data_type::INT8
                | data_type::UINT8
                | 4
                | 5
                | 12
                | 13
        );
        if !float && !int && to != data_type::BOOL {
            return Err(unsupported(format!(
                "attribute to={} ({}) is not supported",
                to,
                data_type::name(to)
            )));
        }
        Ok(match self.req(node, 0)? {
            Value::Rt(r) => {
                if to != data_type::FLOAT {
                    return Err(unsupported(format!(
                        "casting a computed value to {}",
                        data_type::name(to)
                    )));
                }
                let mut r = r;
                r.fresh = false;
                Value::Rt(r)
            }
            Value::F(c) if float => Value::F(c),
            Value::F(c) => {
                let v =
                    c.v.iter()
                        .map(|&x| {
                            if !x.is_finite() {
                                return Err(unsupported(format!("casting {x} to an integer")));
                            }
                            Ok(Dim::K(if to == data_type::BOOL {
                                (x != 0.0) as i64
                            } else {
                                x.trunc() as i64
                            }))
                        })
                        .collect::<Result<_>>()?;
                Value::I(Ct::new(c.dims, v)?)
            }
            Value::I(c) if float => Value::F(Ct::new(
                c.dims.clone(),
                ints_of(&c)?.iter().map(|&x| x as f32).collect(),
            )?),
            Value::I(c) if to == data_type::BOOL => {
                let v = ints_of(&c)?
                    .iter()
                    .map(|&x| Dim::K((x != 0) as i64))
                    .collect();
                Value::I(Ct::new(c.dims, v)?)
            }
            Value::I(c) => Value::I(c),
        })
    }
}
