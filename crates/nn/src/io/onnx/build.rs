//! Builds the model's layers from the importer's [`Op`]s.

use tensor_core::Tensor;
use tensor_core::conv::{Conv2dParams, Padding};
use tensor_core::pool::Pool2dParams;

use super::spec::{Op, Window};
use crate::error::Result;
use crate::layer::Layer;
use crate::layers::onnx_ops::{
    ConstElementwise, HardActivation, Pad, Parallel, Reshape, Softmax, Transpose,
};
use crate::layers::{
    AvgPool2d, Conv2d, Flatten, GlobalAvgPool, Linear, MaxPool2d, ReLU, Sigmoid, Tanh,
};

fn pool_params(w: &Window) -> Pool2dParams {
    Pool2dParams::new((w.kernel[0], w.kernel[1]))
        .with_stride((w.stride[0], w.stride[1]))
        .with_padding(Padding::from_onnx(w.pads))
        .with_dilation((w.dilation[0], w.dilation[1]))
        .with_ceil_mode(w.ceil)
}

/// The layer an [`Op`] stands for.
pub fn layer(op: Op) -> Result<Box<dyn Layer>> {
    Ok(match op {
        Op::Linear { weight, bias } => {
            let out = weight.dims()[0];
            Box::new(Linear::from_parts(
                weight,
                Some(Tensor::new(&[out], bias)?),
            )?)
        }
        Op::Conv {
            weight,
            bias,
            window,
            groups,
        } => {
            let d = weight.dims().to_vec();
            let params = Conv2dParams::new(d[1] * groups, d[0], (d[2], d[3]))
                .with_stride((window.stride[0], window.stride[1]))
                .with_padding(Padding::from_onnx(window.pads))
                .with_dilation((window.dilation[0], window.dilation[1]))
                .with_groups(groups);
            Box::new(Conv2d::from_parts(
                params,
                weight,
                Some(Tensor::new(&[d[0]], bias)?),
            )?)
        }
        Op::MaxPool(w) => Box::new(MaxPool2d::new(pool_params(&w))?),
        Op::AvgPool {
            window,
            count_include_pad,
        } => Box::new(AvgPool2d::new(pool_params(&window), count_include_pad)?),
        Op::GlobalAvgPool => Box::new(GlobalAvgPool::new()),
        Op::Relu => Box::new(ReLU::new()),
        Op::Sigmoid => Box::new(Sigmoid::new()),
        Op::Tanh => Box::new(Tanh::new()),
        Op::Hard(k) => Box::new(HardActivation::new(k)),
        Op::Flatten => Box::new(Flatten::new()),
        Op::Reshape(t) => Box::new(Reshape::new(t)),
        Op::Transpose(p) => Box::new(Transpose::new(p)?),
        Op::Softmax { axis, coerce, log } => Box::new(Softmax::new(axis, coerce, log)),
        Op::Arith(o, c) => Box::new(ConstElementwise::new(o, c)),
        Op::Pad { begin, end, value } => Box::new(Pad::new(begin, end, value)?),
        Op::Parallel { branches, merge } => {
            let built = branches
                .into_iter()
                .map(|b| b.into_iter().map(layer).collect::<Result<Vec<_>>>())
                .collect::<Result<Vec<_>>>()?;
            Box::new(Parallel::new(built, merge)?)
        }
    })
}
