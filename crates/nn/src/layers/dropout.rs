//! Dropout layer (Srivastava et al., 2014), inverted: kept units are scaled by `1/(1-p)` in
//! training so that inference is the identity.

use std::any::Any;

use tensor_core::rng::Rng;
use tensor_core::{Shape, Tensor};

use super::{check_grad, no_cache};
use crate::error::{NnError, Result};
use crate::layer::{Layer, Mode};
use crate::record::LayerRecord;

/// Inverted dropout with drop probability `p` in `[0, 1)`: in [`Mode::Train`] each element
/// is zeroed with probability `p` and the others are multiplied by `1 / (1 - p)`; in
/// [`Mode::Eval`] the layer is the identity. The mask stream comes from `seed`, so a run is
/// reproducible; the record stores `p` and `seed` (a rebuilt layer restarts the stream).
#[derive(Clone, Debug)]
pub struct Dropout {
    p: f32,
    seed: u64,
    rng: Rng,
    /// The scale applied to each element (0 or `1/(1-p)`) in the last training forward.
    cache: Option<Tensor>,
}

impl Dropout {
    /// Dropout with probability `p` (in `[0, 1)`) and a mask stream seeded by `seed`.
    pub fn new(p: f32, seed: u64) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(NnError::Config(format!(
                "dropout: probability {p} outside [0, 1)"
            )));
        }
        Ok(Self {
            p,
            seed,
            rng: Rng::seed_from_u64(seed),
            cache: None,
        })
    }

    /// Rebuilds the layer from its record (attributes `p` (float) and `seed` (int, the u64
    /// bits); no tensors).
    pub fn from_record(rec: &LayerRecord) -> Result<Self> {
        rec.expect_kind("dropout")?;
        rec.expect_tensor_names(&[])?;
        let p = rec.float("p")?;
        let seed = rec.int_or("seed", 0)? as u64;
        Self::new(p, seed).map_err(|e| rec.corrupt("attribute `p`", e.to_string()))
    }

    /// The drop probability.
    pub fn p(&self) -> f32 {
        self.p
    }

    /// The state of the mask stream (saved by training checkpoints, see
    /// [`crate::trainer::TrainState`]).
    pub fn rng_state(&self) -> [u64; 4] {
        self.rng.state()
    }

    /// Continues the mask stream from `state` ([`Dropout::rng_state`]); the all-zero state
    /// is refused.
    pub fn set_rng_state(&mut self, state: [u64; 4]) -> Result<()> {
        self.rng = Rng::from_state(state).ok_or_else(|| {
            NnError::Config("dropout: the all-zero generator state is invalid".into())
        })?;
        Ok(())
    }

    /// Sets the drop probability (in `[0, 1)`; pruning's retraining lowers it, Han et al.,
    /// 2015, section 3.2). The mask stream continues.
    pub fn set_p(&mut self, p: f32) -> Result<()> {
        if !(0.0..1.0).contains(&p) {
            return Err(NnError::Config(format!(
                "dropout: probability {p} outside [0, 1)"
            )));
        }
        self.p = p;
        Ok(())
    }
}

/// `t *= mask` elementwise (equal shapes).
fn scale_by(t: &mut Tensor, mask: &Tensor) {
    t.data_mut()
        .iter_mut()
        .zip(mask.data())
        .for_each(|(v, &m)| *v *= m);
}

impl Layer for Dropout {
    fn kind(&self) -> &'static str {
        "dropout"
    }

    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        Ok(input.clone())
    }

    fn forward(&mut self, input: &Tensor, mode: Mode) -> Result<Tensor> {
        self.forward_owned(input.clone(), mode)
    }

    fn forward_owned(&mut self, mut input: Tensor, mode: Mode) -> Result<Tensor> {
        if mode == Mode::Eval || self.p == 0.0 {
            if mode == Mode::Train {
                self.cache = Some(Tensor::full(input.shape().clone(), 1.0));
            }
            return Ok(input);
        }
        let scale = 1.0 / (1.0 - self.p);
        let mut mask = Tensor::zeros(input.shape().clone());
        for m in mask.data_mut() {
            *m = if self.rng.uniform() < self.p {
                0.0
            } else {
                scale
            };
        }
        scale_by(&mut input, &mask);
        self.cache = Some(mask);
        Ok(input)
    }

    fn backward(&mut self, grad_output: &Tensor) -> Result<Tensor> {
        self.backward_owned(grad_output.clone())
    }

    fn backward_owned(&mut self, mut grad_output: Tensor) -> Result<Tensor> {
        let mask = self.cache.as_ref().ok_or_else(|| no_cache("dropout"))?;
        check_grad("dropout", &grad_output, mask.dims())?;
        scale_by(&mut grad_output, mask);
        Ok(grad_output)
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
        Ok(LayerRecord::new("dropout")
            .with_float("p", self.p)
            .with_int("seed", self.seed as i64))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
