//! Tests of the convolution kernels against the direct-loop references, over strides,
//! padding, dilation, groups and block boundaries; output sizes and parameter errors.

use super::*;
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::testing::assert_close;

fn rand_tensor(rng: &mut Rng, dims: &[usize]) -> Tensor {
    let n = dims.iter().product();
    Tensor::new(dims, (0..n).map(|_| rng.normal()).collect()).unwrap()
}

/// Forward, per-image forward and backward against the direct loops.
fn check(p: Conv2dParams, n: usize, h: usize, w: usize, seed: u64) {
    let mut rng = Rng::seed_from_u64(seed);
    let x = rand_tensor(&mut rng, &[n, p.in_channels, h, w]);
    let wt = rand_tensor(&mut rng, &p.weight_dims());
    let b: Vec<f32> = (0..p.out_channels).map(|_| rng.normal()).collect();
    let y = conv2d_forward(&x, &wt, Some(&b), &p).unwrap();
    let yr = conv2d_forward_reference(&x, &wt, Some(&b), &p).unwrap();
    let tol = 1e-5 * (p.patch_len() as f32).sqrt();
    assert_eq!(y.dims(), yr.dims());
    assert_close(y.data(), yr.data(), tol, tol);
    let yp = conv2d_forward_per_image(&x, &wt, Some(&b), &p).unwrap();
    assert_close(yp.data(), yr.data(), tol, tol);
    let gy = rand_tensor(&mut rng, y.dims());
    let g = conv2d_grads(&x, &wt, &gy, &p).unwrap();
    let gr = conv2d_grads_reference(&x, &wt, &gy, &p).unwrap();
    let big = 1e-5 * ((n * y.dims()[2] * y.dims()[3]) as f32).sqrt();
    assert_close(g.input.data(), gr.input.data(), tol, tol);
    assert_close(g.weight.data(), gr.weight.data(), big, big);
    assert_close(g.bias.data(), gr.bias.data(), big, big);
}

#[test]
fn plain_3x3() {
    check(Conv2dParams::new(3, 4, (3, 3)), 2, 7, 6, 1);
}

#[test]
fn lenet5_conv_shapes() {
    check(Conv2dParams::new(1, 20, (5, 5)), 3, 28, 28, 2);
    check(Conv2dParams::new(20, 50, (5, 5)), 3, 12, 12, 3);
}

#[test]
fn stride_padding_dilation_groups() {
    let p = Conv2dParams::new(4, 6, (3, 2))
        .with_stride((2, 3))
        .with_padding(Padding {
            top: 1,
            bottom: 2,
            left: 0,
            right: 3,
        })
        .with_dilation((2, 1))
        .with_groups(2);
    check(p, 3, 9, 10, 4);
}

#[test]
fn depthwise_and_pointwise() {
    let dw = Conv2dParams::new(5, 5, (3, 3))
        .with_padding(Padding::symmetric(2))
        .with_dilation((2, 2))
        .with_groups(5);
    check(dw, 2, 6, 5, 5);
    check(
        Conv2dParams::new(6, 3, (1, 1)).with_stride((2, 2)),
        2,
        5,
        5,
        6,
    );
}

#[test]
fn many_images_span_several_blocks() {
    // 20*25 rows * 64 positions = 32,000 floats per image: 8 images per block.
    let p = Conv2dParams::new(20, 8, (5, 5));
    assert!(block_images(p.patch_len(), 64, 70) < 70);
    check(p, 70, 12, 12, 7);
}

#[test]
fn padding_larger_than_input_and_one_pixel_output() {
    check(
        Conv2dParams::new(2, 3, (3, 3)).with_padding(Padding::symmetric(3)),
        1,
        1,
        2,
        8,
    );
    check(Conv2dParams::new(2, 3, (4, 4)), 2, 4, 4, 9);
}

#[test]
fn output_size_formula_and_errors() {
    let p = Conv2dParams::new(1, 1, (3, 3))
        .with_stride((2, 2))
        .with_padding(Padding::symmetric(1));
    assert_eq!(p.output_hw(28, 28).unwrap(), (14, 14));
    assert!(Conv2dParams::new(1, 1, (5, 5)).output_hw(4, 8).is_err());
    assert!(
        Conv2dParams::new(3, 4, (3, 3))
            .with_groups(2)
            .validate()
            .is_err()
    );
    assert!(Conv2dParams::new(1, 1, (0, 3)).validate().is_err());
    assert!(
        Conv2dParams::new(1, 1, (3, 3))
            .with_stride((0, 1))
            .validate()
            .is_err()
    );
    let x = Tensor::zeros_dims(&[1, 2, 5, 5]).unwrap();
    let w = Tensor::zeros_dims(&[1, 1, 3, 3]).unwrap();
    assert!(conv2d_forward(&x, &w, None, &Conv2dParams::new(1, 1, (3, 3))).is_err());
    let p2 = Conv2dParams::new(2, 1, (3, 3));
    assert!(matches!(
        conv2d_forward(&x, &w, None, &p2),
        Err(TensorError::ShapeMismatch { .. })
    ));
    let w2 = Tensor::zeros_dims(&[1, 2, 3, 3]).unwrap();
    assert!(conv2d_forward(&x, &w2, Some(&[0.0, 0.0]), &p2).is_err());
    let bad_gy = Tensor::zeros_dims(&[1, 1, 2, 2]).unwrap();
    assert!(conv2d_grads(&x, &w2, &bad_gy, &p2).is_err());
}

#[test]
fn window_len_ceil_mode() {
    // ONNX: 5 wide, kernel 2, stride 2: floor 2, ceil 3.
    assert_eq!(window_out_len(5, 2, 2, 1, 0, 0, false), Some(2));
    assert_eq!(window_out_len(5, 2, 2, 1, 0, 0, true), Some(3));
    // A last window starting in the end padding is dropped.
    assert_eq!(window_out_len(4, 2, 2, 1, 0, 1, true), Some(2));
    assert_eq!(window_out_len(2, 3, 1, 1, 0, 0, false), None);
    assert_eq!(window_out_len(usize::MAX, 3, 1, 1, 1, 0, false), None);
}
