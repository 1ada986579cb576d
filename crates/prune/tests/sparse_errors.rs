//! Every error of the sparse formats and kernels, raised through the public API where it can
//! be, with its message checked: each names the operation and the offending values.

use prune::sparse::{
    ColIndices, Csr, MAX_SPARSE_DIM, SparseParams, pack_bits, sparse_conv2d, spmm, spmv,
    unpack_bits,
};
use prune::{PruneError, RelativeIndexed};
use tensor_core::Tensor;
use tensor_core::conv::Conv2dParams;
use tensor_core::dispatch::F32Path;

/// Asserts that `r` failed with a message containing `want`.
#[track_caller]
fn fails_with<T: std::fmt::Debug>(r: Result<T, PruneError>, want: &str) -> PruneError {
    let e = r.expect_err("an error");
    assert!(e.to_string().contains(want), "message {e:?} lacks {want:?}");
    e
}

fn parts(row_ptr: Vec<u32>, cols: Vec<u16>, values: Vec<f32>) -> Result<Csr, PruneError> {
    Csr::from_parts(
        row_ptr.len().saturating_sub(1),
        4,
        row_ptr,
        ColIndices::U16(cols),
        values,
    )
}

#[test]
fn csr_from_parts_names_each_violation() {
    let e = fails_with(
        Csr::from_parts(
            MAX_SPARSE_DIM + 1,
            2,
            vec![],
            ColIndices::U16(vec![]),
            vec![],
        ),
        "Csr::from_parts: a 16777217 x 2 matrix is too large (each side at most 16777216)",
    );
    assert!(matches!(e, PruneError::MatrixTooLarge { .. }));
    fails_with(
        Csr::from_parts(2, 4, vec![0, 1], ColIndices::U16(vec![0]), vec![1.0]),
        "Csr::from_parts: row_ptr of 2 rows has length 2, expected 3",
    );
    fails_with(
        parts(vec![0, 1], vec![0, 1], vec![1.0]),
        "Csr::from_parts: col_idx has length 2, expected 1",
    );
    let e = fails_with(
        parts(vec![1, 1], vec![0], vec![1.0]),
        "Csr::from_parts: row_ptr[0] is 1, expected 0",
    );
    assert!(matches!(e, PruneError::RowPtrStart { first: 1, .. }));
    let e = fails_with(
        parts(vec![0, 2, 1, 2], vec![0, 1], vec![1.0, 2.0]),
        "Csr::from_parts: row 1 ends at 1, before its start 2 (row_ptr must not decrease)",
    );
    assert!(matches!(e, PruneError::RowPtrDecreasing { row: 1, .. }));
    let e = fails_with(
        parts(vec![0, 1], vec![0, 1], vec![1.0, 2.0]),
        "Csr::from_parts: row_ptr ends at 1, but 2 values are stored",
    );
    assert!(matches!(e, PruneError::RowPtrEnd { end: 1, nnz: 2, .. }));
    let e = fails_with(
        parts(vec![0, 1, 3], vec![2, 0, 4], vec![1.0, 2.0, 3.0]),
        "Csr::from_parts: row 1, entry 2: column 4 is out of range for 4 columns",
    );
    assert!(matches!(
        e,
        PruneError::ColumnOutOfRange {
            row: 1,
            entry: 2,
            col: 4,
            cols: 4,
            ..
        }
    ));
    let e = fails_with(
        parts(vec![0, 2], vec![3, 3], vec![1.0, 2.0]),
        "Csr::from_parts: row 0, entry 1: column 3 follows column 3 (columns must strictly increase within a row)",
    );
    assert!(matches!(
        e,
        PruneError::ColumnsNotIncreasing {
            prev: 3,
            col: 3,
            ..
        }
    ));
    let e = fails_with(
        parts(vec![0, 0, 2], vec![1, 2], vec![5.0, -0.0]),
        "Csr::from_parts: row 1, entry 1 stores the value -0, but CSR stores nonzeros only",
    );
    assert!(matches!(
        e,
        PruneError::StoredZero {
            row: 1,
            entry: 1,
            ..
        }
    ));
}

#[test]
fn csr_from_dense_errors() {
    fails_with(
        Csr::from_dense(2, 3, &[1.0; 5]),
        "Csr::from_dense: dense data of a 2 x 3 matrix has length 5, expected 6",
    );
    // More than u32::MAX nonzeros cannot be built in a test's memory; the message:
    let e = PruneError::TooManyNonzeros {
        op: "Csr::from_dense",
        nnz: 1 << 32,
        max: u32::MAX as usize,
    };
    assert_eq!(
        e.to_string(),
        "Csr::from_dense: 4294967296 nonzeros exceed the u32 row-pointer range (4294967295)"
    );
}

#[test]
fn relative_index_errors() {
    let ri = |gaps: Vec<u16>, values: Vec<f32>, len| RelativeIndexed {
        gaps,
        values,
        index_bits: 5,
        len,
    };
    let e = fails_with(
        Csr::from_relative_index(2, 8, &ri(vec![3, 32], vec![1.0, 2.0], 16)),
        "Csr::from_relative_index: gap 1 is 32, above 2^5 - 1 = 31",
    );
    assert!(matches!(
        e,
        PruneError::GapTooWide {
            entry: 1,
            gap: 32,
            max: 31,
            ..
        }
    ));
    let e = fails_with(
        Csr::from_relative_index(2, 8, &ri(vec![10, 5], vec![1.0, 2.0], 16)),
        "Csr::from_relative_index: 2 entries reach position 16, past the length 16",
    );
    assert!(matches!(
        e,
        PruneError::PastEnd {
            entries: 2,
            last: 16,
            len: 16,
            ..
        }
    ));
    fails_with(
        Csr::from_relative_index(2, 8, &ri(vec![1], vec![1.0], 15)),
        "Csr::from_relative_index: relative index of a 2 x 8 matrix has length 15, expected 16",
    );
    fails_with(
        Csr::from_relative_index(2, 8, &ri(vec![1], vec![], 16)),
        "Csr::from_relative_index: values has length 0, expected 1",
    );
    let m = Csr::from_dense(1, 2, &[1.0, 0.0]).unwrap();
    fails_with(
        m.to_relative_index(0),
        "Csr::to_relative_index: index_bits = 0, expected 1..=16",
    );
}

#[test]
fn bit_packing_errors() {
    let e = fails_with(
        pack_bits(&[1, 40], 5),
        "pack_bits: value 1 is 40, wider than 5 bits",
    );
    assert!(matches!(
        e,
        PruneError::ValueTooWide {
            index: 1,
            value: 40,
            bits: 5,
            ..
        }
    ));
    let e = fails_with(
        unpack_bits(&[0xff], 5, 2),
        "unpack_bits: 2 fields of 5 bits need 2 bytes, got 1",
    );
    assert!(matches!(
        e,
        PruneError::PackedLength {
            count: 2,
            got: 1,
            expected: 2,
            ..
        }
    ));
    let e = fails_with(
        unpack_bits(&[0b1110_0001], 5, 1),
        "unpack_bits: padding bits after field 1 are 0x7, expected 0",
    );
    assert!(matches!(e, PruneError::NonzeroPadding { padding: 7, .. }));
    fails_with(
        RelativeIndexed::<f32>::from_packed(&[0xff], 5, vec![1.0], 100),
        "unpack_bits: padding bits after field 1 are 0x7, expected 0",
    );
}

#[test]
fn kernel_operand_errors() {
    let m = Csr::from_dense(2, 3, &[1.0, 0.0, 2.0, 0.0, 3.0, 0.0]).unwrap();
    let p = SparseParams::default();
    fails_with(
        spmv(&m, &[1.0; 4], None, &mut [0.0; 2], &p),
        "spmv: input [1, 3] has length 4, expected 3",
    );
    fails_with(
        spmv(&m, &[1.0; 3], None, &mut [0.0; 3], &p),
        "spmv: output [1, 2] has length 3, expected 2",
    );
    fails_with(
        spmm(&m, &[1.0; 12], 4, Some(&[0.0; 3]), &mut [0.0; 8], &p),
        "spmm: bias has length 3, expected 2",
    );
    fails_with(
        spmm(&m, &[1.0; 12], 3, None, &mut [0.0; 6], &p),
        "spmm: input [3, 3] has length 12, expected 9",
    );
}

#[test]
fn unsupported_tier_is_an_error() {
    let m = Csr::from_dense(1, 1, &[1.0]).unwrap();
    let want = |t: F32Path| {
        format!(
            "spmv: kernel tier {} is not supported by this CPU",
            t.name()
        )
    };
    match [F32Path::Avx2Fma, F32Path::Avx512F]
        .into_iter()
        .find(|t| !t.is_supported())
    {
        Some(t) => {
            let p = SparseParams::default().tier(t);
            let e = fails_with(spmv(&m, &[1.0], None, &mut [0.0], &p), &want(t));
            assert!(matches!(e, PruneError::UnsupportedTier { .. }));
        }
        None => {
            eprintln!(
                "every kernel tier is supported here: UnsupportedTier checked by message only"
            );
            let e = PruneError::UnsupportedTier {
                op: "spmv",
                tier: F32Path::Avx512F,
            };
            assert_eq!(e.to_string(), want(F32Path::Avx512F));
        }
    }
}

#[test]
fn conv_errors() {
    let p = Conv2dParams::new(2, 3, (2, 2));
    let x = Tensor::zeros_dims(&[1, 2, 4, 4]).unwrap();
    let sp = SparseParams::default();
    let wrong = Csr::from_dense(3, 7, &[0.0; 21]).unwrap();
    let e = fails_with(
        sparse_conv2d(&x, &wrong, None, &p, &sp),
        "sparse_conv2d: weight matrix is 3 x 7, the convolution needs 3 x 8",
    );
    assert!(matches!(e, PruneError::ConvWeightShape { .. }));
    let w = Csr::from_dense(3, 8, &[0.0; 24]).unwrap();
    fails_with(
        sparse_conv2d(&x, &w, Some(&[0.0; 2]), &p, &sp),
        "sparse_conv2d: bias has length 2, expected 3",
    );
    let bad_rank = Tensor::zeros_dims(&[2, 4, 4]).unwrap();
    let e = fails_with(
        sparse_conv2d(&bad_rank, &w, None, &p, &sp),
        "conv2d: expected rank 4",
    );
    assert!(matches!(e, PruneError::Tensor(_)));
}
