//! Batch normalization over the channels of NCHW inputs (Ioffe and Szegedy, 2015).

use std::any::Any;

use rayon::prelude::*;
use tensor_core::{Shape, Tensor};

use super::relu::{positive_bits, relu_value, relu_with_mask};
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

    /// Inference, `x * scale + shift` per channel ([`BatchNorm2d::eval_affine`]) into a new
    /// tensor, through a shared reference: what [`Layer::forward`] computes in
    /// [`Mode::Eval`], for the model's chunks of a batch (several threads at once).
    pub fn infer(&self, input: &Tensor) -> Result<Tensor> {
        let (_, c, hw) = self.layout(input.shape())?;
        let mut y = input.clone();
        self.apply_eval_affine(y.data_mut(), c, hw);
        Ok(y)
    }

    /// `x = x * scale + shift` on `x` (`[N, c, hw]`) in place, planes in parallel tasks of
    /// about [`CHUNK`] elements unless [`tensor_core::serial::threads`] is 1 (a model's
    /// chunk of a batch).
    fn apply_eval_affine(&self, x: &mut [f32], c: usize, hw: usize) {
        let (scale, shift) = self.eval_affine();
        let hw = hw.max(1);
        let plane = |(i, p): (usize, &mut [f32])| {
            let (s, t) = (scale[i % c], shift[i % c]);
            p.iter_mut().for_each(|v| *v = *v * s + t);
        };
        if tensor_core::serial::threads() > 1 && x.len() > CHUNK {
            x.par_chunks_exact_mut(hw)
                .with_min_len(plane_tasks(hw))
                .enumerate()
                .for_each(plane);
        } else {
            x.chunks_exact_mut(hw).enumerate().for_each(plane);
        }
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

impl BatchNorm2d {
    /// The forward pass on an owned input; in [`Mode::Train`] the input's buffer becomes the
    /// cached `x_hat`. With `relu`, the output goes through ReLU as well and its mask (as
    /// `relu::relu_with_mask` makes it) is returned: the trainer's fused BN -> ReLU step,
    /// equal bit for bit to the two layers one after the other.
    pub(crate) fn forward_train(
        &mut self,
        mut input: Tensor,
        mode: Mode,
        relu: bool,
    ) -> Result<(Tensor, Option<Vec<u64>>)> {
        let (n, c, hw) = self.layout(input.shape())?;
        if mode == Mode::Eval {
            self.apply_eval_affine(input.data_mut(), c, hw);
            let mask = relu.then(|| relu_with_mask(input.data_mut()));
            return Ok((input, mask));
        }
        let m = n * hw;
        if m < 2 {
            return Err(bad_input(
                "batchnorm2d",
                input.shape(),
                "training needs more than one value per channel",
            ));
        }
        // Batch statistics in f64, two passes (mean, then centered sum of squares), each
        // channel on its own task.
        let x = input.data();
        let stats: Vec<(f64, f64)> = per_channel(c, |ch| {
            let plane = |b: usize| &x[(b * c + ch) * hw..(b * c + ch + 1) * hw];
            let mut s = Lanes::default();
            (0..n).for_each(|b| s.add(plane(b), |v| v as f64));
            let mu = s.total() / m as f64;
            let mut q = Lanes::default();
            (0..n).for_each(|b| q.add(plane(b), |v| (v as f64 - mu).powi(2)));
            (mu, q.total() / m as f64)
        });
        let inv_std: Vec<f32> = stats
            .iter()
            .map(|&(_, v)| (1.0 / (v + self.eps as f64).sqrt()) as f32)
            .collect();
        // Per channel: mean, 1 / sigma, gamma, beta.
        let coef: Vec<[f32; 4]> = (0..c)
            .map(|ch| {
                [
                    stats[ch].0 as f32,
                    inv_std[ch],
                    self.weight.data()[ch],
                    self.bias.data()[ch],
                ]
            })
            .collect();
        let mut y = tensor_core::zeroed_vec::<f32>(input.numel());
        let mut mask = relu.then(|| vec![0u64; y.len().div_ceil(64)]);
        let mut words: Vec<&mut [u64]> = match mask.as_mut() {
            Some(mk) => mk.chunks_mut(CHUNK / 64).collect(),
            None => Vec::new(),
        };
        words.resize_with(y.len().div_ceil(CHUNK), Default::default);
        input
            .data_mut()
            .par_chunks_mut(CHUNK)
            .zip(y.par_chunks_mut(CHUNK))
            .zip(words.into_par_iter())
            .enumerate()
            .for_each(|(k, ((xs, ys), ms))| {
                // The chunk in runs of one plane (one channel) each.
                let mut at = 0;
                while at < xs.len() {
                    let global = k * CHUNK + at;
                    let len = (hw - global % hw).min(xs.len() - at);
                    let [mu, is, g, b] = coef[(global / hw) % c];
                    for (xh, o) in xs[at..at + len].iter_mut().zip(&mut ys[at..at + len]) {
                        *xh = (*xh - mu) * is;
                        *o = g * *xh + b;
                    }
                    at += len;
                }
                for (yw, mw) in ys.chunks_mut(64).zip(ms.iter_mut()) {
                    yw.iter_mut().for_each(|v| *v = relu_value(*v));
                    *mw = positive_bits(yw);
                }
            });
        let mom = self.momentum as f64;
        let unbias = m as f64 / (m - 1) as f64;
        for (ch, &(mean, var)) in stats.iter().enumerate() {
            let rm = &mut self.running_mean.data_mut()[ch];
            *rm = ((1.0 - mom) * *rm as f64 + mom * mean) as f32;
            let rv = &mut self.running_var.data_mut()[ch];
            *rv = ((1.0 - mom) * *rv as f64 + mom * var * unbias) as f32;
        }
        let shape = input.shape().clone();
        self.cache = Some(BnCache {
            x_hat: input,
            inv_std,
        });
        Ok((Tensor::from_vec(shape, y)?, mask))
    }
}

/// Elements per rayon task of the elementwise passes (a multiple of 64, the ReLU mask word).
const CHUNK: usize = 1 << 14;

/// Per-channel values `f(ch)` for `ch in 0..c`, channels in parallel.
fn per_channel<T: Send>(c: usize, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    (0..c).into_par_iter().map(f).collect()
}

/// Planes per rayon task for planes of `hw` elements (about [`CHUNK`] elements a task).
fn plane_tasks(hw: usize) -> usize {
    (CHUNK / hw.max(1)).max(1)
}

/// An f64 sum kept in sixteen independent lanes (two 512-bit registers), so that it
/// vectorizes (one chain of dependent f64 additions ran at one element per four cycles:
/// BatchNorm took 14% of a cnn-teacher epoch). The lanes are added in a fixed order, so the
/// result does not depend on threads.
#[derive(Default)]
struct Lanes {
    lanes: [f64; LANES],
    tail: f64,
}

/// Lanes of [`Lanes`].
const LANES: usize = 16;

impl Lanes {
    /// Adds `f(v)` for every `v` of `xs`.
    #[inline(always)]
    fn add(&mut self, xs: &[f32], f: impl Fn(f32) -> f64) {
        let mut it = xs.chunks_exact(LANES);
        for ch in &mut it {
            for (l, &v) in self.lanes.iter_mut().zip(ch) {
                *l += f(v);
            }
        }
        it.remainder().iter().for_each(|&v| self.tail += f(v));
    }

    /// Adds `f(a, b)` for every pair of `a` and `b` (equal lengths).
    #[inline(always)]
    fn add_pairs(&mut self, a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f64) {
        let (mut ia, mut ib) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        for (ca, cb) in (&mut ia).zip(&mut ib) {
            for ((l, &u), &v) in self.lanes.iter_mut().zip(ca).zip(cb) {
                *l += f(u, v);
            }
        }
        for (&u, &v) in ia.remainder().iter().zip(ib.remainder()) {
            self.tail += f(u, v);
        }
    }

    /// The sum.
    fn total(&self) -> f64 {
        self.lanes.iter().sum::<f64>() + self.tail
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
        self.forward_owned(input.clone(), mode)
    }

    fn forward_owned(&mut self, input: Tensor, mode: Mode) -> Result<Tensor> {
        self.forward_train(input, mode, false).map(|(y, _)| y)
    }

    fn backward(&mut self, grad_output: &Tensor) -> Result<Tensor> {
        self.backward_owned(grad_output.clone())
    }

    fn backward_owned(&mut self, mut grad_output: Tensor) -> Result<Tensor> {
        let cache = self.cache.as_ref().ok_or_else(|| no_cache("batchnorm2d"))?;
        check_grad("batchnorm2d", &grad_output, cache.x_hat.dims())?;
        let (n, c, hw) = self.layout(cache.x_hat.shape())?;
        let m = (n * hw) as f64;
        let xh = cache.x_hat.data();
        // Per channel: sum(g) and sum(g * x_hat), in f64.
        let sums: Vec<(f64, f64)> = {
            let g = grad_output.data();
            per_channel(c, |ch| {
                let (mut sg, mut sgx) = (Lanes::default(), Lanes::default());
                for b in 0..n {
                    let at = (b * c + ch) * hw..(b * c + ch + 1) * hw;
                    sg.add(&g[at.clone()], |v| v as f64);
                    sgx.add_pairs(&g[at.clone()], &xh[at], |gv, xv| gv as f64 * xv as f64);
                }
                (sg.total(), sgx.total())
            })
        };
        let weight = self.weight.data();
        let coef: Vec<[f32; 3]> = (0..c)
            .map(|ch| {
                // dx = gamma * inv_std / M * (M g - sum(g) - x_hat sum(g x_hat))
                let k = weight[ch] as f64 * cache.inv_std[ch] as f64 / m;
                [
                    (k * m) as f32,
                    (k * sums[ch].0) as f32,
                    (k * sums[ch].1) as f32,
                ]
            })
            .collect();
        grad_output
            .data_mut()
            .par_chunks_mut(hw)
            .zip(xh.par_chunks(hw))
            .with_min_len(plane_tasks(hw))
            .enumerate()
            .for_each(|(i, (dp, xp))| {
                let [a, b, cx] = coef[i % c];
                for (d, &xv) in dp.iter_mut().zip(xp) {
                    *d = a * *d - b - cx * xv;
                }
            });
        for (ch, &(sg, sgx)) in sums.iter().enumerate() {
            self.grad_weight.data_mut()[ch] += sgx as f32;
            self.grad_bias.data_mut()[ch] += sg as f32;
        }
        Ok(grad_output)
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

#[cfg(test)]
mod tests {
    use tensor_core::rng::Rng;

    use super::*;

    /// A batch whose planes (29 x 31 = 899 values) straddle the parallel chunks, with
    /// per-channel means and scales that differ.
    fn batch(n: usize, c: usize) -> Tensor {
        let mut rng = Rng::seed_from_u64(5);
        let dims = [n, c, 29, 31];
        let len: usize = dims.iter().product();
        let v = (0..len)
            .map(|i| {
                let ch = (i / 899) % c;
                rng.normal() * (1.0 + ch as f32) + ch as f32 - 2.0
            })
            .collect();
        Tensor::new(&dims, v).unwrap()
    }

    /// Forward and backward against the textbook formulas evaluated in f64, element by
    /// element, over chunk boundaries; and the fused ReLU against ReLU of the output.
    #[test]
    fn train_passes_match_the_formulas_across_chunks() {
        let (n, c, hw) = (3, 5, 899);
        let x = batch(n, c);
        let g = {
            let mut rng = Rng::seed_from_u64(6);
            Tensor::new(x.dims(), (0..x.numel()).map(|_| rng.normal()).collect()).unwrap()
        };
        let mut bn = BatchNorm2d::new(c).unwrap();
        bn.weight
            .data_mut()
            .copy_from_slice(&[0.5, -1.0, 2.0, 1.5, 0.25]);
        bn.bias
            .data_mut()
            .copy_from_slice(&[0.1, -0.2, 0.0, 1.0, -3.0]);
        let mut fused = bn.clone();
        let y = bn.forward(&x, Mode::Train).unwrap();
        let dx = bn.backward(&g).unwrap();
        let m = (n * hw) as f64;
        let plane = |t: &Tensor, b: usize, ch: usize| -> Vec<f64> {
            let at = (b * c + ch) * hw;
            t.data()[at..at + hw].iter().map(|&v| v as f64).collect()
        };
        for ch in 0..c {
            let xs: Vec<f64> = (0..n).flat_map(|b| plane(&x, b, ch)).collect();
            let gs: Vec<f64> = (0..n).flat_map(|b| plane(&g, b, ch)).collect();
            let mu = xs.iter().sum::<f64>() / m;
            let var = xs.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / m;
            let is = 1.0 / (var + 1e-5).sqrt();
            let (gm, bt) = (bn.weight.data()[ch] as f64, bn.bias.data()[ch] as f64);
            let xh: Vec<f64> = xs.iter().map(|v| (v - mu) * is).collect();
            let (sg, sgx) = (
                gs.iter().sum::<f64>(),
                gs.iter().zip(&xh).map(|(a, b)| a * b).sum::<f64>(),
            );
            for b in 0..n {
                let (yp, dp) = (plane(&y, b, ch), plane(&dx, b, ch));
                for k in 0..hw {
                    let i = b * hw + k;
                    let want_y = gm * xh[i] + bt;
                    let want_dx = gm * is / m * (m * gs[i] - sg - xh[i] * sgx);
                    assert!(
                        (yp[k] - want_y).abs() < 1e-4 * (1.0 + want_y.abs()),
                        "y {ch} {i}"
                    );
                    assert!(
                        (dp[k] - want_dx).abs() < 1e-4 * (1.0 + want_dx.abs()),
                        "dx {ch} {i}"
                    );
                }
            }
            assert!((bn.grad_bias.data()[ch] as f64 - sg).abs() < 1e-3 * (1.0 + sg.abs()));
            assert!((bn.grad_weight.data()[ch] as f64 - sgx).abs() < 1e-3 * (1.0 + sgx.abs()));
        }
        // The fused step: ReLU of the same output, its mask one bit per positive output.
        let (yr, mask) = fused.forward_train(x.clone(), Mode::Train, true).unwrap();
        let mask = mask.unwrap();
        for (i, (&a, &b)) in yr.data().iter().zip(y.data()).enumerate() {
            assert_eq!(a.to_bits(), relu_value(b).to_bits(), "fused y[{i}]");
            assert_eq!((mask[i / 64] >> (i % 64)) & 1 == 1, b > 0.0, "mask bit {i}");
        }
    }
}
