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

    /// A tensor of zeros.
    pub fn zeros(shape: Shape) -> Self {
        let n = shape.numel();
        Self {
            shape,
            data: vec![0.0; n],
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

    /// Sets every element to zero, keeping the allocation.
    pub fn fill_zero(&mut self) {
        self.data.iter_mut().for_each(|x| *x = 0.0);
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
