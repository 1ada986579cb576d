//! Shapes: the dimensions of a row-major tensor, with checked element counts.

use serde::{Deserialize, Serialize};

use crate::error::TensorError;

/// Largest element count a tensor may hold (2^34 f32 = 64 GiB): any header claiming more is
/// rejected before an allocation is attempted.
pub const MAX_ELEMENTS: usize = 1 << 34;

/// The dimensions of a tensor, outermost first (NCHW for images, `[out, in]` for linear
/// weights, `[out, in, kh, kw]` for conv weights, as PyTorch and ONNX lay them out).
///
/// A `Shape` is always valid: its element count fits in `usize` and is at most
/// [`MAX_ELEMENTS`]. Build one from untrusted dimensions with [`Shape::new`].
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<usize>", into = "Vec<usize>")]
pub struct Shape {
    dims: Vec<usize>,
}

impl Shape {
    /// A shape from its dimensions, checking that the element count neither overflows nor
    /// exceeds [`MAX_ELEMENTS`].
    pub fn new(dims: &[usize]) -> Result<Self, TensorError> {
        let mut n: usize = 1;
        for &d in dims {
            n = n.checked_mul(d).ok_or_else(|| TensorError::ShapeTooLarge {
                dims: dims.to_vec(),
            })?;
        }
        if n > MAX_ELEMENTS {
            return Err(TensorError::ShapeTooLarge {
                dims: dims.to_vec(),
            });
        }
        Ok(Self {
            dims: dims.to_vec(),
        })
    }

    /// The shape of a scalar (rank 0, one element).
    pub fn scalar() -> Self {
        Self { dims: Vec::new() }
    }

    /// The dimensions, outermost first.
    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.dims.len()
    }

    /// Number of elements (the product of the dimensions; 1 for a scalar).
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }

    /// Dimension `i`, or an error naming the operation when the rank is too small.
    pub fn dim(&self, op: &'static str, i: usize) -> Result<usize, TensorError> {
        self.dims
            .get(i)
            .copied()
            .ok_or_else(|| TensorError::RankMismatch {
                op,
                expected: i + 1,
                shape: self.clone(),
            })
    }

    /// Row-major strides in elements.
    pub fn strides(&self) -> Vec<usize> {
        let mut s = vec![1; self.dims.len()];
        for i in (0..self.dims.len().saturating_sub(1)).rev() {
            s[i] = s[i + 1] * self.dims[i + 1];
        }
        s
    }
}

impl TryFrom<Vec<usize>> for Shape {
    type Error = TensorError;
    fn try_from(dims: Vec<usize>) -> Result<Self, TensorError> {
        Shape::new(&dims)
    }
}

impl From<Shape> for Vec<usize> {
    fn from(s: Shape) -> Vec<usize> {
        s.dims
    }
}

impl std::fmt::Debug for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.dims)
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.dims.iter().enumerate() {
            if i > 0 {
                write!(f, "x")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflowing_shape_is_an_error() {
        assert!(Shape::new(&[usize::MAX, 2]).is_err());
        assert!(Shape::new(&[1 << 20, 1 << 20]).is_err());
        assert_eq!(Shape::new(&[2, 3, 4]).unwrap().numel(), 24);
        assert_eq!(Shape::new(&[2, 3, 4]).unwrap().strides(), vec![12, 4, 1]);
        assert_eq!(Shape::scalar().numel(), 1);
    }

    #[test]
    fn deserializing_an_absurd_shape_fails() {
        let v: Result<Shape, _> = Shape::try_from(vec![usize::MAX, usize::MAX]);
        assert!(v.is_err());
    }
}
