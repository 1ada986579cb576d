//! Truncated SVD of a row-major f32 matrix (through faer, in f64) and the energy arithmetic
//! rank choices rest on.
//!
//! For `A = U S Vᵀ` (singular values `s_1 >= s_2 >= ...`), the best rank-`r` approximation in
//! the Frobenius norm is `A_r = U_r S_r V_rᵀ` (Eckart-Young), and its error is exactly the
//! discarded energy: `||A - A_r||_F^2 = sum_{i > r} s_i^2`. The factors are split evenly,
//! `A_r = (U_r S_r^{1/2}) (S_r^{1/2} V_rᵀ)`, so both layers of a factored pair have weights of
//! the same scale (which fine-tuning with one learning rate prefers).

use faer::Mat;

use crate::error::{DecomposeError, Result};

/// The thin SVD of an `rows x cols` matrix, kept in f64.
#[derive(Clone, Debug)]
pub struct Svd {
    rows: usize,
    cols: usize,
    /// Left singular vectors, `[rows, k]` row-major, `k = min(rows, cols)`.
    u: Vec<f64>,
    /// Singular values, non-increasing.
    s: Vec<f64>,
    /// Right singular vectors transposed, `[k, cols]` row-major.
    vt: Vec<f64>,
}

/// The two factors of a rank-`r` approximation `A_r = left x right`, f32, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Factors {
    /// `U_r S_r^{1/2}`, `[rows, r]`.
    pub left: Vec<f32>,
    /// `S_r^{1/2} V_rᵀ`, `[r, cols]`.
    pub right: Vec<f32>,
    /// The rank.
    pub rank: usize,
}

impl Svd {
    /// The SVD of the row-major `rows x cols` matrix `a`. Errors: a length that does not
    /// match, a non-finite entry, or an SVD that does not converge.
    pub fn of(a: &[f32], rows: usize, cols: usize) -> Result<Self> {
        const OP: &str = "svd";
        if rows == 0 || cols == 0 || a.len() != rows * cols {
            return Err(DecomposeError::BadActivations {
                op: OP,
                what: format!("{} values for a {rows}x{cols} matrix", a.len()),
            });
        }
        if let Some((index, &value)) = a.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(DecomposeError::NonFinite {
                op: OP,
                index,
                value,
            });
        }
        let m = Mat::<f64>::from_fn(rows, cols, |i, j| a[i * cols + j] as f64);
        let svd = m
            .thin_svd()
            .map_err(|_| DecomposeError::SvdFailed { op: OP, rows, cols })?;
        let k = rows.min(cols);
        let (u, v) = (svd.U(), svd.V());
        let s: Vec<f64> = svd.S().column_vector().iter().copied().collect();
        let u = (0..rows)
            .flat_map(|i| (0..k).map(move |j| (i, j)))
            .map(|(i, j)| u[(i, j)])
            .collect();
        let vt = (0..k)
            .flat_map(|i| (0..cols).map(move |j| (i, j)))
            .map(|(i, j)| v[(j, i)])
            .collect();
        Ok(Self {
            rows,
            cols,
            u,
            s,
            vt,
        })
    }

    /// Rows of the matrix.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns of the matrix.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The largest rank, `min(rows, cols)`.
    pub fn max_rank(&self) -> usize {
        self.s.len()
    }

    /// The singular values, non-increasing.
    pub fn singular_values(&self) -> &[f64] {
        &self.s
    }

    /// `||A||_F^2 = sum_i s_i^2`.
    pub fn total_energy(&self) -> f64 {
        self.s.iter().map(|s| s * s).sum()
    }

    /// `sum_{i > r} s_i^2`: the squared Frobenius error of the rank-`r` approximation.
    pub fn discarded_energy(&self, r: usize) -> f64 {
        self.s.iter().skip(r).map(|s| s * s).sum()
    }

    /// The fraction of the energy the rank-`r` approximation keeps (1 for a zero matrix).
    pub fn kept_energy(&self, r: usize) -> f64 {
        kept_fraction(&self.s, r)
    }

    /// The factors of the rank-`r` approximation. Errors: `r` outside `1..=max_rank`.
    pub fn factors(&self, r: usize) -> Result<Factors> {
        let k = self.max_rank();
        if r == 0 || r > k {
            return Err(DecomposeError::InvalidRank {
                op: "svd factors",
                rank: r,
                max: k,
            });
        }
        let root: Vec<f64> = self.s[..r].iter().map(|s| s.sqrt()).collect();
        let left = (0..self.rows)
            .flat_map(|i| (0..r).map(move |j| (i, j)))
            .map(|(i, j)| (self.u[i * k + j] * root[j]) as f32)
            .collect();
        let right = (0..r)
            .flat_map(|i| (0..self.cols).map(move |j| (i, j)))
            .map(|(i, j)| (root[i] * self.vt[i * self.cols + j]) as f32)
            .collect();
        Ok(Factors {
            left,
            right,
            rank: r,
        })
    }
}

/// `sum_{i < r} s_i^2 / sum_i s_i^2` (1 when every `s_i` is 0).
pub fn kept_fraction(s: &[f64], r: usize) -> f64 {
    let total: f64 = s.iter().map(|v| v * v).sum();
    if total <= 0.0 {
        return 1.0;
    }
    s.iter().take(r).map(|v| v * v).sum::<f64>() / total
}

impl Factors {
    /// `left x right`, row-major `[rows, cols]` (the approximation itself; for tests and
    /// reports).
    pub fn product(&self, rows: usize, cols: usize) -> Vec<f32> {
        let r = self.rank;
        let mut out = vec![0.0f64; rows * cols];
        for i in 0..rows {
            for k in 0..r {
                let a = self.left[i * r + k] as f64;
                let row = &self.right[k * cols..(k + 1) * cols];
                for (o, &b) in out[i * cols..(i + 1) * cols].iter_mut().zip(row) {
                    *o += a * b as f64;
                }
            }
        }
        out.into_iter().map(|v| v as f32).collect()
    }
}
