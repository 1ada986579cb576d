//! Sigmoid layer: `y = 1 / (1 + exp(-x))`, derivative `y (1 - y)`.

elementwise_layer!(
    Sigmoid,
    "sigmoid",
    tensor_core::activation::sigmoid_inplace,
    |y: f32| y * (1.0 - y),
    "Logistic sigmoid, `1 / (1 + exp(-x))`; derivative `y (1 - y)`."
);
