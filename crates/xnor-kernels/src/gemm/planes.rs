//! Rows split into nibble planes for the AVX2 nibble-table tile: each 256-bit vector of a row
//! (4 words) becomes its low nibbles (`x & 0x0f..`) and its high nibbles shifted down
//! (`(x >> 4) & 0x0f..`), 8 words; the words past the last full vector stay as they are.
//!
//! The table lookup (`vpshufb`) takes a nibble per byte, so the table tile masks and shifts
//! every `a ^ b` (4 of its 8 instructions per pair and vector); on planes those steps are
//! done once per row here, `(M + N) * words` work against the product's `M * N * words`.

/// The low-nibble mask of every byte.
const LOW_NIBBLES: u64 = 0x0f0f_0f0f_0f0f_0f0f;

/// Words of one row of `w` packed words once split: 8 per full vector plus the tail.
pub(super) fn stride(w: usize) -> usize {
    8 * (w / 4) + w % 4
}

/// The planes of `words.len() / w` rows of `w` words, each row [`stride`]`(w)` words long:
/// vector `s`'s low plane at `8s..8s+4`, its high plane at `8s+4..8s+8`, then the tail.
pub(super) fn split(words: &[u64], w: usize) -> Vec<u64> {
    let stride = stride(w);
    let mut out = Vec::with_capacity(words.len() / w * stride);
    for row in words.chunks_exact(w) {
        let vectors = row.chunks_exact(4);
        let tail = vectors.remainder();
        for v in vectors {
            out.extend(v.iter().map(|x| x & LOW_NIBBLES));
            out.extend(v.iter().map(|x| (x >> 4) & LOW_NIBBLES));
        }
        out.extend_from_slice(tail);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_keep_every_bit_once() {
        // 9 words: two vectors and a one-word tail.
        let row: Vec<u64> = (1..=9u64)
            .map(|k| k.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        let p = split(&row, 9);
        assert_eq!(p.len(), stride(9));
        assert_eq!(stride(9), 17);
        for (s, v) in row[..8].chunks_exact(4).enumerate() {
            for (k, &x) in v.iter().enumerate() {
                let (lo, hi) = (p[8 * s + k], p[8 * s + 4 + k]);
                assert_eq!(lo | (hi << 4), x, "vector {s} word {k}");
                assert_eq!((lo | hi) & !LOW_NIBBLES, 0);
                assert_eq!(lo.count_ones() + hi.count_ones(), x.count_ones());
            }
        }
        assert_eq!(p[16], row[8]);
        // Rows keep their order and stride.
        let two = split(&[row.clone(), row].concat(), 9);
        assert_eq!(two[..17], two[17..]);
        assert_eq!(stride(3), 3);
        assert_eq!(stride(4), 8);
    }
}
