use proptest::prelude::*;
use tensor_core::dispatch::{Int8Path, KernelPath, report};
use tensor_core::rng::Rng;

use super::*;

fn random_case(seed: u64, m: usize, n: usize, k: usize, amax: u8) -> (Vec<u8>, Vec<i8>) {
    let mut rng = Rng::seed_from_u64(seed);
    let a = (0..m * k)
        .map(|_| (rng.next_u64() % (u64::from(amax) + 1)) as u8)
        .collect();
    let w = (0..n * k).map(|_| rng.next_u64() as u8 as i8).collect();
    (a, w)
}

/// Every path this CPU runs equals the reference on `(m, n, k)`; names each path.
fn check_all_paths(a: &[u8], w: &[i8], m: usize, n: usize, k: usize) {
    let want = gemm_reference(a, m, k, w, n);
    let packed = PackedWeights::pack(w, n, k).unwrap();
    for path in Int8Path::supported() {
        let mut c = vec![i32::MIN; m * n];
        gemm_u7i8_dense(path, a, m, &packed, &mut c).unwrap();
        assert_eq!(c, want, "path {} on m={m} n={n} k={k}", path.name());
    }
}

#[test]
fn every_path_matches_the_reference_around_tile_edges() {
    eprintln!("{}", report());
    for path in Int8Path::ALL {
        if !Int8Path::supported().contains(path) {
            eprintln!("skipped: {} (CPU lacks {})", path.name(), path.needs());
        } else {
            eprintln!("ran: {}", path.name());
        }
    }
    let mut seed = 0;
    for m in [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 63, 64, 65, 130] {
        for n in [1, 15, 16, 17, 31, 32, 33, 48, 49] {
            for k in [0, 1, 3, 4, 5, 31, 64, 67] {
                seed += 1;
                let (a, w) = random_case(seed, m, n, k, MAX_ACTIVATION);
                check_all_paths(&a, &w, m, n, k);
            }
        }
    }
}

#[test]
fn extreme_values_do_not_saturate() {
    // 127 x -128 everywhere: the most negative pair sum vpmaddubsw can see, and 127 x 127.
    for (av, wv) in [(127u8, -128i8), (127, 127), (0, -128)] {
        let (m, n, k) = (5, 17, 259);
        let a = vec![av; m * k];
        let w = vec![wv; n * k];
        check_all_paths(&a, &w, m, n, k);
    }
}

#[test]
fn parallel_split_over_panels_and_rows_matches() {
    // Large enough to run in parallel: few row blocks, many panels; then many rows.
    for (m, n, k, seed) in [(3, 300, 1200, 1), (700, 40, 100, 2)] {
        let (a, w) = random_case(seed, m, n, k, MAX_ACTIVATION);
        assert!(m * n * k >= PAR_MIN_MACS);
        check_all_paths(&a, &w, m, n, k);
    }
}

#[test]
fn strided_rows_are_read_at_their_stride() {
    let (m, n, k, lda) = (6, 20, 10, 16);
    let (dense, w) = random_case(9, m, n, k, MAX_ACTIVATION);
    let mut strided = vec![255u8; (m - 1) * lda + padded_depth(k)];
    for r in 0..m {
        strided[r * lda..r * lda + k].copy_from_slice(&dense[r * k..(r + 1) * k]);
    }
    let packed = PackedWeights::pack(&w, n, k).unwrap();
    let want = gemm_reference(&dense, m, k, &w, n);
    for path in Int8Path::supported() {
        let mut c = vec![0; m * n];
        gemm_u7i8_with(path, &strided, lda, m, &packed, &mut c).unwrap();
        assert_eq!(c, want, "path {}", path.name());
    }
}

#[test]
fn activations_above_127_and_bad_shapes_are_refused() {
    let packed = PackedWeights::pack(&[1i8; 8], 2, 4).unwrap();
    let mut c = vec![0; 4];
    let e = gemm_u7i8(&[1, 2, 3, 4, 5, 6, 200, 8], 4, 2, &packed, &mut c).unwrap_err();
    assert!(e.to_string().contains("A[1][2] = 200"), "{e}");
    let e = gemm_u7i8(&[0; 7], 4, 2, &packed, &mut c).unwrap_err();
    assert!(e.to_string().contains("A has length 7, expected 8"), "{e}");
    let e = gemm_u7i8(&[0; 8], 3, 2, &packed, &mut c).unwrap_err();
    assert!(e.to_string().contains("row stride 3"), "{e}");
    let e = gemm_u7i8(&[0; 8], 4, 2, &packed, &mut [0; 3]).unwrap_err();
    assert!(e.to_string().contains("C has length 3"), "{e}");
}

#[test]
fn pack_round_trips_and_sums_columns() {
    let (_, w) = random_case(3, 0, 19, 13, 0);
    let p = PackedWeights::pack(&w, 19, 13).unwrap();
    assert_eq!(p.unpack(), w);
    let sums: Vec<i32> = w
        .chunks(13)
        .map(|r| r.iter().map(|&v| i32::from(v)).sum())
        .collect();
    assert_eq!(p.col_sums(), &sums[..]);
    assert!(PackedWeights::pack(&w, 19, 12).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn prop_paths_equal_reference(m in 1usize..13, n in 1usize..49, k in 0usize..41, seed in any::<u64>()) {
        let (a, w) = random_case(seed, m, n, k, MAX_ACTIVATION);
        check_all_paths(&a, &w, m, n, k);
    }
}

#[test]
fn narrow_weights_take_the_summed_kernels_and_stay_exact() {
    assert_eq!(summed_groups(128), 1);
    assert_eq!(summed_groups(65), 1);
    assert_eq!(summed_groups(64), 2);
    assert_eq!(summed_groups(33), 2);
    assert_eq!(summed_groups(32), 4);
    assert_eq!(summed_groups(0), 4);
    // The extremes of each summing width: every i16 partial sum at its largest magnitude.
    for (av, wv) in [
        (127u8, -64i8),
        (127, 64),
        (127, 63),
        (127, -32),
        (127, 32),
        (1, -33),
    ] {
        for (m, n, k) in [(5, 17, 4), (4, 16, 36), (9, 33, 3136), (1, 1, 12)] {
            let a = vec![av; m * k];
            let w = vec![wv; n * k];
            check_all_paths(&a, &w, m, n, k);
        }
    }
    // Random narrow weights around the tile edges and depths that are not a multiple of the
    // summing width (the remainder groups take the one-group step).
    let mut seed = 1000;
    for bound in [32i32, 64] {
        for m in [1, 3, 4, 6, 65] {
            for k in [1, 4, 8, 12, 20, 68, 289] {
                seed += 1;
                let mut rng = Rng::seed_from_u64(seed);
                let a: Vec<u8> = (0..m * k).map(|_| (rng.next_u64() % 128) as u8).collect();
                let w: Vec<i8> = (0..17 * k)
                    .map(|_| ((rng.next_u64() % (2 * bound as u64 + 1)) as i32 - bound) as i8)
                    .collect();
                check_all_paths(&a, &w, m, 17, k);
            }
        }
    }
}

/// Row `i` of an in-place patch GEMM gathered by hand: `count` segments of `seg_bytes` bytes
/// from `i * lda + s * stride`.
fn gather(
    a: &[u8],
    lda: usize,
    i: usize,
    count: usize,
    stride: usize,
    seg_bytes: usize,
) -> Vec<u8> {
    (0..count)
        .flat_map(|s| a[i * lda + s * stride..][..seg_bytes].to_vec())
        .collect()
}

#[test]
fn segmented_rows_equal_gathered_rows_on_every_path() {
    // (rows m, columns n, segments, bytes per segment, segment stride, row stride, weight max)
    let cases: [(usize, usize, usize, usize, usize, usize, u8); 5] = [
        (8, 50, 5, 100, 1200, 20, 127), // lenet5 conv2: 5 kernel rows of 5 x 20 bytes
        (28, 32, 3, 96, 960, 32, 64),   // cnn-teacher conv2 shape, 7-bit weights
        (7, 17, 3, 3, 30, 1, 32),       // thin: 3-byte runs padded to a group, 6-bit
        (5, 9, 2, 6, 6, 2, 128),        // segments that overlap the next row's
        (1, 16, 1, 4, 0, 4, 127),       // one segment: a plain row
    ];
    let mut rng = Rng::seed_from_u64(77);
    for (m, n, count, seg_bytes, stride, lda, wmax) in cases {
        let groups = seg_bytes.div_ceil(KG);
        let seg = Segments {
            count,
            groups,
            stride,
        };
        let len = (m - 1) * lda + seg.span();
        let a: Vec<u8> = (0..len).map(|_| (rng.next_u64() % 128) as u8).collect();
        let k = count * seg_bytes;
        let w: Vec<i8> = (0..n * k)
            .map(|_| {
                let v = (rng.next_u64() % (2 * u64::from(wmax) + 1)) as i32 - i32::from(wmax);
                v.clamp(-128, 127) as i8
            })
            .collect();
        // The weights with each segment padded to whole groups, as a convolution packs them.
        let mut wp = vec![0i8; n * count * groups * KG];
        for j in 0..n {
            for s in 0..count {
                wp[(j * count + s) * groups * KG..][..seg_bytes]
                    .copy_from_slice(&w[j * k + s * seg_bytes..][..seg_bytes]);
            }
        }
        let packed = PackedWeights::pack(&wp, n, count * groups * KG).unwrap();
        let rows: Vec<u8> = (0..m)
            .flat_map(|i| gather(&a, lda, i, count, stride, seg_bytes))
            .collect();
        let want = gemm_reference(&rows, m, k, &w, n);
        for path in Int8Path::supported() {
            let mut c = vec![i32::MIN; m * n];
            gemm_u7i8_segmented(path, &a, lda, m, &packed, seg, &mut c).unwrap();
            assert_eq!(
                c,
                want,
                "path {} on {m}x{n}, {count} x {seg_bytes} bytes",
                path.name()
            );
        }
    }
}

#[test]
fn segmented_shapes_that_disagree_are_refused() {
    let packed = PackedWeights::pack(&[1i8; 16], 2, 8).unwrap();
    let seg = Segments {
        count: 2,
        groups: 1,
        stride: 10,
    };
    let mut c = vec![0; 4];
    let path = Int8Path::Portable;
    // Two rows need (2 - 1) * 3 + 10 + 4 = 17 bytes.
    let e = gemm_u7i8_segmented(path, &[0; 16], 3, 2, &packed, seg, &mut c).unwrap_err();
    assert!(
        e.to_string().contains("A has length 16, expected 17"),
        "{e}"
    );
    let three = Segments { count: 3, ..seg };
    let e = gemm_u7i8_segmented(path, &[0; 40], 3, 2, &packed, three, &mut c).unwrap_err();
    assert!(e.to_string().contains("do not cover"), "{e}");
    gemm_u7i8_segmented(path, &[1; 17], 3, 2, &packed, seg, &mut c).unwrap();
    assert_eq!(c, vec![8; 4]);
}

/// The requantizing product equals the reference sums requantized by the scalar loop, on
/// every path, around the tile edges, with a row stride past `n` whose gap bytes stay
/// untouched; with ReLU (clamp at the zero point) and without.
#[test]
fn requantized_product_equals_reference_sums_requantized() {
    let mut seed = 500;
    for m in [1, 3, 8, 9, 17, 70] {
        for n in [1, 15, 16, 17, 32, 33, 50] {
            for k in [1, 9, 25, 64] {
                seed += 1;
                let (a, w) = random_case(seed, m, n, k, MAX_ACTIVATION);
                let kp = padded_depth(k);
                let mut padded = vec![0u8; m * kp];
                for (dst, src) in padded.chunks_exact_mut(kp).zip(a.chunks_exact(k)) {
                    dst[..k].copy_from_slice(src);
                }
                let sums = gemm_reference(&a, m, k, &w, n);
                let mut rng = Rng::seed_from_u64(seed);
                let offsets: Vec<i32> = (0..n)
                    .map(|_| (rng.next_u64() % 4001) as i32 - 2000)
                    .collect();
                let multipliers: Vec<f32> = (0..n)
                    .map(|_| (1 + rng.next_u64() % 1000) as f32 / 300_000.0)
                    .collect();
                let packed = PackedWeights::pack(&w, n, k).unwrap();
                for (zp, lo) in [(40, 40), (64, 0)] {
                    let rq = Requant {
                        offsets: &offsets,
                        multipliers: &multipliers,
                        zp,
                        lo,
                        hi: 127,
                    };
                    let ldo = n + 3;
                    let mut want = vec![0xEEu8; m * ldo];
                    for (row, raw) in want.chunks_exact_mut(ldo).zip(sums.chunks_exact(n)) {
                        rq.codes_u8(Int8Path::Portable, raw, &mut row[..n]);
                    }
                    for path in Int8Path::supported() {
                        let mut got = vec![0xEEu8; m * ldo];
                        if seed % 2 == 0 {
                            // The segmented entry (a convolution band's) on half the cases.
                            let seg = Segments::flat(packed.groups());
                            gemm_u7i8_requantized_segmented(
                                path, &padded, kp, m, &packed, seg, &rq, &mut got, ldo, false,
                            )
                            .unwrap();
                        } else {
                            gemm_u7i8_requantized(
                                path, &padded, kp, m, &packed, &rq, &mut got, ldo,
                            )
                            .unwrap();
                        }
                        assert_eq!(got, want, "path {} m={m} n={n} k={k} zp={zp}", path.name());
                    }
                }
            }
        }
    }
    for path in Int8Path::ALL {
        if !Int8Path::supported().contains(path) {
            eprintln!("skipped: {} (CPU lacks {})", path.name(), path.needs());
        }
    }
}

#[test]
fn requantized_shapes_that_disagree_are_refused() {
    let path = Int8Path::Portable;
    let packed = PackedWeights::pack(&[1i8; 2 * 4], 2, 4).unwrap();
    let (off, mul) = ([0i32; 2], [0.5f32; 2]);
    let rq = Requant {
        offsets: &off,
        multipliers: &mul,
        zp: 0,
        lo: 0,
        hi: 127,
    };
    let mut out = [0u8; 4];
    // Output too short for 3 rows of stride 2.
    let e = gemm_u7i8_requantized(path, &[1; 12], 4, 3, &packed, &rq, &mut out, 2);
    assert!(e.unwrap_err().to_string().contains("output codes"));
    // One channel short.
    let short = Requant {
        offsets: &off[..1],
        ..rq
    };
    let e = gemm_u7i8_requantized(path, &[1; 8], 4, 2, &packed, &short, &mut out, 2);
    assert!(e.is_err());
    // A clamp outside u8.
    let wide = Requant { hi: 300, ..rq };
    let e = gemm_u7i8_requantized(path, &[1; 8], 4, 2, &packed, &wide, &mut out, 2);
    assert!(e.unwrap_err().to_string().contains("clamp"));
    gemm_u7i8_requantized(path, &[1; 8], 4, 2, &packed, &rq, &mut out, 2).unwrap();
    assert_eq!(out, [2, 2, 2, 2]);
}
