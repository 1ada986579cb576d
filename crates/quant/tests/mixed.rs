//! Mixed precision on a small model: the sensitivity scan, and choices that meet a size or
//! an accuracy target (measured, not only predicted).

use nn::layers::{Linear, ReLU};
use nn::{Dataset, Layer, Mode, Model};
use quant::layers::QuantLinear;
use quant::mixed::{MixedTarget, choose_bits, packed_layer_bytes, sensitivity_scan};
use quant::{QuantConfig, calibrate_ranges, convert_with_layer_bits};
use tensor_core::Tensor;
use tensor_core::rng::Rng;

/// A 24 -> 48 -> 32 -> 6 MLP and 600 images labelled by its own predictions (so the float
/// model is 100% accurate and every point lost is the quantization's).
fn setup() -> (Model, Tensor, Dataset) {
    let mut rng = Rng::seed_from_u64(7);
    let layers: Vec<Box<dyn Layer>> = vec![
        Box::new(Linear::new(24, 48, &mut rng).unwrap()),
        Box::new(ReLU::new()),
        Box::new(Linear::new(48, 32, &mut rng).unwrap()),
        Box::new(ReLU::new()),
        Box::new(Linear::new(32, 6, &mut rng).unwrap()),
    ];
    let mut model = Model::new("mlp", &[24], layers);
    let n = 600;
    let x = Tensor::new(&[n, 24], (0..n * 24).map(|_| rng.normal()).collect()).unwrap();
    let logits = model.forward(&x, Mode::Eval).unwrap();
    let labels = logits
        .data()
        .chunks_exact(6)
        .map(|r| (0..6).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap_or(0) as u8)
        .collect();
    let calib = Tensor::new(&[64, 24], x.data()[..64 * 24].to_vec()).unwrap();
    // A dataset holds [N, C, H, W] images; evaluation flattens them to the model's [24].
    let images = Tensor::new(&[n, 1, 4, 6], x.data().to_vec()).unwrap();
    (model, calib, Dataset::new(images, labels, 6).unwrap())
}

fn layer_bits(model: &Model) -> Vec<u32> {
    model
        .layers
        .iter()
        .filter_map(|l| l.as_any().downcast_ref::<QuantLinear>())
        .map(|q| q.core().weight_bits())
        .collect()
}

#[test]
fn the_scan_measures_every_layer_at_every_narrower_width() {
    let (mut model, calib, val) = setup();
    let config = QuantConfig::default();
    let ranges = calibrate_ranges(&mut model, &calib, &config).unwrap();
    let mut calls = 0;
    let (base, sens) = sensitivity_scan(
        &model,
        &ranges,
        &config,
        &[2, 4, 6, 8],
        &val,
        &mut |_, _| calls += 1,
    )
    .unwrap();
    assert!(base > 0.9, "8-bit accuracy {base}");
    assert_eq!(calls, 1 + 3 * 3);
    assert_eq!(
        sens.iter()
            .map(|s| (s.index, s.weights))
            .collect::<Vec<_>>(),
        [(0, 24 * 48), (2, 48 * 32), (4, 32 * 6)]
    );
    for s in &sens {
        let widths: Vec<u32> = s.loss.iter().map(|l| l.0).collect();
        assert_eq!(widths, [8, 6, 4, 2]);
        // 2-bit weights lose clearly more than 6-bit ones somewhere.
        assert!(s.loss_at(2) >= s.loss_at(6), "{s:?}");
    }
    assert!(sens.iter().any(|s| s.loss_at(2) > 1.0), "{sens:?}");
}

#[test]
fn the_choice_meets_a_size_target_and_a_loss_target() {
    let (mut model, calib, val) = setup();
    let config = QuantConfig::default();
    let ranges = calibrate_ranges(&mut model, &calib, &config).unwrap();
    let widths: Vec<u32> = (2..=8).collect();
    let (base, sens) =
        sensitivity_scan(&model, &ranges, &config, &widths, &val, &mut |_, _| {}).unwrap();
    let all_at = |b: u32| -> usize {
        sens.iter()
            .map(|s| packed_layer_bytes(s.weights, s.channels, b))
            .sum()
    };
    let n = model.layers.len();

    // Size: halfway between 4 and 8 bits everywhere.
    let target = (all_at(4) + all_at(8)) / 2;
    let plan = choose_bits(
        &model,
        &ranges,
        &config,
        &sens,
        base,
        MixedTarget::Bytes(target),
        &val,
    )
    .unwrap();
    assert!(plan.packed_bytes <= target, "{plan:?}");
    assert!(plan.packed_bytes < plan.base_bytes);
    let mixed_bits: Vec<u32> = plan.bits.iter().map(|b| b.1).collect();
    assert!(mixed_bits.iter().any(|&b| b < 8), "{plan:?}");
    let copy = nn::io::native::ModelRecord::from_model(&model, Default::default())
        .unwrap()
        .into_model_with(&nn::LayerRegistry::nn())
        .unwrap();
    let (mut q, reports) =
        convert_with_layer_bits(copy, &ranges, &config, &plan.layer_bits(n)).unwrap();
    assert_eq!(layer_bits(&q), mixed_bits);
    assert_eq!(
        reports.iter().map(|r| r.weight_bits).collect::<Vec<_>>(),
        mixed_bits
    );
    // The plan's accuracy is the converted model's.
    let acc = nn::metrics::evaluate(&mut q, &val, 256).unwrap().accuracy;
    assert_eq!(acc, plan.accuracy);

    // Loss: at most half a point, measured.
    let plan = choose_bits(
        &model,
        &ranges,
        &config,
        &sens,
        base,
        MixedTarget::MaxLoss(0.5),
        &val,
    )
    .unwrap();
    assert!(plan.measured_loss() <= 0.5, "{plan:?}");
    assert!(plan.packed_bytes < plan.base_bytes, "{plan:?}");

    // A size below 2 bits everywhere cannot be met.
    let err = choose_bits(
        &model,
        &ranges,
        &config,
        &sens,
        base,
        MixedTarget::Bytes(all_at(2) - 1),
        &val,
    )
    .unwrap_err();
    assert!(err.to_string().contains("narrowest"), "{err}");
}
