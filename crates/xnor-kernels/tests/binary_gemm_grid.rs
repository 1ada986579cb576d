//! The binary GEMM on every kernel path this CPU runs, over depths straddling word
//! boundaries and row counts straddling tile edges, bit-exact against a float GEMM on ±1 data.

use proptest::prelude::*;
use tensor_core::dispatch::{KernelPath, PopcountPath, report};
use tensor_core::rng::Rng;
use xnor_kernels::{
    AMX_NEEDS, AMX_PATH_NAME, AmxUse, BinaryGemmParams, PackedRows, amx_usable,
    binary_gemm_reference, binary_gemm_with,
};

/// The depths of the grid: each side of 1, 64, 128 and 512 bits.
const DEPTHS: [usize; 10] = [1, 63, 64, 65, 127, 128, 129, 511, 512, 513];

/// Random ±1 (and some zeros, which pack as +1) values.
fn signs(n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n)
        .map(|_| match rng.below(5) {
            0 => 0.0,
            1 | 2 => -1.0,
            _ => 1.0,
        })
        .collect()
}

/// The float reference: `sum_k sign(a[m,k]) * sign(b[n,k])`, exact in f32 for these sizes.
fn float_gemm(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<i32> {
    let s = |x: f32| if x < 0.0 { -1.0f32 } else { 1.0 };
    let mut c = Vec::with_capacity(m * n);
    for i in 0..m {
        for j in 0..n {
            let d: f32 = (0..k).map(|l| s(a[i * k + l]) * s(b[j * k + l])).sum();
            c.push(d as i32);
        }
    }
    c
}

/// Prints the dispatch report and a one-line note for every path this CPU lacks.
fn announce_paths() -> Vec<PopcountPath> {
    eprintln!("{}", report());
    for p in PopcountPath::skipped() {
        eprintln!("skipped: {} (CPU lacks {})", p.name(), p.needs());
    }
    if !amx_usable() {
        eprintln!("skipped: {AMX_PATH_NAME} (CPU or OS lacks {AMX_NEEDS})");
    }
    PopcountPath::supported()
}

/// The kernel variants of `path`: AVX2 runs on nibble planes (the default) and on the packed
/// words; the other paths have one. The AMX path (every product on it, `AmxUse::Always`)
/// rides with the portable path, which every CPU has.
fn variants(path: PopcountPath) -> Vec<(String, BinaryGemmParams)> {
    let p = BinaryGemmParams::on(path);
    let mut v = vec![(path.name().to_string(), p)];
    if path == PopcountPath::Avx2 {
        v[0].0 = "avx2 (nibble planes)".into();
        v.push(("avx2 (nibble table)".into(), p.nibble_planes(false)));
    }
    if path == PopcountPath::Portable && amx_usable() {
        v.push((AMX_PATH_NAME.into(), p.amx(AmxUse::Always)));
    }
    v
}

fn check(path: PopcountPath, m: usize, n: usize, k: usize, threads: usize, seed: u64) {
    for (name, p) in variants(path) {
        check_with(&name, p, m, n, k, threads, seed);
    }
}

fn check_with(
    name: &str,
    p: BinaryGemmParams,
    m: usize,
    n: usize,
    k: usize,
    threads: usize,
    seed: u64,
) {
    let mut rng = Rng::seed_from_u64(seed);
    let (a, b) = (signs(m * k, &mut rng), signs(n * k, &mut rng));
    let (pa, pb) = (
        PackedRows::pack(&a, m, k).unwrap(),
        PackedRows::pack(&b, n, k).unwrap(),
    );
    let mut c = vec![i32::MIN; m * n];
    binary_gemm_with(&pa, &pb, &mut c, &p.threads(threads)).unwrap();
    let want = float_gemm(&a, &b, m, n, k);
    assert_eq!(
        c, want,
        "path {name} m {m} n {n} k {k} threads {threads} seed {seed}"
    );
    assert_eq!(binary_gemm_reference(&pa, &pb).unwrap(), want);
}

#[test]
fn grid_over_word_boundaries_on_every_path() {
    for path in announce_paths() {
        let mut cases = 0;
        for (di, &k) in DEPTHS.iter().enumerate() {
            // Rows and columns around the tiles (2 x 4 and 4 x 4) and the edges.
            for (m, n) in [(1, 1), (2, 4), (3, 5), (4, 4), (5, 9), (8, 3), (9, 13)] {
                check(path, m, n, k, 1, (di * 100 + m * 10 + n) as u64);
                cases += 1;
            }
        }
        for (name, _) in variants(path) {
            eprintln!("path {name}: {cases} grid cases bit-exact");
        }
    }
}

#[test]
fn parallel_panels_and_the_transposed_split_agree() {
    for path in announce_paths() {
        // Rows split across tasks; several B panels (K = 4096: 64 words, 256 rows a panel).
        check(path, 67, 530, 4096, 0, 1);
        // Few rows, many columns: computed as C^T = B A^T, then transposed.
        check(path, 1, 4000, 1100, 0, 2);
        check(path, 3, 2049, 513, 0, 3);
        for (name, _) in variants(path) {
            eprintln!("path {name}: parallel cases bit-exact");
        }
    }
}

#[test]
fn zero_depth_and_empty_operands() {
    for path in announce_paths() {
        let p = BinaryGemmParams::on(path);
        let (a, b) = (
            PackedRows::pack(&[], 2, 0).unwrap(),
            PackedRows::pack(&[], 3, 0).unwrap(),
        );
        let mut c = vec![7; 6];
        binary_gemm_with(&a, &b, &mut c, &p).unwrap();
        assert_eq!(c, vec![0; 6]);
        let e = PackedRows::pack(&[], 0, 5).unwrap();
        binary_gemm_with(&e, &PackedRows::pack(&[1.0; 5], 1, 5).unwrap(), &mut [], &p).unwrap();
    }
}

#[test]
fn mismatches_are_errors() {
    let a = PackedRows::pack(&[1.0; 63], 1, 63).unwrap();
    let b = PackedRows::pack(&[1.0; 64], 1, 64).unwrap();
    let e = binary_gemm_with(&a, &b, &mut [0], &BinaryGemmParams::default()).unwrap_err();
    assert!(
        e.to_string().contains("K = 63") && e.to_string().contains("K = 64"),
        "{e}"
    );
    let e = binary_gemm_with(&a, &a, &mut [0, 0], &BinaryGemmParams::default()).unwrap_err();
    assert!(e.to_string().contains("C has length 2, expected 1"), "{e}");
    for path in PopcountPath::skipped() {
        let e = binary_gemm_with(&a, &a, &mut [0], &BinaryGemmParams::on(path)).unwrap_err();
        assert!(e.to_string().contains(path.needs()), "{e}");
    }
    let amx = BinaryGemmParams::default().amx(AmxUse::Always);
    match binary_gemm_with(&a, &a, &mut [0], &amx) {
        Ok(()) => assert!(amx_usable()),
        Err(e) => {
            assert!(!amx_usable());
            assert!(e.to_string().contains(AMX_NEEDS), "{e}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn every_path_matches_the_reference(m in 1usize..12, n in 1usize..14, k in 0usize..300, seed: u64) {
        let mut rng = Rng::seed_from_u64(seed);
        let (a, b) = (signs(m * k, &mut rng), signs(n * k, &mut rng));
        let (pa, pb) = (PackedRows::pack(&a, m, k).unwrap(), PackedRows::pack(&b, n, k).unwrap());
        let want = binary_gemm_reference(&pa, &pb).unwrap();
        for (name, p) in PopcountPath::supported().into_iter().flat_map(variants) {
            let mut c = vec![0; m * n];
            binary_gemm_with(&pa, &pb, &mut c, &p.threads(1)).unwrap();
            prop_assert_eq!(&c, &want, "path {}", name);
        }
    }
}
