//! Fake quantization of activations with ranges tracked by an exponential moving average of
//! the observed minimum and maximum (Jacob et al. 2018, section 3.1; PyTorch's
//! `MovingAverageMinMaxObserver` feeding a `FakeQuantize`).

use std::any::Any;

use nn::{Layer, LayerRecord, Mode, NnError};
use tensor_core::{Shape, Tensor};

use crate::affine::round_half_even;
use crate::error::{QuantError, Result};
use crate::params::{QuantParams, Symmetry, min_max};
use crate::qtype::QuantType;

/// Weight of a batch's extremes in the moving average (PyTorch's default
/// `averaging_constant`).
pub const EMA_AVERAGING: f32 = 0.01;

/// An activation fake quantizer: in training, each batch moves the range toward the batch's
/// `[min, max]` by `averaging` (`r <- r + c (batch - r)`), then the input is quantized and
/// dequantized with the range's per-tensor parameters (ONNX QuantizeLinear then
/// DequantizeLinear, exactly as [`QuantParams::fake_quantize`]). Evaluation uses the range
/// without moving it. Backward is the clipped straight-through estimator: the gradient passes
/// where the unclamped code `round_half_even(x / s) + z` lies in `[qmin, qmax]`, else 0.
///
/// Its record is nn's `fake_quantize` (the current scale and zero point), so a model in
/// training can be saved and read back as a fixed fake quantizer.
#[derive(Clone, Debug)]
pub struct EmaFakeQuantize {
    symmetry: Symmetry,
    averaging: f32,
    range: (f32, f32),
    params: QuantParams,
    /// 1.0 where the last training forward let the gradient through, else 0.0.
    mask: Option<Vec<f32>>,
}

impl EmaFakeQuantize {
    /// A quantizer to `qtype` (per tensor, `symmetry`) starting from `range` (a calibrated
    /// range), moving by `averaging` in `(0, 1]` per training batch.
    pub fn new(
        qtype: QuantType,
        symmetry: Symmetry,
        range: (f32, f32),
        averaging: f32,
    ) -> Result<Self> {
        if !(averaging > 0.0 && averaging <= 1.0) {
            return Err(QuantError::InvalidArgument {
                op: "EmaFakeQuantize::new",
                reason: format!("averaging constant {averaging} outside (0, 1]"),
            });
        }
        let params = QuantParams::from_range(qtype, symmetry, range.0, range.1)?;
        Ok(Self {
            symmetry,
            averaging,
            range,
            params,
            mask: None,
        })
    }

    /// The current range.
    pub fn range(&self) -> (f32, f32) {
        self.range
    }

    /// The current per-tensor parameters.
    pub fn params(&self) -> &QuantParams {
        &self.params
    }

    /// Moves the range toward the extremes of `x` (a batch with no finite value leaves it).
    fn observe(&mut self, x: &[f32]) -> Result<()> {
        if !x.iter().any(|v| v.is_finite()) {
            return Ok(());
        }
        let (lo, hi) = min_max(x);
        let c = self.averaging;
        self.range = (
            self.range.0 + c * (lo - self.range.0),
            self.range.1 + c * (hi - self.range.1),
        );
        self.params = QuantParams::from_range(
            self.params.qtype(),
            self.symmetry,
            self.range.0,
            self.range.1,
        )?;
        Ok(())
    }
}

impl Layer for EmaFakeQuantize {
    fn kind(&self) -> &'static str {
        "ema_fake_quantize"
    }

    fn output_shape(&self, input: &Shape) -> nn::Result<Shape> {
        Ok(input.clone())
    }

    fn forward(&mut self, input: &Tensor, mode: Mode) -> nn::Result<Tensor> {
        if mode == Mode::Train {
            self.observe(input.data())?;
        }
        let n = input.numel();
        let y = self.params.fake_quantize(input.data(), &[n])?;
        if mode == Mode::Train {
            let (s, z) = (self.params.scales()[0], self.params.zero_points()[0]);
            let t = self.params.qtype();
            self.mask = Some(
                input
                    .data()
                    .iter()
                    .map(|&x| {
                        let q = round_half_even(x / s) + z;
                        if (t.qmin()..=t.qmax()).contains(&q) {
                            1.0
                        } else {
                            0.0
                        }
                    })
                    .collect(),
            );
        }
        Ok(Tensor::new(input.dims(), y)?)
    }

    fn backward(&mut self, grad_output: &Tensor) -> nn::Result<Tensor> {
        let mask = self.mask.as_ref().ok_or_else(|| {
            NnError::Unsupported("ema_fake_quantize backward: no training forward before".into())
        })?;
        if grad_output.numel() != mask.len() {
            return Err(NnError::Config(format!(
                "ema_fake_quantize backward: gradient of {} values, forward had {}",
                grad_output.numel(),
                mask.len()
            )));
        }
        let mut g = grad_output.clone();
        g.data_mut()
            .iter_mut()
            .zip(mask)
            .for_each(|(v, &m)| *v *= m);
        Ok(g)
    }

    fn param_count(&self) -> usize {
        0
    }

    fn macs(&self, _input: &Shape) -> nn::Result<u64> {
        Ok(0)
    }

    fn clear_cache(&mut self) {
        self.mask = None;
    }

    fn record(&self) -> nn::Result<LayerRecord> {
        let t = self.params.qtype();
        Ok(LayerRecord::new("fake_quantize")
            .with_float("scale", self.params.scales()[0])
            .with_int("zero_point", i64::from(self.params.zero_points()[0]))
            .with_int("qmin", i64::from(t.qmin()))
            .with_int("qmax", i64::from(t.qmax())))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
