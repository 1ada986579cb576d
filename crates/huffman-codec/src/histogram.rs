//! Symbol counts, the input of [`crate::CanonicalCode::from_frequencies`], and the entropy
//! they bound the code length by.

/// Count of each symbol; the result's length is `max(symbols) + 1` (0 for empty input).
pub fn histogram(symbols: &[u16]) -> Vec<u64> {
    let Some(&max) = symbols.iter().max() else {
        return Vec::new();
    };
    let mut counts = vec![0u64; max as usize + 1];
    for &s in symbols {
        counts[s as usize] += 1;
    }
    counts
}

/// Count of each byte value. Four interleaved count tables keep long runs of one byte from
/// serialising on a single counter.
pub fn histogram_u8(symbols: &[u8]) -> [u64; 256] {
    let mut tables = [[0u64; 256]; 4];
    let mut chunks = symbols.chunks_exact(4);
    for c in &mut chunks {
        tables[0][c[0] as usize] += 1;
        tables[1][c[1] as usize] += 1;
        tables[2][c[2] as usize] += 1;
        tables[3][c[3] as usize] += 1;
    }
    for &s in chunks.remainder() {
        tables[0][s as usize] += 1;
    }
    let mut counts = [0u64; 256];
    for (i, c) in counts.iter_mut().enumerate() {
        *c = tables.iter().map(|t| t[i]).sum();
    }
    counts
}

/// Empirical Shannon entropy of a histogram in bits per symbol, `H = -sum p log2 p` with
/// `p = count / total`: the lower bound on the mean length of any prefix code for a stream
/// with these counts (Shannon, 1948). 0 for an empty histogram.
pub fn entropy_bits(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let n = total as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_of_known_histograms() {
        assert_eq!(entropy_bits(&[]), 0.0);
        assert_eq!(entropy_bits(&[0, 7, 0]), 0.0);
        assert!((entropy_bits(&[5, 5]) - 1.0).abs() < 1e-12);
        assert!((entropy_bits(&[1, 1, 2]) - 1.5).abs() < 1e-12);
    }
}
