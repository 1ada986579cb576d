//! The trainable weight and optional bias of the dense layers ([`super::Linear`],
//! [`super::Conv2d`]) with their gradients: the parameter plumbing those layers share
//! (listing, counting, record reading and writing).

use tensor_core::Tensor;

use crate::error::Result;
use crate::layer::{ParamMut, ParamRef};
use crate::record::LayerRecord;

/// A weight, an optional bias, and their accumulated gradients (same shapes).
#[derive(Clone, Debug)]
pub(crate) struct WeightBias {
    /// The weight.
    pub(crate) weight: Tensor,
    /// The bias, if the layer has one.
    pub(crate) bias: Option<Tensor>,
    /// Gradient of the loss with respect to `weight`.
    pub(crate) grad_weight: Tensor,
    /// Gradient of the loss with respect to `bias`.
    pub(crate) grad_bias: Option<Tensor>,
}

impl WeightBias {
    /// The parameters with zeroed gradients (shapes are the caller's to check).
    pub(crate) fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            grad_weight: Tensor::zeros(weight.shape().clone()),
            grad_bias: bias.as_ref().map(|b| Tensor::zeros(b.shape().clone())),
            weight,
            bias,
        }
    }

    /// Reads a record's tensor `weight` (of `weight_dims`) and, when attribute `bias` is 1,
    /// tensor `bias` (of `[out]`); any other tensor name is an error.
    pub(crate) fn read_record(
        rec: &LayerRecord,
        weight_dims: &[usize],
        out: usize,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let has_bias = rec.usize_in("bias", 0, 1)? == 1;
        rec.expect_tensor_names(if has_bias {
            &["weight", "bias"]
        } else {
            &["weight"]
        })?;
        let weight = rec.tensor_with_dims("weight", weight_dims)?;
        let bias = if has_bias {
            Some(rec.tensor_with_dims("bias", &[out])?)
        } else {
            None
        };
        Ok((weight, bias))
    }

    /// `rec` with attribute `bias` (0 or 1) and tensors `weight` and, if any, `bias`.
    pub(crate) fn write_record(&self, rec: LayerRecord) -> LayerRecord {
        let mut rec = rec
            .with_int("bias", self.bias.is_some() as i64)
            .with_tensor("weight", self.weight.clone());
        if let Some(b) = &self.bias {
            rec = rec.with_tensor("bias", b.clone());
        }
        rec
    }

    /// `weight`, then `bias` if present.
    pub(crate) fn refs(&self) -> Vec<ParamRef<'_>> {
        let mut v = vec![ParamRef {
            name: "weight",
            value: &self.weight,
        }];
        if let Some(b) = &self.bias {
            v.push(ParamRef {
                name: "bias",
                value: b,
            });
        }
        v
    }

    /// `weight`, then `bias` if present, each with its gradient.
    pub(crate) fn muts(&mut self) -> Vec<ParamMut<'_>> {
        let mut v = vec![ParamMut {
            name: "weight",
            value: &mut self.weight,
            grad: &mut self.grad_weight,
        }];
        if let (Some(b), Some(gb)) = (&mut self.bias, &mut self.grad_bias) {
            v.push(ParamMut {
                name: "bias",
                value: b,
                grad: gb,
            });
        }
        v
    }

    /// Number of trainable values.
    pub(crate) fn count(&self) -> usize {
        self.weight.numel() + self.bias.as_ref().map_or(0, |b| b.numel())
    }
}
