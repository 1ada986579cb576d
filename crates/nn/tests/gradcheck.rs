//! Every dense layer's backward pass against central finite differences.
//!
//! For a layer `f` and a fixed random upstream gradient `r`, the scalar loss is
//! `L(x, w) = sum_i r_i f(x, w)_i`, accumulated in f64 from the f32 outputs. The analytic
//! gradients are `backward(r)` (input) and the accumulated parameter gradients; the numeric
//! ones are `(L(v + eps) - L(v - eps)) / (2 eps)` for each checked element `v` (all of them
//! for small tensors, a seeded sample of [`MAX_CHECKED`] for larger ones).
//!
//! Tolerance: `|numeric - analytic| <= atol + rtol * max(|numeric|, |analytic|)` with the
//! values stated per test. Layers linear in the checked variable (Linear, Conv2d, pooling,
//! Flatten) use `eps = 1e-2`, where the central difference is exact up to f32 rounding of `L`
//! (about `1e-7 |L| / eps`); the smooth non-linear ones (Sigmoid, Tanh, BatchNorm) use
//! `eps = 1e-3`, balancing the `O(eps^2)` truncation error against rounding. Inputs of
//! ReLU and max pooling are built with distinct values at least `0.01` apart and away from 0, so
//! no perturbation crosses a kink.

use nn::layers::{
    AvgPool2d, BatchNorm2d, Conv2d, Conv2dParams, Dropout, Flatten, GlobalAvgPool, HardActivation,
    HardKind, Linear, MaxPool2d, Padding, Pool2dParams, ReLU, Sigmoid, Tanh,
};
use nn::{Layer, Mode, Model};
use tensor_core::Tensor;
use tensor_core::rng::Rng;

/// Elements checked per tensor at most (a seeded sample beyond that).
const MAX_CHECKED: usize = 120;

/// Tolerances and step of one check.
#[derive(Clone, Copy, Debug)]
struct Tol {
    eps: f32,
    rtol: f64,
    atol: f64,
}

const LINEAR_TOL: Tol = Tol {
    eps: 1e-2,
    rtol: 1e-3,
    atol: 1e-3,
};

const SMOOTH_TOL: Tol = Tol {
    eps: 1e-3,
    rtol: 1e-2,
    atol: 2e-3,
};

fn rand_tensor(rng: &mut Rng, dims: &[usize]) -> Tensor {
    let n = dims.iter().product();
    Tensor::new(dims, (0..n).map(|_| rng.normal()).collect()).unwrap()
}

/// Distinct values `±(0.05 + 0.01 k)` in random order: no two within 0.01, none near 0.
fn distinct_tensor(rng: &mut Rng, dims: &[usize]) -> Tensor {
    let n: usize = dims.iter().product();
    let mut v: Vec<f32> = (0..n)
        .map(|k| {
            let s = if k % 2 == 0 { 1.0 } else { -1.0 };
            s * (0.05 + 0.01 * k as f32)
        })
        .collect();
    rng.shuffle(&mut v);
    Tensor::new(dims, v).unwrap()
}

fn loss(layer: &mut dyn Layer, x: &Tensor, r: &Tensor, mode: Mode) -> f64 {
    let y = layer.forward(x, mode).unwrap();
    y.data()
        .iter()
        .zip(r.data())
        .map(|(&a, &b)| a as f64 * b as f64)
        .sum()
}

fn sample(rng: &mut Rng, n: usize) -> Vec<usize> {
    if n <= MAX_CHECKED {
        return (0..n).collect();
    }
    let mut idx: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut idx);
    idx.truncate(MAX_CHECKED);
    idx
}

fn compare(what: &str, i: usize, numeric: f64, analytic: f64, tol: Tol, seed: u64) {
    let bound = tol.atol + tol.rtol * numeric.abs().max(analytic.abs());
    assert!(
        (numeric - analytic).abs() <= bound,
        "{what}[{i}]: numeric {numeric} vs analytic {analytic} (bound {bound}, seed {seed})"
    );
}

/// Checks input and parameter gradients of the layer `make()` builds (it must build the same
/// layer every call) at input `x`, with forward passes in `mode`.
fn gradcheck(name: &str, make: &dyn Fn() -> Box<dyn Layer>, x: &Tensor, tol: Tol, seed: u64) {
    let mode = Mode::Train;
    let mut rng = Rng::seed_from_u64(seed);
    let mut layer = make();
    let y = layer.forward(x, mode).unwrap();
    let r = rand_tensor(&mut rng, y.dims());
    layer.zero_grad();
    let dx = layer.backward(&r).unwrap();
    assert_eq!(dx.dims(), x.dims(), "{name}: input gradient shape");
    // Input gradient.
    for i in sample(&mut rng, x.numel()) {
        let mut xp = x.clone();
        xp.data_mut()[i] += tol.eps;
        let mut xm = x.clone();
        xm.data_mut()[i] -= tol.eps;
        let lp = loss(make().as_mut(), &xp, &r, mode);
        let lm = loss(make().as_mut(), &xm, &r, mode);
        let numeric = (lp - lm) / (2.0 * tol.eps as f64);
        compare(
            &format!("{name} dx"),
            i,
            numeric,
            dx.data()[i] as f64,
            tol,
            seed,
        );
    }
    // Parameter gradients (accumulated by the one backward call above).
    let grads: Vec<(&'static str, Tensor)> = layer
        .params_mut()
        .into_iter()
        .map(|p| (p.name, p.grad.clone()))
        .collect();
    for (k, (pname, grad)) in grads.iter().enumerate() {
        for i in sample(&mut rng, grad.numel()) {
            let perturbed = |delta: f32| {
                let mut l = make();
                l.params_mut()[k].value.data_mut()[i] += delta;
                loss(l.as_mut(), x, &r, mode)
            };
            let numeric = (perturbed(tol.eps) - perturbed(-tol.eps)) / (2.0 * tol.eps as f64);
            compare(
                &format!("{name} d{pname}"),
                i,
                numeric,
                grad.data()[i] as f64,
                tol,
                seed,
            );
        }
    }
    // Backward accumulates: a second call doubles the parameter gradients.
    if !grads.is_empty() {
        layer.forward(x, mode).unwrap();
        layer.backward(&r).unwrap();
        for (p, (_, g1)) in layer.params_mut().iter().zip(&grads) {
            for (a, b) in p.grad.data().iter().zip(g1.data()) {
                assert!(
                    (a - 2.0 * b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "{name}: accumulation"
                );
            }
        }
    }
}

#[test]
fn linear() {
    let mut rng = Rng::seed_from_u64(1);
    let x = rand_tensor(&mut rng, &[4, 9]);
    let make =
        || -> Box<dyn Layer> { Box::new(Linear::new(9, 5, &mut Rng::seed_from_u64(10)).unwrap()) };
    gradcheck("linear", &make, &x, LINEAR_TOL, 1);
    // Batch of one takes the W x^T path in forward.
    let x1 = rand_tensor(&mut rng, &[1, 9]);
    gradcheck("linear batch 1", &make, &x1, LINEAR_TOL, 2);
}

fn conv_case(name: &str, p: Conv2dParams, dims: [usize; 4], seed: u64) {
    let mut rng = Rng::seed_from_u64(seed);
    let x = rand_tensor(&mut rng, &dims);
    let make = move || -> Box<dyn Layer> {
        Box::new(Conv2d::new(p, &mut Rng::seed_from_u64(seed + 100)).unwrap())
    };
    gradcheck(name, &make, &x, LINEAR_TOL, seed);
}

#[test]
fn conv_stride2_asymmetric_padding() {
    let p = Conv2dParams::new(3, 4, (3, 3))
        .with_stride((2, 2))
        .with_padding(Padding {
            top: 0,
            bottom: 2,
            left: 1,
            right: 0,
        });
    conv_case("conv stride 2, pads t0 b2 l1 r0", p, [2, 3, 7, 8], 3);
}

#[test]
fn conv_dilation2_groups2() {
    let p = Conv2dParams::new(4, 6, (3, 2))
        .with_dilation((2, 2))
        .with_padding(Padding::symmetric(1))
        .with_groups(2);
    conv_case("conv dilation 2, groups 2", p, [2, 4, 7, 6], 4);
}

#[test]
fn conv_depthwise_and_lenet_shape() {
    let dw = Conv2dParams::new(3, 3, (3, 3))
        .with_padding(Padding::symmetric(1))
        .with_groups(3);
    conv_case("conv depthwise", dw, [2, 3, 5, 5], 5);
    conv_case(
        "conv lenet5.conv2 (small)",
        Conv2dParams::new(4, 5, (5, 5)),
        [2, 4, 8, 8],
        6,
    );
}

#[test]
fn max_pool_stride_differs_from_kernel() {
    let mut rng = Rng::seed_from_u64(7);
    for (i, p) in [
        Pool2dParams::new((3, 3))
            .with_stride((2, 2))
            .with_padding(Padding::symmetric(1)),
        Pool2dParams::new((2, 2)).with_stride((1, 1)),
        Pool2dParams::new((2, 3))
            .with_stride((3, 2))
            .with_ceil_mode(true),
    ]
    .into_iter()
    .enumerate()
    {
        let x = distinct_tensor(&mut rng, &[2, 2, 7, 8]);
        let make = move || -> Box<dyn Layer> { Box::new(MaxPool2d::new(p).unwrap()) };
        gradcheck(
            &format!("maxpool {p:?}"),
            &make,
            &x,
            LINEAR_TOL,
            70 + i as u64,
        );
    }
}

#[test]
fn avg_pool_with_and_without_padding_count() {
    let mut rng = Rng::seed_from_u64(8);
    let p = Pool2dParams::new((3, 3))
        .with_stride((2, 1))
        .with_padding(Padding {
            top: 1,
            bottom: 2,
            left: 0,
            right: 1,
        })
        .with_ceil_mode(true);
    for cip in [false, true] {
        let x = rand_tensor(&mut rng, &[2, 3, 6, 7]);
        let make = move || -> Box<dyn Layer> { Box::new(AvgPool2d::new(p, cip).unwrap()) };
        gradcheck(&format!("avgpool cip={cip}"), &make, &x, LINEAR_TOL, 8);
    }
    let x = rand_tensor(&mut rng, &[2, 3, 4, 5]);
    gradcheck(
        "globalavgpool",
        &|| Box::new(GlobalAvgPool::new()),
        &x,
        LINEAR_TOL,
        9,
    );
}

#[test]
fn activations_and_flatten() {
    let mut rng = Rng::seed_from_u64(10);
    let x = distinct_tensor(&mut rng, &[3, 2, 4, 5]);
    gradcheck("relu", &|| Box::new(ReLU::new()), &x, LINEAR_TOL, 10);
    gradcheck("flatten", &|| Box::new(Flatten::new()), &x, LINEAR_TOL, 11);
    let x = rand_tensor(&mut rng, &[3, 17]);
    gradcheck("sigmoid", &|| Box::new(Sigmoid::new()), &x, SMOOTH_TOL, 12);
    gradcheck("tanh", &|| Box::new(Tanh::new()), &x, SMOOTH_TOL, 13);
}

#[test]
fn hard_activations() {
    // Values 8 (0.05 + 0.01 k) = 0.4 + 0.08 k (both signs): the kinks (clip bounds -1 and
    // 2.2, hard sigmoid's +-2.5, hard swish's +-3) are at least 0.02 from every value.
    let mut rng = Rng::seed_from_u64(14);
    let mut x = distinct_tensor(&mut rng, &[2, 3, 10]);
    x.data_mut().iter_mut().for_each(|v| *v *= 8.0);
    let kinds = [
        (
            "clip",
            HardKind::Clip {
                min: -1.0,
                max: 2.2,
            },
        ),
        (
            "hard_sigmoid",
            HardKind::HardSigmoid {
                alpha: 0.2,
                beta: 0.5,
            },
        ),
        ("hard_swish", HardKind::HardSwish),
    ];
    for (i, (name, k)) in kinds.into_iter().enumerate() {
        let make = move || -> Box<dyn Layer> { Box::new(HardActivation::new(k)) };
        gradcheck(name, &make, &x, LINEAR_TOL, 20 + i as u64);
    }
}

#[test]
fn dropout_with_a_fixed_mask() {
    // A freshly seeded layer draws the same mask every time, so the loss is a fixed
    // linear function of the input.
    let mut rng = Rng::seed_from_u64(14);
    let x = rand_tensor(&mut rng, &[4, 25]);
    gradcheck(
        "dropout",
        &|| Box::new(Dropout::new(0.3, 99).unwrap()),
        &x,
        LINEAR_TOL,
        14,
    );
}

#[test]
fn batchnorm_train_mode() {
    let mut rng = Rng::seed_from_u64(15);
    let c = 3;
    let weight = Tensor::new(&[c], vec![1.5, -0.7, 0.9]).unwrap();
    let bias = Tensor::new(&[c], vec![0.1, 0.2, -0.3]).unwrap();
    let make = move || -> Box<dyn Layer> {
        Box::new(
            BatchNorm2d::from_parts(
                weight.clone(),
                bias.clone(),
                Tensor::zeros_dims(&[c]).unwrap(),
                Tensor::full(tensor_core::Shape::new(&[c]).unwrap(), 1.0),
                1e-5,
                0.1,
            )
            .unwrap(),
        )
    };
    let x = rand_tensor(&mut rng, &[3, c, 4, 3]);
    gradcheck("batchnorm2d", &make, &x, SMOOTH_TOL, 15);
    // [N, C] inputs (every dimension after C is spatial; here none).
    let x2 = rand_tensor(&mut rng, &[6, c]);
    gradcheck("batchnorm2d on [N, C]", &make, &x2, SMOOTH_TOL, 16);
}

/// The layers chained in a model: conv, BN, ReLU, max pool, flatten, linear.
#[derive(Debug)]
struct Chain(Model);

impl Layer for Chain {
    fn kind(&self) -> &'static str {
        "chain"
    }
    fn output_shape(&self, input: &tensor_core::Shape) -> nn::Result<tensor_core::Shape> {
        let mut s = input.clone();
        for l in &self.0.layers {
            s = l.output_shape(&s)?;
        }
        Ok(s)
    }
    fn forward(&mut self, input: &Tensor, mode: Mode) -> nn::Result<Tensor> {
        self.0.forward(input, mode)
    }
    fn backward(&mut self, grad_output: &Tensor) -> nn::Result<Tensor> {
        self.0.backward(grad_output)
    }
    fn params_mut(&mut self) -> Vec<nn::ParamMut<'_>> {
        self.0
            .layers
            .iter_mut()
            .flat_map(|l| l.params_mut())
            .collect()
    }
    fn param_count(&self) -> usize {
        self.0.param_count()
    }
    fn macs(&self, _input: &tensor_core::Shape) -> nn::Result<u64> {
        Ok(0)
    }
    fn record(&self) -> nn::Result<nn::LayerRecord> {
        Err(nn::NnError::Unsupported("test chain".into()))
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

#[test]
fn small_network_end_to_end() {
    let make = || -> Box<dyn Layer> {
        let mut rng = Rng::seed_from_u64(17);
        let conv = Conv2d::new(
            Conv2dParams::new(2, 3, (3, 3)).with_padding(Padding::symmetric(1)),
            &mut rng,
        )
        .unwrap();
        let layers: Vec<Box<dyn Layer>> = vec![
            Box::new(conv),
            Box::new(BatchNorm2d::new(3).unwrap()),
            Box::new(Tanh::new()),
            Box::new(MaxPool2d::square(2).unwrap()),
            Box::new(Flatten::new()),
            Box::new(Linear::new(12, 4, &mut rng).unwrap()),
        ];
        Box::new(Chain(Model::new("chain", &[2, 4, 4], layers)))
    };
    let mut rng = Rng::seed_from_u64(18);
    let x = rand_tensor(&mut rng, &[3, 2, 4, 4]);
    gradcheck("conv-bn-tanh-pool-linear", &make, &x, SMOOTH_TOL, 18);
}
