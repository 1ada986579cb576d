//! The int8 cnn-teacher (or any float model) run as chains of quantized layers (u8 codes
//! handed from layer to layer, `quant::layers::chain`) against the same layers one by one
//! (an f32 tensor of codes between layers, as before chains), in one binary: equal logits
//! over the 10,000 test images, and the median time per forward pass at batch 1 and 256 on
//! 1 and 2 threads, the two alternated.
//!
//!     cargo run --release -p quant --example chain_timing -- MODEL [WEIGHT_BITS] [SECONDS]
//!
//! Quantizes MODEL per channel with WEIGHT_BITS-bit weights (default 7), min-max calibration
//! on the first 512 training images (`slimnet quantize` draws a seeded random 512, so its
//! accuracy can differ by a few hundredths).

use std::path::Path;
use std::time::Instant;

use nn::{Layer, Mode, Model};
use quant::{QuantConfig, quantize_model};
use tensor_core::Tensor;

fn one_by_one(layers: &mut [Box<dyn Layer>], x: &Tensor) -> Tensor {
    let mut y = x.clone();
    for l in layers.iter_mut() {
        y = l.forward(&y, Mode::Eval).unwrap();
    }
    y
}

/// Median microseconds of `f` over runs filling about `seconds`.
fn median_us(seconds: f64, mut f: impl FnMut()) -> f64 {
    f();
    let mut times = Vec::new();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds || times.len() < 5 {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let model_path = args
        .get(1)
        .expect("usage: chain_timing MODEL [WEIGHT_BITS] [SECONDS]");
    let bits: u32 = args.get(2).map_or(7, |s| s.parse().unwrap());
    let seconds: f64 = args.get(3).map_or(1.5, |s| s.parse().unwrap());
    let float = nn::io::native::load(model_path).unwrap();
    let (train, test) =
        nn::data::load_fashion_mnist(Path::new("/usr/share/datasets/fashion-mnist")).unwrap();
    let calib = train.images.slice_outer(0, 512).unwrap();
    let config = QuantConfig {
        weight_bits: bits,
        ..QuantConfig::default()
    };
    let (mut q, _) = quantize_model(float, &calib, &config).unwrap();
    accuracy(&mut q, &test);
    let shape = &q.input_shape.clone();
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        for batch in [1, 256] {
            let x = test.images.slice_outer(0, batch).unwrap();
            assert_eq!(&x.dims()[1..], shape.as_slice());
            let (mut chained, mut layers) = (Vec::new(), Vec::new());
            pool.install(|| {
                for _ in 0..2 {
                    chained.push(median_us(seconds, || {
                        q.forward(&x, Mode::Eval).unwrap();
                    }));
                    layers.push(median_us(seconds, || {
                        one_by_one(&mut q.layers, &x);
                    }));
                }
            });
            let (c, l) = (
                chained.iter().copied().fold(f64::INFINITY, f64::min),
                layers.iter().copied().fold(f64::INFINITY, f64::min),
            );
            println!(
                "| {threads} | {batch} | {l:.0} | {:.0} | {c:.0} | {:.0} | {:.2}x |",
                batch as f64 * 1e6 / l,
                batch as f64 * 1e6 / c,
                l / c
            );
        }
    }
}

/// Accuracy of the chained model and of its layers one by one, and whether every logit is
/// equal.
fn accuracy(q: &mut Model, test: &nn::data::Dataset) {
    let n = test.labels.len();
    let (mut right_c, mut right_l, mut equal) = (0, 0, true);
    for start in (0..n).step_by(256) {
        let end = (start + 256).min(n);
        let x = test.images.slice_outer(start, end).unwrap();
        let c = q.forward(&x, Mode::Eval).unwrap();
        let l = one_by_one(&mut q.layers, &x);
        equal &= c.data() == l.data();
        let classes = c.dims()[1];
        for (i, label) in test.labels[start..end].iter().enumerate() {
            let arg = |t: &Tensor| {
                let row = &t.data()[i * classes..(i + 1) * classes];
                (0..classes).fold(0, |b, j| if row[j] > row[b] { j } else { b })
            };
            right_c += usize::from(arg(&c) == usize::from(*label));
            right_l += usize::from(arg(&l) == usize::from(*label));
        }
    }
    println!(
        "accuracy over {n}: chained {:.2}%, one by one {:.2}%, logits equal: {equal}",
        100.0 * right_c as f64 / n as f64,
        100.0 * right_l as f64 / n as f64
    );
    println!("| threads | batch | one by one us | img/s | chained us | img/s | speed-up |");
    println!("|---|---|---|---|---|---|---|");
}
