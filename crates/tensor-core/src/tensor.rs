//! Tensor: an owned, contiguous, row-major block of f32 with its shape.

use serde::{Deserialize, Serialize};

use crate::error::TensorError;
use crate::shape::Shape;

/// An owned, contiguous, row-major f32 tensor.
///
/// Design: every kernel in slimnet works on contiguous row-major slices, so the tensor keeps
/// no strides; reshape moves the buffer and changes only the shape (no copy). Transposes are
/// expressed in the kernels (GEMM takes transpose flags) rather than as views.
///
/// Deserialization goes through [`Tensor::from_vec`], so a record whose data length disagrees
/// with its shape is rejected instead of producing a tensor that fails later.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawTensor")]
pub struct Tensor {
    shape: Shape,
    data: Vec<f32>,
}

/// Buffers of at least this many elements are zeroed in parallel by [`zeroed_vec`] (1 MB of
/// f32).
pub const PAR_ZERO_MIN: usize = 1 << 18;

/// Elements zeroed per task of [`zeroed_vec`] (256 KB of f32).
const ZERO_CHUNK: usize = 1 << 16;

/// Whether `len` elements are zeroed over the rayon pool: from [`PAR_ZERO_MIN`] on, unless
/// [`crate::serial::threads`] is 1.
fn zero_over_pool(len: usize) -> bool {
    len >= PAR_ZERO_MIN && crate::serial::threads() > 1
}

/// `len` zeros (`T::default()`), written in chunks over the current rayon pool from
/// [`PAR_ZERO_MIN`] elements on when [`crate::serial::threads`] allows more than one thread;
/// below it, or inside [`crate::serial::run`], `vec![T::default(); len]` on this thread.
///
/// Why: the training step's large tensors (a cnn-teacher convolution's output at batch 128
/// is 25.7 MB) were zeroed by `memset` on the calling thread while the pool's workers
/// waited: 10.5% of an epoch's CPU samples, all of it serial (`perf record`, session 14).
/// Zeroing chunk by chunk on the workers also takes the first-touch page faults there.
pub fn zeroed_vec<T: Copy + Default + Send>(len: usize) -> Vec<T> {
    use rayon::prelude::*;
    if !zero_over_pool(len) {
        return vec![T::default(); len];
    }
    let mut v = Vec::with_capacity(len);
    v.spare_capacity_mut()[..len]
        .par_chunks_mut(ZERO_CHUNK)
        .for_each(|c| {
            for e in c {
                e.write(T::default());
            }
        });
    // SAFETY: the loop above initialized each of the first `len` elements.
    unsafe { v.set_len(len) };
    v
}

/// `len` elements made in chunks of `chunk` (the last one shorter): each chunk is zeroed
/// (`T::default()`) and at once handed to `f(k, chunk)` (`k` its index), so that the kernel
/// writes lines that the zeroing has just brought into its core's cache. Chunks run over the
/// current rayon pool unless [`crate::serial::threads`] is 1. The first error of `f` is
/// returned (which one, when several chunks fail in parallel, is not specified).
///
/// Why: [`zeroed_vec`] followed by a parallel kernel writes every line twice from memory; a
/// cnn-teacher training step's convolution outputs (6-13 MB each at batch 128) spent 7.6%
/// of an epoch's CPU samples in that `memset` (session 14).
pub fn par_zeroed_chunks<T, E>(
    len: usize,
    chunk: usize,
    f: impl Fn(usize, &mut [T]) -> Result<(), E> + Sync + Send,
) -> Result<Vec<T>, E>
where
    T: Copy + Default + Send,
    E: Send,
{
    use rayon::prelude::*;
    use std::mem::MaybeUninit;
    let make = |(k, c): (usize, &mut [MaybeUninit<T>])| {
        for e in c.iter_mut() {
            e.write(T::default());
        }
        // SAFETY: every element of `c` was initialized just above, and `MaybeUninit<T>` has
        // `T`'s layout.
        let c = unsafe { &mut *(c as *mut [MaybeUninit<T>] as *mut [T]) };
        f(k, c)
    };
    let mut v = Vec::with_capacity(len);
    let spare = &mut v.spare_capacity_mut()[..len];
    let chunk = chunk.max(1);
    if crate::serial::threads() > 1 {
        spare.par_chunks_mut(chunk).enumerate().try_for_each(make)?;
    } else {
        spare.chunks_mut(chunk).enumerate().try_for_each(make)?;
    }
    // SAFETY: `make` initialized every chunk of the first `len` elements (an error returned
    // above before this point leaves the length 0).
    unsafe { v.set_len(len) };
    Ok(v)
}

/// The unchecked serialized form of a [`Tensor`]; converted with a length check.
#[derive(Deserialize)]
struct RawTensor {
    shape: Shape,
    data: Vec<f32>,
}

impl TryFrom<RawTensor> for Tensor {
    type Error = TensorError;
    fn try_from(raw: RawTensor) -> Result<Self, TensorError> {
        Tensor::from_vec(raw.shape, raw.data)
    }
}

impl Tensor {
    /// A tensor from a shape and data of matching length.
    pub fn from_vec(shape: Shape, data: Vec<f32>) -> Result<Self, TensorError> {
        if data.len() != shape.numel() {
            return Err(TensorError::DataLength {
                op: "Tensor::from_vec",
                len: data.len(),
                expected: shape.numel(),
                shape,
            });
        }
        Ok(Self { shape, data })
    }

    /// A tensor from dimensions and data, both checked.
    pub fn new(dims: &[usize], data: Vec<f32>) -> Result<Self, TensorError> {
        Self::from_vec(Shape::new(dims)?, data)
    }

    /// A tensor of zeros (from [`PAR_ZERO_MIN`] elements on, zeroed over the rayon pool:
    /// see [`zeroed_vec`]).
    pub fn zeros(shape: Shape) -> Self {
        let n = shape.numel();
        Self {
            shape,
            data: zeroed_vec(n),
        }
    }

    /// A tensor of zeros with the given dimensions (checked).
    pub fn zeros_dims(dims: &[usize]) -> Result<Self, TensorError> {
        Ok(Self::zeros(Shape::new(dims)?))
    }

    /// A tensor filled with `value`.
    pub fn full(shape: Shape, value: f32) -> Self {
        let n = shape.numel();
        Self {
            shape,
            data: vec![value; n],
        }
    }

    /// The shape.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// The elements, row-major.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The elements, row-major, mutable.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Consumes the tensor, returning its buffer.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    /// Same data, new dimensions (same element count); no copy.
    pub fn reshape(self, dims: &[usize]) -> Result<Self, TensorError> {
        let shape = Shape::new(dims)?;
        if shape.numel() != self.data.len() {
            return Err(TensorError::ShapeMismatch {
                op: "reshape",
                lhs: self.shape,
                rhs: shape,
            });
        }
        Ok(Self {
            shape,
            data: self.data,
        })
    }

    /// Sets every element to zero, keeping the allocation; from [`PAR_ZERO_MIN`] elements on
    /// in chunks over the rayon pool, as [`zeroed_vec`] (a training step zeroes every
    /// gradient: lenet5's fc1 weight gradient alone is 1.6 MB).
    pub fn fill_zero(&mut self) {
        use rayon::prelude::*;
        if !zero_over_pool(self.data.len()) {
            self.data.fill(0.0);
        } else {
            self.data
                .par_chunks_mut(ZERO_CHUNK)
                .for_each(|c| c.fill(0.0));
        }
    }

    /// `self += alpha * other`, shapes equal.
    pub fn add_scaled(&mut self, alpha: f32, other: &Tensor) -> Result<(), TensorError> {
        if self.shape != other.shape {
            return Err(TensorError::ShapeMismatch {
                op: "add_scaled",
                lhs: self.shape.clone(),
                rhs: other.shape.clone(),
            });
        }
        self.data
            .iter_mut()
            .zip(&other.data)
            .for_each(|(a, b)| *a += alpha * b);
        Ok(())
    }

    /// Index of the largest element of each row of a `[rows, cols]` tensor (first on ties).
    pub fn argmax_rows(&self) -> Result<Vec<usize>, TensorError> {
        if self.shape.rank() != 2 {
            return Err(TensorError::RankMismatch {
                op: "argmax_rows",
                expected: 2,
                shape: self.shape.clone(),
            });
        }
        let cols = self.dims()[1];
        if cols == 0 {
            return Err(TensorError::InvalidArgument {
                op: "argmax_rows",
                reason: "zero columns".into(),
            });
        }
        Ok(self
            .data
            .chunks_exact(cols)
            .map(|row| {
                let mut best = 0;
                for (i, &v) in row.iter().enumerate() {
                    if v > row[best] {
                        best = i;
                    }
                }
                best
            })
            .collect())
    }

    /// Copies rows `[start, end)` of the outermost dimension into a new tensor.
    pub fn slice_outer(&self, start: usize, end: usize) -> Result<Tensor, TensorError> {
        let n = self.shape.dim("slice_outer", 0)?;
        if start > end || end > n {
            return Err(TensorError::InvalidArgument {
                op: "slice_outer",
                reason: format!("range {start}..{end} outside 0..{n}"),
            });
        }
        let inner = self.data.len().checked_div(n).unwrap_or(0);
        let mut dims = self.dims().to_vec();
        dims[0] = end - start;
        Tensor::new(&dims, self.data[start * inner..end * inner].to_vec())
    }

    /// A view as an ndarray (dynamic rank), for interop with the ndarray ecosystem.
    pub fn view(&self) -> ndarray::ArrayViewD<'_, f32> {
        ndarray::ArrayViewD::from_shape(self.dims(), &self.data)
            .expect("shape and data agree by construction")
    }

    /// A tensor from an ndarray (copied into standard row-major order).
    pub fn from_ndarray(a: &ndarray::ArrayD<f32>) -> Result<Self, TensorError> {
        Self::new(a.shape(), a.iter().copied().collect())
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let head: Vec<f32> = self.data.iter().take(8).copied().collect();
        write!(
            f,
            "Tensor{} {:?}{}",
            self.shape,
            head,
            if self.data.len() > 8 { "..." } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_vec_checks_length() {
        assert!(Tensor::new(&[2, 3], vec![0.0; 5]).is_err());
        let t = Tensor::new(&[2, 3], (0..6).map(|x| x as f32).collect()).unwrap();
        let r = t.clone().reshape(&[3, 2]).unwrap();
        assert_eq!(r.data(), t.data());
        assert!(t.reshape(&[4, 2]).is_err());
    }

    /// Every element zero at lengths around the parallel threshold and the chunk size, on a
    /// pool of three threads and inside `serial::run`, after freeing buffers of NaN of the
    /// same sizes (so that a chunk left unwritten would likely show old bits).
    #[test]
    fn zeroed_vec_is_zero_at_every_length() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for len in [
            0,
            1,
            PAR_ZERO_MIN - 1,
            PAR_ZERO_MIN,
            PAR_ZERO_MIN + ZERO_CHUNK + 7,
        ] {
            for serial in [false, true] {
                drop(vec![f32::NAN; len]);
                let v: Vec<f32> = pool.install(|| match serial {
                    true => crate::serial::run(|| zeroed_vec(len)),
                    false => zeroed_vec(len),
                });
                assert_eq!(v.len(), len);
                assert!(v.iter().all(|x| x.to_bits() == 0), "len {len}");
                drop(vec![u32::MAX; len]);
                let w: Vec<u32> = pool.install(|| zeroed_vec(len));
                assert!(w.len() == len && w.iter().all(|&x| x == 0), "u32 len {len}");
                let mut t = Tensor::new(&[len], vec![f32::NAN; len]).unwrap();
                pool.install(|| t.fill_zero());
                assert!(
                    t.data().iter().all(|x| x.to_bits() == 0),
                    "fill_zero len {len}"
                );
            }
        }
    }

    /// Every chunk is handed over zeroed, with its index and length, exactly once; the
    /// result holds what `f` wrote; an error from one chunk comes back.
    #[test]
    fn par_zeroed_chunks_hands_each_chunk_over_zeroed() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for (len, chunk) in [
            (0, 4),
            (1, 4),
            (10, 3),
            (12, 3),
            (PAR_ZERO_MIN + 5, ZERO_CHUNK),
        ] {
            for serial in [false, true] {
                drop(vec![f32::NAN; len]);
                let run = || {
                    par_zeroed_chunks(len, chunk, |k, c: &mut [f32]| {
                        assert!(c.iter().all(|x| x.to_bits() == 0), "chunk {k} not zeroed");
                        assert_eq!(c.len(), chunk.min(len - k * chunk));
                        if k % 2 == 0 {
                            c.iter_mut().for_each(|x| *x = k as f32 + 1.0);
                        }
                        Ok::<(), String>(())
                    })
                };
                let v = pool.install(|| {
                    if serial {
                        crate::serial::run(run)
                    } else {
                        run()
                    }
                });
                let v = v.unwrap();
                assert_eq!(v.len(), len);
                for (i, &x) in v.iter().enumerate() {
                    let k = i / chunk;
                    let want = if k % 2 == 0 { k as f32 + 1.0 } else { 0.0 };
                    assert_eq!(x, want, "len {len} chunk {chunk} at {i}");
                }
            }
        }
        let e = par_zeroed_chunks(100, 7, |k, _: &mut [u32]| match k {
            5 => Err(format!("chunk {k}")),
            _ => Ok(()),
        });
        assert_eq!(e.unwrap_err(), "chunk 5");
    }

    #[test]
    fn argmax_and_slice() {
        let t = Tensor::new(&[2, 3], vec![0.0, 2.0, 1.0, 5.0, 5.0, -1.0]).unwrap();
        assert_eq!(t.argmax_rows().unwrap(), vec![1, 0]);
        assert_eq!(t.slice_outer(1, 2).unwrap().data(), &[5.0, 5.0, -1.0]);
        assert!(t.slice_outer(1, 3).is_err());
    }

    #[test]
    fn ndarray_round_trip() {
        let t = Tensor::new(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let a = t.view().to_owned();
        assert_eq!(Tensor::from_ndarray(&a).unwrap(), t);
    }
}
