//! InputScaled: the training form of an XNOR-Net layer with the input scale `K`: it takes the
//! real input, binarizes it itself and scales the binary dot products by `K`
//! ([`crate::input_scale`]), so the training graph computes what the packed layer
//! ([`super::BinaryConv2d`], [`super::BinaryLinear`] with `input_scale`) runs.

use std::any::Any;

use nn::layers::{Conv2d, Linear};
use nn::{Layer, LayerRecord, Mode, NnError, ParamMut, ParamRef};
use tensor_core::conv::Conv2dParams;
use tensor_core::{Shape, Tensor};

use crate::input_scale::{input_scale, scale_by};

/// The dense layer inside, held without its bias (the bias is added after the scale).
#[derive(Clone, Debug)]
enum Inner {
    Conv(Box<Conv2d>),
    Linear(Box<Linear>),
}

impl Inner {
    fn layer(&self) -> &dyn Layer {
        match self {
            Inner::Conv(c) => c.as_ref(),
            Inner::Linear(l) => l.as_ref(),
        }
    }

    fn layer_mut(&mut self) -> &mut dyn Layer {
        match self {
            Inner::Conv(c) => c.as_mut(),
            Inner::Linear(l) => l.as_mut(),
        }
    }

    fn conv_params(&self) -> Option<&Conv2dParams> {
        match self {
            Inner::Conv(c) => Some(c.params()),
            Inner::Linear(_) => None,
        }
    }

    fn weight(&self) -> &Tensor {
        match self {
            Inner::Conv(c) => c.weight(),
            Inner::Linear(l) => l.weight(),
        }
    }
}

/// What `backward` needs from the last training forward pass.
#[derive(Clone, Debug)]
struct Cache {
    /// `K` per sample and output position.
    k: Vec<f32>,
    /// Where `|x| <= 1` (the straight-through estimator's pass region).
    pass: Vec<bool>,
    shape: Shape,
}

/// `y = (sign(x) . W_o) K + b_o` for a `conv2d` or `linear` weight `W` (XNOR-Net section 3.2
/// with `K`): the layer the training graph holds in place of `sign -> conv2d` when the input
/// scale is on. [`crate::BinarizeHook`] swaps `W` for `alpha_o sign(W_o)` through
/// [`Layer::params_mut`] (parameters `weight`, `bias`, as the dense layer names them).
///
/// Backward: `K` is a constant (no gradient through the mean `|x|`, as in the authors' code);
/// the bias gets `sum dL/dy`, the weight the dense layer's gradient of `dL/dy * K`, and the
/// input the straight-through gradient `dL/d sign(x) * 1{|x| <= 1}` (BNN, equation 4).
///
/// Stored as kind `xnor_input_scaled`: the dense layer's record (with its bias) and the
/// attribute `inner` naming its kind (`conv2d` or `linear`).
#[derive(Clone, Debug)]
pub struct InputScaled {
    inner: Inner,
    bias: Option<Tensor>,
    grad_bias: Option<Tensor>,
    cache: Option<Cache>,
}

impl InputScaled {
    /// Wraps a convolution (its weight and bias are copied).
    pub fn from_conv2d(c: &Conv2d) -> nn::Result<Self> {
        let inner = Conv2d::from_parts(*c.params(), c.weight().clone(), None)?;
        Ok(Self::with_bias(
            Inner::Conv(Box::new(inner)),
            c.bias().cloned(),
        ))
    }

    /// Wraps a fully connected layer (its weight and bias are copied).
    pub fn from_linear(l: &Linear) -> nn::Result<Self> {
        let inner = Linear::from_parts(l.weight().clone(), None)?;
        Ok(Self::with_bias(
            Inner::Linear(Box::new(inner)),
            l.bias().cloned(),
        ))
    }

    fn with_bias(inner: Inner, bias: Option<Tensor>) -> Self {
        let grad_bias = bias.as_ref().map(|b| Tensor::zeros(b.shape().clone()));
        Self {
            inner,
            bias,
            grad_bias,
            cache: None,
        }
    }

    /// The dense layer with the current weight and bias (`conv2d` or `linear`).
    pub fn to_dense(&self) -> nn::Result<Box<dyn Layer>> {
        Ok(match &self.inner {
            Inner::Conv(c) => Box::new(Conv2d::from_parts(
                *c.params(),
                c.weight().clone(),
                self.bias.clone(),
            )?),
            Inner::Linear(l) => {
                Box::new(Linear::from_parts(l.weight().clone(), self.bias.clone())?)
            }
        })
    }

    /// Rebuilds the layer from its record (type docs).
    pub fn from_record(rec: &LayerRecord) -> nn::Result<Self> {
        rec.expect_kind("xnor_input_scaled")?;
        let mut dense = rec.clone();
        dense.kind = rec.str("inner")?.to_string();
        dense.attrs.remove("inner");
        match dense.kind.as_str() {
            "conv2d" => Self::from_conv2d(&Conv2d::from_record(&dense)?),
            "linear" => Self::from_linear(&Linear::from_record(&dense)?),
            other => Err(rec.corrupt(
                "attribute `inner`",
                format!("{other:?}: expected conv2d or linear"),
            )),
        }
    }

    /// The convolution's geometry (`None` for a fully connected layer).
    pub fn conv_params(&self) -> Option<&Conv2dParams> {
        self.inner.conv_params()
    }

    /// The weight (latent, or binary while the hook has swapped it in).
    pub fn weight(&self) -> &Tensor {
        self.inner.weight()
    }

    /// The bias.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// `inner` values per sample and output channel of an output of `shape`.
    fn inner_len(shape: &Shape) -> usize {
        shape.dims().iter().skip(2).product()
    }
}

/// `y[n, o, ..] += bias[o]`, for an output `[N, O, inner..]`.
fn add_channel_bias(y: &mut Tensor, bias: &Tensor) {
    let inner = InputScaled::inner_len(y.shape()).max(1);
    let o = bias.numel().max(1);
    for (i, v) in y.data_mut().iter_mut().enumerate() {
        *v += bias.data()[(i / inner) % o];
    }
}

impl Layer for InputScaled {
    fn kind(&self) -> &'static str {
        "xnor_input_scaled"
    }

    fn output_shape(&self, input: &Shape) -> nn::Result<Shape> {
        self.inner.layer().output_shape(input)
    }

    fn forward(&mut self, input: &Tensor, mode: Mode) -> nn::Result<Tensor> {
        let k = input_scale(input, self.inner.conv_params())?;
        let mut signs = input.clone();
        signs
            .data_mut()
            .iter_mut()
            .for_each(|v| *v = if *v < 0.0 { -1.0 } else { 1.0 });
        let mut y = self.inner.layer_mut().forward(&signs, mode)?;
        let shape = y.shape().clone();
        scale_by(y.data_mut(), &k, &shape)?;
        if let Some(b) = &self.bias {
            add_channel_bias(&mut y, b);
        }
        if mode == Mode::Train {
            self.cache = Some(Cache {
                k,
                pass: input.data().iter().map(|x| x.abs() <= 1.0).collect(),
                shape,
            });
        }
        Ok(y)
    }

    fn backward(&mut self, grad_output: &Tensor) -> nn::Result<Tensor> {
        let cache = self.cache.as_ref().ok_or_else(|| {
            NnError::Unsupported("xnor_input_scaled backward: no training forward pass".into())
        })?;
        if grad_output.shape() != &cache.shape {
            return Err(NnError::BadInput {
                layer: "xnor_input_scaled".into(),
                input: grad_output.shape().clone(),
                reason: format!("gradient must be {}", cache.shape),
            });
        }
        if let Some(gb) = &mut self.grad_bias {
            let inner = Self::inner_len(&cache.shape).max(1);
            let o = gb.numel().max(1);
            let gbd = gb.data_mut();
            for (i, g) in grad_output.data().iter().enumerate() {
                gbd[(i / inner) % o] += g;
            }
        }
        let mut scaled = grad_output.clone();
        scale_by(scaled.data_mut(), &cache.k, &cache.shape)?;
        let mut dx = self.inner.layer_mut().backward(&scaled)?;
        dx.data_mut()
            .iter_mut()
            .zip(&cache.pass)
            .for_each(|(g, &p)| *g = if p { *g } else { 0.0 });
        Ok(dx)
    }

    fn params(&self) -> Vec<ParamRef<'_>> {
        let mut p = self.inner.layer().params();
        if let Some(b) = &self.bias {
            p.push(ParamRef {
                name: "bias",
                value: b,
            });
        }
        p
    }

    fn params_mut(&mut self) -> Vec<ParamMut<'_>> {
        let mut p = self.inner.layer_mut().params_mut();
        if let (Some(value), Some(grad)) = (&mut self.bias, &mut self.grad_bias) {
            p.push(ParamMut {
                name: "bias",
                value,
                grad,
            });
        }
        p
    }

    fn param_count(&self) -> usize {
        self.inner.layer().param_count() + self.bias.as_ref().map_or(0, Tensor::numel)
    }

    fn macs(&self, input: &Shape) -> nn::Result<u64> {
        self.inner.layer().macs(input)
    }

    fn clear_cache(&mut self) {
        self.cache = None;
        self.inner.layer_mut().clear_cache();
    }

    fn set_input_grad_needed(&mut self, needed: bool) {
        self.inner.layer_mut().set_input_grad_needed(needed);
    }

    fn record(&self) -> nn::Result<LayerRecord> {
        let dense = self.to_dense()?;
        let mut rec = dense.record()?;
        rec.kind = "xnor_input_scaled".into();
        Ok(rec.with_attr("inner", nn::AttrValue::Str(dense.kind().into())))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
