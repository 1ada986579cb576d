//! The piecewise-linear activations of the mobile networks: `Clip` (ReLU6 = clip to
//! [0, 6], MobileNetV2, Sandler et al. 2018), hard sigmoid `max(0, min(1, alpha x + beta))`
//! and hard swish `x * relu6(x + 3) / 6` (MobileNetV3, Howard et al. 2019), with the
//! ONNX operators' exact formulas (`Clip`, `HardSigmoid`, `HardSwish`).
//!
//! Gradients follow PyTorch's conventions at the kinks: `clip` passes the gradient where
//! `min < x < max`, `hard_sigmoid` scales it by `alpha` where `0 < alpha x + beta < 1`,
//! `hard_swish` multiplies it by 0 for `x < -3`, `x / 3 + 1/2` for `-3 <= x <= 3`, and 1 above.

use std::any::Any;

use tensor_core::{Shape, Tensor};

use super::{check_grad, no_cache};
use crate::error::Result;
use crate::layer::{Layer, Mode};
use crate::record::LayerRecord;

/// Which piecewise-linear function a [`HardActivation`] computes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HardKind {
    /// `min(max(x, min), max)`; ReLU6 is `Clip { min: 0, max: 6 }`.
    Clip {
        /// Lower bound (`f32::MIN` for none).
        min: f32,
        /// Upper bound (`f32::MAX` for none).
        max: f32,
    },
    /// `max(0, min(1, alpha x + beta))` (ONNX defaults alpha = 0.2, beta = 0.5; PyTorch's
    /// `hardsigmoid` is alpha = 1/6).
    HardSigmoid {
        /// Slope.
        alpha: f32,
        /// Offset.
        beta: f32,
    },
    /// `x * max(0, min(1, x / 6 + 1/2))`.
    HardSwish,
}

impl HardKind {
    /// The function at `x`.
    pub fn apply(self, x: f32) -> f32 {
        match self {
            HardKind::Clip { min, max } => x.max(min).min(max),
            HardKind::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
            HardKind::HardSwish => x * (x * (1.0 / 6.0) + 0.5).clamp(0.0, 1.0),
        }
    }

    /// The derivative at `x` (PyTorch's choice at the kinks).
    pub fn derivative(self, x: f32) -> f32 {
        match self {
            HardKind::Clip { min, max } => f32::from(x > min && x < max),
            HardKind::HardSigmoid { alpha, beta } => {
                let z = alpha * x + beta;
                if z > 0.0 && z < 1.0 { alpha } else { 0.0 }
            }
            HardKind::HardSwish => {
                if x < -3.0 {
                    0.0
                } else if x <= 3.0 {
                    x / 3.0 + 0.5
                } else {
                    1.0
                }
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            HardKind::Clip { .. } => "clip",
            HardKind::HardSigmoid { .. } => "hard_sigmoid",
            HardKind::HardSwish => "hard_swish",
        }
    }
}

/// A piecewise-linear activation applied elementwise (kinds `clip`, `hard_sigmoid`,
/// `hard_swish`).
#[derive(Clone, Debug)]
pub struct HardActivation {
    /// The function.
    pub function: HardKind,
    /// The input of the last training-mode forward pass.
    cache: Option<Tensor>,
}

impl HardActivation {
    /// The layer computing `function`.
    pub fn new(function: HardKind) -> Self {
        Self {
            function,
            cache: None,
        }
    }

    /// ReLU6, `min(max(x, 0), 6)`.
    pub fn relu6() -> Self {
        Self::new(HardKind::Clip { min: 0.0, max: 6.0 })
    }

    /// Rebuilds a `clip`, `hard_sigmoid` or `hard_swish` layer from its record.
    pub fn from_record(rec: &LayerRecord) -> Result<Self> {
        rec.expect_tensor_names(&[])?;
        let finite = |name: &str| -> Result<f32> {
            let v = rec.float(name)?;
            if v.is_nan() {
                return Err(rec.corrupt(format!("attribute `{name}`"), "NaN"));
            }
            Ok(v)
        };
        let function = match rec.kind.as_str() {
            "clip" => {
                let (min, max) = (finite("min")?, finite("max")?);
                if min > max {
                    return Err(rec.corrupt("attributes", format!("min {min} > max {max}")));
                }
                HardKind::Clip { min, max }
            }
            "hard_sigmoid" => HardKind::HardSigmoid {
                alpha: finite("alpha")?,
                beta: finite("beta")?,
            },
            "hard_swish" => HardKind::HardSwish,
            other => return Err(rec.corrupt("kind", format!("`{other}` is not a hard activation"))),
        };
        Ok(Self::new(function))
    }
}

impl Layer for HardActivation {
    fn kind(&self) -> &'static str {
        self.function.name()
    }

    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        Ok(input.clone())
    }

    fn forward(&mut self, input: &Tensor, mode: Mode) -> Result<Tensor> {
        let f = self.function;
        let mut y = input.clone();
        y.data_mut().iter_mut().for_each(|v| *v = f.apply(*v));
        if mode == Mode::Train {
            self.cache = Some(input.clone());
        }
        Ok(y)
    }

    fn backward(&mut self, grad_output: &Tensor) -> Result<Tensor> {
        let kind = self.kind();
        let x = self.cache.as_ref().ok_or_else(|| no_cache(kind))?;
        check_grad(kind, grad_output, x.dims())?;
        let f = self.function;
        let mut g = grad_output.clone();
        g.data_mut()
            .iter_mut()
            .zip(x.data())
            .for_each(|(g, &x)| *g *= f.derivative(x));
        Ok(g)
    }

    fn param_count(&self) -> usize {
        0
    }

    fn macs(&self, _input: &Shape) -> Result<u64> {
        Ok(0)
    }

    fn clear_cache(&mut self) {
        self.cache = None;
    }

    fn record(&self) -> Result<LayerRecord> {
        let rec = LayerRecord::new(self.kind());
        Ok(match self.function {
            HardKind::Clip { min, max } => rec.with_float("min", min).with_float("max", max),
            HardKind::HardSigmoid { alpha, beta } => {
                rec.with_float("alpha", alpha).with_float("beta", beta)
            }
            HardKind::HardSwish => rec,
        })
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
    use crate::registry::LayerRegistry;

    fn grid() -> Tensor {
        // -8 .. 8 in steps of 1/16, the kinks (0, 6, +-3, +-2.5) included.
        let v: Vec<f32> = (-128..=128).map(|k| k as f32 / 16.0).collect();
        Tensor::new(&[1, v.len()], v).unwrap()
    }

    #[test]
    fn forward_matches_the_textbook_formulas() {
        let x = grid();
        let relu6 = |x: f64| x.clamp(0.0, 6.0);
        let cases: [(HardActivation, &dyn Fn(f64) -> f64); 4] = [
            (HardActivation::relu6(), &relu6),
            (
                HardActivation::new(HardKind::Clip {
                    min: -1.5,
                    max: 0.25,
                }),
                &|x: f64| x.clamp(-1.5, 0.25),
            ),
            (
                HardActivation::new(HardKind::HardSigmoid {
                    alpha: 0.2,
                    beta: 0.5,
                }),
                &|x: f64| (0.2 * x + 0.5).clamp(0.0, 1.0),
            ),
            // Howard et al.: h-swish(x) = x ReLU6(x + 3) / 6.
            (HardActivation::new(HardKind::HardSwish), &|x: f64| {
                x * relu6(x + 3.0) / 6.0
            }),
        ];
        for (mut layer, reference) in cases {
            let y = layer.forward(&x, Mode::Eval).unwrap();
            for (&a, &b) in x.data().iter().zip(y.data()) {
                let want = reference(a as f64);
                assert!(
                    (b as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "{}({a}) = {b}, want {want}",
                    layer.kind()
                );
            }
        }
    }

    #[test]
    fn derivatives_at_the_kinks_follow_pytorch() {
        let c = HardKind::Clip { min: 0.0, max: 6.0 };
        assert_eq!(
            [-1.0, 0.0, 3.0, 6.0, 7.0].map(|x| c.derivative(x)),
            [0.0, 0.0, 1.0, 0.0, 0.0]
        );
        let s = HardKind::HardSwish;
        assert_eq!(
            [-4.0, -3.0, 0.0, 3.0, 4.0].map(|x| s.derivative(x)),
            [0.0, -0.5, 0.5, 1.5, 1.0]
        );
    }

    #[test]
    fn records_round_trip_and_corrupt_ones_are_errors() {
        let mut reg = LayerRegistry::empty();
        crate::layers::register(&mut reg).unwrap();
        let x = grid();
        for mut l in [
            HardActivation::relu6(),
            HardActivation::new(HardKind::HardSigmoid {
                alpha: 1.0 / 6.0,
                beta: 0.5,
            }),
            HardActivation::new(HardKind::HardSwish),
        ] {
            let rec = l.record().unwrap();
            let mut back = reg.build(&rec).unwrap();
            assert_eq!(back.kind(), l.kind());
            let (a, b) = (
                l.forward(&x, Mode::Eval).unwrap(),
                back.forward(&x, Mode::Eval).unwrap(),
            );
            assert_eq!(a.data(), b.data());
        }
        let bad = LayerRecord::new("clip")
            .with_float("min", 2.0)
            .with_float("max", 1.0);
        assert!(reg.build(&bad).unwrap_err().to_string().contains("min 2"));
        let nan = LayerRecord::new("hard_sigmoid")
            .with_float("alpha", f32::NAN)
            .with_float("beta", 0.5);
        assert!(reg.build(&nan).is_err());
        assert!(reg.build(&LayerRecord::new("clip")).is_err());
    }
}
