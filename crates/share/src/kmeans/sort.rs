//! Sorting the weights in `f32::total_cmp` order: an LSD radix sort for large layers.
//!
//! Sorting dominates k-means on a 4096x4096 layer (16M values, k = 32) once a Lloyd step no
//! longer touches every value. On the shared 2-core EPYC (load average 6-7) one measurement
//! gave `sort_unstable_by(total_cmp)` 1.4-1.6 s, rayon's parallel sort 2.0 s and three
//! counting passes over 11-bit digits of the order-preserving key about 1.1 s (8-bit digits,
//! four passes: the same). Below [`RADIX_MIN`] values the comparison sort is used (no
//! 2048-bucket histograms to clear).

/// Values from which the radix sort runs.
const RADIX_MIN: usize = 1 << 14;

/// Bits per digit: three passes cover 32-bit keys (11 + 11 + 10).
const DIGIT: u32 = 11;

/// The key whose unsigned order is `f32::total_cmp`'s: negatives flipped entirely, the sign
/// bit set on non-negatives.
fn key(v: f32) -> u32 {
    let b = v.to_bits();
    if b >> 31 == 1 { !b } else { b | 0x8000_0000 }
}

fn unkey(k: u32) -> f32 {
    f32::from_bits(if k >> 31 == 1 { k & 0x7FFF_FFFF } else { !k })
}

/// Sorts `values` ascending by `f32::total_cmp` (equal keys are equal bits, so the result
/// is the same whichever sort runs).
pub(super) fn sort_total(values: &mut [f32]) {
    if values.len() < RADIX_MIN {
        values.sort_unstable_by(f32::total_cmp);
        return;
    }
    let mut keys: Vec<u32> = values.iter().map(|&v| key(v)).collect();
    let mut hist = vec![[0usize; 1 << DIGIT]; PASSES];
    for &k in &keys {
        for (p, h) in hist.iter_mut().enumerate() {
            h[digit(k, p)] += 1;
        }
    }
    let mut tmp = vec![0u32; keys.len()];
    for (p, h) in hist.iter_mut().enumerate() {
        if h.contains(&keys.len()) {
            continue; // every key has the same digit: the pass would not move anything
        }
        let mut start = 0;
        for c in h.iter_mut() {
            let n = *c;
            *c = start;
            start += n;
        }
        for &k in &keys {
            let d = digit(k, p);
            tmp[h[d]] = k;
            h[d] += 1;
        }
        std::mem::swap(&mut keys, &mut tmp);
    }
    for (v, &k) in values.iter_mut().zip(&keys) {
        *v = unkey(k);
    }
}

const PASSES: usize = 32usize.div_ceil(DIGIT as usize);

fn digit(k: u32, pass: usize) -> usize {
    ((k >> (DIGIT as usize * pass)) & ((1 << DIGIT) - 1)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use tensor_core::rng::Rng;

    #[test]
    fn radix_equals_total_cmp_sort() {
        let mut rng = Rng::seed_from_u64(1);
        let specials = [0.0f32, -0.0, 1e-45, -1e-45, f32::MAX, f32::MIN, 1.0, -1.0];
        for n in [RADIX_MIN, RADIX_MIN + 777] {
            let v: Vec<f32> = (0..n)
                .map(|i| match i % 5 {
                    0 => specials[rng.below(specials.len())],
                    1 => rng.normal() * 1e-20,
                    _ => rng.normal(),
                })
                .collect();
            let mut a = v.clone();
            sort_total(&mut a);
            let mut b = v;
            b.sort_by(f32::total_cmp);
            let bits = |x: &[f32]| x.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b), "n {n}");
        }
        // One digit constant for all keys (skipped pass).
        let mut c: Vec<f32> = (0..RADIX_MIN).map(|i| (i % 3) as f32).collect();
        sort_total(&mut c);
        assert!(c.windows(2).all(|w| w[0] <= w[1]));
    }
}
