//! Splitting a CSR matrix's rows among threads by work (nonzeros), and running a row kernel
//! on the pieces in parallel.

use std::ops::Range;

/// spmv calls (CSR or SELL) with fewer stored nonzeros than this run on one thread.
///
/// Measured on the 2-core EPYC while other jobs kept the load average near 6 (best of 600
/// calls per setting, interleaved, 10% density; one thread / two threads): CSR spmv 300 x
/// 784 (23K nonzeros) 8.6 / 16.1 us, 1000 x 1000 (100K) 36 / 47 us, 2000 x 2000 (400K)
/// 147 / 162 us, 4096 x 4096 (1.7M) 572 / 579 us; SELL alike. The second vCPU was rarely
/// free, so two threads never won clearly; the threshold keeps small and mid-size layers
/// on one thread and lets only layers of a million nonzeros and more use both cores, where
/// the loss measured here was under 10% and an idle machine gains. Re-measure on an idle
/// machine (`examples`-style A/B of `SparseParams::threads` 1 against 2).
pub const PAR_MIN_NNZ: usize = 1 << 20;

/// spmm and sparse conv calls with fewer multiply-accumulates (`nnz * columns`) than this
/// run on one thread.
///
/// Measured as [`PAR_MIN_NNZ`] (one thread / two threads): spmm 300 x 784 at batch 64 (1.5M
/// MACs) 98 / 119 us, 1000 x 1000 at batch 64 (6.4M) 565 / 569 us, 2000 x 2000 at batch 64
/// (26M) 4.5 / 3.0 ms in one run and 3.3 / 3.9 ms in another; lenet5.conv2 at 10% density,
/// batch 8 (1.3M) 58 / 67 us, fully dense at batch 8 (12.8M) 472 / 492 us.
pub const PAR_MIN_MACS: usize = 1 << 24;

/// Cost of a row beyond its nonzeros (writing its output, the loop overhead), in nonzeros.
const ROW_COST: u64 = 2;

/// Boundaries `b_0 = rows.start < b_1 < ... < b_k = rows.end` cutting `rows` into at most
/// `parts` ranges of about equal cost `nnz + ROW_COST` per row (empty ranges dropped).
pub(crate) fn split_rows(row_ptr: &[u32], rows: Range<usize>, parts: usize) -> Vec<usize> {
    split_by_cost(rows, parts, |r| row_ptr[r] as u64 + r as u64 * ROW_COST)
}

/// Boundaries cutting `items` into at most `parts` ranges of about equal cost, where
/// `prefix(i)` is the (non-decreasing) cost of all items before `i`.
pub(crate) fn split_by_cost(
    items: Range<usize>,
    parts: usize,
    prefix: impl Fn(usize) -> u64,
) -> Vec<usize> {
    let (lo, hi) = (items.start, items.end);
    let mut bounds = vec![lo];
    if hi > lo {
        let (c0, total) = (prefix(lo), prefix(hi) - prefix(lo));
        let parts = parts.clamp(1, hi - lo) as u64;
        for i in 1..parts {
            let target = c0 + total * i / parts;
            // First item in lo..hi whose prefix cost reaches the target.
            let (mut a, mut b) = (lo, hi);
            while a < b {
                let m = a + (b - a) / 2;
                if prefix(m) < target { a = m + 1 } else { b = m }
            }
            if a > *bounds.last().unwrap_or(&lo) && a < hi {
                bounds.push(a);
            }
        }
        bounds.push(hi);
    }
    bounds
}

/// Runs `f(row_range, out_rows)` over the pieces of `rows` cut by [`split_rows`] into
/// `parts`, in parallel when there are several; `out` holds `row_len` floats per row of
/// `rows`, and each call gets the slice of its own rows.
pub(crate) fn run_split<F>(
    row_ptr: &[u32],
    rows: Range<usize>,
    parts: usize,
    out: &mut [f32],
    row_len: usize,
    f: F,
) where
    F: Fn(Range<usize>, &mut [f32]) + Sync,
{
    if parts <= 1 {
        f(rows, out);
        return;
    }
    let bounds = split_rows(row_ptr, rows.clone(), parts);
    let mut pieces = Vec::with_capacity(bounds.len());
    let mut rest = out;
    for w in bounds.windows(2) {
        let (head, tail) = rest.split_at_mut((w[1] - w[0]) * row_len);
        pieces.push((w[0]..w[1], head));
        rest = tail;
    }
    run_pieces(pieces, f);
}

/// Runs `f` on every `(range, slice)` piece: the calling thread runs the first piece itself
/// while rayon's pool takes the others. A caller outside the pool then works instead of
/// sleeping while a worker wakes up, as it would under a parallel iterator (which injects
/// every piece and blocks): on the loaded 2-core EPYC, spmv on lenet300.fc1 on two threads
/// took 16.8 us (best of 2000) with `into_par_iter`, 8.1 us this way.
pub(crate) fn run_pieces<F>(pieces: Vec<(Range<usize>, &mut [f32])>, f: F)
where
    F: Fn(Range<usize>, &mut [f32]) + Sync,
{
    let f = &f;
    rayon::in_place_scope(|s| {
        let mut it = pieces.into_iter();
        let first = it.next();
        for (r, o) in it {
            s.spawn(move |_| f(r, o));
        }
        if let Some((r, o)) = first {
            f(r, o);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_by_nonzeros() {
        // Row nnz: 10, 0, 0, 10, 0, 0 -> halves at row 3 (cost 10+2*3 = 16 of 32).
        let row_ptr = [0, 10, 10, 10, 20, 20, 20];
        assert_eq!(split_rows(&row_ptr, 0..6, 2), vec![0, 3, 6]);
        assert_eq!(split_rows(&row_ptr, 0..6, 1), vec![0, 6]);
        assert_eq!(split_rows(&row_ptr, 2..2, 4), vec![2]);
        // Never more pieces than rows, every boundary strictly increasing.
        let b = split_rows(&row_ptr, 1..3, 8);
        assert!(b.windows(2).all(|w| w[0] < w[1]) && b[0] == 1 && b[b.len() - 1] == 3);
        let mut out = vec![0.0; 6 * 2];
        run_split(&row_ptr, 0..6, 3, &mut out, 2, |r, o| {
            for (i, chunk) in o.chunks_mut(2).enumerate() {
                chunk.fill((r.start + i) as f32);
            }
        });
        assert_eq!(out, [0., 0., 1., 1., 2., 2., 3., 3., 4., 4., 5., 5.]);
    }
}
