//! ReLU layer: `y = max(x, 0)`, derivative 1 where the output is positive, else 0.

elementwise_layer!(
    ReLU,
    "relu",
    tensor_core::activation::relu_inplace,
    |y: f32| if y > 0.0 { 1.0 } else { 0.0 },
    "Rectified linear unit, `max(x, 0)` (the derivative at 0 is taken as 0, as PyTorch does)."
);
