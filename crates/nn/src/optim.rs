//! Optimizers: SGD with momentum (optionally Nesterov) and Adam/AdamW, with PyTorch semantics.
//!
//! An optimizer updates every trainable parameter of a [`Model`] from the gradient that
//! `backward` accumulated, reached through [`crate::Layer::params_mut`]. Per-parameter state
//! (momentum buffers, Adam moments and step counts) is keyed by (layer index, parameter
//! name), so hooks may rewrite values and gradients between steps without confusing it.
//!
//! Update rules (as `torch.optim.SGD` and `torch.optim.Adam`/`AdamW` define them), for a
//! parameter `w` with gradient `g` at learning rate `lr`:
//! - SGD: `g += wd * w`; with momentum `mu > 0`: `b = g` on the first step, then
//!   `b = mu * b + g`; Nesterov uses `g + mu * b`, plain momentum uses `b`; `w -= lr * g`.
//! - Adam (Kingma and Ba, 2015): `g += wd * w` (L2), or for AdamW (Loshchilov and Hutter,
//!   2019, decoupled) `w *= 1 - lr * wd`; then `m = b1 m + (1 - b1) g`,
//!   `v = b2 v + (1 - b2) g^2`, and with step count `t`,
//!   `w -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tensor_core::{Shape, Tensor};

use crate::error::{NnError, Result, StateMismatch};
use crate::model::{LayerPath, Model};

/// An optimizer: one update of every trainable parameter of a model from its gradients.
///
/// The learning rate is set before each step by the Trainer from its
/// [`crate::schedule::Schedule`].
pub trait Optimizer: Send {
    /// Applies one update to every trainable parameter of `model` (gradients are read, not
    /// cleared: the Trainer zeroes them before the next forward pass).
    fn step(&mut self, model: &mut Model) -> Result<()>;

    /// The current learning rate.
    fn lr(&self) -> f32;

    /// Sets the learning rate for the following steps.
    fn set_lr(&mut self, lr: f32);

    /// Forgets all per-parameter state (momentum, moments, step counts).
    fn reset(&mut self);

    /// The per-parameter state, for a training checkpoint ([`crate::trainer::TrainState`]).
    fn save_state(&self) -> Result<OptimizerState> {
        Err(NnError::Unsupported(
            "this optimizer's state cannot be checkpointed".into(),
        ))
    }

    /// Replaces the per-parameter state with `state` ([`Optimizer::save_state`]), checking
    /// every entry against the parameters of `model`.
    fn load_state(&mut self, model: &mut Model, state: &OptimizerState) -> Result<()> {
        let _ = (model, state);
        Err(NnError::Unsupported(
            "this optimizer's state cannot be restored from a checkpoint".into(),
        ))
    }
}

/// One parameter's optimizer state as a training checkpoint stores it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParamState {
    /// The layer's path ([`LayerPath`]'s display form, `3` or `2.1`).
    pub path: String,
    /// The parameter's name within its layer.
    pub param: String,
    /// The state tensors' dimensions (the parameter's).
    pub dims: Vec<usize>,
    /// The state tensors: SGD's momentum buffer; Adam's first and second moments.
    pub tensors: Vec<Vec<f32>>,
    /// Adam's step count `t` (0 for SGD).
    pub steps: u64,
}

/// An optimizer's per-parameter state ([`Optimizer::save_state`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OptimizerState {
    /// The optimizer (`sgd`, `adam`); restoring into another is an error.
    pub optimizer: String,
    /// One entry per parameter that has state, in parameter order.
    pub params: Vec<ParamState>,
}

/// The state entries of `map` as [`ParamState`]s (`tensors` and `steps` read by `parts`).
fn save_entries<S>(
    optimizer: &str,
    map: &BTreeMap<ParamKey, S>,
    parts: impl Fn(&S) -> (Vec<&Tensor>, u64),
) -> OptimizerState {
    let params = map
        .iter()
        .map(|((path, name), st)| {
            let (tensors, steps) = parts(st);
            ParamState {
                path: path.to_string(),
                param: name.to_string(),
                dims: tensors
                    .first()
                    .map(|t| t.shape().dims().to_vec())
                    .unwrap_or_default(),
                tensors: tensors.iter().map(|t| t.data().to_vec()).collect(),
                steps,
            }
        })
        .collect();
    OptimizerState {
        optimizer: optimizer.to_string(),
        params,
    }
}

/// Rebuilds the state map of `optimizer` from `state`: every entry must name a parameter of
/// `model`, with its dimensions and `tensors` state tensors of its size; `build` makes one
/// state from the tensors and the step count.
fn load_entries<S>(
    optimizer: &str,
    model: &mut Model,
    state: &OptimizerState,
    tensors: usize,
    build: impl Fn(Vec<Tensor>, u64) -> S,
) -> Result<BTreeMap<ParamKey, S>> {
    let bad = |what: String| NnError::Config(format!("{optimizer} checkpoint state: {what}"));
    if state.optimizer != optimizer {
        return Err(bad(format!(
            "saved by optimizer {:?}, restoring into {optimizer:?}",
            state.optimizer
        )));
    }
    let params: BTreeMap<(String, String), (LayerPath, &'static str, Shape)> = model
        .named_params_mut()
        .into_iter()
        .map(|(path, p)| {
            let key = (path.to_string(), p.name.to_string());
            (key, (path, p.name, p.value.shape().clone()))
        })
        .collect();
    let mut map = BTreeMap::new();
    for e in &state.params {
        let Some((path, name, shape)) = params.get(&(e.path.clone(), e.param.clone())) else {
            return Err(bad(format!(
                "parameter {}.{} is not in the model",
                e.path, e.param
            )));
        };
        if shape.dims() != e.dims.as_slice() || e.tensors.len() != tensors {
            return Err(bad(format!(
                "parameter {}.{}: {} state tensors of dimensions {:?}, the model needs {tensors} \
                 of {:?}",
                e.path,
                e.param,
                e.tensors.len(),
                e.dims,
                shape.dims()
            )));
        }
        let ts = e
            .tensors
            .iter()
            .map(|d| Tensor::from_vec(shape.clone(), d.clone()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|err| bad(format!("parameter {}.{}: {err}", e.path, e.param)))?;
        map.insert((path.clone(), *name), build(ts, e.steps));
    }
    Ok(map)
}

/// Which optimizer to build, with its hyper-parameters (serializable, for configs and
/// reports).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerConfig {
    /// Stochastic gradient descent with momentum.
    Sgd {
        /// Base learning rate (the schedule scales it).
        lr: f32,
        /// Momentum `mu` in `[0, 1)`; 0 disables it.
        momentum: f32,
        /// Nesterov momentum (needs `momentum > 0`).
        nesterov: bool,
        /// L2 weight decay added to the gradient (`g += wd * w`).
        weight_decay: f32,
    },
    /// Adam, or AdamW with `decoupled = true`.
    Adam {
        /// Base learning rate (the schedule scales it).
        lr: f32,
        /// Decay rates `(b1, b2)` of the first and second moments, each in `[0, 1)`.
        betas: (f32, f32),
        /// Denominator term, `> 0`.
        eps: f32,
        /// Weight decay: L2 in the gradient, or decoupled (AdamW) when `decoupled`.
        weight_decay: f32,
        /// AdamW's decoupled weight decay `w *= 1 - lr * wd`.
        decoupled: bool,
    },
}

impl Default for OptimizerConfig {
    /// SGD, learning rate 0.05, momentum 0.9, no weight decay: trains the zoo MLPs and CNNs.
    fn default() -> Self {
        OptimizerConfig::Sgd {
            lr: 0.05,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
}

impl OptimizerConfig {
    /// Adam with PyTorch's defaults (`betas = (0.9, 0.999)`, `eps = 1e-8`) at `lr`.
    pub fn adam(lr: f32) -> Self {
        OptimizerConfig::Adam {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        }
    }

    /// Plain SGD with momentum `momentum` at `lr`.
    pub fn sgd(lr: f32, momentum: f32) -> Self {
        OptimizerConfig::Sgd {
            lr,
            momentum,
            nesterov: false,
            weight_decay: 0.0,
        }
    }

    /// The base learning rate.
    pub fn lr(&self) -> f32 {
        match *self {
            OptimizerConfig::Sgd { lr, .. } | OptimizerConfig::Adam { lr, .. } => lr,
        }
    }

    /// Checks every hyper-parameter's range.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(NnError::Config(msg));
        let lr = self.lr();
        if !(lr.is_finite() && lr >= 0.0) {
            return bad(format!(
                "optimizer: learning rate {lr} must be finite and >= 0"
            ));
        }
        match *self {
            OptimizerConfig::Sgd {
                momentum,
                nesterov,
                weight_decay,
                ..
            } => {
                if !(0.0..1.0).contains(&momentum) {
                    return bad(format!("sgd: momentum {momentum} must be in [0, 1)"));
                }
                if nesterov && momentum == 0.0 {
                    return bad("sgd: Nesterov momentum needs momentum > 0".into());
                }
                check_weight_decay("sgd", weight_decay)
            }
            OptimizerConfig::Adam {
                betas,
                eps,
                weight_decay,
                ..
            } => {
                for (name, b) in [("beta1", betas.0), ("beta2", betas.1)] {
                    if !(0.0..1.0).contains(&b) {
                        return bad(format!("adam: {name} {b} must be in [0, 1)"));
                    }
                }
                if !(eps.is_finite() && eps > 0.0) {
                    return bad(format!("adam: eps {eps} must be finite and > 0"));
                }
                check_weight_decay("adam", weight_decay)
            }
        }
    }

    /// Builds the optimizer (after [`OptimizerConfig::validate`]).
    pub fn build(&self) -> Result<Box<dyn Optimizer>> {
        self.validate()?;
        Ok(match *self {
            OptimizerConfig::Sgd {
                lr,
                momentum,
                nesterov,
                weight_decay,
            } => Box::new(Sgd::new(lr, momentum, nesterov, weight_decay)),
            OptimizerConfig::Adam {
                lr,
                betas,
                eps,
                weight_decay,
                decoupled,
            } => Box::new(Adam::new(lr, betas, eps, weight_decay, decoupled)),
        })
    }
}

fn check_weight_decay(op: &str, wd: f32) -> Result<()> {
    if wd.is_finite() && wd >= 0.0 {
        Ok(())
    } else {
        Err(NnError::Config(format!(
            "{op}: weight decay {wd} must be finite and >= 0"
        )))
    }
}

/// Key of per-parameter optimizer state: (layer path, parameter name).
type ParamKey = (LayerPath, &'static str);

/// Returns the state of parameter `key`, creating it with `init` on first use, and checks
/// that the state (whose shape `shape_of` reads) still has the shape of the parameter `like`
/// (a layer replaced under a running optimizer is an error naming `op`).
fn state_for<'a, S>(
    op: &'static str,
    map: &'a mut BTreeMap<ParamKey, S>,
    key: ParamKey,
    like: &Tensor,
    init: impl FnOnce() -> S,
    shape_of: impl Fn(&S) -> &Shape,
) -> Result<&'a mut S> {
    let (path, name) = (key.0.to_string(), key.1);
    let st = map.entry(key).or_insert_with(init);
    if shape_of(st) != like.shape() {
        return Err(NnError::OptimizerState(Box::new(StateMismatch {
            optimizer: op,
            path,
            param: name.to_string(),
            what: "state",
            found: shape_of(st).clone(),
            expected: like.shape().clone(),
        })));
    }
    Ok(st)
}

fn check_grad_shape(
    op: &'static str,
    path: &LayerPath,
    name: &str,
    value: &Tensor,
    grad: &Tensor,
) -> Result<()> {
    if value.shape() == grad.shape() {
        Ok(())
    } else {
        Err(NnError::OptimizerState(Box::new(StateMismatch {
            optimizer: op,
            path: path.to_string(),
            param: name.to_string(),
            what: "gradient",
            found: grad.shape().clone(),
            expected: value.shape().clone(),
        })))
    }
}

/// SGD with momentum, optional Nesterov momentum and L2 weight decay (`torch.optim.SGD`
/// without dampening).
#[derive(Clone, Debug)]
pub struct Sgd {
    lr: f32,
    momentum: f32,
    nesterov: bool,
    weight_decay: f32,
    buffers: BTreeMap<ParamKey, Tensor>,
}

impl Sgd {
    /// An SGD optimizer (ranges are checked by [`OptimizerConfig::validate`]).
    pub fn new(lr: f32, momentum: f32, nesterov: bool, weight_decay: f32) -> Self {
        Self {
            lr,
            momentum,
            nesterov,
            weight_decay,
            buffers: BTreeMap::new(),
        }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, model: &mut Model) -> Result<()> {
        let (lr, mu, wd) = (self.lr, self.momentum, self.weight_decay);
        for (path, p) in model.named_params_mut() {
            check_grad_shape("sgd", &path, p.name, p.value, p.grad)?;
            let key = (path, p.name);
            if mu == 0.0 {
                for (w, &g) in p.value.data_mut().iter_mut().zip(p.grad.data()) {
                    *w -= lr * (g + wd * *w);
                }
                continue;
            }
            let first = !self.buffers.contains_key(&key);
            let buf = state_for(
                "sgd",
                &mut self.buffers,
                key,
                p.value,
                || Tensor::zeros(p.value.shape().clone()),
                Tensor::shape,
            )?;
            let rule = SgdRule {
                lr,
                mu,
                wd,
                nesterov: self.nesterov,
                first,
            };
            let (w, g, b) = (p.value.data_mut(), p.grad.data(), buf.data_mut());
            if w.len() < UPDATE_PAR_MIN {
                rule.apply(w, b, g);
            } else {
                // Element-wise: chunks in parallel give the sequential result bit for bit.
                w.par_chunks_mut(UPDATE_CHUNK)
                    .zip(b.par_chunks_mut(UPDATE_CHUNK))
                    .zip(g.par_chunks(UPDATE_CHUNK))
                    .for_each(|((w, b), g)| rule.apply(w, b, g));
            }
        }
        Ok(())
    }

    fn lr(&self) -> f32 {
        self.lr
    }

    fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }

    fn reset(&mut self) {
        self.buffers.clear();
    }

    fn save_state(&self) -> Result<OptimizerState> {
        Ok(save_entries("sgd", &self.buffers, |b| (vec![b], 0)))
    }

    fn load_state(&mut self, model: &mut Model, state: &OptimizerState) -> Result<()> {
        self.buffers = load_entries("sgd", model, state, 1, |mut t, _| t.remove(0))?;
        Ok(())
    }
}

/// Parameters with at least this many elements are updated in parallel chunks of
/// [`UPDATE_CHUNK`] (Adam, and SGD with momentum): below it a fork/join costs more than the
/// update (lenet5's fc1 weight, 400,000 elements, and cnn-teacher's fc1, 802,816, are far
/// above it; SGD on one thread was 1.6% of a cnn-teacher epoch's CPU samples, all serial).
const UPDATE_PAR_MIN: usize = 1 << 15;

/// Elements per parallel task of an update.
const UPDATE_CHUNK: usize = 1 << 13;

/// One SGD-with-momentum step's scalars for a parameter tensor.
#[derive(Clone, Copy, Debug)]
struct SgdRule {
    lr: f32,
    mu: f32,
    wd: f32,
    nesterov: bool,
    /// The buffer's first step: it starts as the gradient (PyTorch's rule).
    first: bool,
}

impl SgdRule {
    /// Updates `w` and the momentum buffer `b` from the gradient `g` (equal lengths).
    fn apply(&self, w: &mut [f32], b: &mut [f32], g: &[f32]) {
        for ((w, &g), b) in w.iter_mut().zip(g).zip(b) {
            let g = g + self.wd * *w;
            *b = if self.first { g } else { self.mu * *b + g };
            let d = if self.nesterov { g + self.mu * *b } else { *b };
            *w -= self.lr * d;
        }
    }
}

/// One Adam step's scalars for a parameter tensor (bias corrections folded in).
#[derive(Clone, Copy, Debug)]
struct AdamRule {
    b1: f32,
    b2: f32,
    eps: f32,
    lr: f32,
    wd: f32,
    decoupled: bool,
    bc2_sqrt: f32,
    step_size: f32,
}

impl AdamRule {
    /// Updates `w` and the moments `m`, `v` from the gradient `g` (equal lengths).
    ///
    /// One branch-free loop per weight-decay form, over zipped slices: no bounds checks, so
    /// the compiler vectorises the square roots and divisions (8 lanes with AVX2; the
    /// operations and their order are the scalar ones, so the result is bit-identical).
    fn apply(&self, w: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]) {
        let AdamRule {
            b1,
            b2,
            eps,
            lr,
            wd,
            decoupled,
            bc2_sqrt,
            step_size,
        } = *self;
        let update = |w: &mut f32, m: &mut f32, v: &mut f32, g: f32| {
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            let denom = v.sqrt() / bc2_sqrt + eps;
            *w -= step_size * *m / denom;
        };
        let lanes = w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g);
        if wd == 0.0 {
            lanes.for_each(|(((w, m), v), &g)| update(w, m, v, g));
        } else if decoupled {
            lanes.for_each(|(((w, m), v), &g)| {
                *w *= 1.0 - lr * wd;
                update(w, m, v, g)
            });
        } else {
            lanes.for_each(|(((w, m), v), &g)| {
                let g = g + wd * *w;
                update(w, m, v, g)
            });
        }
    }
}

/// Per-parameter Adam state: first and second moments and the step count.
#[derive(Clone, Debug)]
struct AdamState {
    m: Tensor,
    v: Tensor,
    t: u64,
}

/// Adam with bias correction; L2 weight decay in the gradient, or decoupled weight decay
/// (AdamW) (`torch.optim.Adam` / `torch.optim.AdamW`, without amsgrad).
#[derive(Clone, Debug)]
pub struct Adam {
    lr: f32,
    betas: (f32, f32),
    eps: f32,
    weight_decay: f32,
    decoupled: bool,
    state: BTreeMap<ParamKey, AdamState>,
}

impl Adam {
    /// An Adam optimizer (ranges are checked by [`OptimizerConfig::validate`]).
    pub fn new(lr: f32, betas: (f32, f32), eps: f32, weight_decay: f32, decoupled: bool) -> Self {
        Self {
            lr,
            betas,
            eps,
            weight_decay,
            decoupled,
            state: BTreeMap::new(),
        }
    }
}

impl Optimizer for Adam {
    fn step(&mut self, model: &mut Model) -> Result<()> {
        let (lr, (b1, b2), eps, wd) = (self.lr, self.betas, self.eps, self.weight_decay);
        for (path, p) in model.named_params_mut() {
            check_grad_shape("adam", &path, p.name, p.value, p.grad)?;
            let st = state_for(
                "adam",
                &mut self.state,
                (path, p.name),
                p.value,
                || AdamState {
                    m: Tensor::zeros(p.value.shape().clone()),
                    v: Tensor::zeros(p.value.shape().clone()),
                    t: 0,
                },
                |st| st.m.shape(),
            )?;
            st.t += 1;
            // Step counts beyond i32 range only make the corrections exactly 1.
            let t = st.t.min(i32::MAX as u64) as i32;
            let bc1 = 1.0 - b1.powi(t);
            let bc2_sqrt = (1.0 - b2.powi(t)).sqrt();
            let step_size = lr / bc1;
            let rule = AdamRule {
                b1,
                b2,
                eps,
                lr,
                wd,
                decoupled: self.decoupled,
                bc2_sqrt,
                step_size,
            };
            let (w, g) = (p.value.data_mut(), p.grad.data());
            let (m, v) = (st.m.data_mut(), st.v.data_mut());
            if w.len() < UPDATE_PAR_MIN {
                rule.apply(w, m, v, g);
            } else {
                // Element-wise: chunks in parallel give the sequential result bit for bit.
                w.par_chunks_mut(UPDATE_CHUNK)
                    .zip(m.par_chunks_mut(UPDATE_CHUNK))
                    .zip(v.par_chunks_mut(UPDATE_CHUNK))
                    .zip(g.par_chunks(UPDATE_CHUNK))
                    .for_each(|(((w, m), v), g)| rule.apply(w, m, v, g));
            }
        }
        Ok(())
    }

    fn lr(&self) -> f32 {
        self.lr
    }

    fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }

    fn reset(&mut self) {
        self.state.clear();
    }

    fn save_state(&self) -> Result<OptimizerState> {
        Ok(save_entries("adam", &self.state, |st| {
            (vec![&st.m, &st.v], st.t)
        }))
    }

    fn load_state(&mut self, model: &mut Model, state: &OptimizerState) -> Result<()> {
        self.state = load_entries("adam", model, state, 2, |mut t, steps| {
            let v = t.remove(1);
            let m = t.remove(0);
            AdamState { m, v, t: steps }
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{Layer, Mode, ParamMut, ParamRef};
    use std::any::Any;
    use tensor_core::Shape;

    /// A layer that only holds one parameter vector (its forward is the identity): the
    /// optimizer tests set its gradient by hand.
    #[derive(Debug)]
    struct Params {
        w: Tensor,
        g: Tensor,
    }

    impl Layer for Params {
        fn kind(&self) -> &'static str {
            "params"
        }
        fn output_shape(&self, input: &Shape) -> Result<Shape> {
            Ok(input.clone())
        }
        fn forward(&mut self, input: &Tensor, _mode: Mode) -> Result<Tensor> {
            Ok(input.clone())
        }
        fn backward(&mut self, grad_output: &Tensor) -> Result<Tensor> {
            Ok(grad_output.clone())
        }
        fn params(&self) -> Vec<ParamRef<'_>> {
            vec![ParamRef {
                name: "weight",
                value: &self.w,
            }]
        }
        fn params_mut(&mut self) -> Vec<ParamMut<'_>> {
            vec![ParamMut {
                name: "weight",
                value: &mut self.w,
                grad: &mut self.g,
            }]
        }
        fn param_count(&self) -> usize {
            self.w.numel()
        }
        fn macs(&self, _input: &Shape) -> Result<u64> {
            Ok(0)
        }
        fn record(&self) -> Result<crate::record::LayerRecord> {
            Ok(crate::record::LayerRecord::new("params").with_tensor("weight", self.w.clone()))
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
        fn as_any_mut(&mut self) -> &mut dyn Any {
            self
        }
    }

    fn model_with(w: &[f32]) -> Model {
        let t = Tensor::new(&[w.len()], w.to_vec()).unwrap();
        let layer = Params {
            g: Tensor::zeros(t.shape().clone()),
            w: t,
        };
        Model::new("params", &[w.len()], vec![Box::new(layer)])
    }

    fn weights(model: &Model) -> Vec<f32> {
        model.layers[0].params()[0].value.data().to_vec()
    }

    fn set_grad(model: &mut Model, g: &[f32]) {
        let layer = &mut model.layers[0];
        let mut ps = layer.params_mut();
        ps[0].grad.data_mut().copy_from_slice(g);
    }

    /// Minimises `sum_i a_i (w_i - c_i)^2` (gradient `2 a (w - c)`) for `steps` steps.
    fn minimise_quadratic(config: &OptimizerConfig, steps: usize) -> Vec<f32> {
        let a = [1.0f32, 4.0, 0.5];
        let c = [3.0f32, -2.0, 0.5];
        let mut model = model_with(&[0.0, 0.0, 0.0]);
        let mut opt = config.build().unwrap();
        for _ in 0..steps {
            let w = weights(&model);
            let g: Vec<f32> = (0..3).map(|i| 2.0 * a[i] * (w[i] - c[i])).collect();
            set_grad(&mut model, &g);
            opt.step(&mut model).unwrap();
        }
        let w = weights(&model);
        for i in 0..3 {
            assert!(
                (w[i] - c[i]).abs() < 1e-3,
                "{config:?}: w = {w:?}, want {c:?}"
            );
        }
        w
    }

    #[test]
    fn every_optimizer_minimises_a_quadratic() {
        minimise_quadratic(&OptimizerConfig::sgd(0.05, 0.0), 300);
        minimise_quadratic(&OptimizerConfig::sgd(0.05, 0.9), 300);
        minimise_quadratic(
            &OptimizerConfig::Sgd {
                lr: 0.05,
                momentum: 0.9,
                nesterov: true,
                weight_decay: 0.0,
            },
            300,
        );
        minimise_quadratic(&OptimizerConfig::adam(0.1), 1000);
    }

    #[test]
    fn sgd_momentum_and_weight_decay_match_hand_computation() {
        // w0 = 1, wd = 0.1, mu = 0.9, lr = 0.5, grads 2 then 1.
        // step 1: g = 2 + 0.1 = 2.1; b = 2.1; w = 1 - 1.05 = -0.05.
        // step 2: g = 1 + 0.1 * -0.05 = 0.995; b = 0.9 * 2.1 + 0.995 = 2.885;
        //         w = -0.05 - 0.5 * 2.885 = -1.4925.
        let cfg = OptimizerConfig::Sgd {
            lr: 0.5,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.1,
        };
        let mut model = model_with(&[1.0]);
        let mut opt = cfg.build().unwrap();
        set_grad(&mut model, &[2.0]);
        opt.step(&mut model).unwrap();
        assert!((weights(&model)[0] - -0.05).abs() < 1e-6);
        set_grad(&mut model, &[1.0]);
        opt.step(&mut model).unwrap();
        assert!((weights(&model)[0] - -1.4925).abs() < 1e-6);

        // Nesterov: step 1: g = 2, b = 2, d = 2 + 0.9 * 2 = 3.8, w = 1 - 0.1 * 3.8 = 0.62.
        let cfg = OptimizerConfig::Sgd {
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 0.0,
        };
        let mut model = model_with(&[1.0]);
        let mut opt = cfg.build().unwrap();
        set_grad(&mut model, &[2.0]);
        opt.step(&mut model).unwrap();
        assert!((weights(&model)[0] - 0.62).abs() < 1e-6);
    }

    #[test]
    fn adam_first_steps_match_hand_computation() {
        // Step 1 of Adam moves every coordinate by lr * sign(g) (up to eps).
        let mut model = model_with(&[1.0, -2.0]);
        let mut opt = OptimizerConfig::adam(0.01).build().unwrap();
        set_grad(&mut model, &[3.0, -0.5]);
        opt.step(&mut model).unwrap();
        let w = weights(&model);
        assert!((w[0] - 0.99).abs() < 1e-6, "{w:?}");
        assert!((w[1] - -1.99).abs() < 1e-6, "{w:?}");
        // Step 2 with g = 1 on coordinate 0, computed in f64:
        // m = 0.9*0.3 + 0.1*1 = ... computed below from the formulas.
        set_grad(&mut model, &[1.0, -0.5]);
        opt.step(&mut model).unwrap();
        let (b1, b2, lr, eps) = (0.9f64, 0.999f64, 0.01f64, 1e-8f64);
        let m = b1 * (0.1 * 3.0) + (1.0 - b1) * 1.0;
        let v = b2 * (0.001 * 9.0) + (1.0 - b2) * 1.0;
        let want = 0.99 - lr / (1.0 - b1 * b1) * m / (v.sqrt() / (1.0 - b2 * b2).sqrt() + eps);
        let w = weights(&model);
        assert!((w[0] as f64 - want).abs() < 1e-6, "{} vs {want}", w[0]);
    }

    #[test]
    fn adam_parallel_chunks_equal_the_sequential_rule_bit_for_bit() {
        // A tensor large enough for the parallel path, with a partial last chunk: three
        // steps through the optimizer against the same rule applied to the whole slice.
        let n = UPDATE_PAR_MIN + UPDATE_CHUNK / 2 + 3;
        let mut rng = tensor_core::rng::Rng::seed_from_u64(7);
        let w0: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
        for decoupled in [false, true] {
            let cfg = OptimizerConfig::Adam {
                lr: 0.01,
                betas: (0.9, 0.999),
                eps: 1e-8,
                weight_decay: 0.01,
                decoupled,
            };
            let mut model = model_with(&w0);
            let mut opt = cfg.build().unwrap();
            let (mut w, mut m, mut v) = (w0.clone(), vec![0.0f32; n], vec![0.0f32; n]);
            for t in 1..=3 {
                let g: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
                set_grad(&mut model, &g);
                opt.step(&mut model).unwrap();
                let (b1, b2) = (0.9f32, 0.999f32);
                let rule = AdamRule {
                    b1,
                    b2,
                    eps: 1e-8,
                    lr: 0.01,
                    wd: 0.01,
                    decoupled,
                    bc2_sqrt: (1.0 - b2.powi(t)).sqrt(),
                    step_size: 0.01 / (1.0 - b1.powi(t)),
                };
                rule.apply(&mut w, &mut m, &mut v, &g);
                assert_eq!(weights(&model), w, "step {t}, decoupled {decoupled}");
            }
        }
    }

    #[test]
    fn sgd_parallel_chunks_equal_the_elementwise_formula_bit_for_bit() {
        // Large enough for the parallel path, with a partial last chunk; three steps of SGD
        // with momentum (plain and Nesterov) against PyTorch's rule written out per element.
        let n = UPDATE_PAR_MIN + UPDATE_CHUNK / 2 + 3;
        let mut rng = tensor_core::rng::Rng::seed_from_u64(9);
        let w0: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
        let (lr, mu, wd) = (0.05f32, 0.9f32, 5e-4f32);
        for nesterov in [false, true] {
            let cfg = OptimizerConfig::Sgd {
                lr,
                momentum: mu,
                nesterov,
                weight_decay: wd,
            };
            let mut model = model_with(&w0);
            let mut opt = cfg.build().unwrap();
            let (mut w, mut b) = (w0.clone(), vec![0.0f32; n]);
            for t in 1..=3 {
                let g: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
                set_grad(&mut model, &g);
                opt.step(&mut model).unwrap();
                for i in 0..n {
                    let gi = g[i] + wd * w[i];
                    b[i] = if t == 1 { gi } else { mu * b[i] + gi };
                    w[i] -= lr * if nesterov { gi + mu * b[i] } else { b[i] };
                }
                assert_eq!(weights(&model), w, "step {t}, nesterov {nesterov}");
            }
        }
    }

    #[test]
    fn adam_weight_decay_l2_versus_decoupled() {
        // Zero gradient: L2 decay turns into a gradient wd * w (Adam then moves by lr);
        // decoupled decay only shrinks: w = 2 * (1 - 0.1 * 0.5) = 1.9.
        let mk = |decoupled| OptimizerConfig::Adam {
            lr: 0.1,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.5,
            decoupled,
        };
        let mut model = model_with(&[2.0]);
        let mut opt = mk(false).build().unwrap();
        opt.step(&mut model).unwrap();
        assert!((weights(&model)[0] - 1.9).abs() < 1e-6);
        let mut model = model_with(&[2.0]);
        let mut opt = mk(true).build().unwrap();
        opt.step(&mut model).unwrap();
        assert!((weights(&model)[0] - 1.9).abs() < 1e-6);
        // With a gradient the two differ: decoupled decay is not rescaled by Adam.
        let mut a = model_with(&[2.0]);
        let mut b = model_with(&[2.0]);
        let (mut oa, mut ob) = (mk(false).build().unwrap(), mk(true).build().unwrap());
        for _ in 0..3 {
            set_grad(&mut a, &[1.0]);
            set_grad(&mut b, &[1.0]);
            oa.step(&mut a).unwrap();
            ob.step(&mut b).unwrap();
        }
        assert!((weights(&a)[0] - weights(&b)[0]).abs() > 1e-3);
    }

    #[test]
    fn set_lr_and_reset() {
        let mut model = model_with(&[1.0]);
        let mut opt = OptimizerConfig::sgd(1.0, 0.5).build().unwrap();
        opt.set_lr(0.25);
        assert_eq!(opt.lr(), 0.25);
        set_grad(&mut model, &[1.0]);
        opt.step(&mut model).unwrap();
        assert_eq!(weights(&model)[0], 0.75);
        opt.reset();
        // After reset the buffer restarts from the gradient (no 0.5 * old buffer).
        opt.step(&mut model).unwrap();
        assert_eq!(weights(&model)[0], 0.5);
    }

    #[test]
    fn invalid_configs_are_rejected() {
        let bad = [
            OptimizerConfig::sgd(-1.0, 0.0),
            OptimizerConfig::sgd(f32::NAN, 0.0),
            OptimizerConfig::sgd(0.1, 1.0),
            OptimizerConfig::Sgd {
                lr: 0.1,
                momentum: 0.0,
                nesterov: true,
                weight_decay: 0.0,
            },
            OptimizerConfig::Adam {
                lr: 0.1,
                betas: (0.9, 1.0),
                eps: 1e-8,
                weight_decay: 0.0,
                decoupled: false,
            },
            OptimizerConfig::Adam {
                lr: 0.1,
                betas: (0.9, 0.999),
                eps: 0.0,
                weight_decay: 0.0,
                decoupled: false,
            },
        ];
        for cfg in bad {
            assert!(cfg.build().is_err(), "{cfg:?} accepted");
        }
    }

    #[test]
    fn config_serde_round_trip() {
        for cfg in [OptimizerConfig::adam(0.001), OptimizerConfig::default()] {
            let bytes = bincode::serde::encode_to_vec(&cfg, bincode::config::standard()).unwrap();
            let (back, _): (OptimizerConfig, usize) =
                bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
            assert_eq!(back, cfg);
        }
    }
}
