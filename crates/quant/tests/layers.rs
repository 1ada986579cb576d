//! Quantized layers against integer and fake-quant references, on every kernel path; record
//! round trips and corrupt records; post-training quantization of zoo models.

use nn::layers::{Conv2d, Linear};
use nn::{Layer, LayerRegistry, Mode, Payload};
use quant::layers::{QuantConv2d, QuantLinear, QuantOutput};
use quant::{QuantConfig, QuantParams, QuantType, Symmetry, WeightScheme, quantize_model};
use tensor_core::Tensor;
use tensor_core::conv::{Conv2dParams, Padding};
use tensor_core::dispatch::{Int8Path, KernelPath, report};
use tensor_core::rng::Rng;

fn registry() -> LayerRegistry {
    let mut r = LayerRegistry::nn();
    quant::register(&mut r).unwrap();
    r
}

fn act(lo: f32, hi: f32) -> QuantParams {
    QuantParams::from_range(QuantType::U7, Symmetry::Asymmetric, lo, hi).unwrap()
}

/// Random codes of `p`'s type as an f32 tensor.
fn codes(rng: &mut Rng, dims: &[usize], p: &QuantParams) -> Tensor {
    let n: usize = dims.iter().product();
    let q = p.qtype().qmax() as u64 + 1;
    Tensor::new(dims, (0..n).map(|_| (rng.next_u64() % q) as f32).collect()).unwrap()
}

fn check_paths(name: &str, run: &dyn Fn(Int8Path) -> Tensor) -> Tensor {
    eprintln!("{}", report());
    let want = run(Int8Path::Portable);
    for path in Int8Path::ALL {
        if Int8Path::supported().contains(path) {
            let got = run(*path);
            assert_eq!(
                got.data(),
                want.data(),
                "{name}: path {} vs portable",
                path.name()
            );
            eprintln!("{name}: path {} equals portable", path.name());
        } else {
            eprintln!("skipped: {} (CPU lacks {})", path.name(), path.needs());
        }
    }
    want
}

/// Output codes within one code of `fq`, the requantized f64 product of the dequantized
/// operands, and equal for nearly all of them.
fn assert_near_fake_quant(name: &str, got: &Tensor, fq: &[f64], out: &QuantParams, relu: bool) {
    let (s, z, t) = (out.scales()[0] as f64, out.zero_points()[0], out.qtype());
    let lo = if relu { z } else { t.qmin() };
    let mut equal = 0;
    for (i, (&g, &r)) in got.data().iter().zip(fq).enumerate() {
        let want = ((r / s).round_ties_even() as i32 + z).clamp(lo, t.qmax());
        assert!(
            (g as i32 - want).abs() <= 1,
            "{name}: element {i}: {g} vs {want}"
        );
        equal += usize::from(g as i32 == want);
    }
    assert!(
        equal * 100 >= got.numel() * 99,
        "{name}: {equal} of {} equal",
        got.numel()
    );
}

#[test]
fn quant_linear_equals_fake_quant_on_every_path() {
    let mut rng = Rng::seed_from_u64(21);
    let lin = Linear::new(37, 19, &mut rng).unwrap();
    let (input, output) = (act(-0.5, 2.0), act(0.0, 1.5));
    for relu in [false, true] {
        let q = QuantLinear::from_linear(
            &lin,
            WeightScheme::uniform(8, true),
            input.clone(),
            QuantOutput::Codes(output.clone()),
            relu,
        )
        .unwrap();
        let x = codes(&mut rng, &[5, 37], &input);
        let y = check_paths("quant_linear", &|p| q.forward_with(p, &x).unwrap());
        // Reference: f64 sums of dequantized inputs, weights and bias.
        let w = q.core().dequantized_weight();
        let b = q.core().dequantized_bias();
        let (s_in, z_in) = (input.scales()[0] as f64, input.zero_points()[0] as f64);
        let mut fq = vec![0f64; 5 * 19];
        for r in 0..5 {
            for j in 0..19 {
                let dot: f64 = (0..37)
                    .map(|k| (x.data()[r * 37 + k] as f64 - z_in) * s_in * w[j * 37 + k] as f64)
                    .sum();
                fq[r * 19 + j] = dot + b[j] as f64;
            }
        }
        assert_near_fake_quant("quant_linear", &y, &fq, &output, relu);
    }
}

#[test]
fn quant_conv2d_equals_fake_quant_on_every_path() {
    let mut rng = Rng::seed_from_u64(22);
    let p = Conv2dParams::new(3, 5, (3, 2)).with_padding(Padding {
        top: 1,
        bottom: 0,
        left: 2,
        right: 1,
    });
    let p = Conv2dParams {
        stride: (2, 1),
        ..p
    };
    let conv = Conv2d::new(p, &mut rng).unwrap();
    let (input, output) = (act(-1.0, 1.0), act(-0.2, 0.8));
    let q = QuantConv2d::from_conv2d(
        &conv,
        WeightScheme::uniform(8, true),
        input.clone(),
        QuantOutput::Codes(output.clone()),
        true,
        1,
    )
    .unwrap();
    let x = codes(&mut rng, &[3, 3, 7, 6], &input);
    let y = check_paths("quant_conv2d", &|path| q.forward_with(path, &x).unwrap());
    // Reference: the float convolution of the dequantized input and weights.
    let w = Tensor::new(&p.weight_dims(), q.core().dequantized_weight()).unwrap();
    let b = Tensor::new(&[5], q.core().dequantized_bias()).unwrap();
    let mut fconv = Conv2d::from_parts(p, w, Some(b)).unwrap();
    let xd = Tensor::new(
        x.dims(),
        input
            .dequantize(
                &x.data().iter().map(|&v| v as i32).collect::<Vec<_>>(),
                x.dims(),
            )
            .unwrap(),
    )
    .unwrap();
    let fy = fconv.forward(&xd, Mode::Eval).unwrap();
    assert_eq!(fy.dims(), y.dims());
    let fq: Vec<f64> = fy.data().iter().map(|&v| v as f64).collect();
    assert_near_fake_quant("quant_conv2d", &y, &fq, &output, true);
}

#[test]
fn fused_pooling_equals_pooling_the_codes() {
    let mut rng = Rng::seed_from_u64(25);
    let p = Conv2dParams::new(2, 7, (3, 3)).with_padding(Padding::symmetric(1));
    let conv = Conv2d::new(p, &mut rng).unwrap();
    let (input, output) = (act(0.0, 1.0), act(0.0, 0.5));
    let make = |pool| {
        QuantConv2d::from_conv2d(
            &conv,
            WeightScheme::uniform(8, true),
            input.clone(),
            QuantOutput::Codes(output.clone()),
            true,
            pool,
        )
        .unwrap()
    };
    let (plain, fused) = (make(1), make(2));
    // 9 x 8 input: an odd height, so the last row is dropped as by MaxPool2d(2).
    let x = codes(&mut rng, &[2, 2, 9, 8], &input);
    let mut pool = nn::layers::MaxPool2d::square(2).unwrap();
    let want = pool
        .forward(
            &plain.forward_with(Int8Path::selected(), &x).unwrap(),
            Mode::Eval,
        )
        .unwrap();
    let got = check_paths("quant_conv2d+pool", &|path| {
        fused.forward_with(path, &x).unwrap()
    });
    assert_eq!(got.dims(), want.dims());
    assert_eq!(got.data(), want.data());
    let rec = fused.record().unwrap();
    let mut back = registry().build(&rec).unwrap();
    assert_eq!(back.forward(&x, Mode::Eval).unwrap().data(), got.data());
}

#[test]
fn records_round_trip_and_corrupt_ones_are_refused() {
    let mut rng = Rng::seed_from_u64(23);
    let lin = Linear::new(10, 4, &mut rng).unwrap();
    let q = QuantLinear::from_linear(
        &lin,
        WeightScheme::uniform(6, false),
        act(0.0, 1.0),
        QuantOutput::Float,
        true,
    )
    .unwrap();
    let reg = registry();
    let rec = q.record().unwrap();
    let mut back = reg.build(&rec).unwrap();
    let x = codes(&mut rng, &[3, 10], q.core().input());
    let mut q2 = q.clone();
    assert_eq!(
        back.forward(&x, Mode::Eval).unwrap().data(),
        q2.forward(&x, Mode::Eval).unwrap().data()
    );
    assert_eq!(back.record().unwrap(), rec);

    let with_payload = |name: &str, p: Payload| {
        let mut r = rec.clone();
        r.payloads.iter_mut().find(|(n, _)| n == name).unwrap().1 = p;
        r
    };
    let bad = [
        with_payload("weight", Payload::i8(&[4, 9], vec![0; 36]).unwrap()),
        // 127 is outside the 6-bit weight range.
        with_payload("weight", Payload::i8(&[4, 10], vec![127; 40]).unwrap()),
        with_payload("bias", Payload::u8(&[4], vec![0; 4]).unwrap()),
        rec.clone()
            .with_payload("extra", Payload::u8(&[1], vec![0]).unwrap()),
        rec.clone().with_int("in_zero_point", 300),
        rec.clone().with_int("in_bits", 8),
        rec.clone().with_float("in_scale", -1.0),
    ];
    for (i, r) in bad.iter().enumerate() {
        let e = reg.build(r).unwrap_err().to_string();
        assert!(e.contains("quant_linear"), "case {i}: {e}");
    }
    // Inputs that are not codes are refused, not truncated.
    let e = back
        .forward(&Tensor::new(&[1, 10], vec![0.5; 10]).unwrap(), Mode::Eval)
        .unwrap_err();
    assert!(e.to_string().contains("not a code"), "{e}");
}

#[test]
fn lenet5_quantizes_to_integer_layers_close_to_float() {
    let mut rng = Rng::seed_from_u64(24);
    let mut model = nn::zoo::build("lenet5", &mut rng).unwrap();
    let calib = Tensor::new(
        &[32, 1, 28, 28],
        (0..32 * 784).map(|_| rng.uniform()).collect(),
    )
    .unwrap();
    let test = Tensor::new(
        &[8, 1, 28, 28],
        (0..8 * 784).map(|_| rng.uniform()).collect(),
    )
    .unwrap();
    let want = model.forward(&test, Mode::Eval).unwrap();
    let float = nn::zoo::build("lenet5", &mut Rng::seed_from_u64(24)).unwrap();
    let (mut q, reports) = quantize_model(float, &calib, &QuantConfig::default()).unwrap();
    let kinds: Vec<&str> = q.layers.iter().map(|l| l.kind()).collect();
    assert_eq!(kinds[0], "quantize", "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| k.starts_with("quant_")).count(),
        4,
        "{kinds:?}"
    );
    assert!(
        !kinds.contains(&"relu") && !kinds.contains(&"dequantize"),
        "{kinds:?}"
    );
    assert_eq!(reports.len(), 4);
    assert!(reports.last().unwrap().float_output);
    assert!(reports[..3].iter().all(|r| !r.float_output));
    let got = q.forward(&test, Mode::Eval).unwrap();
    let num: f32 = got
        .data()
        .iter()
        .zip(want.data())
        .map(|(a, b)| (a - b).powi(2))
        .sum();
    let den: f32 = want.data().iter().map(|b| b * b).sum();
    assert!(
        num.sqrt() <= 0.05 * den.sqrt(),
        "relative error {}",
        (num / den).sqrt()
    );
    assert!(
        q.stored_bytes() * 3 < model.stored_bytes(),
        "{} vs {}",
        q.stored_bytes(),
        model.stored_bytes()
    );
}

/// The integer convolution by its definition: for each output, the raw sum of codes times
/// weight codes over the window, padding taps at the input zero point, the 2x2 maximum when
/// pooling, then the core's requantization. What every path must equal bit for bit.
fn conv_by_definition(q: &QuantConv2d, x: &Tensor) -> Vec<f32> {
    let p = q.params();
    let (kh, kw) = p.kernel;
    let [n, o, oh, ow] = p.output_dims(x.shape()).unwrap();
    let (c, h, w) = (x.dims()[1], x.dims()[2], x.dims()[3]);
    let k = c * kh * kw;
    let wq = q.core().packed().unpack();
    let zp = q.core().input().zero_points()[0];
    let raw = |img: usize, j: usize, oy: usize, ox: usize| -> i32 {
        let mut s = 0;
        for ci in 0..c {
            for ki in 0..kh {
                for kj in 0..kw {
                    let iy =
                        (oy * p.stride.0 + ki * p.dilation.0) as isize - p.padding.top as isize;
                    let ix =
                        (ox * p.stride.1 + kj * p.dilation.1) as isize - p.padding.left as isize;
                    let v = if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) {
                        x.data()[((img * c + ci) * h + iy as usize) * w + ix as usize] as i32
                    } else {
                        zp
                    };
                    s += v * i32::from(wq[j * k + (ci * kh + ki) * kw + kj]);
                }
            }
        }
        s
    };
    let pool = q.pool();
    let (ph, pw) = (oh / pool, ow / pool);
    let mut out = Vec::with_capacity(n * o * ph * pw);
    for img in 0..n {
        for j in 0..o {
            for py in 0..ph {
                for px in 0..pw {
                    let mut m = i32::MIN;
                    for dy in 0..pool {
                        for dx in 0..pool {
                            m = m.max(raw(img, j, py * pool + dy, px * pool + dx));
                        }
                    }
                    let mut v = [0f32];
                    q.core().finish_channel(j, &[m], 1, &mut v);
                    out.push(v[0]);
                }
            }
        }
    }
    out
}

#[test]
fn quant_conv2d_equals_the_integer_definition_on_every_path_and_batch() {
    let mut rng = Rng::seed_from_u64(31);
    // Low enough that single images of these small layers are split into bands on two
    // threads (the default splits only layers of 16 M multiply-adds and more).
    quant::layers::set_split_min_macs(1 << 16);
    // (C, O, kernel, stride, dilation, padding t/b/l/r, pool, H, W, weight bits)
    let cases = [
        (1, 32, (3, 3), (1, 1), (1, 1), [1, 1, 1, 1], 1, 28, 28, 8),
        (32, 32, (3, 3), (1, 1), (1, 1), [1, 1, 1, 1], 2, 14, 14, 8),
        (32, 20, (3, 3), (1, 1), (1, 1), [1, 1, 1, 1], 2, 9, 11, 7),
        (3, 17, (5, 5), (1, 1), (1, 1), [0, 0, 0, 0], 2, 12, 12, 6),
        (5, 9, (3, 2), (2, 1), (1, 2), [1, 0, 2, 1], 1, 10, 9, 8),
        (8, 16, (1, 1), (2, 2), (1, 1), [0, 0, 0, 0], 1, 7, 7, 5),
        (2, 33, (2, 3), (1, 2), (2, 1), [2, 1, 0, 3], 2, 13, 15, 8),
        // lenet5: conv1 (5-byte runs copied into patch rows), conv2 (read in place).
        (1, 20, (5, 5), (1, 1), (1, 1), [0, 0, 0, 0], 2, 28, 28, 8),
        (20, 50, (5, 5), (1, 1), (1, 1), [0, 0, 0, 0], 2, 12, 12, 8),
        // In place with a height dilation and a stride.
        (4, 18, (3, 3), (2, 2), (2, 1), [1, 2, 1, 0], 1, 11, 12, 7),
    ];
    for (ci, co, kernel, stride, dilation, pad, pool, h, w, bits) in cases {
        let [top, bottom, left, right] = pad;
        let p = Conv2dParams {
            stride,
            dilation,
            ..Conv2dParams::new(ci, co, kernel).with_padding(Padding {
                top,
                bottom,
                left,
                right,
            })
        };
        let conv = Conv2d::new(p, &mut rng).unwrap();
        let input = act(-0.5, 1.5);
        let q = QuantConv2d::from_conv2d(
            &conv,
            WeightScheme::uniform(bits, true),
            input.clone(),
            QuantOutput::Codes(act(0.0, 1.0)),
            true,
            pool,
        )
        .unwrap();
        // One image and three (split into bands of one image when there are fewer than two
        // images per thread) and six (spread by image).
        for n in [1, 3, 6] {
            let x = codes(&mut rng, &[n, ci, h, w], &input);
            let want = conv_by_definition(&q, &x);
            let name = format!("conv {ci}->{co} {kernel:?} pool {pool} w{bits} n={n}");
            let got = check_paths(&name, &|path| q.forward_with(path, &x).unwrap());
            assert_eq!(got.data(), &want[..], "{name}");
        }
    }
}
