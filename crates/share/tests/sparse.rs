//! Sparse + shared rows: equal to the dense reference rebuilt from the codebook (exact on
//! small integers, every tier), the same matrix from dense codes and from Deep
//! Compression's relative indices, and typed errors naming the corrupt field.

use proptest::prelude::*;
use share::{ColIndices, ShareError, SparseShared};
use tensor_core::dispatch::F32Path;
use tensor_core::gemm::{GemmParams, gemm_reference};
use tensor_core::rng::Rng;

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

/// `Y = X W^T` with `W` dense, in f64 (the reference).
fn dense_forward(w: &[f32], rows: usize, cols: usize, batch: usize, x: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0; batch * rows];
    gemm_reference(
        batch,
        rows,
        cols,
        x,
        w,
        &mut y,
        &GemmParams::with_trans(false, true),
    )
    .unwrap();
    y
}

/// Deep Compression's relative indices of dense codes, written out naively: gaps of at
/// most `2^gap_bits - 1` zeros, a filler (code 0) where a run is longer.
fn relative_index(codes: &[u8], gap_bits: u32) -> (Vec<u16>, Vec<u16>) {
    let max = (1usize << gap_bits) - 1;
    let (mut gaps, mut values) = (Vec::new(), Vec::new());
    let mut run = 0usize;
    for &c in codes {
        if c == 0 {
            run += 1;
            if run > max {
                gaps.push(max as u16);
                values.push(0);
                run = 0;
            }
        } else {
            gaps.push(run as u16);
            values.push(c as u16);
            run = 0;
        }
    }
    (gaps, values)
}

fn random_case(
    rng: &mut Rng,
    rows: usize,
    cols: usize,
    k: usize,
    density: f32,
) -> (Vec<f32>, Vec<u8>) {
    let mut centroids: Vec<f32> = (0..k).map(|_| rng.below(17) as f32 - 8.0).collect();
    centroids[0] = 0.0;
    let codes = (0..rows * cols)
        .map(|_| {
            if k > 1 && rng.uniform() < density {
                1 + rng.below(k - 1) as u8
            } else {
                0
            }
        })
        .collect();
    (centroids, codes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn sparse_shared_equals_dense_reference(
        rows in 0usize..6,
        cols in 1usize..80,
        bits in 1u32..=8,
        density in prop::sample::select(vec![0.0f32, 0.1, 0.5, 1.0]),
        batch in prop::sample::select(vec![1usize, 2, 3, 4, 32, 33, 70]),
        gap_bits in 1u32..=8,
        seed in any::<u64>(),
    ) {
        let mut rng = Rng::seed_from_u64(seed);
        let k = 1 + rng.below(1 << bits);
        let (centroids, codes) = random_case(&mut rng, rows, cols, k, density);
        let m = SparseShared::from_dense_codes(rows, cols, &centroids, &codes).unwrap();
        let dense: Vec<f32> = codes.iter().map(|&c| centroids[c as usize]).collect();
        prop_assert_eq!(&m.to_dense(), &dense);
        prop_assert_eq!(m.nnz(), codes.iter().filter(|&&c| c != 0).count());
        let (gaps, values) = relative_index(&codes, gap_bits);
        let r = SparseShared::from_relative_index(rows, cols, &centroids, &gaps, &values).unwrap();
        prop_assert_eq!(&r, &m, "relative index, seed {}", seed);
        let x: Vec<f32> = (0..batch * cols).map(|_| rng.below(17) as f32 - 8.0).collect();
        let expected = dense_forward(&dense, rows, cols, batch, &x);
        for tier in tiers() {
            let mut y = vec![f32::NAN; batch * rows];
            m.forward_with(tier, batch, &x, &mut y).unwrap();
            prop_assert_eq!(&y, &expected, "tier {}, seed {}", tier.name(), seed);
            let mut y1 = vec![f32::NAN; rows];
            m.gemv_with(tier, &x[..cols], &mut y1).unwrap();
            prop_assert_eq!(&y1[..], &expected[..rows], "gemv, tier {}, seed {}", tier.name(), seed);
        }
    }
}

#[test]
fn wide_rows_use_u32_columns() {
    let mut rng = Rng::seed_from_u64(4);
    let (rows, cols) = (3, 70_000);
    let (centroids, codes) = random_case(&mut rng, rows, cols, 32, 0.01);
    let m = SparseShared::from_dense_codes(rows, cols, &centroids, &codes).unwrap();
    assert!(matches!(m.col_indices(), ColIndices::U32(_)));
    assert_eq!(m.bytes(), 4 * 4 + 5 * m.nnz() + 4 * 32);
    let x: Vec<f32> = (0..2 * cols).map(|_| rng.below(17) as f32 - 8.0).collect();
    let dense = m.to_dense();
    let expected = dense_forward(&dense, rows, cols, 2, &x);
    for tier in tiers() {
        let mut y = vec![0.0; 2 * rows];
        m.forward_with(tier, 2, &x, &mut y).unwrap();
        assert_eq!(y, expected, "tier {}", tier.name());
        let mut y1 = vec![0.0; rows];
        m.gemv_with(tier, &x[..cols], &mut y1).unwrap();
        assert_eq!(y1, expected[..rows], "gemv, tier {}", tier.name());
    }
}

#[test]
fn large_layer_runs_in_parallel_within_tolerance() {
    // 4096 x 784 at 10% density: above the parallel threshold; real-valued data.
    let mut rng = Rng::seed_from_u64(9);
    let (rows, cols) = (1024, 784);
    let mut centroids: Vec<f32> = (0..32).map(|_| 0.1 * rng.normal()).collect();
    centroids[0] = 0.0;
    let codes: Vec<u8> = (0..rows * cols)
        .map(|_| {
            if rng.uniform() < 0.1 {
                1 + rng.below(31) as u8
            } else {
                0
            }
        })
        .collect();
    let m = SparseShared::from_dense_codes(rows, cols, &centroids, &codes).unwrap();
    let x: Vec<f32> = (0..8 * cols).map(|_| rng.uniform()).collect();
    let expected = dense_forward(&m.to_dense(), rows, cols, 8, &x);
    for tier in tiers() {
        let mut y = vec![0.0; 8 * rows];
        m.forward_with(tier, 8, &x, &mut y).unwrap();
        tensor_core::testing::assert_close(&y, &expected, 1e-4, 1e-5);
        let mut y1 = vec![0.0; rows];
        m.gemv_with(tier, &x[..cols], &mut y1).unwrap();
        tensor_core::testing::assert_close(&y1, &expected[..rows], 1e-4, 1e-5);
    }
}

#[test]
fn corrupt_parts_name_the_field() {
    let c = [0.0f32, 1.0, 2.0];
    let parts = |starts: Vec<u32>, cols: Vec<u16>, codes: Vec<u8>| {
        SparseShared::from_parts(2, 4, &c, starts, ColIndices::U16(cols), codes)
    };
    parts(vec![0, 1, 2], vec![3, 0], vec![1, 2]).unwrap();
    let msg = |r: share::Result<SparseShared>| r.unwrap_err().to_string();
    assert_eq!(
        msg(parts(vec![0, 2], vec![3, 0], vec![1, 2])),
        "SparseShared::from_parts: row_starts has length 2, expected 3"
    );
    assert_eq!(
        msg(parts(vec![1, 1, 2], vec![3, 0], vec![1, 2])),
        "SparseShared::from_parts: row_starts: runs from 1 to 2, expected 0 to 2"
    );
    assert_eq!(
        msg(parts(vec![0, 3, 2], vec![3, 0], vec![1, 2])),
        "SparseShared::from_parts: row_starts: row 1 starts at 3 after its end 2"
    );
    assert_eq!(
        msg(parts(vec![0, 2, 2], vec![3, 1], vec![1, 2])),
        "SparseShared::from_parts: col_indices: entry 1 (row 0) has column 1: expected above Some(3) and below 4"
    );
    assert_eq!(
        msg(parts(vec![0, 1, 2], vec![3, 4], vec![1, 2])),
        "SparseShared::from_parts: col_indices: entry 1 (row 1) has column 4: expected above None and below 4"
    );
    assert_eq!(
        msg(parts(vec![0, 1, 2], vec![3], vec![1, 2])),
        "SparseShared::from_parts: col_indices has length 1, expected 2"
    );
    assert_eq!(
        msg(parts(vec![0, 1, 2], vec![3, 0], vec![1, 3])),
        "SparseShared::from_parts: code 3 at position 1 is past the codebook of 3 centroids"
    );
    assert!(matches!(
        parts(vec![0, 1, 2], vec![3, 0], vec![0, 1]),
        Err(ShareError::CodeOutOfRange {
            index: 0,
            code: 0,
            ..
        })
    ));
    let e = SparseShared::from_dense_codes(1, 2, &[0.5, 1.0], &[0, 1]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "SparseShared::from_dense_codes: centroids: centroid 0 is 0.5, expected 0.0 (code 0 is the zero absent entries stand for)"
    );
    let e = SparseShared::from_relative_index(2, 4, &c, &[3, 4], &[1, 2]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "SparseShared::from_relative_index: 2 entries reach position 8, past the length 8"
    );
    assert!(matches!(
        e,
        ShareError::Sparse(tensor_core::sparse::SparseError::PastEnd {
            entries: 2,
            last: 8,
            len: 8,
            ..
        })
    ));
    let e = SparseShared::from_relative_index(2, 4, &c, &[3, 0], &[1, 300]).unwrap_err();
    assert!(
        matches!(
            e,
            ShareError::CodeOutOfRange {
                index: 1,
                code: 300,
                ..
            }
        ),
        "{e}"
    );
    let e = SparseShared::from_relative_index(2, 4, &c, &[3], &[1, 1]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "SparseShared::from_relative_index: codes has length 2, expected 1"
    );
    let e = SparseShared::from_dense_codes(usize::MAX, 0, &c, &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "SparseShared::from_dense_codes: rows = {} is too large (at most 16777216)",
            usize::MAX
        )
    );
    let m = SparseShared::from_dense_codes(2, 4, &c, &[0, 1, 0, 2, 1, 0, 0, 0]).unwrap();
    let e = m.gemv(&[1.0; 3], &mut [0.0; 2]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "SparseShared::gemv: x has length 3, expected 4"
    );
}
