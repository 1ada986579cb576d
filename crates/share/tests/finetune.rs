//! Centroid fine-tuning: equation 3 against a naive sum and a finite difference, members
//! equal to their centroids after every step, pruned weights staying exactly zero.

use share::{
    KMeansParams, ShareError, centroid_grads, members_from_codebook, sgd_step, share_nonzeros,
};
use tensor_core::rng::Rng;

#[test]
fn centroid_grad_is_the_sum_of_member_grads() {
    let mut rng = Rng::seed_from_u64(3);
    let k = 9;
    let codes: Vec<u8> = (0..500).map(|_| rng.below(k) as u8).collect();
    let grads: Vec<f32> = (0..500).map(|_| rng.normal()).collect();
    let g = centroid_grads(&codes, &grads, k).unwrap();
    assert_eq!(g.len(), k);
    assert_eq!(g[0], 0.0, "code 0 (pruned zero) gets no gradient");
    for (j, &gj) in g.iter().enumerate().skip(1) {
        let naive: f64 = codes
            .iter()
            .zip(&grads)
            .filter(|&(&c, _)| c as usize == j)
            .map(|(_, &x)| x as f64)
            .sum();
        assert!(
            (gj as f64 - naive).abs() < 1e-5,
            "centroid {j}: {gj} vs {naive}"
        );
    }
    // u16 codes give the same.
    let wide: Vec<u16> = codes.iter().map(|&c| c as u16).collect();
    assert_eq!(centroid_grads(&wide, &grads, k).unwrap(), g);
}

/// L(W) = 0.5 * |W x - t|^2 for W `[rows, cols]`; returns L and dL/dW.
fn loss_and_grad(w: &[f32], x: &[f32], t: &[f32]) -> (f64, Vec<f32>) {
    let cols = x.len();
    let mut loss = 0.0;
    let mut g = vec![0.0f32; w.len()];
    for (o, &to) in t.iter().enumerate() {
        let y: f64 = (0..cols)
            .map(|i| w[o * cols + i] as f64 * x[i] as f64)
            .sum();
        let r = y - to as f64;
        loss += 0.5 * r * r;
        for i in 0..cols {
            g[o * cols + i] = (r * x[i] as f64) as f32;
        }
    }
    (loss, g)
}

#[test]
fn equation_3_is_the_gradient_with_respect_to_a_centroid() {
    let mut rng = Rng::seed_from_u64(5);
    let (rows, cols) = (6, 10);
    let weights: Vec<f32> = (0..rows * cols)
        .map(|i| if i % 4 == 0 { 0.0 } else { rng.normal() })
        .collect();
    let shared = share_nonzeros(&weights, 2, &KMeansParams::default()).unwrap();
    let x: Vec<f32> = (0..cols).map(|_| rng.normal()).collect();
    let t: Vec<f32> = (0..rows).map(|_| rng.normal()).collect();
    let c = &shared.codebook.centroids;
    let mut w = vec![0.0; rows * cols];
    members_from_codebook(&shared.codes, c, &mut w).unwrap();
    let (_, gw) = loss_and_grad(&w, &x, &t);
    let gc = centroid_grads(&shared.codes, &gw, c.len()).unwrap();
    let h = 1e-2f32;
    for j in 1..c.len() {
        let mut plus = c.clone();
        plus[j] += h;
        let mut minus = c.clone();
        minus[j] -= h;
        let mut wp = w.clone();
        members_from_codebook(&shared.codes, &plus, &mut wp).unwrap();
        let mut wm = w.clone();
        members_from_codebook(&shared.codes, &minus, &mut wm).unwrap();
        let fd = (loss_and_grad(&wp, &x, &t).0 - loss_and_grad(&wm, &x, &t).0) / (2.0 * h as f64);
        // The loss is quadratic in c_j: the central difference is exact up to rounding.
        assert!(
            (gc[j] as f64 - fd).abs() <= 1e-3 * (1.0 + fd.abs()),
            "centroid {j}: eq. 3 gives {}, finite difference {fd}",
            gc[j]
        );
    }
}

#[test]
fn fine_tuning_keeps_members_equal_to_centroids_and_lowers_the_loss() {
    let mut rng = Rng::seed_from_u64(8);
    let (rows, cols) = (8, 32);
    let mut w: Vec<f32> = (0..rows * cols)
        .map(|_| {
            if rng.uniform() < 0.3 {
                0.0
            } else {
                rng.normal()
            }
        })
        .collect();
    let zeros: Vec<bool> = w.iter().map(|&v| v == 0.0).collect();
    let mut shared = share_nonzeros(&w, 3, &KMeansParams::default()).unwrap();
    members_from_codebook(&shared.codes, &shared.codebook.centroids, &mut w).unwrap();
    let x: Vec<f32> = (0..cols).map(|_| rng.normal()).collect();
    let t: Vec<f32> = (0..rows).map(|_| rng.normal()).collect();
    let first = loss_and_grad(&w, &x, &t).0;
    let mut last = first;
    for step in 0..50 {
        let (loss, g) = loss_and_grad(&w, &x, &t);
        assert!(
            loss <= last * (1.0 + 1e-6),
            "step {step}: loss rose {last} -> {loss}"
        );
        last = loss;
        shared.fine_tune_step(&g, 1e-3, &mut w).unwrap();
        for (i, (&v, &c)) in w.iter().zip(&shared.codes).enumerate() {
            assert_eq!(
                v.to_bits(),
                shared.codebook.centroids[c as usize].to_bits(),
                "step {step}, weight {i}: not its centroid"
            );
            assert_eq!(
                zeros[i],
                v == 0.0 && c == 0,
                "step {step}, weight {i}: zero moved"
            );
        }
        assert_eq!(shared.codebook.centroids[0], 0.0);
    }
    assert!(last < 0.9 * first, "loss {first} -> {last}");
}

#[test]
fn errors_name_lengths_and_codes() {
    let e = centroid_grads(&[1u8, 2], &[0.5], 3).unwrap_err();
    assert_eq!(
        e.to_string(),
        "centroid_grads: grads has length 1, expected 2"
    );
    let e = centroid_grads(&[1u8, 3], &[0.5, 0.5], 3).unwrap_err();
    assert_eq!(
        e.to_string(),
        "centroid_grads: code 3 at position 1 is past the codebook of 3 centroids"
    );
    let mut w = [0.0f32; 2];
    let e = members_from_codebook(&[0u16, 4], &[0.0, 1.0], &mut w).unwrap_err();
    assert!(
        matches!(
            e,
            ShareError::CodeOutOfRange {
                index: 1,
                code: 4,
                len: 2,
                ..
            }
        ),
        "{e}"
    );
    let e = sgd_step(&mut [0.0, 1.0], &[1.0], 0.1).unwrap_err();
    assert_eq!(e.to_string(), "sgd_step: grads has length 1, expected 2");
    let mut c = [0.0f32, 1.0];
    sgd_step(&mut c, &[5.0, 2.0], 0.5).unwrap();
    assert_eq!(c, [0.0, 0.0], "centroid 0 never moves");
}
