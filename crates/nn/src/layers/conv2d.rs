//! 2-D convolution layer (NCHW), weight `[out, in/groups, kh, kw]` as PyTorch and ONNX store it.

use std::any::Any;
use std::sync::OnceLock;

use tensor_core::conv::{
    Conv2dGradOut, Conv2dParams, ConvEpilogue, PackedConvWeights, conv2d_backward,
    conv2d_forward_fused, conv2d_input_grad_direct,
};
use tensor_core::rng::Rng;
use tensor_core::{Shape, Tensor};

use super::params::WeightBias;
use super::{
    MAX_DIM, bad_input, check_grad, no_cache, pads_attr, pads_ints, pair_attr, pair_ints,
    uniform_tensor,
};
use crate::error::Result;
use crate::layer::{Layer, Mode, ParamMut, ParamRef};
use crate::record::LayerRecord;

/// A 2-D convolution with stride, four-sided zero padding, dilation and groups; the
/// kernels (the direct AVX2 kernel for stride 1 forward, im2col + GEMM otherwise and for
/// backward) are `tensor_core::conv`.
///
/// Inference packs the weight for the direct kernel once (behind a `OnceLock`, so that
/// inference takes `&self` and the model's chunks of a batch run it from several threads at
/// once) and keeps the packing until the parameters are handed out for writing
/// ([`Layer::params_mut`]: optimizers, hooks), which drops it; training forward passes pack
/// per call, as the weights change every step.
#[derive(Clone, Debug)]
pub struct Conv2d {
    params: Conv2dParams,
    /// Weight and bias with their gradients.
    wb: WeightBias,
    /// The weight packed for the direct kernel, made by the first inference call.
    packed: OnceLock<PackedConvWeights>,
    /// The input of the last training-mode forward pass.
    cache: Option<Tensor>,
    /// Whether `backward` computes the input gradient (see `Layer::set_input_grad_needed`).
    input_grad: bool,
}

impl Conv2d {
    /// A convolution with bias, initialised as PyTorch's `nn.Conv2d`: weight and bias
    /// uniform in `[-1/sqrt(fan_in), 1/sqrt(fan_in)]` with `fan_in = in/groups * kh * kw`
    /// (kaiming-uniform with `a = sqrt(5)`).
    pub fn new(params: Conv2dParams, rng: &mut Rng) -> Result<Self> {
        params.validate()?;
        let bound = 1.0 / (params.patch_len().max(1) as f32).sqrt();
        let weight = uniform_tensor(&params.weight_dims(), bound, rng)?;
        let bias = uniform_tensor(&[params.out_channels], bound, rng)?;
        Self::from_parts(params, weight, Some(bias))
    }

    /// A convolution from its geometry, weight and optional bias (shapes checked).
    pub fn from_parts(params: Conv2dParams, weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        params.validate()?;
        let wd = params.weight_dims();
        if weight.dims() != wd {
            return Err(bad_input(
                "conv2d",
                weight.shape(),
                format!("weight must be {wd:?} for {params:?}"),
            ));
        }
        if let Some(b) = &bias
            && b.dims() != [params.out_channels]
        {
            return Err(bad_input(
                "conv2d",
                b.shape(),
                format!("bias must be [{}]", params.out_channels),
            ));
        }
        Ok(Self {
            params,
            wb: WeightBias::new(weight, bias),
            packed: OnceLock::new(),
            cache: None,
            input_grad: true,
        })
    }

    /// Rebuilds the layer from its record: attributes `in_channels`, `out_channels`,
    /// `kernel` `[kh, kw]`, `stride`, `pads` (ONNX order `[top, left, bottom, right]`),
    /// `dilation`, `groups`, `bias` in {0, 1}; tensors `weight` and optionally `bias`.
    pub fn from_record(rec: &LayerRecord) -> Result<Self> {
        rec.expect_kind("conv2d")?;
        let params = conv2d_params_from_record(rec)?;
        let (weight, bias) =
            WeightBias::read_record(rec, &params.weight_dims(), params.out_channels)?;
        Self::from_parts(params, weight, bias)
    }

    /// The geometry.
    pub fn params(&self) -> &Conv2dParams {
        &self.params
    }

    /// The weight `[out, in/groups, kh, kw]`.
    pub fn weight(&self) -> &Tensor {
        &self.wb.weight
    }

    /// The bias `[out]`, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.wb.bias.as_ref()
    }

    /// Inference with the layers that follow fused into the same pass:
    /// `pool(relu(conv(x) + b))` as [`ConvEpilogue`] says (what `Model::forward` calls for a
    /// conv followed by ReLU and/or a 2x2 max pool in [`Mode::Eval`]). Caches nothing.
    /// Takes `&self`: the model's chunks of a batch run it from several threads at once,
    /// each inside [`tensor_core::serial::run`] so that the kernel does not fork again.
    pub fn forward_fused(&self, input: &Tensor, epi: ConvEpilogue) -> Result<Tensor> {
        self.output_shape(input.shape())?;
        Ok(conv2d_forward_fused(
            input,
            &self.wb.weight,
            self.packing()?,
            self.wb.bias.as_ref().map(|b| b.data()),
            &self.params,
            epi,
        )?)
    }

    /// Packs the weight for the direct kernel now if it applies and is not packed yet (what
    /// the first inference call does), so that threads about to run the layer at once do not
    /// each pack it.
    pub fn prepare_inference(&self) -> Result<()> {
        self.packing().map(|_| ())
    }

    /// The packed weight, made on first use, or `None` when the direct kernel does not
    /// apply to this geometry.
    fn packing(&self) -> Result<Option<&PackedConvWeights>> {
        if !tensor_core::conv::direct_applies(&self.params) {
            return Ok(None);
        }
        if let Some(p) = self.packed.get() {
            return Ok(Some(p));
        }
        let p = PackedConvWeights::pack(self.wb.weight.data(), &self.params)?;
        Ok(Some(self.packed.get_or_init(|| p)))
    }
}

/// The convolution geometry of a record: attributes `in_channels`, `out_channels`, `kernel`
/// `[kh, kw]`, `stride`, `pads` (ONNX order `[top, left, bottom, right]`), `dilation` and
/// `groups`, each bounded and the whole validated. Shared by every convolution kind (dense,
/// sparse, shared, int8, binary), so their records read alike.
pub fn conv2d_params_from_record(rec: &LayerRecord) -> Result<Conv2dParams> {
    let params = Conv2dParams {
        in_channels: rec.usize_in("in_channels", 1, MAX_DIM)?,
        out_channels: rec.usize_in("out_channels", 1, MAX_DIM)?,
        kernel: pair_attr(rec, "kernel", 1)?,
        stride: pair_attr(rec, "stride", 1)?,
        padding: pads_attr(rec)?,
        dilation: pair_attr(rec, "dilation", 1)?,
        groups: rec.usize_in("groups", 1, MAX_DIM)?,
    };
    params
        .validate()
        .map_err(|e| rec.corrupt("attributes", e.to_string()))?;
    Ok(params)
}

/// A record of `kind` holding the geometry `p` as [`conv2d_params_from_record`] reads it.
pub fn conv2d_params_record(kind: &str, p: &Conv2dParams) -> LayerRecord {
    LayerRecord::new(kind)
        .with_int("in_channels", p.in_channels as i64)
        .with_int("out_channels", p.out_channels as i64)
        .with_ints("kernel", &pair_ints(p.kernel))
        .with_ints("stride", &pair_ints(p.stride))
        .with_ints("pads", &pads_ints(p.padding))
        .with_ints("dilation", &pair_ints(p.dilation))
        .with_int("groups", p.groups as i64)
}

impl Layer for Conv2d {
    fn kind(&self) -> &'static str {
        "conv2d"
    }

    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        let d = self
            .params
            .output_dims(input)
            .map_err(|e| bad_input("conv2d", input, e.to_string()))?;
        Ok(Shape::new(&d)?)
    }

    fn forward(&mut self, input: &Tensor, mode: Mode) -> Result<Tensor> {
        if mode == Mode::Eval {
            return self.forward_fused(input, ConvEpilogue::default());
        }
        self.forward_owned(input.clone(), mode)
    }

    fn forward_owned(&mut self, input: Tensor, mode: Mode) -> Result<Tensor> {
        if mode == Mode::Eval {
            return self.forward(&input, mode);
        }
        self.output_shape(input.shape())?;
        let y = conv2d_forward_fused(
            &input,
            &self.wb.weight,
            None,
            self.wb.bias.as_ref().map(|b| b.data()),
            &self.params,
            ConvEpilogue::default(),
        )?;
        // The input is kept, not copied.
        self.cache = Some(input);
        Ok(y)
    }

    fn backward(&mut self, grad_output: &Tensor) -> Result<Tensor> {
        let x = self.cache.as_ref().ok_or_else(|| no_cache("conv2d"))?;
        let want = self.params.output_dims(x.shape())?;
        check_grad("conv2d", grad_output, &want)?;
        // The input gradient on the forward pass's direct kernel where it applies, else
        // through col2im inside `conv2d_backward`.
        let direct = match self.input_grad {
            true => conv2d_input_grad_direct(grad_output, &self.wb.weight, &self.params, x.dims())?,
            false => None,
        };
        let im2col_dx = self.input_grad && direct.is_none();
        let mut dx = direct.unwrap_or_else(|| Tensor::zeros(x.shape().clone()));
        conv2d_backward(
            x,
            &self.wb.weight,
            grad_output,
            &self.params,
            Conv2dGradOut {
                input: im2col_dx.then(|| dx.data_mut()),
                weight: self.wb.grad_weight.data_mut(),
                bias: self.wb.grad_bias.as_mut().map(|b| b.data_mut()),
            },
        )?;
        Ok(dx)
    }

    fn params(&self) -> Vec<ParamRef<'_>> {
        self.wb.refs()
    }

    fn params_mut(&mut self) -> Vec<ParamMut<'_>> {
        // The caller may write the weight: the packing would be stale.
        self.packed = OnceLock::new();
        self.wb.muts()
    }

    fn param_count(&self) -> usize {
        self.wb.count()
    }

    fn macs(&self, input: &Shape) -> Result<u64> {
        self.params
            .macs(input)
            .map_err(|e| bad_input("conv2d", input, e.to_string()))
    }

    fn clear_cache(&mut self) {
        self.cache = None;
    }

    fn set_input_grad_needed(&mut self, needed: bool) {
        self.input_grad = needed;
    }

    fn record(&self) -> Result<LayerRecord> {
        let rec = conv2d_params_record("conv2d", &self.params);
        Ok(self.wb.write_record(rec))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tensor_core::conv::Padding;

    #[test]
    fn writing_a_weight_drops_the_packing() {
        let mut rng = Rng::seed_from_u64(7);
        let p = Conv2dParams::new(3, 20, (3, 3)).with_padding(Padding::symmetric(1));
        let mut conv = Conv2d::new(p, &mut rng).unwrap();
        let x = uniform_tensor(&[2, 3, 9, 9], 1.0, &mut rng).unwrap();
        let epi = ConvEpilogue {
            relu: true,
            max_pool_2x2: false,
        };
        let before = conv.forward_fused(&x, epi).unwrap();
        assert!(conv.packed.get().is_some(), "packed by the first inference");
        for pm in conv.params_mut() {
            if pm.name == "weight" {
                pm.value.data_mut().iter_mut().for_each(|v| *v += 0.25);
            }
        }
        assert!(conv.packed.get().is_none(), "params_mut drops the packing");
        let after = tensor_core::serial::run(|| conv.forward_fused(&x, epi)).unwrap();
        assert_ne!(before.data(), after.data());
        let fresh = Conv2d::from_parts(p, conv.weight().clone(), conv.bias().cloned()).unwrap();
        assert_eq!(fresh.forward_fused(&x, epi).unwrap().data(), after.data());
        assert_eq!(conv.forward_fused(&x, epi).unwrap().data(), after.data());
    }
}
