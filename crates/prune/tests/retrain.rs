//! Retraining with MaskHook keeps pruned weights at exactly zero while the kept ones move,
//! with momentum and weight decay on (the cases where masking only the gradient would fail).

use nn::trainer::Trainer;
use nn::{Dataset, TrainConfig};
use prune::{MaskHook, ModelMask};
use tensor_core::Tensor;
use tensor_core::rng::Rng;

fn weights(model: &nn::Model) -> Vec<Vec<f32>> {
    prune::prunable_layers(model)
        .into_iter()
        .map(|path| {
            model
                .layer(&path)
                .unwrap()
                .params()
                .into_iter()
                .find(|p| p.name == "weight")
                .unwrap()
                .value
                .data()
                .to_vec()
        })
        .collect()
}

#[test]
fn mask_hook_keeps_pruned_weights_at_zero() {
    let seed = 11;
    let mut rng = Rng::seed_from_u64(seed);
    let mut model = nn::zoo::build("lenet300", &mut rng).unwrap();
    let n = 64;
    let images: Vec<f32> = (0..n * 784).map(|_| rng.uniform()).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let data = Dataset::new(Tensor::new(&[n, 1, 28, 28], images).unwrap(), labels, 10).unwrap();

    let mask = ModelMask::by_density(&model, &[0.1, 0.2, 0.5]).unwrap();
    mask.apply(&mut model).unwrap();
    let before = weights(&model);

    let mut config = TrainConfig {
        epochs: 2,
        batch_size: 16,
        seed,
        ..TrainConfig::default()
    };
    if let nn::optim::OptimizerConfig::Sgd { weight_decay, .. } = &mut config.optimizer {
        *weight_decay = 1e-3;
    }
    Trainer::new(config)
        .with_hook(Box::new(MaskHook::new(mask.clone())))
        .fit(&mut model, &data, None, &mut |_| {})
        .unwrap();

    let after = weights(&model);
    let masks: Vec<_> = mask.layers.values().collect();
    for (j, ((b, a), m)) in before.iter().zip(&after).zip(masks).enumerate() {
        let mut moved = 0;
        for i in 0..a.len() {
            if m.keeps(i) {
                moved += usize::from(a[i] != b[i]);
            } else {
                assert_eq!(
                    a[i], 0.0,
                    "seed {seed}: layer {j} weight {i} pruned but {}",
                    a[i]
                );
            }
        }
        assert!(
            moved > 0,
            "seed {seed}: layer {j}: no kept weight was trained"
        );
    }
}
