//! Dense (faer) against sparse fully connected layers at batch 1, 90% sparsity, timed by
//! interleaved single calls (min, 10th percentile and median of 3000): on a shared machine the
//! minimum of interleaved calls compares kernels more steadily than criterion's means.
//!
//! `cargo run --release -p prune --example spmv_min -- [ROWS COLS]` (default 300 784, the
//! shape of lenet300.fc1); `sell2t` is SELL on two threads with the size threshold lifted.
use std::hint::black_box;
use std::time::Instant;

use prune::sparse::{Csr, SellCs, SparseParams, spmv, spmv_sell};
use tensor_core::gemm::{GemmParams, gemm};
use tensor_core::rng::Rng;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let (rows, cols) = (
        args.first().copied().unwrap_or(300),
        args.get(1).copied().unwrap_or(784),
    );
    let mut rng = Rng::seed_from_u64(7);
    let w: Vec<f32> = (0..rows * cols)
        .map(|_| {
            let v = rng.normal();
            if rng.uniform() < 0.1 { v } else { 0.0 }
        })
        .collect();
    let bias: Vec<f32> = (0..rows).map(|_| rng.normal()).collect();
    let x: Vec<f32> = (0..cols).map(|_| rng.normal()).collect();
    let csr = Csr::from_dense(rows, cols, &w).unwrap();
    let sell = SellCs::from_csr(&csr);
    let p = SparseParams::default().threads(1);
    let mut y = vec![0.0f32; rows];
    let p2 = SparseParams::default().threads(2).par_threshold(Some(0));
    let n = 3000;
    let mut t = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..n {
        let s = Instant::now();
        gemm(
            rows,
            1,
            cols,
            &w,
            black_box(&x),
            &mut y,
            &GemmParams::default(),
        )
        .unwrap();
        for (v, b) in y.iter_mut().zip(&bias) {
            *v += b;
        }
        black_box(&y);
        t[0].push(s.elapsed().as_nanos() as f64 / 1e3);
        let s = Instant::now();
        spmv(&csr, black_box(&x), Some(&bias), &mut y, &p).unwrap();
        black_box(&y);
        t[1].push(s.elapsed().as_nanos() as f64 / 1e3);
        let s = Instant::now();
        spmv_sell(&sell, black_box(&x), Some(&bias), &mut y, &p).unwrap();
        black_box(&y);
        t[2].push(s.elapsed().as_nanos() as f64 / 1e3);
        let s = Instant::now();
        spmv_sell(&sell, black_box(&x), Some(&bias), &mut y, &p2).unwrap();
        black_box(&y);
        t[3].push(s.elapsed().as_nanos() as f64 / 1e3);
    }
    for (name, v) in ["dense", "csr", "sell", "sell2t"].iter().zip(t.iter_mut()) {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "{name:6} min {:7.2} us  p10 {:7.2}  median {:7.2}",
            v[0],
            v[n / 10],
            v[n / 2]
        );
    }
}
