//! Helpers shared by the decompose integration tests.
#![allow(dead_code)]

use nn::layers::{Conv2dParams, Padding};
use nn::{LayerRegistry, Model};
use tensor_core::Tensor;
use tensor_core::rng::Rng;

/// A tensor of standard normal values.
pub fn rand_tensor(rng: &mut Rng, dims: &[usize]) -> Tensor {
    let n = dims.iter().product();
    Tensor::new(dims, (0..n).map(|_| rng.normal()).collect()).unwrap()
}

/// `m` rebuilt from its layers' records through the nn registry (what a stored model is).
pub fn copy(m: &Model) -> Model {
    let registry = LayerRegistry::nn();
    let layers = m
        .layers
        .iter()
        .map(|l| registry.build(&l.record().unwrap()).unwrap())
        .collect();
    Model::new("copy", &m.input_shape, layers)
}

/// A `2 -> 4` convolution with a non-square kernel, asymmetric padding, and stride and
/// dilation on both axes.
pub fn odd_geometry() -> Conv2dParams {
    Conv2dParams::new(2, 4, (3, 2))
        .with_stride((2, 1))
        .with_dilation((1, 2))
        .with_padding(Padding {
            top: 2,
            bottom: 0,
            left: 1,
            right: 3,
        })
}
