//! Constant padding of every sample (ONNX `Pad`, mode `constant`).

use std::any::Any;

use tensor_core::{Shape, Tensor};

use super::{bad_input, no_cache, record_sizes, shape_of, to_i64};
use crate::error::{NnError, Result};
use crate::layer::{Layer, Mode};
use crate::record::LayerRecord;

/// Constant padding of every sample (ONNX `Pad`, mode `constant`): `begin[i]` and `end[i]`
/// elements of `value` around dimension `i` of the batched tensor; the batch dimension is
/// never padded.
#[derive(Debug, Clone)]
pub struct Pad {
    /// Elements added before each dimension (batch included, `begin[0] == 0`).
    pub begin: Vec<usize>,
    /// Elements added after each dimension (`end[0] == 0`).
    pub end: Vec<usize>,
    /// The fill value.
    pub value: f32,
    input_dims: Option<Vec<usize>>,
}

impl Pad {
    /// A constant pad; the batch dimension must not be padded.
    pub fn new(begin: Vec<usize>, end: Vec<usize>, value: f32) -> Result<Self> {
        if begin.len() != end.len() {
            return Err(NnError::Config(format!(
                "pad: begin {begin:?} and end {end:?} differ in rank"
            )));
        }
        if begin.first().is_some_and(|&b| b != 0) || end.first().is_some_and(|&e| e != 0) {
            return Err(NnError::Unsupported(
                "pad: padding the batch dimension".into(),
            ));
        }
        Ok(Self {
            begin,
            end,
            value,
            input_dims: None,
        })
    }

    /// Rebuilds a `pad` layer from its record.
    pub fn from_record(rec: &LayerRecord) -> Result<Self> {
        rec.expect_tensor_names(&[])?;
        Self::new(
            record_sizes(rec, "begin")?,
            record_sizes(rec, "end")?,
            rec.float("value")?,
        )
        .map_err(|e| rec.corrupt("attribute `begin`", e.to_string()))
    }

    /// Calls `f(input_offset, output_offset, run)` for each contiguous innermost run.
    fn runs(&self, dims: &[usize], out: &[usize], mut f: impl FnMut(usize, usize, usize)) {
        let rank = dims.len();
        if rank == 0 {
            f(0, 0, 1);
            return;
        }
        let in_strides = Shape::new(dims).map(|s| s.strides()).unwrap_or_default();
        let out_strides = Shape::new(out).map(|s| s.strides()).unwrap_or_default();
        let rows: usize = dims[..rank - 1].iter().product();
        let mut idx = vec![0usize; rank - 1];
        for _ in 0..rows {
            let mut i_off = 0;
            let mut o_off = self.begin[rank - 1];
            for a in 0..rank - 1 {
                i_off += idx[a] * in_strides[a];
                o_off += (idx[a] + self.begin[a]) * out_strides[a];
            }
            f(i_off, o_off, dims[rank - 1]);
            for a in (0..rank - 1).rev() {
                idx[a] += 1;
                if idx[a] < dims[a] {
                    break;
                }
                idx[a] = 0;
            }
        }
    }
}

impl Layer for Pad {
    fn kind(&self) -> &'static str {
        "pad"
    }

    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        if input.rank() != self.begin.len() {
            return Err(bad_input(
                "pad",
                input,
                format!("pads are for rank {}", self.begin.len()),
            ));
        }
        let mut dims = Vec::with_capacity(input.rank());
        for ((&d, &b), &e) in input.dims().iter().zip(&self.begin).zip(&self.end) {
            let n = d
                .checked_add(b)
                .and_then(|x| x.checked_add(e))
                .ok_or_else(|| NnError::Config(format!("pad: {d} + {b} + {e} overflows")))?;
            dims.push(n);
        }
        shape_of(&dims)
    }

    fn forward(&mut self, input: &Tensor, mode: Mode) -> Result<Tensor> {
        let out = self.output_shape(input.shape())?;
        let mut y = Tensor::full(out.clone(), self.value);
        let yd = y.data_mut();
        let xd = input.data();
        self.runs(input.dims(), out.dims(), |i, o, n| {
            yd[o..o + n].copy_from_slice(&xd[i..i + n]);
        });
        if mode == Mode::Train {
            self.input_dims = Some(input.dims().to_vec());
        }
        Ok(y)
    }

    fn backward(&mut self, grad_output: &Tensor) -> Result<Tensor> {
        let dims = self.input_dims.clone().ok_or_else(|| no_cache("pad"))?;
        let mut g = Tensor::zeros(shape_of(&dims)?);
        let gd = g.data_mut();
        let od = grad_output.data();
        self.runs(&dims, grad_output.dims(), |i, o, n| {
            gd[i..i + n].copy_from_slice(&od[o..o + n]);
        });
        Ok(g)
    }

    fn param_count(&self) -> usize {
        0
    }

    fn macs(&self, _input: &Shape) -> Result<u64> {
        Ok(0)
    }

    fn clear_cache(&mut self) {
        self.input_dims = None;
    }

    fn record(&self) -> Result<LayerRecord> {
        Ok(LayerRecord::new("pad")
            .with_ints("begin", &to_i64(&self.begin))
            .with_ints("end", &to_i64(&self.end))
            .with_float("value", self.value))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
