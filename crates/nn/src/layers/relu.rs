//! ReLU layer: `y = max(x, 0)`, derivative 1 where the output is positive, else 0.
//!
//! Training keeps one bit per element (whether the output is positive) rather than a copy of
//! the output, and both passes run over chunks in parallel: in a cnn-teacher epoch the two
//! copies per forward (output and cache) and the single-threaded passes took 8% of the time.

use rayon::prelude::*;
use tensor_core::{Shape, Tensor};

use super::{check_grad, no_cache};
use crate::error::Result;
use crate::layer::{Layer, Mode};
use crate::record::LayerRecord;

/// Elements per rayon task of the training passes (a multiple of 64, one mask word per 64).
const CHUNK: usize = 1 << 14;

/// Rectified linear unit, `max(x, 0)` (the derivative at 0 is taken as 0, as PyTorch does).
#[derive(Clone, Debug, Default)]
pub struct ReLU {
    /// Shape of the last training-mode input and its mask: bit `k` of word `w` is set when
    /// output element `64 w + k` is positive.
    cache: Option<(Shape, Vec<u64>)>,
}

impl ReLU {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds the layer from its record (no attributes, no tensors).
    pub fn from_record(rec: &LayerRecord) -> Result<Self> {
        rec.expect_kind("relu")?;
        rec.expect_tensor_names(&[])?;
        Ok(Self::new())
    }

    /// Inference, `max(x, 0)` into a new tensor on the calling thread: what
    /// [`Layer::forward`] computes in [`Mode::Eval`], through a shared reference (the model's
    /// chunks of a batch run it from several threads at once).
    pub fn infer(&self, input: &Tensor) -> Tensor {
        let mut y = input.clone();
        tensor_core::activation::relu_inplace(y.data_mut());
        y
    }

    /// Keeps `mask` (as [`relu_with_mask`] makes it) for `backward`, for a fused training
    /// step that applied this ReLU itself.
    pub(crate) fn set_train_mask(&mut self, shape: Shape, mask: Vec<u64>) {
        self.cache = Some((shape, mask));
    }
}

/// `max(v, 0)` as [`tensor_core::activation::relu_inplace`] computes it (NaN stays NaN).
#[inline(always)]
pub(crate) fn relu_value(v: f32) -> f32 {
    if v < 0.0 { 0.0 } else { v }
}

/// The mask bits of up to 64 outputs: bit `k` set when `y[k] > 0`. Built as two 32-bit
/// halves, whose per-lane shifts vectorize (a 64-bit fold did not).
#[inline(always)]
pub(crate) fn positive_bits(y: &[f32]) -> u64 {
    y.chunks(32).enumerate().fold(0u64, |bits, (half, ys)| {
        let h = ys
            .iter()
            .zip(0u32..)
            .fold(0u32, |h, (&v, k)| h | (u32::from(v > 0.0) << k));
        bits | (u64::from(h) << (32 * half))
    })
}

/// Applies ReLU to `y` in place and returns its mask (one bit per element, see [`ReLU`]);
/// chunks of [`CHUNK`] elements run in parallel.
pub(crate) fn relu_with_mask(y: &mut [f32]) -> Vec<u64> {
    let mut mask = vec![0u64; y.len().div_ceil(64)];
    y.par_chunks_mut(CHUNK)
        .zip(mask.par_chunks_mut(CHUNK / 64))
        .for_each(|(ys, ms)| {
            for (yw, m) in ys.chunks_mut(64).zip(ms) {
                yw.iter_mut().for_each(|v| *v = relu_value(*v));
                *m = positive_bits(yw);
            }
        });
    mask
}

/// `g *= derivative` in place, the derivative (1.0 or 0.0) read from `mask`; multiplying
/// (rather than selecting) keeps the result bit-identical to `g * relu'(y)`, NaN and the sign
/// of zero included.
fn apply_mask(g: &mut [f32], mask: &[u64]) {
    g.par_chunks_mut(CHUNK)
        .zip(mask.par_chunks(CHUNK / 64))
        .for_each(|(gs, ms)| {
            for (gw, &m) in gs.chunks_mut(64).zip(ms) {
                for (half, g32) in gw.chunks_mut(32).enumerate() {
                    let h = (m >> (32 * half)) as u32;
                    for (v, k) in g32.iter_mut().zip(0u32..) {
                        *v *= ((h >> k) & 1) as f32;
                    }
                }
            }
        });
}

impl Layer for ReLU {
    fn kind(&self) -> &'static str {
        "relu"
    }

    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        Ok(input.clone())
    }

    fn forward(&mut self, input: &Tensor, mode: Mode) -> Result<Tensor> {
        self.forward_owned(input.clone(), mode)
    }

    fn forward_owned(&mut self, mut input: Tensor, mode: Mode) -> Result<Tensor> {
        if mode == Mode::Train {
            let mask = relu_with_mask(input.data_mut());
            self.cache = Some((input.shape().clone(), mask));
        } else {
            tensor_core::activation::relu_inplace(input.data_mut());
        }
        Ok(input)
    }

    fn backward(&mut self, grad_output: &Tensor) -> Result<Tensor> {
        self.backward_owned(grad_output.clone())
    }

    fn backward_owned(&mut self, mut grad_output: Tensor) -> Result<Tensor> {
        let (shape, mask) = self.cache.as_ref().ok_or_else(|| no_cache("relu"))?;
        check_grad("relu", &grad_output, shape.dims())?;
        apply_mask(grad_output.data_mut(), mask);
        Ok(grad_output)
    }

    fn record(&self) -> Result<LayerRecord> {
        Ok(LayerRecord::new("relu"))
    }

    parameter_free_methods!();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values around the kink, both zeros, NaN and large magnitudes, over lengths that
    /// end inside a mask word and across several chunks.
    fn input(len: usize) -> Tensor {
        let specials = [0.0, -0.0, f32::NAN, 1e30, -1e30, 1e-40, -1e-40];
        let v: Vec<f32> = (0..len)
            .map(|i| {
                if i % 11 == 0 {
                    specials[(i / 11) % specials.len()]
                } else {
                    ((i * 37 % 101) as f32 - 50.0) / 7.0
                }
            })
            .collect();
        Tensor::new(&[1, len], v).unwrap()
    }

    #[test]
    fn forward_and_backward_match_the_elementwise_reference_bit_for_bit() {
        for len in [0, 1, 63, 64, 65, 200, CHUNK - 1, CHUNK + 70, 3 * CHUNK + 5] {
            let x = input(len);
            let g = input(len);
            let mut layer = ReLU::new();
            let y = layer.forward(&x, Mode::Train).unwrap();
            let dx = layer.backward(&g).unwrap();
            for i in 0..len {
                let (xv, gv) = (x.data()[i], g.data()[i]);
                let want_y = if xv < 0.0 { 0.0 } else { xv };
                let want_dx = gv * if want_y > 0.0 { 1.0 } else { 0.0 };
                assert_eq!(y.data()[i].to_bits(), want_y.to_bits(), "len {len} y[{i}]");
                assert_eq!(
                    dx.data()[i].to_bits(),
                    want_dx.to_bits(),
                    "len {len} dx[{i}]"
                );
            }
            let mut eval = x.clone();
            tensor_core::activation::relu_inplace(eval.data_mut());
            let ye = layer.forward(&x, Mode::Eval).unwrap();
            let yi = layer.infer(&x);
            for y in [&ye, &yi] {
                assert!(
                    y.data()
                        .iter()
                        .zip(eval.data())
                        .all(|(a, b)| a.to_bits() == b.to_bits())
                );
            }
        }
    }

    #[test]
    fn backward_checks_the_gradient_shape() {
        let mut layer = ReLU::new();
        assert!(layer.backward(&input(5)).is_err(), "no cache yet");
        layer.forward(&input(5), Mode::Train).unwrap();
        let err = layer.backward(&input(6)).unwrap_err().to_string();
        assert!(err.contains("relu"), "{err}");
    }
}
