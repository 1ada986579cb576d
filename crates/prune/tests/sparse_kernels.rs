//! Property tests of the sparse kernels against their reference twins and against the dense
//! references on the same masked weights, on every kernel tier this CPU runs, on one and two
//! threads.
//!
//! Small-integer data (weights in {-3..3}, inputs in {-4..4}) keeps every partial sum exact in
//! f32, so fast kernels, references and dense references must agree bit for bit whatever
//! their summation order. Gaussian data checks the stated tolerance: each output within
//! `2 * (n + 2) * eps * (sum_k |w_k x_k| + |b|)` of the f64 reference, `n` the row's nonzeros.

use proptest::prelude::*;
use prune::sparse::{
    Batch1Layout, Csr, PAR_MIN_NNZ, SellCs, SellPerm, SparseParams, sparse_conv2d, spmm,
    spmm_reference, spmv, spmv_reference, spmv_sell, spmv_sell_perm,
};
use tensor_core::Tensor;
use tensor_core::conv::{Conv2dParams, Padding, conv2d_forward_reference};
use tensor_core::dispatch::F32Path;
use tensor_core::gemm::{GemmParams, gemm_reference};
use tensor_core::rng::Rng;

/// Every tier this CPU supports, saying which run and which are skipped.
fn tiers() -> Vec<F32Path> {
    let all = [F32Path::Portable, F32Path::Avx2Fma, F32Path::Avx512F];
    for t in all {
        if !t.is_supported() {
            eprintln!(
                "sparse kernels: tier {} not supported by this CPU, skipped",
                t.name()
            );
        }
    }
    F32Path::supported()
}

/// Every tier on one thread, on two threads with the default thresholds, and on two
/// threads forking whatever the size (so small cases reach the parallel split too).
fn params() -> Vec<SparseParams> {
    let mut v = Vec::new();
    for t in tiers() {
        let p = SparseParams::default().tier(t);
        v.push(p.threads(1));
        v.push(p.threads(2));
        v.push(p.threads(2).par_threshold(Some(0)));
    }
    v
}

/// A masked `rows x cols` weight: small integers kept with probability `density`, a fifth of
/// the rows empty.
fn masked_ints(rng: &mut Rng, rows: usize, cols: usize, density: f32) -> Vec<f32> {
    let mut d = vec![0.0f32; rows * cols];
    for r in 0..rows {
        let empty = rng.below(5) == 0;
        for c in 0..cols {
            if !empty && rng.uniform() < density {
                d[r * cols + c] = [-3.0, -2.0, -1.0, 1.0, 2.0, 3.0][rng.below(6)];
            }
        }
    }
    d
}

fn ints(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.below(9) as f32 - 4.0).collect()
}

/// Checks spmm (and spmv at batch 1) against both references, exactly.
fn check_linear_exact(rows: usize, cols: usize, batch: usize, density: f32, seed: u64) {
    let mut rng = Rng::seed_from_u64(seed);
    let w = masked_ints(&mut rng, rows, cols, density);
    let x = ints(&mut rng, batch * cols);
    let bias = ints(&mut rng, rows);
    let csr = Csr::from_dense(rows, cols, &w).unwrap();
    let mut reference = vec![0.0; batch * rows];
    spmm_reference(&csr, &x, batch, Some(&bias), &mut reference).unwrap();
    // Dense reference on the same masked weights: Y = X W^T, plus the bias.
    let mut dense = vec![0.0; batch * rows];
    let gp = GemmParams::with_trans(false, true);
    gemm_reference(batch, rows, cols, &x, &w, &mut dense, &gp).unwrap();
    for row in dense.chunks_exact_mut(rows.max(1)) {
        row.iter_mut().zip(&bias).for_each(|(v, &b)| *v += b);
    }
    assert_eq!(
        reference, dense,
        "{rows}x{cols} batch {batch} density {density} seed {seed}"
    );
    for p in params() {
        let mut y = vec![f32::NAN; batch * rows];
        spmm(&csr, &x, batch, Some(&bias), &mut y, &p).unwrap();
        assert_eq!(
            y, reference,
            "spmm {p:?} {rows}x{cols} batch {batch} d {density} seed {seed}"
        );
        if batch == 1 {
            let mut r1 = vec![f32::NAN; rows];
            spmv_reference(&csr, &x, Some(&bias), &mut r1).unwrap();
            assert_eq!(r1, reference, "spmv_reference {rows}x{cols} seed {seed}");
            let mut y1 = vec![f32::NAN; rows];
            spmv(&csr, &x, Some(&bias), &mut y1, &p).unwrap();
            assert_eq!(
                y1, reference,
                "spmv {p:?} {rows}x{cols} d {density} seed {seed}"
            );
            let mut y2 = vec![f32::NAN; rows];
            spmv_sell(&SellCs::from_csr(&csr), &x, Some(&bias), &mut y2, &p).unwrap();
            assert_eq!(
                y2, reference,
                "spmv_sell {p:?} {rows}x{cols} d {density} seed {seed}"
            );
            let mut y3 = vec![f32::NAN; rows];
            spmv_sell_perm(&SellPerm::from_csr(&csr), &x, Some(&bias), &mut y3, &p).unwrap();
            assert_eq!(
                y3, reference,
                "spmv_sell_perm {p:?} {rows}x{cols} d {density} seed {seed}"
            );
            let mut y4 = vec![f32::NAN; rows];
            let layout = Batch1Layout::for_csr(&csr);
            layout.spmv(&x, Some(&bias), &mut y4, &p).unwrap();
            assert_eq!(
                y4,
                reference,
                "{} {p:?} {rows}x{cols} d {density} seed {seed}",
                layout.name()
            );
        }
    }
}

/// Checks spmm on Gaussian data against the f64 reference within the stated tolerance.
fn check_linear_tolerance(rows: usize, cols: usize, batch: usize, density: f32, seed: u64) {
    let mut rng = Rng::seed_from_u64(seed);
    let w: Vec<f32> = (0..rows * cols)
        .map(|_| {
            if rng.uniform() < density {
                rng.normal()
            } else {
                0.0
            }
        })
        .collect();
    let x: Vec<f32> = (0..batch * cols).map(|_| rng.normal()).collect();
    let bias: Vec<f32> = (0..rows).map(|_| rng.normal()).collect();
    let csr = Csr::from_dense(rows, cols, &w).unwrap();
    let mut reference = vec![0.0; batch * rows];
    spmm_reference(&csr, &x, batch, Some(&bias), &mut reference).unwrap();
    // sum |w x| + |b| per output: the reference on absolute values.
    let abs = |v: &[f32]| v.iter().map(|a| a.abs()).collect::<Vec<f32>>();
    let abs_csr = Csr::from_dense(rows, cols, &abs(&w)).unwrap();
    let mut magnitude = vec![0.0; batch * rows];
    spmm_reference(&abs_csr, &abs(&x), batch, Some(&abs(&bias)), &mut magnitude).unwrap();
    let sell = SellCs::from_csr(&csr);
    let perm = SellPerm::from_csr(&csr);
    for p in params() {
        let mut y = vec![f32::NAN; batch * rows];
        spmm(&csr, &x, batch, Some(&bias), &mut y, &p).unwrap();
        // SELL runs the first sample of the batch.
        let mut first = vec![f32::NAN; batch.min(1) * rows];
        spmv_sell(
            &sell,
            &x[..cols * batch.min(1)],
            Some(&bias),
            &mut first,
            &p,
        )
        .unwrap();
        let mut first_perm = vec![f32::NAN; batch.min(1) * rows];
        spmv_sell_perm(
            &perm,
            &x[..cols * batch.min(1)],
            Some(&bias),
            &mut first_perm,
            &p,
        )
        .unwrap();
        let both = y
            .iter()
            .zip(&reference)
            .zip(&magnitude)
            .chain(first.iter().zip(&reference).zip(&magnitude))
            .chain(first_perm.iter().zip(&reference).zip(&magnitude));
        for (i, ((&got, &want), &mag)) in both.enumerate() {
            let r = i % rows;
            let n = csr.row_ptr()[r + 1] - csr.row_ptr()[r];
            let tol = 2.0 * (n as f32 + 2.0) * f32::EPSILON * mag;
            assert!(
                (got - want).abs() <= tol,
                "{p:?} {rows}x{cols} batch {batch} seed {seed}: output {i} = {got}, reference {want}, tolerance {tol}"
            );
        }
    }
}

fn density() -> impl Strategy<Value = f32> {
    prop::sample::select(vec![0.0f32, 0.1, 0.5, 1.0])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Sizes around the kernels' block edges: batch 1 (spmv), 2..8, 9, 63, 64, 65, 130;
    /// 0 rows, 1 column.
    #[test]
    fn linear_equals_references_exactly(
        rows in prop_oneof![Just(0usize), 1usize..40],
        cols in prop_oneof![Just(1usize), 1usize..100],
        batch in prop_oneof![Just(1usize), 0usize..10, 62usize..67, Just(130usize)],
        density in density(), seed in any::<u64>(),
    ) {
        check_linear_exact(rows, cols, batch, density, seed);
    }

    #[test]
    fn linear_within_tolerance_on_gaussian_data(
        rows in 1usize..30, cols in 1usize..300, batch in 1usize..70,
        density in density(), seed in any::<u64>(),
    ) {
        check_linear_tolerance(rows, cols, batch, density, seed);
    }
}

/// Gaussian data, so summation order shows in the last bits: column-block SELL on every
/// tier and thread count equals the portable single-thread path bit for bit.
fn check_perm_tiers_bit_exact(rows: usize, cols: usize, density: f32, seed: u64) {
    let mut rng = Rng::seed_from_u64(seed);
    let w: Vec<f32> = (0..rows * cols)
        .map(|_| {
            if rng.uniform() < density {
                rng.normal()
            } else {
                0.0
            }
        })
        .collect();
    let x: Vec<f32> = (0..cols).map(|_| rng.normal()).collect();
    let bias: Vec<f32> = (0..rows).map(|_| rng.normal()).collect();
    let perm = SellPerm::from_csr(&Csr::from_dense(rows, cols, &w).unwrap());
    let bits = |p: &SparseParams| {
        let mut y = vec![f32::NAN; rows];
        spmv_sell_perm(&perm, &x, Some(&bias), &mut y, p).unwrap();
        y.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
    };
    let portable = bits(&SparseParams::default().tier(F32Path::Portable).threads(1));
    for p in params() {
        assert_eq!(
            bits(&p),
            portable,
            "{p:?} {rows}x{cols} d {density} seed {seed}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Rows and columns on both sides of multiples of 8, empty rows and layers.
    #[test]
    fn sell_perm_tiers_agree_bit_for_bit(
        rows in prop_oneof![Just(0usize), 1usize..40],
        cols in prop_oneof![Just(1usize), 1usize..100],
        density in density(), seed in any::<u64>(),
    ) {
        check_perm_tiers_bit_exact(rows, cols, density, seed);
    }
}

/// A NaN or infinity in `x` where every weight is pruned does not reach the outputs of the
/// batch-1 layouts (padding lanes multiply 0 by an input of their block); one where a weight
/// is kept does, as in CSR.
#[test]
fn non_finite_inputs_at_pruned_columns_do_not_propagate() {
    let (rows, cols) = (20, 30);
    let mut rng = Rng::seed_from_u64(40);
    let mut w = masked_ints(&mut rng, rows, cols, 0.5);
    for r in 0..rows {
        w[r * cols + 9] = 0.0; // column 9 fully pruned
        w[r * cols + 10] = if r == 3 { 1.0 } else { 0.0 }; // column 10 kept in row 3 only
    }
    let csr = Csr::from_dense(rows, cols, &w).unwrap();
    let layouts = [
        Batch1Layout::Sell(SellCs::from_csr(&csr)),
        Batch1Layout::Perm(SellPerm::from_csr(&csr)),
    ];
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut x = ints(&mut rng, cols);
        x[9] = bad;
        let mut want = vec![0.0; rows];
        spmv_reference(&csr, &x, None, &mut want).unwrap();
        assert!(want.iter().all(|v| v.is_finite()));
        for p in params() {
            for l in &layouts {
                let mut y = vec![f32::NAN; rows];
                l.spmv(&x, None, &mut y, &p).unwrap();
                assert_eq!(y, want, "{} {p:?} x[9] = {bad}", l.name());
            }
        }
        x[10] = bad;
        for p in params() {
            for l in &layouts {
                let mut y = vec![0.0; rows];
                l.spmv(&x, None, &mut y, &p).unwrap();
                assert!(!y[3].is_finite(), "{} {p:?}", l.name());
                assert_eq!(y.iter().filter(|v| !v.is_finite()).count(), 1);
            }
        }
    }
}

/// The cost model keeps SELL for lenet300.fc1 at 10% density on every tier and picks the
/// column-block layout at 50% (a 2:4 layer's density) on the AVX2 tier but not on AVX-512
/// F, whose gathering SELL kernel ran faster there, as measured (see `Batch1Layout`).
#[test]
fn batch1_layout_follows_density_and_tier() {
    let mut rng = Rng::seed_from_u64(41);
    for (density, avx2, avx512) in [(0.1, "sell", "sell"), (0.5, "sell_perm", "sell")] {
        let w: Vec<f32> = (0..300 * 784)
            .map(|_| if rng.uniform() < density { 1.0 } else { 0.0 })
            .collect();
        let csr = Csr::from_dense(300, 784, &w).unwrap();
        for (tier, want) in [
            (F32Path::Portable, avx2),
            (F32Path::Avx2Fma, avx2),
            (F32Path::Avx512F, avx512),
        ] {
            let layout = Batch1Layout::for_csr_on(&csr, tier);
            assert_eq!(layout.name(), want, "density {density} {tier:?}");
        }
    }
}

#[test]
fn large_layers_split_across_threads_equal_references() {
    // Many rows to split (forced by par_threshold in `params`), and one layer above the
    // default spmv threshold.
    let (rows, cols) = (700, 800);
    check_linear_exact(1400, 1000, 1, 1.0, 16);
    let mut rng = Rng::seed_from_u64(16);
    let nnz = masked_ints(&mut rng, 1400, 1000, 1.0)
        .iter()
        .filter(|&&v| v != 0.0)
        .count();
    assert!(
        nnz >= PAR_MIN_NNZ,
        "{nnz} nonzeros do not reach the default threshold"
    );
    for (batch, density) in [(1, 0.1), (1, 0.5), (8, 0.1), (64, 0.1)] {
        check_linear_exact(rows, cols, batch, density, 17);
        check_linear_tolerance(rows, cols, batch, density, 18);
    }
    // Wide layers with rows of very different lengths.
    check_linear_exact(50, 2100, 64, 0.1, 21);
    check_linear_exact(50, 2100, 64, 0.002, 22);
    check_linear_tolerance(50, 3000, 40, 0.3, 23);
    // 16-bit and 32-bit column indices (cols > 65536).
    check_linear_exact(3, 70_000, 2, 0.01, 19);
    check_linear_exact(40, 70_000, 1, 0.02, 20);
    // SELL's sentinel column `cols` fits 16 bits up to 65535 columns.
    check_linear_exact(9, 65_535, 1, 0.01, 26);
    check_linear_exact(9, 65_536, 1, 0.01, 27);
}

/// Sparse conv against tensor-core's dense direct loop on the densified weights, exactly.
fn check_conv(p: &Conv2dParams, n: usize, (h, w): (usize, usize), density: f32, seed: u64) {
    let Ok(_) = p.output_dims(&tensor_core::Shape::new(&[n, p.in_channels, h, w]).unwrap()) else {
        return; // the window does not fit this input: not a valid case
    };
    let mut rng = Rng::seed_from_u64(seed);
    let o = p.out_channels;
    let wd = masked_ints(&mut rng, o, p.patch_len(), density);
    let csr = Csr::from_dense(o, p.patch_len(), &wd).unwrap();
    let weight = Tensor::new(&p.weight_dims(), wd).unwrap();
    let x = Tensor::new(
        &[n, p.in_channels, h, w],
        ints(&mut rng, n * p.in_channels * h * w),
    )
    .unwrap();
    let bias = ints(&mut rng, o);
    let want = conv2d_forward_reference(&x, &weight, Some(&bias), p).unwrap();
    for sp in params() {
        let got = sparse_conv2d(&x, &csr, Some(&bias), p, &sp).unwrap();
        assert_eq!(got.dims(), want.dims());
        assert_eq!(
            got.data(),
            want.data(),
            "{sp:?} {p:?} n {n} {h}x{w} d {density} seed {seed}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Geometry grid: stride 1 (direct path) and 2..3 (im2col path) horizontally, padding on
    /// each side, dilation, groups; outputs narrower and wider than the 8 x 8 tiles.
    #[test]
    fn conv_equals_dense_reference(
        cg in 1usize..4, og in 1usize..5, groups in 1usize..3,
        kh in 1usize..4, kw in 1usize..4,
        sh in 1usize..3, sw in prop_oneof![Just(1usize), 1usize..4],
        dh in 1usize..3, dw in 1usize..3,
        pads in prop::array::uniform4(0usize..3),
        n in 1usize..3, h in 1usize..20, w in 1usize..20,
        density in density(), seed in any::<u64>(),
    ) {
        let p = Conv2dParams::new(cg * groups, og * groups, (kh, kw))
            .with_stride((sh, sw))
            .with_dilation((dh, dw))
            .with_padding(Padding::from_onnx(pads))
            .with_groups(groups);
        check_conv(&p, n, (h, w), density, seed);
    }
}

#[test]
fn lenet5_conv2_on_both_paths_and_threads() {
    // lenet5.conv2: 50 x 20 x 5 x 5 on 12 x 12; batch 1 (rows split) and 5 (images split).
    let p = Conv2dParams::new(20, 50, (5, 5));
    for (n, density) in [(1, 0.1), (1, 1.0), (5, 0.1)] {
        check_conv(&p, n, (12, 12), density, 23);
        check_conv(&p.with_stride((1, 2)), n, (12, 12), density, 24);
        check_conv(
            &p.with_padding(Padding::symmetric(2)),
            n,
            (12, 12),
            density,
            25,
        );
    }
}
