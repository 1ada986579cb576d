//! The portable tile of the binary GEMM: `u64::count_ones` on each XOR, register-blocked like
//! the SIMD tiles so the blocking logic is tested on every path.

/// Popcounts of `a_i ^ b_j` for the `MR` rows of `a` and the `NR` rows of `b` (each `w` words,
/// rows `w` apart), into `out[i][j]`.
pub(super) fn tile<const MR: usize, const NR: usize>(
    a: &[u64],
    b: &[u64],
    w: usize,
    out: &mut [[u32; NR]; MR],
) {
    let mut acc = [[0u32; NR]; MR];
    for k in 0..w {
        let av: [u64; MR] = std::array::from_fn(|i| a[i * w + k]);
        for j in 0..NR {
            let bv = b[j * w + k];
            for i in 0..MR {
                acc[i][j] += (av[i] ^ bv).count_ones();
            }
        }
    }
    *out = acc;
}
