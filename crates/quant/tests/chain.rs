//! Chains of quantized layers (u8 codes handed from layer to layer) against the same layers
//! run one by one, bit for bit, on every kernel path, batch size and thread count.

use nn::layers::{Conv2d, Dropout, Flatten, Linear, ReLU};
use nn::{Layer, Mode, Model};
use quant::layers::chain::forward_chain_with;
use quant::layers::{QuantConv2d, QuantLinear, QuantOutput, Quantize};
use quant::{QuantParams, QuantType, Symmetry, WeightScheme};
use tensor_core::Tensor;
use tensor_core::conv::{Conv2dParams, Padding};
use tensor_core::dispatch::{Int8Path, KernelPath};
use tensor_core::rng::Rng;

fn act(lo: f32, hi: f32) -> QuantParams {
    QuantParams::from_range(QuantType::U7, Symmetry::Asymmetric, lo, hi).unwrap()
}

/// A quantized convolution with random float weights.
#[allow(clippy::too_many_arguments)]
fn conv(
    rng: &mut Rng,
    p: Conv2dParams,
    bits: u32,
    input: &QuantParams,
    output: Option<&QuantParams>,
    relu: bool,
    pool: usize,
) -> Box<dyn Layer> {
    let c = Conv2d::new(p, rng).unwrap();
    let out = output.map_or(QuantOutput::Float, |o| QuantOutput::Codes(o.clone()));
    let w = WeightScheme::uniform(bits, true);
    Box::new(QuantConv2d::from_conv2d(&c, w, input.clone(), out, relu, pool).unwrap())
}

fn linear(
    rng: &mut Rng,
    (i, o): (usize, usize),
    input: &QuantParams,
    output: Option<&QuantParams>,
    relu: bool,
) -> Box<dyn Layer> {
    let l = Linear::new(i, o, rng).unwrap();
    let out = output.map_or(QuantOutput::Float, |o| QuantOutput::Codes(o.clone()));
    let w = WeightScheme::uniform(8, true);
    Box::new(QuantLinear::from_linear(&l, w, input.clone(), out, relu).unwrap())
}

/// quantize, three convolutions (in-place and copied patches, 2x2 pooling, channels not a
/// multiple of 16, asymmetric padding, stride 2, 8- and 7-bit weights), dropout, flatten, two
/// linear layers: input `[N, 2, 26, 22]`.
fn cnn(rng: &mut Rng) -> Vec<Box<dyn Layer>> {
    let a: Vec<QuantParams> = [(-1.0, 1.0), (0.0, 2.0), (0.0, 1.5), (-0.7, 0.9), (0.0, 3.0)]
        .iter()
        .map(|&(lo, hi)| act(lo, hi))
        .collect();
    let p1 = Conv2dParams::new(2, 8, (3, 3)).with_padding(Padding::symmetric(1));
    let p2 = Conv2dParams::new(8, 20, (3, 3)).with_padding(Padding {
        top: 1,
        bottom: 0,
        left: 2,
        right: 1,
    });
    let p3 = Conv2dParams {
        stride: (2, 1),
        ..Conv2dParams::new(20, 17, (2, 3))
    };
    // 26x22 -> 26x22 -> 25x23, pooled 12x11 -> 6x9.
    vec![
        Box::new(Quantize::new(a[0].clone()).unwrap()),
        conv(rng, p1, 8, &a[0], Some(&a[1]), true, 1),
        conv(rng, p2, 7, &a[1], Some(&a[2]), true, 2),
        conv(rng, p3, 8, &a[2], Some(&a[3]), false, 1),
        Box::new(Dropout::new(0.5, 7).unwrap()),
        Box::new(Flatten::new()),
        linear(rng, (17 * 6 * 9, 33), &a[3], Some(&a[4]), true),
        Box::new(Dropout::new(0.5, 7).unwrap()),
        linear(rng, (33, 10), &a[4], None, false),
    ]
}

fn images(rng: &mut Rng, n: usize) -> Tensor {
    let dims = [n, 2, 26, 22];
    let len = dims.iter().product();
    // Past the input range on both sides: saturation at both ends.
    Tensor::new(&dims, (0..len).map(|_| 2.4 * rng.uniform() - 1.2).collect()).unwrap()
}

/// The layers one by one (quantized ones on `path`).
fn one_by_one(path: Int8Path, layers: &mut [Box<dyn Layer>], x: &Tensor) -> Tensor {
    let mut y = x.clone();
    for l in layers.iter_mut() {
        let a = l.as_any();
        y = if let Some(c) = a.downcast_ref::<QuantConv2d>() {
            c.forward_with(path, &y).unwrap()
        } else if let Some(q) = a.downcast_ref::<QuantLinear>() {
            q.forward_with(path, &y).unwrap()
        } else {
            l.forward(&y, Mode::Eval).unwrap()
        };
    }
    y
}

fn chained(path: Int8Path, layers: &[Box<dyn Layer>], x: &Tensor) -> (Tensor, usize) {
    let refs: Vec<&dyn Layer> = layers.iter().map(|l| l.as_ref()).collect();
    forward_chain_with(path, &refs, x).unwrap().unwrap()
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

fn paths() -> Vec<Int8Path> {
    let mut out = Vec::new();
    for path in Int8Path::ALL {
        if Int8Path::supported().contains(path) {
            out.push(*path);
        } else {
            eprintln!("skipped: {} (CPU lacks {})", path.name(), path.needs());
        }
    }
    out
}

#[test]
fn a_chain_equals_its_layers_one_by_one_on_every_path_batch_and_thread_count() {
    let mut rng = Rng::seed_from_u64(91);
    let mut layers = cnn(&mut rng);
    // Small enough that one image's second convolution is split (the zoo-sized default
    // splits none of these layers; the output never depends on it).
    quant::layers::set_split_min_macs(1 << 18);
    for path in paths() {
        // Batch 1 on 2 threads splits the second convolution (659K multiply-adds) into bands;
        // batch 6 on 2 threads spreads images over tasks.
        for (threads, n) in [(1, 1), (1, 3), (2, 1), (2, 3), (2, 6)] {
            let x = images(&mut rng, n);
            let (want, (got, used)) = pool(threads).install(|| {
                (
                    one_by_one(path, &mut layers, &x),
                    chained(path, &layers, &x),
                )
            });
            assert_eq!(used, layers.len(), "the chain spans every layer");
            assert_eq!(got.dims(), want.dims());
            assert_eq!(
                got.data(),
                want.data(),
                "{} batch {n} threads {threads}",
                path.name()
            );
        }
        eprintln!("chain: path {} equals the layers one by one", path.name());
    }
}

#[test]
fn chains_ending_at_a_convolution_or_starting_without_quantize_equal_their_layers() {
    let mut rng = Rng::seed_from_u64(92);
    let layers = cnn(&mut rng);
    let portable = Int8Path::Portable;
    // quantize + two convolutions: the last one's codes come out as f32 planes.
    let mut head: Vec<Box<dyn Layer>> = layers.into_iter().take(3).collect();
    let x = images(&mut rng, 2);
    let (got, used) = chained(portable, &head, &x);
    assert_eq!(used, 3);
    assert_eq!(got.data(), one_by_one(portable, &mut head, &x).data());
    // From the first convolution's f32 codes, without a quantize layer.
    let codes = head[0].forward(&x, Mode::Eval).unwrap();
    let (got, used) = chained(portable, &head[1..], &codes);
    assert_eq!(used, 2);
    assert_eq!(
        got.data(),
        one_by_one(portable, &mut head[1..], &codes).data()
    );
    // A code that is not one of the input type's is refused as the layer refuses it.
    let mut bad = codes.data().to_vec();
    bad[5] = 200.0;
    let bad = Tensor::new(codes.dims(), bad).unwrap();
    let refs: Vec<&dyn Layer> = head[1..].iter().map(|l| l.as_ref()).collect();
    let err = forward_chain_with(portable, &refs, &bad).unwrap_err();
    assert!(err.to_string().contains("200"), "{err}");
}

#[test]
fn a_chain_stops_where_codes_do_not_match_and_at_layers_it_does_not_run() {
    let mut rng = Rng::seed_from_u64(93);
    let (a, b, c) = (act(-1.0, 1.0), act(0.0, 2.0), act(0.0, 2.5));
    let p = Conv2dParams::new(1, 4, (3, 3));
    // The second convolution expects other codes than the first emits: a chain of two.
    let layers: Vec<Box<dyn Layer>> = vec![
        Box::new(Quantize::new(a.clone()).unwrap()),
        conv(&mut rng, p, 8, &a, Some(&b), true, 1),
        conv(
            &mut rng,
            Conv2dParams::new(4, 4, (3, 3)),
            8,
            &c,
            None,
            false,
            1,
        ),
    ];
    let x = Tensor::new(&[1, 1, 9, 9], vec![0.25; 81]).unwrap();
    assert_eq!(chained(Int8Path::Portable, &layers, &x).1, 2);
    // A ReLU layer (not fused by conversion) ends the chain; a lone layer is no chain.
    let layers: Vec<Box<dyn Layer>> = vec![
        conv(&mut rng, p, 8, &a, Some(&b), true, 1),
        Box::new(ReLU::new()),
        conv(
            &mut rng,
            Conv2dParams::new(4, 4, (3, 3)),
            8,
            &b,
            None,
            false,
            1,
        ),
    ];
    let refs: Vec<&dyn Layer> = layers.iter().map(|l| l.as_ref()).collect();
    let codes = Tensor::new(&[1, 1, 9, 9], vec![3.0; 81]).unwrap();
    assert!(
        forward_chain_with(Int8Path::Portable, &refs, &codes)
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_model_at_inference_runs_its_chains_and_gives_the_layers_results() {
    let mut rng = Rng::seed_from_u64(94);
    let mut model = Model::new("chain", &[2, 26, 22], cnn(&mut rng));
    // An MLP chain: quantize, flatten, two linear layers (lenet300's shape).
    let (a, b) = (act(-1.0, 1.0), act(0.0, 4.0));
    let mut mlp = Model::new(
        "mlp",
        &[2, 26, 22],
        vec![
            Box::new(Quantize::new(a.clone()).unwrap()),
            Box::new(Flatten::new()),
            linear(&mut rng, (2 * 26 * 22, 40), &a, Some(&b), true),
            linear(&mut rng, (40, 10), &b, None, false),
        ],
    );
    let path = Int8Path::selected();
    for n in [1, 5] {
        let x = images(&mut rng, n);
        for m in [&mut model, &mut mlp] {
            let want = one_by_one(path, &mut m.layers, &x);
            let got = m.forward(&x, Mode::Eval).unwrap();
            assert_eq!(got.dims(), want.dims());
            assert_eq!(got.data(), want.data(), "{} batch {n}", m.name);
        }
    }
}

/// Unpooled convolutions read in place (one input channel: the zoo teacher's conv1 shape;
/// then 16 channels) hand their codes to the next convolution straight from the requantizing
/// GEMM: equal to the layers one by one on every path, batch and thread count.
#[test]
fn in_place_unpooled_convolutions_feeding_convolutions_equal_their_layers() {
    let mut rng = Rng::seed_from_u64(93);
    let a: Vec<QuantParams> = [(-1.0, 1.0), (0.0, 2.0), (-0.5, 1.5)]
        .iter()
        .map(|&(lo, hi)| act(lo, hi))
        .collect();
    let same = Padding::symmetric(1);
    let mut layers: Vec<Box<dyn Layer>> = vec![
        Box::new(Quantize::new(a[0].clone()).unwrap()),
        conv(
            &mut rng,
            Conv2dParams::new(1, 16, (3, 3)).with_padding(same),
            8,
            &a[0],
            Some(&a[1]),
            true,
            1,
        ),
        conv(
            &mut rng,
            Conv2dParams::new(16, 8, (3, 3)).with_padding(same),
            8,
            &a[1],
            Some(&a[2]),
            false,
            1,
        ),
        conv(
            &mut rng,
            Conv2dParams::new(8, 4, (3, 3)),
            8,
            &a[2],
            None,
            true,
            2,
        ),
    ];
    for path in paths() {
        for (threads, n) in [(1, 1), (2, 1), (2, 5)] {
            let len = n * 13 * 11;
            let x = Tensor::new(
                &[n, 1, 13, 11],
                (0..len).map(|_| 2.4 * rng.uniform() - 1.2).collect(),
            )
            .unwrap();
            let (want, (got, used)) = pool(threads).install(|| {
                (
                    one_by_one(path, &mut layers, &x),
                    chained(path, &layers, &x),
                )
            });
            assert_eq!(used, layers.len(), "the chain spans every layer");
            assert_eq!(
                got.data(),
                want.data(),
                "{} batch {n} threads {threads}",
                path.name()
            );
        }
    }
}
