//! The shared implementation of the parameter-free elementwise activations (ReLU, Sigmoid,
//! Tanh): each caches its output in training mode, since all three derivatives are
//! functions of the output.

/// Implements a struct `$name` and its [`crate::Layer`] for an activation whose forward is
/// `$forward(&mut [f32])` in place and whose derivative, given the output `y`, is
/// `$deriv(y)`.
macro_rules! elementwise_layer {
    ($name:ident, $kind:literal, $forward:path, $deriv:expr, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Debug, Default)]
        pub struct $name {
            /// The output of the last training-mode forward pass.
            cache: Option<tensor_core::Tensor>,
        }

        impl $name {
            /// The layer.
            pub fn new() -> Self {
                Self::default()
            }

            /// Rebuilds the layer from its record (no attributes, no tensors).
            pub fn from_record(rec: &$crate::record::LayerRecord) -> $crate::error::Result<Self> {
                rec.expect_kind($kind)?;
                rec.expect_tensor_names(&[])?;
                Ok(Self::new())
            }
        }

        impl $crate::layer::Layer for $name {
            fn kind(&self) -> &'static str {
                $kind
            }

            fn output_shape(
                &self,
                input: &tensor_core::Shape,
            ) -> $crate::error::Result<tensor_core::Shape> {
                Ok(input.clone())
            }

            fn forward(
                &mut self,
                input: &tensor_core::Tensor,
                mode: $crate::layer::Mode,
            ) -> $crate::error::Result<tensor_core::Tensor> {
                let mut y = input.clone();
                $forward(y.data_mut());
                if mode == $crate::layer::Mode::Train {
                    self.cache = Some(y.clone());
                }
                Ok(y)
            }

            fn backward(
                &mut self,
                grad_output: &tensor_core::Tensor,
            ) -> $crate::error::Result<tensor_core::Tensor> {
                let y = self
                    .cache
                    .as_ref()
                    .ok_or_else(|| $crate::layers::no_cache($kind))?;
                $crate::layers::check_grad($kind, grad_output, y.dims())?;
                let deriv = $deriv;
                let mut g = grad_output.clone();
                g.data_mut()
                    .iter_mut()
                    .zip(y.data())
                    .for_each(|(g, &y)| *g *= deriv(y));
                Ok(g)
            }

            fn record(&self) -> $crate::error::Result<$crate::record::LayerRecord> {
                Ok($crate::record::LayerRecord::new($kind))
            }

            parameter_free_methods!();
        }
    };
}

/// The [`crate::Layer`] methods a parameter-free layer with a `cache: Option<_>` field
/// writes alike: no parameters, no multiply-accumulates, `clear_cache` dropping the cache,
/// and the downcasting pair.
macro_rules! parameter_free_methods {
    () => {
        fn param_count(&self) -> usize {
            0
        }

        fn macs(&self, _input: &tensor_core::Shape) -> $crate::error::Result<u64> {
            Ok(0)
        }

        fn clear_cache(&mut self) {
            self.cache = None;
        }

        fn as_any(&self) -> &dyn std::any::Any {
            self
        }

        fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
            self
        }
    };
}
