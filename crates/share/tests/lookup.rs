//! Lookup kernels against the dense reference rebuilt from the codebook: exact on small
//! integers over edge shapes, every codebook size class and every tier this CPU has; within
//! a stated tolerance on real-sized layers; typed errors on corrupt inputs.

use proptest::prelude::*;
use share::lookup::reference;
use share::{KMeansParams, PackedCodes, ShareError, SharedMatrix, gemv_packed, share_nonzeros};
use tensor_core::dispatch::F32Path;
use tensor_core::rng::Rng;
use tensor_core::testing::assert_close;

/// The tiers this CPU runs; says which are skipped.
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

/// Small integers: every sum below is exact in f32, so all orders agree bit for bit.
fn small_ints(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.below(17) as f32 - 8.0).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn shared_forward_equals_dense_reference(
        rows in 0usize..6,
        cols in 1usize..80,
        bits in 1u32..=8,
        batch in prop::sample::select(vec![1usize, 2, 3, 4, 32, 33, 70]),
        all_zero in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut rng = Rng::seed_from_u64(seed);
        let k = 1 + rng.below(1 << bits); // any k up to 2^bits
        let centroids = small_ints(&mut rng, k);
        let codes: Vec<u8> = (0..rows * cols)
            .map(|_| if all_zero { 0 } else { rng.below(k) as u8 })
            .collect();
        let x = small_ints(&mut rng, batch * cols);
        let m = SharedMatrix::new(rows, cols, &centroids, codes.clone()).unwrap();
        let expected = reference::forward(&m, batch, &x).unwrap();
        let packed = PackedCodes::pack(&codes, bits).unwrap();
        for tier in tiers() {
            let mut y = vec![f32::NAN; batch * rows];
            m.forward_with(tier, batch, &x, &mut y).unwrap();
            prop_assert_eq!(&y, &expected, "tier {}, seed {}", tier.name(), seed);
            let mut y1 = vec![f32::NAN; rows];
            m.gemv_with(tier, &x[..cols], &mut y1).unwrap();
            prop_assert_eq!(&y1[..], &expected[..rows], "gemv, tier {}, seed {}", tier.name(), seed);
            let mut yp = vec![f32::NAN; rows];
            gemv_packed(tier, rows, cols, &centroids, &packed, &x[..cols], &mut yp).unwrap();
            prop_assert_eq!(&yp[..], &expected[..rows], "packed, tier {}, seed {}", tier.name(), seed);
        }
        let mut ys = vec![f32::NAN; rows];
        m.gemv_sum_per_centroid(&x[..cols], &mut ys).unwrap();
        prop_assert_eq!(&ys[..], &expected[..rows], "sum per centroid, seed {}", seed);
    }
}

#[test]
fn zero_rows_and_empty_batches() {
    let m = SharedMatrix::new(0, 5, &[1.0], vec![]).unwrap();
    let mut y: Vec<f32> = vec![];
    m.forward(3, &[0.0; 15], &mut y).unwrap();
    let m = SharedMatrix::new(2, 0, &[1.0], vec![]).unwrap();
    let mut y = vec![f32::NAN; 2];
    m.gemv(&[], &mut y).unwrap();
    assert_eq!(y, [0.0, 0.0], "an empty row sums to 0");
    let m = SharedMatrix::new(2, 3, &[1.0], vec![0; 6]).unwrap();
    m.forward(0, &[], &mut []).unwrap();
}

/// A layer shared as the pipeline does (k-means over nonzeros), on real-sized shapes: the
/// kernels against the f64 reference within `1e-4 * sum |w x|`-scaled tolerance.
#[test]
fn real_layers_within_tolerance() {
    let mut rng = Rng::seed_from_u64(21);
    for (name, rows, cols, bits, batch) in [
        ("lenet300.fc1", 300, 784, 5, 1),
        ("lenet300.fc1", 300, 784, 5, 64),
        ("lenet300.fc2", 100, 300, 8, 7),
        ("tail", 33, 1001, 6, 1),
    ] {
        let w: Vec<f32> = (0..rows * cols)
            .map(|_| {
                if rng.uniform() < 0.1 {
                    0.05 * rng.normal()
                } else {
                    0.0
                }
            })
            .collect();
        let shared = share_nonzeros(&w, bits, &KMeansParams::default()).unwrap();
        let m = SharedMatrix::from_shared(rows, cols, &shared).unwrap();
        assert_eq!(m.to_dense(), shared.reconstruct().unwrap());
        let x: Vec<f32> = (0..batch * cols).map(|_| rng.uniform()).collect();
        let expected = reference::forward(&m, batch, &x).unwrap();
        for tier in tiers() {
            let mut y = vec![0.0; batch * rows];
            m.forward_with(tier, batch, &x, &mut y).unwrap();
            eprintln!("{name} batch {batch}: tier {} ran", tier.name());
            assert_close(&y, &expected, 1e-4, 1e-5);
        }
    }
}

#[test]
fn corrupt_inputs_give_typed_errors() {
    let e = SharedMatrix::new(2, 3, &[0.0, 1.0], vec![0, 1, 2, 0, 0, 0]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "SharedMatrix::new: code 2 at position 2 is past the codebook of 2 centroids"
    );
    let e = SharedMatrix::new(2, 3, &[0.0, 1.0], vec![0; 5]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "SharedMatrix::new: codes has length 5, expected 6"
    );
    let e = SharedMatrix::new(1, 1, &[], vec![0]).unwrap_err();
    assert!(matches!(e, ShareError::InvalidK { k: 0, .. }), "{e}");
    let e = SharedMatrix::new(1, 1, &[0.0; 257], vec![0]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "SharedMatrix::new: centroids = 257 is too large (at most 256)"
    );
    let e = SharedMatrix::new(1, 1, &[0.0, f32::NAN], vec![0]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "SharedMatrix::new: value 1 is NaN, not finite"
    );
    let e = SharedMatrix::new(usize::MAX, 2, &[0.0], vec![]).unwrap_err();
    assert!(matches!(e, ShareError::TooLarge { .. }), "{e}");

    let m = SharedMatrix::new(2, 3, &[0.0, 1.0], vec![1; 6]).unwrap();
    let e = m.gemv(&[1.0; 2], &mut [0.0; 2]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "SharedMatrix::gemv: x has length 2, expected 3"
    );
    let e = m.forward(2, &[1.0; 6], &mut [0.0; 3]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "SharedMatrix::forward: y has length 3, expected 4"
    );

    // Packed payloads: too wide, wrong count, index >= k.
    let p9 = PackedCodes::pack(&[1u16; 6], 9).unwrap();
    let e = SharedMatrix::from_packed(2, 3, &[0.0, 1.0], &p9).unwrap_err();
    assert!(
        matches!(
            e,
            ShareError::InvalidBits {
                bits: 9,
                max: 8,
                ..
            }
        ),
        "{e}"
    );
    let p = PackedCodes::pack(&[1u8, 0, 3, 0, 0, 0], 2).unwrap();
    let e = SharedMatrix::from_packed(2, 3, &[0.0, 1.0], &p).unwrap_err();
    assert!(
        matches!(
            e,
            ShareError::CodeOutOfRange {
                index: 2,
                code: 3,
                len: 2,
                ..
            }
        ),
        "{e}"
    );
    let mut y = [0.0; 2];
    let e = gemv_packed(F32Path::Portable, 2, 3, &[0.0, 1.0], &p, &[1.0; 3], &mut y).unwrap_err();
    assert_eq!(
        e.to_string(),
        "gemv_packed: code 3 at position 2 is past the codebook of 2 centroids"
    );
    let e = gemv_packed(F32Path::Portable, 2, 4, &[0.0, 1.0], &p, &[1.0; 4], &mut y).unwrap_err();
    assert_eq!(e.to_string(), "gemv_packed: codes has length 6, expected 8");

    for t in [F32Path::Avx2Fma, F32Path::Avx512F] {
        if t.is_supported() {
            eprintln!(
                "tier {} is supported here: its unsupported-tier error is not reachable",
                t.name()
            );
        } else {
            let e = m.gemv_with(t, &[1.0; 3], &mut [0.0; 2]).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "SharedMatrix::gemv: kernel tier {} is not supported by this CPU",
                    t.name()
                )
            );
        }
    }
}
