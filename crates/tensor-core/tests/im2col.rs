//! The public, element-generic im2col against a direct definition over a grid of geometries
//! (f32, and u8 / i8 equal to f32 on the same small integers), col2im as its adjoint, and the
//! errors of both.

use std::ops::Range;

use tensor_core::conv::{Conv2dParams, ConvGeometry, Padding, col2im_add, im2col};
use tensor_core::rng::Rng;
use tensor_core::{Shape, TensorError};

/// `col[(c, ki, kj), (b, oy, ox)]` straight from the formula on `im2col`'s doc.
fn im2col_direct(
    p: &Conv2dParams,
    dims: [usize; 4],
    x: &[f32],
    images: Range<usize>,
    group: usize,
    pad: f32,
) -> Vec<f32> {
    let [_, c_all, h, w] = dims;
    let cg = c_all / p.groups;
    let (oh, ow) = p.output_hw(h, w).unwrap();
    let (kh, kw) = p.kernel;
    let mut col = Vec::new();
    for c in 0..cg {
        for ki in 0..kh {
            for kj in 0..kw {
                for n in images.clone() {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let iy = (oy * p.stride.0 + ki * p.dilation.0) as isize
                                - p.padding.top as isize;
                            let ix = (ox * p.stride.1 + kj * p.dilation.1) as isize
                                - p.padding.left as isize;
                            let inside =
                                (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix);
                            col.push(if inside {
                                let ch = group * cg + c;
                                x[((n * c_all + ch) * h + iy as usize) * w + ix as usize]
                            } else {
                                pad
                            });
                        }
                    }
                }
            }
        }
    }
    col
}

fn run<T: Copy>(geo: &ConvGeometry, x: &[T], images: Range<usize>, g: usize, pad: T) -> Vec<T> {
    let mut col = vec![pad; geo.col_len(images.len()).unwrap()];
    im2col(geo, x, images, g, pad, &mut col).unwrap();
    col
}

/// Every geometry of the grid that fits an `h x w` input, with `c` input channels.
fn grid(c: usize, h: usize, w: usize) -> Vec<Conv2dParams> {
    let mut out = Vec::new();
    let pairs = [(1, 1), (2, 1), (1, 2), (2, 2)];
    for kernel in [(1, 1), (1, 3), (2, 3), (3, 2), (3, 3)] {
        for stride in pairs {
            for dilation in pairs {
                for pads in 0..81 {
                    let padding = Padding {
                        top: pads % 3,
                        bottom: pads / 3 % 3,
                        left: pads / 9 % 3,
                        right: pads / 27,
                    };
                    for groups in [1, 2] {
                        let p = Conv2dParams::new(c, 2 * groups, kernel)
                            .with_stride(stride)
                            .with_dilation(dilation)
                            .with_padding(padding)
                            .with_groups(groups);
                        if p.output_hw(h, w).is_ok() {
                            out.push(p);
                        }
                    }
                }
            }
        }
    }
    out
}

#[test]
fn u8_i8_and_f32_agree_with_the_direct_definition_over_a_grid() {
    let mut rng = Rng::seed_from_u64(21);
    let mut checked = 0;
    for (h, w) in [(5, 6), (2, 3)] {
        let dims = [3, 2, h, w];
        let len = dims.iter().product();
        let xu: Vec<u8> = (0..len).map(|_| rng.below(10) as u8).collect();
        let xi: Vec<i8> = (0..len).map(|_| rng.below(11) as i8 - 5).collect();
        let fu: Vec<f32> = xu.iter().map(|&v| v as f32).collect();
        let fi: Vec<f32> = xi.iter().map(|&v| v as f32).collect();
        let shape = Shape::new(&dims).unwrap();
        for (k, p) in grid(2, h, w).into_iter().enumerate() {
            let geo = ConvGeometry::new(&p, &shape).unwrap();
            let images = [0..3, 1..3, 2..3][k % 3].clone();
            for g in 0..p.groups {
                let ctx = format!("{p:?} images {images:?} group {g} input {h}x{w}");
                let col_f = run(&geo, &fu, images.clone(), g, 7.0f32);
                assert_eq!(
                    col_f,
                    im2col_direct(&p, dims, &fu, images.clone(), g, 7.0),
                    "{ctx}"
                );
                let col_u = run(&geo, &xu, images.clone(), g, 7u8);
                assert!(
                    col_u.iter().map(|&v| v as f32).eq(col_f.iter().copied()),
                    "u8 {ctx}"
                );
                let col_i = run(&geo, &xi, images.clone(), g, -3i8);
                let col_fi = run(&geo, &fi, images.clone(), g, -3.0f32);
                assert!(
                    col_i.iter().map(|&v| v as f32).eq(col_fi.iter().copied()),
                    "i8 {ctx}"
                );
                checked += 1;
            }
        }
    }
    eprintln!("im2col: {checked} (geometry, group) cases checked for f32, u8 and i8");
    assert!(checked > 10_000);
}

/// `<im2col(x), y> == <x, col2im(y)>`, exactly on small integers; col2im leaves other
/// images and other groups' channels alone.
#[test]
fn col2im_is_the_adjoint_of_im2col() {
    let mut rng = Rng::seed_from_u64(22);
    let dims = [3, 4, 5, 4];
    let shape = Shape::new(&dims).unwrap();
    let len: usize = dims.iter().product();
    for (k, p) in grid(4, 5, 4).into_iter().enumerate().step_by(7) {
        let geo = ConvGeometry::new(&p, &shape).unwrap();
        let images = [0..3, 1..2, 0..2][k % 3].clone();
        let g = k % p.groups;
        let x: Vec<f32> = (0..len).map(|_| rng.below(7) as f32 - 3.0).collect();
        let col = run(&geo, &x, images.clone(), g, 0.0);
        let y: Vec<f32> = (0..col.len()).map(|_| rng.below(7) as f32 - 3.0).collect();
        let before: Vec<f32> = (0..len).map(|_| rng.below(3) as f32).collect();
        let mut dx = before.clone();
        col2im_add(&geo, &y, images.clone(), g, &mut dx).unwrap();
        let lhs: f64 = col.iter().zip(&y).map(|(&a, &b)| a as f64 * b as f64).sum();
        let rhs: f64 = x
            .iter()
            .zip(dx.iter().zip(&before))
            .map(|(&a, (&d, &b0))| a as f64 * (d - b0) as f64)
            .sum();
        assert_eq!(lhs, rhs, "{p:?} images {images:?} group {g}");
        let (c, plane) = (dims[1], dims[2] * dims[3]);
        let cg = c / p.groups;
        for (i, (d, b0)) in dx.iter().zip(&before).enumerate() {
            let (n, ch) = (i / (c * plane), i / plane % c);
            if !images.contains(&n) || ch / cg != g {
                assert_eq!(d, b0, "{p:?}: element {i} outside the block changed");
            }
        }
    }
}

#[test]
fn bad_calls_are_typed_errors() {
    let p = Conv2dParams::new(2, 2, (3, 3)).with_groups(2);
    let geo = ConvGeometry::new(&p, &Shape::new(&[2, 2, 4, 4]).unwrap()).unwrap();
    assert_eq!(geo.output_dims(), [2, 2, 2, 2]);
    assert_eq!(
        (geo.patch_len(), geo.out_plane(), geo.image_len()),
        (9, 4, 32)
    );
    let x = vec![0u8; 64];
    let mut col = vec![0u8; 36];
    assert!(im2col(&geo, &x, 1..2, 1, 0, &mut col).is_ok());
    let e = im2col(&geo, &x[1..], 0..1, 0, 0, &mut col).unwrap_err();
    assert!(
        matches!(
            e,
            TensorError::DataLength {
                op: "im2col",
                len: 63,
                expected: 64,
                ..
            }
        ),
        "{e}"
    );
    let e = im2col(&geo, &x, 1..3, 0, 0, &mut col).unwrap_err();
    assert!(
        e.to_string().contains("images 1..3 outside the batch 0..2"),
        "{e}"
    );
    let e = im2col(&geo, &x, 0..1, 2, 0, &mut col).unwrap_err();
    assert!(
        e.to_string().contains("group 2 out of range (2 groups)"),
        "{e}"
    );
    let e = im2col(&geo, &x, 0..2, 0, 0, &mut col).unwrap_err();
    assert!(
        matches!(
            e,
            TensorError::DataLength {
                len: 36,
                expected: 72,
                ..
            }
        ),
        "{e}"
    );
    let mut dx = vec![0.0f32; 63];
    let e = col2im_add(&geo, &[0.0; 36], 0..1, 0, &mut dx).unwrap_err();
    assert!(
        matches!(e, TensorError::DataLength { op: "col2im", .. }),
        "{e}"
    );
    // An empty block is fine and writes nothing.
    assert_eq!(im2col(&geo, &x, 1..1, 0, 0, &mut []), Ok(()));
    // A geometry the window does not fit is refused when built.
    assert!(ConvGeometry::new(&p, &Shape::new(&[1, 2, 2, 2]).unwrap()).is_err());
}
