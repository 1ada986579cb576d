//! Optimal Huffman code lengths from symbol frequencies, then length limiting by Kraft repayment.
//!
//! 1. Symbols in use are sorted by ascending frequency and merged with the two-queue Huffman
//!    construction (van Leeuwen, 1976), which is O(n) after the sort.
//! 2. Only the number of codes of each length (`count[len]`) is kept. Because the lengths of an
//!    optimal code are non-increasing in frequency, the symbols of one length form a contiguous
//!    run of the sorted order, so `count` alone determines every symbol's length.
//! 3. If the longest length exceeds the cap, every longer code is cut to the cap. That breaks the
//!    Kraft inequality `sum 2^-len <= 1` by some debt `E` (in units of `2^-cap`), which is repaid
//!    as in zstd's `HUF_setMaxHeight`: the least frequent code of some length `l < cap` is made one
//!    bit longer, repaying `2^(cap-l-1)` units for `freq` extra bits; the length chosen is the one
//!    with the lowest cost per unit among those that do not overshoot the debt (or the cheapest
//!    overshoot if none fits). Any overshoot is then spent by shortening the most frequent code
//!    whose shortening still fits, which always ends at a Kraft sum of exactly 1, because the
//!    slack is a multiple of `2^(cap - longest)` and a longest code can always be shortened.
//!
//! The result is exact (`sum 2^-len == 1`), capped, and close to optimal; package-merge would be
//! optimal but needs O(n * cap) memory for 65,536 symbols.

use crate::HuffError;
use crate::params::{MAX_ALPHABET, MAX_CODE_LEN};

/// Lengths (one per entry of `freqs`, 0 for unused symbols) of a complete prefix code with no
/// length above `cap`.
///
/// A single used symbol gets length 1 together with a neighbour (which then has a codeword it
/// never uses), so that the code is complete; with an alphabet of one symbol the returned vector
/// has two entries.
pub(crate) fn limited_lengths(freqs: &[u64], cap: u8) -> Result<Vec<u8>, HuffError> {
    if freqs.len() > MAX_ALPHABET {
        return Err(HuffError::AlphabetTooLarge {
            op: "build code",
            size: freqs.len(),
            max: MAX_ALPHABET,
        });
    }
    if cap == 0 || cap > MAX_CODE_LEN {
        return Err(HuffError::InvalidMaxCodeLen {
            op: "build code",
            max_len: cap,
        });
    }
    // Ascending by (frequency, symbol): unique keys, so the order is deterministic.
    let mut sorted: Vec<(u64, u32)> = freqs
        .iter()
        .enumerate()
        .filter(|&(_, &f)| f > 0)
        .map(|(s, &f)| (f, s as u32))
        .collect();
    sorted.sort_unstable();
    let n = sorted.len();
    if n == 0 {
        return Err(HuffError::NoSymbols { op: "build code" });
    }
    if n == 1 {
        let s = sorted[0].1 as usize;
        let mut lengths = freqs.iter().map(|_| 0u8).collect::<Vec<_>>();
        let partner = if s + 1 < lengths.len() {
            s + 1
        } else if s > 0 {
            s - 1
        } else {
            lengths.push(0);
            1
        };
        lengths[s] = 1;
        lengths[partner] = 1;
        return Ok(lengths);
    }
    if n > 1usize << cap {
        return Err(HuffError::CapTooSmall {
            cap,
            used_symbols: n,
        });
    }

    let depth = huffman_depths(&sorted);
    let longest = depth.iter().copied().max().unwrap_or(0) as usize;
    // count[l] = number of codes of length l, for l in 0..=max(longest, cap).
    let mut count = vec![0u64; longest.max(cap as usize) + 1];
    for &d in &depth {
        count[d as usize] += 1;
    }
    if longest > cap as usize {
        limit_counts(&mut count, &sorted, cap as usize);
    }

    // Longest codes go to the least frequent symbols (the front of `sorted`).
    let mut lengths = vec![0u8; freqs.len()];
    let mut it = sorted.iter();
    for len in (1..count.len()).rev() {
        for _ in 0..count[len] {
            if let Some(&(_, s)) = it.next() {
                lengths[s as usize] = len as u8;
            }
        }
    }
    Ok(lengths)
}

/// Depth of each leaf of a Huffman tree over `sorted` (ascending weights), in the same order.
fn huffman_depths(sorted: &[(u64, u32)]) -> Vec<u32> {
    let n = sorted.len();
    let total = 2 * n - 1;
    let mut weight: Vec<u128> = Vec::with_capacity(total);
    weight.extend(sorted.iter().map(|&(f, _)| f as u128));
    let mut parent = vec![0usize; total];
    let (mut leaf, mut internal) = (0usize, n);
    for next in n..total {
        let mut pick = || {
            let take_leaf = leaf < n && (internal >= next || weight[leaf] <= weight[internal]);
            if take_leaf {
                leaf += 1;
                leaf - 1
            } else {
                internal += 1;
                internal - 1
            }
        };
        let a = pick();
        let b = pick();
        weight.push(weight[a] + weight[b]);
        parent[a] = next;
        parent[b] = next;
    }
    // Parents are created after their children, so one reverse pass sets every depth.
    let mut depth = vec![0u32; total];
    for i in (0..total - 1).rev() {
        depth[i] = depth[parent[i]] + 1;
    }
    depth.truncate(n);
    depth
}

/// Cut `count` to lengths `<= cap` and restore a Kraft sum of exactly one (see module docs).
fn limit_counts(count: &mut Vec<u64>, sorted: &[(u64, u32)], cap: usize) {
    let overflow: u64 = count[cap + 1..].iter().sum();
    count.truncate(cap + 1);
    count[cap] += overflow;
    let kraft: u64 = (1..=cap).map(|l| count[l] << (cap - l)).sum();
    let mut debt = kraft as i64 - (1i64 << cap);

    // Index in `sorted` of the first (least frequent) symbol of length l.
    let start = |count: &[u64], l: usize| -> usize { count[l + 1..].iter().sum::<u64>() as usize };

    while debt > 0 {
        // Lengthen the least frequent code of the best length l < cap.
        let mut best: Option<(usize, u64, u64)> = None; // (l, freq, repaid)
        let mut smallest_overshoot: Option<usize> = None;
        for l in 1..cap {
            if count[l] == 0 {
                continue;
            }
            let repaid = 1u64 << (cap - l - 1);
            if repaid as i64 > debt {
                smallest_overshoot = Some(smallest_overshoot.map_or(l, |m: usize| m.max(l)));
                continue;
            }
            let freq = sorted[start(count, l)].0;
            // Compare freq / repaid without division.
            let better = match best {
                None => true,
                Some((_, bf, br)) => {
                    (freq as u128) * (br as u128) < (bf as u128) * (repaid as u128)
                }
            };
            if better {
                best = Some((l, freq, repaid));
            }
        }
        let l = match (best, smallest_overshoot) {
            (Some((l, _, _)), _) => l,
            (None, Some(l)) => l,
            // Unreachable: with every code at `cap` the sum is n / 2^cap <= 1.
            (None, None) => break,
        };
        count[l] -= 1;
        count[l + 1] += 1;
        debt -= 1i64 << (cap - l - 1);
    }
    while debt < 0 {
        // Shorten the most frequent code of the best length l > 1 whose gain still fits.
        let slack = -debt;
        let mut best: Option<(usize, u64, u64)> = None; // (l, freq, cost)
        for l in 2..=cap {
            let cost = 1u64 << (cap - l);
            if count[l] == 0 || cost as i64 > slack {
                continue;
            }
            let freq = sorted[start(count, l) + count[l] as usize - 1].0;
            let better = match best {
                None => true,
                Some((_, bf, bc)) => (freq as u128) * (bc as u128) > (bf as u128) * (cost as u128),
            };
            if better {
                best = Some((l, freq, cost));
            }
        }
        // Always Some (module docs); the guard keeps a logic error from looping forever.
        let Some((l, _, cost)) = best else { break };
        count[l] -= 1;
        count[l - 1] += 1;
        debt += cost as i64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kraft(lengths: &[u8]) -> f64 {
        lengths
            .iter()
            .filter(|&&l| l > 0)
            .map(|&l| (0.5f64).powi(l as i32))
            .sum()
    }

    #[test]
    fn two_symbols_get_one_bit() {
        assert_eq!(limited_lengths(&[5, 1], 11).unwrap(), vec![1, 1]);
    }

    #[test]
    fn textbook_example() {
        // Frequencies 45, 13, 12, 16, 9, 5 (CLRS): lengths 1, 3, 3, 3, 4, 4.
        let l = limited_lengths(&[45, 13, 12, 16, 9, 5], 11).unwrap();
        assert_eq!(l, vec![1, 3, 3, 3, 4, 4]);
    }

    #[test]
    fn single_symbol_gets_a_partner() {
        assert_eq!(limited_lengths(&[0, 7, 0], 11).unwrap(), vec![0, 1, 1]);
        assert_eq!(limited_lengths(&[0, 7], 11).unwrap(), vec![1, 1]);
        assert_eq!(limited_lengths(&[7], 11).unwrap(), vec![1, 1]);
    }

    #[test]
    fn fibonacci_frequencies_are_limited_exactly() {
        // Fibonacci weights give the deepest Huffman tree: 40 symbols, depth 39 unlimited.
        let mut f = vec![1u64, 1];
        while f.len() < 40 {
            let k = f.len();
            f.push(f[k - 1] + f[k - 2]);
        }
        for cap in 6..=15u8 {
            let l = limited_lengths(&f, cap).unwrap();
            assert!(
                l.iter().all(|&x| (1..=cap).contains(&x)),
                "cap {cap}: {l:?}"
            );
            assert_eq!(kraft(&l), 1.0, "cap {cap}");
        }
    }

    #[test]
    fn full_cap_is_uniform() {
        let f = vec![1u64; 1 << 11];
        let l = limited_lengths(&f, 11).unwrap();
        assert!(l.iter().all(|&x| x == 11));
    }

    #[test]
    fn errors() {
        assert!(matches!(
            limited_lengths(&[0, 0], 11),
            Err(HuffError::NoSymbols { .. })
        ));
        assert!(matches!(
            limited_lengths(&[1; 5], 2),
            Err(HuffError::CapTooSmall {
                cap: 2,
                used_symbols: 5
            })
        ));
        assert!(matches!(
            limited_lengths(&[1; 2], 16),
            Err(HuffError::InvalidMaxCodeLen { max_len: 16, .. })
        ));
        assert!(matches!(
            limited_lengths(&vec![1; MAX_ALPHABET + 1], 15),
            Err(HuffError::AlphabetTooLarge { .. })
        ));
    }
}
