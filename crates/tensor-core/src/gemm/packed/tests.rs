use super::*;
use crate::activation::relu_inplace;
use crate::dispatch::report;
use crate::gemm::{GemmParams, gemm_reference};
use crate::rng::Rng;
use crate::testing::assert_close;
use proptest::prelude::*;

/// The paths this CPU runs; prints the dispatch report so a skipped path is never silent.
fn paths() -> Vec<F32Path> {
    eprintln!("{}", report());
    for p in F32Path::skipped() {
        eprintln!("linear_packed: path {} skipped on this CPU", p.name());
    }
    F32Path::supported()
}

fn small_ints(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.below(7) as f32 - 3.0).collect()
}

/// The unfused layer: the reference GEMM `x W^T`, then `+ b`, then ReLU.
fn unfused(x: &[f32], m: usize, w: &[f32], n: usize, k: usize, epi: LinearEpilogue) -> Vec<f32> {
    let mut y = vec![0.0; m * n];
    let p = GemmParams::with_trans(false, true);
    gemm_reference(m, n, k, x, w, &mut y, &p).unwrap();
    for row in y.chunks_exact_mut(n.max(1)) {
        if let Some(b) = epi.bias {
            row.iter_mut().zip(b).for_each(|(v, &bv)| *v += bv);
        }
        if epi.relu {
            relu_inplace(row);
        }
    }
    y
}

/// Same bits, or NaN in both.
fn same(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

/// Every path on small-integer data (exact in f32) against the unfused reference, bit for bit.
fn check_exact(m: usize, n: usize, k: usize, bias: bool, relu: bool, threads: usize, seed: u64) {
    let mut rng = Rng::seed_from_u64(seed);
    let x = small_ints(&mut rng, m * k);
    let w = small_ints(&mut rng, n * k);
    let b = small_ints(&mut rng, n);
    let epi = LinearEpilogue {
        bias: bias.then_some(&b[..]),
        relu,
    };
    let want = unfused(&x, m, &w, n, k, epi);
    let packed = PackedLinear::pack(&w, n, k).unwrap();
    for path in F32Path::supported() {
        let mut y = vec![f32::NAN; m * n];
        linear_packed_with(path, &x, m, &packed, epi, &mut y, threads).unwrap();
        assert!(
            same(&y, &want),
            "path {} m={m} n={n} k={k} bias={bias} relu={relu} threads={threads} seed={seed}",
            path.name()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn matches_unfused_reference_around_edges(
        m in 0usize..27, n in 0usize..70, k in 0usize..40,
        bias in any::<bool>(), relu in any::<bool>(),
        threads in 0usize..3, seed in any::<u64>(),
    ) {
        check_exact(m, n, k, bias, relu, threads, seed);
    }
}

#[test]
fn edges_of_every_tile_and_k_block() {
    eprintln!("paths run: {:?}", paths());
    // m = 1..=13 crosses every micro-tile height (12, 6, 4 rows) and its edge; n = 300 is
    // 9 panels + 12; k = 1, KC - 1, KC + 1 and 784 (4 blocks of 196) cover the k blocking.
    for m in 1..=13 {
        for &(n, k) in &[
            (1, 1),
            (33, 7),
            (300, 1),
            (17, KC - 1),
            (40, KC + 1),
            (31, 784),
        ] {
            check_exact(m, n, k, true, true, 1, (m * 1000 + k) as u64);
            check_exact(m, n, k, false, false, 1, (m * 1000 + k) as u64 + 1);
        }
    }
    // lenet300's layers at a batch that is not a multiple of any tile, on two threads.
    for &(n, k) in &[(300, 784), (100, 300), (10, 100)] {
        check_exact(37, n, k, true, true, 2, 3);
    }
}

#[test]
fn nan_propagates_and_relu_keeps_it() {
    let (m, n, k) = (13, 35, 300);
    let mut rng = Rng::seed_from_u64(9);
    let mut x = small_ints(&mut rng, m * k);
    let w = small_ints(&mut rng, n * k);
    let mut b = small_ints(&mut rng, n);
    x[5 * k + 200] = f32::NAN; // all of row 5
    b[33] = f32::NAN; // column 33 of every row
    let packed = PackedLinear::pack(&w, n, k).unwrap();
    for path in paths() {
        for m in [1, m] {
            let x = if m == 1 { &x[5 * k..6 * k] } else { &x[..] };
            let epi = LinearEpilogue {
                bias: Some(&b),
                relu: true,
            };
            let want = unfused(x, m, &w, n, k, epi);
            let mut y = vec![0.0; m * n];
            linear_packed_with(path, x, m, &packed, epi, &mut y, 1).unwrap();
            assert!(same(&y, &want), "path {} m={m}", path.name());
            let nans = y.iter().filter(|v| v.is_nan()).count();
            let expected = if m == 1 { n } else { n + m - 1 };
            assert_eq!(nans, expected, "path {} m={m}", path.name());
        }
    }
}

#[test]
fn one_and_two_threads_give_the_same_bits_on_float_data() {
    // lenet300 fc1 (10 panels) and 3 panels (the caller takes 2): both split at m = 1 (from
    // 128 Ki weights), m > 1 splits rows.
    for (n, k, ms) in [(300, 784, &[1, 5, 256, 257][..]), (70, 2000, &[1, 13][..])] {
        same_bits_over_threads(n, k, ms);
    }
}

fn same_bits_over_threads(n: usize, k: usize, ms: &[usize]) {
    let mut rng = Rng::seed_from_u64(21);
    let w: Vec<f32> = (0..n * k).map(|_| rng.normal()).collect();
    let b: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
    let packed = PackedLinear::pack(&w, n, k).unwrap();
    for path in paths() {
        for &m in ms {
            let x: Vec<f32> = (0..m * k).map(|_| rng.normal()).collect();
            let epi = LinearEpilogue {
                bias: Some(&b),
                relu: true,
            };
            let mut y1 = vec![0.0; m * n];
            let mut y2 = vec![1.0; m * n];
            linear_packed_with(path, &x, m, &packed, epi, &mut y1, 1).unwrap();
            linear_packed_with(path, &x, m, &packed, epi, &mut y2, 2).unwrap();
            assert_eq!(y1, y2, "path {} m={m} n={n} k={k}", path.name());
            // Each entry sums k products of unit normals: error ~ sqrt(k) * eps * |terms|.
            let want = unfused(&x, m, &w, n, k, epi);
            assert_close(&y1, &want, 1e-4, 1e-4 * (k as f32).sqrt());
        }
    }
}

#[test]
fn packing_the_transpose_equals_packing_the_weight() {
    for &(n, k) in &[(0, 3), (3, 0), (1, 1), (33, 7), (300, 100), (64, 5)] {
        let mut rng = Rng::seed_from_u64((n * 1000 + k) as u64);
        let w: Vec<f32> = (0..n * k).map(|_| rng.normal()).collect();
        let wt: Vec<f32> = (0..k * n).map(|i| w[(i % n) * k + i / n]).collect();
        assert_eq!(
            PackedLinear::pack_transposed(&wt, k, n).unwrap(),
            PackedLinear::pack(&w, n, k).unwrap(),
            "n={n} k={k}"
        );
    }
    let e = PackedLinear::pack_transposed(&[0.0; 5], 2, 3).unwrap_err();
    assert!(
        matches!(
            e,
            TensorError::DataLength {
                op: "linear: pack transposed weight",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn k_zero_gives_the_bias() {
    let packed = PackedLinear::pack(&[], 3, 0).unwrap();
    let b = [1.0, -2.0, f32::NAN];
    for path in paths() {
        let mut y = vec![5.0; 6];
        let epi = LinearEpilogue {
            bias: Some(&b),
            relu: true,
        };
        linear_packed_with(path, &[], 2, &packed, epi, &mut y, 1).unwrap();
        assert!(same(&y, &[1.0, 0.0, f32::NAN, 1.0, 0.0, f32::NAN]), "{y:?}");
    }
}

#[test]
fn wrong_lengths_are_errors_naming_the_operand() {
    let e = PackedLinear::pack(&[0.0; 5], 2, 3).unwrap_err();
    assert!(
        matches!(
            e,
            TensorError::DataLength {
                op: "linear: pack weight",
                ..
            }
        ),
        "{e}"
    );
    let w = PackedLinear::pack(&[0.0; 6], 2, 3).unwrap();
    assert_eq!((w.n(), w.k()), (2, 3));
    let epi = LinearEpilogue::default();
    let mut y = vec![0.0; 4];
    let e = linear_packed(&[0.0; 5], 2, &w, epi, &mut y, 1).unwrap_err();
    assert!(
        matches!(
            e,
            TensorError::DataLength {
                op: "linear: x",
                ..
            }
        ),
        "{e}"
    );
    let e = linear_packed(&[0.0; 6], 2, &w, epi, &mut y[..3], 1).unwrap_err();
    assert!(
        matches!(
            e,
            TensorError::DataLength {
                op: "linear: y",
                ..
            }
        ),
        "{e}"
    );
    let bias = [0.0; 3];
    let epi = LinearEpilogue {
        bias: Some(&bias),
        relu: false,
    };
    let e = linear_packed(&[0.0; 6], 2, &w, epi, &mut y, 1).unwrap_err();
    assert!(
        matches!(
            e,
            TensorError::DataLength {
                op: "linear: bias",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("needs 2"), "{e}");
}
