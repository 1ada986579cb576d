//! Property tests of the sparse formats: CSR and relative-index round trips (overflowing
//! gaps, empty rows, fully pruned layers), the bit packing of gaps, exact stored sizes, and
//! corrupt payloads that must give typed errors, never panics.

use proptest::prelude::*;
use prune::RelativeIndexed;
use prune::sparse::{ColIndices, Csr, pack_bits, unpack_bits};
use tensor_core::rng::Rng;

/// A `rows x cols` matrix with each entry nonzero (small integer, never -0.0) with
/// probability `density`, and about a fifth of the rows forced empty.
fn matrix(rows: usize, cols: usize, density: f32, seed: u64) -> Vec<f32> {
    let mut rng = Rng::seed_from_u64(seed);
    let mut d = vec![0.0f32; rows * cols];
    for r in 0..rows {
        let empty = rng.below(5) == 0;
        for c in 0..cols {
            if !empty && rng.uniform() < density {
                d[r * cols + c] = [-3.0, -2.0, -1.0, 0.5, 2.0, 3.0][rng.below(6)];
            }
        }
    }
    d
}

fn shape_and_density() -> impl Strategy<Value = (usize, usize, f32, u64)> {
    (
        0usize..24,
        prop_oneof![Just(0usize), Just(1usize), 1usize..90],
        prop::sample::select(vec![0.0f32, 0.02, 0.1, 0.5, 1.0]),
        any::<u64>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn csr_round_trips((rows, cols, density, seed) in shape_and_density()) {
        let dense = matrix(rows, cols, density, seed);
        let m = Csr::from_dense(rows, cols, &dense).unwrap();
        prop_assert_eq!(m.to_dense(), dense.clone(), "seed {}", seed);
        let nnz = dense.iter().filter(|&&v| v != 0.0).count();
        prop_assert_eq!(m.nnz(), nnz);
        prop_assert_eq!(m.stored_bytes(), 4 * (rows + 1) + 6 * nnz);
        let (r, c, rp, ci, v) = m.clone().into_parts();
        prop_assert_eq!(Csr::from_parts(r, c, rp, ci, v).unwrap(), m);
    }

    #[test]
    fn relative_index_round_trips(
        (rows, cols, density, seed) in shape_and_density(),
        bits in prop_oneof![1u32..=4, Just(5u32), Just(8u32), 9u32..=16],
    ) {
        let dense = matrix(rows, cols, density, seed);
        let m = Csr::from_dense(rows, cols, &dense).unwrap();
        let ri = m.to_relative_index(bits).unwrap();
        // The CSR walk writes exactly what the flat encoder writes: same gaps, same fillers.
        prop_assert_eq!(&ri, &RelativeIndexed::encode(&dense, bits).unwrap(), "seed {}", seed);
        prop_assert_eq!(Csr::from_relative_index(rows, cols, &ri).unwrap(), m.clone());
        // The written form: packed gaps in `bits` bits each, plus 4 bytes per value.
        let packed = ri.pack_gaps().unwrap();
        prop_assert_eq!(packed.len(), (ri.entries() * bits as usize).div_ceil(8));
        prop_assert_eq!(ri.stored_bytes(), packed.len() + 4 * ri.entries());
        let back = RelativeIndexed::from_packed(&packed, bits, ri.values.clone(), rows * cols)
            .unwrap();
        prop_assert_eq!(Csr::from_relative_index(rows, cols, &back).unwrap(), m);
    }

    #[test]
    fn bit_packing_round_trips(
        (bits, values) in (1u32..=16).prop_flat_map(|b| {
            (Just(b), prop::collection::vec(0u16..=((1u32 << b) - 1) as u16, 0..200))
        })
    ) {
        let bytes = pack_bits(&values, bits).unwrap();
        prop_assert_eq!(bytes.len(), (values.len() * bits as usize).div_ceil(8));
        prop_assert_eq!(unpack_bits(&bytes, bits, values.len()).unwrap(), values.clone());
        // Every shorter or longer stream is rejected.
        for cut in 0..bytes.len() {
            prop_assert!(unpack_bits(&bytes[..cut], bits, values.len()).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        prop_assert!(unpack_bits(&longer, bits, values.len()).is_err());
    }

    /// Corrupting one field of a valid CSR payload gives either a typed error or a matrix
    /// that still satisfies every invariant (checked by densifying it); never a panic.
    #[test]
    fn corrupt_csr_parts_are_rejected_or_valid(
        (rows, cols, density, seed) in shape_and_density(),
        which in 0usize..3, at in any::<usize>(), value in any::<u32>(),
    ) {
        let dense = matrix(rows, cols, density, seed);
        let (r, c, mut rp, ci, mut v) = Csr::from_dense(rows, cols, &dense).unwrap().into_parts();
        let ColIndices::U16(mut ci) = ci else { unreachable!("cols < 65536") };
        match which {
            0 => { let i = at % rp.len(); rp[i] = value % (v.len() as u32 + 3); }
            1 if !ci.is_empty() => { let i = at % ci.len(); ci[i] = value as u16 % (cols as u16 + 2); }
            2 if !v.is_empty() => { let i = at % v.len(); v[i] = if value % 2 == 0 { 0.0 } else { -0.0 }; }
            _ => {}
        }
        if let Ok(m) = Csr::from_parts(r, c, rp, ColIndices::U16(ci), v) {
            let d = m.to_dense();
            prop_assert_eq!(Csr::from_dense(rows, cols, &d).unwrap(), m);
        }
    }

    /// Random gap and value arrays: decoding into CSR either fails with a typed error or
    /// gives the same matrix as the flat decoder.
    #[test]
    fn untrusted_relative_index_decodes_or_errors(
        rows in 0usize..8, cols in 0usize..12, bits in 1u32..=5,
        gaps in prop::collection::vec(0u16..40, 0..30),
        extra in 0usize..2, seed in any::<u64>(),
    ) {
        let mut rng = Rng::seed_from_u64(seed);
        let values: Vec<f32> = (0..gaps.len() + extra)
            .map(|_| if rng.below(3) == 0 { 0.0 } else { rng.below(9) as f32 + 1.0 })
            .collect();
        let ri = RelativeIndexed { gaps, values, index_bits: bits, len: rows * cols };
        match (ri.decode(), Csr::from_relative_index(rows, cols, &ri)) {
            (Ok(dense), Ok(m)) => prop_assert_eq!(m.to_dense(), dense),
            (Err(a), Err(b)) => prop_assert_eq!(a.to_string().replace("RelativeIndexed::decode", "X"),
                                                b.to_string().replace("Csr::from_relative_index", "X")),
            (a, b) => prop_assert!(false, "flat decode {:?} but CSR decode {:?}", a.is_ok(), b.is_ok()),
        }
    }
}

#[test]
fn fully_pruned_and_last_weight_only_layers() {
    // lenet300.fc1's shape with every weight pruned: nothing stored but row pointers (the
    // trailing zeros of a relative index are restored from `len`).
    let mut dense = vec![0.0f32; 300 * 784];
    let m = Csr::from_dense(300, 784, &dense).unwrap();
    assert_eq!((m.nnz(), m.stored_bytes()), (0, 4 * 301));
    let ri = m.to_relative_index(5).unwrap();
    assert_eq!((ri.entries(), ri.stored_bytes()), (0, 0));
    assert_eq!(Csr::from_relative_index(300, 784, &ri).unwrap(), m);
    // Only the last weight kept: 235,199 zeros before it; each 5-bit filler spans 32
    // positions, so floor(235199 / 32) = 7349 fillers, then the weight with gap 31.
    dense[300 * 784 - 1] = 1.0;
    let m = Csr::from_dense(300, 784, &dense).unwrap();
    let ri = m.to_relative_index(5).unwrap();
    assert_eq!(
        (ri.entries(), ri.fillers(), ri.gaps[7349]),
        (7350, 7349, 31)
    );
    assert_eq!(ri.stored_bytes(), (7350 * 5usize).div_ceil(8) + 7350 * 4);
    assert_eq!(Csr::from_relative_index(300, 784, &ri).unwrap(), m);
}

#[test]
fn every_flipped_bit_of_packed_gaps_is_an_error_or_a_valid_matrix() {
    let dense = matrix(6, 40, 0.1, 3);
    let m = Csr::from_dense(6, 40, &dense).unwrap();
    let ri = m.to_relative_index(3).unwrap();
    let packed = ri.pack_gaps().unwrap();
    for bit in 0..packed.len() * 8 {
        let mut p = packed.clone();
        p[bit / 8] ^= 1 << (bit % 8);
        if let Ok(r) = RelativeIndexed::from_packed(&p, 3, ri.values.clone(), 240) {
            let back = Csr::from_relative_index(6, 40, &r).unwrap();
            assert_eq!(back.to_dense(), r.decode().unwrap());
        }
    }
}
