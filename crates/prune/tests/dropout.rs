//! Han et al.'s dropout adjustment on cnn-teacher: the dropout after fc 3136-256 goes from
//! D_o = 0.5 to D_o sqrt(C_ir / C_io) as that layer loses connections, by mask or by filter
//! pruning, computed from the captured originals each time; prune_model applies it.

use nn::layers::Dropout;
use nn::{Dataset, LayerPath, Model, TrainConfig};
use prune::structured::prune_filters;
use prune::{Criterion, DropoutAdjustment, ModelMask, Schedule};
use tensor_core::Tensor;
use tensor_core::rng::Rng;

fn rate(model: &Model, path: &LayerPath) -> f32 {
    model
        .layer(path)
        .unwrap()
        .as_any()
        .downcast_ref::<Dropout>()
        .unwrap()
        .p()
}

#[test]
fn dropout_follows_the_square_root_of_the_kept_connections() {
    let mut model = nn::zoo::build("cnn-teacher", &mut Rng::seed_from_u64(2)).unwrap();
    let (fc1, drop) = (LayerPath::top(15), LayerPath::top(17));
    let adj = DropoutAdjustment::capture(&model).unwrap();
    assert_eq!(adj.entries.len(), 1);
    assert_eq!(
        (&adj.entries[0].layer, &adj.entries[0].dropout),
        (&fc1, &drop)
    );
    assert_eq!(adj.entries[0].original_connections, 3136 * 256);

    // Masking fc1 to a quarter of its weights halves the rate.
    let mut densities = vec![1.0; 6];
    densities[4] = 0.25;
    ModelMask::by_density(&model, &densities)
        .unwrap()
        .apply(&mut model)
        .unwrap();
    let set = adj.apply(&mut model).unwrap();
    assert_eq!(set, vec![(drop.clone(), rate(&model, &drop))]);
    assert!(
        (rate(&model, &drop) - 0.25).abs() < 1e-6,
        "{}",
        rate(&model, &drop)
    );

    // Twice in a row gives the same rate (from the originals, not compounded).
    adj.apply(&mut model).unwrap();
    assert!((rate(&model, &drop) - 0.25).abs() < 1e-6);

    // Filter pruning half of fc1's units removes half its connections physically.
    let mut model = nn::zoo::build("cnn-teacher", &mut Rng::seed_from_u64(2)).unwrap();
    prune_filters(&mut model, &[(fc1.clone(), 0.5)]).unwrap();
    adj.apply(&mut model).unwrap();
    let want = 0.5 * (0.5f32).sqrt();
    assert!((rate(&model, &drop) - want).abs() < 1e-6);
    // A captured path that no longer holds a dropout is an error, not a panic.
    let mut other = nn::zoo::build("lenet300", &mut Rng::seed_from_u64(1)).unwrap();
    assert!(adj.apply(&mut other).is_err());
}

#[test]
fn prune_model_lowers_dropout_before_retraining() {
    let mut rng = Rng::seed_from_u64(3);
    let mut model = nn::zoo::build("cnn-teacher", &mut rng).unwrap();
    let n = 8;
    let images = Tensor::new(
        &[n, 1, 28, 28],
        (0..n * 784).map(|_| rng.uniform()).collect(),
    )
    .unwrap();
    let data = Dataset::new(images, (0..n).map(|i| (i % 10) as u8).collect(), 10).unwrap();
    let config = TrainConfig {
        epochs: 1,
        batch_size: 8,
        ..TrainConfig::default()
    };
    prune::prune_model(
        &mut model,
        Criterion::LayerSparsity(0.75),
        Schedule::OneShot,
        &config,
        &data,
        1,
        &mut |_| {},
    )
    .unwrap();
    let r = rate(&model, &LayerPath::top(17));
    assert!((r - 0.25).abs() < 1e-3, "{r}");
}
