//! Post-training quantization of a model: calibrate activation ranges on a calibration set,
//! then replace each linear and (ungrouped) convolution layer, with the ReLU after it, by its
//! integer twin.
//!
//! The quantized region: a [`Quantize`] layer where codes start, then quantized layers whose
//! outputs are the codes of the next quantized layer's input (requantization fused), with
//! max pooling, flattening, reshaping and dropout passing codes through unchanged. A quantized
//! layer whose output does not reach another one (the logits, or a layer before an
//! unsupported one) emits real values, so no [`Dequantize`](crate::layers::Dequantize) is
//! needed. Activation ranges are calibrated at the input of every quantized layer.

use nn::layers::{Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU, Reshape, fold_batchnorms};
use nn::{Layer, Mode, Model};
use tensor_core::Tensor;

use crate::calibrate::{Calibration, Histogram, MinMax, choose_range, histogram_range};
use crate::error::{QuantError, Result};
use crate::layers::{QuantConv2d, QuantLinear, QuantOutput, Quantize};
use crate::params::{QuantParams, Symmetry};
use crate::qtype::QuantType;
use crate::weights::WeightScheme;

/// Options of [`quantize_model`] (`Default`: 8-bit per-channel weights, 7-bit asymmetric
/// activations, min-max calibration).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantConfig {
    /// Bits per weight code, 2..=8 (symmetric, signed).
    pub weight_bits: u32,
    /// Bits per activation code, 2..=7 (unsigned; 7 is the reduced range the AVX2 GEMM
    /// needs, so asking for 8 gives 7).
    pub activation_bits: u32,
    /// One weight scale per output channel (else one per tensor).
    pub per_channel: bool,
    /// Power-of-two weights ([`WeightScheme::Pow2`], per output channel) instead of uniform
    /// codes.
    pub pow2: bool,
    /// Activation zero point at the middle code instead of fitted to the range.
    pub symmetric: bool,
    /// How activation ranges are chosen.
    pub calibration: Calibration,
    /// Calibration images per forward pass.
    pub batch: usize,
}

impl QuantConfig {
    /// How weights are quantized.
    pub fn weights(&self) -> WeightScheme {
        if self.pow2 {
            WeightScheme::Pow2 {
                bits: self.weight_bits,
            }
        } else {
            WeightScheme::uniform(self.weight_bits, self.per_channel)
        }
    }

    /// The activations' symmetry.
    pub fn activation_symmetry(&self) -> Symmetry {
        if self.symmetric {
            Symmetry::Symmetric
        } else {
            Symmetry::Asymmetric
        }
    }
}

impl Default for QuantConfig {
    fn default() -> Self {
        Self {
            weight_bits: 8,
            activation_bits: 7,
            per_channel: true,
            pow2: false,
            symmetric: false,
            calibration: Calibration::MinMax,
            batch: 64,
        }
    }
}

/// What happened to one quantized layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerReport {
    /// Index of the float layer in the input model (after BatchNorm folding).
    pub index: usize,
    /// `quant_linear` or `quant_conv2d`.
    pub kind: &'static str,
    /// Bits per weight.
    pub weight_bits: u32,
    /// Whether weights are powers of two.
    pub pow2: bool,
    /// Calibrated input range.
    pub input_range: (f32, f32),
    /// Input scale and zero point.
    pub input_scale: f32,
    /// Input zero point.
    pub input_zero_point: i32,
    /// Whether a ReLU was fused.
    pub relu_fused: bool,
    /// Whether a 2x2 max pooling was fused.
    pub pool_fused: bool,
    /// Whether the layer emits real values (else the next layer's codes).
    pub float_output: bool,
    /// Bytes as stored.
    pub stored_bytes: usize,
    /// Bytes of the float layer it replaced (4 per parameter).
    pub float_bytes: usize,
}

fn is_candidate(l: &dyn Layer) -> bool {
    let a = l.as_any();
    a.is::<Linear>()
        || a.downcast_ref::<Conv2d>()
            .is_some_and(|c| c.params().groups == 1)
}

fn is_passthrough(l: &dyn Layer) -> bool {
    let a = l.as_any();
    a.is::<MaxPool2d>() || a.is::<Flatten>() || a.is::<Reshape>() || a.is::<Dropout>()
}

fn is_relu(l: Option<&dyn Layer>) -> bool {
    l.is_some_and(|l| l.as_any().is::<ReLU>())
}

/// Whether `l` is the 2x2, stride-2, unpadded max pooling a quantized convolution fuses.
fn is_fusable_pool(l: Option<&dyn Layer>) -> bool {
    l.and_then(|l| l.as_any().downcast_ref::<MaxPool2d>())
        .is_some_and(|m| {
            let p = m.params();
            p.kernel == (2, 2)
                && p.stride == (2, 2)
                && p.dilation == (1, 1)
                && !p.ceil_mode
                && p.padding == Default::default()
        })
}

/// The layers [`quantize_model`] replaces: top-level `linear` and ungrouped `conv2d`
/// layers, by index.
pub fn quantized_layers(model: &Model) -> Vec<usize> {
    (0..model.layers.len())
        .filter(|&i| is_candidate(&*model.layers[i]))
        .collect()
}

/// Quantizes `model` after calibrating on `calib` (`[S, ...]`, the model's input shape);
/// returns the quantized model and one report per quantized layer.
pub fn quantize_model(
    mut model: Model,
    calib: &Tensor,
    config: &QuantConfig,
) -> Result<(Model, Vec<LayerReport>)> {
    fold_batchnorms(&mut model)?;
    let ranges = calibrate_ranges(&mut model, calib, config)?;
    convert_with_ranges(model, &ranges, config)
}

/// The input range of every layer of [`quantized_layers`] (entry `i` for layer `i`, `None`
/// elsewhere), calibrated on `calib` by `config.calibration`. BatchNorm layers should be
/// folded first ([`fold_batchnorms`]), as [`quantize_model`] does.
pub fn calibrate_ranges(
    model: &mut Model,
    calib: &Tensor,
    config: &QuantConfig,
) -> Result<Vec<Option<(f32, f32)>>> {
    const OP: &str = "calibrate_ranges";
    let act = QuantType::new(config.activation_bits.min(7), false)?;
    if calib.dims().is_empty() || calib.dims()[0] == 0 {
        return Err(QuantError::InvalidArgument {
            op: OP,
            reason: "the calibration set is empty".into(),
        });
    }
    let n = model.layers.len();
    let candidates = quantized_layers(model);
    // Calibration: extremes, then (histogram methods) a second pass.
    let mut minmax = vec![MinMax::default(); n];
    observe(model, calib, config.batch, &candidates, &mut |i, x| {
        minmax[i].observe(x)
    })?;
    let mut hists: Vec<Option<(Histogram, bool)>> = vec![None; n];
    if config.calibration.needs_histogram() {
        for &i in &candidates {
            let (lo, hi, abs) = histogram_range(config.calibration, &minmax[i]);
            hists[i] = Some((Histogram::new(lo, hi), abs));
        }
        observe(model, calib, config.batch, &candidates, &mut |i, x| {
            if let Some((h, abs)) = hists[i].as_mut() {
                if *abs {
                    h.observe(&x.iter().map(|v| v.abs()).collect::<Vec<_>>());
                } else {
                    h.observe(x);
                }
            }
        })?;
    }
    let symmetry = config.activation_symmetry();
    let mut ranges = vec![None; n];
    for &i in &candidates {
        let hist = hists[i].as_ref().map(|h| &h.0);
        ranges[i] = Some(choose_range(
            config.calibration,
            &minmax[i],
            hist,
            act,
            symmetry,
        ));
    }
    Ok(ranges)
}

/// Replaces each layer of [`quantized_layers`] (with the ReLU after it) by its integer twin,
/// its input quantized over `ranges[i]` (from [`calibrate_ranges`], or the moving averages of
/// quantization-aware training), its weights by `config`. BatchNorm must be folded already.
pub fn convert_with_ranges(
    model: Model,
    ranges: &[Option<(f32, f32)>],
    config: &QuantConfig,
) -> Result<(Model, Vec<LayerReport>)> {
    let bits = vec![None; model.layers.len()];
    convert_with_layer_bits(model, ranges, config, &bits)
}

/// [`convert_with_ranges`] with the weight bit width of layer `i` set to `weight_bits[i]`
/// where it is `Some` (mixed precision, [`crate::mixed`]); `config.weight_bits` elsewhere.
pub fn convert_with_layer_bits(
    mut model: Model,
    ranges: &[Option<(f32, f32)>],
    config: &QuantConfig,
    weight_bits: &[Option<u32>],
) -> Result<(Model, Vec<LayerReport>)> {
    const OP: &str = "convert_with_ranges";
    let act = QuantType::new(config.activation_bits.min(7), false)?;
    QuantType::new(config.weight_bits, true)?;
    let layers = &model.layers;
    let n = layers.len();
    for (what, got) in [("ranges", ranges.len()), ("weight_bits", weight_bits.len())] {
        if got != n {
            return Err(QuantError::LengthMismatch {
                op: OP,
                what,
                got,
                expected: n,
            });
        }
    }
    for &b in weight_bits.iter().flatten() {
        QuantType::new(b, true)?;
    }
    // Quantized layers and where each one's output goes.
    let candidates = quantized_layers(&model);
    let next_quant = |i: usize| -> Option<usize> {
        let mut j = i + 1 + usize::from(is_relu(layers.get(i + 1).map(|l| &**l)));
        while j < n && is_passthrough(&*layers[j]) {
            j += 1;
        }
        (j < n && is_candidate(&*layers[j])).then_some(j)
    };
    let targets: Vec<Option<usize>> = candidates.iter().map(|&i| next_quant(i)).collect();
    let symmetry = config.activation_symmetry();
    let mut input_params = vec![None; n];
    for &i in &candidates {
        let (lo, hi) = ranges[i].ok_or_else(|| QuantError::InvalidArgument {
            op: OP,
            reason: format!("layer {i} has no input range"),
        })?;
        input_params[i] = Some(QuantParams::from_range(act, symmetry, lo, hi)?);
    }

    // Rebuild the layer list.
    let mut reports = Vec::new();
    let mut out: Vec<Box<dyn Layer>> = Vec::with_capacity(n + 1);
    let mut in_codes = false;
    let mut old: Vec<Option<Box<dyn Layer>>> = model.layers.drain(..).map(Some).collect();
    let mut i = 0;
    while i < n {
        let Some(ci) = candidates.iter().position(|&c| c == i) else {
            if let Some(l) = old[i].take() {
                out.push(l);
            }
            i += 1;
            continue;
        };
        let input = input_params[i]
            .clone()
            .ok_or_else(|| QuantError::InvalidArgument {
                op: OP,
                reason: format!("layer {i} was not calibrated"),
            })?;
        if !in_codes {
            out.push(Box::new(Quantize::new(input.clone())?));
        }
        let relu = is_relu(old.get(i + 1).and_then(|l| l.as_deref()));
        let after = i + 1 + usize::from(relu);
        let is_conv = old[i].as_deref().is_some_and(|l| l.as_any().is::<Conv2d>());
        let pool = is_conv && is_fusable_pool(old.get(after).and_then(|l| l.as_deref()));
        let output = match targets[ci].and_then(|j| input_params[j].clone()) {
            Some(p) => QuantOutput::Codes(p),
            None => QuantOutput::Float,
        };
        let float_output = output == QuantOutput::Float;
        let layer = old[i].take().ok_or_else(|| QuantError::InvalidArgument {
            op: OP,
            reason: format!("layer {i} taken twice"),
        })?;
        let float_bytes = 4 * layer.param_count();
        let scheme = QuantConfig {
            weight_bits: weight_bits[i].unwrap_or(config.weight_bits),
            ..*config
        }
        .weights();
        let q: Box<dyn Layer> = if let Some(l) = layer.as_any().downcast_ref::<Linear>() {
            Box::new(QuantLinear::from_linear(
                l,
                scheme,
                input.clone(),
                output,
                relu,
            )?)
        } else if let Some(c) = layer.as_any().downcast_ref::<Conv2d>() {
            let window = if pool { 2 } else { 1 };
            Box::new(QuantConv2d::from_conv2d(
                c,
                scheme,
                input.clone(),
                output,
                relu,
                window,
            )?)
        } else {
            unreachable!("candidates are linear or conv2d layers")
        };
        reports.push(LayerReport {
            index: i,
            kind: q.kind(),
            weight_bits: scheme.bits(),
            pow2: scheme.pow2(),
            input_range: ranges[i].unwrap_or_default(),
            input_scale: input.scales()[0],
            input_zero_point: input.zero_points()[0],
            relu_fused: relu,
            pool_fused: pool,
            float_output,
            stored_bytes: q.stored_bytes(),
            float_bytes,
        });
        out.push(q);
        in_codes = !float_output;
        i = after + usize::from(pool);
    }
    model.layers = out;
    Ok((model, reports))
}

/// Runs the float model layer by layer over `calib` in batches, calling `f(i, x)` with the
/// input `x` of every layer `i` in `points`.
fn observe(
    model: &mut Model,
    calib: &Tensor,
    batch: usize,
    points: &[usize],
    f: &mut dyn FnMut(usize, &[f32]),
) -> Result<()> {
    let s = calib.dims()[0];
    let per = calib.numel() / s;
    let batch = batch.max(1);
    for start in (0..s).step_by(batch) {
        let end = (start + batch).min(s);
        let mut dims = calib.dims().to_vec();
        dims[0] = end - start;
        let mut x = Tensor::new(&dims, calib.data()[start * per..end * per].to_vec())?;
        for (i, layer) in model.layers.iter_mut().enumerate() {
            if points.contains(&i) {
                f(i, x.data());
            }
            x = layer.forward(&x, Mode::Eval)?;
        }
    }
    Ok(())
}
