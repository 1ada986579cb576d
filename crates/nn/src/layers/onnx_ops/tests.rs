//! Tests of the graph operators: softmax semantics per opset, finite-difference gradients,
//! broadcasting, concatenation, transpose and pad values.

use tensor_core::Tensor;
use tensor_core::rng::Rng;

use super::*;
use crate::layer::{Layer, Mode};

fn rand_tensor(rng: &mut Rng, dims: &[usize]) -> Tensor {
    let n = dims.iter().product();
    Tensor::new(dims, (0..n).map(|_| rng.normal()).collect()).unwrap()
}

/// Checks `backward` against central finite differences of `sum(w * forward(x))`.
fn grad_check(layer: &mut dyn Layer, x: &Tensor, seed: u64) {
    let mut rng = Rng::seed_from_u64(seed);
    let y = layer.forward(x, Mode::Train).unwrap();
    let w = rand_tensor(&mut rng, y.dims());
    let gx = layer.backward(&w).unwrap();
    let f = |layer: &mut dyn Layer, x: &Tensor| -> f64 {
        let y = layer.forward(x, Mode::Eval).unwrap();
        y.data()
            .iter()
            .zip(w.data())
            .map(|(&a, &b)| a as f64 * b as f64)
            .sum()
    };
    let eps = 1e-2f32;
    for i in 0..x.numel() {
        let mut xp = x.clone();
        xp.data_mut()[i] += eps;
        let mut xm = x.clone();
        xm.data_mut()[i] -= eps;
        let num = (f(layer, &xp) - f(layer, &xm)) / (2.0 * eps as f64);
        let ana = gx.data()[i] as f64;
        assert!(
            (num - ana).abs() <= 2e-2 * (1.0 + num.abs()),
            "seed {seed} {}: element {i}: numeric {num} analytic {ana}",
            layer.kind()
        );
    }
}

#[test]
fn softmax_axis_semantics() {
    let x = Tensor::new(&[1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    // Opset 13: along the last axis.
    let y = Softmax::new(-1, false, false)
        .forward(&x, Mode::Eval)
        .unwrap();
    let e = 1.0 / (1.0 + (1.0f32).exp());
    tensor_core::testing::assert_close(y.data(), &[e, 1.0 - e, e, 1.0 - e], 1e-6, 1e-7);
    // Opset < 13, axis 1: one softmax over all 4 elements.
    let y = Softmax::new(1, true, false)
        .forward(&x, Mode::Eval)
        .unwrap();
    let s: f32 = (1..=4).map(|v| (v as f32).exp()).sum();
    let want: Vec<f32> = (1..=4).map(|v| (v as f32).exp() / s).collect();
    tensor_core::testing::assert_close(y.data(), &want, 1e-6, 1e-7);
    // Along axis 1 (columns of each sample).
    let y = Softmax::new(1, false, true)
        .forward(&x, Mode::Eval)
        .unwrap();
    let l = -(1.0 + (2.0f32).exp()).ln() + 0.0;
    let lo = (1.0f32 + (-2.0f32).exp()).ln();
    tensor_core::testing::assert_close(y.data(), &[l, l, -lo, -lo], 1e-5, 1e-6);
    assert!(
        Softmax::new(3, false, false)
            .output_shape(x.shape())
            .is_err()
    );
}

#[test]
fn gradients_match_finite_differences() {
    let mut rng = Rng::seed_from_u64(7);
    let x = rand_tensor(&mut rng, &[2, 3, 4]);
    grad_check(&mut Softmax::new(-1, false, false), &x, 1);
    grad_check(&mut Softmax::new(1, true, true), &x, 2);
    grad_check(&mut Softmax::new(1, false, false), &x, 3);
    let c = rand_tensor(&mut rng, &[3, 1]);
    grad_check(&mut ConstElementwise::new(ArithOp::Mul, c.clone()), &x, 4);
    grad_check(&mut ConstElementwise::new(ArithOp::Add, c), &x, 5);
    grad_check(&mut Transpose::new(vec![0, 2, 1]).unwrap(), &x, 6);
    grad_check(&mut Reshape::new(vec![12]), &x, 7);
    grad_check(
        &mut Pad::new(vec![0, 1, 0], vec![0, 2, 1], 0.5).unwrap(),
        &x,
        11,
    );
    let gate = Parallel::new(
        vec![
            vec![],
            vec![Box::new(Softmax::new(-1, false, false)) as Box<dyn Layer>],
            vec![
                Box::new(Transpose::new(vec![0, 2, 1]).unwrap()) as Box<dyn Layer>,
                Box::new(Transpose::new(vec![0, 2, 1]).unwrap()),
            ],
        ],
        Merge::Mul,
    )
    .unwrap();
    grad_check(&mut { gate }, &x, 8);
    let cat = Parallel::new(
        vec![
            vec![],
            vec![Box::new(Softmax::new(-1, false, true)) as Box<dyn Layer>],
        ],
        Merge::Concat { axis: 2 },
    )
    .unwrap();
    grad_check(&mut { cat }, &x, 9);
    let res = Parallel::new(
        vec![
            vec![Box::new(ConstElementwise::new(
                ArithOp::Mul,
                rand_tensor(&mut rng, &[4]),
            )) as Box<dyn Layer>],
            vec![],
        ],
        Merge::Add,
    )
    .unwrap();
    grad_check(&mut { res }, &x, 10);
}

#[test]
fn broadcasting_and_concat_values() {
    let x = Tensor::new(&[1, 2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let c = Tensor::new(&[2, 1], vec![10.0, 100.0]).unwrap();
    let y = ConstElementwise::new(ArithOp::Add, c)
        .forward(&x, Mode::Eval)
        .unwrap();
    assert_eq!(y.data(), &[11.0, 12.0, 13.0, 104.0, 105.0, 106.0]);
    let big = Tensor::new(&[2, 2, 3], vec![0.0; 12]).unwrap();
    assert!(
        ConstElementwise::new(ArithOp::Add, big)
            .output_shape(x.shape())
            .is_err()
    );
    let mut cat = Parallel::new(vec![vec![], vec![]], Merge::Concat { axis: 1 }).unwrap();
    let y = cat.forward(&x, Mode::Eval).unwrap();
    assert_eq!(y.dims(), &[1, 4, 3]);
    assert_eq!(&y.data()[6..], x.data());
    let t = Transpose::new(vec![0, 2, 1])
        .unwrap()
        .forward(&x, Mode::Eval)
        .unwrap();
    assert_eq!(t.data(), &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    assert!(Transpose::new(vec![1, 0]).is_err());
    assert!(Transpose::new(vec![0, 0]).is_err());
    assert!(Parallel::new(vec![vec![]], Merge::Concat { axis: 0 }).is_err());
    let p = Pad::new(vec![0, 0, 1], vec![0, 1, 0], -1.0)
        .unwrap()
        .forward(&x, Mode::Eval)
        .unwrap();
    assert_eq!(p.dims(), &[1, 3, 4]);
    assert_eq!(
        p.data(),
        &[
            -1.0, 1.0, 2.0, 3.0, -1.0, 4.0, 5.0, 6.0, -1.0, -1.0, -1.0, -1.0
        ]
    );
    assert!(Pad::new(vec![1, 0], vec![0, 0], 0.0).is_err());
}
