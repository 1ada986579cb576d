//! Tanh layer: `y = tanh(x)`, derivative `1 - y^2`.

elementwise_layer!(
    Tanh,
    "tanh",
    tensor_core::activation::tanh_inplace,
    |y: f32| 1.0 - y * y,
    "Hyperbolic tangent; derivative `1 - y^2`."
);
