//! Dense f32 GEMM on row-major slices, through faer: `C = alpha * op(A) * op(B) + beta * C`.
//!
//! All slimnet tensors are row-major; faer's `MatRef::from_row_major_slice` views them as
//! (transposed column-major) matrices without a copy, and a transpose flag is only a view
//! change too, so no operand is ever copied here. faer picks its own SIMD micro-kernels at
//! run time (AVX-512 on this project's reference machine), so this module has no tiers of
//! its own: the portable reference [`gemm_reference`] is the triple loop it is tested
//! against.
//!
//! Shapes: `op(A)` is `[m, k]` and `op(B)` is `[k, n]`; `C` is `[m, n]`. With
//! `trans_a = false` the slice `a` holds a row-major `[m, k]` matrix; with `trans_a = true`
//! it holds a row-major `[k, m]` matrix that is used transposed (likewise `b`: `[k, n]` or
//! `[n, k]`). As in BLAS, `beta == 0` means `C` is not read (NaN in `C` does not propagate).

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};

use crate::error::TensorError;
use crate::shape::Shape;
use crate::tensor::Tensor;

mod packed;

pub(crate) use packed::linear_packed_rows;
pub use packed::{KC, LinearEpilogue, NR, PackedLinear, linear_packed, linear_packed_with};

/// Options of a GEMM call: transposes, scalars and threads (`Default`: no transposes,
/// `alpha = 1`, `beta = 0`, rayon's pool size).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GemmParams {
    /// Use `A` transposed (`a` holds `[k, m]`).
    pub trans_a: bool,
    /// Use `B` transposed (`b` holds `[n, k]`).
    pub trans_b: bool,
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of the existing `C` (0: overwrite without reading; 1: accumulate).
    pub beta: f32,
    /// Threads: 0 = the current rayon pool's size, 1 = sequential, `n` = up to `n` rayon
    /// workers. Products smaller than [`PAR_MIN_FLOP`] always run sequentially.
    pub threads: usize,
}

impl Default for GemmParams {
    fn default() -> Self {
        Self {
            trans_a: false,
            trans_b: false,
            alpha: 1.0,
            beta: 0.0,
            threads: 0,
        }
    }
}

impl GemmParams {
    /// Defaults with the given transposes.
    pub fn with_trans(trans_a: bool, trans_b: bool) -> Self {
        Self {
            trans_a,
            trans_b,
            ..Self::default()
        }
    }

    /// Same options with `beta` replaced.
    pub fn beta(self, beta: f32) -> Self {
        Self { beta, ..self }
    }

    /// Same options with `threads` replaced.
    pub fn threads(self, threads: usize) -> Self {
        Self { threads, ..self }
    }
}

/// Products with fewer floating-point operations (`2*m*n*k`) than this run on one thread:
/// below it a fork/join costs more than the second core saves.
///
/// Measured on the 2-core Xeon with one vCPU taken by another process (median of 15 runs,
/// 1 vs 2 threads): lenet5.fc2 at batch 64 (`64 x 10 x 500`, 0.6 MFLOP) 10 us either way
/// with the threshold, while two threads cost more than they saved on mid-size products
/// (`64 x 500 x 800`, 51 MFLOP: 0.45 ms vs 0.49 ms; `512^3`: 2.1 ms vs 3.7 ms) because
/// faer's workers spin on a barrier while the other vCPU is busy. Callers that already run
/// in parallel (the conv blocks) pass `threads = 1`. Re-measure on an idle machine.
pub const PAR_MIN_FLOP: usize = 4_000_000;

/// The faer parallelism for a product of `flop` operations and a thread request.
fn parallelism(threads: usize, flop: usize) -> Par {
    let n = if threads == 0 {
        rayon::current_num_threads()
    } else {
        threads
    };
    if n <= 1 || flop < PAR_MIN_FLOP {
        Par::Seq
    } else {
        Par::rayon(n)
    }
}

fn check_len(op: &'static str, len: usize, rows: usize, cols: usize) -> Result<(), TensorError> {
    let shape = Shape::new(&[rows, cols])?;
    if len != shape.numel() {
        return Err(TensorError::DataLength {
            op,
            len,
            expected: shape.numel(),
            shape,
        });
    }
    Ok(())
}

/// Checks the three slice lengths against `m, n, k` and the transpose flags.
fn check_gemm(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
    c: &[f32],
    p: &GemmParams,
) -> Result<(), TensorError> {
    let (ar, ac) = if p.trans_a { (k, m) } else { (m, k) };
    let (br, bc) = if p.trans_b { (n, k) } else { (k, n) };
    check_len("gemm: A", a.len(), ar, ac)?;
    check_len("gemm: B", b.len(), br, bc)?;
    check_len("gemm: C", c.len(), m, n)?;
    Ok(())
}

/// `C = alpha * op(A) * op(B) + beta * C` on row-major slices (see the module docs for
/// the layouts). Errors with [`TensorError::DataLength`] naming the operand whose slice
/// length disagrees with `m`, `n`, `k`.
pub fn gemm(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    p: &GemmParams,
) -> Result<(), TensorError> {
    check_gemm(m, n, k, a, b, c, p)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 || p.alpha == 0.0 {
        scale_c(c, p.beta);
        return Ok(());
    }
    let accum = if p.beta == 0.0 {
        Accum::Replace
    } else {
        if p.beta != 1.0 {
            scale_c(c, p.beta);
        }
        Accum::Add
    };
    let lhs = if p.trans_a {
        MatRef::from_row_major_slice(a, k, m).transpose()
    } else {
        MatRef::from_row_major_slice(a, m, k)
    };
    let rhs = if p.trans_b {
        MatRef::from_row_major_slice(b, n, k).transpose()
    } else {
        MatRef::from_row_major_slice(b, k, n)
    };
    let dst = MatMut::from_row_major_slice_mut(c, m, n);
    // Lengths were checked above, so faer's dimension preconditions hold.
    let flop = 2usize.saturating_mul(m).saturating_mul(n).saturating_mul(k);
    match parallelism(p.threads, flop) {
        Par::Seq => matmul(dst, accum, lhs, rhs, p.alpha, Par::Seq),
        par => matmul_split(
            dst,
            accum,
            lhs,
            rhs,
            p.alpha,
            TASKS_PER_THREAD * par.degree(),
        ),
    }
    Ok(())
}

/// Tasks per thread of a parallel product ([`matmul_split`]).
const TASKS_PER_THREAD: usize = 4;

/// Rows (or columns) of `C` below which a task is not split further.
const SPLIT_MIN: usize = 16;

/// A parallel product as `tasks` sequential faer products on blocks of `C`'s rows (or
/// columns, when `C` is wider than tall), forked with `rayon::join`.
///
/// faer's own parallel kernel (`Par::rayon`) has its threads meet at spin barriers inside the
/// product, so one descheduled thread stalls the other; here each block is independent and an
/// idle worker steals the blocks a descheduled one has not started. Measured on the 2-core
/// EPYC under load average 10 (`slimnet bench` lenet300, batch 256, 2 threads, median of 2 s):
/// 13.6 ms with faer's barriers against 2.6 ms on one thread; see docs/BENCHMARKS.md, session
/// 3, for the figures with this split. Each element's dot product is the same sequential faer
/// kernel whichever the split, so results do not depend on the thread count.
fn matmul_split(
    dst: MatMut<'_, f32>,
    accum: Accum,
    lhs: MatRef<'_, f32>,
    rhs: MatRef<'_, f32>,
    alpha: f32,
    tasks: usize,
) {
    let (m, n) = (dst.nrows(), dst.ncols());
    if tasks <= 1 || m.max(n) < 2 * SPLIT_MIN {
        matmul(dst, accum, lhs, rhs, alpha, Par::Seq);
        return;
    }
    let (t0, t1) = (tasks / 2, tasks - tasks / 2);
    if m >= n {
        let mid = m / 2;
        let (d0, d1) = dst.split_at_row_mut(mid);
        let (l0, l1) = lhs.split_at_row(mid);
        rayon::join(
            || matmul_split(d0, accum, l0, rhs, alpha, t0),
            || matmul_split(d1, accum, l1, rhs, alpha, t1),
        );
    } else {
        let mid = n / 2;
        let (d0, d1) = dst.split_at_col_mut(mid);
        let (r0, r1) = rhs.split_at_col(mid);
        rayon::join(
            || matmul_split(d0, accum, lhs, r0, alpha, t0),
            || matmul_split(d1, accum, lhs, r1, alpha, t1),
        );
    }
}

/// `C = beta * C`, with `beta == 0` writing zeros without reading (BLAS semantics).
fn scale_c(c: &mut [f32], beta: f32) {
    if beta == 0.0 {
        c.fill(0.0);
    } else if beta != 1.0 {
        c.iter_mut().for_each(|x| *x *= beta);
    }
}

/// The naive triple-loop GEMM every fast path is tested against (same contract as
/// [`gemm`]; accumulates each dot product in f64 in index order).
#[doc(hidden)]
pub fn gemm_reference(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    p: &GemmParams,
) -> Result<(), TensorError> {
    check_gemm(m, n, k, a, b, c, p)?;
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f64;
            for l in 0..k {
                let av = if p.trans_a {
                    a[l * m + i]
                } else {
                    a[i * k + l]
                };
                let bv = if p.trans_b {
                    b[j * k + l]
                } else {
                    b[l * n + j]
                };
                acc += av as f64 * bv as f64;
            }
            let prev = if p.beta == 0.0 {
                0.0
            } else {
                p.beta as f64 * c[i * n + j] as f64
            };
            c[i * n + j] = (p.alpha as f64 * acc + prev) as f32;
        }
    }
    Ok(())
}

/// The product of two rank-2 tensors `[m, k] x [k, n] -> [m, n]`, on all threads.
pub fn matmul_tensors(a: &Tensor, b: &Tensor) -> Result<Tensor, TensorError> {
    for t in [a, b] {
        if t.shape().rank() != 2 {
            return Err(TensorError::RankMismatch {
                op: "matmul",
                expected: 2,
                shape: t.shape().clone(),
            });
        }
    }
    let (m, k) = (a.dims()[0], a.dims()[1]);
    let (k2, n) = (b.dims()[0], b.dims()[1]);
    if k != k2 {
        return Err(TensorError::ShapeMismatch {
            op: "matmul",
            lhs: a.shape().clone(),
            rhs: b.shape().clone(),
        });
    }
    let mut c = Tensor::zeros_dims(&[m, n])?;
    gemm(
        m,
        n,
        k,
        a.data(),
        b.data(),
        c.data_mut(),
        &GemmParams::default(),
    )?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use crate::testing::assert_close;
    use proptest::prelude::*;

    fn small_ints(rng: &mut Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.below(7) as f32 - 3.0).collect()
    }

    /// Runs both kernels on small-integer data (exact in f32) and compares bit for bit.
    fn check_exact(m: usize, n: usize, k: usize, p: GemmParams, seed: u64) {
        let mut rng = Rng::seed_from_u64(seed);
        let a = small_ints(&mut rng, m * k);
        let b = small_ints(&mut rng, k * n);
        let c0 = small_ints(&mut rng, m * n);
        let mut fast = c0.clone();
        let mut slow = c0;
        gemm(m, n, k, &a, &b, &mut fast, &p).unwrap();
        gemm_reference(m, n, k, &a, &b, &mut slow, &p).unwrap();
        assert_eq!(fast, slow, "m={m} n={n} k={k} {p:?} seed={seed}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn matches_reference_around_edges(
            m in 0usize..40, n in 0usize..40, k in 0usize..40,
            ta in any::<bool>(), tb in any::<bool>(),
            beta in prop::sample::select(vec![0.0f32, 1.0, -2.0]),
            alpha in prop::sample::select(vec![1.0f32, 2.0, -1.0]),
            threads in 0usize..3, seed in any::<u64>(),
        ) {
            let p = GemmParams { trans_a: ta, trans_b: tb, alpha, beta, threads };
            check_exact(m, n, k, p, seed);
        }
    }

    #[test]
    fn large_products_match_on_one_and_two_threads() {
        for &(m, n, k) in &[
            (256, 300, 129),
            (64, 500, 800),
            (1, 784, 300),
            (513, 7, 260),
        ] {
            for threads in [1, 2] {
                for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                    let p = GemmParams {
                        trans_a: ta,
                        trans_b: tb,
                        threads,
                        ..Default::default()
                    };
                    check_exact(m, n, k, p, 11);
                }
            }
        }
    }

    #[test]
    fn float_data_within_tolerance() {
        let (m, n, k) = (37, 45, 333);
        let mut rng = Rng::seed_from_u64(5);
        let a: Vec<f32> = (0..m * k).map(|_| rng.normal()).collect();
        let b: Vec<f32> = (0..k * n).map(|_| rng.normal()).collect();
        let mut fast = vec![0.0; m * n];
        let mut slow = vec![0.0; m * n];
        let p = GemmParams::default();
        gemm(m, n, k, &a, &b, &mut fast, &p).unwrap();
        gemm_reference(m, n, k, &a, &b, &mut slow, &p).unwrap();
        // Each entry sums k products of unit normals: error ~ sqrt(k) * eps * |terms|.
        assert_close(&fast, &slow, 1e-4, 1e-4 * (k as f32).sqrt());
    }

    #[test]
    fn beta_zero_ignores_nan_in_c_and_k_zero_scales_c() {
        let mut c = vec![f32::NAN; 4];
        gemm(
            2,
            2,
            1,
            &[1.0, 2.0],
            &[3.0, 4.0],
            &mut c,
            &GemmParams::default(),
        )
        .unwrap();
        assert_eq!(c, vec![3.0, 4.0, 6.0, 8.0]);
        let mut c = vec![1.0, 2.0, 3.0, 4.0];
        gemm(2, 2, 0, &[], &[], &mut c, &GemmParams::default().beta(2.0)).unwrap();
        assert_eq!(c, vec![2.0, 4.0, 6.0, 8.0]);
        let mut c = vec![f32::NAN; 4];
        gemm(2, 2, 0, &[], &[], &mut c, &GemmParams::default()).unwrap();
        assert_eq!(c, vec![0.0; 4]);
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let mut c = vec![0.0; 4];
        let p = GemmParams::default();
        let e = gemm(2, 2, 3, &[0.0; 5], &[0.0; 6], &mut c, &p).unwrap_err();
        assert!(
            matches!(e, TensorError::DataLength { op: "gemm: A", .. }),
            "{e}"
        );
        let e = gemm(2, 2, 3, &[0.0; 6], &[0.0; 5], &mut c, &p).unwrap_err();
        assert!(
            matches!(e, TensorError::DataLength { op: "gemm: B", .. }),
            "{e}"
        );
        let e = gemm(2, 3, 3, &[0.0; 6], &[0.0; 9], &mut c, &p).unwrap_err();
        assert!(
            matches!(e, TensorError::DataLength { op: "gemm: C", .. }),
            "{e}"
        );
        let a = Tensor::zeros_dims(&[2, 3]).unwrap();
        let b = Tensor::zeros_dims(&[2, 3]).unwrap();
        assert!(matches!(
            matmul_tensors(&a, &b),
            Err(TensorError::ShapeMismatch { .. })
        ));
    }

    #[test]
    fn matmul_tensors_small() {
        let a = Tensor::new(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let b = Tensor::new(&[3, 1], vec![1.0, 0.0, -1.0]).unwrap();
        assert_eq!(matmul_tensors(&a, &b).unwrap().data(), &[-2.0, -2.0]);
    }
}
