//! Dense (faer) against sparse fully connected layers at batch 1, 90% sparsity, timed by
//! interleaved single calls (min, 10th percentile and median of 3000): on a shared machine the
//! minimum of interleaved calls compares kernels more steadily than criterion's means.
//!
//! `cargo run --release -p prune --example spmv_min -- [ROWS COLS [DENSITY]]` (default 300 784
//! 0.1, the shape of lenet300.fc1, random mask), or `-- --model PATH DENSITY` (the model's first
//! Linear layer, magnitude-pruned to DENSITY); `perm` is the column-block SELL ([`prune::sparse::SellPerm`]);
//! `sell2t` and `perm2t` run on two threads with the size threshold lifted; `sell` runs the
//! dispatched tier (AVX-512 F where the CPU has it) and `sell-a2` the AVX2 + FMA kernel.
use std::hint::black_box;
use std::time::Instant;

use nn::layers::Linear;
use prune::criteria::mask_by_density;
use prune::sparse::{Csr, SellCs, SellPerm, SparseParams, spmv, spmv_sell, spmv_sell_perm};
use tensor_core::dispatch::F32Path;
use tensor_core::gemm::{GemmParams, gemm};
use tensor_core::rng::Rng;

/// The first Linear layer of the model at `path`, magnitude-pruned to `density`.
fn model_layer(path: &str, density: f64) -> (usize, usize, Vec<f32>) {
    let model = nn::io::load_any(path, None).unwrap();
    let mut found = None;
    model.visit(&mut |_, l| {
        if let (None, Some(lin)) = (&found, l.as_any().downcast_ref::<Linear>()) {
            found = Some((
                lin.out_features(),
                lin.in_features(),
                lin.weight().data().to_vec(),
            ));
        }
    });
    let (rows, cols, mut w) = found.expect("the model has a Linear layer");
    mask_by_density(&w, density).unwrap().apply(&mut w).unwrap();
    (rows, cols, w)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut rng = Rng::seed_from_u64(7);
    let (rows, cols, w) = if args.first().map(String::as_str) == Some("--model") {
        model_layer(&args[1], args[2].parse().unwrap())
    } else {
        let num = |i: usize, d: usize| args.get(i).map_or(d, |a| a.parse().unwrap());
        let (rows, cols) = (num(0, 300), num(1, 784));
        let density: f32 = args.get(2).map_or(0.1, |a| a.parse().unwrap());
        let w: Vec<f32> = (0..rows * cols)
            .map(|_| {
                let v = rng.normal();
                if rng.uniform() < density { v } else { 0.0 }
            })
            .collect();
        (rows, cols, w)
    };
    let bias: Vec<f32> = (0..rows).map(|_| rng.normal()).collect();
    let x: Vec<f32> = (0..cols).map(|_| rng.normal()).collect();
    let csr = Csr::from_dense(rows, cols, &w).unwrap();
    let sell = SellCs::from_csr(&csr);
    let perm = SellPerm::from_csr(&csr);
    println!(
        "{rows} x {cols}: {} nonzeros, SELL {} entries, column-block SELL {} steps ({} entries, {} bytes)",
        csr.nnz(),
        sell.padded_len(),
        perm.steps(),
        perm.steps() * 8,
        perm.layout_bytes()
    );
    let p = SparseParams::default().threads(1);
    let mut y = vec![0.0f32; rows];
    let p2 = SparseParams::default().threads(2).par_threshold(Some(0));
    let avx2 = F32Path::Avx2Fma
        .is_supported()
        .then(|| p.tier(F32Path::Avx2Fma));
    println!("dispatched tier: {}", p.tier.name());
    let n = 3000;
    let mut t: [Vec<f64>; 7] = Default::default();
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
        let s = Instant::now();
        spmv_sell_perm(&perm, black_box(&x), Some(&bias), &mut y, &p).unwrap();
        black_box(&y);
        t[4].push(s.elapsed().as_nanos() as f64 / 1e3);
        let s = Instant::now();
        spmv_sell_perm(&perm, black_box(&x), Some(&bias), &mut y, &p2).unwrap();
        black_box(&y);
        t[5].push(s.elapsed().as_nanos() as f64 / 1e3);
        if let Some(pa) = &avx2 {
            let s = Instant::now();
            spmv_sell(&sell, black_box(&x), Some(&bias), &mut y, pa).unwrap();
            black_box(&y);
            t[6].push(s.elapsed().as_nanos() as f64 / 1e3);
        }
    }
    for (name, v) in [
        "dense", "csr", "sell", "sell2t", "perm", "perm2t", "sell-a2",
    ]
    .iter()
    .zip(t.iter_mut())
    .filter(|(_, v)| !v.is_empty())
    {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "{name:6} min {:7.2} us  p10 {:7.2}  median {:7.2}",
            v[0],
            v[n / 10],
            v[n / 2]
        );
    }
}
