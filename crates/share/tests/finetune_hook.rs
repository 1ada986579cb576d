//! Centroid fine-tuning through the Trainer: every member equals its centroid after every
//! step (SGD with momentum and Adam alike), pruned zeros stay zero, training improves the
//! shared model, and the shared fc layers then run from their codebook with the same outputs.

use nn::optim::OptimizerConfig;
use nn::trainer::Trainer;
use nn::{Dataset, Mode, TrainConfig};
use share::{KMeansParams, ShareHook, share_model, to_shared_layers};
use tensor_core::Tensor;
use tensor_core::rng::Rng;

fn data(n: usize, seed: u64) -> Dataset {
    let mut rng = Rng::seed_from_u64(seed);
    let mut images = Vec::with_capacity(n * 784);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let c = rng.below(10);
        for p in 0..784 {
            let on = p % 10 == c;
            images.push((if on { 0.8 } else { 0.1 } + 0.2 * rng.uniform()).min(1.0));
        }
        labels.push(c as u8);
    }
    Dataset::new(Tensor::new(&[n, 1, 28, 28], images).unwrap(), labels, 10).unwrap()
}

#[test]
fn members_stay_equal_to_their_centroids_and_the_model_converts() {
    let train = data(256, 1);
    for opt in [OptimizerConfig::sgd(0.01, 0.9), OptimizerConfig::adam(1e-3)] {
        let mut rng = Rng::seed_from_u64(2);
        let mut model = nn::zoo::build("lenet300", &mut rng).unwrap();
        // Prune a third of fc1 so that code 0 is in use.
        for (path, p) in model.named_params_mut() {
            if path.to_string() == "1" && p.name == "weight" {
                p.value
                    .data_mut()
                    .iter_mut()
                    .step_by(3)
                    .for_each(|v| *v = 0.0);
            }
        }
        let share = share_model(&mut model, 3, 8, &KMeansParams::default()).unwrap();
        let before = nn::metrics::evaluate(&mut model, &train, 128).unwrap().loss;
        let cfg = TrainConfig {
            epochs: 2,
            batch_size: 32,
            optimizer: opt.clone(),
            ..TrainConfig::default()
        };
        let mut trainer = Trainer::new(cfg).with_hook(Box::new(ShareHook::new(share)));
        trainer.fit(&mut model, &train, None, &mut |_| {}).unwrap();
        let after = nn::metrics::evaluate(&mut model, &train, 128).unwrap().loss;
        assert!(after < before, "{opt:?}: loss {before} -> {after}");
        let hook = trainer.hook::<ShareHook>().unwrap();
        for (path, s) in &hook.share.layers {
            let layer = model.layer(path).unwrap();
            let params = layer.params();
            let w = params.iter().find(|p| p.name == "weight").unwrap().value;
            for (i, (&c, &v)) in s.codes.iter().zip(w.data()).enumerate() {
                assert_eq!(
                    v.to_bits(),
                    s.codebook.centroids[c as usize].to_bits(),
                    "{opt:?} layer {path} weight {i}"
                );
                if c == 0 {
                    assert_eq!(v, 0.0);
                }
            }
        }
        let x = train.batch(&[0, 1, 2]).unwrap().0;
        let y = model.forward(&x, Mode::Eval).unwrap();
        let share = hook.share.clone();
        assert_eq!(to_shared_layers(&mut model, &share).unwrap(), 3);
        let ys = model.forward(&x, Mode::Eval).unwrap();
        tensor_core::testing::assert_close(ys.data(), y.data(), 1e-4, 1e-5);
    }
}
