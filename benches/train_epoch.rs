//! One lenet5 training epoch through the real Trainer (Adam, batch 128, the reference recipe),
//! over the full Fashion-MNIST training set when the Debian package is installed, else the
//! committed 10,000-image slice (the benchmark id says which).
//!
//! `cargo bench --bench train_epoch` (about 3 minutes: criterion's minimum of 10 samples).
//! The PyTorch peer is `scripts/peer_pytorch_lenet5.py`; run both one after the other.
//! cnn-teacher (an epoch costs minutes, too long for criterion's ten samples) and the
//! whole-process comparison are `scripts/train_side_by_side.sh`, which runs `slimnet train
//! --epochs 1` and the PyTorch peer one after the other.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nn::trainer::Trainer;

fn lenet5_epoch(c: &mut Criterion) {
    let (source, train, _test) = nn::data::source::load(None).expect("Fashion-MNIST data");
    eprintln!("data: {source}; {} threads", rayon::current_num_threads());
    let mut config = nn::recipes::reference_config("lenet5").expect("recipe");
    config.epochs = 1;
    config.eval_every_epoch = false;
    let mut group = c.benchmark_group("train_epoch");
    group.sample_size(10);
    group.throughput(Throughput::Elements(train.len() as u64));
    let id = format!("lenet5.adam.b{}.{}images", config.batch_size, train.len());
    let mut rng = tensor_core::rng::Rng::seed_from_u64(1);
    let mut model = nn::zoo::build("lenet5", &mut rng).expect("zoo");
    group.bench_function(id, |b| {
        b.iter(|| {
            let mut trainer = Trainer::new(config.clone());
            trainer
                .fit(&mut model, &train, None, &mut |_| {})
                .expect("training")
        })
    });
    group.finish();
}

criterion_group!(benches, lenet5_epoch);
criterion_main!(benches);
