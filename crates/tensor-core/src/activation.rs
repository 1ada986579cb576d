//! Elementwise activations and row-wise (log-)softmax on row-major slices, in place.
//!
//! The row functions treat a slice as a row-major `[rows, cols]` matrix. Softmax and
//! log-softmax subtract each row's maximum before exponentiating, so that no `exp` overflows:
//! `softmax(x)_i = exp(x_i - m) / sum_j exp(x_j - m)` and
//! `log_softmax(x)_i = (x_i - m) - ln(sum_j exp(x_j - m))` with `m = max_j x_j`
//! (the log-sum-exp trick). A trailing partial row (when `cols` does not divide the length)
//! is left untouched; `cols == 0` does nothing.

/// `x = max(x, 0)` elementwise (NaN stays NaN).
pub fn relu_inplace(x: &mut [f32]) {
    for v in x.iter_mut() {
        // `if v < 0` (rather than `max`) keeps NaN visible downstream.
        if *v < 0.0 {
            *v = 0.0;
        }
    }
}

/// Softmax of each row of a row-major `[rows, cols]` slice, numerically stable.
pub fn softmax_rows(x: &mut [f32], cols: usize) {
    if cols == 0 {
        return;
    }
    for row in x.chunks_exact_mut(cols) {
        let m = row_max(row);
        let mut sum = 0.0f32;
        for v in row.iter_mut() {
            *v = (*v - m).exp();
            sum += *v;
        }
        let inv = 1.0 / sum;
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

/// Log-softmax of each row of a row-major `[rows, cols]` slice, numerically stable.
pub fn log_softmax_rows(x: &mut [f32], cols: usize) {
    if cols == 0 {
        return;
    }
    for row in x.chunks_exact_mut(cols) {
        let m = row_max(row);
        let sum: f32 = row.iter().map(|&v| (v - m).exp()).sum();
        let lse = m + sum.ln();
        for v in row.iter_mut() {
            *v -= lse;
        }
    }
}

/// The logistic sigmoid `1 / (1 + exp(-x))` elementwise, computed without overflow for
/// large `|x|`.
pub fn sigmoid_inplace(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = if *v >= 0.0 {
            1.0 / (1.0 + (-*v).exp())
        } else {
            let e = v.exp();
            e / (1.0 + e)
        };
    }
}

/// `tanh(x)` elementwise.
pub fn tanh_inplace(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = v.tanh();
    }
}

/// Largest element of a non-empty row; a row of `-inf` gives 0 so that softmax stays finite
/// (uniform) rather than producing NaN from `-inf - -inf`.
fn row_max(row: &[f32]) -> f32 {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if m == f32::NEG_INFINITY { 0.0 } else { m }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::assert_close;

    #[test]
    fn relu_zeroes_negatives() {
        let mut x = [-1.0, 0.0, 2.5, -0.0, f32::NAN];
        relu_inplace(&mut x);
        assert_eq!(&x[..4], &[0.0, 0.0, 2.5, -0.0]);
        assert!(x[4].is_nan());
    }

    #[test]
    fn softmax_rows_sum_to_one_and_survive_large_inputs() {
        let mut x = vec![1000.0, 1001.0, 1002.0, -5.0, 0.0, 5.0];
        softmax_rows(&mut x, 3);
        for row in x.chunks(3) {
            let s: f32 = row.iter().sum();
            assert!((s - 1.0).abs() < 1e-6, "row sum {s}");
            assert!(row.iter().all(|v| v.is_finite()));
        }
        // Shift invariance: the first row equals softmax([0, 1, 2]).
        let mut y = vec![0.0, 1.0, 2.0];
        softmax_rows(&mut y, 3);
        assert_close(&x[..3], &y, 1e-6, 1e-7);
    }

    #[test]
    fn log_softmax_matches_log_of_softmax() {
        let data = vec![0.3, -2.0, 4.0, 1.5, 88.0, 90.0, -90.0, 0.0];
        let mut a = data.clone();
        log_softmax_rows(&mut a, 4);
        let mut b = data.clone();
        softmax_rows(&mut b, 4);
        let b: Vec<f32> = b.iter().map(|v| v.ln()).collect();
        // Where softmax underflows to 0 its log is -inf; compare the finite ones.
        for (x, y) in a.iter().zip(&b) {
            assert!(x.is_finite());
            if y.is_finite() {
                assert!((x - y).abs() < 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
            }
        }
    }

    #[test]
    fn partial_row_and_zero_cols_are_untouched() {
        let mut x = vec![1.0, 2.0, 3.0];
        softmax_rows(&mut x, 2);
        assert_eq!(x[2], 3.0);
        let mut y = vec![1.0];
        log_softmax_rows(&mut y, 0);
        assert_eq!(y, vec![1.0]);
    }

    #[test]
    fn sigmoid_and_tanh_match_formulas() {
        let data = [-100.0f32, -3.0, -0.5, 0.0, 0.5, 3.0, 100.0];
        let mut s = data;
        sigmoid_inplace(&mut s);
        let mut t = data;
        tanh_inplace(&mut t);
        for (i, &x) in data.iter().enumerate() {
            let want = 1.0 / (1.0 + (-(x as f64)).exp());
            assert!((s[i] as f64 - want).abs() < 1e-7, "sigmoid({x})");
            assert!((t[i] as f64 - (x as f64).tanh()).abs() < 1e-6, "tanh({x})");
        }
    }
}
