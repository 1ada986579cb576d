//! Mixed precision: one weight bit width per layer, chosen from a sensitivity scan.
//!
//! The scan (the per-layer sensitivity analysis of Wu et al., "Integer Quantization for Deep
//! Learning Inference: Principles and Empirical Evaluation", 2020, section 4.4) quantizes one
//! layer at a time to each candidate width, every other layer at the base width, and measures
//! the accuracy lost on held-out images. The choice is greedy: starting from the base width
//! everywhere, it repeatedly narrows the layer whose next narrower width saves the most bytes
//! per point of scanned loss, until the size target is met ([`MixedTarget::Bytes`]) or no
//! further step keeps the summed losses within the budget ([`MixedTarget::MaxLoss`]). The
//! chosen configuration is then quantized and measured on the same held-out images; for a
//! loss budget, steps are undone (last first) while the measured loss exceeds it, since
//! per-layer losses do not add exactly.
//!
//! Size is counted as stored with packed codes: `ceil(weights * bits / 8)` bytes of weight
//! codes plus an i32 bias and an f32 scale per output channel ([`packed_layer_bytes`]).

use nn::io::native::ModelRecord;
use nn::{Dataset, Layer, LayerRegistry, Model};

use crate::convert::{QuantConfig, convert_with_layer_bits, quantized_layers};
use crate::error::{QuantError, Result};

/// What the per-layer widths must meet.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MixedTarget {
    /// Packed weight bytes of the quantized layers at most this ([`packed_layer_bytes`]).
    Bytes(usize),
    /// Accuracy lost against the model at the base width, in points (percent), at most this.
    MaxLoss(f64),
}

/// One layer's scan.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerSensitivity {
    /// Index of the layer in the (BatchNorm-folded) float model.
    pub index: usize,
    /// Weight count.
    pub weights: usize,
    /// Output channels (one i32 bias and one f32 scale each).
    pub channels: usize,
    /// `(bits, points lost)` for each scanned width, widest first; the base width loses 0.
    pub loss: Vec<(u32, f64)>,
}

impl LayerSensitivity {
    /// Points lost at `bits` (0 for a width that was not scanned narrower than the base).
    pub fn loss_at(&self, bits: u32) -> f64 {
        self.loss
            .iter()
            .find(|(b, _)| *b == bits)
            .map_or(0.0, |(_, l)| *l)
    }
}

/// The choice, with what it was measured to cost.
#[derive(Clone, Debug, PartialEq)]
pub struct MixedPlan {
    /// `(layer index, bits)` for every quantized layer.
    pub bits: Vec<(usize, u32)>,
    /// Packed bytes of the quantized layers at the chosen widths.
    pub packed_bytes: usize,
    /// Packed bytes at the base width everywhere.
    pub base_bytes: usize,
    /// Sum of the scanned per-layer losses of the choice, in points.
    pub predicted_loss: f64,
    /// Accuracy of the base-width model on the held-out images.
    pub base_accuracy: f64,
    /// Accuracy of the chosen configuration on the held-out images.
    pub accuracy: f64,
}

impl MixedPlan {
    /// Measured points lost on the held-out images.
    pub fn measured_loss(&self) -> f64 {
        100.0 * (self.base_accuracy - self.accuracy)
    }

    /// The widths as [`convert_with_layer_bits`] takes them for a model of `n` layers.
    pub fn layer_bits(&self, n: usize) -> Vec<Option<u32>> {
        let mut v = vec![None; n];
        for &(i, b) in &self.bits {
            if i < n {
                v[i] = Some(b);
            }
        }
        v
    }
}

/// Bytes of a layer of `weights` codes at `bits` over `channels` output channels, codes
/// packed: `ceil(weights * bits / 8) + 8 * channels`.
pub fn packed_layer_bytes(weights: usize, channels: usize, bits: u32) -> usize {
    (weights * bits as usize).div_ceil(8) + 8 * channels
}

/// A copy of a float model (nn layers only) through its records.
fn copy(model: &Model) -> Result<Model> {
    let rec = ModelRecord::from_model(model, Default::default())?;
    Ok(rec.into_model_with(&LayerRegistry::nn())?)
}

/// Accuracy on `val` of `float` quantized with per-layer widths `bits`.
fn accuracy_with(
    float: &Model,
    ranges: &[Option<(f32, f32)>],
    config: &QuantConfig,
    bits: &[Option<u32>],
    val: &Dataset,
) -> Result<f64> {
    let (mut q, _) = convert_with_layer_bits(copy(float)?, ranges, config, bits)?;
    Ok(nn::metrics::evaluate(&mut q, val, 256)?.accuracy)
}

/// Scans every quantized layer of `float` (BatchNorm folded, as
/// [`calibrate_ranges`](crate::calibrate_ranges) saw it) at each width of `widths` narrower
/// than `config.weight_bits`, the others at `config.weight_bits`; returns the base model's
/// accuracy on `val` and one [`LayerSensitivity`] per layer. `progress(done, total)` is
/// called after each conversion.
pub fn sensitivity_scan(
    float: &Model,
    ranges: &[Option<(f32, f32)>],
    config: &QuantConfig,
    widths: &[u32],
    val: &Dataset,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(f64, Vec<LayerSensitivity>)> {
    let n = float.layers.len();
    let layers = quantized_layers(float);
    let mut narrower: Vec<u32> = widths
        .iter()
        .copied()
        .filter(|&b| b < config.weight_bits)
        .collect();
    narrower.sort_unstable_by(|a, b| b.cmp(a));
    narrower.dedup();
    let total = 1 + layers.len() * narrower.len();
    let base = accuracy_with(float, ranges, config, &vec![None; n], val)?;
    progress(1, total);
    let mut done = 1;
    let mut out = Vec::with_capacity(layers.len());
    for &i in &layers {
        let (weights, channels) = weight_shape(&*float.layers[i]);
        let mut loss = vec![(config.weight_bits, 0.0)];
        for &b in &narrower {
            let mut bits = vec![None; n];
            bits[i] = Some(b);
            let acc = accuracy_with(float, ranges, config, &bits, val)?;
            loss.push((b, 100.0 * (base - acc)));
            done += 1;
            progress(done, total);
        }
        out.push(LayerSensitivity {
            index: i,
            weights,
            channels,
            loss,
        });
    }
    Ok((base, out))
}

/// Weight count and output channels of a linear or convolution layer.
fn weight_shape(l: &dyn Layer) -> (usize, usize) {
    let a = l.as_any();
    if let Some(c) = a.downcast_ref::<nn::layers::Conv2d>() {
        (c.weight().numel(), c.params().out_channels)
    } else if let Some(lin) = a.downcast_ref::<nn::layers::Linear>() {
        (lin.weight().numel(), lin.out_features())
    } else {
        (0, 0)
    }
}

/// The greedy order of narrowing steps from the base width: `(position in sens, bits)` after
/// each step, most bytes saved per point of loss first, stopping when `stop(bytes, loss)`
/// says so before a step.
fn greedy_steps(
    sens: &[LayerSensitivity],
    base_bits: u32,
    stop: &dyn Fn(usize, f64, Option<(usize, f64)>) -> bool,
) -> Vec<(usize, u32)> {
    let mut cur: Vec<u32> = vec![base_bits; sens.len()];
    let bytes = |cur: &[u32]| -> usize {
        sens.iter()
            .zip(cur)
            .map(|(s, &b)| packed_layer_bytes(s.weights, s.channels, b))
            .sum()
    };
    let loss = |cur: &[u32]| -> f64 { sens.iter().zip(cur).map(|(s, &b)| s.loss_at(b)).sum() };
    let mut steps = Vec::new();
    loop {
        // The next narrower scanned width of each layer, scored by bytes saved per point.
        let best = sens
            .iter()
            .enumerate()
            .filter_map(|(j, s)| {
                let next = s.loss.iter().map(|&(b, _)| b).find(|&b| b < cur[j])?;
                let saved = packed_layer_bytes(s.weights, s.channels, cur[j])
                    - packed_layer_bytes(s.weights, s.channels, next);
                let extra = (s.loss_at(next) - s.loss_at(cur[j])).max(0.0);
                Some((j, next, saved as f64 / (extra + 1e-3)))
            })
            .max_by(|a, b| a.2.total_cmp(&b.2));
        let Some((j, next, _)) = best else { break };
        let mut trial = cur.clone();
        trial[j] = next;
        if stop(bytes(&cur), loss(&cur), Some((bytes(&trial), loss(&trial)))) {
            break;
        }
        cur = trial;
        steps.push((j, next));
    }
    steps
}

/// Chooses per-layer widths for `target` from `sens` (a [`sensitivity_scan`]) and measures
/// the choice on `val`. Errors when a size target is below the narrowest scanned widths.
pub fn choose_bits(
    float: &Model,
    ranges: &[Option<(f32, f32)>],
    config: &QuantConfig,
    sens: &[LayerSensitivity],
    base_accuracy: f64,
    target: MixedTarget,
    val: &Dataset,
) -> Result<MixedPlan> {
    let base = config.weight_bits;
    let steps = match target {
        MixedTarget::Bytes(t) => {
            let s = greedy_steps(sens, base, &|bytes, _, _| bytes <= t);
            let mut cur = vec![base; sens.len()];
            for &(j, b) in &s {
                cur[j] = b;
            }
            let got: usize = sens
                .iter()
                .zip(&cur)
                .map(|(s, &b)| packed_layer_bytes(s.weights, s.channels, b))
                .sum();
            if got > t {
                return Err(QuantError::InvalidArgument {
                    op: "choose_bits",
                    reason: format!(
                        "target {t} bytes is below {got}, the packed size at the narrowest \
                         scanned widths"
                    ),
                });
            }
            s
        }
        MixedTarget::MaxLoss(max) => {
            greedy_steps(sens, base, &|_, _, next| next.is_some_and(|(_, l)| l > max))
        }
    };
    let n = float.layers.len();
    let plan_for = |k: usize| -> (Vec<u32>, Vec<Option<u32>>) {
        let mut cur = vec![base; sens.len()];
        for &(j, b) in &steps[..k] {
            cur[j] = b;
        }
        let mut bits = vec![None; n];
        for (s, &b) in sens.iter().zip(&cur) {
            bits[s.index] = Some(b);
        }
        (cur, bits)
    };
    let mut k = steps.len();
    loop {
        let (cur, bits) = plan_for(k);
        let accuracy = accuracy_with(float, ranges, config, &bits, val)?;
        let measured = 100.0 * (base_accuracy - accuracy);
        let over = matches!(target, MixedTarget::MaxLoss(max) if measured > max);
        if !over || k == 0 {
            let bytes_at = |b: &dyn Fn(usize) -> u32| -> usize {
                sens.iter()
                    .enumerate()
                    .map(|(j, s)| packed_layer_bytes(s.weights, s.channels, b(j)))
                    .sum()
            };
            return Ok(MixedPlan {
                bits: sens.iter().zip(&cur).map(|(s, &b)| (s.index, b)).collect(),
                packed_bytes: bytes_at(&|j| cur[j]),
                base_bytes: bytes_at(&|_| base),
                predicted_loss: sens.iter().zip(&cur).map(|(s, &b)| s.loss_at(b)).sum(),
                base_accuracy,
                accuracy,
            });
        }
        k -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sens(index: usize, weights: usize, loss: &[(u32, f64)]) -> LayerSensitivity {
        LayerSensitivity {
            index,
            weights,
            channels: 1,
            loss: loss.to_vec(),
        }
    }

    #[test]
    fn packed_bytes_count_bits_and_channels() {
        assert_eq!(packed_layer_bytes(10, 2, 8), 10 + 16);
        assert_eq!(packed_layer_bytes(10, 2, 4), 5 + 16);
        assert_eq!(packed_layer_bytes(3, 0, 3), 2);
    }

    #[test]
    fn greedy_narrows_the_cheapest_bytes_first() {
        // Layer 0: big and insensitive; layer 1: small and sensitive.
        let s = [
            sens(0, 1000, &[(8, 0.0), (6, 0.1), (4, 0.2)]),
            sens(2, 100, &[(8, 0.0), (6, 1.0), (4, 5.0)]),
        ];
        let steps = greedy_steps(&s, 8, &|_, _, next| next.is_some_and(|(_, l)| l > 0.5));
        assert_eq!(steps, vec![(0, 6), (0, 4)]);
        let all = greedy_steps(&s, 8, &|_, _, _| false);
        assert_eq!(all.len(), 4);
        assert_eq!(all[..2], [(0, 6), (0, 4)]);
    }
}
