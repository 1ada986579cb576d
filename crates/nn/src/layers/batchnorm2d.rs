//! Batch normalization over the channels of NCHW inputs (Ioffe and Szegedy, 2015).

use std::any::Any;

use tensor_core::{Shape, Tensor};

use super::{MAX_DIM, bad_input, check_grad, no_cache};
use crate::error::{NnError, Result};
use crate::layer::{Layer, Mode, ParamMut, ParamRef};
use crate::record::LayerRecord;

/// Batch normalization of channel `c`:
/// `y = gamma[c] * (x - mu[c]) / sqrt(var[c] + eps) + beta[c]`.
///
/// In [`Mode::Train`], `mu` and `var` are the batch statistics over `N, H, W` (biased
/// variance), and the running statistics move as PyTorch's `BatchNorm2d`:
/// `running = (1 - momentum) * running + momentum * batch`, with the *unbiased* batch
/// variance for `running_var`. In [`Mode::Eval`] the running statistics are used.
/// Backward (train mode), with `x_hat = (x - mu) / sigma` over the `M = N*H*W` elements of a
/// channel and `dx_hat = g * gamma`:
/// `dx = (M dx_hat - sum(dx_hat) - x_hat sum(dx_hat x_hat)) / (M sigma)`,
/// `dgamma = sum(g x_hat)`, `dbeta = sum(g)`.
///
/// `weight` (gamma) and `bias` (beta) are trainable; `running_mean` and `running_var` are
/// buffers: listed by `params()`, absent from `params_mut()`, not counted by `param_count`.
/// Inputs of rank 2 (`[N, C]`) and higher are accepted: every dimension after the channel one
/// is spatial.
#[derive(Clone, Debug)]
pub struct BatchNorm2d {
    eps: f32,
    momentum: f32,
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    grad_weight: Tensor,
    grad_bias: Tensor,
    cache: Option<BnCache>,
}

/// What the training-mode backward pass needs.
#[derive(Clone, Debug)]
struct BnCache {
    /// The normalized input `x_hat`, the input's shape.
    x_hat: Tensor,
    /// `1 / sqrt(var + eps)` per channel.
    inv_std: Vec<f32>,
}

impl BatchNorm2d {
    /// PyTorch's defaults: `gamma = 1`, `beta = 0`, running mean 0, running variance 1,
    /// `eps = 1e-5`, `momentum = 0.1`.
    pub fn new(num_features: usize) -> Result<Self> {
        Self::with_config(num_features, 1e-5, 0.1)
    }

    /// With `eps > 0` and `momentum` in `[0, 1]`.
    pub fn with_config(num_features: usize, eps: f32, momentum: f32) -> Result<Self> {
        let c = Shape::new(&[num_features])?;
        Self::from_parts(
            Tensor::full(c.clone(), 1.0),
            Tensor::zeros(c.clone()),
            Tensor::zeros(c.clone()),
            Tensor::full(c, 1.0),
            eps,
            momentum,
        )
    }

    /// From its four tensors (each `[C]`) and constants (checked).
    pub fn from_parts(
        weight: Tensor,
        bias: Tensor,
        running_mean: Tensor,
        running_var: Tensor,
        eps: f32,
        momentum: f32,
    ) -> Result<Self> {
        if !(eps > 0.0 && eps.is_finite() && (0.0..=1.0).contains(&momentum)) {
            return Err(NnError::Config(format!(
                "batchnorm2d: eps {eps} must be positive and momentum {momentum} in [0, 1]"
            )));
        }
        let c = weight.numel();
        for (name, t) in [
            ("weight", &weight),
            ("bias", &bias),
            ("running_mean", &running_mean),
            ("running_var", &running_var),
        ] {
            if t.dims() != [c] {
                return Err(bad_input(
                    "batchnorm2d",
                    t.shape(),
                    format!("{name} must be [{c}]"),
                ));
            }
        }
        Ok(Self {
            eps,
            momentum,
            grad_weight: Tensor::zeros(weight.shape().clone()),
            grad_bias: Tensor::zeros(bias.shape().clone()),
            weight,
            bias,
            running_mean,
            running_var,
            cache: None,
        })
    }

    /// Rebuilds the layer from its record (attributes `num_features`, `eps`, `momentum`;
    /// tensors `weight`, `bias`, `running_mean`, `running_var`, each `[num_features]`).
    pub fn from_record(rec: &LayerRecord) -> Result<Self> {
        rec.expect_kind("batchnorm2d")?;
        let c = rec.usize_in("num_features", 1, MAX_DIM)?;
        let eps = rec.float("eps")?;
        let momentum = rec.float("momentum")?;
        rec.expect_tensor_names(&["weight", "bias", "running_mean", "running_var"])?;
        let t = |n| rec.tensor_with_dims(n, &[c]);
        Self::from_parts(
            t("weight")?,
            t("bias")?,
            t("running_mean")?,
            t("running_var")?,
            eps,
            momentum,
        )
        .map_err(|e| rec.corrupt("attributes", e.to_string()))
    }

    /// Channels `C`.
    pub fn num_features(&self) -> usize {
        self.weight.numel()
    }

    /// `eps`.
    pub fn eps(&self) -> f32 {
        self.eps
    }

    /// `momentum`.
    pub fn momentum(&self) -> f32 {
        self.momentum
    }

    /// `gamma` `[C]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// `beta` `[C]`.
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// Running mean `[C]`.
    pub fn running_mean(&self) -> &Tensor {
        &self.running_mean
    }

    /// Running variance `[C]`.
    pub fn running_var(&self) -> &Tensor {
        &self.running_var
    }

    /// Per-channel affine form of inference: `y = scale[c] * x + shift[c]` with
    /// `scale = gamma / sqrt(running_var + eps)`, `shift = beta - running_mean * scale`
    /// (what BatchNorm folding multiplies into the preceding convolution). Computed in f64.
    pub fn eval_affine(&self) -> (Vec<f32>, Vec<f32>) {
        let mut scale = Vec::with_capacity(self.num_features());
        let mut shift = Vec::with_capacity(self.num_features());
        for c in 0..self.num_features() {
            let s = self.weight.data()[c] as f64
                / (self.running_var.data()[c] as f64 + self.eps as f64).sqrt();
            scale.push(s as f32);
            shift
                .push((self.bias.data()[c] as f64 - self.running_mean.data()[c] as f64 * s) as f32);
        }
        (scale, shift)
    }

    /// Overwrites buffer `running_mean` or `running_var`.
    pub fn set_buffer(&mut self, name: &str, values: &[f32]) -> Result<()> {
        let c = self.num_features();
        let target = match name {
            "running_mean" => &mut self.running_mean,
            "running_var" => &mut self.running_var,
            other => {
                return Err(NnError::Config(format!(
                    "batchnorm2d has no buffer `{other}` (running_mean, running_var)"
                )));
            }
        };
        if values.len() != c {
            return Err(NnError::Config(format!(
                "batchnorm2d {name}: {} values for {c} channels",
                values.len()
            )));
        }
        target.data_mut().copy_from_slice(values);
        Ok(())
    }

    /// `(N, C, spatial)` of an input, checked.
    fn layout(&self, input: &Shape) -> Result<(usize, usize, usize)> {
        let d = input.dims();
        if d.len() < 2 || d[1] != self.num_features() {
            return Err(bad_input(
                "batchnorm2d",
                input,
                format!("expected [N, {}, ...]", self.num_features()),
            ));
        }
        Ok((d[0], d[1], d[2..].iter().product()))
    }
}

impl Layer for BatchNorm2d {
    fn kind(&self) -> &'static str {
        "batchnorm2d"
    }

    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        self.layout(input)?;
        Ok(input.clone())
    }

    fn forward(&mut self, input: &Tensor, mode: Mode) -> Result<Tensor> {
        let (n, c, hw) = self.layout(input.shape())?;
        let x = input.data();
        let mut y = input.clone();
        if mode == Mode::Eval {
            let (scale, shift) = self.eval_affine();
            for (i, plane) in y.data_mut().chunks_exact_mut(hw.max(1)).enumerate() {
                let ch = i % c;
                plane
                    .iter_mut()
                    .for_each(|v| *v = *v * scale[ch] + shift[ch]);
            }
            return Ok(y);
        }
        let m = n * hw;
        if m < 2 {
            return Err(bad_input(
                "batchnorm2d",
                input.shape(),
                "training needs more than one value per channel",
            ));
        }
        // Batch statistics in f64 (two passes: mean, then centered sum of squares).
        let mut mean = vec![0.0f64; c];
        let mut var = vec![0.0f64; c];
        for (i, plane) in x.chunks_exact(hw).enumerate() {
            mean[i % c] += plane.iter().map(|&v| v as f64).sum::<f64>();
        }
        mean.iter_mut().for_each(|v| *v /= m as f64);
        for (i, plane) in x.chunks_exact(hw).enumerate() {
            let mu = mean[i % c];
            var[i % c] += plane.iter().map(|&v| (v as f64 - mu).powi(2)).sum::<f64>();
        }
        var.iter_mut().for_each(|v| *v /= m as f64);
        let inv_std: Vec<f32> = var
            .iter()
            .map(|&v| (1.0 / (v + self.eps as f64).sqrt()) as f32)
            .collect();
        let mut x_hat = input.clone();
        for (i, (plane, out)) in x_hat
            .data_mut()
            .chunks_exact_mut(hw)
            .zip(y.data_mut().chunks_exact_mut(hw))
            .enumerate()
        {
            let ch = i % c;
            let (mu, is) = (mean[ch] as f32, inv_std[ch]);
            let (g, b) = (self.weight.data()[ch], self.bias.data()[ch]);
            for (xh, o) in plane.iter_mut().zip(out.iter_mut()) {
                *xh = (*xh - mu) * is;
                *o = g * *xh + b;
            }
        }
        let mom = self.momentum as f64;
        let unbias = m as f64 / (m - 1) as f64;
        for ch in 0..c {
            let rm = &mut self.running_mean.data_mut()[ch];
            *rm = ((1.0 - mom) * *rm as f64 + mom * mean[ch]) as f32;
            let rv = &mut self.running_var.data_mut()[ch];
            *rv = ((1.0 - mom) * *rv as f64 + mom * var[ch] * unbias) as f32;
        }
        self.cache = Some(BnCache { x_hat, inv_std });
        Ok(y)
    }

    fn backward(&mut self, grad_output: &Tensor) -> Result<Tensor> {
        let cache = self.cache.as_ref().ok_or_else(|| no_cache("batchnorm2d"))?;
        check_grad("batchnorm2d", grad_output, cache.x_hat.dims())?;
        let (n, c, hw) = self.layout(cache.x_hat.shape())?;
        let m = (n * hw) as f64;
        let g = grad_output.data();
        let xh = cache.x_hat.data();
        // Per channel: sum(g) and sum(g * x_hat), in f64.
        let mut sum_g = vec![0.0f64; c];
        let mut sum_gx = vec![0.0f64; c];
        for (i, (gp, xp)) in g.chunks_exact(hw).zip(xh.chunks_exact(hw)).enumerate() {
            let ch = i % c;
            for (&gv, &xv) in gp.iter().zip(xp) {
                sum_g[ch] += gv as f64;
                sum_gx[ch] += gv as f64 * xv as f64;
            }
        }
        let mut dx = grad_output.clone();
        for (i, (dp, xp)) in dx
            .data_mut()
            .chunks_exact_mut(hw)
            .zip(xh.chunks_exact(hw))
            .enumerate()
        {
            let ch = i % c;
            // dx = gamma * inv_std / M * (M g - sum(g) - x_hat sum(g x_hat))
            let k = self.weight.data()[ch] as f64 * cache.inv_std[ch] as f64 / m;
            let (a, b) = ((k * m) as f32, (k * sum_g[ch]) as f32);
            let cx = (k * sum_gx[ch]) as f32;
            for (d, &xv) in dp.iter_mut().zip(xp) {
                *d = a * *d - b - cx * xv;
            }
        }
        for ch in 0..c {
            self.grad_weight.data_mut()[ch] += sum_gx[ch] as f32;
            self.grad_bias.data_mut()[ch] += sum_g[ch] as f32;
        }
        Ok(dx)
    }

    fn params(&self) -> Vec<ParamRef<'_>> {
        vec![
            ParamRef {
                name: "weight",
                value: &self.weight,
            },
            ParamRef {
                name: "bias",
                value: &self.bias,
            },
            ParamRef {
                name: "running_mean",
                value: &self.running_mean,
            },
            ParamRef {
                name: "running_var",
                value: &self.running_var,
            },
        ]
    }

    fn params_mut(&mut self) -> Vec<ParamMut<'_>> {
        vec![
            ParamMut {
                name: "weight",
                value: &mut self.weight,
                grad: &mut self.grad_weight,
            },
            ParamMut {
                name: "bias",
                value: &mut self.bias,
                grad: &mut self.grad_bias,
            },
        ]
    }

    fn param_count(&self) -> usize {
        2 * self.num_features()
    }

    fn macs(&self, input: &Shape) -> Result<u64> {
        self.layout(input)?;
        Ok(input.numel() as u64)
    }

    fn clear_cache(&mut self) {
        self.cache = None;
    }

    fn record(&self) -> Result<LayerRecord> {
        Ok(LayerRecord::new("batchnorm2d")
            .with_int("num_features", self.num_features() as i64)
            .with_float("eps", self.eps)
            .with_float("momentum", self.momentum)
            .with_tensor("weight", self.weight.clone())
            .with_tensor("bias", self.bias.clone())
            .with_tensor("running_mean", self.running_mean.clone())
            .with_tensor("running_var", self.running_var.clone()))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
