//! Shared convolutions against the dense convolution rebuilt from the codebook: the lookup
//! GEMMs (dense and sparse codes) exact on small integers against a naive triple loop over
//! edge sizes on every tier, and SharedConv2d / the sparse conv path within a stated
//! tolerance of `conv2d_forward_reference` over strides, padding, dilation and groups.

use nn::layers::Conv2d;
use nn::{Layer, Mode};
use proptest::prelude::*;
use share::{
    KMeansParams, SharedConv2d, SharedMatrix, SparseShared, share_nonzeros, shared_conv2d,
};
use tensor_core::Tensor;
use tensor_core::conv::{Conv2dParams, Padding, conv2d_forward_reference};
use tensor_core::dispatch::F32Path;
use tensor_core::rng::Rng;
use tensor_core::testing::assert_close;

fn tiers() -> Vec<F32Path> {
    let mut run = Vec::new();
    for t in [F32Path::Portable, F32Path::Avx2Fma, F32Path::Avx512F] {
        if t.is_supported() {
            run.push(t);
        } else {
            eprintln!("skipping tier {}: not supported by this CPU", t.name());
        }
    }
    run
}

/// `out[r - rows.start, s] = sum_i w[r, i] * b[i, s]` in f64.
fn naive(w: &[f32], cols: usize, rows: std::ops::Range<usize>, n: usize, b: &[f32]) -> Vec<f32> {
    let mut out = Vec::new();
    for r in rows {
        for s in 0..n {
            let acc: f64 = (0..cols)
                .map(|i| w[r * cols + i] as f64 * b[i * n + s] as f64)
                .sum();
            out.push(acc as f32);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Small integer centroids and inputs: every sum is exact, so every tier must match the
    /// naive loop bit for bit, around the 32-column register block.
    #[test]
    fn lookup_gemm_is_exact_on_small_integers(
        rows in 1usize..9,
        cols in 0usize..40,
        n in 1usize..70,
        k in 1usize..9,
        seed in any::<u64>(),
    ) {
        let mut rng = Rng::seed_from_u64(seed);
        let mut centroids: Vec<f32> = (0..k).map(|c| c as f32 - 3.0).collect();
        centroids[0] = 0.0;
        let codes: Vec<u8> = (0..rows * cols).map(|_| rng.below(k) as u8).collect();
        let b: Vec<f32> = (0..cols * n).map(|_| rng.below(7) as f32 - 3.0).collect();
        let dense = SharedMatrix::new(rows, cols, &centroids, codes.clone()).unwrap();
        let sparse = SparseShared::from_dense_codes(rows, cols, &centroids, &codes).unwrap();
        let w = dense.to_dense();
        let sub = rows / 3..rows;
        let expected = naive(&w, cols, sub.clone(), n, &b);
        for tier in tiers() {
            let mut out = vec![0.0f32; sub.len() * n];
            dense.matmul_rows_with(tier, sub.clone(), n, &b, &mut out).unwrap();
            prop_assert_eq!(&out, &expected, "dense codes, tier {}, seed {}", tier.name(), seed);
            let mut out = vec![0.0f32; sub.len() * n];
            sparse.matmul_rows_with(tier, sub.clone(), n, &b, &mut out).unwrap();
            prop_assert_eq!(&out, &expected, "sparse codes, tier {}, seed {}", tier.name(), seed);
        }
    }
}

fn geometries() -> Vec<(Conv2dParams, [usize; 4])> {
    vec![
        // lenet5.conv1 and conv2.
        (Conv2dParams::new(1, 20, (5, 5)), [2, 1, 28, 28]),
        (Conv2dParams::new(20, 50, (5, 5)), [1, 20, 12, 12]),
        (
            Conv2dParams::new(4, 6, (3, 3))
                .with_stride((2, 1))
                .with_padding(Padding {
                    top: 1,
                    left: 0,
                    bottom: 2,
                    right: 1,
                })
                .with_dilation((1, 2))
                .with_groups(2),
            [3, 4, 9, 8],
        ),
        (Conv2dParams::new(3, 5, (1, 3)), [1, 3, 5, 40]),
    ]
}

/// A conv weight with about `density` of its weights kept.
fn pruned_conv(p: Conv2dParams, density: f64, rng: &mut Rng) -> Conv2d {
    let mut c = Conv2d::new(p, rng).unwrap();
    let mut params = c.params_mut();
    for w in params[0].value.data_mut() {
        if rng.uniform() as f64 >= density {
            *w = 0.0;
        }
    }
    drop(params);
    c
}

#[test]
fn shared_conv_equals_the_dense_conv_rebuilt_from_its_codebook() {
    let seed = 21;
    let mut rng = Rng::seed_from_u64(seed);
    for (p, dims) in geometries() {
        for (bits, density) in [(8, 1.0), (3, 0.3)] {
            let dense = pruned_conv(p, density, &mut rng);
            let mut layer =
                SharedConv2d::from_conv2d(&dense, bits, &KMeansParams::default()).unwrap();
            let mut rebuilt = layer.to_conv2d().unwrap();
            let n: usize = dims.iter().product();
            let x = Tensor::new(&dims, (0..n).map(|_| rng.normal()).collect()).unwrap();
            let expected = conv2d_forward_reference(
                &x,
                rebuilt.weight(),
                rebuilt.bias().map(|b| b.data()),
                &p,
            )
            .unwrap();
            // Tolerance: a sum of C/groups * kh * kw f32 terms in another order.
            let y = layer.forward(&x, Mode::Eval).unwrap();
            assert_close(y.data(), expected.data(), 1e-4, 1e-5);
            let yd = rebuilt.forward(&x, Mode::Eval).unwrap();
            assert_close(yd.data(), expected.data(), 1e-4, 1e-5);
            // The same weight as sparse codes, on every tier.
            let shared =
                share_nonzeros(dense.weight().data(), bits, &KMeansParams::default()).unwrap();
            let sparse = SparseShared::from_shared(p.out_channels, p.patch_len(), &shared).unwrap();
            assert_eq!(sparse.to_dense(), layer.matrix().to_dense());
            for tier in tiers() {
                let b = rebuilt.bias().map(|b| b.data());
                let ys = shared_conv2d(tier, &x, &sparse, b, &p).unwrap();
                assert_close(ys.data(), expected.data(), 1e-4, 1e-5);
                let yt = shared_conv2d(tier, &x, layer.matrix(), b, &p).unwrap();
                assert_eq!(yt.data(), y.data(), "tier {} (seed {seed})", tier.name());
            }
        }
    }
}

#[test]
fn bad_shapes_are_errors() {
    let p = Conv2dParams::new(2, 3, (3, 3));
    let m = SharedMatrix::new(3, 17, &[0.0, 1.0], vec![1; 51]).unwrap();
    let x = Tensor::zeros_dims(&[1, 2, 5, 5]).unwrap();
    let e = shared_conv2d(F32Path::Portable, &x, &m, None, &p).unwrap_err();
    assert!(
        e.to_string()
            .contains("weight cols has length 17, expected 18"),
        "{e}"
    );
    let m = SharedMatrix::new(3, 18, &[0.0, 1.0], vec![1; 54]).unwrap();
    let e = shared_conv2d(F32Path::Portable, &x, &m, Some(&[1.0]), &p).unwrap_err();
    assert!(
        e.to_string().contains("bias has length 1, expected 3"),
        "{e}"
    );
    let bad = Tensor::zeros_dims(&[1, 3, 5, 5]).unwrap();
    assert!(shared_conv2d(F32Path::Portable, &bad, &m, None, &p).is_err());
    let mut out = vec![0.0; 4];
    assert!(
        m.matmul_rows_with(F32Path::Portable, 2..4, 1, &[0.0; 18], &mut out)
            .is_err()
    );
    for t in F32Path::skipped() {
        eprintln!("checking that unsupported tier {} is an error", t.name());
        assert!(shared_conv2d(t, &x, &m, None, &p).is_err());
    }
}
