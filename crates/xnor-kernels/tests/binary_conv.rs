//! Binary conv2d on every kernel path this CPU runs, bit-exact against the f32 direct conv
//! of the signs with zero padding (stride, dilation, symmetric and asymmetric padding, channel
//! counts straddling words).

use tensor_core::conv::{Conv2dParams, Padding, conv2d_forward_reference};
use tensor_core::dispatch::{KernelPath, PopcountPath, report};
use tensor_core::rng::Rng;
use tensor_core::{Shape, Tensor};
use xnor_kernels::{BinaryConvWeights, BinaryGemmParams, binary_conv2d};

fn sign(x: f32) -> f32 {
    if x < 0.0 { -1.0 } else { 1.0 }
}

fn normal(n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n).map(|_| rng.normal()).collect()
}

fn check(
    path: PopcountPath,
    n: usize,
    hw: (usize, usize),
    p: Conv2dParams,
    threads: usize,
    seed: u64,
) {
    let mut rng = Rng::seed_from_u64(seed);
    let c = p.in_channels;
    let dims = [n, c, hw.0, hw.1];
    let x = Tensor::new(&dims, normal(n * c * hw.0 * hw.1, &mut rng)).unwrap();
    let wd = p.weight_dims();
    let w = normal(wd.iter().product(), &mut rng);
    let bw = BinaryConvWeights::pack(&p, &w).unwrap();
    let got = binary_conv2d(&x, &bw, &BinaryGemmParams::on(path).threads(threads)).unwrap();
    let xs = Tensor::new(&dims, x.data().iter().map(|&v| sign(v)).collect()).unwrap();
    let ws = Tensor::new(&wd, w.iter().map(|&v| sign(v)).collect()).unwrap();
    let want = conv2d_forward_reference(&xs, &ws, None, &p).unwrap();
    let want: Vec<i32> = want.data().iter().map(|&v| v as i32).collect();
    assert_eq!(
        got,
        want,
        "path {} {p:?} on {dims:?} seed {seed}",
        path.name()
    );
}

#[test]
fn matches_the_float_conv_of_the_signs_on_every_path() {
    eprintln!("{}", report());
    for p in PopcountPath::skipped() {
        eprintln!("skipped: {} (CPU lacks {})", p.name(), p.needs());
    }
    let asym = Padding {
        top: 2,
        bottom: 0,
        left: 1,
        right: 3,
    };
    let cases = [
        // (channels in, out, kernel, stride, padding, dilation, input h x w)
        (1, 4, (3, 3), (1, 1), Padding::symmetric(1), (1, 1), (7, 6)),
        (3, 5, (3, 3), (2, 2), Padding::symmetric(1), (1, 1), (9, 9)),
        (20, 7, (5, 5), (1, 1), Padding::default(), (1, 1), (12, 12)),
        (32, 9, (3, 3), (1, 1), Padding::symmetric(1), (1, 1), (8, 8)),
        (63, 3, (3, 3), (1, 1), Padding::symmetric(2), (1, 1), (5, 5)),
        (64, 6, (3, 3), (2, 1), asym, (1, 1), (6, 7)),
        (65, 5, (2, 3), (1, 2), Padding::symmetric(1), (2, 1), (6, 6)),
        (
            129,
            2,
            (1, 1),
            (1, 1),
            Padding::symmetric(1),
            (1, 1),
            (3, 4),
        ),
    ];
    for path in PopcountPath::supported() {
        for (i, &(c, o, k, s, pad, d, hw)) in cases.iter().enumerate() {
            let p = Conv2dParams::new(c, o, k)
                .with_stride(s)
                .with_padding(pad)
                .with_dilation(d);
            check(path, 2, hw, p, 0, i as u64);
            check(path, 1, hw, p, 1, 100 + i as u64);
        }
        eprintln!(
            "path {}: {} conv cases bit-exact",
            path.name(),
            2 * cases.len()
        );
    }
}

#[test]
fn refuses_groups_and_wrong_inputs() {
    let p = Conv2dParams::new(4, 4, (3, 3)).with_groups(2);
    assert!(BinaryConvWeights::pack(&p, &[1.0; 72]).is_err());
    let p = Conv2dParams::new(2, 3, (3, 3));
    let bw = BinaryConvWeights::pack(&p, &[1.0; 54]).unwrap();
    let x = Tensor::zeros(Shape::new(&[1, 3, 5, 5]).unwrap());
    let e = binary_conv2d(&x, &bw, &BinaryGemmParams::default()).unwrap_err();
    assert!(e.to_string().contains("channels"), "{e}");
    let x = Tensor::zeros(Shape::new(&[1, 2, 2, 2]).unwrap());
    assert!(binary_conv2d(&x, &bw, &BinaryGemmParams::default()).is_err());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]
    #[test]
    fn random_geometries_match_on_every_path(
        c in 1usize..70, o in 1usize..6, k in 1usize..4, s in 1usize..3, pad in 0usize..3,
        side in 4usize..9, seed: u64,
    ) {
        let p = Conv2dParams::new(c, o, (k, k))
            .with_stride((s, s))
            .with_padding(Padding::symmetric(pad));
        for path in PopcountPath::supported() {
            check(path, 2, (side, side + 1), p, 1, seed);
        }
    }
}
